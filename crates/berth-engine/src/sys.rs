//! Small system helpers the whole engine shares, with no engine state:
//! a container's cgroup path, the size of a tree, removing one. A leaf.

use std::fs;

use crate::{Error, Result};

/// The cgroup (relative to the hierarchy roots) a container runs in.
pub(crate) fn cgroup_path(id: &str) -> String {
    format!("/berth/{id}")
}

/// Removes a directory tree that may hold read-only dirs or files with
/// immutable-looking modes, as an upper layer can.
pub(crate) fn remove_tree(p: &std::path::Path) -> Result<()> {
    match fs::remove_dir_all(p) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io("remove", p)(e)),
    }
}

pub(crate) fn dir_size(p: &std::path::Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    let mut stack = vec![p.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            let Ok(md) = e.metadata() else { continue };
            if md.is_dir() {
                stack.push(e.path());
            } else if md.is_file() {
                total += md.size();
            }
        }
    }
    total
}
