//! Pull and push against registries on this machine's loopback: Berth's
//! own `registry serve`, skopeo as a peer client, and Debian's reference
//! registry.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{free_port, peer, run_tool, TestStore, BERTH};

fn wait_for(addr: &str) {
    let end = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(addr).is_err() {
        assert!(Instant::now() < end, "nothing listens on {addr}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A registry process on a free loopback port, stopped when dropped.
struct Registry {
    child: Child,
    addr: String,
    root: tempfile::TempDir,
    log: PathBuf,
}

impl Registry {
    fn berth(htpasswd: Option<&Path>) -> Registry {
        let root = tempfile::tempdir().unwrap();
        let addr = format!("127.0.0.1:{}", free_port());
        let log = root.path().join("log");
        let mut cmd = Command::new(BERTH);
        cmd.args(["registry", "serve", "--addr", &addr, "--root"])
            .arg(root.path().join("data"));
        if let Some(h) = htpasswd {
            cmd.arg("--htpasswd").arg(h);
        }
        let child = cmd
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        wait_for(&addr);
        Registry {
            child,
            addr,
            root,
            log,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn store() -> TestStore {
    let s = TestStore::new();
    s.import_busybox("busybox");
    s
}

#[test]
fn push_to_berth_registry_then_pull_into_a_fresh_store_and_run() {
    let reg = Registry::berth(None);
    let a = store();
    let name = format!("{}/team/busybox:v1", reg.addr);
    a.ok(&["tag", "busybox", &name]);
    let out = a.ok(&["push", &name]);
    assert!(
        out.contains(&format!(
            "The push refers to repository [{}/team/busybox]",
            reg.addr
        )),
        "{out}"
    );
    assert!(out.contains(": Pushed"), "{out}");
    let digest = out
        .lines()
        .find_map(|l| l.strip_prefix("v1: digest: "))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("{out}"))
        .to_string();
    // Again: the registry has every blob.
    let again = a.ok(&["push", &name]);
    assert!(
        again.contains("Layer already exists") && !again.contains("Pushed"),
        "{again}"
    );

    let b = TestStore::new();
    let out = b.ok(&["pull", &name]);
    assert!(out.starts_with("v1: Pulling from team/busybox\n"), "{out}");
    assert!(out.contains(&format!("Digest: {digest}")), "{out}");
    assert!(
        out.contains(&format!("Status: Downloaded newer image for {name}")),
        "{out}"
    );
    assert!(out.ends_with(&format!("{name}\n")), "{out}");
    // Same image id as where it came from.
    let id = |s: &TestStore| s.ok(&["image", "inspect", "-f", "{{.Id}}", &name]);
    assert_eq!(id(&a), id(&b));
    let rd = b.ok(&["image", "inspect", "-f", "{{json .RepoDigests}}", &name]);
    assert!(
        rd.contains(&format!("{}/team/busybox@{digest}", reg.addr)),
        "{rd}"
    );
    assert_eq!(b.ok(&["run", "--rm", &name, "echo", "pulled"]), "pulled\n");
    let out = b.ok(&["pull", &name]);
    assert!(
        out.contains("Already exists") && out.contains("Image is up to date"),
        "{out}"
    );
    // By digest too.
    b.ok(&["pull", &format!("{}/team/busybox@{digest}", reg.addr)]);
    // Into another repository of the same registry: mounted, not sent.
    let other = format!("{}/other/busybox:v2", reg.addr);
    b.ok(&["tag", &name, &other]);
    let out = b.ok(&["push", &other]);
    assert!(
        out.contains("Mounted from team/busybox") && !out.contains("Pushed"),
        "{out}"
    );

    // A build pulls its FROM image.
    let ctx = tempfile::tempdir().unwrap();
    std::fs::write(
        ctx.path().join("Dockerfile"),
        format!("FROM {name}\nRUN echo built > /stamp\n"),
    )
    .unwrap();
    let d = TestStore::new();
    let out = d.ok(&["build", "-t", "built", ctx.path().to_str().unwrap()]);
    assert!(out.contains(&format!("Pulled {name}")), "{out}");
    assert_eq!(d.ok(&["run", "--rm", "built", "cat", "/stamp"]), "built\n");

    // `run` pulls what is missing, reporting on stderr.
    let c = TestStore::new();
    let out = c.run(&["run", "--rm", &name, "echo", "auto"]);
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), "auto\n");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("Unable to find image '{name}' locally")),
        "{err}"
    );
    let out = c.run(&[
        "run",
        "--rm",
        "--pull",
        "never",
        &format!("{}/nothing:here", reg.addr),
        "true",
    ]);
    assert!(!out.status.success());

    // Every tag at once.
    let e = TestStore::new();
    let out = e.ok(&["pull", "-a", &format!("{}/team/busybox", reg.addr)]);
    assert!(out.contains("v1: Pulling from team/busybox"), "{out}");
    let tags = e.ok(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    assert_eq!(tags.trim(), name);

    // What is not there is named.
    let err = c.fails(&["pull", &format!("{}/team/busybox:nope", reg.addr)]);
    assert!(
        err.contains("manifest unknown") || err.contains("not found"),
        "{err}"
    );
}

#[test]
fn skopeo_copies_to_and_from_berth_registry() {
    let Some(skopeo) = peer("skopeo") else {
        return;
    };
    let reg = Registry::berth(None);
    let s = store();
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("bb.tar");
    s.ok(&["save", "-o", archive.to_str().unwrap(), "busybox"]);
    let dest = format!("docker://{}/sk/busybox:s1", reg.addr);
    run_tool(
        &skopeo,
        &[
            "copy",
            "--dest-tls-verify=false",
            &format!("docker-archive:{}", archive.display()),
            &dest,
        ],
    );
    // Pushed by skopeo, pulled and run by berth.
    let b = TestStore::new();
    let name = format!("{}/sk/busybox:s1", reg.addr);
    b.ok(&["pull", &name]);
    assert_eq!(b.ok(&["run", "--rm", &name, "echo", "ok"]), "ok\n");
    // Pushed by berth, read by skopeo.
    let mine = format!("{}/mine/busybox:m1", reg.addr);
    s.ok(&["tag", "busybox", &mine]);
    s.ok(&["push", &mine]);
    let out = dir.path().join("copied");
    run_tool(
        &skopeo,
        &[
            "copy",
            "--src-tls-verify=false",
            &format!("docker://{mine}"),
            &format!("dir:{}", out.display()),
        ],
    );
    assert!(out.join("manifest.json").exists());
    let inspect = run_tool(
        &skopeo,
        &["inspect", "--tls-verify=false", &format!("docker://{mine}")],
    );
    assert!(inspect.contains("\"m1\""), "{inspect}");
    let tags = http("GET", &reg.addr, "/v2/_catalog", &[], b"");
    assert!(
        tags.2.contains("mine/busybox") && tags.2.contains("sk/busybox"),
        "{}",
        tags.2
    );
}

/// One HTTP/1.1 exchange (Connection: close): status, headers, body.
fn http(
    method: &str,
    addr: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req += &format!("{k}: {v}\r\n");
    }
    req += "\r\n";
    s.write_all(req.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    let text = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, head.to_string(), body.to_string())
}

fn sha256(data: &[u8]) -> String {
    format!("sha256:{}", common::sha256_hex(data))
}

/// Uploads a blob in one request; returns its digest.
fn upload(addr: &str, repo: &str, data: &[u8]) -> String {
    let d = sha256(data);
    let (st, head, body) = http(
        "POST",
        addr,
        &format!("/v2/{repo}/blobs/uploads/?digest={d}"),
        &[],
        data,
    );
    assert_eq!(st, 201, "{head}{body}");
    d
}

fn put_manifest(
    addr: &str,
    repo: &str,
    reference: &str,
    media: &str,
    doc: &serde_json::Value,
) -> (String, usize) {
    let bytes = serde_json::to_vec(doc).unwrap();
    let (st, head, body) = http(
        "PUT",
        addr,
        &format!("/v2/{repo}/manifests/{reference}"),
        &[("Content-Type", media)],
        &bytes,
    );
    assert_eq!(st, 201, "{head}{body}");
    (sha256(&bytes), bytes.len())
}

fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => panic!("no test mapping for {other}"),
    }
}

