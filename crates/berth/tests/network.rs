//! The default bridge network with real veths and nftables on this machine:
//! traffic only between the host and namespaces the tests create.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::TestStore;

fn store() -> TestStore {
    let s = TestStore::new();
    s.import_busybox("busybox");
    s
}

/// The page busybox httpd serves, fetched over plain HTTP/1.0.
fn http_get(addr: &str) -> Option<String> {
    let mut s = TcpStream::connect_timeout(&addr.parse().ok()?, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(b"GET / HTTP/1.0\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    out.split_once("\r\n\r\n").map(|(_, body)| body.to_string())
}

fn fetch(addr: &str) -> String {
    let end = Instant::now() + Duration::from_secs(20);
    while Instant::now() < end {
        if let Some(b) = http_get(addr) {
            return b;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("nothing answered at {addr}");
}

const HTTPD: &str =
    "mkdir -p /www && echo hello-page > /www/index.html && exec httpd -f -p 80 -h /www";

/// veths and nft chains that belong to these containers.
fn leftovers(ids: &[String]) -> Vec<String> {
    let links = std::process::Command::new("ip")
        .args(["-o", "link"])
        .output()
        .unwrap();
    let links = String::from_utf8_lossy(&links.stdout).into_owned();
    let rules = std::process::Command::new("nft")
        .args(["list", "ruleset"])
        .output()
        .unwrap();
    let rules = String::from_utf8_lossy(&rules.stdout).into_owned();
    let mut out = Vec::new();
    for id in ids {
        if links.contains(&format!("vb{}", &id[..12])) {
            out.push(format!("veth of {id}"));
        }
        if rules.contains(&id[..12]) {
            out.push(format!("nft rules of {id}"));
        }
    }
    out
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn published_port_serves_the_host_and_the_ip_answers_directly() {
    let s = store();
    let port = free_port();
    let spec = format!("127.0.0.1:{port}:80");
    let id = s.detached(&["-p", &spec, "busybox", "sh", "-c", HTTPD]);
    assert_eq!(fetch(&format!("127.0.0.1:{port}")), "hello-page\n");
    let ip = s
        .ok(&["inspect", "-f", "{{.NetworkSettings.IPAddress}}", &id])
        .trim()
        .to_string();
    assert_eq!(fetch(&format!("{ip}:80")), "hello-page\n");
    let gw = s.ok(&["inspect", "-f", "{{.NetworkSettings.Gateway}}", &id]);
    assert!(!gw.trim().is_empty());
    let ps = s.ok(&["ps", "--format", "{{.Ports}}"]);
    assert_eq!(ps.trim(), format!("127.0.0.1:{port}->80/tcp"));
    assert_eq!(
        s.ok(&["port", &id, "80"]).trim(),
        format!("127.0.0.1:{port}")
    );
    // The container knows its own address.
    let hosts = s.ok(&["exec", &id, "cat", "/etc/hosts"]);
    assert!(hosts.contains(&format!("{ip}\t{}", &id[..12])), "{hosts}");

    // Taken port: Docker's words, and nothing of the second container stays up.
    let out = s.run(&["run", "-d", "-p", &spec, "busybox", "true"]);
    assert_eq!(out.status.code(), Some(125));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("port is already allocated"), "{err}");
    let all = s.ok(&["ps", "-aq", "--no-trunc"]);
    let other: Vec<String> = all
        .lines()
        .filter(|l| *l != id)
        .map(str::to_string)
        .collect();
    assert_eq!(other.len(), 1);
    assert!(leftovers(&other).is_empty(), "{:?}", leftovers(&other));
    assert_eq!(
        fetch(&format!("127.0.0.1:{port}")),
        "hello-page\n",
        "the first still serves"
    );

    s.ok(&["rm", "-f", &id]);
    assert!(leftovers(&[id]).is_empty());
}

#[test]
fn publish_all_picks_ports_that_port_reports() {
    let s = store();
    s.ok(&["run", "--name", "exposer", "busybox", "true"]);
    s.ok(&["commit", "-c", "EXPOSE 80 8080/tcp", "exposer", "web"]);
    let id = s.detached(&["-P", "web", "sh", "-c", HTTPD]);
    let ports = s.ok(&["port", &id]);
    let lines: Vec<&str> = ports.lines().collect();
    assert_eq!(lines.len(), 2, "{ports}");
    let http = lines
        .iter()
        .find_map(|l| l.strip_prefix("80/tcp -> 0.0.0.0:"))
        .unwrap_or_else(|| panic!("{ports}"));
    assert_eq!(fetch(&format!("127.0.0.1:{http}")), "hello-page\n");
}

#[test]
fn twenty_containers_leave_no_veths_rules_or_leases() {
    let s = store();
    let mut ids = Vec::new();
    for _ in 0..20 {
        ids.push(s.detached(&["-p", "80", "busybox", "sleep", "60"]));
    }
    let ips: std::collections::HashSet<String> = ids
        .iter()
        .map(|id| s.ok(&["inspect", "-f", "{{.NetworkSettings.IPAddress}}", id]))
        .collect();
    assert_eq!(ips.len(), 20, "every container has its own address");
    // One more, run and removed at once.
    s.ok(&["run", "--rm", "-p", "80", "busybox", "true"]);
    let mut args = vec!["rm", "-f"];
    args.extend(ids.iter().map(String::as_str));
    s.ok(&args);
    assert!(leftovers(&ids).is_empty(), "{:?}", leftovers(&ids));
    let mine = s.dir.path().to_str().unwrap().to_string();
    for net in std::fs::read_dir("/run/berth-net/leases")
        .unwrap()
        .flatten()
    {
        for lease in std::fs::read_dir(net.path()).unwrap().flatten() {
            let holder = std::fs::read_to_string(lease.path()).unwrap_or_default();
            assert!(
                !holder.starts_with(&mine),
                "{} still held by {holder}",
                lease.path().display()
            );
        }
    }
    assert_eq!(ips.len(), 20);
}

#[test]
fn a_killed_monitor_leaves_nothing_behind() {
    let s = store();
    let id = s.detached(&["-p", "80", "busybox", "sleep", "60"]);
    let pid = s
        .ok(&["inspect", "-f", "{{.State.Pid}}", &id])
        .trim()
        .to_string();
    // The monitor is the container process's parent.
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let ppid: i32 = stat
        .rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    // SAFETY: killing the monitor this test started.
    unsafe { libc::kill(ppid, libc::SIGKILL) };
    std::thread::sleep(Duration::from_millis(200));
    let st = s.ok(&["ps", "-a", "--format", "{{.Status}}"]);
    assert!(st.starts_with("Exited (255)"), "{st}");
    assert!(leftovers(&[id]).is_empty());
}
