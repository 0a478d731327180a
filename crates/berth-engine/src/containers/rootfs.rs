//! A container's root filesystem: the overlay of its image's layers and
//! its own upper dir, and the lookups that must happen inside it (users,
//! executables, paths) without ever following a symlink out of it.

use std::ffi::OsStr;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use berth_oci::Digest;
use nix::mount::{mount, umount2, MntFlags, MsFlags};

use crate::{Engine, Error, Result};

impl Engine {
    /// The image's layer dirs, top layer first (overlay's lowerdir order),
    /// unpacking any the cache lost from the blobs.
    pub(crate) fn image_layer_dirs(&self, image_id: &str) -> Result<Vec<PathBuf>> {
        let id: Digest = image_id
            .parse()
            .map_err(|e: berth_oci::Error| Error::Internal(e.to_string()))?;
        let mut out = Vec::new();
        for l in self.store.image_layers(&id)? {
            out.push(self.store.layer_dir(&l.diff_id));
        }
        out.reverse();
        Ok(out)
    }

    pub(crate) fn ensure_layers(&self, image_id: &str) -> Result<()> {
        let id: Digest = image_id
            .parse()
            .map_err(|e: berth_oci::Error| Error::Internal(e.to_string()))?;
        for l in self.store.image_layers(&id)? {
            if !self.store.has_layer(&l.diff_id) {
                let _g = self.adding()?;
                let blob = self.store.open_blob(&l.blob)?;
                let reader = berth_layer::decompress(std::io::BufReader::new(blob))?;
                self.store.unpack_verified_layer(reader, &l.diff_id)?;
            }
        }
        Ok(())
    }

    /// Mounts the container's overlay at `target`.
    pub(crate) fn mount_rootfs(&self, image_id: &str, dir: &Path, target: &Path) -> Result<()> {
        self.ensure_layers(image_id)?;
        let lowers = self.image_layer_dirs(image_id)?;
        self.mount_overlay(lowers, dir, target)
    }

    /// Mounts `lowers` (top first) with `dir`/upper and `dir`/work at `target`.
    pub(crate) fn mount_overlay(
        &self,
        mut lowers: Vec<PathBuf>,
        dir: &Path,
        target: &Path,
    ) -> Result<()> {
        if lowers.is_empty() {
            let empty = dir.join("empty");
            fs::create_dir_all(&empty).map_err(Error::io("create", &empty))?;
            lowers.push(empty);
        }
        fs::create_dir_all(target).map_err(Error::io("create", target))?;
        let upper = dir.join("upper");
        let work = dir.join("work");
        for d in [&upper, &work] {
            fs::create_dir_all(d).map_err(Error::io("create", d))?;
        }
        let lower: Vec<String> = lowers.iter().map(|p| p.display().to_string()).collect();
        let data = format!(
            "lowerdir={},upperdir={},workdir={}",
            lower.join(":"),
            upper.display(),
            work.display()
        );
        // The kernel takes one page of mount options; many layers need
        // the short, relative spelling from inside the layers dir.
        if data.len() < 4000 {
            mount(
                Some("overlay"),
                target,
                Some("overlay"),
                MsFlags::empty(),
                Some(data.as_str()),
            )
            .map_err(|e| Error::Internal(format!("mount overlay at {}: {e}", target.display())))?;
            return Ok(());
        }
        let layers_root = self.root().join("layers");
        let rel: Vec<String> = lowers
            .iter()
            .map(|p| {
                p.strip_prefix(&layers_root)
                    .map(|r| r.display().to_string())
                    .unwrap_or_else(|_| p.display().to_string())
            })
            .collect();
        let data = format!(
            "lowerdir={},upperdir={},workdir={}",
            rel.join(":"),
            upper.display(),
            work.display()
        );
        // The working directory is the process's: parallel build stages
        // must not move it under each other.
        static CWD: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _cwd = CWD.lock().unwrap_or_else(|e| e.into_inner());
        let cwd = std::env::current_dir().ok();
        std::env::set_current_dir(&layers_root).map_err(Error::io("enter", &layers_root))?;
        let r = mount(
            Some("overlay"),
            target,
            Some("overlay"),
            MsFlags::empty(),
            Some(data.as_str()),
        );
        if let Some(c) = cwd {
            let _ = std::env::set_current_dir(c);
        }
        r.map_err(|e| Error::Internal(format!("mount overlay at {}: {e}", target.display())))
    }
}