#[test]
fn a_multi_platform_index_pulls_the_platform_asked_for() {
    let reg = Registry::berth(None);
    let repo = "multi/app";
    let mut entries = Vec::new();
    for arch in ["amd64", "arm64"] {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("arch"), arch).unwrap();
        let tar = Command::new("tar")
            .args(["-C", dir.path().to_str().unwrap(), "-cf", "-", "arch"])
            .output()
            .unwrap()
            .stdout;
        let layer = upload(&reg.addr, repo, &tar);
        let config = serde_json::json!({
            "architecture": arch, "os": "linux",
            "config": {"Cmd": ["cat", "/arch"]},
            "rootfs": {"type": "layers", "diff_ids": [layer]},
        });
        let config_bytes = serde_json::to_vec(&config).unwrap();
        let config_digest = upload(&reg.addr, repo, &config_bytes);
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config_bytes.len()},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer, "size": tar.len()}],
        });
        let (d, size) = put_manifest(
            &reg.addr,
            repo,
            &sha256(&serde_json::to_vec(&manifest).unwrap()),
            "application/vnd.oci.image.manifest.v1+json",
            &manifest,
        );
        entries.push(serde_json::json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": d, "size": size,
            "platform": {"architecture": arch, "os": "linux"},
        }));
    }
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": entries,
    });
    let (index_digest, _) = put_manifest(
        &reg.addr,
        repo,
        "latest",
        "application/vnd.oci.image.index.v1+json",
        &index,
    );
    let name = format!("{}/{repo}:latest", reg.addr);

    let s = TestStore::new();
    let out = s.ok(&["pull", "--platform", "linux/arm64", &name]);
    assert!(out.contains(&format!("Digest: {index_digest}")), "{out}");
    assert_eq!(
        s.ok(&["image", "inspect", "-f", "{{.Architecture}}", &name])
            .trim(),
        "arm64"
    );
    let host = TestStore::new();
    host.ok(&["pull", &name]);
    assert_eq!(
        host.ok(&["image", "inspect", "-f", "{{.Architecture}}", &name])
            .trim(),
        host_arch()
    );
    let err = host.fails(&["pull", "--platform", "linux/s390x", &name]);
    assert!(
        err.contains("no matching manifest for linux/s390x in the manifest list entries"),
        "{err}"
    );

    // The same two images made into a list with `manifest`, in another
    // repository (their blobs are mounted there), annotated, pushed.
    let digests: Vec<String> = entries
        .iter()
        .map(|e| e["digest"].as_str().unwrap().to_string())
        .collect();
    let list = format!("{}/combined/app:v1", reg.addr);
    let m = TestStore::new();
    let img = |d: &str| format!("{}/{repo}@{d}", reg.addr);
    let out = m.ok(&[
        "manifest",
        "create",
        &list,
        &img(&digests[0]),
        &img(&digests[1]),
    ]);
    assert_eq!(out, format!("Created manifest list {list}\n"));
    m.ok(&[
        "manifest",
        "annotate",
        "--variant",
        "v8",
        &list,
        &img(&digests[1]),
    ]);
    let local = m.ok(&["manifest", "inspect", &list]);
    assert!(
        local.contains("\"variant\": \"v8\"") && local.contains(&digests[0]),
        "{local}"
    );
    let err = m.fails(&["manifest", "create", &list, &img(&digests[0])]);
    assert!(err.contains("--amend"), "{err}");
    m.ok(&["manifest", "push", "--purge", &list]);
    let remote = m.ok(&["manifest", "inspect", &list]);
    assert!(
        remote.contains("application/vnd.oci.image.index.v1+json") && remote.contains("v8"),
        "{remote}"
    );
    m.ok(&["pull", "--platform", "linux/arm64/v8", &list]);
    assert_eq!(
        m.ok(&["image", "inspect", "-f", "{{.Architecture}}", &list])
            .trim(),
        "arm64"
    );
}

#[test]
fn a_blob_that_does_not_match_its_digest_is_refused_and_nothing_is_stored() {
    let reg = Registry::berth(None);
    let a = store();
    let name = format!("{}/bad/busybox:v1", reg.addr);
    a.ok(&["tag", "busybox", &name]);
    a.ok(&["push", &name]);
    // Corrupt the layer on the registry's disk (same size, other bytes).
    let blobs = reg.root.path().join("data/blobs/sha256");
    let biggest = std::fs::read_dir(&blobs)
        .unwrap()
        .flatten()
        .max_by_key(|e| e.metadata().unwrap().len())
        .unwrap();
    let len = biggest.metadata().unwrap().len() as usize;
    std::fs::write(biggest.path(), vec![0x5a; len]).unwrap();
    let bad = format!("sha256:{}", biggest.file_name().to_string_lossy());

    let b = TestStore::new();
    let err = b.fails(&["pull", &name]);
    assert!(err.contains(&bad) && err.contains("digest"), "{err}");
    assert_eq!(b.ok(&["images", "-q"]), "");
    assert!(!b
        .entries("blobs/sha256")
        .contains(&bad["sha256:".len()..].to_string()));
    assert!(
        b.entries("downloads").is_empty(),
        "{:?}",
        b.entries("downloads")
    );
}

