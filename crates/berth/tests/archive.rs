//! save and load: round trips, other tools reading our archives, old and
//! hostile archives.

mod common;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use common::{busybox_rootfs, json, peer, run_tool, sha256_hex, TestStore};

fn inspect(s: &TestStore, name: &str) -> serde_json::Value {
    json(&s.ok(&["inspect", name]))[0].clone()
}

#[test]
fn save_load_round_trip_keeps_ids_and_digests() {
    let a = TestStore::new();
    let id = a.import_busybox("busybox");
    a.ok(&["tag", "busybox", "localhost:5000/team/tool:2"]);
    let other = a.ok(&[
        "import",
        "-c",
        "CMD [\"sh\"]",
        busybox_rootfs().to_str().unwrap(),
    ]);
    let other = other.trim();
    let before = inspect(&a, "busybox");
    let out = a.dir.path().join("out.tar");
    a.ok(&[
        "save",
        "-o",
        out.to_str().unwrap(),
        "busybox",
        "localhost:5000/team/tool:2",
        other,
    ]);

    // The archive is an OCI layout that also carries Docker's files.
    let names = Command::new("tar").arg("tf").arg(&out).output().unwrap();
    let names = String::from_utf8(names.stdout).unwrap();
    for f in [
        "oci-layout",
        "index.json",
        "manifest.json",
        "repositories",
        "blobs/sha256/",
    ] {
        assert!(names.lines().any(|l| l == f), "{f} missing from {names}");
    }

    let b = TestStore::new();
    let loaded = b.ok(&["load", "-i", out.to_str().unwrap()]);
    assert!(
        loaded.contains("Loaded image: busybox:latest\n"),
        "{loaded}"
    );
    assert!(
        loaded.contains("Loaded image: localhost:5000/team/tool:2\n"),
        "{loaded}"
    );
    assert!(
        loaded.contains(&format!("Loaded image ID: {other}\n")),
        "{loaded}"
    );
    let after = inspect(&b, "busybox");
    assert_eq!(after["Id"], id.as_str());
    assert_eq!(after["Id"], before["Id"]);
    assert_eq!(after["RootFS"], before["RootFS"]);
    assert_eq!(
        after["Descriptor"]["digest"],
        before["Descriptor"]["digest"]
    );
    assert_eq!(after["Config"], before["Config"]);
    assert_eq!(after["Created"], before["Created"]);
    let mut tags: Vec<String> = serde_json::from_value(after["RepoTags"].clone()).unwrap();
    tags.sort();
    assert_eq!(tags, ["busybox:latest", "localhost:5000/team/tool:2"]);
    assert_eq!(inspect(&b, other)["Id"], other);

    // Loading again changes nothing; a second save is byte-identical.
    b.ok(&["load", "-i", out.to_str().unwrap()]);
    let again = b.dir.path().join("again.tar");
    b.ok(&[
        "save",
        "-o",
        again.to_str().unwrap(),
        "busybox",
        "localhost:5000/team/tool:2",
        other,
    ]);
    assert_eq!(std::fs::read(&out).unwrap(), std::fs::read(&again).unwrap());
}

