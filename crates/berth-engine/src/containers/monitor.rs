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
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::time::{Duration, Instant};

use berth_oci::time;
use berth_runtime::{cgroup::Cgroup, Stdio};

use super::attach::{self, AttachOptions, Event, TtySize};
use super::health::{Health, Probe, ProbeResult};
use super::prober::Prober;
use super::proc::{
    pidfd_open, pipe, read_fd, recv_console, set_nonblocking, set_winsize, short_socket_path,
    write_fd, STARTER_FD,
};
use super::rootfs;
use super::{Container, Paths, Status};
use crate::{Engine, EngineOptions, Error, Result};

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
        // The embedded resolver, when resolv.conf names it (a container in
        // another's namespace is served by that one's monitor).
        if let Some(upstreams) = upstreams.filter(|_| own_netns) {
            let ns = crate::network::netns_path(&self.paths);
            self.resolver = Some(
                berth_net::dns::Resolver::new(&ns, &upstreams)
                    .map_err(|e| (format!("start the DNS resolver: {e}"), 125))?,
            );
        }

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
        rt.start(&self.c.id).map_err(|e| (e.to_string(), 125))?;

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
        let code = match status {
            nix::sys::wait::WaitStatus::Exited(_, c) => c,
            nix::sys::wait::WaitStatus::Signaled(_, s, _) => 128 + s as i32,
            _ => 255,
        };
        let cg = Cgroup::new(&crate::sys::cgroup_path(&self.c.id));
        let oom = cg.oom_kills() > 0;
        self.log.finish();
        Ok(Ended { code, oom })
    }

    /// The poll loop: output to log and clients, stdin from clients, new
    /// clients, until the init is reaped and its output drained.
    fn serve(
        &mut self,
        pid: i32,
        pidfd: &OwnedFd,
        master: Option<&OwnedFd>,
        outs: &mut Vec<(usize, OwnedFd)>,
        stdin_w: &mut Option<OwnedFd>,
    ) -> nix::sys::wait::WaitStatus {
        use nix::sys::wait::WaitStatus;
        let mut pending_in: Vec<u8> = Vec::new();
        let mut close_stdin = false;
        let mut exited: Option<WaitStatus> = None;
        let mut drain_deadline: Option<Instant> = None;
        let mut buf = vec![0u8; 32 * 1024];
        // Shed start-up memory once the starter has gone: pages it still
        // maps cannot be paged out from under it.
        let mut shed_at = Some(Instant::now() + Duration::from_millis(500));
        loop {
            if shed_at.is_some_and(|t| Instant::now() >= t) {
                self.shed_memory();
                shed_at = None;
            }
            if exited.is_some() && outs.is_empty() && master.is_none() {
                break;
            }
            if exited.is_none() {
                self.health_tick();
            }
            if let Some(d) = drain_deadline {
                if Instant::now() > d {
                    break;
                }
            }
            let (mut fds, at) = self.poll_set(
                exited.is_none().then_some(pidfd),
                outs,
                master,
                stdin_w.as_ref(),
                &pending_in,
            );
            let buffered = self.clients.iter().any(|c| attach::has_frame(&c.buf));
            let timeout = self.poll_timeout(buffered, exited.is_some(), shed_at);
            // SAFETY: fds is a valid array of pollfd.
            let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout) };
            if n < 0 {
                if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                break;
            }
            // A timeout with frames still buffered from a client must
            // fall through to handle them, or poll(0) spins forever.
            if n == 0 && exited.is_none() && !buffered {
                continue;
            }
            if n == 0 && exited.is_some() && !buffered {
                // Nothing more arrived since the exit: done.
                break;
            }
            // The init ended: reap it (and any orphans), then drain.
            if exited.is_none() && fds[0].revents != 0 {
                exited = self.reap(pid);
                if exited.is_some() {
                    drain_deadline = Some(Instant::now() + Duration::from_secs(2));
                }
            }
            let listener_idx = at.base_out - 1;
            if fds[listener_idx].revents & libc::POLLIN != 0 {
                self.accept_clients();
            }
            self.read_outputs(&fds[at.base_out..], outs, &mut buf);
            let mut master_gone = false;
            if let (Some(m), Some(idx)) = (master, at.master) {
                master_gone = self.pump_master(m, fds[idx].revents, &mut buf, &mut pending_in);
            }
            if master_gone && exited.is_some() {
                break;
            }
            if let Some(idx) = at.stdin {
                pump_stdin(stdin_w, fds[idx].revents, &mut pending_in);
            }
            finish_stdin(&mut close_stdin, &pending_in, stdin_w);
            if let Some(i) = at.dns {
                self.serve_dns(fds[i].revents, fds[i + 1].revents);
            }
            if !at.probe_fds.is_empty() || self.prober.is_some() {
                self.probe_ready(&fds[at.probe..at.probe + at.probe_fds.len()]);
            }
            self.serve_clients(
                &fds[at.base_clients..],
                master,
                &mut pending_in,
                &mut close_stdin,
            );
            finish_stdin(&mut close_stdin, &pending_in, stdin_w);
        }
        // Reap now if the loop ended on output first.
        exited.unwrap_or_else(|| {
            nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None)
                .unwrap_or(WaitStatus::Exited(nix::unistd::Pid::from_raw(pid), 255))
        })
    }

    /// How long one turn may wait: not at all with frames buffered, a
    /// little while draining after the exit, else until the next memory
    /// shed or probe.
    fn poll_timeout(&self, buffered: bool, exited: bool, shed_at: Option<Instant>) -> i32 {
        if buffered {
            0
        } else if exited {
            100
        } else {
            let shed = shed_at.map(|t| t.saturating_duration_since(Instant::now()));
            let probe = self.prober.as_ref().map(|p| p.wait());
            match shed.into_iter().chain(probe).min() {
                Some(d) => d.as_millis().min(i32::MAX as u128 - 1) as i32 + 1,
                None => -1,
            }
        }
    }

    /// New attach clients on the listener.
    fn accept_clients(&mut self) {
        while let Ok((s, _)) = self.listener.accept() {
            let _ = s.set_nonblocking(false);
            self.add_client(s, false);
        }
    }

    /// The health probe's fds (`fds`): a finished probe's result.
    fn probe_ready(&mut self, fds: &[libc::pollfd]) {
        let revents: Vec<i16> = fds.iter().map(|f| f.revents).collect();
        if let Some(r) = self.prober.as_mut().and_then(|p| p.ready(&revents)) {
            self.health_result(r);
        }
    }

    /// The poll set of one turn of `serve`: the init's pidfd (until it
    /// exits), the attach listener, output pipes, the pty, stdin, the
    /// resolver's sockets, the prober's and the clients'.
    fn poll_set(
        &self,
        pidfd: Option<&OwnedFd>,
        outs: &[(usize, OwnedFd)],
        master: Option<&OwnedFd>,
        stdin_w: Option<&OwnedFd>,
        pending_in: &[u8],
    ) -> (Vec<libc::pollfd>, PollSlots) {
        let mut fds: Vec<libc::pollfd> = Vec::new();
        let pf = |fd: RawFd, events: i16| libc::pollfd {
            fd,
            events,
            revents: 0,
        };
        let want_in = pending_in.len() < 256 * 1024;
        if let Some(pidfd) = pidfd {
            fds.push(pf(pidfd.as_raw_fd(), libc::POLLIN));
        }
        fds.push(pf(self.listener.as_raw_fd(), libc::POLLIN));
        let base_out = fds.len();
        for (_, fd) in outs.iter() {
            fds.push(pf(fd.as_raw_fd(), libc::POLLIN));
        }
        let master_idx = master.map(|m| {
            let mut ev = libc::POLLIN;
            if !pending_in.is_empty() {
                ev |= libc::POLLOUT;
            }
            fds.push(pf(m.as_raw_fd(), ev));
            fds.len() - 1
        });
        let stdin_idx = match stdin_w {
            Some(w) if !pending_in.is_empty() => {
                fds.push(pf(w.as_raw_fd(), libc::POLLOUT));
                Some(fds.len() - 1)
            }
            _ => None,
        };
        let dns_idx = self.resolver.as_ref().map(|r| {
            for fd in r.fds() {
                fds.push(pf(fd, libc::POLLIN));
            }
            fds.len() - 2
        });
        let probe_idx = fds.len();
        let probe_fds = self.prober.as_ref().map(|p| p.fds()).unwrap_or_default();
        for fd in &probe_fds {
            fds.push(pf(*fd, libc::POLLIN));
        }
        let base_clients = fds.len();
        for c in &self.clients {
            fds.push(pf(
                c.sock.as_raw_fd(),
                if want_in { libc::POLLIN } else { 0 },
            ));
        }
        let slots = PollSlots {
            base_out,
            master: master_idx,
            stdin: stdin_idx,
            dns: dns_idx,
            probe: probe_idx,
            probe_fds,
            base_clients,
        };
        (fds, slots)
    }

    /// Reaps the init and any orphans; the init's status once it ended.
    fn reap(&mut self, pid: i32) -> Option<nix::sys::wait::WaitStatus> {
        use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
        let mut exited = None;
        loop {
            match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(_) => break,
                Ok(s) => {
                    let reaped = s.pid().map(|p| p.as_raw());
                    if reaped == Some(pid) {
                        exited = Some(s);
                    } else if let (Some(p), Some(r)) = (self.prober.as_mut(), reaped) {
                        p.reaped(r, s);
                    }
                }
            }
        }
        exited
    }

    /// Output: reads the ready pipes (`fds` lines up with `outs`) into the
    /// log and the clients, and drops the closed ones.
    fn read_outputs(
        &mut self,
        fds: &[libc::pollfd],
        outs: &mut Vec<(usize, OwnedFd)>,
        buf: &mut [u8],
    ) {
        let mut closed = Vec::new();
        for (i, (stream, fd)) in outs.iter().enumerate() {
            let re = fds[i].revents;
            if re == 0 {
                continue;
            }
            match read_fd(fd.as_raw_fd(), buf) {
                Ok(0) => closed.push(i),
                Ok(n) => {
                    let data = buf[..n].to_vec();
                    self.output(*stream, &data);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(_) => closed.push(i),
            }
        }
        for i in closed.into_iter().rev() {
            outs.remove(i);
        }
    }

    /// The pty: its output to the log, pending stdin to it. True when it
    /// is gone.
    fn pump_master(
        &mut self,
        m: &OwnedFd,
        re: i16,
        buf: &mut [u8],
        pending_in: &mut Vec<u8>,
    ) -> bool {
        let mut master_gone = false;
        if re & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0 {
            match read_fd(m.as_raw_fd(), buf) {
                Ok(0) => master_gone = true,
                Ok(n) => {
                    let data = buf[..n].to_vec();
                    self.output(0, &data);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                // EIO: the last holder of the slave side is gone.
                Err(_) => master_gone = true,
            }
        }
        if re & libc::POLLOUT != 0 && !pending_in.is_empty() {
            if let Ok(n) = write_fd(m.as_raw_fd(), pending_in) {
                pending_in.drain(..n);
            }
        }
        master_gone
    }

    /// DNS: the embedded resolver's local and upstream sockets.
    fn serve_dns(&mut self, local: i16, upstream: i16) {
        let Some(r) = self.resolver.as_mut() else {
            return;
        };
        if local != 0 {
            // The networks whose names it sees can change while it
            // runs (network connect), so ask each time.
            let nets: Vec<String> = crate::network::read_endpoints(&self.paths)
                .into_iter()
                .filter(|e| e.dns)
                .map(|e| e.network_id)
                .collect();
            r.serve_local(&nets);
        }
        if upstream != 0 {
            r.serve_upstream();
        }
    }

    /// Clients: hello, stdin, resize, hang-ups. `fds` lines up with the
    /// clients polled.
    fn serve_clients(
        &mut self,
        fds: &[libc::pollfd],
        master: Option<&OwnedFd>,
        pending_in: &mut Vec<u8>,
        close_stdin: &mut bool,
    ) {
        let mut gone = Vec::new();
        let nclients = self.clients.len().min(fds.len());
        for (i, pfd) in fds.iter().enumerate().take(nclients) {
            let re = pfd.revents;
            let c = &mut self.clients[i];
            if re == 0 && !attach::has_frame(&c.buf) {
                continue;
            }
            if re != 0 {
                let mut chunk = [0u8; 16 * 1024];
                match io::Read::read(&mut c.sock, &mut chunk) {
                    Ok(0) | Err(_) => {
                        gone.push(i);
                        continue;
                    }
                    Ok(n) => c.buf.extend_from_slice(&chunk[..n]),
                }
            }
            loop {
                let frame = match attach::take_frame(&mut c.buf) {
                    Ok(Some(f)) => f,
                    Ok(None) => break,
                    Err(_) => {
                        gone.push(i);
                        break;
                    }
                };
                let wants_stdin = c.opts.is_some_and(|o| o.stdin);
                match frame.0 {
                    attach::HELLO => c.opts = serde_json::from_slice(&frame.1).ok(),
                    attach::STDIN if wants_stdin => pending_in.extend_from_slice(&frame.1),
                    attach::STDIN_EOF if wants_stdin => {
                        if master.is_some() {
                            // A tty has no EOF of its own: send ^D.
                            pending_in.push(4);
                        } else if c.starter || self.c.spec.config.stdin_once {
                            *close_stdin = true;
                        }
                    }
                    attach::RESIZE => {
                        if let (Some(m), Ok(s)) =
                            (master, serde_json::from_slice::<TtySize>(&frame.1))
                        {
                            set_winsize(m.as_raw_fd(), s);
                        }
                    }
                    _ => {}
                }
            }
        }
        gone.sort_unstable();
        gone.dedup();
        for i in gone.into_iter().rev() {
            self.clients.remove(i);
        }
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

/// Where each kind of fd sits in one turn's poll set.
struct PollSlots {
    /// The first output pipe; the attach listener is just before it.
    base_out: usize,
    master: Option<usize>,
    stdin: Option<usize>,
    /// The resolver's local socket; its upstream one follows.
    dns: Option<usize>,
    probe: usize,
    probe_fds: Vec<RawFd>,
    base_clients: usize,
}

/// Stdin: writes what clients sent to the container's stdin pipe, and
/// closes it when the container stops reading.
fn pump_stdin(stdin_w: &mut Option<OwnedFd>, re: i16, pending_in: &mut Vec<u8>) {
    let Some(w) = stdin_w.as_ref() else {
        return;
    };
    if re & libc::POLLOUT != 0 {
        match write_fd(w.as_raw_fd(), pending_in) {
            Ok(n) => {
                pending_in.drain(..n);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(_) => {
                pending_in.clear();
                *stdin_w = None;
            }
        }
    } else if re & (libc::POLLERR | libc::POLLHUP) != 0 {
        pending_in.clear();
        *stdin_w = None;
    }
}

/// Closes stdin once asked to (`close_stdin`) and all of it is written.
fn finish_stdin(close_stdin: &mut bool, pending_in: &[u8], stdin_w: &mut Option<OwnedFd>) {
    if *close_stdin && pending_in.is_empty() {
        *stdin_w = None;
        *close_stdin = false;
    }
}
