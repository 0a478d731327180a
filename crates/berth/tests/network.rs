//! The default bridge network with real veths and nftables on this machine:
//! traffic only between the host and namespaces the tests create.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{free_port, TestStore};

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
    // A neighbour on the bridge reaches the published port through the
    // host's address too (hairpin NAT), and so does the container itself.
    let gw = s.ok(&["inspect", "-f", "{{.NetworkSettings.Gateway}}", &id]);
    let url = format!("http://{}:{http}/", gw.trim());
    let peer = s.ok(&["run", "--rm", "busybox", "wget", "-qO-", &url]);
    assert_eq!(peer, "hello-page\n");
    let own = s.ok(&["exec", &id, "wget", "-qO-", &url]);
    assert_eq!(own, "hello-page\n");
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

/// A container's address on its (first) network.
fn ip_of(s: &TestStore, id: &str) -> String {
    s.ok(&[
        "inspect",
        "-f",
        "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
        id,
    ])
    .trim()
    .to_string()
}

/// A running container's process and its monitor (the process's parent).
fn pids(s: &TestStore, id: &str) -> (i32, i32) {
    let pid: i32 = s
        .ok(&["inspect", "-f", "{{.State.Pid}}", id])
        .trim()
        .parse()
        .unwrap();
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let ppid = stat
        .rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    (pid, ppid)
}

#[test]
fn a_killed_monitor_leaves_nothing_behind() {
    let s = store();
    let id = s.detached(&["-p", "80", "busybox", "sleep", "60"]);
    let (_, monitor) = pids(&s, &id);
    // SAFETY: killing the monitor this test started.
    unsafe { libc::kill(monitor, libc::SIGKILL) };
    std::thread::sleep(Duration::from_millis(200));
    let st = s.ok(&["ps", "-a", "--format", "{{.Status}}"]);
    assert!(st.starts_with("Exited (255)"), "{st}");
    assert!(leftovers(&[id]).is_empty());
}

/// Removes a user network even when the test fails before it does.
struct Net<'a>(&'a TestStore, String);

impl Drop for Net<'_> {
    fn drop(&mut self) {
        let _ = self.0.run(&["network", "rm", &self.1]);
    }
}

fn network<'a>(s: &'a TestStore, args: &[&str]) -> Net<'a> {
    let mut a = vec!["network", "create"];
    a.extend_from_slice(args);
    let id = s.ok(&a).trim().to_string();
    assert_eq!(id.len(), 64, "{id}");
    Net(s, id)
}

fn unique(prefix: &str) -> String {
    format!(
        "{prefix}{}x{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos()
    )
}

#[test]
fn containers_on_a_user_network_reach_each_other_by_name() {
    let s = store();
    let name = unique("un");
    let net = network(&s, &[&name]);
    // Names no container has go to a stand-in upstream, never off this
    // machine.
    let (upstream, _server) = fake_upstream();
    let up = upstream.to_string();
    let web = s.detached(&[
        "--name",
        "web",
        "--network",
        &name,
        "--network-alias",
        "www",
        "busybox",
        "sh",
        "-c",
        HTTPD,
    ]);
    let peer = s.detached(&[
        "--name",
        "peer",
        "--network",
        &name,
        "--dns",
        &up,
        "busybox",
        "sleep",
        "60",
    ]);
    // Both ways, by name, by alias and by short id.
    let out = s.ok(&[
        "exec",
        &peer,
        "sh",
        "-c",
        "ping -c1 -W5 web >/dev/null && wget -qO- http://web/ && wget -qO- http://www/",
    ]);
    assert_eq!(out, "hello-page\nhello-page\n");
    s.ok(&["exec", &web, "ping", "-c1", "-W5", "peer"]);
    s.ok(&["exec", &web, "ping", "-c1", "-W5", &peer[..12]]);
    let resolv = s.ok(&["exec", &peer, "cat", "/etc/resolv.conf"]);
    assert!(resolv.starts_with("nameserver 127.0.0.11\n"), "{resolv}");
    // A name nobody has is not found (and not invented).
    let out = s.run(&["exec", &peer, "ping", "-c1", "-W2", "nobody-here"]);
    assert!(!out.status.success());

    // A rename is seen at once.
    s.ok(&["rename", "web", "web2"]);
    s.ok(&["exec", &peer, "ping", "-c1", "-W5", "web2"]);
    assert!(!s
        .run(&["exec", &peer, "ping", "-c1", "-W2", "web"])
        .status
        .success());

    // Docker's inspect shapes.
    let ip = ip_of(&s, &web);
    let members = s.ok(&["network", "inspect", "-f", "{{json .Containers}}", &name]);
    assert!(
        members.contains(&format!("\"IPv4Address\":\"{}/", ip)),
        "{members}"
    );
    assert!(members.contains("\"Name\":\"peer\""), "{members}");
    let ls = s.ok(&["network", "ls", "--format", "{{.Name}} {{.Driver}}"]);
    assert!(ls.contains(&format!("{name} bridge")), "{ls}");
    assert!(
        ls.contains("bridge bridge") && ls.contains("host host") && ls.contains("none null"),
        "{ls}"
    );

    // In use: refused, and nothing changes.
    let err = s.fails(&["network", "rm", &name]);
    assert!(err.contains("has active endpoints"), "{err}");
    s.ok(&["rm", "-f", &web, &peer]);
    s.ok(&["network", "rm", &name]);
    assert!(s
        .fails(&["network", "inspect", &name])
        .contains("not found"));
    let links = std::process::Command::new("ip")
        .args(["-o", "link"])
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&links.stdout).contains(&format!("br-{}", &net.1[..12])));
    assert!(leftovers(&[web, peer]).is_empty());
}

