//! The store under hostile input, concurrency and killed processes.

mod common;

use std::io::Write;
use std::process::Stdio;
use std::time::Duration;

use common::{busybox_rootfs, json, sha256_hex, TestStore};

/// A tar whose entry escapes the target in `how`.
fn hostile_tar(how: &str, outside: &std::path::Path) -> Vec<u8> {
    let mut out = Vec::new();
    let mut push = |name: &str, kind: tar::EntryType, link: Option<&str>, data: &[u8]| {
        let mut h = tar::Header::new_gnu();
        let raw = h.as_old_mut();
        raw.name[..name.len()].copy_from_slice(name.as_bytes());
        if let Some(l) = link {
            raw.linkname[..l.len()].copy_from_slice(l.as_bytes());
        }
        h.set_entry_type(kind);
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_cksum();
        out.extend_from_slice(h.as_bytes());
        out.extend_from_slice(data);
        out.extend(std::iter::repeat_n(0, (512 - data.len() % 512) % 512));
    };
    let victim = outside.join("victim");
    let victim = victim.to_str().unwrap();
    match how {
        "dotdot" => push(
            &format!("a/../../../../../../../../../../../../..{victim}"),
            tar::EntryType::Regular,
            None,
            b"pwned",
        ),
        "absolute" => push(victim, tar::EntryType::Regular, None, b"pwned"),
        "symlink" => {
            push(
                "escape",
                tar::EntryType::Symlink,
                Some(outside.to_str().unwrap()),
                b"",
            );
            push("escape/victim", tar::EntryType::Regular, None, b"pwned");
        }
        "hardlink" => push(
            "h",
            tar::EntryType::Link,
            Some(&format!("../../../../../../../../..{victim}")),
            b"",
        ),
        _ => unreachable!(),
    }
    out.extend(std::iter::repeat_n(0, 1024));
    out
}

#[test]
fn hostile_layers_are_refused_with_the_entry_named() {
    let s = TestStore::new();
    s.import_busybox("keep");
    let outside = s.dir.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    std::fs::write(outside.join("victim"), b"original").unwrap();
    for (how, names) in [
        ("dotdot", "a/../../"),
        ("absolute", "absolute path"),
        ("symlink", "escape/victim"),
        ("hardlink", "\"h\""),
    ] {
        let tar = hostile_tar(how, &outside);
        let file = s.dir.path().join(format!("{how}.tar"));
        std::fs::write(&file, &tar).unwrap();
        let err = s.fails(&["import", file.to_str().unwrap(), &format!("evil-{how}")]);
        assert!(err.contains("refusing to extract"), "{how}: {err}");
        assert!(err.contains(names), "{how}: {err}");
        assert_eq!(
            std::fs::read(outside.join("victim")).unwrap(),
            b"original",
            "{how}"
        );
        assert_eq!(
            std::fs::read_dir(&outside).unwrap().count(),
            1,
            "{how}: something was written outside"
        );
    }
    assert_eq!(s.ok(&["images", "--format", "{{.Repository}}"]), "keep\n");
    assert_eq!(s.entries("layers").len(), 1);
    assert!(s.entries("tmp").is_empty(), "{:?}", s.entries("tmp"));
}

