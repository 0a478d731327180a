//! A container's place on its networks: policy over berth-net's mechanism.
//! Addresses, interfaces, published ports, DNS records, /etc/resolv.conf,
//! and their teardown. Which networks exist is networks.rs.
//!
//! What a running container holds is written down where it lives, one
//! file per network under `<runroot>/containers/<id>/endpoints/`, not in
//! its state: `network connect` adds to a container whose monitor is
//! running, and teardown (also after a crash) reads what is really there.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::os::fd::OwnedFd;
use std::path::PathBuf;

use berth_net::nft::{self, PortMap};
use nix::sys::socket::{bind, getsockname, socket, AddressFamily, SockFlag, SockType, SockaddrIn};

use crate::containers::model::{Container, Paths};
use crate::net_model::{Endpoint, EndpointConfig, NetInfo, PortBinding};
use crate::{Engine, Error, Result};

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

pub(crate) fn net_err(e: berth_net::Error) -> Error {
    Error::Net(e)
}

pub(crate) fn netns_path(paths: &Paths) -> PathBuf {
    paths.run.join("netns")
}

fn endpoints_dir(paths: &Paths) -> PathBuf {
    paths.run.join("endpoints")
}

/// Whether `ip` is a host address of `subnet/prefix` (in it, and neither
/// its network nor its broadcast address).
pub(crate) fn is_host_address(ip: Ipv4Addr, subnet: Ipv4Addr, prefix: u8) -> bool {
    let broadcast = u32::from(subnet) | (u32::MAX >> prefix);
    berth_net::overlaps((ip, 32), (subnet, prefix)) && ip != subnet && u32::from(ip) != broadcast
}

/// The names a container answers to on a network: its name, short id and
/// aliases.
fn dns_names(c: &Container, aliases: &[String]) -> Vec<String> {
    let mut names = vec![c.name.clone(), c.id[..12].to_string()];
    names.extend(aliases.iter().cloned());
    names
}

/// The host end of a container's n-th interface (at most 15 bytes).
fn host_if(id: &str, n: usize) -> String {
    if n == 0 {
        format!("vb{}", &id[..12])
    } else {
        format!("v{n}{}", &id[..12])
    }
}

/// Parses `aa:bb:cc:dd:ee:ff`.
pub(crate) fn parse_mac(s: &str) -> Result<[u8; 6]> {
    let bad = || Error::InvalidArgument(format!("invalid MAC address: {s}"));
    let parts: Vec<u8> = s
        .split(':')
        .map(|p| {
            (p.len() == 2)
                .then(|| u8::from_str_radix(p, 16).ok())
                .flatten()
                .ok_or_else(bad)
        })
        .collect::<Result<_>>()?;
    let mac: [u8; 6] = parts.try_into().map_err(|_| bad())?;
    if mac[0] & 1 != 0 {
        return Err(Error::InvalidArgument(format!(
            "invalid MAC address: {s}: a multicast address cannot be a container's"
        )));
    }
    Ok(mac)
}

