use std::collections::HashSet;
use std::ffi::{CString, OsStr};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use berth_oci::{Digest, Hasher};
use nix::fcntl::AtFlags;
use nix::sys::stat::{mknod, Mode, SFlag};
use nix::unistd::{fchownat, Gid, Uid};
use tar::EntryType;

use crate::Error;

pub(crate) const WHITEOUT_PREFIX: &str = ".wh.";
pub(crate) const OPAQUE_WHITEOUT: &str = ".wh..wh..opq";
pub(crate) const OVERLAY_OPAQUE_XATTR: &str = "trusted.overlay.opaque";

/// What to do with `.wh.` entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Whiteouts {
    /// Turn them into overlayfs whiteouts (0/0 character devices and the
    /// opaque xattr), for a directory that will be an overlay lowerdir.
    Overlay,
    /// Delete what they name, for extracting layers on top of each other
    /// into one directory.
    Apply,
}

#[derive(Debug, Clone)]
pub struct ExtractOptions {
    pub whiteouts: Whiteouts,
    /// Keep owners from the tar (needs root); otherwise files belong to the caller.
    pub same_owner: bool,
}

impl Default for ExtractOptions {
    fn default() -> Self {
        ExtractOptions {
            whiteouts: Whiteouts::Overlay,
            same_owner: nix::unistd::geteuid().is_root(),
        }
    }
}

/// What an extraction saw: the digest and length of the uncompressed tar
/// stream (the layer's diff id and size).
#[derive(Debug, Clone)]
pub struct Extracted {
    pub diff_id: Digest,
    pub size: u64,
}

/// Counts (and, unless the caller already knows the digest, hashes) the
/// stream as the tar reader consumes it.
struct HashRead<R> {
    inner: R,
    hasher: Option<Hasher>,
    len: u64,
}

impl<R: Read> Read for HashRead<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Some(h) = &mut self.hasher {
            h.update(&buf[..n]);
        }
        self.len += n as u64;
        Ok(n)
    }
}

/// Extracts an uncompressed tar stream into `dest` (which must exist), and
/// digests the stream on the way.
pub fn extract<R: Read>(reader: R, dest: &Path, opts: &ExtractOptions) -> Result<Extracted, Error> {
    let (hasher, size) = extract_inner(reader, dest, opts, Some(Hasher::sha256()))?;
    Ok(Extracted {
        diff_id: hasher.expect("hasher given").finish(),
        size,
    })
}

/// Like `extract`, for a stream whose digest the caller has already
/// verified (an uncompressed blob is its own diff id): skips hashing it
/// again and returns its length.
pub fn extract_verified<R: Read>(
    reader: R,
    dest: &Path,
    opts: &ExtractOptions,
) -> Result<u64, Error> {
    Ok(extract_inner(reader, dest, opts, None)?.1)
}

fn extract_inner<R: Read>(
    reader: R,
    dest: &Path,
    opts: &ExtractOptions,
    hasher: Option<Hasher>,
) -> Result<(Option<Hasher>, u64), Error> {
    let mut archive = tar::Archive::new(HashRead {
        inner: reader,
        hasher,
        len: 0,
    });
    let mut ex = Extractor {
        dest,
        opts,
        dirs: Vec::new(),
        written: HashSet::new(),
        buf: vec![0u8; 256 * 1024],
    };
    for entry in archive.entries().map_err(Error::Tar)? {
        let entry = entry.map_err(Error::Tar)?;
        ex.entry(entry)?;
    }
    // Directory times last: creating their children changed them.
    for (path, mtime) in ex.dirs.iter().rev() {
        set_mtime(path, *mtime)?;
    }
    // The end-of-archive blocks and any padding after them are part of the
    // layer's bytes and so of its diff id.
    let mut inner = archive.into_inner();
    io::copy(&mut inner, &mut io::sink()).map_err(Error::Tar)?;
    Ok((inner.hasher, inner.len))
}

struct Extractor<'a> {
    dest: &'a Path,
    opts: &'a ExtractOptions,
    dirs: Vec<(PathBuf, u64)>,
    /// Paths this layer wrote, so an opaque whiteout in Apply mode spares them.
    written: HashSet<PathBuf>,
    buf: Vec<u8>,
}

