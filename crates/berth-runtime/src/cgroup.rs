//! A container's cgroup: usage for `stats`, the processes for `top`,
//! whether the kernel's OOM killer struck, and changing its limits in
//! place for `update`. Works on cgroup v1 (one hierarchy per controller)
//! and v2 (one unified tree).

use std::fs;
use std::path::{Path, PathBuf};

use crate::spec::Resources;
use crate::{Error, Result};

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
    /// Inactive file cache, counted in `memory_usage` but reclaimable
    /// (what Docker's CLI leaves out of MEM USAGE).
    pub memory_inactive_file: u64,
    /// Bytes read from and written to block devices.
    pub block_read: u64,
    pub block_write: u64,
}

pub struct Cgroup {
    version: Version,
    /// Path below each hierarchy's root, e.g. `berth/<id>`.
    rel: PathBuf,
}

fn read_u64(p: &Path) -> Option<u64> {
    fs::read_to_string(p).ok()?.trim().parse().ok()
}

/// Sums the Read and Write entries of v1's blkio.*io_service_bytes
/// (`8:0 Read 4096` lines).
fn blkio_v1(text: &str) -> (u64, u64) {
    let (mut r, mut w) = (0, 0);
    for l in text.lines() {
        let f: Vec<&str> = l.split_whitespace().collect();
        if let [_, op, n] = f[..] {
            let n: u64 = n.parse().unwrap_or(0);
            if op.eq_ignore_ascii_case("read") {
                r += n;
            } else if op.eq_ignore_ascii_case("write") {
                w += n;
            }
        }
    }
    (r, w)
}

/// Sums rbytes/wbytes of v2's io.stat (`8:0 rbytes=4096 wbytes=0 …`).
fn io_stat_v2(text: &str) -> (u64, u64) {
    let (mut r, mut w) = (0, 0);
    for kv in text.split_whitespace() {
        if let Some(n) = kv.strip_prefix("rbytes=") {
            r += n.parse().unwrap_or(0);
        } else if let Some(n) = kv.strip_prefix("wbytes=") {
            w += n.parse().unwrap_or(0);
        }
    }
    (r, w)
}

/// runc's conversion of v1 cpu.shares (2..262144) to v2 cpu.weight
/// (1..10000).
pub fn shares_to_weight(shares: u64) -> u64 {
    if shares == 0 {
        return 100;
    }
    1 + (shares.clamp(2, 262_144) - 2) * 9999 / 262_142
}

fn write(dir: &Path, file: &str, value: &str) -> Result<()> {
    let p = dir.join(file);
    fs::write(&p, value).map_err(Error::io("write", p))
}

fn limit_v1(n: i64) -> String {
    if n < 0 {
        "-1".into()
    } else {
        n.to_string()
    }
}