#[test]
fn connect_disconnect_fixed_address_mac_and_hosts() {
    let s = store();
    let name = unique("cd");
    let _net = network(&s, &["--subnet", "10.77.0.0/24", &name]);
    let id = s.detached(&[
        "--network",
        &name,
        "--ip",
        "10.77.0.50",
        "--mac-address",
        "02:00:00:aa:bb:cc",
        "--add-host",
        "db.example:10.1.2.3",
        "--add-host",
        "me:host-gateway",
        "busybox",
        "sleep",
        "60",
    ]);
    let eth0 = s.ok(&["exec", &id, "ip", "-o", "addr", "show", "eth0"]);
    assert!(eth0.contains("inet 10.77.0.50/24"), "{eth0}");
    let link = s.ok(&["exec", &id, "cat", "/sys/class/net/eth0/address"]);
    assert_eq!(link.trim(), "02:00:00:aa:bb:cc");
    let hosts = s.ok(&["exec", &id, "cat", "/etc/hosts"]);
    assert!(hosts.contains("10.1.2.3\tdb.example\n"), "{hosts}");
    assert!(hosts.contains("10.77.0.1\tme\n"), "{hosts}");
    // The address is taken now.
    let err = s.fails(&[
        "run",
        "--rm",
        "--network",
        &name,
        "--ip",
        "10.77.0.50",
        "busybox",
        "true",
    ]);
    assert!(err.contains("Address already in use"), "{err}");
    let err = s.fails(&["run", "--rm", "--ip", "10.77.0.51", "busybox", "true"]);
    assert!(err.contains("user defined networks only"), "{err}");

    // A running container joins the default bridge too, and leaves it.
    s.ok(&["network", "connect", "bridge", &id]);
    let eth1 = s.ok(&["exec", &id, "ip", "-o", "-4", "addr", "show", "eth1"]);
    assert!(eth1.contains("inet "), "{eth1}");
    let err = s.fails(&["network", "connect", "bridge", &id]);
    assert!(err.contains("already exists in network bridge"), "{err}");
    s.ok(&["network", "disconnect", "bridge", &id]);
    assert!(!s
        .run(&["exec", &id, "ip", "link", "show", "eth1"])
        .status
        .success());
    // A stopped container keeps what it was connected to for its next start.
    s.ok(&["stop", "-t", "0", &id]);
    let err = s.fails(&["network", "connect", "--alias", "later", "bridge", &id]);
    assert!(err.contains("user defined networks"), "{err}");
    s.ok(&["network", "connect", "bridge", &id]);
    s.ok(&["start", &id]);
    let addrs = s.ok(&["exec", &id, "ip", "-o", "-4", "addr"]);
    assert!(addrs.contains("eth0") && addrs.contains("eth1"), "{addrs}");
    s.ok(&["rm", "-f", &id]);
    assert!(leftovers(&[id]).is_empty());
}

/// A UDP DNS server on the host's loopback standing in for the host's
/// resolver: `outside.test` is 192.0.2.7 (A questions), every other name
/// does not exist.
fn fake_upstream() -> (std::net::Ipv4Addr, std::thread::JoinHandle<()>) {
    static NEXT: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let addr = std::net::Ipv4Addr::new(127, 53, (std::process::id() % 250) as u8, 10 + n);
    let sock = std::net::UdpSocket::bind((addr, 53)).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let h = std::thread::spawn(move || {
        let mut buf = [0u8; 512];
        while let Ok((n, from)) = sock.recv_from(&mut buf) {
            let q = &buf[..n];
            let mut end = 12;
            while q[end] != 0 {
                end += q[end] as usize + 1;
            }
            end += 5;
            let known = &q[12..end - 4] == b"\x07outside\x04test\x00";
            let is_a = q[end - 4..end - 2] == [0, 1];
            let mut r = q[..end].to_vec();
            r[2] |= 0x80;
            r[3] = if known { 0x80 } else { 0x83 };
            r[7] = (known && is_a) as u8;
            r[10] = 0;
            r[11] = 0;
            if known && is_a {
                r.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2, 7]);
            }
            let _ = sock.send_to(&r, from);
        }
    });
    (addr, h)
}

