//! Container state over time: `stats` (one reading and streaming, on a
//! real pseudo-terminal), `update` of limits and restart policy (live in
//! the cgroup, saved for the next start), and `export` back through
//! `import`. Each test has its own store.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::pty::OnPty;
use common::{inspect, json, mounts_under, store_with_busybox as store, wait_for, TestStore};

/// The cgroup v2 unified tree at the root (not a v1 host's hybrid mount).
fn cgroup_v2() -> bool {
    Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
}

/// A file of the container's cgroup: `v1` under the controller's
/// hierarchy, `v2` in the unified tree.
fn cgroup_file(id: &str, controller: &str, v1: &str, v2: &str) -> String {
    let p: PathBuf = if cgroup_v2() {
        Path::new("/sys/fs/cgroup/berth").join(id).join(v2)
    } else {
        Path::new("/sys/fs/cgroup")
            .join(controller)
            .join("berth")
            .join(id)
            .join(v1)
    };
    std::fs::read_to_string(&p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .trim()
        .to_string()
}

fn memory_limit(id: &str) -> String {
    cgroup_file(id, "memory", "memory.limit_in_bytes", "memory.max")
}

fn cpu_quota(id: &str) -> String {
    if cgroup_v2() {
        let max = cgroup_file(id, "cpu", "", "cpu.max");
        max.split_whitespace().next().unwrap_or("").to_string()
    } else {
        cgroup_file(id, "cpu", "cpu.cfs_quota_us", "")
    }
}

fn pids_max(id: &str) -> String {
    cgroup_file(id, "pids", "pids.max", "pids.max")
}

/// `stats --no-stream --format json`, one object per container.
fn stats_json(s: &TestStore, extra: &[&str]) -> Vec<serde_json::Value> {
    let mut args = vec!["stats", "--no-stream", "--format", "json"];
    args.extend_from_slice(extra);
    s.ok(&args).lines().map(json).collect()
}

fn percent(v: &serde_json::Value) -> f64 {
    v.as_str()
        .and_then(|p| p.strip_suffix('%'))
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("not a percentage: {v}"))
}

#[test]
fn stats_no_stream_reads_cpu_memory_and_network() {
    let s = store();
    let burn = s.detached(&[
        "--name",
        "st-burn",
        "busybox",
        "dd",
        "if=/dev/zero",
        "of=/dev/null",
    ]);
    s.detached(&[
        "--name",
        "st-web",
        "busybox",
        "sh",
        "-c",
        "mkdir -p /www && echo hello > /www/index.html && exec httpd -f -p 80 -h /www",
    ]);
    s.detached(&["--name", "st-client", "busybox", "sleep", "600"]);
    s.ok(&["create", "--name", "st-stopped", "busybox", "true"]);

    // One line per running container, in the format asked for.
    let out = s.ok(&[
        "stats",
        "--no-stream",
        "--format",
        "{{.Name}} {{.MemUsage}}",
    ]);
    let mut names: Vec<&str> = out.lines().map(|l| l.split(' ').next().unwrap()).collect();
    names.sort();
    assert_eq!(names, ["st-burn", "st-client", "st-web"], "{out}");
    for l in out.lines() {
        assert!(l.contains(" / "), "{l}");
        assert!(!l.starts_with("st-burn 0B"), "{l}");
    }
    // The default table has Docker's columns.
    let table = s.ok(&["stats", "--no-stream", "st-burn"]);
    let header = common::header_columns(&table);
    assert_eq!(
        header,
        [
            "CONTAINER ID",
            "NAME",
            "CPU %",
            "MEM USAGE / LIMIT",
            "MEM %",
            "NET I/O",
            "BLOCK I/O",
            "PIDS"
        ]
    );
    assert!(table.lines().nth(1).unwrap().starts_with(&burn[..12]));

    // -a lists the stopped one too, with zeros.
    let all = stats_json(&s, &["-a"]);
    assert_eq!(all.len(), 4);
    let stopped = all.iter().find(|v| v["Name"] == "st-stopped").unwrap();
    assert_eq!(stopped["CPUPerc"], "0.00%");
    assert_eq!(stopped["NetIO"], "0B / 0B");
    assert_eq!(stopped["PIDs"], "0");

    // A busy loop shows as CPU (Docker's delta formula).
    wait_for("dd to show CPU use", || {
        let v = stats_json(&s, &["st-burn"]);
        assert_eq!(v[0]["ID"], burn[..12]);
        assert_eq!(v[0]["PIDs"], "1");
        percent(&v[0]["CPUPerc"]) > 10.0
    });
    let full = stats_json(&s, &["--no-trunc", "st-burn"]);
    assert_eq!(full[0]["ID"], burn);

    // Traffic on the bridge shows as NET I/O of both ends.
    let web_ip = inspect(&s, "st-web", "{{.NetworkSettings.IPAddress}}");
    let before = stats_json(&s, &["st-client"])[0]["NetIO"].clone();
    wait_for("wget from the web container", || {
        s.run(&[
            "exec",
            "st-client",
            "wget",
            "-q",
            "-O",
            "/dev/null",
            &format!("http://{web_ip}/"),
        ])
        .status
        .success()
    });
    let after = stats_json(&s, &["st-client", "st-web"]);
    for v in &after {
        assert_ne!(v["NetIO"], "0B / 0B", "{v}");
        assert!(!v["NetIO"].as_str().unwrap().ends_with(" / 0B"), "{v}");
    }
    assert_ne!(after[0]["NetIO"], before);
}

