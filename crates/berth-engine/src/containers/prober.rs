//! Runs a container's health probes from its monitor: each probe is an
//! exec in the container through the runtime, its output read through a
//! pipe and its end seen through a pidfd, all in the monitor's poll loop
//! (no threads, no timers of the system's). A probe that outlives its
//! timeout is killed. What a result means is `health.rs`'s business.

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use berth_oci::time;
use berth_runtime::Stdio;

use super::exec::{devnull, ExecOptions};
use super::health::{output_text, Probe, ProbeResult, MAX_OUTPUT, STARTING};
use super::proc::{exit_code, pidfd_open, pidfd_signal, read_fd, set_nonblocking};
use super::Container;
use crate::Engine;

struct Running {
    pid: i32,
    pidfd: OwnedFd,
    out: Option<OwnedFd>,
    output: Vec<u8>,
    truncated: bool,
    start: i64,
    deadline: Instant,
    timed_out: bool,
    /// Set when the monitor's reaper collected it first.
    status: Option<i64>,
}

pub(crate) struct Prober {
    pub probe: Probe,
    /// When the container's process started (for the start period).
    started: Instant,
    next_at: Instant,
    running: Option<Running>,
}

impl Prober {
    pub fn new(probe: Probe) -> Prober {
        let now = Instant::now();
        let first = probe.next_delay(Duration::ZERO, STARTING);
        Prober {
            probe,
            started: now,
            next_at: now + first,
            running: None,
        }
    }

    /// How long the poll loop may sleep before `tick` has work.
    pub fn wait(&self) -> Duration {
        let at = match &self.running {
            Some(r) if !r.timed_out => r.deadline,
            Some(_) => return Duration::from_millis(100),
            None => self.next_at,
        };
        at.saturating_duration_since(Instant::now())
    }

    /// Starts a probe that is due and kills one past its timeout. A probe
    /// that could not even start is a result at once.
    pub fn tick(&mut self, engine: &Engine, c: &Container) -> Option<ProbeResult> {
        let now = Instant::now();
        if let Some(r) = self.running.as_mut() {
            if !r.timed_out && now >= r.deadline {
                let _ = pidfd_signal(&r.pidfd, libc::SIGKILL);
                r.timed_out = true;
            }
            return None;
        }
        if now < self.next_at {
            return None;
        }
        let start = time::now_nanos();
        match self.spawn(engine, c) {
            Ok((pid, pidfd, out)) => {
                self.running = Some(Running {
                    pid,
                    pidfd,
                    out: Some(out),
                    output: Vec::new(),
                    truncated: false,
                    start,
                    deadline: now + self.probe.timeout,
                    timed_out: false,
                    status: None,
                });
                None
            }
            Err(message) => Some(ProbeResult {
                start,
                end: time::now_nanos(),
                exit_code: -1,
                output: message,
            }),
        }
    }

    fn spawn(&self, engine: &Engine, c: &Container) -> Result<(i32, OwnedFd, OwnedFd), String> {
        let opts = ExecOptions {
            cmd: self.probe.argv.clone(),
            ..Default::default()
        };
        let spec = engine.exec_spec(c, &opts).map_err(|e| e.to_string())?;
        let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| e.to_string())?;
        let w2 = w.try_clone().map_err(|e| e.to_string())?;
        let stdio = Stdio::Fds {
            stdin: Some(devnull(false).map_err(|e| e.to_string())?),
            stdout: w,
            stderr: w2,
        };
        let rt = engine.runtime_for(c).map_err(|e| e.to_string())?;
        let pid = exec_in_child(|| rt.exec(&c.id, &spec, stdio).map_err(|e| e.to_string()))?;
        let pidfd = pidfd_open(pid).map_err(|e| format!("watch probe {pid}: {e}"))?;
        set_nonblocking(r.as_raw_fd());
        Ok((pid, pidfd, r))
    }

    /// The fds to poll for: the probe's pidfd and its output.
    pub fn fds(&self) -> Vec<RawFd> {
        match &self.running {
            Some(r) => std::iter::once(r.pidfd.as_raw_fd())
                .chain(r.out.as_ref().map(|o| o.as_raw_fd()))
                .collect(),
            None => Vec::new(),
        }
    }

    /// The monitor's reaper collected `pid`: if it is our probe, keep its
    /// status.
    pub fn reaped(&mut self, pid: i32, status: nix::sys::wait::WaitStatus) {
        if let Some(r) = self.running.as_mut().filter(|r| r.pid == pid) {
            r.status = Some(exit_code(status).map_or(-1, i64::from));
        }
    }

    /// Reads what the probe wrote; when it has ended, its result.
    pub fn ready(&mut self, revents: &[i16]) -> Option<ProbeResult> {
        let r = self.running.as_mut()?;
        if revents.get(1).is_some_and(|e| *e != 0) {
            drain(r);
        }
        let ended = revents.first().is_some_and(|e| *e != 0) || r.status.is_some();
        if !ended {
            return None;
        }
        if r.status.is_none() {
            use nix::sys::wait::{waitpid, WaitPidFlag};
            let pid = nix::unistd::Pid::from_raw(r.pid);
            match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
                Ok(nix::sys::wait::WaitStatus::StillAlive) => return None,
                Ok(s) => r.status = Some(exit_code(s).map_or(-1, i64::from)),
                // Not our child (an external runtime's): the pidfd said it
                // ended, but not how.
                Err(_) => r.status = Some(-1),
            }
        }
        drain(r);
        let r = self.running.take()?;
        let end = time::now_nanos();
        let (exit_code, output) = if r.timed_out {
            (
                -1,
                format!(
                    "Health check exceeded timeout ({})",
                    go_duration(self.probe.timeout)
                ),
            )
        } else {
            (r.status.unwrap_or(-1), output_text(&r.output, r.truncated))
        };
        Some(ProbeResult {
            start: r.start,
            end,
            exit_code,
            output,
        })
    }

    /// Plans the next probe after one ended with `status`.
    pub fn schedule(&mut self, status: &str) {
        let now = Instant::now();
        self.next_at = now + self.probe.next_delay(now - self.started, status);
    }
}

