//! The walk a new user takes from a container tutorial: a Python web app
//! from a typical Dockerfile (WORKDIR, COPY of a requirements file, RUN,
//! COPY ., EXPOSE, ENTRYPOINT + CMD), run with `-p`, fetched over HTTP,
//! exec'd into with a terminal, its logs read. The Python base image is
//! Debian minbase + python3 (scripts/python-rootfs.sh), never pulled.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::pty::OnPty;
use common::{free_port, python_rootfs, wait_for, TestStore};

const DOCKERFILE: &str = r#"FROM python-base
WORKDIR /app
COPY requirements.txt /app
RUN python3 -c "import sys; print('python', sys.version_info[0])" && test -f /app/requirements.txt
COPY . .
# As `pip install` does: files written and compiled in one step.
RUN mkdir -p /srv/lib && cp greeting.py /srv/lib/ && python3 -m compileall -q /srv/lib
EXPOSE 8000
ENTRYPOINT ["python3"]
CMD ["app.py"]
"#;

const APP: &str = r#"import http.server
import sys
sys.path.insert(0, "/srv/lib")
from greeting import hello

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = hello().encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

print("serving on 8000", flush=True)
http.server.HTTPServer(("", 8000), Handler).serve_forever()
"#;

const GREETING: &str = "def hello():\n    return 'Hello from a Python app in Berth\\n'\n";

fn http_get(port: u16) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

#[test]
fn python_web_app_from_a_typical_dockerfile() {
    let s = TestStore::new();
    let tar = python_rootfs();
    s.ok(&[
        "import",
        "--change",
        "CMD [\"python3\"]",
        tar.to_str().unwrap(),
        "python-base",
    ]);
    let ctx = s.dir.path().join("webapp");
    std::fs::create_dir_all(&ctx).unwrap();
    for (name, text) in [
        ("Dockerfile", DOCKERFILE),
        (
            "requirements.txt",
            "# nothing to install: the standard library serves\n",
        ),
        ("app.py", APP),
        ("greeting.py", GREETING),
    ] {
        std::fs::write(ctx.join(name), text).unwrap();
    }
    let out = s.ok(&["build", "-t", "webapp", ctx.to_str().unwrap()]);
    assert!(
        out.contains("Step 3/9 : COPY requirements.txt /app"),
        "{out}"
    );
    assert!(out.contains("python 3"), "{out}");
    assert!(out.contains("Successfully tagged webapp:latest"), "{out}");

    let port = free_port();
    let publish = format!("127.0.0.1:{port}:8000");
    s.ok(&["run", "-d", "--name", "web", "-p", &publish, "webapp"]);
    let mut answer = String::new();
    wait_for("the app to answer", || {
        answer = http_get(port).unwrap_or_default();
        answer.starts_with("HTTP/1.0 200")
    });
    assert!(
        answer.ends_with("Hello from a Python app in Berth\n"),
        "{answer}"
    );

    // The request is in its logs (http.server logs to stderr).
    wait_for("the request in the logs", || {
        s.ok(&["logs", "web"]).contains("serving on 8000")
            && String::from_utf8_lossy(&s.run(&["logs", "web"]).stderr)
                .contains("\"GET / HTTP/1.0\" 200")
    });

    // Bytecode compiled in the build is valid at run time: importing the
    // module wrote nothing to the container's layer.
    let diff = s.ok(&["diff", "web"]);
    assert!(!diff.contains("__pycache__"), "{diff}");
    assert!(!diff.contains(".pyc"), "{diff}");

    // exec -it, typed into a terminal.
    let mut p = OnPty::spawn(s.cmd(&["exec", "-it", "web", "sh"]));
    p.expect("# ");
    p.send(b"pwd; python3 -c 'print(6*7)'\r");
    p.expect("/app");
    p.expect("42");
    p.send(b"exit\r");
    assert_eq!(p.wait().code(), Some(0), "{}", p.text());
}