#[test]
fn save_to_stdout_load_from_stdin_gzip() {
    let a = TestStore::new();
    let id = a.import_busybox("busybox");
    let saved = a
        .cmd(&["save", "busybox"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(saved.status.success());
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&saved.stdout).unwrap();
    let gz = gz.finish().unwrap();
    let b = TestStore::new();
    let mut child = b
        .cmd(&["load"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&gz).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        "Loaded image: busybox:latest\n"
    );
    assert_eq!(b.ok(&["images", "-q", "--no-trunc"]).trim(), id);
}

#[test]
fn skopeo_reads_both_views() {
    let Some(skopeo) = peer("skopeo") else { return };
    let s = TestStore::new();
    let id = s.import_busybox("busybox");
    let out = s.dir.path().join("out.tar");
    s.ok(&["save", "-o", out.to_str().unwrap(), "busybox"]);
    let layer = inspect(&s, "busybox")["RootFS"]["Layers"][0]
        .as_str()
        .unwrap()
        .to_string();
    let manifest_digest = inspect(&s, "busybox")["Descriptor"]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    for view in ["oci-archive", "docker-archive"] {
        let src = format!("{view}:{}", out.display());
        let cfg = json(&run_tool(&skopeo, &["inspect", "--config", &src]));
        assert_eq!(cfg["rootfs"]["diff_ids"][0], layer.as_str(), "{view}");
        let v = json(&run_tool(&skopeo, &["inspect", &src]));
        assert_eq!(v["Layers"].as_array().unwrap().len(), 1, "{view}: {v}");
        if view == "oci-archive" {
            assert_eq!(v["Digest"], manifest_digest.as_str());
        }
    }
    // And skopeo's own OCI archive of our image loads back with the same id.
    let copy = s.dir.path().join("skopeo-oci.tar");
    let o = Command::new(&skopeo)
        .args([
            "copy",
            &format!("oci-archive:{}", out.display()),
            &format!("oci-archive:{}:localhost/copied:1", copy.display()),
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let b = TestStore::new();
    let loaded = b.ok(&["load", "-i", copy.to_str().unwrap()]);
    assert_eq!(loaded, "Loaded image: localhost/copied:1\n");
    assert_eq!(inspect(&b, "localhost/copied:1")["Id"], id.as_str());
}

#[test]
fn podman_loads_our_archive() {
    let Some(podman) = peer("podman") else { return };
    let s = TestStore::new();
    let id = s.import_busybox("localhost/berth-podman-test:1");
    let out = s.dir.path().join("out.tar");
    s.ok(&[
        "save",
        "-o",
        out.to_str().unwrap(),
        "localhost/berth-podman-test:1",
    ]);
    let proot = s.dir.path().join("podman");
    let podman_cmd = |args: &[&str]| {
        let o = Command::new(&podman)
            .arg("--root")
            .arg(proot.join("root"))
            .arg("--runroot")
            .arg(proot.join("run"))
            .args([
                "--storage-driver",
                "vfs",
                "--cgroup-manager",
                "cgroupfs",
                "--events-backend",
                "none",
            ])
            .args(args)
            .env("XDG_RUNTIME_DIR", proot.join("xdg"))
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "podman {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8(o.stdout).unwrap()
    };
    let loaded = podman_cmd(&["load", "-i", out.to_str().unwrap()]);
    assert!(loaded.contains("localhost/berth-podman-test:1"), "{loaded}");
    let ids = podman_cmd(&["images", "--no-trunc", "--format", "{{.ID}}"]);
    assert_eq!(ids.trim().trim_start_matches("sha256:"), &id[7..]);
}

/// Docker before 25 wrote a directory per layer, with symlinks for repeats.
#[test]
fn loads_old_docker_archives() {
    let rootfs = std::fs::read(busybox_rootfs()).unwrap();
    let diff = format!("sha256:{}", sha256_hex(&rootfs));
    let config = format!(
        r#"{{"architecture":"amd64","os":"linux","config":{{"Cmd":["sh"]}},"rootfs":{{"type":"layers","diff_ids":["{diff}","{diff}"]}},"history":[{{"created_by":"a"}},{{"created_by":"b"}}]}}"#
    );
    let cfg_hex = sha256_hex(config.as_bytes());
    let l1 = "1111111111111111111111111111111111111111111111111111111111111111";
    let l2 = "2222222222222222222222222222222222222222222222222222222222222222";
    let manifest = format!(
        r#"[{{"Config":"{cfg_hex}.json","RepoTags":["old:1"],"Layers":["{l1}/layer.tar","{l2}/layer.tar"]}}]"#
    );
    let mut b = tar::Builder::new(Vec::new());
    let add = |b: &mut tar::Builder<Vec<u8>>, name: &str, data: &[u8]| {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, name, data).unwrap();
    };
    add(&mut b, &format!("{l1}/VERSION"), b"1.0");
    add(&mut b, &format!("{l1}/json"), b"{}");
    add(&mut b, &format!("{l1}/layer.tar"), &rootfs);
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Symlink);
    h.set_size(0);
    h.set_mode(0o777);
    b.append_link(
        &mut h,
        format!("{l2}/layer.tar"),
        format!("../{l1}/layer.tar"),
    )
    .unwrap();
    add(&mut b, &format!("{cfg_hex}.json"), config.as_bytes());
    add(&mut b, "manifest.json", manifest.as_bytes());
    add(
        &mut b,
        "repositories",
        format!(r#"{{"old":{{"1":"{l2}"}}}}"#).as_bytes(),
    );
    let archive = b.into_inner().unwrap();

    let s = TestStore::new();
    let path = s.dir.path().join("old.tar");
    std::fs::write(&path, &archive).unwrap();
    assert_eq!(
        s.ok(&["load", "-i", path.to_str().unwrap()]),
        "Loaded image: old:1\n"
    );
    let v = inspect(&s, "old:1");
    assert_eq!(v["Id"], format!("sha256:{cfg_hex}"));
    assert_eq!(v["RootFS"]["Layers"].as_array().unwrap().len(), 2);
    assert_eq!(
        s.ok(&["history", "--format", "{{.CreatedBy}}", "old:1"]),
        "b\na\n"
    );
    // What was loaded saves again as a valid archive.
    let out = s.dir.path().join("re.tar");
    s.ok(&["save", "-o", out.to_str().unwrap(), "old:1"]);
    let t = TestStore::new();
    t.ok(&["load", "-i", out.to_str().unwrap()]);
    assert_eq!(inspect(&t, "old:1")["Id"], v["Id"]);
}

/// Rewrites one member of a saved archive.
fn tamper(src: &Path, dst: &Path, f: impl Fn(&str, Vec<u8>) -> Vec<u8>) {
    let mut a = tar::Archive::new(std::fs::File::open(src).unwrap());
    let mut b = tar::Builder::new(std::fs::File::create(dst).unwrap());
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        let name = e.path().unwrap().to_string_lossy().into_owned();
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut e, &mut data).unwrap();
        let data = f(&name, data);
        let mut h = e.header().clone();
        h.set_size(data.len() as u64);
        h.set_cksum();
        b.append_data(&mut h, &name, &data[..]).unwrap();
    }
    b.finish().unwrap();
}