const CLEAR: &str = "\x1b[2J\x1b[H";

#[test]
fn stats_streams_in_place_on_a_terminal_until_ctrl_c() {
    let s = store();
    s.detached(&["--name", "tty-one", "busybox", "sleep", "600"]);
    let mut p = OnPty::spawn(s.cmd(&["stats"]));
    wait_for("two redraws", || {
        let t = p.text();
        t.matches(CLEAR).count() >= 2 && t.matches("CONTAINER ID").count() >= 2
    });
    let t = p.text();
    assert!(t.starts_with("\x1b[?25l"), "cursor is hidden first: {t:?}");
    assert!(t.contains("tty-one"), "{t:?}");
    // Without names, a container that starts joins the table and one that
    // stops leaves it.
    s.detached(&["--name", "tty-two", "busybox", "sleep", "600"]);
    wait_for("the new container in a frame", || {
        let t = p.text();
        t.rsplit(CLEAR).next().unwrap().contains("tty-two")
    });
    s.ok(&["kill", "tty-one"]);
    wait_for("the stopped container to leave the table", || {
        let t = p.text();
        let last = t.rsplit(CLEAR).next().unwrap();
        last.contains("CONTAINER ID") && last.contains("tty-two") && !last.contains("tty-one")
    });

    // ^C through the line discipline: SIGINT, a clean exit, the cursor
    // shown again and the terminal's modes untouched.
    p.send(&[0x03]);
    let st = p.wait();
    assert!(st.success(), "{st}: {:?}", p.text());
    wait_for("the last bytes", || p.text().ends_with("\x1b[?25h"));
    let t = p.text();
    let hidden = t.rfind("\x1b[?25l").unwrap();
    assert!(t.rfind("\x1b[?25h").unwrap() > hidden);
    let modes = nix::sys::termios::tcgetattr(&p.master).unwrap();
    use nix::sys::termios::LocalFlags;
    assert!(modes
        .local_flags
        .contains(LocalFlags::ICANON | LocalFlags::ECHO | LocalFlags::ISIG));
}

