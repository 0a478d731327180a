//! Container networking mechanism, no policy: named network namespaces,
//! a bridge with its gateway address, a veth pair per container (links and
//! addresses through netlink, never by running `ip`), and nftables rules
//! for published ports and outbound masquerading.
//!
//! Every call here runs on a short-lived thread of its own: a netns switch
//! only changes the calling thread, and the monitor that calls us must stay
//! single-threaded around libcontainer's clone3, so nothing lingers.

pub mod dns;
pub mod nft;

use std::fs::{self, File};
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{setns, unshare, CloneFlags};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Netlink(String),
    #[error("nft: {0}")]
    Nft(String),
}

impl Error {
    /// Host networking failing is ours (or the kernel's), never the
    /// caller's input: that is checked in the engine first.
    pub fn kind(&self) -> berth_oci::ErrorKind {
        berth_oci::ErrorKind::Internal
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> Error + 'a {
    move |source| Error::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

fn nl(what: &str) -> impl FnOnce(rtnetlink::Error) -> Error + '_ {
    move |e| Error::Netlink(format!("{what}: {e}"))
}

/// Runs `f` on a thread of its own (optionally inside the netns at
/// `netns`), with a single-threaded tokio runtime for netlink.
fn on_thread<T: Send>(
    netns: Option<&Path>,
    f: impl FnOnce(&tokio::runtime::Runtime) -> Result<T> + Send,
) -> Result<T> {
    std::thread::scope(|s| {
        s.spawn(|| {
            if let Some(p) = netns {
                let ns = File::open(p).map_err(io("open netns", p))?;
                setns(&ns, CloneFlags::CLONE_NEWNET).map_err(|e| io("enter netns", p)(e.into()))?;
            }
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_io()
                .build()
                .map_err(io("start netlink runtime for", Path::new("-")))?;
            f(&rt)
        })
        .join()
        .unwrap_or_else(|_| Err(Error::Netlink("network thread panicked".into())))
    })
}

/// Connects to netlink from the current thread's netns.
fn handle(rt: &tokio::runtime::Runtime) -> Result<rtnetlink::Handle> {
    let _g = rt.enter();
    let (conn, handle, _) =
        rtnetlink::new_connection().map_err(io("open netlink socket", Path::new("-")))?;
    rt.spawn(conn);
    Ok(handle)
}

fn index(name: &str) -> Option<u32> {
    nix::net::if_::if_nametoindex(name).ok()
}

/// Makes a new network namespace and pins it at `path` (a file).
pub fn create_netns(path: &Path) -> Result<()> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(io("create", dir))?;
    }
    File::create(path).map_err(io("create", path))?;
    let r = std::thread::scope(|s| {
        s.spawn(|| -> Result<()> {
            unshare(CloneFlags::CLONE_NEWNET)
                .map_err(|e| io("unshare netns for", path)(e.into()))?;
            mount(
                Some("/proc/thread-self/ns/net"),
                path,
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )
            .map_err(|e| io("pin netns at", path)(e.into()))
        })
        .join()
        .unwrap_or_else(|_| Err(Error::Netlink("netns thread panicked".into())))
    });
    if r.is_err() {
        let _ = fs::remove_file(path);
    }
    r
}

/// Unpins and removes a namespace made by [`create_netns`]; its
/// interfaces (the container end of a veth, and so its peer) go with it.
pub fn delete_netns(path: &Path) {
    let _ = umount2(path, MntFlags::MNT_DETACH);
    let _ = fs::remove_file(path);
}

/// Brings `lo` up inside the namespace.
pub fn loopback_up(netns: &Path) -> Result<()> {
    on_thread(Some(netns), |rt| {
        let h = handle(rt)?;
        let lo = index("lo").ok_or_else(|| Error::Netlink("no lo in the namespace".into()))?;
        rt.block_on(h.link().set(lo).up().execute())
            .map_err(nl("set lo up"))
    })
}

/// Creates the bridge `name` with `gateway/prefix` if it is missing, and
/// lets published ports reach it from the host's loopback. `no_ipv6`
/// takes IPv6 off it (an internal network must not reach the host by its
/// link-local address either).
pub fn ensure_bridge(name: &str, gateway: Ipv4Addr, prefix: u8, no_ipv6: bool) -> Result<()> {
    on_thread(None, |rt| {
        let h = handle(rt)?;
        if index(name).is_none() {
            let r = rt.block_on(h.link().add().bridge(name.to_string()).execute());
            // Another process may have made it in the meantime.
            if let Err(e) = r {
                if index(name).is_none() {
                    return Err(nl("create bridge")(e));
                }
            }
        }
        let idx = index(name).ok_or_else(|| Error::Netlink(format!("bridge {name} vanished")))?;
        // An address the bridge already has answers EEXIST.
        if let Err(e) = rt.block_on(h.address().add(idx, gateway.into(), prefix).execute()) {
            if !e.to_string().contains("File exists") {
                return Err(nl("add bridge address")(e));
            }
        }
        rt.block_on(h.link().set(idx).up().execute())
            .map_err(nl("set bridge up"))
    })?;
    // Forwarding, and loopback traffic to published ports routed out to
    // the bridge (the kernel drops 127/8 on other interfaces otherwise).
    let v6 = format!("/proc/sys/net/ipv6/conf/{name}/disable_ipv6");
    if no_ipv6 && Path::new(&v6).exists() {
        sysctl(&v6, "1")?;
    }
    sysctl("/proc/sys/net/ipv4/ip_forward", "1")?;
    sysctl(
        &format!("/proc/sys/net/ipv4/conf/{name}/route_localnet"),
        "1",
    )
}

