//! Starting, stopping, signalling and waiting for containers. Starting
//! means spawning a monitor; everything after that talks to the process
//! through its pid (with a pidfd, so a recycled pid is never signalled)
//! or to the monitor through its lock and attach socket.

use std::fs::{self, File};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio as ProcStdio};
use std::time::Duration;

use berth_runtime::Runtime;

use super::attach::{AttachOptions, Attached, Event, Frame};
/// `build` parses STOPSIGNAL with it too.
pub(crate) use super::proc::parse_signal;
use super::proc::{
    lock_monitor, pidfd_open, pidfd_signal, short_socket_path, wait_pidfd, STARTER_FD,
};
use super::{Container, Status};
use crate::{Engine, Error, EventFilter, EventsOptions, Result};

/// `wait --condition`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WaitCondition {
    #[default]
    NotRunning,
    NextExit,
    Removed,
}

impl std::str::FromStr for WaitCondition {
    type Err = Error;
    fn from_str(s: &str) -> Result<WaitCondition> {
        match s {
            "" | "not-running" => Ok(WaitCondition::NotRunning),
            "next-exit" => Ok(WaitCondition::NextExit),
            "removed" => Ok(WaitCondition::Removed),
            _ => Err(Error::InvalidArgument(format!(
                "invalid condition: \"{s}\""
            ))),
        }
    }
}

fn exit_code_of(e: &crate::EventMessage) -> Option<i32> {
    e.attributes.get("exitCode")?.parse().ok()
}

/// What `stop` did.
#[derive(Debug, PartialEq)]
pub enum StopOutcome {
    NotRunning,
    Stopped,
    Killed,
}

impl Engine {
    pub(crate) fn default_runtime(&self) -> String {
        crate::config::daemon_config()
            .and_then(|v| v["default-runtime"].as_str().map(str::to_string))
            .unwrap_or_else(|| "berth".to_string())
    }

    pub(crate) fn runtime_for(&self, c: &Container) -> Result<Box<dyn Runtime>> {
        berth_runtime::open(&c.spec.host.runtime, &self.runroot().join("runtime"))
            .map_err(Error::Runtime)
    }

    /// Starts a created or stopped container by spawning its monitor.
    /// With `attach`, the returned connection carries its output from the
    /// first byte; without, this returns once the process runs.
    pub fn start_container(
        &self,
        name: &str,
        attach: Option<AttachOptions>,
    ) -> Result<(Container, Option<Attached>)> {
        let c = self.container(name)?;
        if c.state.status.is_live() {
            if c.state.status == Status::Paused {
                return Err(Error::Conflict(
                    "cannot start a paused container, try unpause instead".into(),
                ));
            }
            return Ok((c, None));
        }
        let p = self.paths(&c.id);
        fs::create_dir_all(&p.run).map_err(Error::io("create", &p.run))?;
        let (ours, theirs) = UnixStream::pair().map_err(Error::io("socketpair", &p.run))?;
        let exe = std::env::current_exe().map_err(Error::io("find", "/proc/self/exe"))?;
        let mut cmd = Command::new(exe);
        cmd.arg("--root")
            .arg(self.root())
            .arg("--runroot")
            .arg(self.runroot())
            .arg("monitor")
            .arg(&c.id)
            .env("BERTH_STARTER", "1")
            .stdin(ProcStdio::null())
            .stdout(ProcStdio::null())
            .stderr(ProcStdio::null());
        let fd = theirs.as_raw_fd();
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                // Its own session: the monitor outlives our terminal.
                libc::setsid();
                if libc::dup2(fd, STARTER_FD) < 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().map_err(Error::io("start monitor", "berth"))?;
        drop(theirs);
        // Reaped by whoever inherits it; we don't wait on a long-lived
        // process.
        std::mem::forget(child);
        let opts = attach.unwrap_or_default();
        let mut conn = Attached::new(ours, opts).map_err(Error::io("attach to", &p.run))?;
        if attach.is_some() {
            self.emit_container(&c, "attach", &[]);
            return Ok((c, Some(conn)));
        }
        // Detached: wait for the start (or its failure), then let go.
        loop {
            match conn.next_frame().map_err(Error::io("attach to", &p.run))? {
                Some(Frame::Event(Event::Started { .. })) => break,
                Some(Frame::Event(Event::Error { message, code })) => {
                    return Err(Error::StartFailed { message, code })
                }
                Some(Frame::Event(Event::Exit { .. })) => break,
                Some(_) => {}
                None => {
                    return Err(Error::StartFailed {
                        message: "container monitor exited before the container started".into(),
                        code: 125,
                    })
                }
            }
        }
        let c = self.container(&c.id)?;
        Ok((c, None))
    }

