//! Process and fd plumbing shared by the monitor and the commands that
//! talk to it: pidfds, the monitor lock, raw fd reads and writes, the
//! console socket, signal names and rlimits. A leaf: the monitor and
//! `lifecycle` both use it, and neither uses the other.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::time::Duration;

use super::attach::TtySize;
use super::model::{Paths, Ulimit};
use crate::{Error, Result};

/// The starter's end of the socketpair arrives as this fd.
pub const STARTER_FD: RawFd = 3;

pub(crate) fn pidfd_open(pid: i32) -> io::Result<OwnedFd> {
    // SAFETY: plain syscall; the result is a new fd we own.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this fd.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

pub(crate) fn set_nonblocking(fd: RawFd) {
    // SAFETY: fcntl on an fd we own.
    unsafe {
        let fl = libc::fcntl(fd, libc::F_GETFL);
        libc::fcntl(fd, libc::F_SETFL, fl | libc::O_NONBLOCK);
    }
}

pub(crate) fn read_fd(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: buf is valid for its length.
    let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

pub(crate) fn write_fd(fd: RawFd, buf: &[u8]) -> io::Result<usize> {
    // SAFETY: buf is valid for its length.
    let n = unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

pub(crate) fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(io::Error::from)?;
    Ok((r, w))
}

pub(crate) fn set_winsize(fd: RawFd, size: TtySize) {
    let ws = libc::winsize {
        ws_row: size.rows,
        ws_col: size.cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads a winsize we own.
    unsafe {
        libc::ioctl(fd, libc::TIOCSWINSZ, &ws);
    }
}

/// Receives the pty master a runtime sends over a console socket.
pub(crate) fn recv_console(listener: &UnixListener) -> io::Result<OwnedFd> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    let (conn, _) = listener.accept()?;
    let mut buf = [0u8; 4096];
    let mut iov = [io::IoSliceMut::new(&mut buf)];
    let mut space = nix::cmsg_space!([RawFd; 1]);
    let msg = recvmsg::<()>(
        conn.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::empty(),
    )
    .map_err(io::Error::from)?;
    for c in msg.cmsgs().map_err(io::Error::from)? {
        if let ControlMessageOwned::ScmRights(fds) = c {
            if let Some(fd) = fds.first() {
                // SAFETY: SCM_RIGHTS gave us a new fd.
                return Ok(unsafe { OwnedFd::from_raw_fd(*fd) });
            }
        }
    }
    Err(io::Error::other(
        "runtime sent no pty over the console socket",
    ))
}

/// A path to `name` inside `dir` short enough for a socket address,
/// whatever the length of `dir`: through our own fd for the directory.
pub(crate) fn short_socket_path(dir: &File, name: &str) -> PathBuf {
    PathBuf::from(format!(
        "/proc/{}/fd/{}/{name}",
        std::process::id(),
        dir.as_raw_fd()
    ))
}

/// `SIGTERM`, `TERM`, `term` or `15`.
pub(crate) fn parse_signal(s: &str) -> Result<i32> {
    if let Ok(n) = s.parse::<i32>() {
        if (1..=64).contains(&n) {
            return Ok(n);
        }
    }
    let up = s.to_ascii_uppercase();
    let name = if up.starts_with("SIG") {
        up
    } else {
        format!("SIG{up}")
    };
    name.parse::<nix::sys::signal::Signal>()
        .map(|s| s as i32)
        .map_err(|_| Error::InvalidArgument(format!("Invalid signal: {s}")))
}

/// True while a monitor holds the container's lock.
pub(crate) fn monitor_alive(p: &Paths) -> bool {
    let Ok(f) = File::open(p.lock()) else {
        return false;
    };
    // SAFETY: flock on our own fd.
    let r = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_SH | libc::LOCK_NB) };
    r != 0
}

