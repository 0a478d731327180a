//! Layers out of directories: the changes an overlay upper dir holds over its
//! lower layers (for `diff`, `commit` and build steps), written as a tar
//! stream that is the same bytes every time for the same tree.

use std::collections::HashMap;
use std::ffi::CString;
use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use tar::{EntryType, Header};

use crate::extract::{is_overlay_whiteout, OPAQUE_WHITEOUT, OVERLAY_OPAQUE_XATTR, WHITEOUT_PREFIX};
use crate::Error;

/// What happened to a path, in `docker diff`'s letters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    Added,
    Modified,
    Deleted,
}

impl ChangeKind {
    pub fn letter(self) -> char {
        match self {
            ChangeKind::Added => 'A',
            ChangeKind::Modified => 'C',
            ChangeKind::Deleted => 'D',
        }
    }
}

#[derive(Debug, Clone)]
enum Kind {
    Whiteout,
    Dir { opaque: bool },
    Other,
}

/// One path of an upper dir that belongs in the layer, in tar order
/// (sorted by name, a directory before what it holds).
#[derive(Debug, Clone)]
pub struct Item {
    /// Relative to the upper dir, never empty.
    pub path: PathBuf,
    kind: Kind,
    in_lower: bool,
}

impl Item {
    pub fn change(&self) -> ChangeKind {
        match self.kind {
            Kind::Whiteout => ChangeKind::Deleted,
            _ if self.in_lower => ChangeKind::Modified,
            _ => ChangeKind::Added,
        }
    }
}

/// The paths of an overlay `upper` dir that differ from `lowers` (layer
/// dirs, top first, with overlay whiteouts). Paths in `exclude` (relative)
/// are left out with everything below them; a directory that was only
/// copied up because something excluded lives in it is left out too.
pub fn overlay_changes(
    upper: &Path,
    lowers: &[PathBuf],
    exclude: &[PathBuf],
) -> Result<Vec<Item>, Error> {
    let mut out = Vec::new();
    let w = Walker {
        upper,
        lowers,
        exclude,
    };
    w.visit(Path::new(""), &mut out)?;
    Ok(out)
}

/// Every path under `dir`, as additions (a layer of a whole tree).
pub fn tree_items(dir: &Path) -> Result<Vec<Item>, Error> {
    overlay_changes(dir, &[], &[])
}

struct Walker<'a> {
    upper: &'a Path,
    lowers: &'a [PathBuf],
    exclude: &'a [PathBuf],
}

impl Walker<'_> {
    /// Appends the items under `rel`; says whether it added any, and
    /// whether it left out an excluded path.
    fn visit(&self, rel: &Path, out: &mut Vec<Item>) -> Result<(bool, bool), Error> {
        let dir = self.upper.join(rel);
        let mut names: Vec<_> = fs::read_dir(&dir)
            .map_err(Error::io("read", &dir))?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<io::Result<_>>()
            .map_err(Error::io("read", &dir))?;
        names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        let before = out.len();
        let mut excluded_any = false;
        for name in names {
            let path = rel.join(&name);
            if self.exclude.iter().any(|e| e == &path) {
                excluded_any = true;
                continue;
            }
            let abs = self.upper.join(&path);
            let meta = fs::symlink_metadata(&abs).map_err(Error::io("stat", &abs))?;
            if is_overlay_whiteout(&meta) {
                out.push(Item {
                    path,
                    kind: Kind::Whiteout,
                    in_lower: true,
                });
                continue;
            }
            let lower = self.lower_meta(&path);
            if meta.is_dir() {
                let opaque = get_xattr(&abs, OVERLAY_OPAQUE_XATTR)?.as_deref() == Some(b"y");
                let at = out.len();
                out.push(Item {
                    path: path.clone(),
                    kind: Kind::Dir { opaque },
                    in_lower: lower.is_some(),
                });
                let (children, excluded) = self.visit(&path, out)?;
                excluded_any |= excluded;
                let same_as_lower = lower.as_ref().is_some_and(|l| {
                    l.is_dir()
                        && l.mode() == meta.mode()
                        && l.uid() == meta.uid()
                        && l.gid() == meta.gid()
                });
                // A new dir that holds only excluded paths was made for
                // them (a mount target's parents).
                let made_for_excluded = lower.is_none() && excluded;
                if !children && !opaque && (same_as_lower || made_for_excluded) {
                    out.truncate(at);
                }
            } else {
                out.push(Item {
                    path,
                    kind: Kind::Other,
                    in_lower: lower.is_some(),
                });
            }
        }
        Ok((out.len() > before, excluded_any))
    }

    /// What `rel` is in the union of the lower layers, if anything.
    fn lower_meta(&self, rel: &Path) -> Option<fs::Metadata> {
        for layer in self.lowers {
            if let Ok(m) = fs::symlink_metadata(layer.join(rel)) {
                return (!is_overlay_whiteout(&m)).then_some(m);
            }
            // Absent here: a whiteout, opaque dir or non-directory on the
            // way down hides whatever the layers below have.
            for anc in rel.ancestors().skip(1) {
                if anc.as_os_str().is_empty() {
                    break;
                }
                let Ok(m) = fs::symlink_metadata(layer.join(anc)) else {
                    continue;
                };
                if !m.is_dir() || is_overlay_whiteout(&m) {
                    return None;
                }
                if matches!(get_xattr(&layer.join(anc), OVERLAY_OPAQUE_XATTR), Ok(Some(v)) if v == b"y")
                {
                    return None;
                }
            }
        }
        None
    }
}

