//! The default `bridge` network: policy over berth-net's mechanism. Its
//! subnet, addresses for containers, published ports and their teardown.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::os::fd::OwnedFd;
use std::path::PathBuf;

use berth_net::nft::{self, PortMap};
use nix::sys::socket::{bind, getsockname, socket, AddressFamily, SockFlag, SockType, SockaddrIn};
use serde::{Deserialize, Serialize};

use crate::containers::{Container, Paths};
use crate::{Engine, Error, Result};

/// The device of the default network, as docker0 is Docker's.
pub(crate) const BRIDGE: &str = "berth0";
const NETWORK: &str = "bridge";

/// One host side of a published port, as Docker writes it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct PortBinding {
    pub host_ip: String,
    pub host_port: String,
}

/// A container's place on a network while it runs.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct Endpoint {
    pub network: String,
    pub ip_address: String,
    pub ip_prefix_len: u8,
    pub gateway: String,
    pub mac_address: String,
}

/// Parses `-p` values: `[ip:][hostport:]ctrport[/proto]`, with ranges.
pub(crate) fn parse_publish(specs: &[String]) -> Result<BTreeMap<String, Vec<PortBinding>>> {
    let bad = |s: &str, why: &str| {
        Error::InvalidArgument(format!("invalid port specification: {s:?}: {why}"))
    };
    let range = |s: &str, spec: &str| -> Result<(u16, u16)> {
        let (a, b) = s.split_once('-').unwrap_or((s, s));
        let a: u16 = a.parse().map_err(|_| bad(spec, "not a port number"))?;
        let b: u16 = b.parse().map_err(|_| bad(spec, "not a port number"))?;
        if a == 0 || b < a {
            return Err(bad(spec, "not a port range"));
        }
        Ok((a, b))
    };
    let mut out: BTreeMap<String, Vec<PortBinding>> = BTreeMap::new();
    for spec in specs {
        let (body, proto) = spec.rsplit_once('/').unwrap_or((spec, "tcp"));
        let proto = proto.to_ascii_lowercase();
        if !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
            return Err(bad(spec, "protocol must be tcp, udp or sctp"));
        }
        let parts: Vec<&str> = body.rsplitn(3, ':').collect();
        let (ip, host, ctr) = match parts.as_slice() {
            [c] => ("", "", *c),
            [c, h] => ("", *h, *c),
            [c, h, i] => (*i, *h, *c),
            _ => return Err(bad(spec, "too many colons")),
        };
        if !ip.is_empty() && ip.parse::<Ipv4Addr>().is_err() {
            return Err(bad(spec, "the host address must be IPv4"));
        }
        let (c0, c1) = range(ctr, spec)?;
        let hosts = if host.is_empty() {
            None
        } else {
            let (h0, h1) = range(host, spec)?;
            if h1 - h0 != c1 - c0 && h0 != h1 {
                return Err(bad(spec, "host and container port ranges differ in size"));
            }
            Some((h0, h1))
        };
        for (i, cp) in (c0..=c1).enumerate() {
            let hp = match hosts {
                Some((h0, h1)) if h0 == h1 => h0.to_string(),
                Some((h0, _)) => (h0 + i as u16).to_string(),
                None => String::new(),
            };
            out.entry(format!("{cp}/{proto}"))
                .or_default()
                .push(PortBinding {
                    host_ip: ip.to_string(),
                    host_port: hp,
                });
        }
    }
    Ok(out)
}

/// The bridge's subnet: the first of Docker's usual ones that no host
/// route (other than our own bridge's) overlaps.
fn subnet() -> Result<(Ipv4Addr, u8)> {
    let routes: Vec<(Ipv4Addr, u8)> = berth_net::host_routes()
        .into_iter()
        .filter(|(iface, _, _)| iface != BRIDGE)
        .map(|(_, n, p)| (n, p))
        .collect();
    let candidates = (17..=31)
        .map(|b| (Ipv4Addr::new(172, b, 0, 0), 16))
        .chain((0..=255).map(|b| (Ipv4Addr::new(10, 89, b, 0), 24)));
    for c in candidates {
        if !routes.iter().any(|r| berth_net::overlaps(*r, c)) {
            return Ok(c);
        }
    }
    Err(Error::Internal(
        "no free private subnet for the bridge network: every candidate overlaps a host route"
            .into(),
    ))
}

fn net_err(e: berth_net::Error) -> Error {
    Error::Internal(format!("bridge network: {e}"))
}

fn netns_path(paths: &Paths) -> PathBuf {
    paths.run.join("netns")
}

fn host_if(id: &str) -> String {
    format!("vb{}", &id[..12])
}