fn unsafe_entry(entry: &Path, reason: impl Into<String>) -> Error {
    Error::Unsafe {
        entry: entry.display().to_string(),
        reason: reason.into(),
    }
}

/// Cleans a tar path lexically into a relative path inside the root.
fn clean(raw: &Path) -> Result<PathBuf, Error> {
    if raw.is_absolute() {
        return Err(unsafe_entry(raw, "absolute path"));
    }
    let mut out = PathBuf::new();
    for c in raw.components() {
        match c {
            Component::CurDir => {}
            Component::Normal(p) => out.push(p),
            Component::ParentDir => {
                if !out.pop() {
                    return Err(unsafe_entry(raw, "path leaves the layer through \"..\""));
                }
            }
            Component::RootDir | Component::Prefix(_) => {
                return Err(unsafe_entry(raw, "absolute path"))
            }
        }
    }
    Ok(out)
}

impl Extractor<'_> {
    /// Makes sure every parent of `rel` is a real directory inside the root,
    /// creating missing ones, and refuses a path through a symlink.
    fn prepare_parent(&mut self, entry: &Path, rel: &Path) -> Result<PathBuf, Error> {
        let mut cur = self.dest.to_path_buf();
        if let Some(parent) = rel.parent() {
            for c in parent.components() {
                cur.push(c);
                match fs::symlink_metadata(&cur) {
                    Ok(m) if m.file_type().is_symlink() => {
                        return Err(unsafe_entry(
                            entry,
                            format!(
                                "path goes through the symlink {:?}",
                                cur.strip_prefix(self.dest).unwrap_or(&cur)
                            ),
                        ))
                    }
                    Ok(m) if m.is_dir() => {}
                    Ok(_) => {
                        // A file where this layer needs a directory: the layer replaces it.
                        fs::remove_file(&cur).map_err(Error::io("remove", &cur))?;
                        mkdir(&cur)?;
                    }
                    Err(e) if e.kind() == io::ErrorKind::NotFound => mkdir(&cur)?,
                    Err(e) => return Err(Error::io("stat", &cur)(e)),
                }
            }
        }
        Ok(self.dest.join(rel))
    }

    fn entry<R: Read>(&mut self, mut entry: tar::Entry<'_, R>) -> Result<(), Error> {
        let kind = entry.header().entry_type();
        if matches!(
            kind,
            EntryType::XGlobalHeader
                | EntryType::XHeader
                | EntryType::GNULongName
                | EntryType::GNULongLink
        ) {
            return Ok(());
        }
        let raw = entry.path().map_err(Error::Tar)?.into_owned();
        let rel = clean(&raw)?;
        if rel.as_os_str().is_empty() {
            // The root itself ("./"): nothing to create.
            return Ok(());
        }
        let name = rel.file_name().unwrap_or_default().to_os_string();
        let name_bytes = name.as_bytes();

        if name_bytes.starts_with(WHITEOUT_PREFIX.as_bytes()) {
            return self.whiteout(&raw, &rel, name_bytes);
        }

        let path = self.prepare_parent(&raw, &rel)?;
        let header = entry.header().clone();
        let mode = header.mode().unwrap_or(0o644) & 0o7777;
        let mtime = header.mtime().unwrap_or(0);

        // Replace whatever is there, except a directory replaced by a directory.
        match fs::symlink_metadata(&path) {
            Ok(m) if m.is_dir() && kind == EntryType::Directory => {}
            Ok(m) if m.is_dir() => fs::remove_dir_all(&path).map_err(Error::io("remove", &path))?,
            Ok(_) => fs::remove_file(&path).map_err(Error::io("remove", &path))?,
            Err(_) => {}
        }

        match kind {
            EntryType::Regular | EntryType::Continuous => {
                let mut f = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .custom_flags(libc::O_NOFOLLOW)
                    .open(&path)
                    .map_err(Error::io("create", &path))?;
                loop {
                    let n = entry.read(&mut self.buf).map_err(Error::Tar)?;
                    if n == 0 {
                        break;
                    }
                    f.write_all(&self.buf[..n])
                        .map_err(Error::io("write", &path))?;
                }
                self.finish_metadata(&mut entry, &path, &header, mode, Some(&f))?;
                set_mtime(&path, mtime)?;
            }
            EntryType::Directory => {
                if !path.is_dir() {
                    mkdir(&path)?;
                }
                self.finish_metadata(&mut entry, &path, &header, mode, None)?;
                self.dirs.push((path.clone(), mtime));
            }
            EntryType::Symlink => {
                let target = entry
                    .link_name()
                    .map_err(Error::Tar)?
                    .ok_or_else(|| unsafe_entry(&raw, "symlink without a target"))?;
                std::os::unix::fs::symlink(&target, &path).map_err(Error::io("symlink", &path))?;
                self.chown(&path, &header)?;
                self.xattrs(&mut entry, &path)?;
                set_mtime(&path, mtime)?;
            }
            EntryType::Link => {
                let target_raw = entry
                    .link_name()
                    .map_err(Error::Tar)?
                    .ok_or_else(|| unsafe_entry(&raw, "hard link without a target"))?
                    .into_owned();
                let target_rel = clean(&target_raw).map_err(|_| {
                    unsafe_entry(
                        &raw,
                        format!("hard link to {target_raw:?} outside the layer"),
                    )
                })?;
                let target = self.prepare_parent(&raw, &target_rel)?;
                if fs::symlink_metadata(&target).is_err() {
                    return Err(unsafe_entry(
                        &raw,
                        format!("hard link to {target_raw:?}, which the layer does not contain"),
                    ));
                }
                fs::hard_link(&target, &path).map_err(Error::io("link", &path))?;
            }
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                let (sflag, dev) = match kind {
                    EntryType::Char => (SFlag::S_IFCHR, device(&header)?),
                    EntryType::Block => (SFlag::S_IFBLK, device(&header)?),
                    _ => (SFlag::S_IFIFO, 0),
                };
                mknod(&path, sflag, Mode::from_bits_truncate(mode), dev)
                    .map_err(|e| Error::io("mknod", &path)(e.into()))?;
                self.finish_metadata(&mut entry, &path, &header, mode, None)?;
                set_mtime(&path, mtime)?;
            }
            other => {
                return Err(unsafe_entry(
                    &raw,
                    format!("unsupported tar entry type {other:?}"),
                ));
            }
        }
        if self.opts.whiteouts == Whiteouts::Apply {
            self.written.insert(rel);
        }
        Ok(())
    }

    fn whiteout(&mut self, raw: &Path, rel: &Path, name: &[u8]) -> Result<(), Error> {
        let parent_rel = rel.parent().unwrap_or(Path::new(""));
        let parent = self
            .prepare_parent(raw, rel)?
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        if name == OPAQUE_WHITEOUT.as_bytes() {
            match self.opts.whiteouts {
                Whiteouts::Overlay => set_xattr(&parent, OVERLAY_OPAQUE_XATTR, b"y")?,
                Whiteouts::Apply => {
                    for child in fs::read_dir(&parent).map_err(Error::io("read", &parent))? {
                        let child = child.map_err(Error::io("read", &parent))?;
                        let child_rel = parent_rel.join(child.file_name());
                        if !self.written.contains(&child_rel) {
                            remove_any(&child.path())?;
                        }
                    }
                }
            }
            return Ok(());
        }
        let hidden = &name[WHITEOUT_PREFIX.len()..];
        if hidden.starts_with(WHITEOUT_PREFIX.as_bytes())
            || hidden.is_empty()
            || hidden == b"."
            || hidden == b".."
        {
            // AUFS metadata such as .wh..wh.plnk carries nothing for us.
            return Ok(());
        }
        let target = parent.join(OsStr::from_bytes(hidden));
        match self.opts.whiteouts {
            Whiteouts::Overlay => {
                if fs::symlink_metadata(&target).is_ok() {
                    remove_any(&target)?;
                }
                mknod(&target, SFlag::S_IFCHR, Mode::empty(), 0)
                    .map_err(|e| Error::io("mknod whiteout", &target)(e.into()))?;
            }
            Whiteouts::Apply => {
                if fs::symlink_metadata(&target).is_ok() {
                    remove_any(&target)?;
                }
            }
        }
        Ok(())
    }

    fn chown(&self, path: &Path, header: &tar::Header) -> Result<(), Error> {
        if !self.opts.same_owner {
            return Ok(());
        }
        // Go's archive/tar reads an empty numeric field as 0, and tars
        // written by Go tools rely on it.
        let uid = header.uid().unwrap_or(0) as u32;
        let gid = header.gid().unwrap_or(0) as u32;
        fchownat(
            None,
            path,
            Some(Uid::from_raw(uid)),
            Some(Gid::from_raw(gid)),
            AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .map_err(|e| Error::io("chown", path)(e.into()))
    }

    fn finish_metadata<R: Read>(
        &self,
        entry: &mut tar::Entry<'_, R>,
        path: &Path,
        header: &tar::Header,
        mode: u32,
        file: Option<&File>,
    ) -> Result<(), Error> {
        // chown before chmod: chown clears the set-id bits.
        self.chown(path, header)?;
        let perms = fs::Permissions::from_mode(mode);
        match file {
            Some(f) => f.set_permissions(perms),
            None => fs::set_permissions(path, perms),
        }
        .map_err(Error::io("chmod", path))?;
        self.xattrs(entry, path)
    }

    fn xattrs<R: Read>(&self, entry: &mut tar::Entry<'_, R>, path: &Path) -> Result<(), Error> {
        let Some(exts) = entry.pax_extensions().map_err(Error::Tar)? else {
            return Ok(());
        };
        for ext in exts {
            let ext = ext.map_err(Error::Tar)?;
            let Ok(key) = ext.key() else { continue };
            let Some(name) = key.strip_prefix("SCHILY.xattr.") else {
                continue;
            };
            // overlayfs reads trusted.overlay.* as instructions (opaque,
            // redirect, metacopy); a layer must not smuggle them in.
            if name.starts_with("trusted.overlay.") {
                continue;
            }
            set_xattr(path, name, ext.value_bytes())?;
        }
        Ok(())
    }
}