fn mac_text(mac: &[u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
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

fn is_loopback(server: &str) -> bool {
    server
        .parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.is_loopback())
}

/// What a container's /etc/resolv.conf says, and whether the embedded
/// resolver serves it (then with these upstreams).
pub(crate) struct ResolvPlan {
    pub text: String,
    pub resolver: Option<Vec<Ipv4Addr>>,
}

impl Engine {
    /// The container's endpoints while it runs, eth0 first.
    pub fn endpoints(&self, c: &Container) -> Vec<Endpoint> {
        read_endpoints(&self.paths(&c.id))
    }

    /// Docker's rules, plus one of our own: on a user network the
    /// embedded resolver answers (and relays to --dns servers, or the
    /// host's); elsewhere the host's resolvers are copied, unless they are
    /// all on the host's loopback, where the embedded resolver relays to
    /// them rather than leave the container without DNS.
    pub(crate) fn resolv_plan(&self, c: &Container, endpoints: &[Endpoint]) -> ResolvPlan {
        let h = &c.spec.host;
        let host = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
        let host_mode = h.network_mode == "host";
        if host_mode && h.dns.is_empty() && h.dns_search.is_empty() {
            return ResolvPlan {
                text: host,
                resolver: None,
            };
        }
        // The words of the host's lines starting with `key`.
        let host_words = |key: &str| -> Vec<String> {
            host.lines()
                .filter_map(|l| l.trim().strip_prefix(key))
                .flat_map(|r| r.split_whitespace().map(str::to_string))
                .collect()
        };
        let servers: Vec<String> = if h.dns.is_empty() {
            host_words("nameserver")
        } else {
            h.dns.clone()
        };
        let search: Vec<String> = if h.dns_search.is_empty() {
            host_words("search")
        } else {
            h.dns_search.iter().filter(|s| *s != ".").cloned().collect()
        };
        let mut options: Vec<String> = if h.dns_options.is_empty() {
            host_words("options")
        } else {
            h.dns_options.clone()
        };
        let own_netns = !endpoints.is_empty();
        let user_net = endpoints.iter().any(|e| e.dns);
        let reachable: Vec<&String> = servers
            .iter()
            .filter(|s| host_mode || !is_loopback(s))
            .collect();
        let embedded = own_netns && (user_net || reachable.is_empty());
        let mut text = String::new();
        let resolver = if embedded {
            text += &format!("nameserver {}\n", berth_net::dns::ADDRESS);
            if user_net && !options.iter().any(|o| o.starts_with("ndots:")) {
                options.insert(0, "ndots:0".into());
            }
            let relay = endpoints.iter().any(|e| !e.internal);
            Some(if relay {
                servers.iter().filter_map(|s| s.parse().ok()).collect()
            } else {
                Vec::new()
            })
        } else {
            for s in &reachable {
                text += &format!("nameserver {s}\n");
            }
            None
        };
        if !search.is_empty() {
            text += &format!("search {}\n", search.join(" "));
        }
        if !options.is_empty() {
            text += &format!("options {}\n", options.join(" "));
        }
        ResolvPlan { text, resolver }
    }

    /// The container's networks in interface order: the one it was
    /// created on first.
    fn ordered_networks(c: &Container) -> Vec<String> {
        let mode = &c.spec.host.network_mode;
        let mut names: Vec<String> = c
            .spec
            .networks
            .keys()
            .filter(|n| *n != mode)
            .cloned()
            .collect();
        if c.spec.networks.contains_key(mode) {
            names.insert(0, mode.clone());
        }
        names
    }

    /// Gives a starting container its network namespace and plugs it into
    /// each of its networks; publishes its ports. Returns the sockets that
    /// hold its host ports (dropped at teardown).
    pub(crate) fn net_up(&self, c: &mut Container, paths: &Paths) -> Result<Vec<OwnedFd>> {
        let r = self.net_up_inner(c, paths);
        if r.is_err() {
            self.net_down(c, paths);
        }
        r
    }

    fn net_up_inner(&self, c: &mut Container, paths: &Paths) -> Result<Vec<OwnedFd>> {
        let ns = netns_path(paths);
        self.net_down(c, paths);
        // `network connect` may have changed them since the monitor read
        // the container (a restart after a connect keeps the network).
        if let Some(row) = self.store.container(&c.id)? {
            if let Ok(spec) = serde_json::from_str::<crate::containers::model::Spec>(&row.config) {
                c.spec.networks = spec.networks;
            }
        }
        berth_net::create_netns(&ns).map_err(net_err)?;
        berth_net::loopback_up(&ns).map_err(net_err)?;
        let mut primary: Option<Endpoint> = None;
        let mut routed = false;
        for (n, name) in Self::ordered_networks(c).into_iter().enumerate() {
            let net = self.net_info(&name)?;
            let cfg = c.spec.networks.get(&name).cloned().unwrap_or_default();
            let default_route = !net.internal && !routed;
            let ep = self.attach_endpoint(c, paths, &net, &cfg, n, default_route)?;
            routed |= default_route;
            primary.get_or_insert(ep);
        }
        // Docker publishes nothing from an internal network.
        let Some(primary) = primary.filter(|p| !p.internal) else {
            return Ok(Vec::new());
        };
        let ip: Ipv4Addr = primary
            .ip_address
            .parse()
            .map_err(|_| Error::Internal("endpoint without an address".into()))?;
        self.publish_ports(c, ip)
    }

    fn publish_ports(&self, c: &mut Container, ip: Ipv4Addr) -> Result<Vec<OwnedFd>> {
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

    /// Plugs the running (or starting) container into one network as its
    /// n-th interface, and records the endpoint.
    pub(crate) fn attach_endpoint(
        &self,
        c: &Container,
        paths: &Paths,
        net: &NetInfo,
        cfg: &EndpointConfig,
        n: usize,
        default_route: bool,
    ) -> Result<Endpoint> {
        self.ensure_net_devices(net)?;
        let ns = netns_path(paths);
        let base = u32::from(net.subnet);
        let broadcast = base | (u32::MAX >> net.prefix);
        let gw = u32::from(net.gateway);
        // The host addresses around the gateway, which is not for lease.
        let ranges = if cfg.ipv4_address.is_empty() {
            vec![(base + 1, gw - 1), (gw + 1, broadcast - 1)]
        } else {
            let ip: Ipv4Addr = cfg.ipv4_address.parse().map_err(|_| {
                Error::InvalidArgument(format!("invalid IPv4 address: {}", cfg.ipv4_address))
            })?;
            if !is_host_address(ip, net.subnet, net.prefix) || ip == net.gateway {
                return Err(Error::InvalidArgument(format!(
                    "no configured subnet contains IP address {ip}"
                )));
            }
            vec![(u32::from(ip), u32::from(ip))]
        };
        let ip = ranges
            .into_iter()
            .filter(|(a, b)| a <= b)
            .find_map(|(a, b)| berth_net::lease::take(&net.id, a.into(), b.into(), &ns))
            .ok_or_else(|| {
                if cfg.ipv4_address.is_empty() {
                    Error::Conflict(format!(
                        "no available IPv4 addresses on network {}",
                        net.name
                    ))
                } else {
                    Error::Conflict(format!("Address already in use: {}", cfg.ipv4_address))
                }
            })?;
        let r = (|| {
            let mac = if cfg.mac_address.is_empty() {
                let o = ip.octets();
                [0x02, 0x42, o[0], o[1], o[2], o[3]]
            } else {
                parse_mac(&cfg.mac_address)?
            };
            let ep = Endpoint {
                network: net.name.clone(),
                network_id: net.id.clone(),
                endpoint_id: crate::ids::random_hex64(),
                interface: format!("eth{n}"),
                host_if: host_if(&c.id, n),
                ip_address: ip.to_string(),
                ip_prefix_len: net.prefix,
                gateway: net.gateway.to_string(),
                mac_address: mac_text(&mac),
                aliases: cfg.aliases.clone(),
                dns: net.dns,
                internal: net.internal,
            };
            berth_net::attach(
                &ns,
                &berth_net::Attachment {
                    bridge: net.bridge.clone(),
                    host_if: ep.host_if.clone(),
                    ip,
                    prefix: net.prefix,
                    gateway: net.gateway,
                    mac,
                    ifname: ep.interface.clone(),
                    default_route,
                },
            )
            .map_err(net_err)?;
            write_endpoint(paths, &ep)?;
            if net.dns {
                berth_net::dns::publish(&net.id, &c.id, ip, &dns_names(c, &ep.aliases))
                    .map_err(Error::io("record the DNS name of", &c.name))?;
            }
            Ok(ep)
        })();
        match &r {
            Ok(_) => self.emit_network("connect", &net.id, &net.name, Some(&c.id)),
            Err(_) => {
                berth_net::lease::give_back(&net.id, ip, &ns);
                let _ = berth_net::delete_link(&host_if(&c.id, n));
                let _ = std::fs::remove_file(endpoints_dir(paths).join(&net.id));
            }
        }
        r
    }

    /// Re-records the DNS names of a running container (after a rename).
    pub(crate) fn republish_names(&self, c: &Container) {
        for ep in self.endpoints(c).into_iter().filter(|e| e.dns) {
            let Ok(ip) = ep.ip_address.parse() else {
                continue;
            };
            let _ = berth_net::dns::publish(&ep.network_id, &c.id, ip, &dns_names(c, &ep.aliases));
        }
    }

    /// Unplugs one endpoint (quiet about what is already gone).
    pub(crate) fn detach_endpoint(&self, c: &Container, paths: &Paths, ep: &Endpoint) {
        // Name and link first: the address is only free once nothing
        // answers to it.
        berth_net::dns::withdraw(&ep.network_id, &c.id);
        let _ = berth_net::delete_link(&ep.host_if);
        if let Ok(ip) = ep.ip_address.parse() {
            berth_net::lease::give_back(&ep.network_id, ip, &netns_path(paths));
        }
        let _ = std::fs::remove_file(endpoints_dir(paths).join(&ep.network_id));
        self.emit_network("disconnect", &ep.network_id, &ep.network, Some(&c.id));
    }

    /// Undoes [`Engine::net_up`]; safe to call when nothing was set up,
    /// and after a crash.
    pub(crate) fn net_down(&self, c: &mut Container, paths: &Paths) {
        let _ = nft::unpublish(&c.id[..12]);
        for ep in read_endpoints(paths) {
            self.detach_endpoint(c, paths, &ep);
        }
        berth_net::delete_netns(&netns_path(paths));
        let _ = std::fs::remove_dir_all(endpoints_dir(paths));
        c.state.ports.clear();
    }
}

fn write_endpoint(paths: &Paths, ep: &Endpoint) -> Result<()> {
    let dir = endpoints_dir(paths);
    std::fs::create_dir_all(&dir).map_err(Error::io("create", &dir))?;
    let tmp = dir.join(format!(".{}.tmp", ep.network_id));
    let body = serde_json::to_vec(ep).expect("serialises");
    std::fs::write(&tmp, body).map_err(Error::io("write", &tmp))?;
    std::fs::rename(&tmp, dir.join(&ep.network_id)).map_err(Error::io("write", &tmp))
}

pub(crate) fn read_endpoints(paths: &Paths) -> Vec<Endpoint> {
    let mut eps: Vec<Endpoint> = std::fs::read_dir(endpoints_dir(paths))
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .filter_map(|e| std::fs::read(e.path()).ok())
        .filter_map(|b| serde_json::from_slice(&b).ok())
        .collect();
    eps.sort_by_key(|e: &Endpoint| {
        e.interface
            .trim_start_matches("eth")
            .parse::<usize>()
            .unwrap_or(usize::MAX)
    });
    eps
}