fn limit_v2(n: i64) -> String {
    if n < 0 {
        "max".into()
    } else {
        n.to_string()
    }
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
                let blkio = self.dir("blkio");
                let (block_read, block_write) = [
                    "blkio.throttle.io_service_bytes_recursive",
                    "blkio.throttle.io_service_bytes",
                ]
                .iter()
                .find_map(|f| fs::read_to_string(blkio.join(f)).ok())
                .map(|t| blkio_v1(&t))
                .unwrap_or_default();
                Stats {
                    memory_usage: read_u64(&mem.join("memory.usage_in_bytes")).unwrap_or(0),
                    // v1 says "unlimited" with a huge page-rounded number.
                    memory_limit: limit.filter(|l| *l < (1 << 62)),
                    cpu_usage_ns: read_u64(&self.dir("cpuacct").join("cpuacct.usage")).unwrap_or(0),
                    pids: read_u64(&self.dir("pids").join("pids.current")).unwrap_or(0),
                    memory_inactive_file: keyed(&mem.join("memory.stat"), "total_inactive_file")
                        .unwrap_or(0),
                    block_read,
                    block_write,
                }
            }
            Version::V2 => {
                let d = self.dir("");
                let (block_read, block_write) = fs::read_to_string(d.join("io.stat"))
                    .map(|t| io_stat_v2(&t))
                    .unwrap_or_default();
                Stats {
                    memory_usage: read_u64(&d.join("memory.current")).unwrap_or(0),
                    memory_limit: read_u64(&d.join("memory.max")),
                    cpu_usage_ns: keyed(&d.join("cpu.stat"), "usage_usec").unwrap_or(0) * 1000,
                    pids: read_u64(&d.join("pids.current")).unwrap_or(0),
                    memory_inactive_file: keyed(&d.join("memory.stat"), "inactive_file")
                        .unwrap_or(0),
                    block_read,
                    block_write,
                }
            }
        }
    }

    /// Changes the limits of a live cgroup: every field of `r` that is
    /// `Some` is written, the others are left as they are. A negative
    /// memory, swap, reservation, quota or pids value means unlimited.
    /// `memory_swap` is memory plus swap, as Docker counts it.
    pub fn update(&self, r: &Resources) -> Result<()> {
        match self.version {
            Version::V1 => self.update_v1(r),
            Version::V2 => self.update_v2(r),
        }
    }

    fn update_v1(&self, r: &Resources) -> Result<()> {
        let mem = self.dir("memory");
        let memsw = mem.join("memory.memsw.limit_in_bytes");
        let swap = r.memory_swap.filter(|_| memsw.exists());
        match (r.memory, swap) {
            (Some(m), Some(s)) => {
                // The kernel keeps limit <= memsw.limit at every step, so
                // the order depends on whether the limits grow or shrink.
                if write(&mem, "memory.limit_in_bytes", &limit_v1(m)).is_err() {
                    write(&mem, "memory.memsw.limit_in_bytes", &limit_v1(s))?;
                    write(&mem, "memory.limit_in_bytes", &limit_v1(m))?;
                } else {
                    write(&mem, "memory.memsw.limit_in_bytes", &limit_v1(s))?;
                }
            }
            (Some(m), None) => write(&mem, "memory.limit_in_bytes", &limit_v1(m))?,
            (None, Some(s)) => write(&mem, "memory.memsw.limit_in_bytes", &limit_v1(s))?,
            (None, None) => {}
        }
        if let Some(v) = r.memory_reservation {
            write(&mem, "memory.soft_limit_in_bytes", &limit_v1(v))?;
        }
        let cpu = self.dir("cpu");
        if let Some(p) = r.cpu_period {
            write(&cpu, "cpu.cfs_period_us", &p.to_string())?;
        }
        if let Some(q) = r.cpu_quota {
            write(&cpu, "cpu.cfs_quota_us", &limit_v1(q))?;
        }
        if let Some(s) = r.cpu_shares {
            write(&cpu, "cpu.shares", &s.to_string())?;
        }
        if let Some(c) = &r.cpuset_cpus {
            write(&self.dir("cpuset"), "cpuset.cpus", c)?;
        }
        if let Some(p) = r.pids_limit {
            write(&self.dir("pids"), "pids.max", &pids_max(p))?;
        }
        Ok(())
    }

    fn update_v2(&self, r: &Resources) -> Result<()> {
        let d = self.dir("");
        if let Some(m) = r.memory {
            write(&d, "memory.max", &limit_v2(m))?;
        }
        if let Some(s) = r.memory_swap {
            // v2 limits swap alone: memory+swap minus memory.
            let value = if s < 0 {
                "max".to_string()
            } else {
                let m = match r.memory {
                    Some(m) if m >= 0 => Some(m as u64),
                    Some(_) => None,
                    None => read_u64(&d.join("memory.max")),
                };
                match m {
                    Some(m) => (s as u64).saturating_sub(m).to_string(),
                    None => "max".to_string(),
                }
            };
            if d.join("memory.swap.max").exists() {
                write(&d, "memory.swap.max", &value)?;
            }
        }
        if let Some(v) = r.memory_reservation {
            write(&d, "memory.low", &limit_v2(v))?;
        }
        if r.cpu_quota.is_some() || r.cpu_period.is_some() {
            let current = fs::read_to_string(d.join("cpu.max")).unwrap_or_default();
            let mut parts = current.split_whitespace();
            let cur_quota = parts.next().unwrap_or("max").to_string();
            let cur_period = parts.next().unwrap_or("100000").to_string();
            let quota = r.cpu_quota.map(limit_v2).unwrap_or(cur_quota);
            let period = r.cpu_period.map(|p| p.to_string()).unwrap_or(cur_period);
            write(&d, "cpu.max", &format!("{quota} {period}"))?;
        }
        if let Some(s) = r.cpu_shares {
            write(&d, "cpu.weight", &shares_to_weight(s).to_string())?;
        }
        if let Some(c) = &r.cpuset_cpus {
            write(&d, "cpuset.cpus", c)?;
        }
        if let Some(p) = r.pids_limit {
            write(&d, "pids.max", &pids_max(p))?;
        }
        Ok(())
    }
}

/// pids.max: 0 and below mean no limit (Docker's `--pids-limit -1`).
fn pids_max(p: i64) -> String {
    if p <= 0 {
        "max".into()
    } else {
        p.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_io_sums_reads_and_writes() {
        let v1 =
            "8:0 Read 4096\n8:0 Write 512\n8:0 Sync 0\n8:16 Read 1\n8:0 Total 4608\nTotal 4609\n";
        assert_eq!(blkio_v1(v1), (4097, 512));
        let v2 = "8:0 rbytes=100 wbytes=20 rios=1 wios=1 dbytes=0 dios=0\n8:16 rbytes=1 wbytes=2\n";
        assert_eq!(io_stat_v2(v2), (101, 22));
    }

    #[test]
    fn shares_map_to_weights_as_runc_does() {
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(1024), 39);
        assert_eq!(shares_to_weight(262_144), 10_000);
    }
}