/// A TCP proxy that sends what the server says at about `rate` bytes a
/// second, so a test can kill a pull half-way through a layer.
fn slow_proxy(upstream: String, rate: usize) -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for c in l.incoming().flatten() {
            let up = match TcpStream::connect(&upstream) {
                Ok(u) => u,
                Err(_) => continue,
            };
            let (mut c2, mut up2) = (c.try_clone().unwrap(), up.try_clone().unwrap());
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut c2, &mut up2);
            });
            std::thread::spawn(move || {
                let (mut c, mut up) = (c, up);
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    match up.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if c.write_all(&buf[..n]).is_err() {
                                break;
                            }
                            std::thread::sleep(Duration::from_secs_f64(n as f64 / rate as f64));
                        }
                    }
                }
                let _ = c.shutdown(std::net::Shutdown::Both);
            });
        }
    });
    addr
}

#[test]
fn a_pull_killed_half_way_through_a_layer_resumes() {
    let reg = Registry::berth(None);
    let a = store();
    let ctx = tempfile::tempdir().unwrap();
    let mut big = vec![0u8; 24 << 20];
    std::fs::File::open("/dev/urandom")
        .unwrap()
        .read_exact(&mut big)
        .unwrap();
    std::fs::write(ctx.path().join("big"), &big).unwrap();
    std::fs::write(
        ctx.path().join("Dockerfile"),
        "FROM busybox\nCOPY big /big\n",
    )
    .unwrap();
    let name = format!("{}/big/app:v1", reg.addr);
    a.ok(&["build", "-q", "-t", &name, ctx.path().to_str().unwrap()]);
    a.ok(&["push", &name]);

    // Through a slow link, killed once part of the big layer is down.
    let proxy = slow_proxy(reg.addr.clone(), 4 << 20);
    let slow_name = format!("{proxy}/big/app:v1");
    let b = TestStore::new();
    let mut child = b
        .cmd(&["pull", &slow_name])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let downloads = b.root().join("downloads");
    let end = Instant::now() + Duration::from_secs(60);
    let partial_len = || -> u64 {
        std::fs::read_dir(&downloads)
            .map(|d| {
                d.flatten()
                    .map(|e| e.metadata().map(|m| m.len()).unwrap_or(0))
                    .max()
                    .unwrap_or(0)
            })
            .unwrap_or(0)
    };
    while partial_len() < 3 << 20 {
        assert!(Instant::now() < end, "the pull made no progress");
        assert!(
            child.try_wait().unwrap().is_none(),
            "the pull ended before it was killed"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let kept = partial_len();
    assert!((3 << 20..24 << 20).contains(&kept), "{kept}");

    // The next pull asks only for the rest.
    b.ok(&["pull", &name]);
    let log = reg.log();
    assert!(
        log.lines()
            .any(|l| l.contains("/blobs/") && l.ends_with(" 206")),
        "{log}"
    );
    let out = b.ok(&["run", "--rm", &name, "sh", "-c", "wc -c < /big"]);
    assert_eq!(out.trim(), (24 << 20).to_string());
    assert!(b.entries("downloads").is_empty());
}

/// `htpasswd -B` from apache2-utils: a bcrypt entry for `user`.
fn htpasswd_file(dir: &Path, user: &str, password: &str) -> PathBuf {
    let htpasswd = peer("htpasswd").expect("apache2-utils (htpasswd) is needed");
    let line = run_tool(&htpasswd, &["-Bbn", user, password]);
    let p = dir.join("htpasswd");
    std::fs::write(&p, line.trim()).unwrap();
    p
}

impl Registry {
    /// Debian's `docker-registry` (Docker's reference registry) with a
    /// config this test writes; None when it is not installed.
    fn reference(htpasswd: Option<&Path>) -> Option<Registry> {
        let auth = htpasswd
            .map(|h| {
                format!(
                    "auth:\n  htpasswd:\n    realm: berth-test\n    path: {}\n",
                    h.display()
                )
            })
            .unwrap_or_default();
        Registry::reference_with("127.0.0.1", "", &auth)
    }

    /// The reference registry on `host`, with `http_extra` under its
    /// `http:` section and `extra` at the top level of its config.
    fn reference_with(host: &str, http_extra: &str, extra: &str) -> Option<Registry> {
        let bin = peer("docker-registry")?;
        let root = tempfile::tempdir().unwrap();
        let addr = format!("{host}:{}", free_port());
        let cfg = format!(
            "version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {addr}\n{http_extra}{extra}",
            root.path().join("data").display()
        );
        let cfg_path = root.path().join("config.yml");
        std::fs::write(&cfg_path, cfg).unwrap();
        let log = root.path().join("log");
        let child = Command::new(bin)
            .arg("serve")
            .arg(&cfg_path)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        wait_for(&addr);
        Some(Registry {
            child,
            addr,
            root,
            log,
        })
    }
}

/// Runs berth with its Docker client config in `cfg`.
fn with_config(s: &TestStore, cfg: &Path, args: &[&str]) -> std::process::Output {
    s.cmd(args)
        .env("DOCKER_CONFIG", cfg)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn ok_with(s: &TestStore, cfg: &Path, args: &[&str]) -> String {
    let o = with_config(s, cfg, args);
    assert!(
        o.status.success(),
        "berth {args:?}: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap()
}

/// Push, pull into another store and run, with credentials from a login
/// (and refused before it and after a logout).
fn auth_round_trip(reg: &Registry) {
    let cfg = tempfile::tempdir().unwrap();
    let a = store();
    let name = format!("{}/private/busybox:v1", reg.addr);
    a.ok(&["tag", "busybox", &name]);
    let o = with_config(&a, cfg.path(), &["push", &name]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.to_lowercase().contains("unauthorized") || err.contains("login"),
        "{err}"
    );

    let o = with_config(
        &a,
        cfg.path(),
        &["login", "-u", "alice", "-p", "wrong", &reg.addr],
    );
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("incorrect username or password"));
    let mut login = a
        .cmd(&["login", "-u", "alice", "--password-stdin", &reg.addr])
        .env("DOCKER_CONFIG", cfg.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    login.stdin.take().unwrap().write_all(b"s3cret\n").unwrap();
    let out = login.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "Login Succeeded\n");
    let saved = std::fs::read_to_string(cfg.path().join("config.json")).unwrap();
    assert!(
        saved.contains(&reg.addr) && saved.contains("\"auth\""),
        "{saved}"
    );

    ok_with(&a, cfg.path(), &["push", &name]);
    let b = TestStore::new();
    ok_with(&b, cfg.path(), &["pull", &name]);
    assert_eq!(
        ok_with(
            &b,
            cfg.path(),
            &["run", "--rm", &name, "echo", "authorised"]
        ),
        "authorised\n"
    );

    let out = ok_with(&a, cfg.path(), &["logout", &reg.addr]);
    assert_eq!(
        out,
        format!("Removing login credentials for {}\n", reg.addr)
    );
    let c = TestStore::new();
    assert!(!with_config(&c, cfg.path(), &["pull", &name])
        .status
        .success());
}

#[test]
fn berth_registry_with_htpasswd_wants_a_login() {
    let dir = tempfile::tempdir().unwrap();
    let h = htpasswd_file(dir.path(), "alice", "s3cret");
    let reg = Registry::berth(Some(&h));
    auth_round_trip(&reg);
}

#[test]
fn debian_reference_registry_anonymous_and_with_basic_auth() {
    let Some(open) = Registry::reference(None) else {
        return;
    };
    let a = store();
    let name = format!("{}/library/busybox:latest", open.addr);
    a.ok(&["tag", "busybox", &name]);
    a.ok(&["push", &name]);
    let b = TestStore::new();
    b.ok(&["pull", &name]);
    assert_eq!(
        b.ok(&["run", "--rm", &name, "echo", "from-reference"]),
        "from-reference\n"
    );

    let dir = tempfile::tempdir().unwrap();
    let h = htpasswd_file(dir.path(), "alice", "s3cret");
    let closed = Registry::reference(Some(&h)).expect("installed above");
    auth_round_trip(&closed);
}

fn openssl(args: &[&str]) {
    let st = Command::new("openssl")
        .args(args)
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success(), "openssl {args:?}");
}

/// An address of this machine off the loopback (on an empty bridge the
/// test makes: no dummy module here), so the registry there is not
/// insecure by default.
struct Dummy(String);

impl Drop for Dummy {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["link", "del", &self.0]).status();
    }
}