/// Runs `exec` (the runtime's exec of a probe) in a forked child of the
/// monitor and returns the pid it started. The runtime's exec path
/// (spec parsing, namespaces, clone) touches megabytes of code; run in
/// the monitor every second, those pages would stay in its resident set
/// for good. A child that exits takes them along. The probe process
/// itself comes back to the monitor, its subreaper, to be waited for.
fn exec_in_child(exec: impl FnOnce() -> Result<i32, String>) -> Result<i32, String> {
    use std::io::{Read, Write};
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| e.to_string())?;
    // SAFETY: the monitor is single-threaded, so the child may run
    // anything; it leaves through _exit, running no destructor of state
    // it shares with the monitor (the store, the lock).
    match unsafe { nix::unistd::fork() }.map_err(|e| format!("fork: {e}"))? {
        nix::unistd::ForkResult::Child => {
            drop(r);
            let answer = match exec() {
                Ok(pid) => format!("ok {pid}"),
                Err(e) => format!("error {e}"),
            };
            let _ = std::fs::File::from(w).write_all(answer.as_bytes());
            // SAFETY: ends the child at once.
            unsafe { libc::_exit(0) }
        }
        nix::unistd::ForkResult::Parent { child } => {
            drop(w);
            let mut answer = String::new();
            let read = std::fs::File::from(r).read_to_string(&mut answer);
            let _ = nix::sys::wait::waitpid(child, None);
            read.map_err(|e| e.to_string())?;
            match answer.split_once(' ') {
                Some(("ok", pid)) => pid.parse().map_err(|_| format!("probe pid {pid:?}")),
                Some(("error", e)) => Err(e.to_string()),
                _ => Err("the probe could not be started".into()),
            }
        }
    }
}

/// Reads what is there, keeping Docker's first 4096 bytes.
fn drain(r: &mut Running) {
    let Some(fd) = r.out.as_ref() else { return };
    let mut buf = [0u8; 4096];
    loop {
        match read_fd(fd.as_raw_fd(), &mut buf) {
            Ok(0) => {
                r.out = None;
                return;
            }
            Ok(n) => {
                let room = MAX_OUTPUT - r.output.len().min(MAX_OUTPUT);
                r.output.extend_from_slice(&buf[..n.min(room)]);
                if n > room {
                    r.truncated = true;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
            Err(_) => {
                r.out = None;
                return;
            }
        }
    }
}

/// Go's Duration.String for whole or fractional seconds: `30s`, `1.5s`,
/// `500ms`, `2m0s`.
fn go_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let secs = d.as_secs_f64();
    let (m, s) = ((secs / 60.0).floor() as u64, secs % 60.0);
    let s = if s.fract() == 0.0 {
        format!("{}s", s as u64)
    } else {
        format!("{s}s")
    };
    if m == 0 {
        s
    } else {
        format!("{m}m{s}")
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn go_durations_print_as_go() {
        use std::time::Duration;
        assert_eq!(super::go_duration(Duration::from_secs(30)), "30s");
        assert_eq!(super::go_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(super::go_duration(Duration::from_millis(500)), "500ms");
        assert_eq!(super::go_duration(Duration::from_secs(120)), "2m0s");
    }
}
