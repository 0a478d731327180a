//! Extraction of real tar streams into real directories, including hostile ones.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use berth_layer::{extract, is_overlay_whiteout, Error, ExtractOptions, Whiteouts};
use tar::{EntryType, Header};

/// Builds tars byte by byte so tests can write names tar::Builder would refuse.
struct Tar(Vec<u8>);

impl Tar {
    fn new() -> Self {
        Tar(Vec::new())
    }

    fn entry(
        mut self,
        name: &str,
        kind: EntryType,
        link: Option<&str>,
        data: &[u8],
        mode: u32,
    ) -> Self {
        let mut h = Header::new_gnu();
        {
            let raw = h.as_old_mut();
            raw.name.fill(0);
            raw.name[..name.len()].copy_from_slice(name.as_bytes());
            if let Some(l) = link {
                raw.linkname.fill(0);
                raw.linkname[..l.len()].copy_from_slice(l.as_bytes());
            }
        }
        h.set_entry_type(kind);
        h.set_size(data.len() as u64);
        h.set_mode(mode);
        h.set_mtime(1_600_000_000);
        h.set_uid(0);
        h.set_gid(0);
        h.set_cksum();
        self.0.extend_from_slice(h.as_bytes());
        self.0.extend_from_slice(data);
        let pad = (512 - data.len() % 512) % 512;
        self.0.extend(std::iter::repeat_n(0u8, pad));
        self
    }

    fn file(self, name: &str, data: &[u8]) -> Self {
        self.entry(name, EntryType::Regular, None, data, 0o644)
    }
    fn dir(self, name: &str) -> Self {
        self.entry(name, EntryType::Directory, None, b"", 0o755)
    }
    fn symlink(self, name: &str, target: &str) -> Self {
        self.entry(name, EntryType::Symlink, Some(target), b"", 0o777)
    }
    fn hardlink(self, name: &str, target: &str) -> Self {
        self.entry(name, EntryType::Link, Some(target), b"", 0o644)
    }
    fn finish(mut self) -> Vec<u8> {
        self.0.extend(std::iter::repeat_n(0u8, 1024));
        self.0
    }
}

fn opts(whiteouts: Whiteouts) -> ExtractOptions {
    ExtractOptions {
        whiteouts,
        same_owner: nix::unistd::geteuid().is_root(),
    }
}

/// Every path under `root`, sorted, for proving nothing else appeared.
fn listing(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        for e in fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            out.push(p.strip_prefix(root).unwrap().display().to_string());
            if e.file_type().unwrap().is_dir() {
                walk(root, &p, out);
            }
        }
    }
    walk(root, root, &mut out);
    out.sort();
    out
}

/// A sandbox: `outer/` holds `target/` (where the layer goes) and a sentinel
/// file the hostile layers aim at.
fn sandbox() -> (tempfile::TempDir, std::path::PathBuf) {
    let t = tempfile::tempdir().unwrap();
    let target = t.path().join("target");
    fs::create_dir(&target).unwrap();
    fs::write(t.path().join("victim"), b"original").unwrap();
    (t, target)
}

fn assert_refused(tar: Vec<u8>, entry: &str, why: &str) {
    let (t, target) = sandbox();
    let before = listing(t.path());
    let err = extract(&tar[..], &target, &opts(Whiteouts::Overlay)).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, Error::Unsafe { .. }), "{msg}");
    assert!(msg.contains(entry), "error {msg:?} should name {entry:?}");
    assert!(msg.contains(why), "error {msg:?} should say {why:?}");
    // Nothing outside target changed; the victim is intact.
    let after: Vec<String> = listing(t.path())
        .into_iter()
        .filter(|p| !p.starts_with("target"))
        .collect();
    let before: Vec<String> = before
        .into_iter()
        .filter(|p| !p.starts_with("target"))
        .collect();
    assert_eq!(before, after);
    assert_eq!(fs::read(t.path().join("victim")).unwrap(), b"original");
}

#[test]
fn refuses_parent_traversal() {
    let tar = Tar::new().file("a/../../victim", b"pwned").finish();
    assert_refused(tar, "a/../../victim", "\"..\"");
}

#[test]
fn refuses_absolute_path() {
    let (t, _) = sandbox();
    let abs = t.path().join("victim");
    let tar = Tar::new().file(abs.to_str().unwrap(), b"pwned").finish();
    let target = t.path().join("target");
    let err = extract(&tar[..], &target, &opts(Whiteouts::Overlay)).unwrap_err();
    assert!(err.to_string().contains("absolute path"), "{err}");
    assert_eq!(fs::read(&abs).unwrap(), b"original");
}

#[test]
fn refuses_write_through_symlink() {
    let tar = Tar::new()
        .symlink("link", "..")
        .file("link/victim", b"pwned")
        .finish();
    assert_refused(tar, "link/victim", "symlink");
}

#[test]
fn refuses_write_through_absolute_symlink() {
    let (t, target) = sandbox();
    let tar = Tar::new()
        .symlink("etc", t.path().to_str().unwrap())
        .file("etc/victim", b"pwned")
        .finish();
    let err = extract(&tar[..], &target, &opts(Whiteouts::Apply)).unwrap_err();
    assert!(err.to_string().contains("etc/victim"), "{err}");
    assert_eq!(fs::read(t.path().join("victim")).unwrap(), b"original");
}