#[derive(Debug, Clone, Default)]
pub struct WriteOptions {
    /// Every entry gets this mtime (seconds since the epoch) instead of the
    /// file's own: reproducible layers.
    pub mtime: Option<u64>,
}

/// Writes `items` (from [`overlay_changes`] over `upper`) as an
/// uncompressed layer tar into `out`, converting overlay whiteouts to `.wh.`
/// entries. Entries carry mode, owner, mtime and the security.capability
/// xattr; hard links inside the layer stay hard links. Returns `out`.
pub fn write_layer<W: Write>(
    upper: &Path,
    items: &[Item],
    out: W,
    opts: &WriteOptions,
) -> Result<W, Error> {
    let mut b = tar::Builder::new(out);
    let mut links: HashMap<(u64, u64), PathBuf> = HashMap::new();
    let io_err = Error::Tar;
    for item in items {
        let abs = upper.join(&item.path);
        if let Kind::Whiteout = item.kind {
            let name = item.path.file_name().unwrap_or_default();
            let mut wh = WHITEOUT_PREFIX.as_bytes().to_vec();
            wh.extend_from_slice(name.as_bytes());
            let path = item.path.with_file_name(std::ffi::OsStr::from_bytes(&wh));
            let mut h = empty_header(EntryType::Regular, 0o600, opts.mtime.unwrap_or(0));
            b.append_data(&mut h, &path, io::empty()).map_err(io_err)?;
            continue;
        }
        let meta = fs::symlink_metadata(&abs).map_err(Error::io("stat", &abs))?;
        let mtime = opts.mtime.unwrap_or(meta.mtime().max(0) as u64);
        let mode = meta.mode() & 0o7777;
        let ft = meta.file_type();
        let mut h = empty_header(EntryType::Regular, mode, mtime);
        h.set_uid(meta.uid() as u64);
        h.set_gid(meta.gid() as u64);
        if let Some(cap) = get_xattr(&abs, "security.capability")? {
            append_pax(&mut b, &[("SCHILY.xattr.security.capability", &cap)]).map_err(io_err)?;
        }
        if ft.is_dir() {
            h.set_entry_type(EntryType::Directory);
            let mut name = item.path.as_os_str().as_bytes().to_vec();
            name.push(b'/');
            b.append_data(&mut h, std::ffi::OsStr::from_bytes(&name), io::empty())
                .map_err(io_err)?;
            if let Kind::Dir { opaque: true } = item.kind {
                let mut o = empty_header(EntryType::Regular, 0o600, mtime);
                b.append_data(&mut o, item.path.join(OPAQUE_WHITEOUT), io::empty())
                    .map_err(io_err)?;
            }
        } else if ft.is_file() {
            if meta.nlink() > 1 {
                let key = (meta.dev(), meta.ino());
                if let Some(first) = links.get(&key) {
                    h.set_entry_type(EntryType::Link);
                    b.append_link(&mut h, &item.path, first).map_err(io_err)?;
                    continue;
                }
                links.insert(key, item.path.clone());
            }
            h.set_size(meta.len());
            let f = File::open(&abs).map_err(Error::io("open", &abs))?;
            b.append_data(&mut h, &item.path, f).map_err(io_err)?;
        } else if ft.is_symlink() {
            let target = fs::read_link(&abs).map_err(Error::io("readlink", &abs))?;
            h.set_entry_type(EntryType::Symlink);
            b.append_link(&mut h, &item.path, target).map_err(io_err)?;
        } else if ft.is_char_device() || ft.is_block_device() || ft.is_fifo() {
            h.set_entry_type(if ft.is_char_device() {
                EntryType::Char
            } else if ft.is_block_device() {
                EntryType::Block
            } else {
                EntryType::Fifo
            });
            let rdev = meta.rdev();
            h.set_device_major(libc::major(rdev)).map_err(io_err)?;
            h.set_device_minor(libc::minor(rdev)).map_err(io_err)?;
            b.append_data(&mut h, &item.path, io::empty())
                .map_err(io_err)?;
        }
        // Sockets have no tar form; Docker leaves them out too.
    }
    b.into_inner().map_err(io_err)
}