#[test]
fn the_embedded_resolver_relays_other_names_except_on_internal_networks() {
    let s = store();
    let (upstream, _server) = fake_upstream();
    let up = upstream.to_string();
    let open = unique("rs");
    let _n1 = network(&s, &[&open]);
    let out = s.ok(&[
        "run",
        "--rm",
        "--network",
        &open,
        "--dns",
        &up,
        "busybox",
        "nslookup",
        "outside.test",
    ]);
    assert!(out.contains("192.0.2.7"), "{out}");
    // The default bridge writes --dns servers as they are...
    let out = s.ok(&[
        "run",
        "--rm",
        "--dns",
        "192.0.2.53",
        "--dns-search",
        "corp.test",
        "busybox",
        "cat",
        "/etc/resolv.conf",
    ]);
    assert_eq!(out, "nameserver 192.0.2.53\nsearch corp.test\n");
    // ...except servers on the host's loopback, which the container could
    // not reach: the embedded resolver relays to them.
    let out = s.ok(&[
        "run",
        "--rm",
        "--dns",
        &up,
        "busybox",
        "nslookup",
        "outside.test",
    ]);
    assert!(out.contains("192.0.2.7"), "{out}");

    let closed = unique("ri");
    let _n2 = network(&s, &["--internal", &closed]);
    let out = s.run(&[
        "run",
        "--rm",
        "--network",
        &closed,
        "--dns",
        &up,
        "busybox",
        "nslookup",
        "outside.test",
    ]);
    assert!(!String::from_utf8_lossy(&out.stdout).contains("192.0.2.7"));
}

#[test]
fn an_internal_network_cannot_reach_the_host() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    let s = store();
    // The host side accepts and hangs up at once, counting callers.
    let host = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let port = host.local_addr().unwrap().port().to_string();
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    std::thread::spawn(move || {
        for c in host.incoming() {
            drop(c);
            counter.fetch_add(1, Ordering::SeqCst);
        }
    });
    let open = unique("io");
    let closed = unique("ic");
    let _n1 = network(&s, &[&open]);
    let _n2 = network(&s, &["--internal", &closed]);
    let gw = |n: &str| {
        s.ok(&[
            "network",
            "inspect",
            "-f",
            "{{range .IPAM.Config}}{{.Gateway}}{{end}}",
            n,
        ])
        .trim()
        .to_string()
    };
    let probe = |net: &str, ip: &str| {
        let script = format!("nc -w 3 {ip} {port} </dev/null; echo rc=$?");
        s.ok(&[
            "run",
            "--rm",
            "--network",
            net,
            "busybox",
            "sh",
            "-c",
            &script,
        ])
    };
    // The control: a normal network reaches the host at its gateway.
    let out = probe(&open, &gw(&open));
    assert!(out.contains("rc=0"), "{out}");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    // Internal: neither the host's address on its bridge nor another.
    let out = probe(&closed, &gw(&closed));
    assert!(!out.contains("rc=0"), "{out}");
    let out = probe(&closed, &gw(&open));
    assert!(!out.contains("rc=0"), "{out}");
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "the host saw a call from an internal network"
    );
    let route = s.ok(&[
        "run",
        "--rm",
        "--network",
        &closed,
        "busybox",
        "ip",
        "route",
    ]);
    assert!(!route.contains("default"), "{route}");
}

#[test]
fn the_default_bridge_and_a_user_network_coexist_isolated() {
    let s = store();
    let name = unique("co");
    let _net = network(&s, &[&name]);
    let on_bridge = s.detached(&["busybox", "sh", "-c", HTTPD]);
    let on_user = s.detached(&["--network", &name, "busybox", "sh", "-c", HTTPD]);
    let (a, b) = (ip_of(&s, &on_bridge), ip_of(&s, &on_user));
    assert_ne!(a, b);
    // The host reaches both.
    assert_eq!(fetch(&format!("{a}:80")), "hello-page\n");
    assert_eq!(fetch(&format!("{b}:80")), "hello-page\n");
    // They do not reach each other.
    let out = s.ok(&[
        "exec",
        &on_bridge,
        "sh",
        "-c",
        &format!("echo x | nc -w 2 {b} 80; echo rc=$?"),
    ]);
    assert!(!out.contains("rc=0"), "{out}");
    let out = s.ok(&[
        "exec",
        &on_user,
        "sh",
        "-c",
        &format!("echo x | nc -w 2 {a} 80; echo rc=$?"),
    ]);
    assert!(!out.contains("rc=0"), "{out}");
}