/// Holds a host port so nothing else can bind it while the container
/// publishes it (the traffic itself is DNATed before any socket sees it).
fn reserve(ip: Ipv4Addr, port: u16, proto: &str) -> Result<(OwnedFd, u16)> {
    let ty = if proto == "udp" {
        SockType::Datagram
    } else {
        SockType::Stream
    };
    let fd = socket(AddressFamily::Inet, ty, SockFlag::SOCK_CLOEXEC, None)
        .map_err(|e| Error::Internal(format!("socket: {e}")))?;
    let addr = SockaddrIn::from(std::net::SocketAddrV4::new(ip, port));
    use std::os::fd::AsRawFd;
    bind(fd.as_raw_fd(), &addr).map_err(|e| {
        if e == nix::errno::Errno::EADDRINUSE {
            Error::Conflict(format!(
                "driver failed programming external connectivity: Bind for {ip}:{port} failed: port is already allocated"
            ))
        } else {
            Error::Internal(format!("reserve {ip}:{port}: {e}"))
        }
    })?;
    let got: SockaddrIn =
        getsockname(fd.as_raw_fd()).map_err(|e| Error::Internal(format!("getsockname: {e}")))?;
    Ok((fd, got.port()))
}

impl Engine {
    /// Plugs a starting container into the bridge: address, eth0, routes
    /// and published ports. Records them in its state; returns the
    /// sockets that hold its host ports (dropped at teardown).
    pub(crate) fn net_up(&self, c: &mut Container, paths: &Paths) -> Result<Vec<OwnedFd>> {
        let r = self.net_up_inner(c, paths);
        if r.is_err() {
            self.net_down(c, paths);
        }
        r
    }

    fn net_up_inner(&self, c: &mut Container, paths: &Paths) -> Result<Vec<OwnedFd>> {
        let (net, prefix) = subnet()?;
        let base = u32::from(net);
        let gateway = Ipv4Addr::from(base + 1);
        let broadcast = base | (u32::MAX >> prefix);
        berth_net::ensure_bridge(BRIDGE, gateway, prefix).map_err(net_err)?;
        nft::ensure_network(NETWORK, BRIDGE, net, prefix, false).map_err(net_err)?;

        let ns = netns_path(paths);
        berth_net::delete_netns(&ns);
        berth_net::create_netns(&ns).map_err(net_err)?;
        let ip = berth_net::lease::take(
            NETWORK,
            Ipv4Addr::from(base + 2),
            Ipv4Addr::from(broadcast - 1),
            &ns,
        )
        .ok_or_else(|| Error::Conflict(format!("no free address left on network {NETWORK}")))?;
        let o = ip.octets();
        let mac = [0x02, 0x42, o[0], o[1], o[2], o[3]];
        c.state.network = Some(Endpoint {
            network: NETWORK.into(),
            ip_address: ip.to_string(),
            ip_prefix_len: prefix,
            gateway: gateway.to_string(),
            mac_address: mac
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<Vec<_>>()
                .join(":"),
        });
        berth_net::attach(
            &ns,
            &berth_net::Attachment {
                bridge: BRIDGE.into(),
                host_if: host_if(&c.id),
                ip,
                prefix,
                gateway,
                mac,
                default_route: true,
            },
        )
        .map_err(net_err)?;

        let mut guards = Vec::new();
        let mut maps = Vec::new();
        let mut published: BTreeMap<String, Vec<PortBinding>> = BTreeMap::new();
        for (key, bindings) in &c.spec.host.port_bindings {
            let (cport, proto) = key.split_once('/').unwrap_or((key, "tcp"));
            let cport: u16 = cport
                .parse()
                .map_err(|_| Error::InvalidArgument(format!("bad port {key}")))?;
            for b in bindings {
                let host_ip: Ipv4Addr = if b.host_ip.is_empty() {
                    Ipv4Addr::UNSPECIFIED
                } else {
                    b.host_ip.parse().map_err(|_| {
                        Error::InvalidArgument(format!("bad host address {}", b.host_ip))
                    })?
                };
                let want: u16 = if b.host_port.is_empty() {
                    0
                } else {
                    b.host_port.parse().map_err(|_| {
                        Error::InvalidArgument(format!("bad host port {}", b.host_port))
                    })?
                };
                let (fd, port) = reserve(host_ip, want, proto)?;
                guards.push(fd);
                maps.push(PortMap {
                    host_ip: (!host_ip.is_unspecified()).then_some(host_ip),
                    host_port: port,
                    container_port: cport,
                    proto: proto.to_string(),
                });
                published.entry(key.clone()).or_default().push(PortBinding {
                    host_ip: host_ip.to_string(),
                    host_port: port.to_string(),
                });
            }
        }
        nft::publish(&c.id[..12], ip, &maps).map_err(net_err)?;
        c.state.ports = published;
        Ok(guards)
    }

    /// Undoes [`Engine::net_up`]; safe to call when nothing was set up,
    /// and after a crash.
    pub(crate) fn net_down(&self, c: &mut Container, paths: &Paths) {
        let _ = nft::unpublish(&c.id[..12]);
        let ns = netns_path(paths);
        if let Some(ep) = &c.state.network {
            if let Ok(ip) = ep.ip_address.parse() {
                berth_net::lease::give_back(&ep.network, ip, &ns);
            }
        }
        berth_net::delete_netns(&ns);
        let _ = berth_net::delete_link(&host_if(&c.id));
        c.state.network = None;
        c.state.ports.clear();
    }
}
