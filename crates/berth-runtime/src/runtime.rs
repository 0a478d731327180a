//! The `Runtime` trait and its two implementations: libcontainer linked
//! into our own process, and an external OCI runtime binary (runc, crun,
//! youki) driven through its command line.
//!
//! Either way the container's init ends up a child of the caller (the
//! embedded runtime clones it as a sibling of its helper; for an external
//! binary the caller must be a child subreaper), so the caller can reap
//! it and read its exit status.

use std::ffi::OsString;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio as ProcStdio};

use libcontainer::container::builder::ContainerBuilder;
use libcontainer::container::Container;
use libcontainer::syscall::syscall::SyscallType;
use libcontainer::workload::default::DefaultExecutor;

use crate::{Error, Result};

/// Where a container's standard streams go.
pub enum Stdio {
    /// Pipes (or files); `None` stdin means /dev/null.
    Fds {
        stdin: Option<OwnedFd>,
        stdout: OwnedFd,
        stderr: OwnedFd,
    },
    /// The process gets a new pty; its master is sent over this listening
    /// unix socket (the OCI console-socket protocol).
    Console(PathBuf),
}

/// A process to run inside an existing container.
pub struct ExecSpec {
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: Option<String>,
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    pub capabilities: Vec<String>,
    pub no_new_privileges: bool,
    pub terminal: bool,
}

pub trait Runtime {
    fn name(&self) -> &str;
    /// Creates the container from `bundle/config.json` and returns its
    /// init's pid; the process waits for `start` before running.
    fn create(&self, id: &str, bundle: &Path, stdio: Stdio) -> Result<i32>;
    fn start(&self, id: &str) -> Result<()>;
    fn pause(&self, id: &str) -> Result<()>;
    fn resume(&self, id: &str) -> Result<()>;
    /// Removes the runtime's state and the container's cgroup; kills
    /// whatever is left in it.
    fn delete(&self, id: &str) -> Result<()>;
    /// Starts `spec` inside the running container and returns the pid of
    /// a child of the caller whose exit status is the process's.
    fn exec(&self, id: &str, spec: &ExecSpec, stdio: Stdio) -> Result<i32>;
}

/// Picks a runtime by name: `berth` (or empty) is the embedded one;
/// anything else is an OCI runtime binary, by name on $PATH or by path.
pub fn open(name: &str, state_root: &Path) -> Result<Box<dyn Runtime>> {
    if name.is_empty() || name == "berth" {
        return Ok(Box::new(Embedded {
            root: state_root.join("berth"),
        }));
    }
    let path = if name.contains('/') {
        PathBuf::from(name)
    } else {
        which(name).ok_or_else(|| {
            Error::Invalid(format!(
                "runtime \"{name}\" not found in $PATH (install it, or use --runtime berth)"
            ))
        })?
    };
    let base = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| name.to_string());
    Ok(Box::new(External {
        root: state_root.join(&base),
        name: base,
        path,
    }))
}

fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_else(|| OsString::from("/usr/bin:/bin"));
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

fn lc(op: &'static str, id: &str) -> impl FnOnce(libcontainer::error::LibcontainerError) -> Error {
    let id = id.to_string();
    move |e| Error::Runtime(format!("{op} container {id}: {e}"))
}

pub struct Embedded {
    root: PathBuf,
}

impl Embedded {
    fn load(&self, id: &str) -> Result<Container> {
        Container::load(self.root.join(id)).map_err(lc("load", id))
    }
}

impl Runtime for Embedded {
    fn name(&self) -> &str {
        "berth"
    }

    fn create(&self, id: &str, bundle: &Path, stdio: Stdio) -> Result<i32> {
        std::fs::create_dir_all(&self.root).map_err(Error::io("create", &self.root))?;
        let mut b = ContainerBuilder::new(id.to_string(), SyscallType::Linux)
            .with_root_path(&self.root)
            .map_err(lc("create", id))?
            .with_executor(DefaultExecutor {});
        match stdio {
            Stdio::Fds {
                stdin,
                stdout,
                stderr,
            } => {
                if let Some(i) = stdin {
                    b = b.with_stdin(i);
                }
                b = b.with_stdout(stdout).with_stderr(stderr);
            }
            Stdio::Console(sock) => b = b.with_console_socket(Some(sock)),
        }
        let c = b
            .as_init(bundle)
            .with_systemd(false)
            .with_detach(true)
            .build()
            .map_err(lc("create", id))?;
        c.pid()
            .map(|p| p.as_raw())
            .ok_or_else(|| Error::Runtime(format!("container {id} has no init process")))
    }

