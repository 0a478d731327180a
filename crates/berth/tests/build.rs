//! `berth build` on the busybox fixture: real RUN containers, COPY from a
//! context, cache, multistage, reproducible layers, and bad input.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::{mounts_under, TestStore};

fn store() -> TestStore {
    let s = TestStore::new();
    s.import_busybox("busybox");
    s
}

/// A context dir with these files (path, content).
fn context(s: &TestStore, name: &str, files: &[(&str, &str)]) -> PathBuf {
    let dir = s.dir.path().join(name);
    for (p, c) in files {
        let p = dir.join(p);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, c).unwrap();
    }
    dir
}

fn build(s: &TestStore, ctx: &Path, extra: &[&str]) -> String {
    let mut args = vec!["build"];
    args.extend_from_slice(extra);
    args.push(ctx.to_str().unwrap());
    s.ok(&args)
}

fn layers(s: &TestStore, image: &str) -> String {
    s.ok(&["inspect", "-f", "{{json .RootFS.Layers}}", image])
        .trim()
        .to_string()
}

fn touch_old(p: &Path) {
    let ok = std::process::Command::new("touch")
        .args(["-d", "2001-01-01", p.to_str().unwrap()])
        .status()
        .unwrap()
        .success();
    assert!(ok);
}

const EVERY_INSTRUCTION: &str = r#"ARG GREETING=hello
FROM busybox AS base
ARG GREETING
ARG WHO=world
ENV APP_HOME=/app PATH_EXTRA="with space"
LABEL org.example.name="demo app" version=1
WORKDIR $APP_HOME
COPY --chown=1:2 --chmod=640 conf/app.conf ./conf/
COPY *.txt /texts/
ADD bundle.tar /bundle/
RUN echo "$GREETING $WHO" > greeting && mkdir -p /var/empty
RUN <<EOT
echo from heredoc > /heredoc
EOT
COPY <<EOF /generated
home is ${APP_HOME}
EOF
USER 1:2
EXPOSE 8080/tcp 53/udp
VOLUME /data
STOPSIGNAL SIGINT
HEALTHCHECK --interval=5s --retries=2 CMD ["true"]
SHELL ["/bin/sh", "-ec"]
ONBUILD RUN echo child
ENTRYPOINT ["cat"]
CMD ["greeting"]
"#;