#[test]
fn eight_concurrent_processes_keep_the_store_consistent() {
    let s = TestStore::new();
    let tar = busybox_rootfs().to_str().unwrap().to_string();
    s.import_busybox("base");
    let mut workers = Vec::new();
    for i in 0..8 {
        let mut script = String::new();
        // Each worker imports, tags, untags and removes, racing the others'
        // garbage collection over the one layer they all share.
        for round in 0..3 {
            let name = format!("w{i}-r{round}");
            script += &format!(
                "{b} import -c 'ENV W={i}' {tar} {name} >/dev/null && \
                 {b} tag {name} shared{i}:r{round} && \
                 {b} tag base:latest alias{i} && \
                 {b} rmi {name} >/dev/null && \
                 {b} rmi alias{i} >/dev/null && ",
                b = shell_berth(&s),
            );
        }
        script += "true";
        workers.push(
            std::process::Command::new("sh")
                .arg("-c")
                .arg(script)
                .spawn()
                .unwrap(),
        );
    }
    for mut w in workers {
        assert!(w.wait().unwrap().success(), "a worker failed");
    }
    let tags = s.ok(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    let mut tags: Vec<&str> = tags.lines().collect();
    tags.sort();
    let mut want: Vec<String> = (0..8)
        .flat_map(|i| (0..3).map(move |r| format!("shared{i}:r{r}")))
        .collect();
    want.push("base:latest".into());
    want.sort();
    assert_eq!(tags, want);
    assert_store_consistent(&s);
}

fn shell_berth(s: &TestStore) -> String {
    format!(
        "{} --root {} --runroot {}",
        common::BERTH,
        s.root().display(),
        s.dir.path().join("run").display()
    )
}

/// Every image's blobs are present and intact, every blob and layer on
/// disk belongs to an image, and scratch space is empty.
fn assert_store_consistent(s: &TestStore) {
    let ids = s.ok(&["images", "-a", "-q", "--no-trunc"]);
    let mut wanted_blobs = std::collections::BTreeSet::new();
    let mut wanted_layers = std::collections::BTreeSet::new();
    for id in ids.lines() {
        let v = json(&s.ok(&["inspect", id]))[0].clone();
        wanted_blobs.insert(id[7..].to_string());
        wanted_blobs.insert(v["Descriptor"]["digest"].as_str().unwrap()[7..].to_string());
        for l in v["RootFS"]["Layers"].as_array().unwrap() {
            let hex = l.as_str().unwrap()[7..].to_string();
            // Imported layers are stored uncompressed: blob digest = diff id.
            wanted_blobs.insert(hex.clone());
            wanted_layers.insert(hex);
        }
        // Saving reads and checks every blob.
        s.ok(&["save", "-o", "/dev/null", id]);
    }
    let blobs: std::collections::BTreeSet<String> = s.entries("blobs/sha256").into_iter().collect();
    let layers: std::collections::BTreeSet<String> = s.entries("layers").into_iter().collect();
    assert_eq!(blobs, wanted_blobs);
    assert_eq!(layers, wanted_layers);
    for b in &blobs {
        let data = std::fs::read(s.root().join("blobs/sha256").join(b)).unwrap();
        assert_eq!(&sha256_hex(&data), b, "blob {b} is damaged");
    }
    assert!(s.entries("tmp").is_empty(), "{:?}", s.entries("tmp"));
}

#[test]
fn a_killed_import_or_load_leaves_a_usable_store() {
    let s = TestStore::new();
    s.import_busybox("keep");
    let saved = s.dir.path().join("keep.tar");
    s.ok(&["save", "-o", saved.to_str().unwrap(), "keep"]);
    let data = std::fs::read(busybox_rootfs()).unwrap();
    let archive = std::fs::read(&saved).unwrap();
    for (args, input) in [
        (vec!["import", "-", "half"], &data),
        (vec!["load"], &archive),
    ] {
        let mut child = s
            .cmd(&args)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        // Half the input, then the process dies mid-stream.
        stdin.write_all(&input[..input.len() / 2]).unwrap();
        stdin.flush().unwrap();
        std::thread::sleep(Duration::from_millis(300));
        child.kill().unwrap();
        child.wait().unwrap();
        drop(stdin);
        assert!(
            !s.entries("tmp").is_empty(),
            "{args:?}: the killed process should have left scratch"
        );
        // The next command cleans up and sees the store as before.
        assert_eq!(
            s.ok(&["images", "--format", "{{.Repository}}"]),
            "keep\n",
            "{args:?}"
        );
        assert!(
            s.entries("tmp").is_empty(),
            "{args:?}: {:?}",
            s.entries("tmp")
        );
    }
    assert_store_consistent(&s);
    // And the store still takes new work.
    s.import_busybox("after");
    s.ok(&["load", "-i", saved.to_str().unwrap()]);
    assert_store_consistent(&s);
}

/// Layers hold setuid binaries and device nodes: no other user may reach
/// them (issue 16's privilege escalation). A store made with open modes
/// is tightened when it is next opened.
#[test]
fn the_store_is_private_to_root() {
    use std::os::unix::fs::PermissionsExt;
    let s = TestStore::new();
    let tar = busybox_rootfs();
    s.ok(&["import", tar.to_str().unwrap(), "busybox"]);
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&s.root()), 0o710);
    assert_eq!(mode(&s.root().join("layers")), 0o700);
    assert_eq!(mode(&s.root().join("blobs")), 0o700);
    assert_eq!(mode(&s.runroot()), 0o710);
    // The test's temp dir is private itself: open it up so that only the
    // store's own modes stand between `nobody` and the layers.
    let parent = s.dir.path();
    std::fs::set_permissions(parent, std::fs::Permissions::from_mode(0o755)).unwrap();
    let layers = s.root().join("layers");
    let as_nobody = |path: &std::path::Path| {
        std::process::Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "ls"])
            .arg(path)
            .output()
            .unwrap()
    };
    let out = as_nobody(&layers);
    assert!(!out.status.success(), "nobody listed the layers");
    assert!(String::from_utf8_lossy(&out.stderr).contains("Permission denied"));

    // An old store, all 0755: the next command closes it.
    for d in [
        s.root(),
        s.root().join("layers"),
        s.root().join("blobs"),
        s.runroot(),
    ] {
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    assert!(as_nobody(&layers).status.success());
    s.ok(&["images"]);
    assert_eq!(mode(&s.root()), 0o710);
    assert_eq!(mode(&s.root().join("layers")), 0o700);
    assert_eq!(mode(&s.runroot()), 0o710);
    assert!(!as_nobody(&layers).status.success());
    std::fs::set_permissions(parent, std::fs::Permissions::from_mode(0o700)).unwrap();
}

