//! `update`: changing a container's resource limits and restart policy
//! after create, with Docker's rules. The new values are saved in the
//! container's HostConfig (the next start uses them) and, when it runs,
//! written to its cgroup at once.

use berth_runtime::cgroup::Cgroup;
use berth_runtime::spec::Resources;

use super::limits::{check_cpuset, check_reservation, parse_bytes, parse_restart, MIN_MEMORY};
use super::{Container, HostConfig, Status};
use crate::{Engine, Error, Result};

/// What `update` changes; `None` leaves a setting as it is.
#[derive(Debug, Clone, Default)]
pub struct UpdateOptions {
    /// `--memory`: `64m`, `1g`, bytes.
    pub memory: Option<String>,
    /// `--memory-swap`: memory plus swap, `-1` for unlimited swap.
    pub memory_swap: Option<String>,
    pub memory_reservation: Option<String>,
    pub cpus: Option<f64>,
    pub cpu_shares: Option<i64>,
    pub cpuset_cpus: Option<String>,
    /// `--pids-limit`: 0 or -1 for unlimited.
    pub pids_limit: Option<i64>,
    /// `--restart`: `no`, `always`, `on-failure[:N]`, `unless-stopped`.
    pub restart: Option<String>,
}

impl UpdateOptions {
    /// Whether any setting was given.
    pub fn is_empty(&self) -> bool {
        self.memory.is_none()
            && self.memory_swap.is_none()
            && self.memory_reservation.is_none()
            && self.cpus.is_none()
            && self.cpu_shares.is_none()
            && self.cpuset_cpus.is_none()
            && self.pids_limit.is_none()
            && self.restart.is_none()
    }
}

fn invalid(msg: impl Into<String>) -> Error {
    Error::InvalidArgument(msg.into())
}

/// `--cpus` as nano CPUs, within what the host has.
fn nano_cpus(c: f64) -> Result<i64> {
    let max = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    if !(0.0..=max as f64).contains(&c) || (c > 0.0 && c < 0.01) {
        return Err(invalid(format!(
            "Range of CPUs is from 0.01 to {max}.00, as there are only {max} CPUs available"
        )));
    }
    Ok((c * 1e9) as i64)
}

/// The swap limit in force: Docker records twice the memory limit when
/// only `--memory` was given at create; Berth leaves it 0 and the runtime
/// config doubles it.
fn effective_swap(h: &HostConfig) -> i64 {
    if h.memory_swap == 0 && h.memory > 0 {
        h.memory * 2
    } else {
        h.memory_swap
    }
}

/// Parsed values of one update; 0 / None mean "not given", as in
/// Docker's resources struct.
#[derive(Debug, Default)]
struct Wanted {
    memory: i64,
    memory_swap: i64,
    memory_reservation: i64,
    nano_cpus: i64,
    cpu_shares: i64,
    cpuset_cpus: Option<String>,
    pids_limit: Option<i64>,
    restart: Option<super::RestartPolicy>,
}

/// Parses and checks the options alone (Docker's verifyContainerSettings
/// with update=true); nothing of the container is looked at yet.
fn parse(opts: &UpdateOptions) -> Result<Wanted> {
    let bytes = |v: &Option<String>| v.as_deref().map(parse_bytes).transpose();
    let memory = bytes(&opts.memory)?.unwrap_or(0);
    let memory_swap = match opts.memory_swap.as_deref() {
        Some("-1") => -1,
        Some(s) => parse_bytes(s)?,
        None => 0,
    };
    let memory_reservation = bytes(&opts.memory_reservation)?.unwrap_or(0);
    if memory != 0 && memory < MIN_MEMORY {
        return Err(invalid("Minimum memory limit allowed is 6MB"));
    }
    if memory > 0 && memory_swap > 0 && memory_swap < memory {
        return Err(invalid(
            "Minimum memoryswap limit should be larger than memory limit, see usage",
        ));
    }
    check_reservation(memory, memory_reservation)?;
    let nano_cpus = opts.cpus.map(nano_cpus).transpose()?.unwrap_or(0);
    if let Some(s) = opts.cpu_shares {
        if s < 0 {
            return Err(invalid(format!(
                "invalid argument \"{s}\" for \"-c, --cpu-shares\" flag"
            )));
        }
    }
    if let Some(c) = &opts.cpuset_cpus {
        check_cpuset(c)?;
    }
    let restart = opts.restart.as_deref().map(parse_restart).transpose()?;
    Ok(Wanted {
        memory,
        memory_swap,
        memory_reservation,
        nano_cpus,
        cpu_shares: opts.cpu_shares.unwrap_or(0),
        cpuset_cpus: opts.cpuset_cpus.clone(),
        pids_limit: opts.pids_limit,
        restart,
    })
}