#[test]
fn tls_registries_are_verified_against_the_cas_given() {
    if peer("docker-registry").is_none() {
        return;
    }
    let n = std::process::id() % 250;
    let link = format!("bdtls{n}");
    let ip = format!("10.216.{n}.1");
    let _ = Command::new("ip")
        .args(["link", "del", &link])
        .stderr(Stdio::null())
        .status();
    let st = Command::new("ip")
        .args(["link", "add", &link, "type", "bridge"])
        .status()
        .unwrap();
    assert!(st.success());
    let _dummy = Dummy(link.clone());
    assert!(Command::new("ip")
        .args(["addr", "add", &format!("{ip}/32"), "dev", &link])
        .status()
        .unwrap()
        .success());
    assert!(Command::new("ip")
        .args(["link", "set", &link, "up"])
        .status()
        .unwrap()
        .success());

    // A CA, and a certificate for the address signed by it.
    let dir = tempfile::tempdir().unwrap();
    let p = |f: &str| dir.path().join(f).to_str().unwrap().to_string();
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        &p("ca.key"),
        "-out",
        &p("ca.crt"),
        "-days",
        "1",
        "-subj",
        "/CN=berth test CA",
    ]);
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        &p("leaf.key"),
        "-out",
        &p("leaf.csr"),
        "-subj",
        "/CN=berth test registry",
    ]);
    std::fs::write(
        dir.path().join("ext"),
        format!("subjectAltName=IP:{ip}\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n"),
    )
    .unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        &p("leaf.csr"),
        "-CA",
        &p("ca.crt"),
        "-CAkey",
        &p("ca.key"),
        "-CAcreateserial",
        "-out",
        &p("leaf.crt"),
        "-days",
        "1",
        "-extfile",
        &p("ext"),
    ]);
    let certs = dir.path().join("certs");
    std::fs::create_dir(&certs).unwrap();
    std::fs::copy(dir.path().join("ca.crt"), certs.join("ca.crt")).unwrap();

    let reg = Registry::reference_with(
        &ip,
        &format!(
            "  tls:\n    certificate: {}\n    key: {}\n",
            p("leaf.crt"),
            p("leaf.key")
        ),
        "",
    )
    .expect("docker-registry is installed");
    let addr = reg.addr.clone();

    let a = store();
    let name = format!("{addr}/tls/busybox:v1");
    a.ok(&["tag", "busybox", &name]);
    // Without the CA the certificate is not trusted.
    let err = a.fails(&["push", &name]);
    assert!(
        err.to_lowercase().contains("certificate") || err.contains("cannot reach"),
        "{err}"
    );
    let certs = certs.to_str().unwrap();
    a.ok(&["push", "--cert-dir", certs, &name]);
    let b = TestStore::new();
    b.ok(&["pull", "--cert-dir", certs, &name]);
    assert_eq!(
        b.ok(&["run", "--rm", &name, "echo", "over-tls"]),
        "over-tls\n"
    );

    // Berth's own registry serves https with the same certificate.
    let addr2 = format!("{ip}:{}", free_port());
    let child = Command::new(BERTH)
        .args([
            "registry",
            "serve",
            "--addr",
            &addr2,
            "--root",
            &p("data2"),
            "--tls-cert",
            &p("leaf.crt"),
            "--tls-key",
            &p("leaf.key"),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for(&addr2);
    let _reg2 = Registry {
        child,
        addr: addr2.clone(),
        root: tempfile::tempdir().unwrap(),
        log: dir.path().join("none"),
    };
    let name2 = format!("{addr2}/tls/busybox:v2");
    a.ok(&["tag", "busybox", &name2]);
    assert!(!a.run(&["push", &name2]).status.success());
    a.ok(&["push", "--cert-dir", certs, &name2]);
    let c = TestStore::new();
    c.ok(&["pull", "--cert-dir", certs, &name2]);
    assert_eq!(
        c.ok(&["run", "--rm", &name2, "echo", "berth-tls"]),
        "berth-tls\n"
    );
}

#[test]
fn credentials_come_from_a_credential_helper_and_zstd_layers_travel() {
    let dir = tempfile::tempdir().unwrap();
    let h = htpasswd_file(dir.path(), "carol", "from-helper");
    let reg = Registry::berth(Some(&h));
    // A credential helper as Docker runs them (`get`/`erase` with the
    // server on stdin, `store` with JSON), keeping what it is given in a
    // file.
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let helper = bin.join("docker-credential-berthtest");
    let kept = dir.path().join("kept.json");
    std::fs::write(
        &helper,
        format!(
            "#!/bin/sh\nf={}\ncase \"$1\" in\nget) read server; [ \"$server\" = \"{}\" ] && [ -f \"$f\" ] && cat \"$f\" ;;\nstore) cat > \"$f\" ;;\nerase) read server; rm \"$f\" ;;\n*) exit 1 ;;\nesac\n",
            kept.display(),
            reg.addr
        ),
    )
    .unwrap();
    std::fs::set_permissions(&helper, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let cfg = dir.path().join("cfg");
    std::fs::create_dir(&cfg).unwrap();
    std::fs::write(
        cfg.join("config.json"),
        format!("{{\"credHelpers\": {{\"{}\": \"berthtest\"}}}}", reg.addr),
    )
    .unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let run = |s: &TestStore, args: &[&str]| {
        let o = s
            .cmd(args)
            .env("DOCKER_CONFIG", &cfg)
            .env("PATH", &path)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "berth {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8(o.stdout).unwrap()
    };

    // Nothing kept yet: refused. A login goes to the helper, not to
    // config.json.
    let a = store();
    let o = a
        .cmd(&["pull", &format!("{}/zstd/app:v0", reg.addr)])
        .env("DOCKER_CONFIG", &cfg)
        .env("PATH", &path)
        .output()
        .unwrap();
    assert!(!o.status.success());
    run(
        &a,
        &["login", "-u", "carol", "-p", "from-helper", &reg.addr],
    );
    assert!(std::fs::read_to_string(&kept)
        .unwrap()
        .contains("from-helper"));
    let saved = std::fs::read_to_string(cfg.join("config.json")).unwrap();
    assert!(
        !saved.contains("\"auth\"") && saved.contains("credHelpers"),
        "{saved}"
    );

    // A zstd-compressed image, pushed and pulled with the helper's login.
    let ctx = dir.path().join("ctx");
    std::fs::create_dir(&ctx).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM busybox\nRUN echo squeezed > /z\n",
    )
    .unwrap();
    let name = format!("{}/zstd/app:v1", reg.addr);
    a.ok(&[
        "build",
        "-q",
        "--compression",
        "zstd",
        "-t",
        &name,
        ctx.to_str().unwrap(),
    ]);
    run(&a, &["push", &name]);
    let b = TestStore::new();
    run(&b, &["pull", &name]);
    assert_eq!(b.ok(&["run", "--rm", &name, "cat", "/z"]), "squeezed\n");
    let manifest = run(&b, &["manifest", "inspect", &name]);
    assert!(manifest.contains("tar+zstd"), "{manifest}");
    // Without the helper there are no credentials; logout erases them.
    let c = TestStore::new();
    assert!(!c.run(&["pull", &name]).status.success());
    let out = run(&a, &["logout", &reg.addr]);
    assert_eq!(
        out,
        format!("Removing login credentials for {}\n", reg.addr)
    );
    assert!(!kept.exists());
}

fn b64(data: &[u8], url: bool) -> String {
    let table: &[u8] = if url {
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    } else {
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    };
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |a, (i, b)| a | (*b as u32) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(table[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
        if !url {
            out.extend(std::iter::repeat_n('=', 3 - chunk.len()));
        }
    }
    out
}

/// A token service as Docker Hub's: Basic credentials in, a JWT signed
/// with `key` (whose certificate the registry trusts) out, granting what
/// the scope asks. Counts the tokens it gives.
fn token_server(
    key: PathBuf,
    cert_der: Vec<u8>,
    issued: std::sync::Arc<std::sync::atomic::AtomicUsize>,
) -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for c in l.incoming().flatten() {
            let mut c = c;
            let mut buf = vec![0u8; 8192];
            let n = c.read(&mut buf).unwrap_or(0);
            let req = String::from_utf8_lossy(&buf[..n]).into_owned();
            let path = req.split_whitespace().nth(1).unwrap_or("").to_string();
            let authorised = req.lines().any(|l| {
                l.to_ascii_lowercase().starts_with("authorization: basic ")
                    && l[21..].trim() == b64(b"dave:tokens", false)
            });
            if !authorised {
                let _ = c.write_all(
                    b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                );
                continue;
            }
            let scope = path
                .split(['?', '&'])
                .find_map(|kv| kv.strip_prefix("scope="))
                .unwrap_or("")
                .replace("%3A", ":")
                .replace("%2C", ",")
                .replace("%2F", "/");
            let mut parts = scope.split(':');
            let (kind, name, actions) = (
                parts.next().unwrap_or(""),
                parts.next().unwrap_or(""),
                parts.next().unwrap_or(""),
            );
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs();
            let header =
                serde_json::json!({"typ": "JWT", "alg": "RS256", "x5c": [b64(&cert_der, false)]});
            let claims = serde_json::json!({
                "iss": "berth-test-issuer", "sub": "dave", "aud": "berth-test",
                "exp": now + 300, "nbf": now - 10, "iat": now, "jti": format!("{now}-{}", issued.load(std::sync::atomic::Ordering::SeqCst)),
                "access": [{"type": kind, "name": name, "actions": actions.split(',').filter(|a| !a.is_empty()).collect::<Vec<_>>()}],
            });
            let input = format!(
                "{}.{}",
                b64(header.to_string().as_bytes(), true),
                b64(claims.to_string().as_bytes(), true)
            );
            let mut sign = Command::new("openssl")
                .args(["dgst", "-sha256", "-sign"])
                .arg(&key)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .unwrap();
            sign.stdin
                .take()
                .unwrap()
                .write_all(input.as_bytes())
                .unwrap();
            let sig = sign.wait_with_output().unwrap().stdout;
            let jwt = format!("{input}.{}", b64(&sig, true));
            issued.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let body = serde_json::json!({"token": jwt, "access_token": jwt, "expires_in": 300})
                .to_string();
            let _ = c.write_all(format!("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()).as_bytes());
        }
    });
    addr
}

#[test]
fn bearer_tokens_from_a_token_service() {
    if peer("docker-registry").is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let p = |f: &str| dir.path().join(f).to_str().unwrap().to_string();
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        &p("token.key"),
        "-out",
        &p("token.crt"),
        "-days",
        "1",
        "-subj",
        "/CN=berth token issuer",
    ]);
    let der = Command::new("openssl")
        .args(["x509", "-in", &p("token.crt"), "-outform", "der"])
        .output()
        .unwrap()
        .stdout;
    let issued = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let tokens = token_server(dir.path().join("token.key"), der, issued.clone());

    let auth = format!(
        "auth:\n  token:\n    realm: http://{tokens}/token\n    service: berth-test\n    issuer: berth-test-issuer\n    rootcertbundle: {}\n",
        p("token.crt")
    );
    let reg =
        Registry::reference_with("127.0.0.1", "", &auth).expect("docker-registry is installed");
    let addr = reg.addr.clone();

    let conf = dir.path().join("docker");
    std::fs::create_dir(&conf).unwrap();
    let a = store();
    let name = format!("{addr}/tokens/busybox:v1");
    a.ok(&["tag", "busybox", &name]);
    assert!(!with_config(&a, &conf, &["push", &name]).status.success());
    let o = with_config(&a, &conf, &["login", "-u", "dave", "-p", "nope", &addr]);
    assert!(
        !o.status.success(),
        "a wrong password is refused by the token service"
    );
    ok_with(&a, &conf, &["login", "-u", "dave", "-p", "tokens", &addr]);
    ok_with(&a, &conf, &["push", &name]);
    let b = TestStore::new();
    ok_with(&b, &conf, &["pull", &name]);
    assert_eq!(b.ok(&["run", "--rm", &name, "echo", "bearer"]), "bearer\n");
    // Tokens are asked for per operation, not per request.
    let n = issued.load(std::sync::atomic::Ordering::SeqCst);
    assert!((2..=20).contains(&n), "{n} tokens");
}