#[test]
fn tampered_archives_are_refused_and_store_untouched() {
    let s = TestStore::new();
    let id = s.import_busybox("busybox");
    let good = s.dir.path().join("good.tar");
    s.ok(&["save", "-o", good.to_str().unwrap(), "busybox"]);
    let layer_hex = inspect(&s, "busybox")["RootFS"]["Layers"][0]
        .as_str()
        .unwrap()[7..]
        .to_string();

    let t = TestStore::new();
    t.import_busybox("keep");
    let blobs_before = t.entries("blobs/sha256");

    // A flipped byte in a blob.
    let bad = s.dir.path().join("bad-blob.tar");
    tamper(&good, &bad, |name, mut d| {
        if name.ends_with(&layer_hex) {
            let n = d.len() / 2;
            d[n] ^= 1;
        }
        d
    });
    let err = t.fails(&["load", "-i", bad.to_str().unwrap()]);
    assert!(err.contains("does not match its digest"), "{err}");

    // A config that claims a different layer.
    let bad = s.dir.path().join("bad-config.tar");
    tamper(&good, &bad, |name, d| {
        if name == "manifest.json" || name == "index.json" {
            let s = String::from_utf8(d).unwrap();
            return s.replace(&id[7..], &"0".repeat(64)).into_bytes();
        }
        d
    });
    let err = t.fails(&["load", "-i", bad.to_str().unwrap()]);
    assert!(err.contains("not in the archive"), "{err}");

    // Not a tar at all, and a tar that is not an image archive.
    let junk = s.dir.path().join("junk.tar");
    std::fs::write(&junk, vec![b'x'; 4096]).unwrap();
    let err = t.fails(&["load", "-i", junk.to_str().unwrap()]);
    assert!(err.contains("invalid archive"), "{err}");
    let err = t.fails(&["load", "-i", busybox_rootfs().to_str().unwrap()]);
    assert!(err.contains("no manifest.json or index.json"), "{err}");

    // The store is exactly as it was.
    assert_eq!(t.ok(&["images", "--format", "{{.Repository}}"]), "keep\n");
    assert_eq!(t.entries("blobs/sha256"), blobs_before);
    assert_eq!(t.entries("layers").len(), 1);
    assert!(t.entries("tmp").is_empty(), "{:?}", t.entries("tmp"));
}

#[test]
fn save_refuses_a_terminal_and_unknown_images() {
    let s = TestStore::new();
    let err = s.fails(&["save", "-o", "/dev/null", "nosuch"]);
    assert!(err.contains("No such image: nosuch"), "{err}");
    let out = s.dir.path().join("x.tar");
    s.fails(&["save", "-o", out.to_str().unwrap(), "nosuch"]);
    assert!(!out.exists(), "a failed save leaves no file behind");
}
