//! Networks as Docker users know them: the predefined `bridge`, `host`
//! and `none`, and user-defined bridge networks (recorded in the store,
//! each with a bridge device `br-<id12>`, a subnet of its own and the
//! embedded resolver). How containers join them is network.rs.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use berth_net::nft;
use berth_oci::{time, Digest};
use berth_store::NetworkRow;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::containers::model::Container;
use crate::net_model::{Endpoint, EndpointConfig, NetInfo};
use crate::network::{is_host_address, net_err, netns_path, read_endpoints};
use crate::{Engine, Error, Result};

/// Docker's words for `--ip` and aliases outside a user network (run and
/// network connect alike).
pub(crate) const IP_NEEDS_USER_NETWORK: &str =
    "user specified IP address is supported on user defined networks only";
pub(crate) const ALIAS_NEEDS_USER_NETWORK: &str =
    "network-scoped alias is supported only for containers in user defined networks";
const HOST_NETWORK: &str =
    "container cannot be disconnected from host network or connected to host network";

/// The device of the default network, as docker0 is Docker's.
pub(crate) const BRIDGE: &str = "berth0";
pub(crate) const DEFAULT: &str = "bridge";
/// Docker's default bridge subnet, kept for the default network.
const DEFAULT_POOL: (Ipv4Addr, u8) = (Ipv4Addr::new(172, 17, 0, 0), 16);

/// A network as `network ls` and `inspect` show it.
#[derive(Debug, Clone, Serialize)]
pub struct Network {
    pub id: String,
    pub name: String,
    pub driver: String,
    pub created: i64,
    /// `a.b.c.d/n`; None for host and none.
    pub subnet: Option<String>,
    pub gateway: Option<String>,
    pub internal: bool,
    pub labels: BTreeMap<String, String>,
    pub options: BTreeMap<String, String>,
    /// One of bridge, host, none.
    pub builtin: bool,
}

#[derive(Debug, Clone, Default)]
pub struct NetworkCreateOptions {
    pub name: String,
    pub driver: Option<String>,
    pub subnet: Option<String>,
    pub gateway: Option<String>,
    pub internal: bool,
    pub labels: BTreeMap<String, String>,
    pub options: BTreeMap<String, String>,
}

/// What the store keeps of a user network.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct NetworkConfig {
    driver: String,
    subnet: Ipv4Addr,
    prefix: u8,
    gateway: Ipv4Addr,
    internal: bool,
    bridge: String,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    options: BTreeMap<String, String>,
}

impl NetInfo {
    fn of(id: &str, name: &str, cfg: &NetworkConfig) -> NetInfo {
        NetInfo {
            id: id.to_string(),
            name: name.to_string(),
            bridge: cfg.bridge.clone(),
            subnet: cfg.subnet,
            prefix: cfg.prefix,
            gateway: cfg.gateway,
            internal: cfg.internal,
            dns: true,
        }
    }
}

/// The first candidate subnet that overlaps none of `taken`.
fn first_free(
    candidates: impl IntoIterator<Item = (Ipv4Addr, u8)>,
    taken: &[(Ipv4Addr, u8)],
) -> Option<(Ipv4Addr, u8)> {
    candidates
        .into_iter()
        .find(|c| !taken.iter().any(|t| berth_net::overlaps(*t, *c)))
}

/// Predefined networks have fixed ids, the same in every store: the
/// default bridge is shared by all of them.
fn builtin_id(name: &str) -> String {
    Digest::sha256_of(format!("berth network {name}").as_bytes())
        .hex()
        .to_string()
}

fn builtin_driver(name: &str) -> Option<&'static str> {
    match name {
        DEFAULT => Some("bridge"),
        "host" => Some("host"),
        "none" => Some("null"),
        _ => None,
    }
}

