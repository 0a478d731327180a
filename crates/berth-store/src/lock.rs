//! Process scratch areas and the store-wide lock, both flock(2) based: the
//! kernel drops a flock when its holder dies, so a crash never leaves a lock
//! behind.

use std::fs::{self, File, OpenOptions};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use crate::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockMode {
    Shared,
    Exclusive,
}

pub struct LockGuard {
    _file: File,
}

fn flock(file: &File, op: libc::c_int) -> std::io::Result<()> {
    loop {
        // SAFETY: flock on an fd we own.
        if unsafe { libc::flock(file.as_raw_fd(), op) } == 0 {
            return Ok(());
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

impl LockGuard {
    pub(crate) fn take(path: &Path, mode: LockMode) -> Result<LockGuard> {
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .map_err(Error::io("open lock", path))?;
        let op = match mode {
            LockMode::Shared => libc::LOCK_SH,
            LockMode::Exclusive => libc::LOCK_EX,
        };
        flock(&file, op).map_err(Error::io("lock", path))?;
        Ok(LockGuard { _file: file })
    }
}

/// A per-process directory under `tmp/`, whose `.lock` file is held for as
/// long as the process lives.
pub(crate) struct Scratch {
    path: PathBuf,
    _lock: File,
}

static SEQ: AtomicU32 = AtomicU32::new(0);
const NEW_PREFIX: &str = ".new-";

impl Scratch {
    pub(crate) fn create(tmp: &Path) -> Result<Scratch> {
        loop {
            let name = format!(
                "{}-{}",
                std::process::id(),
                SEQ.fetch_add(1, Ordering::Relaxed)
            );
            // Built under a name cleaners skip, and renamed once its lock is
            // held: otherwise another process could find it unlocked in the
            // moment between mkdir and flock and take it for a dead one's.
            let building = tmp.join(format!("{NEW_PREFIX}{name}"));
            let path = tmp.join(&name);
            match fs::create_dir(&building) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(Error::io("create", &building)(e)),
            }
            let lock_path = building.join(".lock");
            let lock = File::create(&lock_path).map_err(Error::io("create", &lock_path))?;
            flock(&lock, libc::LOCK_EX).map_err(Error::io("lock", &lock_path))?;
            if path.exists() {
                // Left by a dead process with our pid; clean_stale will get it.
                let _ = fs::remove_dir_all(&building);
                continue;
            }
            fs::rename(&building, &path).map_err(Error::io("rename", &path))?;
            return Ok(Scratch { path, _lock: lock });
        }
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

/// Removes scratch directories whose owner is gone (their lock can be taken).
pub(crate) fn clean_stale(tmp: &Path) -> Result<()> {
    let entries = fs::read_dir(tmp).map_err(Error::io("read", tmp))?;
    for entry in entries.flatten() {
        let path = entry.path();
        let lock_path = path.join(".lock");
        let building = entry.file_name().to_string_lossy().starts_with(NEW_PREFIX);
        let stale = if building {
            // Being set up right now, or abandoned mid-setup long ago.
            entry
                .metadata()
                .and_then(|m| m.modified())
                .map(|t| t.elapsed().map(|d| d.as_secs() > 60).unwrap_or(false))
                .unwrap_or(false)
        } else {
            match File::open(&lock_path) {
                // SAFETY: flock on an fd we own.
                Ok(f) => unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) == 0 },
                // Complete scratch dirs always hold a lock file.
                Err(_) => true,
            }
        };
        if stale {
            let _ = fs::remove_dir_all(&path);
        }
    }
    Ok(())
}