/// Work bounded on hostile input: 100,000 variables in an env file (each
/// used to be looked up against all before it), and a reference filter
/// of many stars (each used to try every split of the name).
#[test]
fn hostile_sizes_cost_linear_work() {
    let s = TestStore::new();
    let tar = busybox_rootfs();
    s.ok(&["import", tar.to_str().unwrap(), "busybox"]);
    let file = s.dir.path().join("big.env");
    let mut text = String::new();
    for i in 0..100_000 {
        text.push_str(&format!("V{i}={i}\n"));
    }
    text.push_str("V7=last\n");
    std::fs::write(&file, text).unwrap();
    s.ok(&[
        "create",
        "--name",
        "bigenv",
        "--env-file",
        file.to_str().unwrap(),
        "busybox",
        "true",
    ]);
    let env = json(&s.ok(&["inspect", "-f", "{{json .Config.Env}}", "bigenv"]));
    let env = env.as_array().unwrap();
    // PATH, HOSTNAME and the 100,000, the repeated key replaced in place.
    assert_eq!(env.len(), 100_002);
    assert!(env.iter().any(|e| e == "V7=last"));
    let stars = format!("{}b", "a*".repeat(20));
    let out = s.ok(&["images", "-q", "--filter", &format!("reference={stars}")]);
    assert!(out.trim().is_empty());
}

/// A crafted tar header whose bytes are terminal escape sequences: the
/// error names the problem, and the terminal gets none of the bytes raw.
#[test]
fn escape_sequences_in_input_never_reach_the_terminal() {
    let s = TestStore::new();
    let mut h = tar::Header::new_gnu();
    {
        let raw = h.as_old_mut();
        let name = b"\x1b]0;pwned\x07\x1b[2Jfile";
        raw.name[..name.len()].copy_from_slice(name);
        // A size field that is not a number, made of escapes.
        raw.size.copy_from_slice(b"\x1b[31mRED\x1b[0m");
        raw.mode.copy_from_slice(b"0000644\0");
        h.set_cksum();
    }
    let mut tar = h.as_bytes().to_vec();
    tar.extend(std::iter::repeat_n(0, 1024));
    let file = s.dir.path().join("escapes.tar");
    std::fs::write(&file, &tar).unwrap();
    let out = s.run(&["import", file.to_str().unwrap(), "evil-escapes"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains('\x1b') && !err.contains('\x07'), "{err:?}");
    assert!(err.starts_with("Error: "), "{err:?}");
}