fn empty_header(kind: EntryType, mode: u32, mtime: u64) -> Header {
    let mut h = Header::new_ustar();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_mtime(mtime);
    h.set_uid(0);
    h.set_gid(0);
    h.set_size(0);
    h
}

/// A PAX extended header for the entry that follows.
fn append_pax<W: Write>(b: &mut tar::Builder<W>, records: &[(&str, &[u8])]) -> io::Result<()> {
    let mut data = Vec::new();
    for (k, v) in records {
        // The length prefix counts itself.
        let body = k.len() + v.len() + 3;
        let mut len = body + body.to_string().len();
        if len.to_string().len() != body.to_string().len() {
            len += 1;
        }
        data.extend_from_slice(format!("{len} {k}=").as_bytes());
        data.extend_from_slice(v);
        data.push(b'\n');
    }
    let mut h = Header::new_ustar();
    h.set_entry_type(EntryType::XHeader);
    h.set_mode(0o644);
    h.set_size(data.len() as u64);
    h.set_path("PaxHeaders/x")?;
    h.set_cksum();
    b.append(&h, data.as_slice())
}

fn get_xattr(path: &Path, name: &str) -> Result<Option<Vec<u8>>, Error> {
    let p = CString::new(path.as_os_str().as_bytes()).map_err(|_| Error::Io {
        op: "read xattr of",
        path: path.into(),
        source: io::Error::from(io::ErrorKind::InvalidInput),
    })?;
    let n = CString::new(name).expect("xattr names have no NUL");
    let mut buf = vec![0u8; 256];
    loop {
        // SAFETY: both strings are NUL-terminated and buf is writable for its length.
        let r =
            unsafe { libc::lgetxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
        if r >= 0 {
            buf.truncate(r as usize);
            return Ok(Some(buf));
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::ENODATA) | Some(libc::ENOTSUP) => return Ok(None),
            Some(libc::ERANGE) if buf.len() < 65536 => buf.resize(65536, 0),
            _ => {
                return Err(Error::Io {
                    op: "read xattr of",
                    path: path.into(),
                    source: e,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::stat::{mknod, Mode, SFlag};
    use std::os::unix::fs::symlink;

    fn names(items: &[Item]) -> Vec<String> {
        items
            .iter()
            .map(|i| format!("{} {}", i.change().letter(), i.path.display()))
            .collect()
    }

    #[test]
    fn upper_dir_changes_become_a_layer_with_whiteouts() {
        let t = tempfile::tempdir().unwrap();
        let lower = t.path().join("lower");
        let upper = t.path().join("upper");
        for d in ["etc", "bin", "var/cache/x", "keep"] {
            fs::create_dir_all(lower.join(d)).unwrap();
        }
        fs::write(lower.join("etc/passwd"), "root\n").unwrap();
        fs::write(lower.join("bin/ls"), "ls").unwrap();
        fs::write(lower.join("var/cache/x/old"), "old").unwrap();

        for d in ["etc", "bin", "var/cache", "new/sub", "keep"] {
            fs::create_dir_all(upper.join(d)).unwrap();
        }
        fs::write(upper.join("etc/passwd"), "root\nme\n").unwrap();
        fs::write(upper.join("etc/hosts"), "excluded").unwrap();
        mknod(
            &upper.join("bin/ls"),
            SFlag::S_IFCHR,
            Mode::from_bits_truncate(0o600),
            0,
        )
        .unwrap();
        fs::create_dir(upper.join("var/cache/x")).unwrap();
        let c = CString::new(upper.join("var/cache/x").as_os_str().as_bytes()).unwrap();
        let n = CString::new(OVERLAY_OPAQUE_XATTR).unwrap();
        // SAFETY: valid NUL-terminated strings and a 1-byte value.
        assert_eq!(
            unsafe { libc::setxattr(c.as_ptr(), n.as_ptr(), b"y".as_ptr().cast(), 1, 0) },
            0
        );
        fs::write(upper.join("new/sub/a"), "a").unwrap();
        fs::hard_link(upper.join("new/sub/a"), upper.join("new/b")).unwrap();
        symlink("sub/a", upper.join("new/link")).unwrap();

        let items = overlay_changes(
            &upper,
            std::slice::from_ref(&lower),
            &[PathBuf::from("etc/hosts")],
        )
        .unwrap();
        assert_eq!(
            names(&items),
            [
                "C bin",
                "D bin/ls",
                "C etc",
                "C etc/passwd",
                "A new",
                "A new/b",
                "A new/link",
                "A new/sub",
                "A new/sub/a",
                "C var",
                "C var/cache",
                "C var/cache/x",
            ],
            "keep/ was only copied up and has no changes"
        );

        let opts = WriteOptions {
            mtime: Some(1_700_000_000),
        };
        let one = write_layer(&upper, &items, Vec::new(), &opts).unwrap();
        let two = write_layer(&upper, &items, Vec::new(), &opts).unwrap();
        assert_eq!(one, two, "same tree, same bytes");

        let mut seen = Vec::new();
        let mut ar = tar::Archive::new(one.as_slice());
        for e in ar.entries().unwrap() {
            let e = e.unwrap();
            assert_eq!(e.header().mtime().unwrap(), 1_700_000_000);
            seen.push(format!(
                "{:?} {}",
                e.header().entry_type(),
                e.path().unwrap().display()
            ));
        }
        assert!(seen.contains(&"Regular bin/.wh.ls".to_string()), "{seen:?}");
        assert!(
            seen.contains(&"Regular var/cache/x/.wh..wh..opq".to_string()),
            "{seen:?}"
        );
        assert!(
            seen.contains(&"Link new/sub/a".to_string())
                || seen.contains(&"Link new/b".to_string()),
            "{seen:?}"
        );
        assert!(seen.contains(&"Symlink new/link".to_string()), "{seen:?}");

        // Applied over the lower layer, the layer gives the upper's view.
        let merged = t.path().join("merged");
        fs::create_dir(&merged).unwrap();
        let apply = crate::ExtractOptions {
            whiteouts: crate::Whiteouts::Apply,
            same_owner: true,
        };
        let base = write_layer(&lower, &tree_items(&lower).unwrap(), Vec::new(), &opts).unwrap();
        crate::extract(base.as_slice(), &merged, &apply).unwrap();
        crate::extract(one.as_slice(), &merged, &apply).unwrap();
        assert!(!merged.join("bin/ls").exists());
        assert!(!merged.join("var/cache/x/old").exists());
        assert_eq!(
            fs::read_to_string(merged.join("etc/passwd")).unwrap(),
            "root\nme\n"
        );
        assert_eq!(fs::read_to_string(merged.join("new/link")).unwrap(), "a");
        let (a, b) = (
            fs::metadata(merged.join("new/sub/a")).unwrap(),
            fs::metadata(merged.join("new/b")).unwrap(),
        );
        assert_eq!(a.ino(), b.ino(), "hard link kept");
    }
}