fn parse_cidr(s: &str) -> Result<(Ipv4Addr, u8)> {
    let bad = || Error::InvalidArgument(format!("invalid subnet {s}: want an IPv4 a.b.c.d/n"));
    let (ip, p) = s.split_once('/').ok_or_else(bad)?;
    let ip: Ipv4Addr = ip.parse().map_err(|_| bad())?;
    let p: u8 = p.parse().map_err(|_| bad())?;
    if !(8..=30).contains(&p) {
        return Err(Error::InvalidArgument(format!(
            "invalid subnet {s}: the prefix must be between /8 and /30"
        )));
    }
    let mask = u32::MAX << (32 - p);
    Ok((Ipv4Addr::from(u32::from(ip) & mask), p))
}

fn validate_name(name: &str) -> Result<()> {
    let mut chars = name.chars();
    let ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if ok && name.len() <= 128 {
        Ok(())
    } else {
        Err(Error::InvalidArgument(format!(
            "invalid network name \"{name}\": only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
        )))
    }
}

/// Routes of the host other than `except`'s.
fn routes_except(except: &str) -> Vec<(Ipv4Addr, u8)> {
    berth_net::host_routes()
        .into_iter()
        .filter(|(iface, _, _)| iface != except)
        .map(|(_, n, p)| (n, p))
        .collect()
}

impl Engine {
    fn row_network(&self, r: &NetworkRow) -> Result<(Network, NetworkConfig)> {
        let cfg: NetworkConfig = serde_json::from_str(&r.config)
            .map_err(|e| Error::Internal(format!("network {}: damaged record: {e}", r.name)))?;
        Ok((
            Network {
                id: r.id.clone(),
                name: r.name.clone(),
                driver: cfg.driver.clone(),
                created: r.created,
                subnet: Some(format!("{}/{}", cfg.subnet, cfg.prefix)),
                gateway: Some(cfg.gateway.to_string()),
                internal: cfg.internal,
                labels: cfg.labels.clone(),
                options: cfg.options.clone(),
                builtin: false,
            },
            cfg,
        ))
    }

    fn builtin(&self, name: &str) -> Option<Network> {
        let driver = builtin_driver(name)?;
        let (subnet, gateway) = if name == DEFAULT {
            let (net, prefix) = self.default_subnet().unwrap_or(DEFAULT_POOL);
            (
                Some(format!("{net}/{prefix}")),
                Some(Ipv4Addr::from(u32::from(net) + 1).to_string()),
            )
        } else {
            (None, None)
        };
        let mut options = BTreeMap::new();
        if name == DEFAULT {
            options.insert("com.docker.network.bridge.name".into(), BRIDGE.into());
            options.insert(
                "com.docker.network.bridge.default_bridge".into(),
                "true".into(),
            );
        }
        Some(Network {
            id: builtin_id(name),
            name: name.to_string(),
            driver: driver.to_string(),
            created: 0,
            subnet,
            gateway,
            internal: false,
            labels: BTreeMap::new(),
            options,
            builtin: true,
        })
    }

    /// The default bridge's subnet: the one berth0 already has, or the
    /// first of Docker's usual ones that no host route overlaps.
    fn default_subnet(&self) -> Result<(Ipv4Addr, u8)> {
        if let Some((_, n, p)) = berth_net::host_routes()
            .into_iter()
            .find(|(iface, _, _)| iface == BRIDGE)
        {
            return Ok((n, p));
        }
        let mut taken = routes_except(BRIDGE);
        taken.extend(self.stored_subnets()?);
        first_free(std::iter::once(DEFAULT_POOL).chain(Self::pool()), &taken).ok_or_else(|| {
                Error::Internal(
                    "no free private subnet for the bridge network: every candidate overlaps a host route"
                        .into(),
                )
            })
    }

    /// Where user networks' subnets come from (Docker's pools after
    /// 172.17, then small ones as Podman's).
    fn pool() -> impl Iterator<Item = (Ipv4Addr, u8)> {
        (18..=31)
            .map(|b| (Ipv4Addr::new(172, b, 0, 0), 16))
            .chain((0..=255).map(|b| (Ipv4Addr::new(10, 89, b, 0), 24)))
    }

