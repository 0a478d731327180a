//! Real namespaces, a real bridge and veth pair, real nftables DNAT, all
//! on this machine: traffic stays between the host and a namespace the
//! test made.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};

use berth_net::nft::{self, PortMap};
use berth_net::Attachment;

struct Cleanup {
    netns: PathBuf,
    bridge: String,
    host_if: String,
    tag: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = nft::unpublish(&self.tag);
        let _ = nft::remove_network(&self.tag);
        berth_net::delete_netns(&self.netns);
        let _ = berth_net::delete_link(&self.host_if);
        let _ = berth_net::delete_link(&self.bridge);
    }
}

/// Runs `f` on a thread inside the namespace.
fn inside<T: Send>(netns: &Path, f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| {
        s.spawn(|| {
            let ns = std::fs::File::open(netns).unwrap();
            nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
            f()
        })
        .join()
        .unwrap()
    })
}

#[test]
fn veth_on_a_bridge_and_a_published_port() {
    let dir = tempfile::tempdir().unwrap();
    let n = std::process::id() % 200 + 20;
    let c = Cleanup {
        netns: dir.path().join("netns"),
        bridge: format!("bt{n}"),
        host_if: format!("vt{n}"),
        tag: format!("test{n}"),
    };
    let gw = Ipv4Addr::new(10, 213, n as u8, 1);
    let ip = Ipv4Addr::new(10, 213, n as u8, 2);
    berth_net::create_netns(&c.netns).unwrap();
    berth_net::ensure_bridge(&c.bridge, gw, 24, false).unwrap();
    berth_net::attach(
        &c.netns,
        &Attachment {
            bridge: c.bridge.clone(),
            host_if: c.host_if.clone(),
            ip,
            prefix: 24,
            gateway: gw,
            mac: [0x02, 0x42, 10, 213, n as u8, 2],
            ifname: "eth0".into(),
            default_route: true,
        },
    )
    .unwrap();

    // The namespace reaches the host through the gateway.
    let host = TcpListener::bind((gw, 0)).unwrap();
    let port = host.local_addr().unwrap().port();
    inside(&c.netns, || {
        let mut s = TcpStream::connect((gw, port)).unwrap();
        s.write_all(b"from the namespace").unwrap();
    });
    let mut got = String::new();
    host.accept().unwrap().0.read_to_string(&mut got).unwrap();
    assert_eq!(got, "from the namespace");

    // A published port: host loopback -> DNAT -> the namespace.
    nft::ensure_network(
        &c.tag,
        &c.bridge,
        Ipv4Addr::new(10, 213, n as u8, 0),
        24,
        false,
    )
    .unwrap();
    let listener = inside(&c.netns, || {
        TcpListener::bind((Ipv4Addr::UNSPECIFIED, 8080)).unwrap()
    });
    let free = TcpListener::bind("127.0.0.1:0").unwrap();
    let host_port = free.local_addr().unwrap().port();
    drop(free);
    nft::publish(
        &c.tag,
        ip,
        &[PortMap {
            host_ip: Some(Ipv4Addr::LOCALHOST),
            host_port,
            container_port: 8080,
            proto: "tcp".into(),
        }],
    )
    .unwrap();
    let server = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        s.write_all(b"from the container").unwrap();
    });
    let mut got = String::new();
    TcpStream::connect(("127.0.0.1", host_port))
        .unwrap()
        .read_to_string(&mut got)
        .unwrap();
    server.join().unwrap();
    assert_eq!(got, "from the container");

    nft::unpublish(&c.tag).unwrap();
    assert!(!nft::container_tags().contains(&c.tag));
    berth_net::delete_netns(&c.netns);
    // The namespace's end went with it, and so did its peer.
    std::thread::sleep(std::time::Duration::from_millis(50));
    assert!(nix::net::if_::if_nametoindex(c.host_if.as_str()).is_err());
}
