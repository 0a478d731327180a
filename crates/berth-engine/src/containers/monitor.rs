//! The monitor: `berth monitor <id>`, one small single-threaded process per
//! running container. It mounts the rootfs, creates the container through
//! the runtime, owns its stdio (pipes or a pty), writes the log, serves
//! attach clients, reaps the init, records the exit, applies the restart
//! policy and removes `--rm` containers.
//!
//! One poll(2) loop, no threads: libcontainer clones from this process,
//! and a thread-free process keeps the monitor small.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::time::{Duration, Instant};

use berth_oci::time;
use berth_runtime::{cgroup::Cgroup, Stdio};

use super::attach::{self, AttachOptions, Event, TtySize};
use super::health::{Health, Probe, ProbeResult};
use super::prober::Prober;
use super::proc::{
    pidfd_open, pipe, recv_console, set_nonblocking, set_winsize, short_socket_path, STARTER_FD,
};
use super::rootfs;
use super::{Container, Paths, Status};
use crate::{Engine, EngineOptions, Error, Result};

mod poll;

struct Client {
    sock: UnixStream,
    opts: Option<AttachOptions>,
    buf: Vec<u8>,
    /// The `run`/`start -a` that started us: its stdin EOF closes the
    /// container's stdin.
    starter: bool,
}

/// CRI log lines: `<time> <stream> <F|P> <text>`; P marks a partial line.
struct LogWriter {
    file: File,
    partial: [Vec<u8>; 2],
}

impl LogWriter {
    fn write(&mut self, stream: usize, mut data: &[u8]) {
        let name = if stream == 0 { "stdout" } else { "stderr" };
        let mut out = Vec::new();
        let now = time::format_rfc3339(time::now_nanos());
        while let Some(i) = data.iter().position(|b| *b == b'\n') {
            let p = &mut self.partial[stream];
            out.extend_from_slice(format!("{now} {name} F ").as_bytes());
            out.append(p);
            out.extend_from_slice(&data[..i]);
            out.push(b'\n');
            data = &data[i + 1..];
        }
        self.partial[stream].extend_from_slice(data);
        if self.partial[stream].len() >= 16 * 1024 {
            self.flush_partial(stream, &mut out, &now);
        }
        if !out.is_empty() {
            let _ = self.file.write_all(&out);
        }
    }

    fn flush_partial(&mut self, stream: usize, out: &mut Vec<u8>, now: &str) {
        let name = if stream == 0 { "stdout" } else { "stderr" };
        if self.partial[stream].is_empty() {
            return;
        }
        out.extend_from_slice(format!("{now} {name} P ").as_bytes());
        out.append(&mut self.partial[stream]);
        out.push(b'\n');
    }

    fn finish(&mut self) {
        let now = time::format_rfc3339(time::now_nanos());
        let mut out = Vec::new();
        self.flush_partial(0, &mut out, &now);
        self.flush_partial(1, &mut out, &now);
        let _ = self.file.write_all(&out);
    }
}

/// Sets `lo` up in the container's new network namespace, as Docker
/// does for `--network none`. Safe to setns here: the monitor has one
/// thread.
fn loopback_up(pid: i32) -> io::Result<()> {
    let own = File::open("/proc/self/ns/net")?;
    let theirs = File::open(format!("/proc/{pid}/ns/net"))?;
    // SAFETY: setns/socket/ioctl on fds we own, with a zeroed ifreq.
    unsafe {
        if libc::setns(theirs.as_raw_fd(), libc::CLONE_NEWNET) != 0 {
            return Err(io::Error::last_os_error());
        }
        let r = (|| {
            let s = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
            if s < 0 {
                return Err(io::Error::last_os_error());
            }
            let s = OwnedFd::from_raw_fd(s);
            let mut ifr: libc::ifreq = std::mem::zeroed();
            for (i, b) in b"lo".iter().enumerate() {
                ifr.ifr_name[i] = *b as libc::c_char;
            }
            if libc::ioctl(s.as_raw_fd(), libc::SIOCGIFFLAGS, &mut ifr) != 0 {
                return Err(io::Error::last_os_error());
            }
            ifr.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
            if libc::ioctl(s.as_raw_fd(), libc::SIOCSIFFLAGS, &ifr) != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        })();
        if libc::setns(own.as_raw_fd(), libc::CLONE_NEWNET) != 0 {
            return Err(io::Error::last_os_error());
        }
        r
    }
}