#[test]
fn refuses_hardlink_escape() {
    let tar = Tar::new().hardlink("h", "../victim").finish();
    assert_refused(tar, "h", "outside the layer");
    let tar = Tar::new()
        .symlink("s", "..")
        .hardlink("h", "s/victim")
        .finish();
    assert_refused(tar, "\"h\"", "symlink");
}

#[test]
fn refuses_whiteout_outside() {
    let tar = Tar::new().file("../.wh.victim", b"").finish();
    assert_refused(tar, "../.wh.victim", "\"..\"");
}

#[test]
fn keeps_modes_links_times_and_digest() {
    let t = tempfile::tempdir().unwrap();
    let tar = Tar::new()
        .dir("bin/")
        .entry("bin/busybox", EntryType::Regular, None, b"#!binary", 0o4755)
        .symlink("bin/sh", "busybox")
        .hardlink("bin/ash", "bin/busybox")
        .entry("tmp/", EntryType::Directory, None, b"", 0o1777)
        .finish();
    let got = extract(&tar[..], t.path(), &opts(Whiteouts::Overlay)).unwrap();
    assert_eq!(got.size, tar.len() as u64);
    assert_eq!(got.diff_id, berth_oci::Digest::sha256_of(&tar));
    let bb = fs::metadata(t.path().join("bin/busybox")).unwrap();
    assert_eq!(bb.permissions().mode() & 0o7777, 0o4755);
    assert_eq!(bb.nlink(), 2);
    assert_eq!(bb.mtime(), 1_600_000_000);
    assert_eq!(
        fs::read_link(t.path().join("bin/sh")).unwrap(),
        Path::new("busybox")
    );
    assert_eq!(fs::read(t.path().join("bin/ash")).unwrap(), b"#!binary");
    let tmp = fs::metadata(t.path().join("tmp")).unwrap();
    assert_eq!(tmp.permissions().mode() & 0o7777, 0o1777);
    assert_eq!(tmp.mtime(), 1_600_000_000);
    assert_eq!(
        fs::metadata(t.path().join("bin")).unwrap().mtime(),
        1_600_000_000
    );
}

#[test]
fn gzip_is_sniffed() {
    use std::io::Write;
    let tar = Tar::new().file("hello", b"world").finish();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&tar).unwrap();
    let gz = gz.finish().unwrap();
    let t = tempfile::tempdir().unwrap();
    let got = extract(
        berth_layer::decompress(&gz[..]).unwrap(),
        t.path(),
        &opts(Whiteouts::Apply),
    )
    .unwrap();
    assert_eq!(got.diff_id, berth_oci::Digest::sha256_of(&tar));
    assert_eq!(fs::read(t.path().join("hello")).unwrap(), b"world");
}

#[test]
fn whiteouts_applied() {
    let t = tempfile::tempdir().unwrap();
    let lower = Tar::new()
        .dir("etc/")
        .file("etc/keep", b"1")
        .file("etc/gone", b"2")
        .dir("var/")
        .file("var/old", b"3")
        .finish();
    extract(&lower[..], t.path(), &opts(Whiteouts::Apply)).unwrap();
    let upper = Tar::new()
        .file("etc/.wh.gone", b"")
        .dir("var/")
        .file("var/new", b"4")
        .file("var/.wh..wh..opq", b"")
        .finish();
    extract(&upper[..], t.path(), &opts(Whiteouts::Apply)).unwrap();
    assert_eq!(listing(t.path()), ["etc", "etc/keep", "var", "var/new"]);
}

#[test]
fn whiteouts_as_overlay_devices() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("SKIPPED whiteouts_as_overlay_devices: needs root for mknod and trusted xattrs");
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let tar = Tar::new()
        .file("etc/.wh.passwd", b"")
        .dir("var/")
        .file("var/.wh..wh..opq", b"")
        .finish();
    extract(&tar[..], t.path(), &opts(Whiteouts::Overlay)).unwrap();
    let m = fs::symlink_metadata(t.path().join("etc/passwd")).unwrap();
    assert!(is_overlay_whiteout(&m));
    let mut buf = [0u8; 8];
    let p = std::ffi::CString::new(t.path().join("var").to_str().unwrap()).unwrap();
    // SAFETY: valid path and buffer.
    let n = unsafe {
        libc::lgetxattr(
            p.as_ptr(),
            c"trusted.overlay.opaque".as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    assert_eq!(&buf[..n as usize], b"y");
    assert!(!t.path().join("var/.wh..wh..opq").exists());
}

#[test]
fn truncated_stream_is_an_error() {
    let tar = Tar::new().file("big", &[7u8; 4096]).finish();
    let t = tempfile::tempdir().unwrap();
    let err = extract(&tar[..1000], t.path(), &opts(Whiteouts::Apply)).unwrap_err();
    assert!(matches!(err, Error::Tar(_)), "{err}");
}