/// The status of a request with no headers or body.
fn status(method: &str, addr: &str, path: &str) -> u16 {
    http(method, addr, path, &[], b"").0
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

#[test]
fn the_registry_server_speaks_the_distribution_spec() {
    let reg = Registry::berth(None);
    let a = &reg.addr;
    let (st, head, _) = http("GET", a, "/v2/", &[], b"");
    assert_eq!(st, 200);
    assert_eq!(
        header(&head, "Docker-Distribution-API-Version"),
        Some("registry/2.0")
    );

    // Chunked upload: POST, PATCH, PATCH, PUT; Range and Location as it goes.
    let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let digest = sha256(&data);
    let (st, head, _) = http("POST", a, "/v2/spec/blob/blobs/uploads/", &[], b"");
    assert_eq!(st, 202);
    let loc = header(&head, "Location").unwrap().to_string();
    let (st, head, _) = http(
        "PATCH",
        a,
        &loc,
        &[("Content-Range", "0-99999")],
        &data[..100_000],
    );
    assert_eq!(st, 202);
    assert_eq!(header(&head, "Range"), Some("0-99999"));
    // Out of order: 416, and the upload is unchanged.
    let (st, _, _) = http(
        "PATCH",
        a,
        &loc,
        &[("Content-Range", "200000-299999")],
        &data[200_000..],
    );
    assert_eq!(st, 416);
    let (st, head, _) = http(
        "PATCH",
        a,
        &loc,
        &[("Content-Range", "100000-199999")],
        &data[100_000..200_000],
    );
    assert_eq!((st, header(&head, "Range")), (202, Some("0-199999")));
    // The wrong digest is refused with the spec's code.
    let (st, _, body) = http(
        "PUT",
        a,
        &format!("{loc}?digest={}", sha256(b"other")),
        &[],
        &data[200_000..],
    );
    assert_eq!(st, 400);
    assert!(body.contains("DIGEST_INVALID"), "{body}");
    let (st, head, _) = http("POST", a, "/v2/spec/blob/blobs/uploads/", &[], b"");
    assert_eq!(st, 202);
    let loc = header(&head, "Location").unwrap().to_string();
    http("PATCH", a, &loc, &[], &data[..200_000]);
    let (st, head, _) = http(
        "PUT",
        a,
        &format!("{loc}?digest={digest}"),
        &[],
        &data[200_000..],
    );
    assert_eq!(st, 201);
    assert_eq!(
        header(&head, "Docker-Content-Digest"),
        Some(digest.as_str())
    );

    // HEAD, ranges, 416 past the end.
    let (st, head, _) = http(
        "HEAD",
        a,
        &format!("/v2/spec/blob/blobs/{digest}"),
        &[],
        b"",
    );
    assert_eq!((st, header(&head, "Content-Length")), (200, Some("300000")));
    let (st, head, body) = http(
        "GET",
        a,
        &format!("/v2/spec/blob/blobs/{digest}"),
        &[("Range", "bytes=10-19")],
        b"",
    );
    assert_eq!(st, 206);
    assert_eq!(header(&head, "Content-Range"), Some("bytes 10-19/300000"));
    assert_eq!(body.as_bytes(), &data[10..20]);
    let (st, _, _) = http(
        "GET",
        a,
        &format!("/v2/spec/blob/blobs/{digest}"),
        &[("Range", "bytes=400000-")],
        b"",
    );
    assert_eq!(st, 416);
    // sha512 content is verified and served too.
    let s512 = Command::new("sha512sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut s512 = s512;
    s512.stdin
        .take()
        .unwrap()
        .write_all(b"five twelve")
        .unwrap();
    let hex = String::from_utf8(s512.wait_with_output().unwrap().stdout).unwrap();
    let d512 = format!("sha512:{}", hex.split_whitespace().next().unwrap());
    let (st, _, _) = http(
        "POST",
        a,
        &format!("/v2/spec/blob/blobs/uploads/?digest={d512}"),
        &[],
        b"five twelve",
    );
    assert_eq!(st, 201);
    let (st, _, body) = http("GET", a, &format!("/v2/spec/blob/blobs/{d512}"), &[], b"");
    assert_eq!((st, body.as_str()), (200, "five twelve"));

    // Unknown things, by the spec's codes.
    let (st, _, body) = http(
        "GET",
        a,
        &format!("/v2/spec/blob/blobs/{}", sha256(b"nothing")),
        &[],
        b"",
    );
    assert!(st == 404 && body.contains("BLOB_UNKNOWN"), "{st} {body}");
    let (st, _, body) = http("GET", a, "/v2/spec/blob/manifests/nope", &[], b"");
    assert!(
        st == 404 && body.contains("MANIFEST_UNKNOWN"),
        "{st} {body}"
    );
    let (st, _, body) = http("GET", a, "/v2/never/pushed/tags/list", &[], b"");
    assert!(st == 404 && body.contains("NAME_UNKNOWN"), "{st} {body}");
    let (st, _, body) = http("GET", a, "/v2/Bad_Name/tags/list", &[], b"");
    assert!(st == 400 && body.contains("NAME_INVALID"), "{st} {body}");

    // Manifests: a referenced blob must exist; then tags, pages, referrers.
    let config = upload(a, "spec/blob", b"{}");
    let manifest = serde_json::json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config, "size": 2},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": digest, "size": 300000}],
    });
    let mut missing = manifest.clone();
    missing["layers"][0]["digest"] = serde_json::json!(sha256(b"absent"));
    let bytes = serde_json::to_vec(&missing).unwrap();
    let (st, _, body) = http(
        "PUT",
        a,
        "/v2/spec/blob/manifests/x",
        &[("Content-Type", "application/vnd.oci.image.manifest.v1+json")],
        &bytes,
    );
    assert!(
        st == 400 && body.contains("MANIFEST_BLOB_UNKNOWN"),
        "{st} {body}"
    );
    let mut mdigest = String::new();
    for t in ["a", "b", "c", "d", "e"] {
        mdigest = put_manifest(
            a,
            "spec/blob",
            t,
            "application/vnd.oci.image.manifest.v1+json",
            &manifest,
        )
        .0;
    }
    let (st, head, body) = http("GET", a, "/v2/spec/blob/tags/list?n=2", &[], b"");
    assert_eq!(st, 200);
    assert!(body.contains("[\"a\",\"b\"]"), "{body}");
    assert_eq!(
        header(&head, "Link"),
        Some("</v2/spec/blob/tags/list?n=2&last=b>; rel=\"next\"")
    );
    let (_, head, body) = http("GET", a, "/v2/spec/blob/tags/list?n=2&last=b", &[], b"");
    assert!(
        body.contains("[\"c\",\"d\"]") && header(&head, "Link").is_some(),
        "{body}"
    );
    let (_, head, body) = http("GET", a, "/v2/spec/blob/tags/list?n=2&last=d", &[], b"");
    assert!(
        body.contains("[\"e\"]") && header(&head, "Link").is_none(),
        "{body}"
    );
    let (st, head, _) = http("HEAD", a, "/v2/spec/blob/manifests/a", &[], b"");
    assert_eq!(
        (st, header(&head, "Docker-Content-Digest")),
        (200, Some(mdigest.as_str()))
    );
    let (_, _, body) = http("GET", a, "/v2/_catalog?n=1", &[], b"");
    assert_eq!(body, "{\"repositories\":[\"spec/blob\"]}");

    // An artifact about the image, found through the referrers API.
    let sig = serde_json::json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "artifactType": "application/vnd.example.signature",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": config, "size": 2},
        "layers": [],
        "subject": {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": mdigest, "size": 1},
    });
    let sbytes = serde_json::to_vec(&sig).unwrap();
    let (st, head, _) = http(
        "PUT",
        a,
        &format!("/v2/spec/blob/manifests/{}", sha256(&sbytes)),
        &[("Content-Type", "application/vnd.oci.image.manifest.v1+json")],
        &sbytes,
    );
    assert_eq!(st, 201);
    assert_eq!(header(&head, "OCI-Subject"), Some(mdigest.as_str()));
    let (st, _, body) = http(
        "GET",
        a,
        &format!("/v2/spec/blob/referrers/{mdigest}"),
        &[],
        b"",
    );
    assert_eq!(st, 200);
    assert!(
        body.contains("application/vnd.example.signature") && body.contains(&sha256(&sbytes)),
        "{body}"
    );

    // Paths that climb out of the root are refused, and nothing outside
    // is touched.
    let outside = reg.root.path().join("outside");
    std::fs::write(&outside, "keep").unwrap();
    assert_eq!(
        status(
            "DELETE",
            a,
            "/v2/spec/blob/blobs/uploads/../../../../outside"
        ),
        404
    );
    assert_eq!(
        status(
            "DELETE",
            a,
            "/v2/spec/blob/manifests/../../../../../outside"
        ),
        400
    );
    assert!(outside.exists());
    assert_eq!(status("GET", a, "/v2\u{e9}"), 404);

    // Deleting a manifest takes its tags; deleting a blob makes it unknown.
    assert_eq!(
        status("DELETE", a, &format!("/v2/spec/blob/manifests/{mdigest}")),
        202
    );
    assert_eq!(status("GET", a, "/v2/spec/blob/manifests/a"), 404);
    assert_eq!(
        status("DELETE", a, &format!("/v2/spec/blob/blobs/{digest}")),
        202
    );
    assert_eq!(
        status("HEAD", a, &format!("/v2/spec/blob/blobs/{digest}")),
        404
    );
}