/// Docker's UpdateContainer: merges `w` into `h`, refusing what conflicts
/// with the settings already there. Returns the cgroup writes for a
/// running container.
fn merge(h: &mut HostConfig, w: &Wanted) -> std::result::Result<Resources, String> {
    let mut r = Resources::default();
    if w.memory != 0 {
        let swap = effective_swap(h);
        if swap > 0 && w.memory > swap && w.memory_swap == 0 {
            return Err("Memory limit should be smaller than already set memoryswap limit, update the memoryswap at the same time".into());
        }
        // Record the swap limit in force, so that the new memory limit
        // does not silently move it: twice the old memory (what Docker
        // records at create), or none when there was no limit at all.
        if h.memory_swap == 0 {
            h.memory_swap = if swap > 0 { swap } else { -1 };
        }
        h.memory = w.memory;
        r.memory = Some(w.memory);
    }
    if w.memory_swap != 0 {
        if h.memory == 0 && w.memory_swap > 0 {
            return Err(
                "You should always set the Memory limit when using Memoryswap limit, see usage"
                    .into(),
            );
        }
        h.memory_swap = w.memory_swap;
        r.memory_swap = Some(w.memory_swap);
    }
    if w.memory_reservation != 0 {
        if h.memory > 0 && h.memory < w.memory_reservation {
            return Err(
                "Minimum memory limit can not be less than memory reservation limit, see usage"
                    .into(),
            );
        }
        h.memory_reservation = w.memory_reservation;
        r.memory_reservation = Some(w.memory_reservation);
    }
    if w.nano_cpus != 0 {
        h.nano_cpus = w.nano_cpus;
        r.cpu_quota = Some(w.nano_cpus / 10_000);
        r.cpu_period = Some(100_000);
    }
    if w.cpu_shares != 0 {
        h.cpu_shares = w.cpu_shares;
        r.cpu_shares = Some(w.cpu_shares as u64);
    }
    if let Some(c) = &w.cpuset_cpus {
        h.cpuset_cpus = c.clone();
        r.cpuset_cpus = Some(if c.is_empty() {
            online_cpus_text()
        } else {
            c.clone()
        });
    }
    if let Some(p) = w.pids_limit {
        h.pids_limit = (p > 0).then_some(p);
        r.pids_limit = Some(p);
    }
    if let Some(policy) = &w.restart {
        if h.auto_remove && policy.name != "no" {
            return Err(
                "Restart policy cannot be updated because AutoRemove is enabled for the container"
                    .into(),
            );
        }
        h.restart_policy = policy.clone();
    }
    Ok(r)
}

fn online_cpus_text() -> String {
    std::fs::read_to_string("/sys/devices/system/cpu/online")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "0".into())
}

/// The cgroup writes that put `h`'s limits back (undoing a partial
/// update).
fn restore(h: &HostConfig, changed: &Resources) -> Resources {
    let unlimited = |v: i64| if v > 0 { v } else { -1 };
    Resources {
        memory: changed.memory.map(|_| unlimited(h.memory)),
        memory_swap: changed.memory_swap.map(|_| unlimited(effective_swap(h))),
        memory_reservation: changed
            .memory_reservation
            .map(|_| unlimited(h.memory_reservation)),
        cpu_quota: changed.cpu_quota.map(|_| {
            if h.nano_cpus > 0 {
                h.nano_cpus / 10_000
            } else {
                -1
            }
        }),
        cpu_period: changed.cpu_period,
        cpu_shares: changed.cpu_shares.map(|_| {
            if h.cpu_shares > 0 {
                h.cpu_shares as u64
            } else {
                1024
            }
        }),
        cpuset_cpus: changed.cpuset_cpus.as_ref().map(|_| {
            if h.cpuset_cpus.is_empty() {
                online_cpus_text()
            } else {
                h.cpuset_cpus.clone()
            }
        }),
        pids_limit: changed.pids_limit.map(|_| h.pids_limit.unwrap_or(-1)),
    }
}

fn cannot_update(c: &Container, msg: impl std::fmt::Display) -> String {
    format!("Cannot update container {}: {msg}", c.id)
}