/// Takes the monitor lock (waiting if `wait`), so no monitor runs the
/// container meanwhile.
pub(crate) fn lock_monitor(p: &Paths, wait: bool) -> Result<Option<File>> {
    if !p.run.exists() {
        return Ok(None);
    }
    let f = match OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(p.lock())
    {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io("open", p.lock())(e)),
    };
    let flags = if wait {
        libc::LOCK_EX
    } else {
        libc::LOCK_EX | libc::LOCK_NB
    };
    // SAFETY: flock on our own fd.
    if unsafe { libc::flock(f.as_raw_fd(), flags) } != 0 {
        return Err(Error::Conflict("container is running".into()));
    }
    Ok(Some(f))
}

/// rlimits for --ulimit, refusing values above our own hard limits: a
/// container cannot raise them (root here lacks CAP_SYS_RESOURCE), and
/// asking would make the runtime fail with a vaguer error.
pub(crate) fn rlimits(ulimits: &[Ulimit]) -> Result<Vec<berth_runtime::spec::Rlimit>, String> {
    let mut out = Vec::new();
    for u in ulimits {
        let kind = format!("RLIMIT_{}", u.name.to_ascii_uppercase());
        let res = match u.name.as_str() {
            "core" => libc::RLIMIT_CORE,
            "cpu" => libc::RLIMIT_CPU,
            "data" => libc::RLIMIT_DATA,
            "fsize" => libc::RLIMIT_FSIZE,
            "locks" => libc::RLIMIT_LOCKS,
            "memlock" => libc::RLIMIT_MEMLOCK,
            "msgqueue" => libc::RLIMIT_MSGQUEUE,
            "nice" => libc::RLIMIT_NICE,
            "nofile" => libc::RLIMIT_NOFILE,
            "nproc" => libc::RLIMIT_NPROC,
            "rss" => libc::RLIMIT_RSS,
            "rtprio" => libc::RLIMIT_RTPRIO,
            "rttime" => libc::RLIMIT_RTTIME,
            "sigpending" => libc::RLIMIT_SIGPENDING,
            "stack" => libc::RLIMIT_STACK,
            "as" => libc::RLIMIT_AS,
            _ => return Err(format!("invalid ulimit type: {}", u.name)),
        };
        let mut cur = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit fills the struct we pass.
        unsafe { libc::getrlimit(res, &mut cur) };
        if u.hard > cur.rlim_max {
            return Err(format!(
                "ulimit {}: hard limit {} is above this host's hard limit {} (raising it needs CAP_SYS_RESOURCE)",
                u.name,
                if u.hard == u64::MAX { "unlimited".to_string() } else { u.hard.to_string() },
                cur.rlim_max
            ));
        }
        out.push(berth_runtime::spec::Rlimit {
            kind,
            soft: u.soft,
            hard: u.hard,
        });
    }
    Ok(out)
}

/// tini, which Docker ships as docker-init, for `--init`.
pub(crate) fn init_binary() -> Option<PathBuf> {
    [
        "/usr/bin/tini-static",
        "/usr/bin/docker-init",
        "/usr/libexec/docker/docker-init",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|p| p.is_file())
}

/// A process's end as an exit code, Docker's way: its status, or 128 + N
/// for signal N; None for a status that is not an end.
pub(crate) fn exit_code(s: nix::sys::wait::WaitStatus) -> Option<i32> {
    use nix::sys::wait::WaitStatus;
    match s {
        WaitStatus::Exited(_, c) => Some(c),
        WaitStatus::Signaled(_, sig, _) => Some(128 + sig as i32),
        _ => None,
    }
}

pub(crate) fn pidfd_signal(pidfd: &OwnedFd, sig: i32) -> io::Result<()> {
    // SAFETY: plain syscall on an fd we own.
    let r = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            sig,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Waits until the process behind `pidfd` exits; false on timeout.
pub(crate) fn wait_pidfd(pidfd: &OwnedFd, timeout: Option<Duration>) -> bool {
    let mut p = libc::pollfd {
        fd: pidfd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = timeout.map(|t| t.as_millis() as i32).unwrap_or(-1);
    // SAFETY: one valid pollfd.
    unsafe { libc::poll(&mut p, 1, ms) > 0 }
}