    /// Attaches to a running container's streams.
    pub fn attach_container(
        &self,
        name: &str,
        opts: AttachOptions,
    ) -> Result<(Container, Attached)> {
        let c = self.container(name)?;
        if c.state.status != Status::Running {
            return Err(Error::Conflict(
                "You cannot attach to a stopped container, start it first".into(),
            ));
        }
        let p = self.paths(&c.id);
        let dir = File::open(&p.run).map_err(Error::io("open", &p.run))?;
        let sock = UnixStream::connect(short_socket_path(&dir, "attach.sock"))
            .map_err(Error::io("attach to", p.run.join("attach.sock")))?;
        let a = Attached::new(sock, opts).map_err(Error::io("attach to", &p.run))?;
        self.emit_container(&c, "attach", &[]);
        Ok((c, a))
    }

    /// Sends a signal (Docker's `kill`).
    pub fn kill_container(&self, name: &str, signal: Option<&str>) -> Result<Container> {
        let c = self.container(name)?;
        let sig = parse_signal(signal.unwrap_or("KILL"))?;
        if !matches!(c.state.status, Status::Running | Status::Paused) || c.state.pid == 0 {
            return Err(Error::Conflict(format!(
                "cannot kill container: {name}: container {} is not running",
                c.id
            )));
        }
        let pidfd = pidfd_open(c.state.pid)
            .map_err(|e| Error::Conflict(format!("cannot kill container: {name}: {e}")))?;
        pidfd_signal(&pidfd, sig).map_err(Error::io("signal", format!("pid {}", c.state.pid)))?;
        self.emit_container(&c, "kill", &[("signal", sig.to_string())]);
        if c.state.status == Status::Paused && sig == libc::SIGKILL {
            let _ = self.runtime_for(&c)?.resume(&c.id);
        }
        Ok(c)
    }

    /// `stop`: the stop signal, then SIGKILL after `timeout` seconds; no
    /// restart policy brings it back.
    pub fn stop_container(&self, name: &str, timeout: Option<i64>) -> Result<StopOutcome> {
        let c = self.container(name)?;
        let p = self.paths(&c.id);
        if !c.state.status.is_live() {
            return Ok(StopOutcome::NotRunning);
        }
        let _ = fs::write(p.run.join("stopping"), b"");
        if c.state.status == Status::Restarting || c.state.pid == 0 {
            let _ = lock_monitor(&p, true)?;
            return Ok(StopOutcome::Stopped);
        }
        let sig = parse_signal(c.spec.config.stop_signal.as_deref().unwrap_or("SIGTERM"))?;
        let timeout = timeout.or(c.spec.config.stop_timeout).unwrap_or(10);
        let Ok(pidfd) = pidfd_open(c.state.pid) else {
            let _ = lock_monitor(&p, true)?;
            return Ok(StopOutcome::Stopped);
        };
        let _ = pidfd_signal(&pidfd, sig);
        self.emit_container(&c, "kill", &[("signal", sig.to_string())]);
        if c.state.status == Status::Paused {
            let _ = self.runtime_for(&c)?.resume(&c.id);
        }
        let mut outcome = StopOutcome::Stopped;
        let graceful =
            timeout >= 0 && wait_pidfd(&pidfd, Some(Duration::from_secs(timeout as u64)));
        if !graceful {
            let _ = pidfd_signal(&pidfd, libc::SIGKILL);
            self.emit_container(&c, "kill", &[("signal", libc::SIGKILL.to_string())]);
            wait_pidfd(&pidfd, None);
            outcome = StopOutcome::Killed;
        }
        // The monitor records the exit before it lets go of the lock.
        let _ = lock_monitor(&p, true)?;
        self.emit_container(&c, "stop", &[]);
        Ok(outcome)
    }

