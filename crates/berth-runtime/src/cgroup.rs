//! Reading a container's cgroup: usage for `stats`, the processes for
//! `top`, and whether the kernel's OOM killer struck. Works on cgroup v1
//! (one hierarchy per controller) and v2 (one unified tree).

use std::fs;
use std::path::{Path, PathBuf};

const ROOT: &str = "/sys/fs/cgroup";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    V1,
    V2,
}

/// v2 only when the root itself is the unified hierarchy; a v1 host with
/// a cgroup2 mount beside its controllers ("hybrid") counts as v1.
pub fn version() -> Version {
    match nix::sys::statfs::statfs(ROOT) {
        Ok(s) if s.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC => Version::V2,
        _ => Version::V1,
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Stats {
    pub memory_usage: u64,
    /// None when unlimited.
    pub memory_limit: Option<u64>,
    /// Total CPU time in nanoseconds.
    pub cpu_usage_ns: u64,
    pub pids: u64,
}

pub struct Cgroup {
    version: Version,
    /// Path below each hierarchy's root, e.g. `berth/<id>`.
    rel: PathBuf,
}

fn read_u64(p: &Path) -> Option<u64> {
    fs::read_to_string(p).ok()?.trim().parse().ok()
}

fn keyed(p: &Path, key: &str) -> Option<u64> {
    fs::read_to_string(p).ok()?.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok())?
    })
}

impl Cgroup {
    /// `path` as in config.json's cgroupsPath.
    pub fn new(path: &str) -> Cgroup {
        Cgroup {
            version: version(),
            rel: PathBuf::from(path.trim_start_matches('/')),
        }
    }

    fn dir(&self, controller: &str) -> PathBuf {
        match self.version {
            Version::V1 => Path::new(ROOT).join(controller).join(&self.rel),
            Version::V2 => Path::new(ROOT).join(&self.rel),
        }
    }

    pub fn exists(&self) -> bool {
        self.dir("pids").exists() || self.dir("memory").exists()
    }

    /// Removes the (empty) cgroup from every hierarchy: what the runtime
    /// leaves when its own state is gone (a wiped runroot). A cgroup that
    /// still holds processes stays; so does one that is not there.
    pub fn remove(&self) {
        let dirs: Vec<PathBuf> = match self.version {
            Version::V1 => fs::read_dir(ROOT)
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.path().join(&self.rel))
                .collect(),
            Version::V2 => vec![self.dir("")],
        };
        for d in dirs {
            let _ = fs::remove_dir(d);
        }
    }

    /// Times the OOM killer killed a process in this cgroup.
    pub fn oom_kills(&self) -> u64 {
        match self.version {
            Version::V1 => keyed(&self.dir("memory").join("memory.oom_control"), "oom_kill"),
            Version::V2 => keyed(&self.dir("").join("memory.events"), "oom_kill"),
        }
        .unwrap_or(0)
    }

    /// Host pids of every process in the container.
    pub fn pids(&self) -> Vec<i32> {
        let file = self.dir("pids").join("cgroup.procs");
        let mut pids: Vec<i32> = fs::read_to_string(file)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect();
        pids.sort_unstable();
        pids
    }

    pub fn stats(&self) -> Stats {
        match self.version {
            Version::V1 => {
                let mem = self.dir("memory");
                let limit = read_u64(&mem.join("memory.limit_in_bytes"));
                Stats {
                    memory_usage: read_u64(&mem.join("memory.usage_in_bytes")).unwrap_or(0),
                    // v1 says "unlimited" with a huge page-rounded number.
                    memory_limit: limit.filter(|l| *l < (1 << 62)),
                    cpu_usage_ns: read_u64(&self.dir("cpuacct").join("cpuacct.usage")).unwrap_or(0),
                    pids: read_u64(&self.dir("pids").join("pids.current")).unwrap_or(0),
                }
            }
            Version::V2 => {
                let d = self.dir("");
                Stats {
                    memory_usage: read_u64(&d.join("memory.current")).unwrap_or(0),
                    memory_limit: read_u64(&d.join("memory.max")),
                    cpu_usage_ns: keyed(&d.join("cpu.stat"), "usage_usec").unwrap_or(0) * 1000,
                    pids: read_u64(&d.join("pids.current")).unwrap_or(0),
                }
            }
        }
    }
}