/// Ranges as the conformance suite and RFC 9110 ask for them: open,
/// suffix, unsatisfiable, and several at once.
#[test]
fn blob_ranges_open_suffix_and_multipart() {
    let reg = Registry::berth(None);
    let a = &reg.addr;
    let data: Vec<u8> = (0..2048u32).map(|i| b'a' + (i % 26) as u8).collect();
    let digest = upload(a, "spec/ranges", &data);
    let blob = format!("/v2/spec/ranges/blobs/{digest}");

    let get = |range: &str| http("GET", a, &blob, &[("Range", range)], b"");
    // Open and suffix ranges.
    let (st, head, body) = get("bytes=2000-");
    assert_eq!(st, 206);
    assert_eq!(header(&head, "Content-Range"), Some("bytes 2000-2047/2048"));
    assert_eq!(body.as_bytes(), &data[2000..]);
    let (st, head, body) = get("bytes=-500");
    assert_eq!(st, 206);
    assert_eq!(header(&head, "Content-Range"), Some("bytes 1548-2047/2048"));
    assert_eq!(header(&head, "Content-Length"), Some("500"));
    assert_eq!(body.as_bytes(), &data[1548..]);
    let (st, head, body) = get("bytes=-4096");
    assert_eq!(
        (st, header(&head, "Content-Range")),
        (206, Some("bytes 0-2047/2048"))
    );
    assert_eq!(body.as_bytes(), &data[..]);
    // Nothing to send: 416 with the size.
    for r in ["bytes=-0", "bytes=500-0", "bytes=5000-10000"] {
        let (st, head, _) = get(r);
        assert_eq!(
            (st, header(&head, "Content-Range")),
            (416, Some("bytes */2048")),
            "{r}"
        );
    }
    // Several ranges: one multipart/byteranges answer, overlapping ones
    // joined, each part with its Content-Range.
    let (st, head, body) = get("bytes=0-9, 5-19, -8");
    assert_eq!(st, 206);
    let ctype = header(&head, "Content-Type").unwrap();
    let boundary = ctype
        .strip_prefix("multipart/byteranges; boundary=")
        .unwrap_or_else(|| panic!("{ctype}"));
    assert_eq!(
        header(&head, "Content-Length"),
        Some(body.len().to_string().as_str())
    );
    let want = format!(
        "--{boundary}\r\nContent-Type: application/octet-stream\r\nContent-Range: bytes 0-19/2048\r\n\r\n{}\r\n\
         --{boundary}\r\nContent-Type: application/octet-stream\r\nContent-Range: bytes 2040-2047/2048\r\n\r\n{}\r\n\
         --{boundary}--\r\n",
        std::str::from_utf8(&data[..20]).unwrap(),
        std::str::from_utf8(&data[2040..]).unwrap(),
    );
    assert_eq!(body, want);
    // HEAD says the same without the body.
    let (st, head, body) = http("HEAD", a, &blob, &[("Range", "bytes=-500")], b"");
    assert_eq!(
        (st, header(&head, "Content-Length"), body.as_str()),
        (206, Some("500"), "")
    );
}

