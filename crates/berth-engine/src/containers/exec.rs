//! `exec`: a new process in a running container, joined to its
//! namespaces and cgroup by the runtime. The caller (the CLI) is the
//! parent and waits for it; its output goes straight to the caller's
//! streams, or through a new pty with `-t`.

use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixListener;

use berth_runtime::{ExecSpec, Stdio};

use super::rootfs::{check_executable, lookup_user};
use super::{create::set_env, proc, Status};
use crate::{Engine, Error, Result};

#[derive(Debug, Clone, Default)]
pub struct ExecOptions {
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    pub user: Option<String>,
    pub workdir: Option<String>,
    pub tty: bool,
    pub interactive: bool,
    pub detach: bool,
    pub privileged: bool,
}

/// A started exec process: wait on `pid`; with a tty, relay `master`.
pub struct ExecProcess {
    pub pid: i32,
    pub master: Option<OwnedFd>,
    /// Docker's exec id, as its events name it.
    pub exec_id: String,
    container: super::Container,
}

fn dup(fd: i32) -> Result<OwnedFd> {
    let f = nix::unistd::dup(fd).map_err(|e| Error::Internal(format!("dup: {e}")))?;
    // SAFETY: dup returned a new fd that nothing else owns.
    Ok(unsafe { std::os::fd::FromRawFd::from_raw_fd(f) })
}

pub(crate) fn devnull(write: bool) -> Result<OwnedFd> {
    let f = std::fs::OpenOptions::new()
        .read(!write)
        .write(write)
        .open("/dev/null")
        .map_err(Error::io("open", "/dev/null"))?;
    Ok(f.into())
}

impl Engine {
    /// The process `exec` runs in `c` (also a health probe): the
    /// container's user, env, working dir and capabilities, overridden
    /// by `opts`.
    pub(crate) fn exec_spec(&self, c: &super::Container, opts: &ExecOptions) -> Result<ExecSpec> {
        let rootfs = self.paths(&c.id).rootfs();
        let user_spec = opts
            .user
            .clone()
            .unwrap_or_else(|| c.spec.config.user.clone());
        let user = lookup_user(&rootfs, &user_spec).map_err(Error::InvalidArgument)?;
        let mut env = c.spec.config.env.clone();
        for e in &opts.env {
            set_env(&mut env, e.clone());
        }
        super::rootfs::default_home(&mut env, &user.home);
        if opts.tty && !env.iter().any(|e| e.starts_with("TERM=")) {
            env.push("TERM=xterm".into());
        }
        if let Err(e) = check_executable(&rootfs, &opts.cmd[0], &env) {
            return Err(Error::StartFailed {
                message: format!(
                    "OCI runtime exec failed: exec failed: unable to start container process: {}",
                    e.message
                ),
                code: e.code,
            });
        }
        let caps = berth_runtime::spec::capabilities(
            &c.spec.host.cap_add,
            &c.spec.host.cap_drop,
            c.spec.host.privileged || opts.privileged,
        )
        .map_err(|e| Error::InvalidArgument(e.to_string()))?;
        let cwd = opts
            .workdir
            .clone()
            .or_else(|| Some(c.spec.config.working_dir.clone()).filter(|w| !w.is_empty()));
        Ok(ExecSpec {
            args: opts.cmd.clone(),
            env,
            cwd,
            uid: user.uid,
            gid: user.gid,
            additional_gids: user.additional_gids,
            capabilities: caps,
            no_new_privileges: c
                .spec
                .host
                .security_opt
                .iter()
                .any(|o| o.starts_with("no-new-privileges") && !o.ends_with("false")),
            terminal: opts.tty,
        })
    }

    /// Starts the process; the caller must be single-threaded (the
    /// embedded runtime clones from it).
    pub fn exec_container(&self, name: &str, opts: &ExecOptions) -> Result<ExecProcess> {
        let c = self.container(name)?;
        match c.state.status {
            Status::Running => {}
            Status::Paused => {
                return Err(Error::Conflict(format!(
                    "Container {} is paused, unpause the container before exec",
                    c.id
                )))
            }
            _ => {
                return Err(Error::Conflict(format!(
                    "container {} is not running",
                    c.id
                )))
            }
        }
        if opts.cmd.is_empty() {
            return Err(Error::InvalidArgument("No exec command specified".into()));
        }
        let p = self.paths(&c.id);
        let spec = self.exec_spec(&c, opts)?;
        let rt = self.runtime_for(&c)?;
        let exec_id = crate::ids::random_hex64();
        let what = opts.cmd.join(" ");
        let attrs = [("execID", exec_id.clone())];
        self.emit_container(&c, &format!("exec_create: {what}"), &attrs);
        self.emit_container(&c, &format!("exec_start: {what}"), &attrs);
        if opts.tty {
            let dir = File::open(&p.run).map_err(Error::io("open", &p.run))?;
            let name = format!("exec-{}.sock", std::process::id());
            let _ = std::fs::remove_file(p.run.join(&name));
            let path = proc::short_socket_path(&dir, &name);
            let l = UnixListener::bind(&path).map_err(Error::io("listen on", p.run.join(&name)))?;
            let pid = rt.exec(&c.id, &spec, Stdio::Console(path));
            let _ = std::fs::remove_file(p.run.join(&name));
            let pid = pid.map_err(Error::Runtime)?;
            let master =
                proc::recv_console(&l).map_err(Error::io("receive pty from", p.run.join(&name)))?;
            return Ok(ExecProcess {
                pid,
                master: Some(master),
                exec_id,
                container: c,
            });
        }
        let stdio = if opts.detach {
            Stdio::Fds {
                stdin: None,
                stdout: devnull(true)?,
                stderr: devnull(true)?,
            }
        } else {
            Stdio::Fds {
                stdin: if opts.interactive {
                    Some(dup(std::io::stdin().as_raw_fd())?)
                } else {
                    Some(devnull(false)?)
                },
                stdout: dup(std::io::stdout().as_raw_fd())?,
                stderr: dup(std::io::stderr().as_raw_fd())?,
            }
        };
        let pid = rt.exec(&c.id, &spec, stdio).map_err(Error::Runtime)?;
        Ok(ExecProcess {
            pid,
            master: None,
            exec_id,
            container: c,
        })
    }

    /// Records an exec's end (Docker's `exec_die` event).
    pub fn exec_finished(&self, p: &ExecProcess, code: i32) {
        self.emit_container(
            &p.container,
            "exec_die",
            &[
                ("execID", p.exec_id.clone()),
                ("exitCode", code.to_string()),
            ],
        );
    }
}

/// Waits for an exec process; its exit code, 128+N for signal N.
pub fn wait_exec(pid: i32) -> i32 {
    use nix::sys::wait::waitpid;
    loop {
        match waitpid(nix::unistd::Pid::from_raw(pid), None) {
            Ok(s) => match super::proc::exit_code(s) {
                Some(c) => return c,
                None => continue,
            },
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return 255,
        }
    }
}