    fn stored_subnets(&self) -> Result<Vec<(Ipv4Addr, u8)>> {
        Ok(self
            .store
            .networks()?
            .iter()
            .filter_map(|r| self.row_network(r).ok())
            .map(|(_, c)| (c.subnet, c.prefix))
            .collect())
    }

    /// Every network, predefined ones included, by name.
    pub fn networks(&self) -> Result<Vec<Network>> {
        let mut out: Vec<Network> = [DEFAULT, "host", "none"]
            .iter()
            .filter_map(|n| self.builtin(n))
            .collect();
        for r in self.store.networks()? {
            out.push(self.row_network(&r)?.0);
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// A network by name, id or unique id prefix.
    pub fn network(&self, key: &str) -> Result<Network> {
        let all = self.networks()?;
        if let Some(n) = all.iter().find(|n| n.name == key || n.id == key) {
            return Ok(n.clone());
        }
        let by_prefix: Vec<&Network> = all
            .iter()
            .filter(|n| !key.is_empty() && n.id.starts_with(key))
            .collect();
        match by_prefix.as_slice() {
            [one] => Ok((*one).clone()),
            [] => Err(Error::NotFound(format!("network {key} not found"))),
            _ => Err(Error::InvalidArgument(format!(
                "network {key} is ambiguous ({} matches found based on ID prefix)",
                by_prefix.len()
            ))),
        }
    }

    /// What a container needs to join the network called `name`.
    pub(crate) fn net_info(&self, name: &str) -> Result<NetInfo> {
        if name == DEFAULT {
            let (subnet, prefix) = self.default_subnet()?;
            return Ok(NetInfo {
                id: builtin_id(DEFAULT),
                name: DEFAULT.into(),
                bridge: BRIDGE.into(),
                subnet,
                prefix,
                gateway: Ipv4Addr::from(u32::from(subnet) + 1),
                internal: false,
                dns: false,
            });
        }
        let row = self
            .store
            .networks()?
            .into_iter()
            .find(|r| r.name == name || r.id == name)
            .ok_or_else(|| Error::NotFound(format!("network {name} not found")))?;
        let (_, cfg) = self.row_network(&row)?;
        Ok(NetInfo::of(&row.id, &row.name, &cfg))
    }

    /// The bridge and its rules (again after a reboot took them).
    pub(crate) fn ensure_net_devices(&self, net: &NetInfo) -> Result<()> {
        berth_net::ensure_bridge(&net.bridge, net.gateway, net.prefix, net.internal)
            .map_err(net_err)?;
        nft::ensure_network(
            &net.id[..12],
            &net.bridge,
            net.subnet,
            net.prefix,
            net.internal,
        )
        .map_err(net_err)
    }

    /// `network create`.
    pub fn create_network(&self, o: &NetworkCreateOptions) -> Result<Network> {
        validate_name(&o.name)?;
        let driver = o.driver.clone().unwrap_or_else(|| "bridge".into());
        match driver.as_str() {
            "bridge" => {}
            "host" | "null" => {
                return Err(Error::Conflict(format!(
                    "only one instance of \"{driver}\" network is allowed"
                )))
            }
            d => return Err(Error::NotFound(format!("plugin \"{d}\" not found"))),
        }
        if builtin_driver(&o.name).is_some()
            || self.store.networks()?.iter().any(|r| r.name == o.name)
        {
            return Err(Error::Conflict(format!(
                "network with name {} already exists",
                o.name
            )));
        }
        let id = crate::ids::random_hex64();
        let bridge = bridge_name(o, &id)?;
        // Choosing a subnet and making its bridge is one step for every
        // berth on the host: the bridge's route is what the next one sees.
        let _host = berth_net::HostLock::take().map_err(net_err)?;
        let mut taken = routes_except("");
        taken.extend(self.stored_subnets()?);
        taken.push(self.default_subnet().unwrap_or(DEFAULT_POOL));
        let (subnet, prefix) = match &o.subnet {
            Some(s) => first_free([parse_cidr(s)?], &taken).ok_or_else(|| {
                Error::Conflict("Pool overlaps with other one on this address space".into())
            })?,
            None => first_free(Self::pool(), &taken).ok_or_else(|| {
                    Error::Conflict(
                        "could not find an available, non-overlapping IPv4 address pool among the defaults to assign to the network".into(),
                    )
                })?,
        };
        let gateway = match &o.gateway {
            Some(g) => {
                let ip: Ipv4Addr = g
                    .parse()
                    .map_err(|_| Error::InvalidArgument(format!("invalid gateway address {g}")))?;
                if !is_host_address(ip, subnet, prefix) {
                    return Err(Error::InvalidArgument(format!(
                        "invalid gateway address {g}: it is not a host address of subnet {subnet}/{prefix}"
                    )));
                }
                ip
            }
            None => Ipv4Addr::from(u32::from(subnet) + 1),
        };
        let cfg = NetworkConfig {
            driver,
            subnet,
            prefix,
            gateway,
            internal: o.internal,
            bridge,
            labels: o.labels.clone(),
            options: o.options.clone(),
        };
        let row = NetworkRow {
            id: id.clone(),
            name: o.name.clone(),
            created: time::now_nanos(),
            config: serde_json::to_string(&cfg).expect("serialises"),
        };
        let info = NetInfo::of(&id, &o.name, &cfg);
        let made = self
            .ensure_net_devices(&info)
            .and_then(|_| Ok(self.store.put_network(&row)?));
        if let Err(e) = made {
            self.remove_net_devices(&info.id, &info.bridge);
            return Err(e);
        }
        self.emit_network("create", &info.id, &info.name, None);
        Ok(self.row_network(&row)?.0)
    }

    fn remove_net_devices(&self, id: &str, bridge: &str) {
        let _ = nft::remove_network(&id[..12]);
        let _ = berth_net::delete_link(bridge);
        berth_net::dns::remove_network(id);
        berth_net::lease::remove_network(id);
    }

    /// Containers of this store on `net`, with their endpoint while they
    /// run.
    pub fn network_containers(&self, net: &Network) -> Result<Vec<(Container, Option<Endpoint>)>> {
        let mut out = Vec::new();
        for c in self.list_containers(true, &Default::default())? {
            let live = c.state.status.is_live();
            let ep = if live {
                self.endpoints(&c)
                    .into_iter()
                    .find(|e| e.network_id == net.id)
            } else {
                None
            };
            let member = ep.is_some()
                || c.spec.networks.contains_key(&net.name)
                || c.spec.host.network_mode == net.name;
            if member {
                out.push((c, ep));
            }
        }
        Ok(out)
    }

    /// `network inspect`, in Docker's shape.
    pub fn inspect_network(&self, key: &str) -> Result<Value> {
        let n = self.network(key)?;
        let mut containers = serde_json::Map::new();
        for (c, ep) in self.network_containers(&n)? {
            let Some(ep) = ep else { continue };
            containers.insert(
                c.id.clone(),
                json!({
                    "Name": c.name,
                    "EndpointID": ep.endpoint_id,
                    "MacAddress": ep.mac_address,
                    "IPv4Address": format!("{}/{}", ep.ip_address, ep.ip_prefix_len),
                    "IPv6Address": "",
                }),
            );
        }
        let config: Vec<Value> = match (&n.subnet, &n.gateway) {
            (Some(s), Some(g)) => vec![json!({"Subnet": s, "Gateway": g})],
            _ => vec![],
        };
        Ok(json!({
            "Name": n.name,
            "Id": n.id,
            "Created": if n.created == 0 { "0001-01-01T00:00:00Z".to_string() } else { time::format_rfc3339(n.created) },
            "Scope": "local",
            "Driver": n.driver,
            "EnableIPv6": false,
            "IPAM": {"Driver": "default", "Options": null, "Config": config},
            "Internal": n.internal,
            "Attachable": false,
            "Ingress": false,
            "ConfigFrom": {"Network": ""},
            "ConfigOnly": false,
            "Containers": containers,
            "Options": n.options,
            "Labels": n.labels,
        }))
    }

    /// `network rm`: refused while a running container is on it.
    pub fn remove_network(&self, key: &str) -> Result<Network> {
        let n = self.network(key)?;
        if n.builtin {
            return Err(Error::Conflict(format!(
                "{} is a pre-defined network and cannot be removed",
                n.name
            )));
        }
        if self
            .network_containers(&n)?
            .iter()
            .any(|(_, ep)| ep.is_some())
        {
            return Err(Error::Conflict(format!(
                "error while removing network: network {} id {} has active endpoints",
                n.name, n.id
            )));
        }
        let info = self.net_info(&n.id)?;
        self.store.delete_network(&n.id)?;
        self.remove_net_devices(&n.id, &info.bridge);
        self.emit_network("destroy", &n.id, &n.name, None);
        Ok(n)
    }

    /// `network prune`: user networks no container uses.
    pub fn prune_networks(&self) -> Result<Vec<String>> {
        let mut removed = Vec::new();
        for n in self.networks()?.into_iter().filter(|n| !n.builtin) {
            if self.network_containers(&n)?.is_empty() && self.remove_network(&n.id).is_ok() {
                removed.push(n.name);
            }
        }
        Ok(removed)
    }

    /// `network connect`: joins now if the container runs, and at every
    /// start from now on.
    pub fn connect_network(&self, key: &str, container: &str, cfg: EndpointConfig) -> Result<()> {
        let n = self.network(key)?;
        let mut c = self.container(container)?;
        let mode = c.spec.host.network_mode.clone();
        if n.name == "host" || mode == "host" {
            return Err(Error::Conflict(HOST_NETWORK.into()));
        }
        if n.name == "none" || mode == "none" {
            return Err(Error::Conflict(
                "container cannot be connected to multiple networks with one of the networks in private (none) mode".into(),
            ));
        }
        if mode.starts_with("container:") {
            return Err(Error::Conflict(
                "container sharing network namespace with another container or host cannot be connected to any other network".into(),
            ));
        }
        if !cfg.ipv4_address.is_empty() && n.builtin {
            return Err(Error::InvalidArgument(IP_NEEDS_USER_NETWORK.into()));
        }
        if !cfg.aliases.is_empty() && n.builtin {
            return Err(Error::InvalidArgument(ALIAS_NEEDS_USER_NETWORK.into()));
        }
        if c.spec.networks.contains_key(&n.name) {
            return Err(Error::Conflict(format!(
                "endpoint with name {} already exists in network {}",
                c.name, n.name
            )));
        }
        if c.state.status.is_live() {
            let paths = self.paths(&c.id);
            if netns_path(&paths).exists() {
                let eps = read_endpoints(&paths);
                let n_if = (0..)
                    .find(|i| !eps.iter().any(|e| e.interface == format!("eth{i}")))
                    .unwrap_or(eps.len());
                let info = self.net_info(&n.name)?;
                let routed = eps.iter().any(|e| !e.internal);
                self.attach_endpoint(&c, &paths, &info, &cfg, n_if, !routed && !info.internal)?;
            }
        }
        c.spec.networks.insert(n.name.clone(), cfg);
        self.save_spec(&c)
    }

    /// `network disconnect`.
    pub fn disconnect_network(&self, key: &str, container: &str, force: bool) -> Result<()> {
        let n = self.network(key)?;
        let mut c = self.container(container)?;
        if n.name == "host" || c.spec.host.network_mode == "host" {
            return Err(Error::Conflict(HOST_NETWORK.into()));
        }
        let paths = self.paths(&c.id);
        let ep = read_endpoints(&paths)
            .into_iter()
            .find(|e| e.network_id == n.id);
        if !c.spec.networks.contains_key(&n.name) && ep.is_none() && !force {
            return Err(Error::Conflict(format!(
                "container {} is not connected to network {}",
                c.short_id(),
                n.name
            )));
        }
        if let Some(ep) = ep {
            // Published ports go to eth0's address: once that is gone (and
            // may go to another container) they must not forward there.
            if ep.interface == "eth0" {
                let _ = nft::unpublish(&c.id[..12]);
                c.state.ports.clear();
                let _ = self.save_state(&c);
            }
            self.detach_endpoint(&c, &paths, &ep);
        }
        c.spec.networks.remove(&n.name);
        self.save_spec(&c)
    }

    /// Finds what crashed monitors, killed commands and lost run
    /// directories left on the host, and removes it when `repair`: this
    /// store's stopped containers that still hold a namespace, and, host
    /// wide, address leases, port rules and DNS records whose container
    /// no longer has a namespace (every live one holds a lease naming its
    /// namespace pin). Returns a line per finding.
    pub fn check_network_leftovers(&self, repair: bool) -> Result<Vec<String>> {
        let mut found = Vec::new();
        for mut c in self.list_containers(true, &Default::default())? {
            if c.state.status.is_live() {
                continue;
            }
            let paths = self.paths(&c.id);
            // A monitor holds its lock while it starts the container (and
            // plugs it in before the state says Running): not ours.
            let Ok(_lock) = crate::containers::proc::lock_monitor(&paths, false) else {
                continue;
            };
            let eps = read_endpoints(&paths);
            if netns_path(&paths).exists() || !eps.is_empty() {
                found.push(format!(
                    "container {}: stopped but holds a network namespace and {} interface(s)",
                    c.short_id(),
                    eps.len()
                ));
                if repair {
                    self.net_down(&mut c, &paths);
                }
            }
        }
        found.extend(
            berth_net::lease::stale(repair)
                .into_iter()
                .map(|l| format!("address lease {l}: its container is gone")),
        );
        let live = berth_net::lease::live_holders();
        let alive = |id: &str| live.iter().any(|h| h.contains(id));
        for tag in nft::container_tags() {
            if !alive(&tag) {
                found.push(format!(
                    "port rules of container {tag}: the container is gone"
                ));
                if repair {
                    let _ = nft::unpublish(&tag);
                }
            }
        }
        for (net, holder) in berth_net::dns::all_records() {
            if !alive(&holder) {
                found.push(format!(
                    "DNS record of container {} on network {}: the container is gone",
                    &holder[..holder.len().min(12)],
                    &net[..net.len().min(12)]
                ));
                if repair {
                    berth_net::dns::withdraw(&net, &holder);
                }
            }
        }
        Ok(found)
    }
}

/// The network's bridge device: `com.docker.network.bridge.name` if
/// valid and free, else `br-<id12>`.
fn bridge_name(o: &NetworkCreateOptions, id: &str) -> Result<String> {
    Ok(match o.options.get("com.docker.network.bridge.name") {
        Some(b)
            if b.is_empty()
                || b.len() > 15
                || !b
                    .bytes()
                    .all(|c| c.is_ascii_alphanumeric() || b"_.-".contains(&c)) =>
        {
            return Err(Error::InvalidArgument(format!(
                "invalid bridge name {b:?}: at most 15 of [A-Za-z0-9_.-]"
            )))
        }
        // The network owns its bridge and deletes it with itself: an
        // interface that exists already (eth0, berth0, another
        // network's) is never taken over.
        Some(b) if nix::net::if_::if_nametoindex(b.as_str()).is_ok() => {
            return Err(Error::Conflict(format!(
                "bridge name {b} is taken by an existing interface"
            )))
        }
        Some(b) => b.clone(),
        None => format!("br-{}", &id[..12]),
    })
}