/// How one run of the process ended.
struct Ended {
    code: i32,
    oom: bool,
}

struct Monitor<'a> {
    engine: &'a Engine,
    c: Container,
    paths: Paths,
    run_dir: File,
    listener: UnixListener,
    clients: Vec<Client>,
    log: LogWriter,
    size: Option<TtySize>,
    /// Sockets holding the host ports this container publishes.
    port_guards: Vec<OwnedFd>,
    /// The embedded DNS resolver, on a network of the container's own.
    resolver: Option<berth_net::dns::Resolver>,
    /// The health check, while the process runs.
    prober: Option<Prober>,
    /// The bundle of this run mounted its volumes (unmount events due).
    volumes_mounted: bool,
}

/// Entry point of `berth monitor <id>`. Returns the monitor's exit code.
pub fn run(opts: EngineOptions, id: &str) -> i32 {
    // Nothing we write to may kill us: clients come and go.
    // SAFETY: setting a signal disposition.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    }
    // SAFETY: fd 3 is the starter's socket when BERTH_STARTER is set.
    let starter =
        std::env::var_os("BERTH_STARTER").map(|_| unsafe { UnixStream::from_raw_fd(STARTER_FD) });
    std::env::remove_var("BERTH_STARTER");
    match monitor(opts, id, starter) {
        Ok(()) => 0,
        Err((e, mut starter)) => {
            if let Some(s) = starter.as_mut() {
                let _ = s.write_all(&attach::encode_event(&Event::Error {
                    message: e.to_string(),
                    code: 125,
                }));
            }
            1
        }
    }
}

type Failure = (Error, Option<UnixStream>);

fn monitor(opts: EngineOptions, id: &str, starter: Option<UnixStream>) -> Result<(), Failure> {
    let engine = match Engine::open(opts) {
        Ok(e) => e,
        Err(e) => return Err((e, starter)),
    };
    let c = match engine.container(id) {
        Ok(c) => c,
        Err(e) => return Err((e, starter)),
    };
    let paths = engine.paths(&c.id);
    let setup = (|| -> Result<(File, File, UnixListener, LogWriter)> {
        fs::create_dir_all(&paths.run).map_err(Error::io("create", &paths.run))?;
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(paths.lock())
            .map_err(Error::io("open", paths.lock()))?;
        // SAFETY: flock on our own fd.
        if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            return Err(Error::Conflict(format!(
                "container {} is already running",
                c.short_id()
            )));
        }
        let run_dir = File::open(&paths.run).map_err(Error::io("open", &paths.run))?;
        let sock = paths.run.join("attach.sock");
        let _ = fs::remove_file(&sock);
        let listener = UnixListener::bind(short_socket_path(&run_dir, "attach.sock"))
            .map_err(Error::io("listen on", &sock))?;
        listener
            .set_nonblocking(true)
            .map_err(Error::io("listen on", &sock))?;
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(paths.log())
            .map_err(Error::io("open", paths.log()))?;
        Ok((
            lock,
            run_dir,
            listener,
            LogWriter {
                file: log,
                partial: [vec![], vec![]],
            },
        ))
    })();
    let (_lock, run_dir, listener, log) = match setup {
        Ok(v) => v,
        Err(e) => return Err((e, starter)),
    };
    // Orphans of the container (and an external runtime's init) become
    // ours to reap.
    // SAFETY: prctl with integer arguments.
    unsafe {
        libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
    }
    let mut m = Monitor {
        engine: &engine,
        c,
        paths,
        run_dir,
        listener,
        clients: Vec::new(),
        log,
        size: None,
        port_guards: Vec::new(),
        resolver: None,
        prober: None,
        volumes_mounted: false,
    };
    if let Some(s) = starter {
        m.add_client(s, true);
        // The starter says what it wants (and its window size) first.
        m.read_hello_blocking();
    }
    m.supervise();
    Ok(())
}

