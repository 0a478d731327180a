//! Health checks run by the monitor, the events journal, and `wait`'s
//! conditions: real containers on the busybox fixture, each test in its
//! own store.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::{inspect, json, store_with_busybox as store, wait_for, TestStore};

fn status(s: &TestStore, name: &str) -> String {
    s.ok(&[
        "ps",
        "-a",
        "--filter",
        &format!("name={name}"),
        "--format",
        "{{.Names}}|{{.Status}}",
    ])
    .lines()
    .find(|l| l.starts_with(&format!("{name}|")))
    .unwrap_or("")
    .to_string()
}

/// Events of the store so far, one JSON document each.
fn events(s: &TestStore, filters: &[&str]) -> Vec<serde_json::Value> {
    let mut args = vec![
        "events",
        "--since",
        "0",
        "--until",
        "0s",
        "--format",
        "{{json .}}",
    ];
    for f in filters {
        args.push("--filter");
        args.push(f);
    }
    s.ok(&args).lines().map(json).collect()
}

fn actions(evs: &[serde_json::Value]) -> Vec<String> {
    evs.iter()
        .map(|e| e["Action"].as_str().unwrap().to_string())
        .collect()
}

/// The container's processes, from its pids cgroup (v1 or v2).
fn cgroup_procs(id: &str) -> Vec<String> {
    let v1 = PathBuf::from("/sys/fs/cgroup/pids/berth").join(id);
    let dir = if v1.exists() {
        v1
    } else {
        PathBuf::from("/sys/fs/cgroup/berth").join(id)
    };
    std::fs::read_to_string(dir.join("cgroup.procs"))
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

/// An image whose HEALTHCHECK passes once /ready exists.
fn build_checked_image(s: &TestStore, tag: &str) {
    let ctx = s.dir.path().join(format!("ctx-{tag}"));
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM busybox\nHEALTHCHECK --interval=1s CMD test -e /ready\nCMD [\"sleep\", \"600\"]\n",
    )
    .unwrap();
    s.ok(&["build", "-q", "-t", tag, ctx.to_str().unwrap()]);
}

#[test]
fn health_goes_starting_unhealthy_healthy_and_starts_over() {
    let s = store();
    build_checked_image(&s, "checked");
    let id = s.detached(&["--name", "hc", "--network", "none", "checked"]);

    // Three failures make it unhealthy; until then it is starting.
    wait_for("starting", || {
        status(&s, "hc").ends_with("(health: starting)")
    });
    assert_eq!(inspect(&s, "hc", "{{.State.Health.Status}}"), "starting");
    wait_for("unhealthy", || status(&s, "hc").ends_with("(unhealthy)"));
    assert!(status(&s, "hc").contains("|Up "));
    let listed = s.ok(&["ps", "-q", "--no-trunc", "-f", "health=unhealthy"]);
    assert_eq!(listed.trim(), id);
    assert!(s
        .ok(&["ps", "-q", "-f", "health=healthy"])
        .trim()
        .is_empty());
    let h = json(&inspect(&s, "hc", "{{json .State.Health}}"));
    assert!(h["FailingStreak"].as_i64().unwrap() >= 3, "{h}");
    let log = h["Log"].as_array().unwrap();
    assert!(!log.is_empty() && log.len() <= 5, "{h}");
    assert_eq!(log[0]["ExitCode"], 1);
    assert!(log[0]["Start"].as_str().unwrap().ends_with('Z'));

    s.ok(&["exec", "hc", "touch", "/ready"]);
    wait_for("healthy", || status(&s, "hc").ends_with("(healthy)"));
    assert_eq!(inspect(&s, "hc", "{{.State.Health.FailingStreak}}"), "0");
    assert_eq!(
        s.ok(&["ps", "-q", "--no-trunc", "-f", "health=healthy"])
            .trim(),
        id
    );
    let health = events(&s, &["event=health_status", "container=hc"]);
    assert_eq!(
        actions(&health),
        ["health_status: unhealthy", "health_status: healthy"]
    );

    // A restart begins again from starting: healthy is reached (and said)
    // once more.
    s.ok(&["restart", "-t", "1", "hc"]);
    wait_for("healthy after the restart", || {
        actions(&events(&s, &["event=health_status", "container=hc"])).len() == 3
    });
    assert!(status(&s, "hc").ends_with("(healthy)"));

    // A stopped container keeps its last health.
    s.ok(&["stop", "-t", "1", "hc"]);
    assert_eq!(inspect(&s, "hc", "{{.State.Health.Status}}"), "healthy");
    assert!(status(&s, "hc").contains("Exited"));
}

#[test]
fn a_probe_past_its_timeout_is_killed() {
    let s = store();
    let id = s.detached(&[
        "--name",
        "slowcheck",
        "--network",
        "none",
        "--health-cmd",
        "echo probing; sleep 300",
        "--health-interval",
        "1s",
        "--health-timeout",
        "500ms",
        "--health-retries",
        "1",
        "busybox",
        "sleep",
        "600",
    ]);
    wait_for("unhealthy", || {
        status(&s, "slowcheck").ends_with("(unhealthy)")
    });
    let h = json(&inspect(&s, "slowcheck", "{{json .State.Health}}"));
    let first = &h["Log"][0];
    assert_eq!(first["ExitCode"], -1, "{h}");
    assert_eq!(first["Output"], "Health check exceeded timeout (500ms)");
    // The killed probes are gone: only the container's own process (and
    // at most a probe running right now) is in its cgroup.
    wait_for("no leftover probes", || cgroup_procs(&id).len() <= 2);
    let procs = cgroup_procs(&id);
    assert!(procs.len() <= 2, "{procs:?}");
}

#[test]
fn no_healthcheck_and_health_flags() {
    let s = store();
    build_checked_image(&s, "checked2");
    s.detached(&[
        "--name",
        "off",
        "--network",
        "none",
        "--no-healthcheck",
        "checked2",
    ]);
    assert_eq!(
        inspect(&s, "off", "{{json .Config.Healthcheck.Test}}"),
        "[\"NONE\"]"
    );
    assert_eq!(inspect(&s, "off", "{{.State.Health}}"), "<no value>");
    let st = status(&s, "off");
    assert!(st.starts_with("off|Up ") && !st.contains('('), "{st}");
    assert!(s
        .ok(&["ps", "--format", "{{.Names}}", "-f", "health=none"])
        .contains("off"));

    // Flags override single fields of the image's check.
    s.ok(&[
        "create",
        "--name",
        "tuned",
        "--health-retries",
        "9",
        "checked2",
    ]);
    let hc = json(&inspect(&s, "tuned", "{{json .Config.Healthcheck}}"));
    assert_eq!(hc["Retries"], 9);
    assert_eq!(hc["Interval"], 1_000_000_000i64);
    assert_eq!(hc["Test"][1], "test -e /ready");

    for (args, msg) in [
        (
            vec!["--no-healthcheck", "--health-cmd", "true"],
            "--no-healthcheck conflicts with --health-* options",
        ),
        (
            vec!["--health-interval", "soon"],
            "invalid argument \"soon\" for \"--health-interval\" flag",
        ),
        (
            vec!["--health-retries", "-1"],
            "--health-retries cannot be negative",
        ),
        (
            vec!["--health-timeout", "10us"],
            "Timeout in Healthcheck cannot be less than 1ms",
        ),
    ] {
        let mut a = vec!["create"];
        a.extend(args);
        a.extend(["busybox", "true"]);
        let out = s.run(&a);
        assert_eq!(out.status.code(), Some(125), "{a:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(msg), "{a:?}: {err}");
    }
}

/// A `berth events` left running, with its output read line by line.
struct Follower {
    child: Child,
    lines: std::sync::mpsc::Receiver<String>,
}

impl Follower {
    fn start(s: &TestStore, args: &[&str]) -> Follower {
        let mut a = vec!["events", "--format", "{{json .}}"];
        a.extend_from_slice(args);
        let mut child = s.cmd(&a).stdout(Stdio::piped()).spawn().unwrap();
        let out = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        Follower { child, lines: rx }
    }

    /// Lines until `done` says enough, or 60 s.
    fn read_until(
        &self,
        mut done: impl FnMut(&[serde_json::Value]) -> bool,
    ) -> Vec<serde_json::Value> {
        let end = Instant::now() + Duration::from_secs(60);
        let mut got = Vec::new();
        while !done(&got) {
            let left = end.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => got.push(json(&l)),
                Err(_) => panic!("events stopped after {} lines: {got:?}", got.len()),
            }
        }
        got
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn events_from_many_writers_reach_a_follower_once_and_in_order() {
    let s = store();
    let follower = Follower::start(&s, &[]);
    // Let the follower reach the end of the journal first: it only shows
    // what comes after it started.
    std::thread::sleep(Duration::from_millis(500));
    s.ok(&["volume", "create", "marker"]);
    follower.read_until(|g| g.iter().any(|e| e["Actor"]["ID"] == "marker"));

    // Two CLI processes and a monitor write at once.
    let writers: Vec<Child> = (0..2)
        .map(|w| {
            let script = format!(
                "for i in $(seq 1 15); do {b} --root {r} --runroot {rr} volume create w{w}-$i >/dev/null; done",
                b = common::BERTH,
                r = s.root().display(),
                rr = s.runroot().display(),
            );
            std::process::Command::new("sh")
                .args(["-c", &script])
                .spawn()
                .unwrap()
        })
        .collect();
    let id = s.detached(&["--network", "none", "busybox", "sh", "-c", "exit 3"]);
    for mut w in writers {
        assert!(w.wait().unwrap().success());
    }
    let got = follower.read_until(|g| {
        g.iter().filter(|e| e["Type"] == "volume").count() >= 30
            && g.iter().any(|e| e["Action"] == "die")
    });
    // Exactly once each.
    let mut names: Vec<&str> = got
        .iter()
        .filter(|e| e["Type"] == "volume")
        .map(|e| e["Actor"]["ID"].as_str().unwrap())
        .collect();
    names.sort();
    let before = names.len();
    names.dedup();
    assert_eq!((before, names.len()), (30, 30), "{names:?}");
    // In order, and the same order a replay gives.
    let times: Vec<i64> = got
        .iter()
        .map(|e| e["timeNano"].as_i64().unwrap())
        .collect();
    assert!(times.windows(2).all(|w| w[0] < w[1]), "{times:?}");
    let replay: Vec<i64> = events(&s, &[])
        .iter()
        .map(|e| e["timeNano"].as_i64().unwrap())
        .filter(|t| *t >= times[0] && *t <= *times.last().unwrap())
        .collect();
    assert_eq!(replay, times);
    let die = got.iter().find(|e| e["Action"] == "die").unwrap();
    assert_eq!(die["Actor"]["ID"], id.as_str());
    assert_eq!(die["Actor"]["Attributes"]["exitCode"], "3");
    assert_eq!(die["status"], "die");
    assert_eq!(die["from"], "busybox");
}

#[test]
fn events_replay_with_since_until_and_filters() {
    let s = store();
    let start = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    s.ok(&[
        "create",
        "--name",
        "ev",
        "--network",
        "none",
        "-l",
        "team=a",
        "busybox",
        "sh",
        "-c",
        "trap 'exit 143' TERM; while true; do sleep 0.2; done",
    ]);
    s.ok(&["start", "ev"]);
    s.ok(&["exec", "ev", "true"]);
    s.ok(&["stop", "-t", "20", "ev"]);
    s.ok(&["rename", "ev", "ev2"]);
    s.ok(&["rm", "ev2"]);
    s.ok(&["tag", "busybox", "other:1"]);
    s.ok(&["network", "create", "evnet"]);
    s.ok(&["network", "rm", "evnet"]);

    let since = format!("{start:.3}");
    let c = events(&s, &["type=container"]);
    let seq = actions(&c);
    assert_eq!(
        seq,
        [
            "create",
            "start",
            "exec_create: true",
            "exec_start: true",
            "exec_die",
            "kill",
            "die",
            "stop",
            "rename",
            "destroy"
        ],
        "{c:?}"
    );
    let exec_id = &c[2]["Actor"]["Attributes"]["execID"];
    assert_eq!(exec_id.as_str().unwrap().len(), 64);
    assert_eq!(&c[4]["Actor"]["Attributes"]["execID"], exec_id);
    assert_eq!(c[4]["Actor"]["Attributes"]["exitCode"], "0");
    assert_eq!(c[5]["Actor"]["Attributes"]["signal"], "15");
    assert_eq!(c[6]["Actor"]["Attributes"]["exitCode"], "143");
    assert_eq!(c[8]["Actor"]["Attributes"]["oldName"], "/ev");
    assert_eq!(c[0]["Actor"]["Attributes"]["team"], "a");
    // Filters: by name (old and new), label, image, event, type.
    assert_eq!(events(&s, &["container=ev2"]).len(), 2);
    assert_eq!(events(&s, &["label=team=a"]).len(), 10);
    assert_eq!(events(&s, &["label=team=b"]).len(), 0);
    assert_eq!(events(&s, &["image=busybox", "type=container"]).len(), 10);
    assert_eq!(
        actions(&events(&s, &["event=die", "event=stop"])),
        ["die", "stop"]
    );
    let img = events(&s, &["type=image", "event=tag"]);
    assert_eq!(
        img.last().unwrap()["Actor"]["Attributes"]["name"],
        "other:1"
    );
    assert_eq!(
        actions(&events(&s, &["type=network", "network=evnet"])),
        ["create", "destroy"]
    );

    // --since/--until bound the replay; the default line format.
    let out = s.ok(&[
        "events",
        "--since",
        &since,
        "--until",
        "0s",
        "--filter",
        "event=create",
        "--filter",
        "type=container",
    ]);
    let line = out.lines().next().unwrap();
    assert!(
        line.contains(" container create ") && line.ends_with("name=ev, team=a)"),
        "{line}"
    );
    let none = s.ok(&[
        "events",
        "--since",
        "0",
        "--until",
        &format!("{:.0}", start - 3600.0),
    ]);
    assert!(none.trim().is_empty(), "{none}");
    let tmpl = s.ok(&[
        "events",
        "--since",
        &since,
        "--until",
        "0s",
        "-f",
        "event=rename",
        "--format",
        "{{.Type}} {{.Status}} {{.Actor.Attributes.name}}",
    ]);
    assert_eq!(tmpl.trim(), "container rename ev2");
    let err = s.fails(&["events", "--filter", "bogus=1", "--until", "0s"]);
    assert!(err.contains("invalid filter 'bogus'"), "{err}");
    let err = s.fails(&["events", "--since", "later"]);
    assert!(err.contains("invalid value for time"), "{err}");
}

#[test]
fn wait_conditions() {
    let s = store();
    // not-running returns at once for a created container.
    s.ok(&["create", "--name", "fresh", "busybox", "true"]);
    assert_eq!(s.ok(&["wait", "fresh"]).trim(), "0");

    // next-exit sees an exit that a restart policy follows with a start.
    s.detached(&[
        "--name",
        "looper",
        "--network",
        "none",
        "--restart",
        "always",
        "busybox",
        "sh",
        "-c",
        "sleep 1; exit 3",
    ]);
    assert_eq!(
        s.ok(&["wait", "--condition", "next-exit", "looper"]).trim(),
        "3"
    );
    s.ok(&["rm", "-f", "looper"]);

    // removed waits for --rm to finish and reports the exit code.
    let id = s.detached(&[
        "--rm",
        "--network",
        "none",
        "busybox",
        "sh",
        "-c",
        "sleep 1; exit 4",
    ]);
    assert_eq!(s.ok(&["wait", "--condition", "removed", &id]).trim(), "4");
    assert!(!s.ok(&["ps", "-aq", "--no-trunc"]).contains(&id));
    let id = s.detached(&[
        "--rm",
        "--network",
        "none",
        "busybox",
        "sh",
        "-c",
        "sleep 1; exit 5",
    ]);
    assert_eq!(s.ok(&["wait", &id]).trim(), "5");

    let err = s.fails(&["wait", "--condition", "sometime", "fresh"]);
    assert!(err.contains("invalid condition"), "{err}");
    assert!(Path::new(&s.root()).exists());
}