    /// `rm -f`: kills whatever runs of the container at any stage of a
    /// start (a start in progress has no pid recorded yet, but its
    /// processes are in the cgroup, and its monitor checks the stop mark
    /// before it lets the process run), until its monitor lets go.
    pub(crate) fn kill_and_wait(&self, c: &Container) -> Result<()> {
        let p = self.paths(&c.id);
        let cg = berth_runtime::cgroup::Cgroup::new(&crate::sys::cgroup_path(&c.id));
        let mut said = false;
        loop {
            // Again each time: a monitor clears an old mark as it starts.
            let _ = fs::write(p.run.join("stopping"), b"");
            let now = match self.store.container(&c.id)? {
                Some(row) => super::Container::from_row(row)?,
                None => return Ok(()),
            };
            if now.state.pid > 0 {
                if let Ok(pidfd) = pidfd_open(now.state.pid) {
                    let _ = pidfd_signal(&pidfd, libc::SIGKILL);
                    if !said {
                        self.emit_container(c, "kill", &[("signal", libc::SIGKILL.to_string())]);
                        said = true;
                    }
                    if now.state.status == Status::Paused {
                        let _ = self.runtime_for(c)?.resume(&c.id);
                    }
                    wait_pidfd(&pidfd, Some(Duration::from_millis(200)));
                }
            }
            for pid in cg.pids() {
                // SAFETY: signalling a pid read from the container's cgroup.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
            match lock_monitor(&p, false) {
                Ok(_) => return Ok(()),
                Err(Error::Conflict(_)) => std::thread::sleep(Duration::from_millis(20)),
                Err(e) => return Err(e),
            }
        }
    }

    pub fn restart_container(&self, name: &str, timeout: Option<i64>) -> Result<Container> {
        self.stop_container(name, timeout)?;
        let c = self.start_container(name, None)?.0;
        self.emit_container(&c, "restart", &[]);
        Ok(c)
    }

    /// `wait`: blocks until `condition` holds; returns the exit code.
    /// `not-running` returns at once for a container that is not running
    /// (a created one too, as Docker's); `next-exit` waits for the next
    /// exit even across restarts; `removed` waits until it is gone.
    pub fn wait_container(&self, name: &str, condition: WaitCondition) -> Result<i32> {
        let since = berth_oci::time::now_nanos();
        let c = self.container(name)?;
        match condition {
            WaitCondition::NotRunning => {
                if !c.state.status.is_live() {
                    return Ok(c.state.exit_code);
                }
                // The monitor lets go of its lock once the container has
                // stopped for good (restart policies included).
                let _ = lock_monitor(&self.paths(&c.id), true)?;
                match self.container(&c.id) {
                    Ok(now) => Ok(now.state.exit_code),
                    // Removed meanwhile (--rm): its last exit is in the
                    // journal.
                    Err(Error::NoSuchContainer(_)) => {
                        let mut code = c.state.exit_code;
                        let opts = EventsOptions {
                            since: Some(since),
                            until: Some(berth_oci::time::now_nanos()),
                            filter: EventFilter::container(&c.id),
                        };
                        self.events(&opts, |e| {
                            if let Some(e) = e.filter(|e| e.action == "die") {
                                code = exit_code_of(e).unwrap_or(code);
                            }
                            true
                        })?;
                        Ok(code)
                    }
                    Err(e) => Err(e),
                }
            }
            WaitCondition::NextExit => self.wait_for_event(&c, since, "die"),
            WaitCondition::Removed => self.wait_for_event(&c, since, "destroy"),
        }
    }

    /// Follows the journal from `since` until `c` has an event `action`;
    /// the exit code of its last `die` by then.
    fn wait_for_event(&self, c: &Container, since: i64, action: &str) -> Result<i32> {
        let mut code = c.state.exit_code;
        let opts = EventsOptions {
            since: Some(since),
            until: None,
            filter: EventFilter::container(&c.id),
        };
        self.events(&opts, |e| {
            let Some(e) = e else { return true };
            if e.action == "die" {
                code = exit_code_of(e).unwrap_or(code);
            }
            e.action != action
        })?;
        Ok(code)
    }

    pub fn pause_container(&self, name: &str) -> Result<Container> {
        let mut c = self.container(name)?;
        match c.state.status {
            Status::Running => {}
            Status::Paused => {
                return Err(Error::Conflict(format!(
                    "Container {} is already paused",
                    c.id
                )))
            }
            _ => {
                return Err(Error::Conflict(format!(
                    "Container {} is not running",
                    c.id
                )))
            }
        }
        self.runtime_for(&c)?.pause(&c.id).map_err(Error::Runtime)?;
        c.state.status = Status::Paused;
        self.save_state(&c)?;
        self.emit_container(&c, "pause", &[]);
        Ok(c)
    }

    pub fn unpause_container(&self, name: &str) -> Result<Container> {
        let mut c = self.container(name)?;
        if c.state.status != Status::Paused {
            return Err(Error::Conflict(format!("Container {} is not paused", c.id)));
        }
        self.runtime_for(&c)?
            .resume(&c.id)
            .map_err(Error::Runtime)?;
        c.state.status = Status::Running;
        self.save_state(&c)?;
        self.emit_container(&c, "unpause", &[]);
        Ok(c)
    }

    /// Removes a container from inside its own monitor (which already
    /// holds the lock).
    pub(crate) fn destroy_locked(&self, c: &Container, volumes: bool) -> Result<()> {
        self.destroy_inner(c, volumes)
    }
}