/// A closing PUT whose Content-Range starts anywhere but the upload's end
/// is refused with 416 and the upload's Range, and leaves the upload
/// usable.
#[test]
fn an_out_of_order_closing_put_keeps_the_upload() {
    let reg = Registry::berth(None);
    let a = &reg.addr;
    let data: Vec<u8> = (0..2048u32).map(|i| b'a' + (i % 26) as u8).collect();
    let digest = sha256(&data);

    // POST, PATCH the first half; a closing PUT that starts anywhere but
    // the upload's end is 416 with the upload's Range...
    let (st, head, _) = http("POST", a, "/v2/spec/ranges/blobs/uploads/", &[], b"");
    assert_eq!(st, 202);
    let loc = header(&head, "Location").unwrap().to_string();
    let (st, _, _) = http(
        "PATCH",
        a,
        &loc,
        &[("Content-Range", "0-1023")],
        &data[..1024],
    );
    assert_eq!(st, 202);
    for bad in ["0-1023", "1500-2047"] {
        let start: usize = bad.split('-').next().unwrap().parse().unwrap();
        let (st, head, body) = http(
            "PUT",
            a,
            &format!("{loc}?digest={digest}"),
            &[("Content-Range", bad)],
            &data[start..],
        );
        assert_eq!(st, 416, "{bad}: {head}{body}");
        assert_eq!(header(&head, "Range"), Some("0-1023"), "{bad}");
        assert_eq!(header(&head, "Location"), Some(loc.as_str()), "{bad}");
    }
    // ...and the upload is as it was: its status, then a PUT from the
    // right offset completes it.
    let (st, head, _) = http("GET", a, &loc, &[], b"");
    assert_eq!((st, header(&head, "Range")), (204, Some("0-1023")));
    let (st, head, body) = http(
        "PUT",
        a,
        &format!("{loc}?digest={digest}"),
        &[("Content-Range", "1024-2047")],
        &data[1024..],
    );
    assert_eq!(st, 201, "{head}{body}");
    assert_eq!(
        status("HEAD", a, &format!("/v2/spec/ranges/blobs/{digest}")),
        200
    );
}