#[test]
fn stats_streams_successive_tables_to_a_pipe() {
    let s = store();
    s.detached(&["--name", "pipe-one", "busybox", "sleep", "600"]);
    let mut child = s
        .cmd(&["stats", "--format", "{{.Name}} {{.PIDs}}"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut seen = Vec::new();
    while seen.len() < 3 {
        let l = lines.next().expect("stats ended early").unwrap();
        assert!(!l.contains('\x1b'), "no terminal codes on a pipe: {l:?}");
        seen.push(l);
    }
    assert_eq!(seen, ["pipe-one 1", "pipe-one 1", "pipe-one 1"]);
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let st = child.wait().unwrap();
    assert!(st.success(), "{st}");
}

#[test]
fn update_changes_a_running_container_and_survives_restart() {
    let s = store();
    let id = s.detached(&["--name", "up-run", "busybox", "sleep", "600"]);

    assert_eq!(s.ok(&["update", "--memory", "64m", "up-run"]), "up-run\n");
    assert_eq!(memory_limit(&id), (64u64 << 20).to_string());
    assert_eq!(inspect(&s, "up-run", "{{.HostConfig.Memory}}"), "67108864");

    assert_eq!(
        s.ok(&["container", "update", "--cpus", "0.5", &id[..12]]),
        format!("{}\n", &id[..12])
    );
    assert_eq!(cpu_quota(&id), "50000");
    assert_eq!(
        inspect(&s, "up-run", "{{.HostConfig.NanoCpus}}"),
        "500000000"
    );

    s.ok(&["update", "--pids-limit", "42", "-c", "512", "up-run"]);
    assert_eq!(pids_max(&id), "42");
    assert_eq!(
        inspect(
            &s,
            "up-run",
            "{{.HostConfig.PidsLimit}} {{.HostConfig.CpuShares}}"
        ),
        "42 512"
    );

    // The limits are the container's, not the run's.
    s.ok(&["restart", "-t", "1", "up-run"]);
    wait_for("the restarted container", || {
        inspect(&s, "up-run", "{{.State.Status}}") == "running"
    });
    assert_eq!(memory_limit(&id), (64u64 << 20).to_string());
    assert_eq!(cpu_quota(&id), "50000");
    assert_eq!(pids_max(&id), "42");

    // -1: no pids limit.
    s.ok(&["update", "--pids-limit", "-1", "up-run"]);
    assert_eq!(pids_max(&id), "max");
}

#[test]
fn update_of_a_stopped_container_applies_at_start() {
    let s = store();
    let id = s
        .ok(&["create", "--name", "up-stopped", "busybox", "sleep", "600"])
        .trim()
        .to_string();
    s.ok(&[
        "update",
        "-m",
        "96m",
        "--memory-reservation",
        "32m",
        "--cpus",
        "0.25",
        "--cpuset-cpus",
        "0",
        "--pids-limit",
        "17",
        "up-stopped",
    ]);
    assert_eq!(
        inspect(
            &s,
            "up-stopped",
            "{{.HostConfig.Memory}} {{.HostConfig.MemoryReservation}} {{.HostConfig.NanoCpus}} {{.HostConfig.CpusetCpus}} {{.HostConfig.PidsLimit}}"
        ),
        "100663296 33554432 250000000 0 17"
    );
    s.ok(&["start", "up-stopped"]);
    assert_eq!(memory_limit(&id), (96u64 << 20).to_string());
    assert_eq!(cpu_quota(&id), "25000");
    assert_eq!(pids_max(&id), "17");
    assert_eq!(
        cgroup_file(&id, "cpuset", "cpuset.cpus", "cpuset.cpus"),
        "0"
    );
    assert_eq!(
        cgroup_file(&id, "memory", "memory.soft_limit_in_bytes", "memory.low"),
        (32u64 << 20).to_string()
    );

    // run takes the two new flags as well.
    let id2 = s.detached(&[
        "--name",
        "up-run-flags",
        "--memory-reservation",
        "20m",
        "--cpuset-cpus",
        "0",
        "busybox",
        "sleep",
        "600",
    ]);
    assert_eq!(
        cgroup_file(&id2, "memory", "memory.soft_limit_in_bytes", "memory.low"),
        (20u64 << 20).to_string()
    );
    assert_eq!(
        inspect(
            &s,
            "up-run-flags",
            "{{.HostConfig.MemoryReservation}} {{.HostConfig.CpusetCpus}}"
        ),
        "20971520 0"
    );
}

#[test]
fn update_refuses_bad_values_with_dockers_messages() {
    let s = store();
    let id = s.detached(&["--name", "up-bad", "-m", "16m", "busybox", "sleep", "600"]);
    let before = memory_limit(&id);
    let e = s.fails(&["update", "-m", "1m", "up-bad"]);
    assert!(e.contains("Minimum memory limit allowed is 6MB"), "{e}");
    let e = s.fails(&["update", "-m", "64m", "--memory-swap", "32m", "up-bad"]);
    assert!(
        e.contains("Minimum memoryswap limit should be larger than memory limit, see usage"),
        "{e}"
    );
    // -m 16m means 32m of memory+swap: more memory needs more swap too.
    let e = s.fails(&["update", "-m", "64m", "up-bad"]);
    assert!(
        e.contains(&format!("Cannot update container {id}: Memory limit should be smaller than already set memoryswap limit, update the memoryswap at the same time")),
        "{e}"
    );
    assert_eq!(
        memory_limit(&id),
        before,
        "a refused update changes nothing"
    );
    assert_eq!(inspect(&s, "up-bad", "{{.HostConfig.Memory}}"), "16777216");
    // …and with the swap it is fine.
    s.ok(&["update", "-m", "64m", "--memory-swap", "128m", "up-bad"]);
    assert_eq!(memory_limit(&id), (64u64 << 20).to_string());
    assert_eq!(
        inspect(&s, "up-bad", "{{.HostConfig.MemorySwap}}"),
        "134217728"
    );

    let e = s.fails(&["update", "--memory-reservation", "100m", "up-bad"]);
    assert!(
        e.contains("Minimum memory limit can not be less than memory reservation limit"),
        "{e}"
    );
    let e = s.fails(&["update", "--cpuset-cpus", "4095", "up-bad"]);
    assert!(
        e.contains("Requested CPUs are not available - requested 4095"),
        "{e}"
    );
    let e = s.fails(&["update", "--restart", "sometimes", "up-bad"]);
    assert!(e.contains("invalid restart policy"), "{e}");
    let e = s.fails(&["update", "up-bad"]);
    assert!(
        e.contains("You must provide one or more flags when using this command."),
        "{e}"
    );
    let e = s.fails(&["update", "-m", "64m", "no-such-ctr"]);
    assert!(e.contains("No such container: no-such-ctr"), "{e}");

    let rm = s.detached(&["--rm", "--name", "up-rm", "busybox", "sleep", "600"]);
    let e = s.fails(&["update", "--restart", "always", "up-rm"]);
    assert!(
        e.contains(&format!("Cannot update container {rm}: Restart policy cannot be updated because AutoRemove is enabled for the container")),
        "{e}"
    );
}

#[test]
fn update_restart_policy_takes_effect_for_a_running_container() {
    let s = store();
    s.detached(&["--name", "up-policy", "busybox", "sleep", "600"]);
    assert_eq!(
        s.ok(&["update", "--restart", "always", "up-policy"]),
        "up-policy\n"
    );
    assert_eq!(
        inspect(&s, "up-policy", "{{.HostConfig.RestartPolicy.Name}}"),
        "always"
    );
    let pid: i32 = inspect(&s, "up-policy", "{{.State.Pid}}").parse().unwrap();
    assert!(pid > 0);
    // Killed from the host, not through berth: the monitor sees an exit
    // and applies the policy it now has.
    // SAFETY: signalling the container's init, a pid berth reported.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    wait_for("the container to come back", || {
        let st = inspect(
            &s,
            "up-policy",
            "{{.State.Status}} {{.State.Pid}} {{.RestartCount}}",
        );
        let f: Vec<&str> = st.split(' ').collect();
        f[0] == "running" && f[1] != "0" && f[1] != pid.to_string() && f[2] != "0"
    });
}

