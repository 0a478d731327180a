//! Looking into a container from outside: `cp` both ways (running or
//! not), `top` and `export`.

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use berth_layer::{ExtractOptions, Whiteouts};
use berth_runtime::cgroup::Cgroup;

use super::rootfs::{self, resolve_in_root};
use super::{proc, Container, Status};
use crate::{Engine, Error, Result};

/// One side of `cp`.
pub enum CopyTarget<'a> {
    /// A host path.
    Host(PathBuf),
    /// `-`: a tar stream on stdin or stdout.
    Stream(&'a mut dyn Read),
    StreamOut(&'a mut dyn Write),
}

/// The container's filesystem, mounted for as long as this lives.
struct View {
    root: PathBuf,
    /// Set when we mounted it ourselves (the container is not running).
    mounted: Option<PathBuf>,
    _lock: Option<fs::File>,
}

impl Drop for View {
    fn drop(&mut self) {
        if let Some(m) = &self.mounted {
            rootfs::unmount(m);
            let _ = fs::remove_dir(m);
        }
    }
}

fn invalid(msg: String) -> Error {
    Error::InvalidArgument(msg)
}

impl Engine {
    /// The container's merged filesystem: its live rootfs when it runs,
    /// otherwise its overlay mounted at a mount point of this process's
    /// own (read-only when `read_only`), unmounted when the view drops.
    fn view(&self, c: &Container, read_only: bool) -> Result<View> {
        let p = self.paths(&c.id);
        if c.state.status.is_live() && p.rootfs().exists() {
            return Ok(View {
                root: p.rootfs(),
                mounted: None,
                _lock: None,
            });
        }
        // Stopped: mount the overlay privately, holding the monitor lock
        // so a start cannot race us for the upper dir.
        fs::create_dir_all(&p.run).map_err(Error::io("create", &p.run))?;
        let lock = proc::lock_monitor(&p, false)
            .map_err(|_| Error::Conflict(format!("container {} is starting", c.short_id())))?;
        // Not in the store's scratch space: its cleaner would recurse into
        // a mount left by a killed process.
        let target = p.run.join(format!("cp-{}", std::process::id()));
        // Made before the mount, so that a failure anywhere on the way
        // still unmounts and removes the mount point.
        let view = View {
            root: target.clone(),
            mounted: Some(target.clone()),
            _lock: lock,
        };
        self.mount_rootfs(&c.image_id, &p.dir, &target)?;
        if read_only {
            use nix::mount::{mount, MsFlags};
            mount(
                None::<&str>,
                &target,
                None::<&str>,
                MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_RDONLY,
                None::<&str>,
            )
            .map_err(|e| Error::Internal(format!("remount {} read-only: {e}", target.display())))?;
        }
        Ok(view)
    }

    /// `export`: the container's whole filesystem (not its volumes) as an
    /// uncompressed tar, running or not.
    pub fn export_container(&self, name: &str, out: &mut dyn Write) -> Result<()> {
        let c = self.container(name)?;
        let view = self.view(&c, true)?;
        let items = berth_layer::tree_items(&view.root)?;
        let opts = berth_layer::WriteOptions::default();
        let out = berth_layer::write_layer(&view.root, &items, out, &opts)?;
        out.flush().map_err(|e| Error::Stream("write archive", e))?;
        self.emit_container(&c, "export", &[]);
        Ok(())
    }

    /// Maps a container path to the host path that holds it, through the
    /// container's volumes, binds and /etc files.
    fn host_path(&self, c: &Container, view: &View, path: &str) -> Result<PathBuf> {
        let p = self.paths(&c.id);
        let clean = {
            let mut parts: Vec<&str> = Vec::new();
            for x in path.split('/') {
                match x {
                    "" | "." => {}
                    ".." => {
                        parts.pop();
                    }
                    x => parts.push(x),
                }
            }
            format!("/{}", parts.join("/"))
        };
        for (dst, file) in [
            ("/etc/hostname", "hostname"),
            ("/etc/hosts", "hosts"),
            ("/etc/resolv.conf", "resolv.conf"),
        ] {
            if clean == dst && p.dir.join(file).exists() {
                return Ok(p.dir.join(file));
            }
        }
        let mut best: Option<(&str, PathBuf)> = None;
        for m in &c.spec.mounts {
            let src = match m.kind.as_str() {
                "bind" => PathBuf::from(&m.source),
                "volume" => self.volume_path(&m.name),
                _ => continue,
            };
            let d = m.destination.as_str();
            let under = clean == d || clean.starts_with(&format!("{d}/"));
            if under && best.as_ref().is_none_or(|(b, _)| d.len() > b.len()) {
                best = Some((d, src));
            }
        }
        if let Some((d, src)) = best {
            let rest = clean[d.len()..].trim_start_matches('/');
            return resolve_in_root(&src, &format!("/{rest}")).map_err(Error::io("resolve", &src));
        }
        resolve_in_root(&view.root, &clean).map_err(Error::io("resolve", &view.root))
    }

    /// `cp CONTAINER:SRC DEST`.
    pub fn copy_from_container(&self, name: &str, src: &str, dest: CopyTarget) -> Result<()> {
        let c = self.container(name)?;
        let view = self.view(&c, false)?;
        let host_src = self.host_path(&c, &view, src)?;
        let md = fs::symlink_metadata(&host_src).map_err(|_| {
            Error::NotFound(format!("Could not find the file {src} in container {name}"))
        })?;
        let contents_only = src.ends_with("/.");
        let base = Path::new(src.trim_end_matches("/.").trim_end_matches('/'))
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| ".".into());
        match dest {
            CopyTarget::StreamOut(w) => pack(
                &host_src,
                md.is_dir(),
                if contents_only { "." } else { &base },
                w,
            ),
            CopyTarget::Stream(_) => Err(invalid(
                "cp: the source of a copy out must be a container".into(),
            )),
            CopyTarget::Host(d) => {
                let (dir, top) = plan(&d, md.is_dir(), contents_only, &base, |p| {
                    fs::metadata(p).ok().map(|m| m.is_dir())
                })?;
                copy_tree_via_tar(&host_src, md.is_dir(), &top, &dir, false)
            }
        }
    }

    /// `cp SRC CONTAINER:DEST`.
    pub fn copy_to_container(&self, name: &str, src: CopyTarget, dest: &str) -> Result<()> {
        let c = self.container(name)?;
        if c.spec.host.readonly_rootfs && c.state.status.is_live() {
            return Err(Error::Conflict(
                "container rootfs is marked read-only".into(),
            ));
        }
        let view = self.view(&c, false)?;
        let host_dest = self.host_path(&c, &view, dest)?;
        let trailing = dest.ends_with('/');
        let lookup = |p: &Path| fs::metadata(p).ok().map(|m| m.is_dir());
        match src {
            CopyTarget::Stream(r) => {
                if lookup(&host_dest) != Some(true) {
                    return Err(invalid(format!(
                        "extraction point is not a directory: {dest}"
                    )));
                }
                let opts = ExtractOptions {
                    whiteouts: Whiteouts::Apply,
                    same_owner: true,
                };
                berth_layer::extract_verified(r, &host_dest, &opts)?;
                Ok(())
            }
            CopyTarget::StreamOut(_) => Err(invalid("cp: bad destination".into())),
            CopyTarget::Host(s) => {
                let md = fs::metadata(&s).map_err(|_| {
                    Error::NotFound(format!("stat {}: no such file or directory", s.display()))
                })?;
                let s_str = s.to_string_lossy();
                let contents_only = s_str.ends_with("/.");
                let base = s
                    .components()
                    .rfind(|c| !matches!(c, std::path::Component::CurDir))
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .unwrap_or_else(|| ".".into());
                let mut d = host_dest.clone();
                if trailing {
                    d.push("");
                }
                let (dir, top) = plan(&d, md.is_dir(), contents_only, &base, lookup)?;
                copy_tree_via_tar(&s, md.is_dir(), &top, &dir, true)
            }
        }
    }

    /// `top`: the container's processes as `ps -ef` shows them.
    pub fn top_container(
        &self,
        name: &str,
        ps_args: &[String],
    ) -> Result<(Vec<String>, Vec<Vec<String>>)> {
        let c = self.container(name)?;
        if !matches!(c.state.status, Status::Running | Status::Paused) {
            return Err(Error::Conflict(format!(
                "container {} is not running",
                c.id
            )));
        }
        let pids = Cgroup::new(&crate::sys::cgroup_path(&c.id)).pids();
        let args: Vec<String> = if ps_args.is_empty() {
            vec!["-ef".into()]
        } else {
            ps_args.to_vec()
        };
        let out = std::process::Command::new("ps")
            .args(&args)
            .output()
            .map_err(Error::io("run", "ps"))?;
        if !out.status.success() {
            return Err(Error::InvalidArgument(format!(
                "ps: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        let text = String::from_utf8_lossy(&out.stdout);
        let mut lines = text.lines();
        let header: Vec<String> = lines
            .next()
            .unwrap_or("")
            .split_whitespace()
            .map(str::to_string)
            .collect();
        let pid_col = header
            .iter()
            .position(|h| h == "PID")
            .ok_or_else(|| Error::InvalidArgument("Couldn't find PID field in ps output".into()))?;
        let ncols = header.len();
        let mut rows = Vec::new();
        for l in lines {
            let fields: Vec<&str> = l.split_whitespace().collect();
            if fields.len() < ncols {
                continue;
            }
            let Ok(pid) = fields[pid_col].parse::<i32>() else {
                continue;
            };
            if !pids.contains(&pid) {
                continue;
            }
            // The last column (the command) keeps its spaces.
            let mut row: Vec<String> = fields[..ncols - 1].iter().map(|s| s.to_string()).collect();
            row.push(fields[ncols - 1..].join(" "));
            rows.push(row);
        }
        Ok((header, rows))
    }
}

/// Where to extract and what to call the top entry, by Docker's cp rules.
fn plan(
    dest: &Path,
    src_is_dir: bool,
    contents_only: bool,
    base: &str,
    is_dir: impl Fn(&Path) -> Option<bool>,
) -> Result<(PathBuf, String)> {
    let trailing = dest.as_os_str().to_string_lossy().ends_with('/');
    match is_dir(dest) {
        Some(true) => {
            if contents_only {
                Ok((dest.to_path_buf(), ".".into()))
            } else {
                Ok((dest.to_path_buf(), base.to_string()))
            }
        }
        Some(false) => {
            if src_is_dir {
                return Err(invalid(format!(
                    "cannot copy a directory to a file: {}",
                    dest.display()
                )));
            }
            let parent = dest.parent().unwrap_or(Path::new("/"));
            let name = dest
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            Ok((parent.to_path_buf(), name))
        }
        None => {
            if trailing && !src_is_dir {
                return Err(invalid(format!(
                    "destination directory does not exist: {}",
                    dest.display()
                )));
            }
            let parent = dest.parent().unwrap_or(Path::new("/"));
            if is_dir(parent) != Some(true) {
                return Err(invalid(format!(
                    "destination directory does not exist: {}",
                    parent.display()
                )));
            }
            let name = dest
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            Ok((parent.to_path_buf(), name))
        }
    }
}

/// Writes `src` as a tar whose top entry is `top` (`.` for a directory's
/// contents).
fn pack(src: &Path, is_dir: bool, top: &str, w: &mut dyn Write) -> Result<()> {
    let mut b = tar::Builder::new(w);
    b.follow_symlinks(false);
    let r = if is_dir {
        b.append_dir_all(top, src)
    } else {
        b.append_path_with_name(src, top)
    };
    r.and_then(|_| b.finish())
        .map_err(|e| Error::Stream("write archive", e))
}

/// Copies through a tar stream so that the receiving side gets the same
/// safety checks as any layer (nothing lands outside `dir`).
fn copy_tree_via_tar(
    src: &Path,
    is_dir: bool,
    top: &str,
    dir: &Path,
    same_owner: bool,
) -> Result<()> {
    let (reader, mut writer) = std::io::pipe().map_err(|e| Error::Stream("pipe", e))?;
    std::thread::scope(|s| {
        let packer = s.spawn(move || {
            let r = pack(src, is_dir, top, &mut writer);
            drop(writer);
            r
        });
        let opts = ExtractOptions {
            whiteouts: Whiteouts::Apply,
            same_owner,
        };
        let extracted = berth_layer::extract_verified(reader, dir, &opts);
        let packed = packer
            .join()
            .unwrap_or_else(|_| Err(Error::Internal("archive writer panicked".into())));
        packed?;
        extracted?;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cp_plans_follow_docker() {
        let dirs = |p: &Path| match p.to_str().unwrap() {
            "/d" | "/" => Some(true),
            "/f" => Some(false),
            _ => None,
        };
        assert_eq!(
            plan(Path::new("/d"), true, false, "src", dirs).unwrap(),
            ("/d".into(), "src".into())
        );
        assert_eq!(
            plan(Path::new("/d"), true, true, "src", dirs).unwrap(),
            ("/d".into(), ".".into())
        );
        assert_eq!(
            plan(Path::new("/new"), true, false, "src", dirs).unwrap(),
            ("/".into(), "new".into())
        );
        assert_eq!(
            plan(Path::new("/f"), false, false, "x", dirs).unwrap(),
            ("/".into(), "f".into())
        );
        assert!(plan(Path::new("/f"), true, false, "x", dirs).is_err());
        assert!(plan(Path::new("/nope/x"), false, false, "x", dirs).is_err());
    }
}