fn device(header: &tar::Header) -> Result<u64, Error> {
    let major = header.device_major().map_err(Error::Tar)?.unwrap_or(0);
    let minor = header.device_minor().map_err(Error::Tar)?.unwrap_or(0);
    Ok(nix::sys::stat::makedev(major as u64, minor as u64))
}

fn mkdir(path: &Path) -> Result<(), Error> {
    match fs::create_dir(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && path.is_dir() => Ok(()),
        Err(e) => Err(Error::io("mkdir", path)(e)),
    }
}

fn remove_any(path: &Path) -> Result<(), Error> {
    let m = fs::symlink_metadata(path).map_err(Error::io("stat", path))?;
    if m.is_dir() {
        fs::remove_dir_all(path)
    } else {
        fs::remove_file(path)
    }
    .map_err(Error::io("remove", path))
}

fn cpath(path: &Path) -> Result<CString, Error> {
    CString::new(path.as_os_str().as_bytes()).map_err(|e| Error::io("path", path)(e.into()))
}

fn set_xattr(path: &Path, name: &str, value: &[u8]) -> Result<(), Error> {
    let p = cpath(path)?;
    let n = CString::new(name).map_err(|e| Error::io("xattr name", path)(e.into()))?;
    // SAFETY: both strings are NUL-terminated and the value slice is valid for its length.
    let rc = unsafe {
        libc::lsetxattr(
            p.as_ptr(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    if rc != 0 {
        return Err(Error::io("setxattr", path)(io::Error::last_os_error()));
    }
    Ok(())
}

fn set_mtime(path: &Path, mtime: u64) -> Result<(), Error> {
    let p = cpath(path)?;
    let ts = libc::timespec {
        tv_sec: mtime as libc::time_t,
        tv_nsec: 0,
    };
    let times = [ts, ts];
    // SAFETY: valid NUL-terminated path and a two-element timespec array.
    let rc = unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            p.as_ptr(),
            times.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if rc != 0 {
        return Err(Error::io("set times", path)(io::Error::last_os_error()));
    }
    Ok(())
}

/// Whether `path` is an overlayfs whiteout (a 0/0 character device).
pub fn is_overlay_whiteout(meta: &fs::Metadata) -> bool {
    use std::os::unix::fs::FileTypeExt;
    meta.file_type().is_char_device() && meta.rdev() == 0
}
