//! Typing as a person does: `run -it`, `exec -it`, detach and attach,
//! window sizes and exit codes, through a real pseudo-terminal (never
//! pipes). Each test has its own store.

mod common;

use std::time::Duration;

use common::pty::OnPty;
use common::{store_with_busybox as store, wait_for};

fn exit_code(p: &mut OnPty) -> i32 {
    p.wait().code().unwrap_or(-1)
}

#[test]
fn exec_it_opens_a_shell_that_answers_and_passes_its_exit_code() {
    let s = store();
    s.detached(&["--name", "shellhost", "busybox", "sleep", "600"]);
    let mut p = OnPty::spawn(s.cmd(&["exec", "-it", "shellhost", "sh"]));
    // The shell's prompt, then what we type and its answer.
    p.expect("# ");
    p.send(b"echo $((6*7)); tty\r");
    p.expect("42");
    p.expect("/dev/pts/");
    // The window size of our terminal (OnPty starts at 40x200).
    p.send(b"stty size\r");
    p.expect("40 200");
    p.send(b"exit 3\r");
    assert_eq!(exit_code(&mut p), 3, "{}", p.text());

    // -t on a container that was itself started with -t.
    s.detached(&["-t", "--name", "ttyhost", "busybox", "sleep", "600"]);
    let mut p = OnPty::spawn(s.cmd(&["exec", "-it", "ttyhost", "sh", "-c", "read x; echo got-$x"]));
    p.send(b"typed\r");
    p.expect("got-typed");
    assert_eq!(exit_code(&mut p), 0);
}

#[test]
fn exec_it_follows_a_resized_window() {
    let s = store();
    s.detached(&["--name", "resizer", "busybox", "sleep", "600"]);
    let mut p = OnPty::spawn(s.cmd(&["exec", "-it", "resizer", "sh"]));
    p.expect("# ");
    p.resize(33, 120);
    // SIGWINCH reaches berth, which passes the size on.
    wait_for("the new size inside", || {
        let from = p.len();
        p.send(b"stty size\r");
        std::thread::sleep(Duration::from_millis(300));
        p.since(from).contains("33 120")
    });
    p.send(b"exit\r");
    assert_eq!(exit_code(&mut p), 0);
}

#[test]
fn run_it_detach_with_ctrl_p_ctrl_q_and_attach_again() {
    let s = store();
    let mut p = OnPty::spawn(s.cmd(&["run", "-it", "--name", "interactive", "busybox", "sh"]));
    p.expect("# ");
    p.send(b"echo first-$((1+1))\r");
    p.expect("first-2");
    // Docker's default detach keys leave it running.
    p.send(&[0x10, 0x11]);
    assert_eq!(exit_code(&mut p), 0, "{}", p.text());
    assert!(s
        .ok(&["ps", "--format", "{{.Names}} {{.Status}}"])
        .contains("interactive Up"));

    let mut a = OnPty::spawn(s.cmd(&["attach", "interactive"]));
    std::thread::sleep(Duration::from_millis(300));
    a.send(b"echo again-$((2+2))\r");
    a.expect("again-4");
    a.send(b"exit 7\r");
    assert_eq!(exit_code(&mut a), 7, "{}", a.text());
    wait_for("the container to exit", || {
        s.ok(&["ps", "-a", "--format", "{{.Names}} {{.Status}}"])
            .contains("interactive Exited (7)")
    });
}

#[test]
fn run_it_ctrl_c_reaches_the_shell_and_ctrl_d_ends_it() {
    let s = store();
    let mut p = OnPty::spawn(s.cmd(&["run", "-it", "--rm", "busybox", "sh"]));
    p.expect("# ");
    // ^C interrupts what runs in the container (a raw terminal sends the
    // byte on), not berth.
    p.send(b"sleep 100\r");
    std::thread::sleep(Duration::from_millis(300));
    p.send(&[0x03]);
    let from = p.len();
    p.send(b"echo after-interrupt\r");
    wait_for("the shell to answer", || {
        p.since(from).contains("after-interrupt\r\n")
    });
    // ^D on an empty line ends the shell: exit 0.
    p.send(&[0x04]);
    assert_eq!(exit_code(&mut p), 0, "{}", p.text());
}

#[test]
fn it_without_a_terminal_is_refused_as_docker_does() {
    let s = store();
    let out = s.run(&["run", "-it", "--rm", "busybox", "true"]);
    assert_ne!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stderr).contains("the input device is not a TTY"));
    s.detached(&["--name", "pipehost", "busybox", "sleep", "600"]);
    let out = s.run(&["exec", "-it", "pipehost", "true"]);
    assert_ne!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stderr).contains("the input device is not a TTY"));
}