/// Unmounts if mounted; quiet otherwise.
pub(crate) fn unmount(target: &Path) {
    for _ in 0..8 {
        match umount2(target, MntFlags::UMOUNT_NOFOLLOW) {
            Ok(()) => continue,
            Err(nix::errno::Errno::EBUSY) => {
                let _ = umount2(target, MntFlags::MNT_DETACH);
            }
            Err(_) => return,
        }
    }
}

/// Resolves `path` as the container would see it: absolute symlinks and
/// `..` stay inside `root`. The result may not exist (its last part, or
/// more, can be missing).
pub(crate) fn resolve_in_root(root: &Path, path: &str) -> io::Result<PathBuf> {
    let mut resolved = PathBuf::from("/");
    let mut pending: Vec<Vec<u8>> = Path::new(path)
        .components()
        .rev()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.as_bytes().to_vec()),
            Component::ParentDir => Some(b"..".to_vec()),
            _ => None,
        })
        .collect();
    let mut links = 0;
    while let Some(part) = pending.pop() {
        if part == b".." {
            resolved.pop();
            continue;
        }
        let candidate = resolved.join(OsStr::from_bytes(&part));
        let host = root.join(candidate.strip_prefix("/").expect("absolute"));
        match fs::symlink_metadata(&host) {
            Ok(md) if md.file_type().is_symlink() => {
                links += 1;
                if links > 40 {
                    return Err(io::Error::from_raw_os_error(libc::ELOOP));
                }
                let target = fs::read_link(&host)?;
                if target.is_absolute() {
                    resolved = PathBuf::from("/");
                }
                for c in target.components().rev() {
                    match c {
                        Component::Normal(n) => pending.push(n.as_bytes().to_vec()),
                        Component::ParentDir => pending.push(b"..".to_vec()),
                        _ => {}
                    }
                }
            }
            _ => resolved = candidate,
        }
    }
    Ok(root.join(resolved.strip_prefix("/").expect("absolute")))
}

/// Why a command cannot run, with Docker's exit code.
pub(crate) struct ExecError {
    pub message: String,
    pub code: i32,
}

/// runc's checks before exec, so failures get Docker's codes and words.
pub(crate) fn check_executable(root: &Path, cmd: &str, env: &[String]) -> Result<(), ExecError> {
    let candidates: Vec<String> = if cmd.contains('/') {
        vec![cmd.to_string()]
    } else {
        let path = env
            .iter()
            .find_map(|e| e.strip_prefix("PATH="))
            .unwrap_or("");
        path.split(':')
            .filter(|d| !d.is_empty())
            .map(|d| format!("{}/{cmd}", d.trim_end_matches('/')))
            .collect()
    };
    let mut denied = None;
    for c in &candidates {
        let full = if c.starts_with('/') {
            c.clone()
        } else {
            format!("/{c}")
        };
        let Ok(host) = resolve_in_root(root, &full) else {
            continue;
        };
        match fs::metadata(&host) {
            Ok(md) if md.is_dir() => {
                if cmd.contains('/') {
                    return Err(ExecError {
                        message: format!("exec: \"{cmd}\": is a directory"),
                        code: 126,
                    });
                }
            }
            Ok(md) => {
                if md.permissions().mode() & 0o111 != 0 {
                    return Ok(());
                }
                denied.get_or_insert(c.clone());
            }
            Err(_) => {}
        }
    }
    if denied.is_some() {
        return Err(ExecError {
            message: format!("exec: \"{cmd}\": permission denied"),
            code: 126,
        });
    }
    if cmd.contains('/') {
        Err(ExecError {
            message: format!("exec: \"{cmd}\": stat {cmd}: no such file or directory"),
            code: 127,
        })
    } else {
        Err(ExecError {
            message: format!("exec: \"{cmd}\": executable file not found in $PATH"),
            code: 127,
        })
    }
}

#[derive(Debug)]
pub(crate) struct User {
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    pub home: String,
}

fn read_db(root: &Path, file: &str) -> Vec<Vec<String>> {
    let Ok(p) = resolve_in_root(root, file) else {
        return vec![];
    };
    fs::read_to_string(p)
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| l.split(':').map(str::to_string).collect())
        .collect()
}