    fn start(&self, id: &str) -> Result<()> {
        self.load(id)?.start().map_err(lc("start", id))
    }

    fn pause(&self, id: &str) -> Result<()> {
        self.load(id)?.pause().map_err(lc("pause", id))
    }

    fn resume(&self, id: &str) -> Result<()> {
        self.load(id)?.resume().map_err(lc("unpause", id))
    }

    fn delete(&self, id: &str) -> Result<()> {
        match Container::load(self.root.join(id)) {
            Ok(mut c) => c.delete(true).map_err(lc("delete", id)),
            // Never created, or already deleted.
            Err(_) if !self.root.join(id).exists() => Ok(()),
            Err(e) => Err(lc("delete", id)(e)),
        }
    }

    fn exec(&self, id: &str, spec: &ExecSpec, stdio: Stdio) -> Result<i32> {
        let mut b = ContainerBuilder::new(id.to_string(), SyscallType::Linux)
            .with_root_path(&self.root)
            .map_err(lc("exec in", id))?
            .with_executor(DefaultExecutor {});
        let detach = matches!(stdio, Stdio::Console(_));
        match stdio {
            Stdio::Fds {
                stdin,
                stdout,
                stderr,
            } => {
                if let Some(i) = stdin {
                    b = b.with_stdin(i);
                }
                b = b.with_stdout(stdout).with_stderr(stderr);
            }
            Stdio::Console(sock) => b = b.with_console_socket(Some(sock)),
        }
        if detach {
            // libcontainer's tenant builder only makes a terminal for a
            // process given as a file (its own process never sets
            // `terminal`), so a tty exec goes through process.json, as
            // `runc exec --process` does.
            let dir = self.root.join(id);
            let file = dir.join(format!("exec-{}-{}.json", std::process::id(), next_exec()));
            let mut json = exec_process_json(spec);
            // libcontainer 0.7 tests the key's presence, not its value.
            if !spec.no_new_privileges {
                json.as_object_mut().map(|o| o.remove("noNewPrivileges"));
            }
            std::fs::write(&file, json.to_string()).map_err(Error::io("write", &file))?;
            let pid = b
                .as_tenant()
                .with_process(Some(&file))
                .with_detach(true)
                .build();
            let _ = std::fs::remove_file(&file);
            return Ok(pid.map_err(lc("exec in", id))?.as_raw());
        }
        let env = spec
            .env
            .iter()
            .filter_map(|e| e.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let pid = b
            .as_tenant()
            .with_container_args(spec.args.clone())
            .with_env(env)
            .with_cwd(spec.cwd.as_ref())
            .with_user(Some(spec.uid))
            .with_group(Some(spec.gid))
            .with_additional_gids(spec.additional_gids.clone())
            .with_capabilities(spec.capabilities.clone())
            .with_no_new_privs(spec.no_new_privileges)
            .with_detach(detach)
            .build()
            .map_err(lc("exec in", id))?;
        Ok(pid.as_raw())
    }
}

/// A number to tell apart the process files of one process's execs.
fn next_exec() -> u64 {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// An exec's process as OCI's process.json has it.
fn exec_process_json(spec: &ExecSpec) -> serde_json::Value {
    let caps = &spec.capabilities;
    let mut process = serde_json::json!({
        "terminal": spec.terminal,
        "user": {"uid": spec.uid, "gid": spec.gid, "additionalGids": spec.additional_gids},
        "args": spec.args,
        "env": spec.env,
        "cwd": spec.cwd.clone().unwrap_or_else(|| "/".into()),
        "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
        "noNewPrivileges": spec.no_new_privileges,
    });
    if spec.additional_gids.is_empty() {
        process["user"]
            .as_object_mut()
            .map(|u| u.remove("additionalGids"));
    }
    process
}

/// An OCI runtime binary with runc's command line.
pub struct External {
    name: String,
    path: PathBuf,
    root: PathBuf,
}

impl External {
    fn cmd(&self) -> Command {
        let mut c = Command::new(&self.path);
        c.arg("--root").arg(&self.root);
        c
    }

    fn run(&self, op: &str, mut c: Command) -> Result<()> {
        c.stdin(ProcStdio::null()).stdout(ProcStdio::null());
        let out = c
            .stderr(ProcStdio::piped())
            .output()
            .map_err(Error::io("run", &self.path))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(Error::Runtime(format!(
                "{} {op}: {}",
                self.name,
                String::from_utf8_lossy(&out.stderr).trim()
            )))
        }
    }
}

impl Runtime for External {
    fn name(&self) -> &str {
        &self.name
    }