impl Engine {
    /// `docker update`: applies `opts` to the container `name`, live when
    /// it runs, and records them for its next start.
    pub fn update_container(&self, name: &str, opts: &UpdateOptions) -> Result<()> {
        let wanted = parse(opts)?;
        let mut c = self.container(name)?;
        if matches!(c.state.status, Status::Removing | Status::Dead) {
            return Err(Error::Conflict(cannot_update(
                &c,
                "container is marked for removal and cannot be \"update\"",
            )));
        }
        let old = c.spec.host.clone();
        let writes =
            merge(&mut c.spec.host, &wanted).map_err(|m| Error::Conflict(cannot_update(&c, m)))?;
        if c.state.status.is_live() {
            let cg = Cgroup::new(&crate::sys::cgroup_path(&c.id));
            // A restarting container has no cgroup between runs; its
            // monitor reads the saved record before the next one.
            if cg.exists() {
                if let Err(e) = cg.update(&writes) {
                    let _ = cg.update(&restore(&old, &writes));
                    return Err(Error::CannotUpdate {
                        id: c.id.clone(),
                        source: e,
                    });
                }
            }
        }
        self.save_spec(&c)?;
        self.emit_container(&c, "update", &[]);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(memory: i64, swap: i64) -> HostConfig {
        HostConfig {
            memory,
            memory_swap: swap,
            ..Default::default()
        }
    }

    fn wanted(opts: UpdateOptions) -> Wanted {
        parse(&opts).unwrap()
    }

    #[test]
    fn memory_follows_dockers_swap_rule() {
        let w = wanted(UpdateOptions {
            memory: Some("64m".into()),
            ..Default::default()
        });
        // No limit before: nothing to conflict with.
        let mut h = host(0, 0);
        let r = merge(&mut h, &w).unwrap();
        assert_eq!(r.memory, Some(64 << 20));
        assert_eq!((h.memory, h.memory_swap), (64 << 20, -1));
        // …and a second, larger one is no conflict either.
        let w2 = wanted(UpdateOptions {
            memory: Some("200m".into()),
            ..Default::default()
        });
        merge(&mut h, &w2).unwrap();
        assert_eq!(h.memory, 200 << 20);
        // `-m 16m` at create means 32m of memory+swap: 64m needs a swap too.
        let mut h = host(16 << 20, 0);
        let e = merge(&mut h, &w).unwrap_err();
        assert!(e.starts_with("Memory limit should be smaller than already set memoryswap limit"));
        // Within the doubled swap: fine, and the swap stays where it was.
        let mut h = host(48 << 20, 0);
        merge(&mut h, &w).unwrap();
        assert_eq!((h.memory, h.memory_swap), (64 << 20, 96 << 20));
    }

    #[test]
    fn bad_values_are_refused_with_dockers_words() {
        let e = |o: UpdateOptions| parse(&o).unwrap_err().to_string();
        assert_eq!(
            e(UpdateOptions {
                memory: Some("1m".into()),
                ..Default::default()
            }),
            "Minimum memory limit allowed is 6MB"
        );
        assert_eq!(
            e(UpdateOptions {
                memory: Some("64m".into()),
                memory_swap: Some("32m".into()),
                ..Default::default()
            }),
            "Minimum memoryswap limit should be larger than memory limit, see usage"
        );
        assert_eq!(
            e(UpdateOptions {
                memory_reservation: Some("1m".into()),
                ..Default::default()
            }),
            "Minimum memory reservation allowed is 6MB"
        );
        assert!(e(UpdateOptions {
            cpus: Some(1000.0),
            ..Default::default()
        })
        .starts_with("Range of CPUs is from 0.01 to"));
        assert!(e(UpdateOptions {
            cpuset_cpus: Some("0-x".into()),
            ..Default::default()
        })
        .starts_with("Invalid value 0-x for cpuset cpus"));
        assert!(e(UpdateOptions {
            cpuset_cpus: Some("4096".into()),
            ..Default::default()
        })
        .starts_with("Requested CPUs are not available - requested 4096"));
    }

    #[test]
    fn restart_policy_cannot_be_given_to_an_auto_removed_container() {
        let w = wanted(UpdateOptions {
            restart: Some("always".into()),
            ..Default::default()
        });
        let mut h = HostConfig {
            auto_remove: true,
            ..Default::default()
        };
        assert_eq!(
            merge(&mut h, &w).unwrap_err(),
            "Restart policy cannot be updated because AutoRemove is enabled for the container"
        );
        let mut h = HostConfig::default();
        merge(&mut h, &w).unwrap();
        assert_eq!(h.restart_policy.name, "always");
    }

    #[test]
    fn cpus_become_a_quota_and_pids_unlimited_is_none() {
        let w = wanted(UpdateOptions {
            cpus: Some(0.5),
            pids_limit: Some(-1),
            ..Default::default()
        });
        let mut h = HostConfig {
            pids_limit: Some(10),
            ..Default::default()
        };
        let r = merge(&mut h, &w).unwrap();
        assert_eq!((r.cpu_quota, r.cpu_period), (Some(50_000), Some(100_000)));
        assert_eq!(h.nano_cpus, 500_000_000);
        assert_eq!(h.pids_limit, None);
        assert_eq!(r.pids_limit, Some(-1));
    }
}