impl Monitor<'_> {
    fn add_client(&mut self, sock: UnixStream, starter: bool) {
        self.clients.push(Client {
            sock,
            opts: None,
            buf: Vec::new(),
            starter,
        });
    }

    fn read_hello_blocking(&mut self) {
        let Some(c) = self.clients.last_mut() else {
            return;
        };
        let _ = c.sock.set_read_timeout(Some(Duration::from_secs(5)));
        let mut chunk = [0u8; 4096];
        while c.opts.is_none() {
            match io::Read::read(&mut c.sock, &mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => c.buf.extend_from_slice(&chunk[..n]),
            }
            // Hello and the starter's window size are needed before the
            // process exists; stdin that follows waits in the buffer for
            // the serve loop.
            while c
                .buf
                .first()
                .is_some_and(|k| *k == attach::HELLO || *k == attach::RESIZE)
            {
                let Ok(Some((kind, payload))) = attach::take_frame(&mut c.buf) else {
                    break;
                };
                if kind == attach::HELLO {
                    c.opts = serde_json::from_slice(&payload).ok();
                } else {
                    self.size = serde_json::from_slice(&payload).ok();
                }
            }
        }
        let _ = c.sock.set_read_timeout(None);
    }

    fn broadcast_event(&mut self, e: &Event) {
        let frame = attach::encode_event(e);
        self.clients
            .retain_mut(|c| c.sock.write_all(&frame).is_ok());
    }

    fn save(&self) {
        let _ = self.engine.save_state(&self.c);
    }

    /// Gives back what start-up touched: the monitor idles for the life of
    /// the container, and most of its footprint is code (libcontainer,
    /// SQLite) it will not run again until the container exits. Clean
    /// file pages are paged out (read back from the binary if needed) and
    /// the allocator returns its free memory.
    fn shed_memory(&self) {
        let _ = self.engine.store.db().execute_batch("PRAGMA shrink_memory");
        let maps = fs::read_to_string("/proc/self/maps").unwrap_or_default();
        for line in maps.lines() {
            let mut f = line.split_whitespace();
            let (Some(range), Some(_perms)) = (f.next(), f.next()) else {
                continue;
            };
            let path = f.nth(3).unwrap_or("");
            if !path.starts_with('/') {
                continue;
            }
            let Some((a, b)) = range.split_once('-') else {
                continue;
            };
            let (Ok(a), Ok(b)) = (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16))
            else {
                continue;
            };
            // SAFETY: advisory call over a mapping of our own; MADV_PAGEOUT
            // never changes contents, only residency.
            unsafe {
                libc::madvise(a as *mut libc::c_void, b - a, libc::MADV_PAGEOUT);
            }
        }
        // SAFETY: glibc call with no preconditions.
        unsafe {
            libc::malloc_trim(0);
        }
    }

    fn stop_requested(&self) -> bool {
        self.paths.run.join("stopping").exists()
    }

    /// Runs the container until it ends for good (restart policy), then
    /// cleans up.
    fn supervise(&mut self) {
        let _ = fs::remove_file(self.paths.run.join("stopping"));
        let mut backoff = Duration::from_millis(100);
        loop {
            let started = Instant::now();
            match self.run_once() {
                Err((message, code)) => {
                    // Could not start: the container stays as it was
                    // (Created for a new one), with the error recorded.
                    self.c.state.error = message.clone();
                    self.c.state.exit_code = code;
                    self.c.state.pid = 0;
                    self.c.state.monitor_pid = 0;
                    if self.c.state.status.is_live() {
                        self.c.state.status = Status::Exited;
                        self.c.state.finished_at = time::now_nanos();
                    }
                    // Undo first, so what is saved holds no ports it lost.
                    self.cleanup_run();
                    self.save();
                    if self.c.spec.host.auto_remove {
                        let _ = self.engine.destroy_locked(&self.c, true);
                    }
                    self.broadcast_event(&Event::Error { message, code });
                    return;
                }
                Ok(ended) => {
                    if ended.oom {
                        self.engine.emit_container(&self.c, "oom", &[]);
                    }
                    self.engine.emit_container(
                        &self.c,
                        "die",
                        &[("exitCode", ended.code.to_string())],
                    );
                    self.c.state.exit_code = ended.code;
                    self.c.state.oom_killed = ended.oom;
                    self.c.state.finished_at = time::now_nanos();
                    self.c.state.pid = 0;
                    self.cleanup_run();
                    // `update` may have changed the policy (and limits)
                    // while it ran: decide on what is recorded now.
                    if let Ok(Some(row)) = self.engine.store.container(&self.c.id) {
                        if let Ok(fresh) = Container::from_row(row) {
                            self.c.spec.host = fresh.spec.host;
                        }
                    }
                    let policy = &self.c.spec.host.restart_policy;
                    let restart = !self.stop_requested()
                        && match policy.name.as_str() {
                            "always" | "unless-stopped" => true,
                            "on-failure" => {
                                ended.code != 0
                                    && (policy.maximum_retry_count == 0
                                        || self.c.state.restart_count < policy.maximum_retry_count)
                            }
                            _ => false,
                        };
                    if !restart {
                        self.c.state.status = Status::Exited;
                        self.c.state.monitor_pid = 0;
                        self.save();
                        if self.c.spec.host.auto_remove {
                            let _ = self.engine.destroy_locked(&self.c, true);
                        }
                        self.broadcast_event(&Event::Exit { code: ended.code });
                        return;
                    }
                    // Attached clients see this run end; the container
                    // goes on without them.
                    self.broadcast_event(&Event::Exit { code: ended.code });
                    self.clients.clear();
                    self.c.state.status = Status::Restarting;
                    self.save();
                    // Docker's backoff: doubles, and resets after a run
                    // that lasted 10 s.
                    if started.elapsed() > Duration::from_secs(10) {
                        backoff = Duration::from_millis(100);
                    }
                    let deadline = Instant::now() + backoff;
                    while Instant::now() < deadline {
                        if self.stop_requested() {
                            break;
                        }
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(60));
                    if self.stop_requested() {
                        self.c.state.status = Status::Exited;
                        self.c.state.monitor_pid = 0;
                        self.save();
                        return;
                    }
                    self.c.state.restart_count += 1;
                }
            }
        }
    }

    /// Undoes what a run set up: the runtime's container (and cgroup)
    /// and the rootfs mount.
    fn cleanup_run(&mut self) {
        if let Ok(rt) = self.engine.runtime_for(&self.c) {
            let _ = rt.delete(&self.c.id);
        }
        self.engine.unmount_container(&self.paths);
        if std::mem::take(&mut self.volumes_mounted) {
            for m in self.c.spec.mounts.iter().filter(|m| m.kind == "volume") {
                self.engine
                    .emit_volume("unmount", &m.name, &[("container", self.c.id.clone())]);
            }
        }
        self.resolver = None;
        self.engine.net_down(&mut self.c, &self.paths);
        self.port_guards.clear();
    }

    /// Starts the process once and serves it until it ends.
    fn run_once(&mut self) -> Result<Ended, (String, i32)> {
        let e125 = |e: Error| (e.to_string(), 125);
        let rt = self.engine.runtime_for(&self.c).map_err(e125)?;
        // Whatever a killed monitor left behind goes first.
        let _ = rt.delete(&self.c.id);
        let bundle = self.set_up()?;

        let tty = self.c.spec.config.tty;
        let mut master: Option<OwnedFd> = None;
        let mut outs: Vec<(usize, OwnedFd)> = Vec::new();
        let mut stdin_w: Option<OwnedFd> = None;
        let console_listener;
        let stdio = if tty {
            let _ = fs::remove_file(self.paths.run.join("console.sock"));
            let l = UnixListener::bind(short_socket_path(&self.run_dir, "console.sock"))
                .map_err(|e| (format!("console socket: {e}"), 125))?;
            let p = short_socket_path(&self.run_dir, "console.sock");
            console_listener = Some(l);
            Stdio::Console(p)
        } else {
            console_listener = None;
            let (or, ow) = pipe().map_err(|e| (format!("pipe: {e}"), 125))?;
            let (er, ew) = pipe().map_err(|e| (format!("pipe: {e}"), 125))?;
            outs.push((0, or));
            outs.push((1, er));
            let stdin = if self.c.spec.config.open_stdin {
                let (ir, iw) = pipe().map_err(|e| (format!("pipe: {e}"), 125))?;
                stdin_w = Some(iw);
                Some(ir)
            } else {
                None
            };
            Stdio::Fds {
                stdin,
                stdout: ow,
                stderr: ew,
            }
        };
        let pid = rt
            .create(&self.c.id, &bundle, stdio)
            .map_err(|e| (e.to_string(), 125))?;
        if let Some(l) = &console_listener {
            let fd = recv_console(l).map_err(|e| (format!("console: {e}"), 125))?;
            if let Some(s) = self.size {
                set_winsize(fd.as_raw_fd(), s);
            }
            master = Some(fd);
        }
        drop(console_listener);
        let _ = fs::remove_file(self.paths.run.join("console.sock"));
        let pidfd = pidfd_open(pid).map_err(|e| (format!("watch process {pid}: {e}"), 125))?;
        if self.c.spec.host.network_mode == "none" {
            loopback_up(pid).map_err(|e| (format!("bring up loopback: {e}"), 125))?;
        }
        // `rm -f` while we were starting: the process never runs.
        if self.stop_requested() {
            return Err(("container removed while it was starting".into(), 137));
        }
        rt.start(&self.c.id).map_err(|e| (e.to_string(), 125))?;

        self.mark_started(pid);

        if let Some(m) = &master {
            set_nonblocking(m.as_raw_fd());
        }
        for (_, fd) in &outs {
            set_nonblocking(fd.as_raw_fd());
        }
        if let Some(w) = &stdin_w {
            set_nonblocking(w.as_raw_fd());
        }
        let status = self.serve(pid, &pidfd, master.as_ref(), &mut outs, &mut stdin_w);
        self.prober = None;
        let code = super::proc::exit_code(status).unwrap_or(255);
        let cg = Cgroup::new(&crate::sys::cgroup_path(&self.c.id));
        let oom = cg.oom_kills() > 0;
        self.log.finish();
        Ok(Ended { code, oom })
    }

    /// Before the runtime: the rootfs mounted, the network up, the bundle
    /// written and, when resolv.conf names it, the embedded resolver (a
    /// container in another's namespace is served by that one's monitor).
    fn set_up(&mut self) -> Result<std::path::PathBuf, (String, i32)> {
        let e125 = |e: Error| (e.to_string(), 125);
        let rootfs = self.paths.rootfs();
        rootfs::unmount(&rootfs);
        self.engine
            .mount_rootfs(&self.c.image_id, &self.paths.dir, &rootfs)
            .map_err(e125)?;
        let own_netns = super::own_netns(&self.c.spec.host.network_mode);
        if own_netns {
            self.port_guards = self
                .engine
                .net_up(&mut self.c, &self.paths)
                .map_err(|e| (e.to_string(), 125))?;
        }
        let (bundle, upstreams) = self.engine.prepare_bundle(&self.c, &self.paths)?;
        self.volumes_mounted = true;
        if let Some(upstreams) = upstreams.filter(|_| own_netns) {
            let ns = crate::network::netns_path(&self.paths);
            self.resolver = Some(
                berth_net::dns::Resolver::new(&ns, &upstreams)
                    .map_err(|e| (format!("start the DNS resolver: {e}"), 125))?,
            );
        }
        Ok(bundle)
    }

    /// Records the start (state, fresh health, event) and tells clients.
    fn mark_started(&mut self, pid: i32) {
        self.c.state.status = Status::Running;
        self.c.state.pid = pid;
        self.c.state.started_at = time::now_nanos();
        self.c.state.finished_at = 0;
        self.c.state.exit_code = 0;
        self.c.state.error.clear();
        self.c.state.oom_killed = false;
        self.c.state.monitor_pid = std::process::id() as i32;
        // Every start begins its health over, as Docker's does.
        let probe = Probe::of(self.c.spec.config.healthcheck.as_ref());
        self.c.state.health = probe.as_ref().map(|_| Health::starting());
        self.prober = probe.map(Prober::new);
        self.save();
        self.engine.emit_container(&self.c, "start", &[]);
        self.broadcast_event(&Event::Started { pid });
    }

    /// Starts a due probe, kills an overdue one.
    fn health_tick(&mut self) {
        let Some(p) = self.prober.as_mut() else {
            return;
        };
        if let Some(r) = p.tick(self.engine, &self.c) {
            self.health_result(r);
        }
    }

    /// Applies a probe's result: records it where inspect and ps read it,
    /// and says so in the journal when the status changes.
    fn health_result(&mut self, r: ProbeResult) {
        let Some(p) = self.prober.as_mut() else {
            return;
        };
        let h = self.c.state.health.get_or_insert_with(Health::starting);
        let changed = h.record(r, &p.probe, self.c.state.started_at);
        p.schedule(&h.status);
        let status = h.status.clone();
        let json = serde_json::to_string(&h).expect("health serialises");
        let _ = self
            .engine
            .store
            .set_container_state_field(&self.c.id, "health", &json);
        if changed {
            self.engine
                .emit_container(&self.c, &format!("health_status: {status}"), &[]);
        }
    }

    fn output(&mut self, stream: usize, data: &[u8]) {
        self.log.write(stream, data);
        let kind = if stream == 0 {
            attach::STDOUT
        } else {
            attach::STDERR
        };
        let frame = attach::encode(kind, data);
        self.clients.retain_mut(|c| {
            let wants = c
                .opts
                .is_some_and(|o| if stream == 0 { o.stdout } else { o.stderr });
            !wants || c.sock.write_all(&frame).is_ok()
        });
    }
}
