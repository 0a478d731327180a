//! Health checks: Docker's model and state machine. The probes run in the
//! container's monitor (`monitor.rs` schedules them in its poll loop);
//! what a result does to the state is decided here, with no I/O, so it is
//! tested without containers.

use std::time::Duration;

use berth_oci::{time, HealthConfig};
use serde::{Deserialize, Serialize};

/// Docker's defaults for a HEALTHCHECK that leaves a field unset.
const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
const DEFAULT_START_INTERVAL: Duration = Duration::from_secs(5);
const DEFAULT_RETRIES: i64 = 3;
/// Probes kept in `State.Health.Log`.
const MAX_LOG: usize = 5;
/// Bytes of a probe's output kept, as Docker keeps them.
pub(crate) const MAX_OUTPUT: usize = 4096;

pub const STARTING: &str = "starting";
pub const HEALTHY: &str = "healthy";
pub const UNHEALTHY: &str = "unhealthy";

/// `State.Health` as inspect shows it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Health {
    pub status: String,
    pub failing_streak: i64,
    pub log: Vec<HealthLog>,
}

/// One probe's result.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct HealthLog {
    pub start: String,
    pub end: String,
    pub exit_code: i64,
    pub output: String,
}

/// A container's health check, with Docker's defaults filled in.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Probe {
    /// What to exec in the container.
    pub argv: Vec<String>,
    pub interval: Duration,
    pub timeout: Duration,
    pub start_period: Duration,
    pub start_interval: Duration,
    pub retries: i64,
}

fn dur(ns: Option<i64>, default: Duration) -> Duration {
    match ns {
        Some(n) if n > 0 => Duration::from_nanos(n as u64),
        _ => default,
    }
}

impl Probe {
    /// None when the container has no check (none set, or `NONE`).
    pub fn of(cfg: Option<&HealthConfig>) -> Option<Probe> {
        let cfg = cfg?;
        let test = cfg.test.as_ref()?;
        let argv = match test.first().map(String::as_str) {
            Some("CMD") if test.len() > 1 => test[1..].to_vec(),
            Some("CMD-SHELL") if test.len() > 1 => {
                vec!["/bin/sh".into(), "-c".into(), test[1..].join(" ")]
            }
            _ => return None,
        };
        Some(Probe {
            argv,
            interval: dur(cfg.interval, DEFAULT_INTERVAL),
            timeout: dur(cfg.timeout, DEFAULT_TIMEOUT),
            start_period: dur(cfg.start_period, Duration::ZERO),
            start_interval: dur(cfg.start_interval, DEFAULT_START_INTERVAL),
            retries: cfg.retries.filter(|r| *r > 0).unwrap_or(DEFAULT_RETRIES),
        })
    }

    /// The wait before the next probe, `since_start` after the process
    /// started: the start interval while a start period runs and the
    /// container is not yet healthy, the interval after.
    pub fn next_delay(&self, since_start: Duration, status: &str) -> Duration {
        if status == STARTING && since_start < self.start_period {
            self.start_interval
        } else {
            self.interval
        }
    }
}

/// Merges `--health-*` over the image's HEALTHCHECK as Docker does: an
/// unset field of the container's takes the image's.
pub(crate) fn merge(
    user: Option<HealthConfig>,
    image: Option<&HealthConfig>,
) -> Option<HealthConfig> {
    let Some(mut u) = user else {
        return image.cloned();
    };
    let Some(i) = image else {
        return Some(u);
    };
    if u.test.as_ref().is_none_or(|t| t.is_empty()) {
        u.test = i.test.clone();
    }
    let pick = |a: Option<i64>, b: Option<i64>| a.filter(|v| *v != 0).or(b);
    u.interval = pick(u.interval, i.interval);
    u.timeout = pick(u.timeout, i.timeout);
    u.start_period = pick(u.start_period, i.start_period);
    u.start_interval = pick(u.start_interval, i.start_interval);
    u.retries = pick(u.retries, i.retries);
    Some(u)
}

/// What one probe gave.
#[derive(Debug, Clone)]
pub(crate) struct ProbeResult {
    pub start: i64,
    pub end: i64,
    /// -1 when the probe could not run or timed out.
    pub exit_code: i64,
    pub output: String,
}

impl Health {
    pub(crate) fn starting() -> Health {
        Health {
            status: STARTING.into(),
            failing_streak: 0,
            log: Vec::new(),
        }
    }