/// Resolves `-u user[:group]` against the image's /etc/passwd and
/// /etc/group, as Docker does (numbers need no entry).
pub(crate) fn lookup_user(root: &Path, spec: &str) -> Result<User, String> {
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let user = if user.is_empty() { "0" } else { user };
    let passwd = read_db(root, "/etc/passwd");
    let entry = passwd
        .iter()
        .find(|e| e.len() >= 7 && (e[0] == user || (user.parse::<u32>().is_ok() && e[2] == user)));
    let (uid, mut gid, home, name) = match (entry, user.parse::<u32>()) {
        (Some(e), _) => (
            e[2].parse().unwrap_or(0),
            e[3].parse().unwrap_or(0),
            e[5].clone(),
            e[0].clone(),
        ),
        (None, Ok(n)) => (n, 0, "/".to_string(), String::new()),
        (None, Err(_)) => {
            return Err(format!(
                "unable to find user {user}: no matching entries in passwd file"
            ))
        }
    };
    let groups = read_db(root, "/etc/group");
    if let Some(g) = group {
        gid = match groups
            .iter()
            .find(|e| e.len() >= 3 && (e[0] == g || e[2] == g))
        {
            Some(e) => e[2].parse().unwrap_or(0),
            None => g.parse().map_err(|_| {
                format!("unable to find group {g}: no matching entries in group file")
            })?,
        };
    }
    let additional_gids = if name.is_empty() {
        vec![]
    } else {
        groups
            .iter()
            .filter(|e| e.len() >= 4 && e[3].split(',').any(|m| m == name))
            .filter_map(|e| e[2].parse().ok())
            .filter(|g| *g != gid)
            .collect()
    };
    Ok(User {
        uid,
        gid,
        additional_gids,
        home,
    })
}

/// Copies a tree keeping modes, owners, times and symlinks (a volume's
/// first fill from the image).
pub(crate) fn copy_tree(src: &Path, dst: &Path) -> io::Result<()> {
    use std::os::unix::fs::{lchown, symlink};
    for entry in fs::read_dir(src)? {
        let entry = entry?;
        let from = entry.path();
        let to = dst.join(entry.file_name());
        let md = fs::symlink_metadata(&from)?;
        let ft = md.file_type();
        if ft.is_dir() {
            fs::create_dir_all(&to)?;
            copy_tree(&from, &to)?;
            fs::set_permissions(&to, md.permissions())?;
        } else if ft.is_symlink() {
            symlink(fs::read_link(&from)?, &to)?;
        } else if ft.is_file() {
            fs::copy(&from, &to)?;
        } else {
            continue;
        }
        lchown(&to, Some(md.uid()), Some(md.gid()))?;
    }
    Ok(())
}

/// `HOME` from the user's passwd entry (`/` without one), unless the
/// environment sets it: what Docker gives a container's process and execs.
pub(crate) fn default_home(env: &mut Vec<String>, home: &str) {
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        env.push(format!("HOME={}", if home.is_empty() { "/" } else { home }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symlinks_stay_inside_the_root() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        fs::create_dir_all(root.join("real/dir")).unwrap();
        std::os::unix::fs::symlink("/real", root.join("abs")).unwrap();
        std::os::unix::fs::symlink("../../../../etc", root.join("real/up")).unwrap();
        assert_eq!(
            resolve_in_root(root, "/abs/dir").unwrap(),
            root.join("real/dir")
        );
        assert_eq!(
            resolve_in_root(root, "/real/up/passwd").unwrap(),
            root.join("etc/passwd")
        );
        assert_eq!(resolve_in_root(root, "/../../x").unwrap(), root.join("x"));
        std::os::unix::fs::symlink("loop", root.join("loop")).unwrap();
        assert!(resolve_in_root(root, "/loop").is_err());
    }

    #[test]
    fn users_resolve_from_the_image() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        fs::create_dir_all(root.join("etc")).unwrap();
        fs::write(
            root.join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\nweb:x:100:101:web:/srv:/bin/sh\n",
        )
        .unwrap();
        fs::write(
            root.join("etc/group"),
            "root:x:0:\nweb:x:101:\nextra:x:7:web\n",
        )
        .unwrap();
        let u = lookup_user(root, "web").unwrap();
        assert_eq!((u.uid, u.gid, u.home.as_str()), (100, 101, "/srv"));
        assert_eq!(u.additional_gids, vec![7]);
        let u = lookup_user(root, "1000:web").unwrap();
        assert_eq!((u.uid, u.gid), (1000, 101));
        assert!(lookup_user(root, "nobody")
            .unwrap_err()
            .contains("no matching entries"));
    }
}