/// The registry's root is private to root, and a looser one left from
/// before is tightened when the server starts.
#[test]
fn the_registry_root_is_made_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("data");
    std::fs::create_dir(&root).unwrap();
    std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755)).unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let mut child = Command::new(BERTH)
        .args(["registry", "serve", "--addr", &addr, "--root"])
        .arg(&root)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for(&addr);
    let mode = std::fs::metadata(&root).unwrap().permissions().mode() & 0o7777;
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(mode, 0o700);
}

/// A manifest pushed by digest with `?tag=` parameters gets those tags
/// and says so in OCI-Tag; one invalid tag sets none of them.
#[test]
fn tags_pushed_with_a_manifest_by_digest() {
    let reg = Registry::berth(None);
    let a = &reg.addr;
    let config = upload(a, "spec/tagparam", b"{}");
    let manifest = serde_json::json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config, "size": 2},
        "layers": [],
    });
    let bytes = serde_json::to_vec(&manifest).unwrap();
    let d = sha256(&bytes);
    let media = [("Content-Type", "application/vnd.oci.image.manifest.v1+json")];
    let (st, _, body) = http(
        "PUT",
        a,
        &format!("/v2/spec/tagparam/manifests/{d}?tag=good&tag=.bad"),
        &media,
        &bytes,
    );
    assert!(st == 400 && body.contains("TAG_INVALID"), "{st} {body}");
    assert_eq!(status("GET", a, "/v2/spec/tagparam/manifests/good"), 404);
    let (st, head, _) = http(
        "PUT",
        a,
        &format!("/v2/spec/tagparam/manifests/{d}?tag=1.2.3&tag=latest"),
        &media,
        &bytes,
    );
    assert_eq!(st, 201);
    assert_eq!(header(&head, "OCI-Tag"), Some("1.2.3, latest"));
    let (_, _, body) = http("GET", a, "/v2/spec/tagparam/tags/list", &[], b"");
    assert_eq!(
        body,
        "{\"name\":\"spec/tagparam\",\"tags\":[\"1.2.3\",\"latest\"]}"
    );
    let (st, head, _) = http("HEAD", a, "/v2/spec/tagparam/manifests/latest", &[], b"");
    assert_eq!(
        (st, header(&head, "Docker-Content-Digest")),
        (200, Some(d.as_str()))
    );
}
