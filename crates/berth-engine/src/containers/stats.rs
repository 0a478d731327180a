//! `stats`: one reading of a container's resource usage, with the host
//! figures Docker's CPU % needs, and Docker's arithmetic over two
//! readings. The CLI and a streaming API endpoint take readings at their
//! own pace and render them.

use std::fs;

use berth_oci::time;
use berth_runtime::cgroup::Cgroup;
use serde::Serialize;

use super::{Container, Status};
use crate::Engine;

/// One reading, as Docker's stats API reports it.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct StatsSample {
    /// When it was taken, nanoseconds since the epoch.
    pub read: i64,
    /// Whether the container was running (a stopped one reads all zeros).
    pub running: bool,
    /// CPU time the container used, in nanoseconds.
    pub cpu_usage_ns: u64,
    /// CPU time the whole host used (busy and idle), in nanoseconds.
    pub system_cpu_ns: u64,
    pub online_cpus: u32,
    pub memory_usage: u64,
    /// Reclaimable page cache counted in `memory_usage`.
    pub memory_inactive_file: u64,
    /// The cgroup's limit, or the host's memory when it has none.
    pub memory_limit: u64,
    /// Bytes received and sent on the container's interfaces (not `lo`).
    pub net_rx: u64,
    pub net_tx: u64,
    /// Bytes read from and written to block devices.
    pub block_read: u64,
    pub block_write: u64,
    pub pids: u64,
}

impl StatsSample {
    /// Docker's CPU %: the container's share of the host's CPU time
    /// between two readings, times the online CPUs (so one busy CPU of two
    /// reads 100%).
    pub fn cpu_percent(&self, prev: &StatsSample) -> f64 {
        let cpu = self.cpu_usage_ns.saturating_sub(prev.cpu_usage_ns) as f64;
        let system = self.system_cpu_ns.saturating_sub(prev.system_cpu_ns) as f64;
        if cpu > 0.0 && system > 0.0 {
            cpu / system * f64::from(self.online_cpus.max(1)) * 100.0
        } else {
            0.0
        }
    }

    /// Memory in use less the inactive file cache, as Docker's CLI shows.
    pub fn memory_used(&self) -> u64 {
        if self.memory_inactive_file < self.memory_usage {
            self.memory_usage - self.memory_inactive_file
        } else {
            self.memory_usage
        }
    }

    pub fn memory_percent(&self) -> f64 {
        if self.memory_limit == 0 {
            0.0
        } else {
            self.memory_used() as f64 / self.memory_limit as f64 * 100.0
        }
    }
}

/// Host CPU time in nanoseconds: the first seven fields of /proc/stat's
/// `cpu` line (user … softirq), as Docker sums them.
fn system_cpu_ns() -> u64 {
    let text = fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(line) = text.lines().find(|l| l.starts_with("cpu ")) else {
        return 0;
    };
    let ticks: u64 = line
        .split_whitespace()
        .skip(1)
        .take(7)
        .filter_map(|v| v.parse::<u64>().ok())
        .sum();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let hz = if hz > 0 { hz as u64 } else { 100 };
    ticks * (1_000_000_000 / hz)
}

fn online_cpus() -> u32 {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    if n > 0 {
        n as u32
    } else {
        1
    }
}

/// Sums the receive and transmit bytes of /proc/net/dev (as seen from a
/// process, so its network namespace), leaving out loopback.
fn net_dev(text: &str) -> (u64, u64) {
    let (mut rx, mut tx) = (0, 0);
    for l in text.lines().skip(2) {
        let Some((name, rest)) = l.split_once(':') else {
            continue;
        };
        if name.trim() == "lo" {
            continue;
        }
        let f: Vec<u64> = rest
            .split_whitespace()
            .map(|v| v.parse().unwrap_or(0))
            .collect();
        if f.len() >= 9 {
            rx += f[0];
            tx += f[8];
        }
    }
    (rx, tx)
}

impl Engine {
    /// One reading of the container's cgroup and interfaces. A container
    /// that is not running reads as zeros (with the host figures, so a
    /// later reading still has a base).
    pub fn container_stats(&self, c: &Container) -> StatsSample {
        let host_memory = crate::system::mem_total();
        let mut s = StatsSample {
            read: time::now_nanos(),
            system_cpu_ns: system_cpu_ns(),
            online_cpus: online_cpus(),
            memory_limit: host_memory,
            ..Default::default()
        };
        if !matches!(c.state.status, Status::Running | Status::Paused) {
            return s;
        }
        let cg = Cgroup::new(&crate::sys::cgroup_path(&c.id)).stats();
        s.running = true;
        s.cpu_usage_ns = cg.cpu_usage_ns;
        s.memory_usage = cg.memory_usage;
        s.memory_inactive_file = cg.memory_inactive_file;
        if let Some(l) = cg.memory_limit.filter(|l| *l > 0) {
            s.memory_limit = if host_memory > 0 {
                l.min(host_memory)
            } else {
                l
            };
        }
        s.block_read = cg.block_read;
        s.block_write = cg.block_write;
        s.pids = cg.pids;
        // The host's own interfaces are not the container's.
        if c.spec.host.network_mode != "host" && c.state.pid > 0 {
            let text =
                fs::read_to_string(format!("/proc/{}/net/dev", c.state.pid)).unwrap_or_default();
            (s.net_rx, s.net_tx) = net_dev(&text);
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn net_dev_sums_all_but_loopback() {
        let text = "Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:    1000      10    0    0    0     0          0         0     1000      10    0    0    0     0       0          0
  eth0:    2048      12    0    0    0     0          0         0      512       6    0    0    0     0       0          0
  eth1:       2       1    0    0    0     0          0         0        3       1    0    0    0     0       0          0
";
        assert_eq!(net_dev(text), (2050, 515));
    }

    #[test]
    fn cpu_percent_is_dockers_formula() {
        let prev = StatsSample {
            cpu_usage_ns: 1_000_000_000,
            system_cpu_ns: 10_000_000_000,
            online_cpus: 2,
            ..Default::default()
        };
        // Half a CPU-second over two host CPU-seconds (one wall second on
        // two CPUs): a quarter of the host, half of one CPU → 50%.
        let cur = StatsSample {
            cpu_usage_ns: 1_500_000_000,
            system_cpu_ns: 12_000_000_000,
            online_cpus: 2,
            ..Default::default()
        };
        assert!((cur.cpu_percent(&prev) - 50.0).abs() < 1e-9);
        assert_eq!(prev.cpu_percent(&prev), 0.0);
    }

    #[test]
    fn memory_leaves_out_inactive_cache() {
        let s = StatsSample {
            memory_usage: 100,
            memory_inactive_file: 40,
            memory_limit: 200,
            ..Default::default()
        };
        assert_eq!(s.memory_used(), 60);
        assert!((s.memory_percent() - 30.0).abs() < 1e-9);
    }
}