#[test]
fn export_round_trips_through_import() {
    let s = store();
    s.ok(&[
        "run",
        "--name",
        "ex-done",
        "busybox",
        "sh",
        "-c",
        "echo exported > /marker && mkdir -p /data/deep && echo x > /data/deep/f && rm /bin/true",
    ]);
    // Stopped: mounted for the export only.
    let tar = s.dir.path().join("ex.tar");
    s.ok(&["export", "-o", tar.to_str().unwrap(), "ex-done"]);
    assert!(
        mounts_under(s.dir.path()).is_empty(),
        "export left a mount: {:?}",
        mounts_under(s.dir.path())
    );
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mountinfo.contains(&s.runroot().to_string_lossy().into_owned()));
    let listing = Command::new("tar").arg("tf").arg(&tar).output().unwrap();
    let listing = String::from_utf8(listing.stdout).unwrap();
    assert!(listing.lines().any(|l| l == "marker"), "{listing}");
    assert!(listing.lines().any(|l| l == "bin/busybox"), "{listing}");
    assert!(
        !listing.lines().any(|l| l == "bin/true"),
        "deleted files stay deleted"
    );
    assert!(!listing.contains(".wh."), "{listing}");

    // To stdout too, the same bytes.
    let out = s.run(&["container", "export", "ex-done"]);
    assert!(out.status.success());
    assert_eq!(out.stdout, std::fs::read(&tar).unwrap());

    s.ok(&["import", tar.to_str().unwrap(), "exported:1"]);
    let got = s.ok(&[
        "run",
        "--rm",
        "exported:1",
        "sh",
        "-c",
        "cat /marker /data/deep/f",
    ]);
    assert_eq!(got, "exported\nx\n");

    // A running container exports what it wrote so far.
    s.detached(&[
        "--name",
        "ex-live",
        "busybox",
        "sh",
        "-c",
        "echo live > /alive && exec sleep 600",
    ]);
    wait_for("the live file", || {
        s.run(&["exec", "ex-live", "cat", "/alive"]).stdout == b"live\n"
    });
    let out = s.run(&["export", "ex-live"]);
    assert!(out.status.success());
    let mut a = tar::Archive::new(&out.stdout[..]);
    let mut found = false;
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        if e.path().unwrap() == Path::new("alive") {
            let mut body = String::new();
            e.read_to_string(&mut body).unwrap();
            assert_eq!(body, "live\n");
            found = true;
        }
    }
    assert!(found);
    let e = s.fails(&["export", "no-such-ctr"]);
    assert!(e.contains("No such container: no-such-ctr"), "{e}");
}

#[test]
fn export_refuses_to_write_to_a_terminal() {
    let s = store();
    s.ok(&["create", "--name", "ex-tty", "busybox", "true"]);
    let mut p = OnPty::spawn(s.cmd(&["export", "ex-tty"]));
    let st = p.wait();
    assert!(!st.success());
    wait_for("the message", || {
        p.text()
            .contains("cowardly refusing to save to a terminal. Use the -o flag or redirect")
    });
    assert!(mounts_under(s.dir.path()).is_empty());
}
