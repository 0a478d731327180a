//! Real containers on the busybox fixture: namespaces, overlayfs, cgroups,
//! pipes and ptys, each test in its own store.

mod common;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{json, mounts_under, TestStore};

fn store() -> TestStore {
    let s = TestStore::new();
    s.import_busybox("busybox");
    s
}

fn code(out: &std::process::Output) -> i32 {
    out.status.code().unwrap_or(-1)
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(20);
    while Instant::now() < end {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("timed out waiting for {what}");
}

fn inspect(s: &TestStore, name: &str, tmpl: &str) -> String {
    s.ok(&["inspect", "-f", tmpl, name]).trim().to_string()
}

#[test]
fn exit_codes_pass_through_like_docker() {
    let s = store();
    let out = s.run(&[
        "run",
        "--rm",
        "busybox",
        "sh",
        "-c",
        "echo out; echo err >&2; exit 3",
    ]);
    assert_eq!(code(&out), 3);
    assert_eq!(text(&out.stdout), "out\n");
    assert_eq!(text(&out.stderr), "err\n");

    let out = s.run(&["run", "--rm", "busybox", "bash"]);
    assert_eq!(code(&out), 127);
    assert!(
        text(&out.stderr).contains("exec: \"bash\": executable file not found in $PATH"),
        "{}",
        text(&out.stderr)
    );
    let out = s.run(&["run", "--rm", "busybox", "/etc/passwd"]);
    assert_eq!(code(&out), 126);
    assert!(text(&out.stderr).contains("permission denied"));
    let out = s.run(&["run", "--rm", "--pull", "never", "nosuchimage", "true"]);
    assert_eq!(code(&out), 125);
    assert!(text(&out.stderr).contains("No such image: nosuchimage"));
    // A pull that fails is Docker's 125 too (a registry on this machine
    // that is not there: tests never reach the internet).
    let out = s.run(&["run", "--rm", "127.0.0.1:9/nosuchimage", "true"]);
    assert_eq!(code(&out), 125);
    assert!(text(&out.stderr).contains("Unable to find image '127.0.0.1:9/nosuchimage' locally"));
    let out = s.run(&["run", "--rm", "--memory", "lots", "busybox", "true"]);
    assert_eq!(code(&out), 125);

    // Killed by a signal from outside: 128 + 9.
    let id = s.detached(&["busybox", "sleep", "60"]);
    s.ok(&["kill", &id]);
    assert_eq!(s.ok(&["wait", &id]).trim(), "137");
    assert!(s.ok(&["ps", "-a"]).contains("Exited (137)"));
    // A failed start leaves no --rm container behind.
    assert_eq!(s.ok(&["ps", "-aq"]).lines().count(), 1);
}

#[test]
fn pid1_hostname_env_and_etc_files() {
    let s = store();
    let out = s.ok(&[
        "run",
        "--rm",
        "-e",
        "FOO=bar",
        "--hostname",
        "box",
        "busybox",
        "sh",
        "-c",
        "echo $$ $FOO $(hostname) $HOSTNAME $HOME; cat /etc/hostname; grep -c localhost /etc/hosts",
    ]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "1 bar box box /root");
    assert_eq!(lines[1], "box");
    assert_ne!(lines[2], "0");

    // Default hostname: the short id. Command and entrypoint as Docker
    // joins them.
    let id = s.detached(&["--entrypoint", "hostname", "busybox"]);
    s.ok(&["wait", &id]);
    assert_eq!(s.ok(&["logs", &id]).trim(), &id[..12]);
    assert_eq!(inspect(&s, &id, "{{.Path}} {{json .Args}}"), "hostname []");
    // --env-file and -e KEY passthrough.
    let f = s.dir.path().join("env");
    std::fs::write(&f, "# comment\nA=1\nB\n").unwrap();
    let out = s
        .cmd(&[
            "run",
            "--rm",
            "--env-file",
            f.to_str().unwrap(),
            "busybox",
            "sh",
            "-c",
            "echo $A-$B",
        ])
        .env("B", "fromhost")
        .output()
        .unwrap();
    assert_eq!(text(&out.stdout), "1-fromhost\n");
    // Loopback is up on --network none; no other device.
    let out = s.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "busybox",
        "sh",
        "-c",
        "ls /sys/class/net; ping -c1 -W2 127.0.0.1 >/dev/null && echo ping",
    ]);
    assert_eq!(out, "lo\nping\n");
    // -u user:group and -w.
    let out = s.ok(&[
        "run",
        "--rm",
        "-u",
        "nobody",
        "-w",
        "/tmp/new",
        "busybox",
        "sh",
        "-c",
        "id -u; pwd",
    ]);
    assert_eq!(out, "65534\n/tmp/new\n");
}