    fn create(&self, id: &str, bundle: &Path, stdio: Stdio) -> Result<i32> {
        std::fs::create_dir_all(&self.root).map_err(Error::io("create", &self.root))?;
        let pid_file = bundle.join(format!("{}.pid", self.name));
        let log = bundle.join(format!("{}.log", self.name));
        let mut c = self.cmd();
        c.arg("--log")
            .arg(&log)
            .arg("create")
            .arg("--bundle")
            .arg(bundle)
            .arg("--pid-file")
            .arg(&pid_file);
        // The runtime's own stderr must not be the container's: capture it
        // for error messages by pointing the container at its fds only.
        let (stdin, stdout, stderr) = match stdio {
            Stdio::Fds {
                stdin,
                stdout,
                stderr,
            } => (
                stdin.map(ProcStdio::from).unwrap_or_else(ProcStdio::null),
                ProcStdio::from(stdout),
                ProcStdio::from(stderr),
            ),
            Stdio::Console(sock) => {
                c.arg("--console-socket").arg(sock);
                (ProcStdio::null(), ProcStdio::null(), ProcStdio::null())
            }
        };
        c.arg(id).stdin(stdin).stdout(stdout).stderr(stderr);
        let status = c.status().map_err(Error::io("run", &self.path))?;
        if !status.success() {
            let msg = std::fs::read_to_string(&log).unwrap_or_default();
            return Err(Error::Runtime(format!(
                "{} create: {}",
                self.name,
                last_error(&msg)
            )));
        }
        let pid = std::fs::read_to_string(&pid_file).map_err(Error::io("read", &pid_file))?;
        pid.trim()
            .parse()
            .map_err(|_| Error::Runtime(format!("{} wrote a bad pid file", self.name)))
    }

    fn start(&self, id: &str) -> Result<()> {
        let mut c = self.cmd();
        c.arg("start").arg(id);
        self.run("start", c)
    }

    fn pause(&self, id: &str) -> Result<()> {
        let mut c = self.cmd();
        c.arg("pause").arg(id);
        self.run("pause", c)
    }

    fn resume(&self, id: &str) -> Result<()> {
        let mut c = self.cmd();
        c.arg("resume").arg(id);
        self.run("resume", c)
    }

    fn delete(&self, id: &str) -> Result<()> {
        let mut c = self.cmd();
        c.arg("delete").arg("--force").arg(id);
        match self.run("delete", c) {
            Err(Error::Runtime(m)) if m.contains("does not exist") || m.contains("not found") => {
                Ok(())
            }
            r => r,
        }
    }

    fn exec(&self, id: &str, spec: &ExecSpec, stdio: Stdio) -> Result<i32> {
        let dir = self.root.join(id);
        std::fs::create_dir_all(&dir).map_err(Error::io("create", &dir))?;
        let proc_file = dir.join(format!("exec-{}-{}.json", std::process::id(), next_exec()));
        let process = exec_process_json(spec);
        std::fs::write(&proc_file, process.to_string()).map_err(Error::io("write", &proc_file))?;
        let mut c = self.cmd();
        c.arg("exec").arg("--process").arg(&proc_file);
        match stdio {
            Stdio::Fds {
                stdin,
                stdout,
                stderr,
            } => {
                c.stdin(stdin.map(ProcStdio::from).unwrap_or_else(ProcStdio::null))
                    .stdout(ProcStdio::from(stdout))
                    .stderr(ProcStdio::from(stderr));
            }
            Stdio::Console(sock) => {
                c.arg("--console-socket").arg(sock);
            }
        }
        c.arg(id);
        // runc exec waits for the process and exits with its status, so
        // the runtime's own child stands in for the process.
        let child = c.spawn().map_err(Error::io("run", &self.path))?;
        let pid = child.id() as i32;
        std::mem::forget(child);
        Ok(pid)
    }
}

/// runc logs JSON lines; the last `msg` is the one a user needs.
fn last_error(log: &str) -> String {
    log.lines()
        .rev()
        .find_map(|l| {
            serde_json::from_str::<serde_json::Value>(l)
                .ok()
                .and_then(|v| v["msg"].as_str().map(str::to_string))
                .or_else(|| (!l.trim().is_empty()).then(|| l.trim().to_string()))
        })
        .unwrap_or_else(|| "failed".into())
}
