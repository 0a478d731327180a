//! Shared test helpers: a private store per test and the busybox base image.
#![allow(dead_code)]

pub mod pty;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

pub const BERTH: &str = env!("CARGO_BIN_EXE_berth");

/// A store of its own under a temp dir, removed when the test ends.
pub struct TestStore {
    pub dir: tempfile::TempDir,
}

impl TestStore {
    pub fn new() -> Self {
        TestStore {
            dir: tempfile::Builder::new()
                .prefix("berth-test-")
                .tempdir()
                .unwrap(),
        }
    }

    pub fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(BERTH);
        c.arg("--root")
            .arg(self.root())
            .arg("--runroot")
            .arg(self.dir.path().join("run"))
            .args(args)
            .env_remove("BERTH_ROOT")
            .env_remove("BERTH_RUNROOT");
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).stdin(Stdio::null()).output().unwrap()
    }

    /// Runs and insists on success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "berth {args:?} failed ({}):\nstdout: {}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs and insists on failure; returns stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            !out.status.success(),
            "berth {args:?} should have failed:\nstdout: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8(out.stderr).unwrap()
    }

    /// Imports the busybox rootfs as `reference`; returns the image id.
    pub fn import_busybox(&self, reference: &str) -> String {
        let tar = busybox_rootfs();
        self.ok(&["import", tar.to_str().unwrap(), reference])
            .trim()
            .to_string()
    }

    pub fn runroot(&self) -> PathBuf {
        self.dir.path().join("run")
    }

    /// Starts a detached container; returns its id.
    pub fn detached(&self, args: &[&str]) -> String {
        let mut a = vec!["run", "-d"];
        a.extend_from_slice(args);
        self.ok(&a).trim().to_string()
    }

    /// Files under a store subdirectory (blobs/sha256, layers, tmp).
    pub fn entries(&self, sub: &str) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(self.root().join(sub))
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }
}

/// Removes every container (killing monitors and processes, unmounting,
/// deleting cgroups) even when the test failed half-way, then anything
/// still mounted under the test's directory.
impl Drop for TestStore {
    fn drop(&mut self) {
        if self.root().join("berth.db").exists() {
            let out = self.run(&["ps", "-aq", "--no-trunc"]);
            for id in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                let _ = self.run(&["rm", "-f", "-v", id]);
            }
            // User networks own host devices (a bridge, nft rules).
            let out = self.run(&["network", "ls", "-q", "--no-trunc", "-f", "type=custom"]);
            for id in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                let _ = self.run(&["network", "rm", id]);
            }
        }
        let dir = self.dir.path().to_string_lossy().into_owned();
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let mut points: Vec<&str> = mounts
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .filter(|m| m.starts_with(&dir))
            .collect();
        points.sort_by_key(|p| std::cmp::Reverse(p.len()));
        for m in points {
            let c = std::ffi::CString::new(m).unwrap();
            // SAFETY: umount2 with a valid C string.
            unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
        }
    }
}

/// Mount points under `dir` (to prove a test left none).
pub fn mounts_under(dir: &Path) -> Vec<String> {
    let d = dir.to_string_lossy().into_owned();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|m| m.starts_with(&d))
        .map(str::to_string)
        .collect()
}

/// The busybox root filesystem tar, built once per run by the same script
/// the README's demo uses, and shared by every test.
pub fn busybox_rootfs() -> &'static Path {
    static TAR: OnceLock<PathBuf> = OnceLock::new();
    TAR.get_or_init(|| {
        let bb = std::fs::metadata("/bin/busybox")
            .expect("/bin/busybox is missing: install Debian's busybox-static");
        let out =
            Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("busybox-rootfs-{}.tar", bb.len()));
        if !out.exists() {
            let script =
                Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/busybox-rootfs.sh");
            let status = Command::new("sh").arg(script).arg(&out).status().unwrap();
            assert!(status.success(), "building the busybox rootfs failed");
        }
        out
    })
}

/// A peer tool (skopeo, podman) if installed. CI sets BERTH_REQUIRE_PEERS=1
/// so a missing peer fails there instead of skipping.
pub fn peer(tool: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join(tool))
            .find(|c| c.is_file())
    });
    if found.is_none() {
        if std::env::var_os("BERTH_REQUIRE_PEERS").is_some_and(|v| v == "1") {
            panic!("{tool} is required (BERTH_REQUIRE_PEERS=1) but not installed");
        }
        eprintln!("SKIPPED: {tool} is not installed");
    }
    found
}

pub fn json(s: &str) -> serde_json::Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

/// Runs a peer tool and insists on success; returns stdout.
pub fn run_tool(tool: &Path, args: &[&str]) -> String {
    let o = Command::new(tool).args(args).output().unwrap();
    assert!(
        o.status.success(),
        "{} {args:?}: {}",
        tool.display(),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap()
}

/// sha256 of `data` in hex, by coreutils (an independent implementation
/// from the one under test).
pub fn sha256_hex(data: &[u8]) -> String {
    use std::io::Write;
    let mut child = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(data).unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8(out.stdout).unwrap()[..64].to_string()
}

/// A store with the busybox fixture imported as `busybox`.
pub fn store_with_busybox() -> TestStore {
    let s = TestStore::new();
    s.import_busybox("busybox");
    s
}

/// Polls `f` until it holds; panics naming `what` after 30 s. (A bound on
/// waiting, never a timing assertion.)
pub fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let end = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while std::time::Instant::now() < end {
        if f() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("timed out waiting for {what}");
}

/// `inspect -f TEMPLATE NAME`, trimmed.
pub fn inspect(s: &TestStore, name: &str, tmpl: &str) -> String {
    s.ok(&["inspect", "-f", tmpl, name]).trim().to_string()
}

/// The Python base image's root filesystem (Debian minbase + python3, by
/// scripts/python-rootfs.sh), built once per target dir: the first test
/// that needs it waits about a minute and a half.
pub fn python_rootfs() -> &'static Path {
    static TAR: OnceLock<PathBuf> = OnceLock::new();
    TAR.get_or_init(|| {
        let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("python-rootfs-bookworm.tar");
        // One builder at a time across test binaries running in parallel.
        let lock = std::fs::File::create(out.with_extension("lock")).unwrap();
        // SAFETY: flock on a file we own.
        unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&lock), libc::LOCK_EX) };
        if !out.exists() {
            let script =
                Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/python-rootfs.sh");
            let status = Command::new("sh").arg(script).arg(&out).status().unwrap();
            assert!(status.success(), "building the python rootfs failed");
        }
        out
    })
}

/// A TCP port free on the loopback right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The column names of a table's header line (columns sit two or more
/// spaces apart, as Docker's tab writer pads them).
pub fn header_columns(table: &str) -> Vec<&str> {
    table
        .lines()
        .next()
        .unwrap_or("")
        .split("  ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect()
}