#[test]
fn stdin_streams_and_eof_closes_it() {
    let s = store();
    let mut child = s
        .cmd(&["run", "--rm", "-i", "busybox", "sh", "-c", "wc -l; exit 4"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"a\nb\nc\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(text(&out.stdout).trim(), "3");
    assert_eq!(code(&out), 4);
}

#[test]
fn tty_is_a_real_pty() {
    let s = store();
    let cmd = format!(
        "{} --root {} --runroot {} run --rm -it busybox sh",
        common::BERTH,
        s.root().display(),
        s.runroot().display()
    );
    // `script` gives berth a terminal; the shell reads from the pty.
    let mut child = Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all(b"tty; stty size; echo tty-$((6*7))\n")
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    stdin.write_all(b"exit 5\n").unwrap();
    let out = child.wait_with_output().unwrap();
    let o = text(&out.stdout);
    assert!(o.contains("/dev/pts/0"), "{o}");
    assert!(o.contains("tty-42"), "{o}");
    assert_eq!(code(&out), 5, "{o}");
}

#[test]
fn binds_volumes_tmpfs_and_read_only() {
    let s = store();
    let host = s.dir.path().join("hostdir");
    std::fs::create_dir(&host).unwrap();
    std::fs::write(host.join("f"), "from host\n").unwrap();
    let ro = format!("{}:/data:ro", host.display());
    let out = s.run(&[
        "run",
        "--rm",
        "-v",
        &ro,
        "busybox",
        "sh",
        "-c",
        "cat /data/f; echo x > /data/g",
    ]);
    assert_eq!(text(&out.stdout), "from host\n");
    assert_ne!(code(&out), 0);
    assert!(
        text(&out.stderr).contains("Read-only file system"),
        "{}",
        text(&out.stderr)
    );
    assert!(!host.join("g").exists());
    let rw = format!("{}:/data", host.display());
    s.ok(&[
        "run",
        "--rm",
        "-v",
        &rw,
        "busybox",
        "sh",
        "-c",
        "echo x > /data/g",
    ]);
    assert_eq!(std::fs::read_to_string(host.join("g")).unwrap(), "x\n");

    // A named volume outlives its containers and starts as a copy of the
    // image's directory.
    s.ok(&[
        "run",
        "--rm",
        "-v",
        "vol1:/etc",
        "busybox",
        "sh",
        "-c",
        "echo kept > /etc/note",
    ]);
    let out = s.ok(&[
        "run",
        "--rm",
        "-v",
        "vol1:/etc",
        "busybox",
        "sh",
        "-c",
        "cat /etc/note; grep -c root /etc/passwd",
    ]);
    assert_eq!(out, "kept\n1\n");
    assert!(s.ok(&["volume", "ls", "-q"]).lines().any(|l| l == "vol1"));
    let id = s
        .ok(&["create", "-v", "vol1:/x", "busybox", "true"])
        .trim()
        .to_string();
    let err = s.fails(&["volume", "rm", "vol1"]);
    assert!(err.contains("volume is in use"), "{err}");
    assert_eq!(
        s.ok(&["volume", "ls", "-q", "-f", "dangling=false"]).trim(),
        "vol1"
    );
    s.ok(&["rm", &id]);
    s.ok(&["volume", "rm", "vol1"]);
    assert!(s.ok(&["volume", "ls", "-q"]).trim().is_empty());

    // --read-only, with a writable --tmpfs.
    let out = s.run(&[
        "run",
        "--rm",
        "--read-only",
        "--tmpfs",
        "/tmp",
        "busybox",
        "sh",
        "-c",
        "echo ok > /tmp/x && cat /tmp/x; touch /y",
    ]);
    assert_eq!(text(&out.stdout), "ok\n");
    assert_ne!(code(&out), 0);
    // --mount type=bind refuses a missing source.
    let err = s.fails(&[
        "run",
        "--rm",
        "--mount",
        "type=bind,src=/nonexistent-berth,dst=/x",
        "busybox",
        "true",
    ]);
    assert!(err.contains("bind source path does not exist"), "{err}");
}

#[test]
fn memory_limit_gets_oom_killed() {
    let s = store();
    let out = s.run(&[
        "run",
        "--name",
        "hog",
        "--memory",
        "16m",
        "busybox",
        "sh",
        "-c",
        "a=$(head -c 40000000 /dev/zero | tr '\\0' x); echo survived ${#a}",
    ]);
    assert_eq!(code(&out), 137, "{}", text(&out.stdout));
    assert_eq!(
        inspect(&s, "hog", "{{.State.OOMKilled}} {{.State.ExitCode}}"),
        "true 137"
    );
    assert_eq!(
        inspect(&s, "hog", "{{.HostConfig.Memory}}"),
        (16 << 20).to_string()
    );
}

#[test]
fn pids_limit_stops_a_fork_bomb() {
    let s = store();
    let out = s.run(&[
        "run",
        "--rm",
        "--pids-limit",
        "10",
        "busybox",
        "sh",
        "-c",
        "for i in $(seq 1 40); do sleep 2 & done; echo all forked",
    ]);
    assert!(
        text(&out.stderr).contains("can't fork"),
        "{}",
        text(&out.stderr)
    );
    assert!(!text(&out.stdout).contains("all forked"));
    assert_ne!(code(&out), 0);
}

#[test]
fn cp_both_ways_and_from_exited() {
    let s = store();
    s.ok(&[
        "run",
        "--name",
        "src",
        "busybox",
        "sh",
        "-c",
        "mkdir -p /out/d && echo data > /out/d/f",
    ]);
    let dest = s.dir.path().join("copy");
    s.ok(&["cp", "src:/out/d", dest.to_str().unwrap()]);
    assert_eq!(std::fs::read_to_string(dest.join("f")).unwrap(), "data\n");
    // Into an existing dir: a subdir of the same name.
    s.ok(&["cp", "src:/out/d/f", dest.to_str().unwrap()]);
    let tar = s.cmd(&["cp", "src:/out/d/f", "-"]).output().unwrap();
    assert!(tar.stdout.len() >= 1024);

    let id = s
        .ok(&["create", "busybox", "cat", "/in/f"])
        .trim()
        .to_string();
    let err = s.fails(&[
        "cp",
        dest.join("f").to_str().unwrap(),
        &format!("{id}:/in/"),
    ]);
    assert!(err.contains("does not exist"), "{err}");
    s.ok(&["cp", dest.to_str().unwrap(), &format!("{id}:/in")]);
    let out = s.ok(&["start", "-a", &id]);
    assert_eq!(out, "data\n");
    assert!(mounts_under(s.dir.path()).is_empty());
}

#[test]
fn logs_of_a_detached_container() {
    let s = store();
    let id = s.detached(&[
        "busybox",
        "sh",
        "-c",
        "echo one; echo two >&2; printf partial",
    ]);
    assert_eq!(s.ok(&["wait", &id]).trim(), "0");
    let out = s.run(&["logs", &id]);
    assert_eq!(text(&out.stdout), "one\npartial");
    assert_eq!(text(&out.stderr), "two\n");
    let out = s.ok(&["logs", "--tail", "1", &id]);
    assert_eq!(out, "partial");
    let out = s.ok(&["logs", "-t", &id]);
    let first = out.lines().next().unwrap();
    assert!(
        first.ends_with("Z one") && first.len() == "2026-01-01T00:00:00.000000000Z one".len(),
        "{first}"
    );

    // -f follows until the container stops.
    let id = s.detached(&[
        "busybox",
        "sh",
        "-c",
        "for i in 1 2 3; do echo $i; sleep 0.2; done",
    ]);
    let out = s.ok(&["logs", "-f", &id]);
    assert_eq!(out, "1\n2\n3\n");
}

#[test]
fn exec_into_a_running_container() {
    let s = store();
    let id = s.detached(&["--name", "box", "busybox", "sleep", "60"]);
    let out = s.ok(&[
        "exec",
        "-e",
        "X=1",
        "box",
        "sh",
        "-c",
        "echo $X $$; cat /proc/1/cmdline | tr '\\0' ' '",
    ]);
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("1 ") && lines[0] != "1 1", "{out}");
    assert_eq!(lines[1].trim(), "sleep 60");
    assert_eq!(code(&s.run(&["exec", "box", "sh", "-c", "exit 4"])), 4);
    let out = s.run(&["exec", "box", "nope"]);
    assert_eq!(code(&out), 127);
    let top = s.ok(&["top", "box"]);
    assert!(top.contains("sleep 60") && top.starts_with("UID"), "{top}");
    let stats = s.ok(&[
        "stats",
        "--no-stream",
        "--format",
        "{{.Name}} {{.PIDs}}",
        &id,
    ]);
    assert_eq!(stats.trim(), "box 1");
    // exec into a stopped container is refused.
    s.ok(&["stop", "-t", "0", "box"]);
    assert!(s.fails(&["exec", "box", "true"]).contains("is not running"));
}

#[test]
fn run_rm_leaves_nothing_behind() {
    let s = store();
    let id = s.detached(&["--rm", "busybox", "sh", "-c", "sleep 0.3"]);
    let cgroup = Path::new("/sys/fs/cgroup/pids/berth").join(&id);
    wait_for("removal", || s.ok(&["ps", "-aq"]).trim().is_empty());
    assert!(!cgroup.exists());
    assert!(!Path::new("/sys/fs/cgroup/memory/berth").join(&id).exists());
    assert!(
        mounts_under(s.dir.path()).is_empty(),
        "{:?}",
        mounts_under(s.dir.path())
    );
    assert!(s.entries("containers").is_empty());
    assert!(!s.runroot().join("containers").join(&id).exists());
    // Anonymous volumes go too.
    s.ok(&["run", "--rm", "-v", "/data", "busybox", "true"]);
    assert!(s.ok(&["volume", "ls", "-q"]).trim().is_empty());
}

#[test]
fn killed_monitor_and_reboot_show_exited() {
    let s = store();
    let id = s.detached(&["--name", "orphan", "busybox", "sleep", "100"]);
    let pid = inspect(&s, "orphan", "{{.State.Pid}}");
    let ps = Command::new("pgrep")
        .args(["-f", &format!("monitor {id}")])
        .output()
        .unwrap();
    let monitor = text(&ps.stdout).trim().to_string();
    assert!(!monitor.is_empty());
    Command::new("kill")
        .args(["-9", &monitor])
        .status()
        .unwrap();
    wait_for("ps to notice", || {
        s.ok(&["ps", "-a"]).contains("Exited (255)")
    });
    assert_eq!(s.ok(&["ps", "-q"]).trim(), "");
    // rm -f takes down what the dead monitor left running.
    s.ok(&["rm", "-f", "orphan"]);
    // Gone, or a zombie waiting for whoever inherited it.
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    assert!(stat.is_empty() || stat.contains(") Z "), "{stat}");

    // A reboot: monitors gone and the run dir emptied.
    let id = s.detached(&["busybox", "sleep", "100"]);
    let ps = Command::new("pgrep")
        .args(["-f", &format!("monitor {id}")])
        .output()
        .unwrap();
    Command::new("kill")
        .args(["-9", text(&ps.stdout).trim()])
        .status()
        .unwrap();
    for m in mounts_under(&s.runroot()) {
        Command::new("umount").args(["-l", &m]).status().unwrap();
    }
    std::fs::remove_dir_all(s.runroot()).unwrap();
    assert!(s
        .ok(&["ps", "-a", "--format", "{{.Status}}"])
        .starts_with("Exited (255)"));
    // The runtime's state went with the run dir; rm still takes the cgroup.
    s.ok(&["rm", &id]);
    let cg = Path::new("/sys/fs/cgroup/pids/berth").join(&id);
    wait_for("the cgroup to go", || !cg.exists());
}

#[test]
fn stop_restart_pause_rename_wait() {
    let s = store();
    // A process that handles SIGTERM stops at once with its own code.
    s.detached(&[
        "--name",
        "polite",
        "busybox",
        "sh",
        "-c",
        "trap 'exit 0' TERM; touch /ready; while true; do sleep 0.1; done",
    ]);
    // PID 1 ignores a SIGTERM that comes before its handler is set.
    wait_for("the trap", || {
        s.run(&["exec", "polite", "test", "-e", "/ready"])
            .status
            .success()
    });
    s.ok(&["stop", "polite"]);
    // 0, not 137: SIGTERM ended it, the SIGKILL after the timeout did not.
    assert_eq!(
        inspect(&s, "polite", "{{.State.Status}} {{.State.ExitCode}}"),
        "exited 0"
    );
    // PID 1 without a handler ignores TERM: killed after -t.
    s.detached(&["--name", "stubborn", "busybox", "sleep", "60"]);
    s.ok(&["stop", "-t", "1", "stubborn"]);
    assert_eq!(inspect(&s, "stubborn", "{{.State.ExitCode}}"), "137");
    s.ok(&["start", "stubborn"]);
    assert_eq!(inspect(&s, "stubborn", "{{.State.Running}}"), "true");
    s.ok(&["pause", "stubborn"]);
    assert!(s.ok(&["ps"]).contains("(Paused)"));
    assert!(s.fails(&["rm", "stubborn"]).contains("container is paused"));
    s.ok(&["unpause", "stubborn"]);
    s.ok(&["rename", "stubborn", "renamed"]);
    assert!(s
        .fails(&["rename", "renamed", "polite"])
        .contains("already in use"));
    assert!(s.fails(&["rm", "renamed"]).contains("container is running"));
    s.ok(&["restart", "-t", "0", "renamed"]);
    assert_eq!(inspect(&s, "renamed", "{{.State.Running}}"), "true");
    s.ok(&["rm", "-f", "renamed"]);

    // on-failure:2 restarts twice, then stays down.
    s.detached(&[
        "--name",
        "flaky",
        "--restart",
        "on-failure:2",
        "busybox",
        "sh",
        "-c",
        "exit 2",
    ]);
    wait_for("restarts", || {
        inspect(&s, "flaky", "{{.State.Status}} {{.RestartCount}}") == "exited 2"
    });
    assert_eq!(s.ok(&["wait", "flaky"]).trim(), "2");
    let err = s.fails(&["run", "--rm", "--restart", "always", "busybox", "true"]);
    assert!(err.contains("Conflicting options"), "{err}");
}

#[test]
fn ps_columns_filters_and_names() {
    let s = store();
    let a = s
        .ok(&[
            "create", "--name", "a-one", "--label", "tier=web", "busybox", "true",
        ])
        .trim()
        .to_string();
    assert_eq!(
        code(&s.run(&["run", "--name", "b-two", "busybox", "sh", "-c", "exit 2"])),
        2
    );
    let c = s.detached(&["busybox", "sleep", "30"]);
    let header = s.ok(&["ps"]);
    let cols = common::header_columns(&header);
    assert_eq!(
        cols,
        [
            "CONTAINER ID",
            "IMAGE",
            "COMMAND",
            "CREATED",
            "STATUS",
            "PORTS",
            "NAMES"
        ],
        "{header}"
    );
    assert!(header.contains("Up "));
    assert_eq!(s.ok(&["ps", "-q"]).trim(), &c[..12]);
    assert_eq!(s.ok(&["ps", "-aq"]).lines().count(), 3);
    assert_eq!(
        s.ok(&["ps", "-a", "-f", "status=created", "--format", "{{.Names}}"])
            .trim(),
        "a-one"
    );
    assert_eq!(
        s.ok(&[
            "ps",
            "-a",
            "-f",
            "exited=2",
            "--format",
            "{{.Names}} {{.Status}}"
        ])
        .split(" Exited (2)")
        .next()
        .unwrap(),
        "b-two"
    );
    assert_eq!(
        s.ok(&["ps", "-a", "-f", "label=tier=web", "-q"]).trim(),
        &a[..12]
    );
    assert_eq!(
        s.ok(&["ps", "-a", "-f", "ancestor=busybox", "-q"])
            .lines()
            .count(),
        3
    );
    assert_eq!(s.ok(&["ps", "-l", "-q", "--no-trunc"]).trim(), c);
    let generated = s.ok(&["ps", "-l", "--format", "{{.Names}}"]);
    let (adj, name) = generated.trim().split_once('_').unwrap();
    assert!(
        adj.chars().all(|ch| ch.is_ascii_lowercase()) && !name.is_empty(),
        "{generated}"
    );
    // A unique prefix finds a container.
    assert_eq!(inspect(&s, &a[..5], "{{.Name}}"), "/a-one");
    let v = json(&s.ok(&["inspect", "b-two"]));
    assert_eq!(v[0]["State"]["ExitCode"], 2);
    assert_eq!(v[0]["Config"]["Cmd"][0], "sh");
    assert_eq!(v[0]["HostConfig"]["NetworkMode"], "bridge");
    // prune takes the stopped ones, not the running one.
    let out = s.ok(&["container", "prune", "-f"]);
    assert!(out.contains(&a));
    assert_eq!(s.ok(&["ps", "-aq"]).trim(), &c[..12]);
}

#[test]
fn security_and_limits_flags() {
    let s = store();
    let caps = |args: &[&str]| {
        let mut a = vec!["run", "--rm"];
        a.extend_from_slice(args);
        a.extend_from_slice(&["busybox", "sh", "-c", "grep CapEff /proc/self/status"]);
        s.ok(&a).split_whitespace().nth(1).unwrap().to_string()
    };
    // Docker's default set.
    assert_eq!(caps(&[]), "00000000a80425fb");
    assert_eq!(
        caps(&["--cap-drop", "ALL", "--cap-add", "KILL"]),
        "0000000000000020"
    );
    // --privileged gets everything we have ourselves.
    let ours = std::fs::read_to_string("/proc/self/status").unwrap();
    let bnd = ours
        .lines()
        .find_map(|l| l.strip_prefix("CapBnd:"))
        .unwrap()
        .trim()
        .to_string();
    assert_eq!(caps(&["--privileged"]), bnd);
    // Seccomp and dropped caps refuse mount; --privileged allows it.
    assert_ne!(
        code(&s.run(&["run", "--rm", "busybox", "mount", "-t", "tmpfs", "t", "/tmp"])),
        0
    );
    s.ok(&[
        "run",
        "--rm",
        "--privileged",
        "busybox",
        "mount",
        "-t",
        "tmpfs",
        "t",
        "/tmp",
    ]);
    // /proc masks.
    assert_eq!(
        s.ok(&[
            "run",
            "--rm",
            "busybox",
            "sh",
            "-c",
            "wc -c < /proc/timer_list; echo x > /proc/sys/kernel/hostname || echo ro"
        ])
        .split_whitespace()
        .collect::<Vec<_>>(),
        ["0", "ro"]
    );
    // ulimits within our hard limit work; above it, a clear refusal.
    assert_eq!(
        s.ok(&[
            "run",
            "--rm",
            "--ulimit",
            "nofile=100:200",
            "busybox",
            "sh",
            "-c",
            "ulimit -n"
        ])
        .trim(),
        "100"
    );
    let out = s.run(&[
        "run",
        "--rm",
        "--ulimit",
        "nofile=99999999:99999999",
        "busybox",
        "true",
    ]);
    assert_eq!(code(&out), 125);
    assert!(
        text(&out.stderr).contains("above this host's hard limit"),
        "{}",
        text(&out.stderr)
    );
    // --init puts tini in front as PID 1.
    let out = s.ok(&["run", "--rm", "--init", "busybox", "cat", "/proc/1/cmdline"]);
    assert!(out.starts_with("/sbin/docker-init"), "{out}");
    // The cgroup gets the limits.
    let out = s.ok(&[
        "run",
        "--rm",
        "--cpus",
        "0.5",
        "--cpu-shares",
        "512",
        "busybox",
        "true",
    ]);
    assert_eq!(out, "");
}

#[test]
fn external_runtime_runs_the_same_bundle() {
    let Some(_) = common::peer("runc") else {
        return;
    };
    let s = store();
    let out = s.ok(&[
        "run",
        "--rm",
        "--runtime",
        "runc",
        "busybox",
        "sh",
        "-c",
        "echo $$ $(hostname | wc -c)",
    ]);
    assert_eq!(out, "1 13\n");
    let id = s.detached(&["--runtime", "runc", "busybox", "sleep", "30"]);
    assert_eq!(s.ok(&["exec", &id, "echo", "hi"]), "hi\n");
    s.ok(&["rm", "-f", &id]);
    assert!(mounts_under(s.dir.path()).is_empty());
}

#[test]
fn diff_and_commit_make_an_image_of_the_changes() {
    let s = store();
    s.ok(&[
        "run",
        "--name",
        "changer",
        "-v",
        "vol:/data",
        "busybox",
        "sh",
        "-c",
        "echo hi > /etc/motd && rm /bin/ls && mkdir -p /new/dir && echo f > /new/dir/f && echo v > /data/v",
    ]);
    let diff = s.ok(&["diff", "changer"]);
    assert_eq!(
        diff, "C /bin\nD /bin/ls\nA /data\nC /etc\nA /etc/motd\nA /new\nA /new/dir\nA /new/dir/f\n",
        "hosts/hostname/resolv.conf are Berth's, volume contents are the volume's"
    );

    let id = s
        .ok(&[
            "commit",
            "-a",
            "Tester <t@example.com>",
            "-m",
            "snapshot",
            "-c",
            "CMD [\"cat\", \"/new/dir/f\"]",
            "-c",
            "ENV FROM_COMMIT=1",
            "changer",
            "snap:v1",
        ])
        .trim()
        .to_string();
    assert!(id.starts_with("sha256:") && id.len() == 71, "{id}");
    assert_eq!(s.ok(&["run", "--rm", "snap:v1"]), "f\n");
    let out = s.run(&["run", "--rm", "snap:v1", "ls"]);
    assert_eq!(code(&out), 127, "the deletion is part of the image");
    assert_eq!(
        s.ok(&[
            "run",
            "--rm",
            "snap:v1",
            "sh",
            "-c",
            "cat /etc/motd; echo $FROM_COMMIT; ls /data | wc -l"
        ]),
        "hi\n1\n0\n"
    );
    assert_eq!(
        inspect(&s, "snap:v1", "{{.Author}}"),
        "Tester <t@example.com>"
    );
    let history = s.ok(&[
        "history",
        "--no-trunc",
        "--format",
        "{{.Comment}}|{{.CreatedBy}}",
        "snap:v1",
    ]);
    assert!(history.starts_with("snapshot|sh -c echo hi"), "{history}");
    assert_eq!(inspect(&s, "snap:v1", "{{len .RootFS.Layers}}"), "2");

    // A running container is paused while read, and keeps running after.
    s.ok(&[
        "run",
        "-d",
        "--name",
        "live",
        "busybox",
        "sh",
        "-c",
        "echo x > /x; sleep 60",
    ]);
    wait_for("the file", || s.ok(&["diff", "live"]).contains("A /x"));
    let id = s.ok(&["commit", "live"]).trim().to_string();
    assert_eq!(inspect(&s, "live", "{{.State.Status}}"), "running");
    assert_eq!(s.ok(&["run", "--rm", &id, "cat", "/x"]), "x\n");
    let err = s.fails(&["commit", "-c", "BOGUS x", "live"]);
    assert!(err.contains("BOGUS"), "{err}");
    assert_eq!(inspect(&s, "live", "{{.State.Status}}"), "running");
    s.ok(&["rm", "-f", "live"]);
}

/// `rm -f` of a container that is still starting kills it (issue 16: it
/// used to wait on the monitor until the process ended by itself).
#[test]
fn rm_f_of_a_starting_container_kills_it() {
    let s = store();
    for i in 0..5 {
        let name = format!("race{i}");
        let mut run = s
            .cmd(&["run", "-d", "--name", &name, "busybox", "sleep", "600"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Give `run` a moment to create the record, not to start it.
        wait_for("the record", || {
            s.ok(&["ps", "-aq", "--filter", &format!("name={name}")])
                .lines()
                .count()
                == 1
        });
        let mut rm = s
            .cmd(&["rm", "-f", &name])
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        wait_for("rm -f to return", || rm.try_wait().unwrap().is_some());
        assert!(rm.wait().unwrap().success());
        let _ = run.wait();
        assert!(s.ok(&["ps", "-aq"]).trim().is_empty(), "{name} is left");
        assert!(!Path::new("/sys/fs/cgroup/pids/berth").join(&name).exists());
    }
}