#[test]
fn every_instruction_lands_in_the_image() {
    let s = store();
    let ctx = context(
        &s,
        "ctx",
        &[
            ("Dockerfile", EVERY_INSTRUCTION),
            ("conf/app.conf", "key=value\n"),
            ("a.txt", "a\n"),
            ("b.txt", "b\n"),
        ],
    );
    // A tar for ADD to unpack.
    {
        let f = fs::File::create(ctx.join("bundle.tar")).unwrap();
        let mut b = tar::Builder::new(f);
        let mut h = tar::Header::new_gnu();
        h.set_size(3);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, "inside/file", &b"tar"[..]).unwrap();
        b.finish().unwrap();
    }
    let out = build(&s, &ctx, &["-t", "demo:1", "--build-arg", "WHO=berth"]);
    assert!(out.contains("Step 1/21 : FROM busybox AS base"), "{out}");
    assert!(out.contains("Step 2/21 : ARG GREETING"), "{out}");
    assert!(out.contains("Successfully tagged demo:1"), "{out}");

    assert_eq!(s.ok(&["run", "--rm", "demo:1"]), "hello berth\n");
    let check = s.ok(&[
        "run",
        "--rm",
        "-u",
        "0",
        "--entrypoint",
        "sh",
        "demo:1",
        "-c",
        "pwd; stat -c '%u:%g %a' conf/app.conf; cat /texts/a.txt /texts/b.txt /bundle/inside/file; echo; cat /heredoc /generated; echo $APP_HOME $PATH_EXTRA; echo ${GREETING:-unset}",
    ]);
    assert_eq!(
        check,
        "/app\n1:2 640\na\nb\ntar\nfrom heredoc\nhome is /app\n/app with space\nunset\n"
    );
    let cfg = |f: &str| s.ok(&["inspect", "-f", f, "demo:1"]).trim().to_string();
    assert_eq!(cfg("{{.Config.User}}"), "1:2");
    assert_eq!(
        cfg("{{json .Config.ExposedPorts}}"),
        r#"{"53/udp":{},"8080/tcp":{}}"#
    );
    assert_eq!(cfg("{{json .Config.Volumes}}"), r#"{"/data":{}}"#);
    assert_eq!(cfg("{{.Config.StopSignal}}"), "SIGINT");
    assert_eq!(
        cfg("{{json .Config.Healthcheck}}"),
        r#"{"Test":["CMD","true"],"Interval":5000000000,"Retries":2}"#
    );
    assert_eq!(cfg("{{json .Config.Shell}}"), r#"["/bin/sh","-ec"]"#);
    assert_eq!(cfg("{{json .Config.OnBuild}}"), r#"["RUN echo child"]"#);
    assert_eq!(
        cfg(r#"{{index .Config.Labels "org.example.name"}}"#),
        "demo app"
    );
    assert_eq!(cfg("{{json .Config.Entrypoint}}"), r#"["cat"]"#);

    // ONBUILD fires in a child build and is not inherited.
    let child = context(
        &s,
        "child",
        &[("Dockerfile", "FROM demo:1\nRUN [\"true\"]\n")],
    );
    let out = build(&s, &child, &["-t", "child"]);
    assert!(out.contains("child\n"), "{out}");
    assert_eq!(
        s.ok(&["inspect", "-f", "{{json .Config.OnBuild}}", "child"])
            .trim(),
        "null"
    );
    assert!(mounts_under(s.dir.path()).is_empty());
    assert!(
        s.ok(&["ps", "-aq"]).is_empty(),
        "RUN containers are removed"
    );
}

#[test]
fn entrypoint_and_cmd_follow_docker_rules() {
    let s = store();
    let ctx = context(
        &s,
        "ctx",
        &[(
            "Dockerfile",
            "FROM busybox\nENTRYPOINT [\"echo\"]\nCMD [\"--help\"]\n",
        )],
    );
    build(&s, &ctx, &["-t", "ep"]);
    assert_eq!(s.ok(&["run", "--rm", "ep"]), "--help\n");
    assert_eq!(s.ok(&["run", "--rm", "ep", "hi"]), "hi\n");
    assert_eq!(s.ok(&["run", "--rm", "--entrypoint", "echo", "ep"]), "\n");
    // ENTRYPOINT in a child resets the CMD it inherited.
    let ctx2 = context(
        &s,
        "ctx2",
        &[("Dockerfile", "FROM ep\nENTRYPOINT [\"echo\", \"x\"]\n")],
    );
    build(&s, &ctx2, &["-t", "ep2"]);
    assert_eq!(s.ok(&["run", "--rm", "ep2"]), "x\n");
    // Shell form runs under /bin/sh -c.
    let ctx3 = context(
        &s,
        "ctx3",
        &[("Dockerfile", "FROM busybox\nENV N=5\nCMD echo n=$N\n")],
    );
    build(&s, &ctx3, &["-t", "shellform"]);
    assert_eq!(s.ok(&["run", "--rm", "shellform"]), "n=5\n");

    // Every step's image is named in history, and rmi takes the untagged
    // step images with it, stopping at a tagged parent.
    let ids = s.ok(&["history", "--format", "{{.ID}}", "ep"]);
    assert_eq!(ids.lines().count(), 3, "{ids}");
    assert!(!ids.contains("<missing>"), "{ids}");
    s.ok(&["rmi", "ep2"]);
    let out = s.ok(&["rmi", "ep"]);
    assert_eq!(out.matches("Deleted:").count(), 2, "{out}");
    assert_eq!(
        s.ok(&["images", "-aq"]).lines().count(),
        3,
        "busybox and shellform's two"
    );
}

#[test]
fn multistage_keeps_only_the_artifact_and_target_stops_early() {
    let s = store();
    let ctx = context(
        &s,
        "ctx",
        &[(
            "Dockerfile",
            "FROM busybox AS tools\n\
             RUN mkdir /build && echo 'echo built-artifact' > /build/app.sh && echo tool > /compiler\n\
             FROM busybox AS unused\n\
             RUN exit 9\n\
             FROM scratch\n\
             COPY --from=tools /bin/busybox /bin/busybox\n\
             COPY --from=tools /build/app.sh /app.sh\n\
             CMD [\"/bin/busybox\", \"sh\", \"/app.sh\"]\n",
        )],
    );
    let out = build(&s, &ctx, &["-t", "multi"]);
    assert!(!out.contains("exit 9"), "unused stage skipped: {out}");
    assert_eq!(s.ok(&["run", "--rm", "multi"]), "built-artifact\n");
    let out = s.run(&["run", "--rm", "multi", "/bin/busybox", "cat", "/compiler"]);
    assert_ne!(out.status.code(), Some(0), "build tools stay behind");
    assert_eq!(layers(&s, "multi").matches("sha256:").count(), 2);

    let out = build(&s, &ctx, &["--target", "tools", "-t", "tools-only"]);
    assert!(!out.contains("/app.sh /app.sh"), "{out}");
    assert_eq!(
        s.ok(&["run", "--rm", "tools-only", "cat", "/compiler"]),
        "tool\n"
    );
    let err = s.fails(&["build", "--target", "nope", ctx.to_str().unwrap()]);
    assert!(
        err.contains("target stage \"nope\" could not be found"),
        "{err}"
    );
}

#[test]
fn cache_hits_and_misses_exactly_from_the_changed_copy() {
    let s = store();
    let ctx = context(
        &s,
        "ctx",
        &[
            (
                "Dockerfile",
                "FROM busybox\nRUN echo one > /one\nCOPY a /a\nRUN cat /a > /a.copy\nCOPY b /b\nRUN cat /b\n",
            ),
            ("a", "a1"),
            ("b", "b1"),
        ],
    );
    let first = build(&s, &ctx, &["-t", "c:1"]);
    assert_eq!(first.matches("Using cache").count(), 0, "{first}");
    let again = build(&s, &ctx, &["-t", "c:1"]);
    assert_eq!(again.matches("Using cache").count(), 5, "{again}");
    // A new mtime alone is not a change.
    touch_old(&ctx.join("a"));
    let again = build(&s, &ctx, &["-t", "c:1"]);
    assert_eq!(again.matches("Using cache").count(), 5, "{again}");

    fs::write(ctx.join("b"), "b2").unwrap();
    let changed = build(&s, &ctx, &["-t", "c:2"]);
    assert_eq!(
        changed.matches("Using cache").count(),
        3,
        "the steps before COPY b hit, COPY b and after miss: {changed}"
    );
    let l1 = layers(&s, "c:1");
    let l2 = layers(&s, "c:2");
    assert_eq!(
        l1.split(',').take(4).collect::<Vec<_>>(),
        l2.split(',').take(4).collect::<Vec<_>>()
    );
    assert_ne!(l1, l2);

    let nocache = build(&s, &ctx, &["--no-cache", "-t", "c:3"]);
    assert_eq!(nocache.matches("Using cache").count(), 0);

    let df = s.ok(&["system", "df", "--format", "{{.Type}} {{.TotalCount}}"]);
    let cache_rows = df
        .lines()
        .find_map(|l| l.strip_prefix("Build Cache "))
        .unwrap_or_else(|| panic!("{df}"));
    assert!(cache_rows.parse::<u32>().unwrap() >= 10, "{df}");
    let pruned = s.ok(&["builder", "prune", "-f"]);
    assert!(pruned.contains("Deleted build cache entries"), "{pruned}");
    let after = build(&s, &ctx, &["-t", "c:4"]);
    assert_eq!(after.matches("Using cache").count(), 0, "{after}");
    assert_eq!(s.ok(&["run", "--rm", "c:4", "cat", "/a.copy"]), "a1");
}

#[test]
fn two_no_cache_builds_give_identical_layers() {
    let s = store();
    let ctx = context(
        &s,
        "ctx",
        &[
            (
                "Dockerfile",
                "FROM busybox\nCOPY src /src\nRUN mkdir -p /out && cp -r /src /out/ && touch /out/new\n",
            ),
            ("src/one", "1"),
            ("src/deep/two", "2"),
        ],
    );
    build(&s, &ctx, &["--no-cache", "-t", "r:1"]);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    touch_old(&ctx.join("src/one"));
    build(&s, &ctx, &["--no-cache", "-t", "r:2"]);
    assert_eq!(layers(&s, "r:1"), layers(&s, "r:2"));
    let id = |i: &str| s.ok(&["inspect", "-f", "{{.Id}}", i]);
    assert_ne!(
        id("r:1"),
        id("r:2"),
        "created times differ without SOURCE_DATE_EPOCH"
    );
    let epoch = ["--no-cache", "--build-arg", "SOURCE_DATE_EPOCH=1700000000"];
    build(&s, &ctx, &[&epoch[..], &["-t", "r:3"]].concat());
    build(&s, &ctx, &[&epoch[..], &["-t", "r:4"]].concat());
    assert_eq!(
        id("r:3"),
        id("r:4"),
        "with SOURCE_DATE_EPOCH the id repeats"
    );
}

#[test]
fn failing_run_names_the_line_and_the_debug_image_works() {
    let s = store();
    let ctx = context(
        &s,
        "ctx",
        &[(
            "Dockerfile",
            "FROM busybox\nRUN echo good > /good\nRUN echo about to fail; exit 3\nRUN echo never\n",
        )],
    );
    let out = s.run(&["build", "-t", "broken", ctx.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(stdout.contains("about to fail"), "{stdout}");
    assert!(!stdout.contains("never\n"), "{stdout}");
    assert!(err.contains("Dockerfile:3"), "{err}");
    assert!(err.contains("returned a non-zero code: 3"), "{err}");
    let debug = err
        .lines()
        .find_map(|l| l.strip_prefix("to debug: berth run -it --rm "))
        .unwrap_or_else(|| panic!("no debug line: {err}"));
    let id = debug.trim_end_matches(" sh").trim();
    assert_eq!(s.ok(&["run", "--rm", id, "cat", "/good"]), "good\n");
    assert!(s.fails(&["inspect", "broken"]).contains("No such"));
    assert!(s.ok(&["ps", "-aq"]).is_empty());
    assert!(mounts_under(s.dir.path()).is_empty());
}

#[test]
fn dockerignore_build_args_heredocs_and_stdin() {
    let s = store();
    let ctx = context(
        &s,
        "ctx",
        &[
            (
                "Dockerfile",
                "FROM busybox\nARG MODE=dev\nCOPY . /ctx/\nRUN echo mode=$MODE > /mode && cat > /script <<'END'\nline $MODE\nEND\n",
            ),
            (".dockerignore", "# comment\n*.log\nsecret/\n!keep.log\n"),
            ("app.py", "print()\n"),
            ("debug.log", "x"),
            ("keep.log", "k"),
            ("secret/key", "k"),
        ],
    );
    build(&s, &ctx, &["-t", "ign", "--build-arg", "MODE=prod"]);
    let ls = s.ok(&[
        "run",
        "--rm",
        "ign",
        "sh",
        "-c",
        "ls -A /ctx; cat /mode /script",
    ]);
    assert_eq!(
        ls,
        ".dockerignore\nDockerfile\napp.py\nkeep.log\nmode=prod\nline $MODE\n"
    );

    // A bare Dockerfile on stdin.
    let out = s
        .cmd(&["build", "-t", "fromstdin", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin
                .take()
                .unwrap()
                .write_all(b"FROM busybox\nCMD [\"echo\", \"stdin\"]\n")?;
            c.wait_with_output()
        })
        .unwrap();
    assert!(out.status.success());
    assert_eq!(s.ok(&["run", "--rm", "fromstdin"]), "stdin\n");
    let iid = s.dir.path().join("iid");
    let q = s.ok(&[
        "build",
        "-q",
        "--iidfile",
        iid.to_str().unwrap(),
        ctx.to_str().unwrap(),
    ]);
    assert_eq!(q.trim(), fs::read_to_string(&iid).unwrap());
}

#[test]
fn bad_input_is_named_with_its_line() {
    let s = store();
    let cases: &[(&str, &str)] = &[
        (
            "FROM busybox\nFROBNICATE x\n",
            "line 2: unknown instruction",
        ),
        (
            "FROM busybox\nRUN <<EOT\necho\n",
            "line 2: unterminated heredoc",
        ),
        (
            "FROM busybox\nCOPY --from=nowhere /x /x\n",
            "Dockerfile:2: --from=nowhere",
        ),
        (
            "FROM busybox\nCOPY ../x /x\n",
            "Dockerfile:2: COPY failed: forbidden path outside the build context",
        ),
        (
            "FROM busybox\nCOPY missing /x\n",
            "Dockerfile:2: COPY failed: file not found in build context",
        ),
        // Missing images are pulled: from a registry on this machine that
        // is not there (never from the internet in a test).
        (
            "FROM 127.0.0.1:9/nosuchimage\n",
            "Dockerfile:1: FROM 127.0.0.1:9/nosuchimage",
        ),
    ];
    for (i, (df, want)) in cases.iter().enumerate() {
        let ctx = context(&s, &format!("bad{i}"), &[("Dockerfile", df)]);
        let err = s.fails(&["build", ctx.to_str().unwrap()]);
        assert!(err.contains(want), "{df:?}: {err}");
    }
    assert!(mounts_under(s.dir.path()).is_empty());
}

#[test]
fn zstd_layers_build_save_load_and_run() {
    let s = store();
    let ctx = context(
        &s,
        "ctx",
        &[(
            "Dockerfile",
            "FROM busybox\nRUN echo packed > /packed\nCMD [\"cat\", \"/packed\"]\n",
        )],
    );
    build(&s, &ctx, &["--compression", "zstd", "-t", "z"]);
    assert_eq!(s.ok(&["run", "--rm", "z"]), "packed\n");
    let archive = s.dir.path().join("z.tar");
    s.ok(&["save", "-o", archive.to_str().unwrap(), "z"]);
    let bytes = fs::read(&archive).unwrap();
    let needle = b"application/vnd.oci.image.layer.v1.tar+zstd";
    assert!(bytes.windows(needle.len()).any(|w| w == needle));

    let other = TestStore::new();
    other.ok(&["load", "-i", archive.to_str().unwrap()]);
    assert_eq!(other.ok(&["run", "--rm", "z"]), "packed\n");
    let err = s.fails(&["build", "--compression", "lz4", ctx.to_str().unwrap()]);
    assert!(err.contains("unknown compression \"lz4\""), "{err}");
}

#[test]
fn independent_stages_build_at_the_same_time() {
    let s = store();
    // Each stage waits (up to 20 s) for the other to arrive at a shared
    // cache mount: built one after the other, the first would give up.
    let meet = |me: &str, other: &str| {
        format!(
            "FROM busybox AS {me}\n\
             RUN --mount=type=cache,id=rendezvous,target=/rv touch /rv/{me} && \
             i=0; while [ ! -e /rv/{other} ]; do i=$((i+1)); [ $i -gt 200 ] && exit 7; sleep 0.1; done; \
             echo {me} > /{me}.done\n"
        )
    };
    let df = format!(
        "{}{}FROM busybox\nCOPY --from=left /left.done /\nCOPY --from=right /right.done /\n",
        meet("left", "right"),
        meet("right", "left")
    );
    let ctx = context(&s, "ctx", &[("Dockerfile", &df)]);
    let out = build(&s, &ctx, &["-t", "both"]);
    let left = out.find("Step 1/7 : FROM busybox AS left").expect(&out);
    let right = out.find("Step 3/7 : FROM busybox AS right").expect(&out);
    assert!(left < right, "output stays in Dockerfile order: {out}");
    assert_eq!(
        s.ok(&["run", "--rm", "both", "cat", "/left.done", "/right.done"]),
        "left\nright\n"
    );
    assert!(mounts_under(s.dir.path()).is_empty());
}

/// A one-file HTTP server on loopback: `/file.tgz` and a redirect to it.
fn serve(body: Vec<u8>) -> u16 {
    use std::io::{BufRead, BufReader, Write};
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(mut c) = conn else { continue };
            let mut first = String::new();
            let mut r = BufReader::new(c.try_clone().unwrap());
            r.read_line(&mut first).unwrap();
            loop {
                let mut h = String::new();
                if r.read_line(&mut h).unwrap() == 0 || h.trim().is_empty() {
                    break;
                }
            }
            if first.starts_with("GET /old ") {
                let _ = c.write_all(
                    b"HTTP/1.1 302 Found\r\nLocation: /file.tgz\r\nContent-Length: 0\r\n\r\n",
                );
            } else if first.starts_with("GET /file.tgz ") {
                let _ = write!(
                    c,
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n",
                    body.len()
                );
                let _ = c.write_all(&body);
            } else {
                let _ = c.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
            }
        }
    });
    port
}

#[test]
fn add_from_a_url_checks_the_checksum_and_never_unpacks() {
    let s = store();
    let body = {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        std::io::Write::write_all(&mut gz, b"not unpacked").unwrap();
        gz.finish().unwrap()
    };
    let sum = common::sha256_hex(&body);
    let port = serve(body);
    let df = format!(
        "FROM busybox\nADD --checksum=sha256:{sum} http://127.0.0.1:{port}/old /dl/\nADD http://127.0.0.1:{port}/file.tgz /named.tgz\n"
    );
    let ctx = context(&s, "ctx", &[("Dockerfile", &df)]);
    build(&s, &ctx, &["-t", "dl"]);
    let out = s.ok(&["run", "--rm", "dl", "sh", "-c", "ls /dl; zcat /named.tgz"]);
    assert_eq!(out, "old\nnot unpacked");

    let wrong = format!(
        "FROM busybox\nADD --checksum=sha256:{} http://127.0.0.1:{port}/file.tgz /x\n",
        "0".repeat(64)
    );
    let ctx = context(&s, "wrong", &[("Dockerfile", &wrong)]);
    let err = s.fails(&["build", ctx.to_str().unwrap()]);
    assert!(
        err.contains("Dockerfile:2") && err.contains("checksum mismatch"),
        "{err}"
    );
    let missing = format!("FROM busybox\nADD http://127.0.0.1:{port}/nope /x\n");
    let ctx = context(&s, "missing", &[("Dockerfile", &missing)]);
    let err = s.fails(&["build", ctx.to_str().unwrap()]);
    assert!(err.contains("404"), "{err}");
}

#[test]
fn run_mounts_bind_cache_tmpfs_and_secret() {
    let s = store();
    let secret = s.dir.path().join("token");
    fs::write(&secret, "s3cret").unwrap();
    let df = "FROM busybox AS src\nRUN echo from-stage > /made\n\
              FROM busybox\n\
              RUN --mount=type=bind,from=src,source=/made,target=/m \
                  --mount=type=bind,source=input.txt,target=/in \
                  --mount=type=tmpfs,target=/scratch \
                  --mount=type=secret,id=token \
                  --mount=type=cache,target=/cache \
                  cat /m /in /run/secrets/token > /result && touch /scratch/x /cache/y\n";
    let ctx = context(
        &s,
        "ctx",
        &[("Dockerfile", df), ("input.txt", "from-context\n")],
    );
    build(
        &s,
        &ctx,
        &[
            "--secret",
            &format!("id=token,src={}", secret.display()),
            "-t",
            "mounts",
        ],
    );
    assert_eq!(
        s.ok(&["run", "--rm", "mounts", "cat", "/result"]),
        "from-stage\nfrom-context\ns3cret"
    );
    let leftovers = s.ok(&[
        "run",
        "--rm",
        "mounts",
        "sh",
        "-c",
        "ls -A /m /in /scratch /cache /run/secrets 2>&1 | grep -c 'No such'",
    ]);
    assert_eq!(leftovers.trim(), "5", "mount targets stay out of the layer");
    let err = s.fails(&["build", "--no-cache", ctx.to_str().unwrap()]);
    assert!(err.contains("secret \"token\" was not given"), "{err}");
    assert!(mounts_under(s.dir.path()).is_empty());
}

/// COPY destinations as Docker documents them, one Dockerfile per case:
/// (Dockerfile lines after FROM, the check run in the image, what it prints).
#[test]
fn copy_destinations_follow_dockers_rules() {
    let s = store();
    let files = [("req.txt", "flask\n"), ("a.txt", "A\n"), ("b.txt", "B\n")];
    let cases: &[(&str, &str, &str)] = &[
        // The tutorial's Python Dockerfile: WORKDIR makes /app, COPY goes in.
        (
            "WORKDIR /app\nCOPY req.txt /app",
            "cat /app/req.txt",
            "flask",
        ),
        // A destination that exists as a directory receives the file.
        ("COPY req.txt /etc", "cat /etc/req.txt", "flask"),
        // A trailing slash makes a directory.
        ("COPY req.txt /new/", "cat /new/req.txt", "flask"),
        // No slash and nothing there: the file takes the name.
        ("COPY req.txt /renamed", "cat /renamed", "flask"),
        // Relative destinations resolve against WORKDIR.
        (
            "WORKDIR /srv\nCOPY req.txt sub/",
            "cat /srv/sub/req.txt",
            "flask",
        ),
        ("WORKDIR /srv\nCOPY req.txt .", "cat /srv/req.txt", "flask"),
        // Several sources into a directory.
        (
            "COPY a.txt b.txt /both/",
            "cat /both/a.txt /both/b.txt",
            "A\nB",
        ),
        (
            "COPY *.txt /globbed/",
            "ls /globbed | tr '\\n' ' '",
            "a.txt b.txt req.txt",
        ),
    ];
    for (i, (lines, check, want)) in cases.iter().enumerate() {
        let ctx = context(
            &s,
            &format!("copy-{i}"),
            &[
                files[0],
                files[1],
                files[2],
                ("Dockerfile", &format!("FROM busybox\n{lines}\n")),
            ],
        );
        let tag = format!("copy-case-{i}");
        build(&s, &ctx, &["-q", "-t", &tag]);
        let got = s.ok(&["run", "--rm", "--network", "none", &tag, "sh", "-c", check]);
        assert_eq!(got.trim(), *want, "case {i}: {lines}");
    }
    // Several sources need a directory that exists or a trailing slash.
    let ctx = context(
        &s,
        "copy-many",
        &[
            files[1],
            files[2],
            ("Dockerfile", "FROM busybox\nCOPY a.txt b.txt /nodir\n"),
        ],
    );
    let err = s.fails(&["build", ctx.to_str().unwrap()]);
    assert!(
        err.contains("the destination must be a directory and end with a /"),
        "{err}"
    );
}

/// The legacy builder's lines, exactly, for a passing and a failing build
/// (tutorials show them and scripts grep for them).
#[test]
fn build_output_is_dockers_legacy_lines() {
    let s = store();
    let ctx = context(
        &s,
        "legacy",
        &[
            ("f.txt", "x"),
            (
                "Dockerfile",
                "FROM busybox\nENV A=1\nRUN echo hi\nCOPY f.txt /f\n",
            ),
        ],
    );
    let out = build(&s, &ctx, &["-t", "legacy"]);
    let lines: Vec<&str> = out.lines().collect();
    let id = |l: &str| {
        let h = l
            .strip_prefix(" ---> ")
            .unwrap_or_else(|| panic!("{l:?} in {out}"));
        assert!(
            h.len() == 12 && h.bytes().all(|b| b.is_ascii_hexdigit()),
            "{l}"
        );
    };
    assert_eq!(lines[0], "Step 1/4 : FROM busybox");
    id(lines[1]);
    assert_eq!(lines[2], "Step 2/4 : ENV A=1");
    id(lines[3]);
    assert_eq!(lines[4], "Step 3/4 : RUN echo hi");
    let running = lines[5].strip_prefix(" ---> Running in ").expect(&out);
    assert_eq!(running.len(), 12);
    assert_eq!(lines[6], "hi");
    assert_eq!(
        lines[7],
        format!("Removing intermediate container {running}")
    );
    id(lines[8]);
    assert_eq!(lines[9], "Step 4/4 : COPY f.txt /f");
    id(lines[10]);
    let built = lines[11].strip_prefix("Successfully built ").expect(&out);
    assert_eq!(built, &lines[10][6..]);
    assert_eq!(lines[12], "Successfully tagged legacy:latest");
    assert_eq!(lines.len(), 13, "{out}");
    // Cached: `Using cache` before each id.
    let again = build(&s, &ctx, &["-t", "legacy"]);
    assert!(
        again.contains("Step 3/4 : RUN echo hi\n ---> Using cache\n ---> "),
        "{again}"
    );

    let bad = context(
        &s,
        "legacy-bad",
        &[("Dockerfile", "FROM busybox\nRUN exit 3\n")],
    );
    let out = s.run(&["build", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    let first = err.lines().next().unwrap();
    assert_eq!(
        first,
        "The command '/bin/sh -c exit 3' returned a non-zero code: 3"
    );
    assert!(err.contains("to debug: berth run -it --rm "), "{err}");
}

/// RUN steps are told the layers' timestamp (SOURCE_DATE_EPOCH, 0 unless
/// given), so tools like py_compile write files that stay valid; it is not
/// kept in the image's config.
#[test]
fn run_steps_know_the_layers_timestamp() {
    let s = store();
    let ctx = context(
        &s,
        "epoch",
        &[(
            "Dockerfile",
            "FROM busybox\nRUN echo \"epoch=$SOURCE_DATE_EPOCH\" > /epoch\n",
        )],
    );
    build(&s, &ctx, &["-q", "-t", "epoch0"]);
    let got = s.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "epoch0",
        "cat",
        "/epoch",
    ]);
    assert_eq!(got.trim(), "epoch=0");
    let env = s.ok(&["inspect", "-f", "{{json .Config.Env}}", "epoch0"]);
    assert!(!env.contains("SOURCE_DATE_EPOCH"), "{env}");
    build(
        &s,
        &ctx,
        &[
            "-q",
            "--no-cache",
            "--build-arg",
            "SOURCE_DATE_EPOCH=1700000000",
            "-t",
            "epoch1",
        ],
    );
    let got = s.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "epoch1",
        "cat",
        "/epoch",
    ]);
    assert_eq!(got.trim(), "epoch=1700000000");
}