/// A network namespace standing in for the outside world, joined to the
/// host by a veth pair, with busybox httpd telling who called.
struct Outside {
    ns: String,
    host_if: String,
    server: std::process::Child,
    _www: tempfile::TempDir,
}

impl Drop for Outside {
    fn drop(&mut self) {
        let _ = self.server.kill();
        let _ = self.server.wait();
        let _ = std::process::Command::new("ip")
            .args(["link", "del", &self.host_if])
            .status();
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &self.ns])
            .status();
    }
}

fn ip(args: &[&str]) {
    let st = std::process::Command::new("ip")
        .args(args)
        .status()
        .unwrap();
    assert!(st.success(), "ip {args:?}");
}

#[test]
fn outbound_traffic_is_masqueraded_through_the_host() {
    let s = store();
    let n = std::process::id() % 200 + 20;
    let www = tempfile::tempdir().unwrap();
    std::fs::create_dir(www.path().join("cgi-bin")).unwrap();
    let cgi = www.path().join("cgi-bin/who");
    std::fs::write(
        &cgi,
        "#!/bin/sh\necho Content-Type: text/plain\necho\necho \"$REMOTE_ADDR\"\n",
    )
    .unwrap();
    std::fs::set_permissions(&cgi, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let ns = format!("berth-out{n}");
    let host_if = format!("vout{n}");
    ip(&["netns", "add", &ns]);
    let mut out = Outside {
        ns: ns.clone(),
        host_if: host_if.clone(),
        server: std::process::Command::new("true").spawn().unwrap(),
        _www: www,
    };
    let host_addr = format!("10.214.{n}.1");
    let far_addr = format!("10.214.{n}.2");
    ip(&[
        "link", "add", &host_if, "type", "veth", "peer", "name", "eth9", "netns", &ns,
    ]);
    ip(&["addr", "add", &format!("{host_addr}/24"), "dev", &host_if]);
    ip(&["link", "set", &host_if, "up"]);
    ip(&[
        "-n",
        &ns,
        "addr",
        "add",
        &format!("{far_addr}/24"),
        "dev",
        "eth9",
    ]);
    ip(&["-n", &ns, "link", "set", "eth9", "up"]);
    ip(&["-n", &ns, "link", "set", "lo", "up"]);
    let busybox = "/bin/busybox";
    out.server = std::process::Command::new("ip")
        .args(["netns", "exec", &ns])
        .arg(busybox)
        .args(["httpd", "-f", "-p", &format!("{far_addr}:8000"), "-h"])
        .arg(out._www.path())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    // The far side has no route back to the container's subnet: only a
    // masqueraded connection gets an answer, and it names the host.
    let url = format!("http://{far_addr}:8000/cgi-bin/who");
    let got = s.ok(&["run", "--rm", "busybox", "wget", "-qO-", &url]);
    assert_eq!(got.trim(), host_addr);
    let name = unique("eg");
    let _net = network(&s, &[&name]);
    let got = s.ok(&[
        "run",
        "--rm",
        "--network",
        &name,
        "busybox",
        "wget",
        "-qO-",
        &url,
    ]);
    assert_eq!(got.trim(), host_addr);
}

#[test]
fn system_check_removes_what_a_lost_run_directory_left() {
    let s = store();
    let name = unique("kc");
    let _net = network(&s, &[&name]);
    let id = s.detached(&[
        "--name",
        "victim",
        "--network",
        &name,
        "-p",
        "80",
        "busybox",
        "sleep",
        "60",
    ]);
    let ip = ip_of(&s, &id);
    let (pid, monitor) = pids(&s, &id);
    // The monitor dies and its run directory is lost with it (a wiped
    // runroot): the namespace goes, what names it elsewhere stays.
    // SAFETY: killing processes this test started.
    unsafe {
        libc::kill(monitor, libc::SIGKILL);
        libc::kill(pid, libc::SIGKILL);
    }
    std::thread::sleep(Duration::from_millis(200));
    let run = s.runroot().join("containers").join(&id);
    for m in ["netns", "rootfs"] {
        let p = std::ffi::CString::new(run.join(m).to_str().unwrap()).unwrap();
        // SAFETY: umount2 with a valid C string.
        unsafe { libc::umount2(p.as_ptr(), libc::MNT_DETACH) };
    }
    std::fs::remove_dir_all(&run).unwrap();

    let out = s.run(&["system", "check", "--dry-run"]);
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(1), "{report}");
    assert!(
        report.contains(&format!("/{}: its container is gone", ip)),
        "{report}"
    );
    assert!(
        report.contains(&format!("DNS record of container {}", &id[..12])),
        "{report}"
    );
    s.ok(&["system", "check"]);
    let again = s.ok(&["system", "check", "--dry-run"]);
    assert!(
        !again.contains(&id[..12]) && !again.contains(&ip),
        "{again}"
    );
    assert!(leftovers(&[id]).is_empty());
}
