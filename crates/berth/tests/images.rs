//! Image commands against a real store in a temp dir.

mod common;

use std::io::Write;
use std::process::Stdio;

use common::{busybox_rootfs, json, TestStore};

#[test]
fn import_list_inspect() {
    let s = TestStore::new();
    let tar = busybox_rootfs();
    let id = s
        .ok(&[
            "import",
            "--change",
            r#"CMD ["sh"]"#,
            "-c",
            "ENV A=b",
            "--change",
            "EXPOSE 80",
            tar.to_str().unwrap(),
            "busybox",
        ])
        .trim()
        .to_string();
    assert!(id.starts_with("sha256:") && id.len() == 71, "{id}");

    let out = s.ok(&["images"]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(
        lines[0].starts_with("REPOSITORY   TAG       IMAGE ID       CREATED"),
        "{out}"
    );
    assert!(lines[0].ends_with("SIZE"), "{out}");
    let cols: Vec<&str> = lines[1]
        .split("   ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect();
    assert_eq!(cols[0], "busybox");
    assert_eq!(cols[1], "latest");
    assert_eq!(cols[2], &id[7..19]);
    assert!(cols[3].ends_with("ago"), "{cols:?}");
    assert!(cols[4].ends_with("MB"), "{cols:?}");

    assert_eq!(s.ok(&["images", "-q"]), format!("{}\n", &id[7..19]));
    assert_eq!(s.ok(&["images", "-q", "--no-trunc"]), format!("{id}\n"));
    assert_eq!(
        s.ok(&["images", "--format", "{{.Repository}}:{{.Tag}}"]),
        "busybox:latest\n"
    );
    let t = s.ok(&["images", "--format", "table {{.Repository}}\t{{.ID}}"]);
    assert_eq!(
        t,
        format!("REPOSITORY   IMAGE ID\nbusybox      {}\n", &id[7..19])
    );
    let j = json(s.ok(&["images", "--format", "json"]).trim());
    assert_eq!(j["Repository"], "busybox");
    assert!(s
        .ok(&["images", "--digests"])
        .lines()
        .next()
        .unwrap()
        .contains("DIGEST"));

    let v = json(&s.ok(&["inspect", "busybox"]));
    let img = &v[0];
    assert_eq!(img["Id"], id.as_str());
    assert_eq!(img["RepoTags"], serde_json::json!(["busybox:latest"]));
    assert_eq!(img["Config"]["Cmd"], serde_json::json!(["sh"]));
    assert_eq!(img["Config"]["Env"], serde_json::json!(["A=b"]));
    assert!(img["Config"]["ExposedPorts"]["80/tcp"].is_object());
    assert_eq!(img["Os"], "linux");
    assert_eq!(img["RootFS"]["Type"], "layers");
    assert_eq!(img["RootFS"]["Layers"].as_array().unwrap().len(), 1);
    assert_eq!(
        img["Size"].as_u64().unwrap(),
        std::fs::metadata(tar).unwrap().len()
    );
    assert!(img["Comment"]
        .as_str()
        .unwrap()
        .starts_with("Imported from"));
    // The layer diff id is the digest of the uncompressed tar we imported.
    let tar_digest = format!(
        "sha256:{}",
        common::sha256_hex(&std::fs::read(tar).unwrap())
    );
    assert_eq!(img["RootFS"]["Layers"][0], tar_digest.as_str());

    let arch = img["Architecture"].as_str().unwrap().to_string();
    assert_eq!(
        s.ok(&[
            "image",
            "inspect",
            "--format",
            "{{.Os}}/{{.Architecture}}",
            "busybox:latest"
        ]),
        format!("linux/{arch}\n")
    );
    let cfg = json(&s.ok(&["inspect", "-f", "{{json .Config}}", &id[7..19]]));
    assert_eq!(cfg["Cmd"][0], "sh");
    // Every way of naming the image finds the same one.
    for name in [
        &id[..],
        &id[7..],
        &id[7..19],
        "docker.io/library/busybox:latest",
        "busybox",
    ] {
        assert_eq!(
            s.ok(&["inspect", "-f", "{{.Id}}", name]).trim(),
            id,
            "{name}"
        );
    }

    let err = s.fails(&["inspect", "nosuch"]);
    assert!(err.contains("No such object: nosuch"), "{err}");
    let err = s.fails(&["inspect", "--type", "image", "nosuch"]);
    assert!(err.contains("No such image: nosuch"), "{err}");
}

#[test]
fn import_from_stdin_gzip_with_platform() {
    let s = TestStore::new();
    let raw = std::fs::read(busybox_rootfs()).unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&raw).unwrap();
    let gz = gz.finish().unwrap();
    let mut child = s
        .cmd(&[
            "import",
            "--platform",
            "linux/arm/v6",
            "-m",
            "from a pipe",
            "-",
            "localhost:5000/a/b:1.0",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&gz).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let v = json(&s.ok(&["inspect", "localhost:5000/a/b:1.0"]));
    assert_eq!(v[0]["Architecture"], "arm");
    assert_eq!(v[0]["Variant"], "v6");
    assert_eq!(v[0]["Comment"], "from a pipe");
    assert_eq!(v[0]["RepoTags"][0], "localhost:5000/a/b:1.0");
    // Stored uncompressed, so the diff id is the digest of the raw tar.
    assert_eq!(v[0]["Size"].as_u64().unwrap(), raw.len() as u64);
}

#[test]
fn bad_input_is_named() {
    let s = TestStore::new();
    let tar = busybox_rootfs().to_str().unwrap();
    let err = s.fails(&["import", tar, "Busybox"]);
    assert!(err.contains("invalid reference format"), "{err}");
    let err = s.fails(&["import", "--change", "RUN true", tar]);
    assert!(err.contains("RUN is not a valid change command"), "{err}");
    let err = s.fails(&["import", "/nonexistent.tar"]);
    assert!(err.contains("/nonexistent.tar"), "{err}");
    s.import_busybox("busybox");
    let err = s.fails(&["tag", "busybox", "a:b:c"]);
    assert!(err.contains("invalid reference format"), "{err}");
    let err = s.fails(&["images", "-f", "colour=red"]);
    assert!(err.contains("invalid filter 'colour'"), "{err}");
    // A usage error exits 125 like Docker's CLI.
    let out = s.run(&["images", "--bogus"]);
    assert_eq!(out.status.code(), Some(125));
    // Nothing the failures touched was lost.
    assert_eq!(
        s.ok(&["images", "--format", "{{.Repository}}"]),
        "busybox\n"
    );
}

#[test]
fn tag_rmi_and_garbage() {
    let s = TestStore::new();
    let id = s.import_busybox("busybox");
    s.ok(&["tag", "busybox", "other:1"]);
    s.ok(&["tag", &id[7..19], "localhost:5000/x/y"]);
    let tags = s.ok(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    let mut tags: Vec<&str> = tags.lines().collect();
    tags.sort();
    assert_eq!(
        tags,
        ["busybox:latest", "localhost:5000/x/y:latest", "other:1"]
    );

    assert_eq!(s.ok(&["rmi", "other:1"]), "Untagged: other:1\n");
    let err = s.fails(&["rmi", &id[7..19]]);
    assert!(
        err.contains("image is referenced in multiple repositories"),
        "{err}"
    );
    let err = s.fails(&["rmi", "other:1"]);
    assert!(err.contains("No such image: other:1"), "{err}");
    let out = s.ok(&["rmi", "-f", &id[7..19]]);
    assert_eq!(
        out,
        format!("Untagged: busybox:latest\nUntagged: localhost:5000/x/y:latest\nDeleted: {id}\n")
    );
    assert_eq!(s.ok(&["images", "-q"]), "");
    // Garbage collection left nothing behind.
    assert!(
        s.entries("blobs/sha256").is_empty(),
        "{:?}",
        s.entries("blobs/sha256")
    );
    assert!(s.entries("layers").is_empty());
    assert!(s.entries("tmp").is_empty(), "{:?}", s.entries("tmp"));
}

#[test]
fn shared_layers_survive_removal_of_one_image() {
    let s = TestStore::new();
    let a = s.import_busybox("a");
    let b = s.ok(&[
        "import",
        "--change",
        "CMD [\"true\"]",
        busybox_rootfs().to_str().unwrap(),
        "b",
    ]);
    assert_ne!(a, b.trim());
    assert_eq!(
        s.entries("layers").len(),
        1,
        "one unpacked layer shared by both"
    );
    s.ok(&["rmi", "a"]);
    assert_eq!(s.entries("layers").len(), 1);
    let v = json(&s.ok(&["inspect", "b"]));
    let lower = v[0]["GraphDriver"]["Data"]["LowerDir"].as_str().unwrap();
    assert!(std::path::Path::new(lower).join("bin/busybox").is_file());
    s.ok(&["rmi", "b"]);
    assert!(s.entries("layers").is_empty());
}

#[test]
fn history_rows() {
    let s = TestStore::new();
    let id = s.import_busybox("busybox");
    let out = s.ok(&["history", "busybox"]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(lines[0].starts_with("IMAGE          CREATED"), "{out}");
    assert!(
        lines[0].contains("CREATED BY") && lines[0].ends_with("COMMENT"),
        "{out}"
    );
    assert!(lines[1].starts_with(&id[7..19]), "{out}");
    assert!(lines[1].contains("Imported from"), "{out}");
    assert_eq!(
        s.ok(&["history", "-q", "busybox"]),
        format!("{}\n", &id[7..19])
    );
    assert_eq!(
        s.ok(&["history", "-q", "--no-trunc", "busybox"]),
        format!("{id}\n")
    );
    let size = s.ok(&["history", "-H=false", "--format", "{{.Size}}", "busybox"]);
    assert_eq!(
        size.trim().parse::<u64>().unwrap(),
        std::fs::metadata(busybox_rootfs()).unwrap().len()
    );
}

#[test]
fn prune_dangling_then_all() {
    let s = TestStore::new();
    let kept = s.import_busybox("kept");
    // Re-tagging "kept" leaves the first image dangling.
    let moved_from = s.import_busybox("gone");
    s.ok(&["tag", &kept, "gone"]);
    assert_eq!(
        s.ok(&["images", "-q", "--no-trunc", "-f", "dangling=true"])
            .trim(),
        moved_from
    );
    let out = s.ok(&["image", "prune", "-f"]);
    assert!(out.starts_with("Deleted Images:\n"), "{out}");
    assert!(out.contains(&format!("deleted: {moved_from}")), "{out}");
    assert!(out.contains("Total reclaimed space:"), "{out}");
    assert_eq!(s.ok(&["images", "-q", "--no-trunc"]).trim(), kept);
    let out = s.ok(&["image", "prune", "-a", "-f"]);
    assert!(out.contains("untagged: kept:latest"), "{out}");
    assert!(out.contains("untagged: gone:latest"), "{out}");
    assert_eq!(s.ok(&["images", "-q"]), "");
    assert!(s.entries("blobs/sha256").is_empty());
}

#[test]
fn filters() {
    let s = TestStore::new();
    let tar = busybox_rootfs().to_str().unwrap();
    s.ok(&["import", "-c", "LABEL tier=web", tar, "web/app:1"]);
    s.ok(&["import", tar, "db/app:1"]);
    let f = |args: &[&str]| {
        let mut v: Vec<String> = s
            .ok(&[&["images", "--format", "{{.Repository}}"], args].concat())
            .lines()
            .map(str::to_string)
            .collect();
        v.sort();
        v
    };
    assert_eq!(f(&["-f", "reference=web/*"]), ["web/app"]);
    assert_eq!(f(&["-f", "reference=*/app:1"]), ["db/app", "web/app"]);
    assert_eq!(f(&["-f", "label=tier=web"]), ["web/app"]);
    assert_eq!(f(&["-f", "label=tier"]), ["web/app"]);
    assert_eq!(f(&["db/app"]), ["db/app"]);
    assert_eq!(f(&["-f", "since=web/app:1"]), ["db/app"]);
    assert_eq!(f(&["-f", "before=db/app:1"]), ["web/app"]);
}

#[test]
fn info_df_version_help() {
    let s = TestStore::new();
    s.import_busybox("busybox");
    let info = s.ok(&["info"]);
    assert!(
        info.contains(&format!("Docker Root Dir: {}", s.root().display())),
        "{info}"
    );
    assert!(info.contains("Storage Driver: overlay"), "{info}");
    assert!(info.contains("Cgroup Version: "), "{info}");
    assert!(info.contains("Kernel Version: "), "{info}");
    assert_eq!(
        s.ok(&["info", "--format", "{{.Images}} {{.Driver}}"]),
        "1 overlay\n"
    );
    let df = s.ok(&["system", "df"]);
    let lines: Vec<&str> = df.lines().collect();
    assert!(
        lines[0].starts_with("TYPE") && lines[0].ends_with("RECLAIMABLE"),
        "{df}"
    );
    assert!(
        lines[1].starts_with("Images") && lines[1].contains("(100%)"),
        "{df}"
    );
    assert!(s.ok(&["version"]).contains("Version:"));
    assert_eq!(
        s.ok(&["version", "--format", "{{.Client.Version}}"]).trim(),
        env!("CARGO_PKG_VERSION")
    );
    for cmd in [
        vec!["--help"],
        vec!["import", "--help"],
        vec!["images", "--help"],
        vec!["image", "--help"],
        vec!["image", "ls", "--help"],
        vec!["image", "prune", "--help"],
        vec!["inspect", "--help"],
        vec!["tag", "--help"],
        vec!["rmi", "--help"],
        vec!["history", "--help"],
        vec!["save", "--help"],
        vec!["load", "--help"],
        vec!["info", "--help"],
        vec!["system", "df", "--help"],
        vec!["version", "--help"],
    ] {
        let out = s.ok(&cmd);
        assert!(out.contains("Usage:"), "{cmd:?}: {out}");
    }
}