fn sysctl(path: &str, value: &str) -> Result<()> {
    let p = Path::new(path);
    if fs::read_to_string(p)
        .map(|v| v.trim() == value)
        .unwrap_or(false)
    {
        return Ok(());
    }
    fs::write(p, value).map_err(io("set", p))
}

pub fn delete_link(name: &str) -> Result<()> {
    on_thread(None, |rt| {
        let h = handle(rt)?;
        match index(name) {
            Some(i) => rt
                .block_on(h.link().del(i).execute())
                .map_err(nl("delete link")),
            None => Ok(()),
        }
    })
}

/// What a container's end of a veth pair gets.
#[derive(Debug, Clone)]
pub struct Attachment {
    pub bridge: String,
    /// The host end's name (at most 15 bytes).
    pub host_if: String,
    pub ip: Ipv4Addr,
    pub prefix: u8,
    pub gateway: Ipv4Addr,
    pub mac: [u8; 6],
    /// The name inside the namespace (eth0, eth1, ...).
    pub ifname: String,
    /// Set a default route through the gateway (not on internal networks).
    pub default_route: bool,
}

/// Plugs the namespace at `netns` into a bridge: a veth pair whose host
/// end joins the bridge and whose other end becomes `eth0` inside.
pub fn attach(netns: &Path, a: &Attachment) -> Result<()> {
    let peer = format!("{}p", &a.host_if[..a.host_if.len().min(14)]);
    let ns = File::open(netns).map_err(io("open netns", netns))?;
    on_thread(None, |rt| {
        let h = handle(rt)?;
        rt.block_on(
            h.link()
                .add()
                .veth(a.host_if.clone(), peer.clone())
                .execute(),
        )
        .map_err(nl("create veth pair"))?;
        let host = index(&a.host_if).ok_or_else(|| Error::Netlink("veth vanished".into()))?;
        let bridge = index(&a.bridge)
            .ok_or_else(|| Error::Netlink(format!("bridge {} is missing", a.bridge)))?;
        let p = index(&peer).ok_or_else(|| Error::Netlink("veth peer vanished".into()))?;
        rt.block_on(async {
            h.link().set(host).controller(bridge).execute().await?;
            h.link().set(host).up().execute().await?;
            h.link().set(p).setns_by_fd(ns.as_raw_fd()).execute().await
        })
        .map_err(nl("plug veth into the bridge"))?;
        // A container reaching its own published port: the bridge must
        // send the frame back out of the port it came in by.
        sysctl(
            &format!("/sys/class/net/{}/brport/hairpin_mode", a.host_if),
            "1",
        )
    })
    .inspect_err(|_| {
        let _ = delete_link(&a.host_if);
    })?;
    on_thread(Some(netns), |rt| {
        let h = handle(rt)?;
        let p =
            index(&peer).ok_or_else(|| Error::Netlink("veth peer not in the namespace".into()))?;
        let lo = index("lo").ok_or_else(|| Error::Netlink("no lo in the namespace".into()))?;
        rt.block_on(async {
            h.link().set(p).name(a.ifname.clone()).execute().await?;
            h.link().set(p).address(a.mac.to_vec()).execute().await?;
            h.address().add(p, a.ip.into(), a.prefix).execute().await?;
            h.link().set(p).up().execute().await?;
            h.link().set(lo).up().execute().await?;
            if a.default_route {
                h.route().add().v4().gateway(a.gateway).execute().await?;
            }
            Ok::<_, rtnetlink::Error>(())
        })
        .map_err(nl("configure eth0"))
    })
    .inspect_err(|_| {
        let _ = delete_link(&a.host_if);
    })
}

/// A UDP socket bound to `addr` inside the namespace at `netns` (it stays
/// there whichever namespace later uses it).
pub fn bind_udp_in(netns: &Path, addr: std::net::SocketAddr) -> Result<std::net::UdpSocket> {
    on_thread(Some(netns), |_| {
        std::net::UdpSocket::bind(addr).map_err(io("bind the resolver in", netns))
    })
}

/// Serialises host-wide network changes (choosing a subnet and making its
/// bridge) between berth processes, whatever their stores.
pub struct HostLock(#[allow(dead_code)] nix::fcntl::Flock<File>);

impl HostLock {
    pub fn take() -> Result<HostLock> {
        let p = Path::new("/run/berth-net/lock");
        fs::create_dir_all("/run/berth-net").map_err(io("create", Path::new("/run/berth-net")))?;
        let f = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(p)
            .map_err(io("open", p))?;
        nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusive)
            .map(HostLock)
            .map_err(|(_, e)| io("lock", p)(e.into()))
    }
}

