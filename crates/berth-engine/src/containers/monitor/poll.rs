//! The monitor's poll loop while a container runs: one turn polls the
//! init's pidfd, the attach listener and clients, the output pipes or
//! pty, stdin, the embedded resolver and the health probe, then handles
//! what poll reported.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use super::super::attach::{self, TtySize};
use super::super::proc::{read_fd, set_winsize, write_fd};
use super::Monitor;

impl Monitor<'_> {
    /// The poll loop: output to log and clients, stdin from clients, new
    /// clients, until the init is reaped and its output drained.
    pub(super) fn serve(
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