    /// Applies a result by Docker's rules; true when the status changed.
    /// A failure while the start period runs does not count against a
    /// container that has not been healthy yet.
    pub(crate) fn record(&mut self, r: ProbeResult, probe: &Probe, started_at: i64) -> bool {
        let before = self.status.clone();
        if r.exit_code == 0 {
            self.failing_streak = 0;
            self.status = HEALTHY.into();
        } else {
            let in_start = self.status == STARTING
                && !probe.start_period.is_zero()
                && r.start - started_at < probe.start_period.as_nanos() as i64;
            if !in_start {
                self.failing_streak += 1;
                if self.failing_streak >= probe.retries {
                    self.status = UNHEALTHY.into();
                }
            }
        }
        self.log.push(HealthLog {
            start: time::format_rfc3339(r.start),
            end: time::format_rfc3339(r.end),
            exit_code: r.exit_code,
            output: r.output,
        });
        if self.log.len() > MAX_LOG {
            let extra = self.log.len() - MAX_LOG;
            self.log.drain(..extra);
        }
        self.status != before
    }

    /// What `ps` shows after `Up 3 seconds`.
    pub fn status_suffix(&self) -> String {
        if self.status == STARTING {
            "(health: starting)".into()
        } else {
            format!("({})", self.status)
        }
    }
}

/// Docker's output of a probe: its first 4096 bytes, `...` when cut.
pub(crate) fn output_text(bytes: &[u8], truncated: bool) -> String {
    let mut s = String::from_utf8_lossy(bytes).into_owned();
    if truncated {
        s.push_str("...");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(test: &[&str]) -> HealthConfig {
        HealthConfig {
            test: Some(test.iter().map(|s| s.to_string()).collect()),
            ..Default::default()
        }
    }

    fn result(start: i64, code: i64) -> ProbeResult {
        ProbeResult {
            start,
            end: start + 1,
            exit_code: code,
            output: String::new(),
        }
    }

    #[test]
    fn forms_and_defaults() {
        let p = Probe::of(Some(&cfg(&["CMD-SHELL", "test -e /ready"]))).unwrap();
        assert_eq!(p.argv, ["/bin/sh", "-c", "test -e /ready"]);
        assert_eq!(p.interval, Duration::from_secs(30));
        assert_eq!(p.retries, 3);
        let p = Probe::of(Some(&cfg(&["CMD", "true", "x"]))).unwrap();
        assert_eq!(p.argv, ["true", "x"]);
        assert!(Probe::of(Some(&cfg(&["NONE"]))).is_none());
        assert!(Probe::of(Some(&cfg(&[]))).is_none());
        assert!(Probe::of(None).is_none());
    }

    #[test]
    fn merge_takes_unset_fields_from_the_image() {
        let image = HealthConfig {
            test: Some(vec!["CMD".into(), "true".into()]),
            interval: Some(5),
            retries: Some(7),
            ..Default::default()
        };
        let user = HealthConfig {
            interval: Some(1),
            ..Default::default()
        };
        let m = merge(Some(user), Some(&image)).unwrap();
        assert_eq!(m.test, image.test);
        assert_eq!(m.interval, Some(1));
        assert_eq!(m.retries, Some(7));
        let none = merge(Some(cfg(&["NONE"])), Some(&image)).unwrap();
        assert!(Probe::of(Some(&none)).is_none());
        assert_eq!(merge(None, Some(&image)), Some(image));
    }

    #[test]
    fn state_machine_as_docker() {
        let mut c = cfg(&["CMD", "x"]);
        c.retries = Some(2);
        let p = Probe::of(Some(&c)).unwrap();
        let mut h = Health::starting();
        assert!(!h.record(result(10, 1), &p, 0));
        assert_eq!((h.status.as_str(), h.failing_streak), (STARTING, 1));
        assert!(h.record(result(20, 1), &p, 0));
        assert_eq!(h.status, UNHEALTHY);
        assert!(h.record(result(30, 0), &p, 0));
        assert_eq!((h.status.as_str(), h.failing_streak), (HEALTHY, 0));
        for i in 0..7 {
            h.record(result(40 + i, 1), &p, 0);
        }
        assert_eq!(h.log.len(), 5);
        assert_eq!(h.status, UNHEALTHY);
        assert_eq!(h.status_suffix(), "(unhealthy)");
    }

    #[test]
    fn start_period_failures_do_not_count() {
        let mut c = cfg(&["CMD", "x"]);
        c.retries = Some(1);
        c.start_period = Some(1_000);
        let p = Probe::of(Some(&c)).unwrap();
        let mut h = Health::starting();
        h.record(result(500, 1), &p, 0);
        assert_eq!((h.status.as_str(), h.failing_streak), (STARTING, 0));
        assert_eq!(h.status_suffix(), "(health: starting)");
        h.record(result(1_500, 1), &p, 0);
        assert_eq!(h.status, UNHEALTHY);
        // The start interval applies while it runs.
        assert_eq!(
            p.next_delay(Duration::from_nanos(10), STARTING),
            Duration::from_secs(5)
        );
        assert_eq!(
            p.next_delay(Duration::from_secs(10), STARTING),
            Duration::from_secs(30)
        );
    }

    #[test]
    fn output_is_cut_as_docker_cuts_it() {
        assert_eq!(output_text(b"ok\n", false), "ok\n");
        assert_eq!(output_text(b"abc", true), "abc...");
    }
}