/// IPv4 routes of the host as (interface, network, prefix), from
/// /proc/net/route.
pub fn host_routes() -> Vec<(String, Ipv4Addr, u8)> {
    let Ok(text) = fs::read_to_string("/proc/net/route") else {
        return Vec::new();
    };
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let dest = u32::from_str_radix(f.get(1)?, 16).ok()?;
            let mask = u32::from_str_radix(f.get(7)?, 16).ok()?;
            // /proc/net/route prints addresses as little-endian hex words.
            let net = Ipv4Addr::from(dest.to_le_bytes());
            let prefix = mask.count_ones() as u8;
            (prefix > 0).then(|| (f[0].to_string(), net, prefix))
        })
        .collect()
}

/// Whether two IPv4 networks overlap.
pub fn overlaps(a: (Ipv4Addr, u8), b: (Ipv4Addr, u8)) -> bool {
    let p = a.1.min(b.1);
    let mask = if p == 0 { 0 } else { u32::MAX << (32 - p) };
    (u32::from(a.0) & mask) == (u32::from(b.0) & mask)
}

/// Leases of addresses, shared by every store on the host (the bridge is
/// the host's): one file per address, made with O_EXCL, naming its holder.
pub mod lease {
    use std::fs;
    use std::net::Ipv4Addr;
    use std::path::{Path, PathBuf};

    const DIR: &str = "/run/berth-net/leases";

    fn dir(network: &str) -> PathBuf {
        Path::new(DIR).join(network)
    }

    /// Takes the lowest free address in `first..=last` for `holder` (a path
    /// that exists while the holder lives: its netns pin). An address whose
    /// holder path is gone is free again.
    pub fn take(network: &str, first: Ipv4Addr, last: Ipv4Addr, holder: &Path) -> Option<Ipv4Addr> {
        let d = dir(network);
        fs::create_dir_all(&d).ok()?;
        // The holder is written before the lease exists (a temp file
        // linked into place), so no lease is ever seen empty.
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let tmp = d.join(format!(
            ".{}-{}.tmp",
            std::process::id(),
            NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        fs::write(&tmp, holder.as_os_str().as_encoded_bytes()).ok()?;
        let got = (|| {
            for n in u32::from(first)..=u32::from(last) {
                let ip = Ipv4Addr::from(n);
                let f = d.join(ip.to_string());
                if fs::hard_link(&tmp, &f).is_ok() {
                    return Some(ip);
                }
                let owner = fs::read_to_string(&f).unwrap_or_default();
                if owner == holder.to_string_lossy() {
                    return Some(ip);
                }
                // Held by something that is gone (a killed monitor):
                // reclaimed under the host lock, so two claimants cannot
                // both remove it and both think it theirs.
                if !owner.is_empty() && !Path::new(&owner).exists() {
                    let _host = crate::HostLock::take().ok()?;
                    let again = fs::read_to_string(&f).unwrap_or_default();
                    if again == owner {
                        let _ = fs::remove_file(&f);
                        if fs::hard_link(&tmp, &f).is_ok() {
                            return Some(ip);
                        }
                    }
                }
            }
            None
        })();
        let _ = fs::remove_file(&tmp);
        got
    }

    /// Gives back `ip` if `holder` has it.
    pub fn give_back(network: &str, ip: Ipv4Addr, holder: &Path) {
        let f = dir(network).join(ip.to_string());
        if fs::read_to_string(&f).is_ok_and(|o| o == holder.to_string_lossy()) {
            let _ = fs::remove_file(f);
        }
    }

    /// Forgets every lease of a network.
    pub fn remove_network(network: &str) {
        let _ = fs::remove_dir_all(dir(network));
    }

    /// Holders (netns pins) of leases that are still there.
    pub fn live_holders() -> Vec<String> {
        let mut out: Vec<String> = fs::read_dir(DIR)
            .into_iter()
            .flatten()
            .flatten()
            .flat_map(|net| fs::read_dir(net.path()).into_iter().flatten().flatten())
            .filter_map(|f| fs::read_to_string(f.path()).ok())
            .filter(|o| !o.is_empty() && Path::new(o).exists())
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// Leases whose holder is gone (a killed monitor whose netns pin
    /// went with a reboot or a cleanup), as network/ip; removed when
    /// `remove`.
    pub fn stale(remove: bool) -> Vec<String> {
        let _host = crate::HostLock::take();
        let mut out = Vec::new();
        for net in fs::read_dir(DIR).into_iter().flatten().flatten() {
            for f in fs::read_dir(net.path()).into_iter().flatten().flatten() {
                if f.file_name().to_string_lossy().starts_with('.') {
                    continue;
                }
                let owner = fs::read_to_string(f.path()).unwrap_or_default();
                if owner.is_empty() || Path::new(&owner).exists() {
                    continue;
                }
                out.push(format!(
                    "{}/{}",
                    net.file_name().to_string_lossy(),
                    f.file_name().to_string_lossy()
                ));
                if remove {
                    let _ = fs::remove_file(f.path());
                }
            }
        }
        out
    }
}
