//! The embedded resolver of user networks, as Docker's 127.0.0.11: a UDP
//! socket inside the container's namespace that answers the names of the
//! containers on its networks and relays every other question to the
//! host's resolvers from the host's namespace (so a resolver on the
//! host's loopback works too).
//!
//! Names live in files, one per container and network, under
//! /run/berth-net/dns/<network>/: whoever joins a container to a network
//! writes its record and removes it when the container leaves. Nothing
//! has to tell a running resolver; it reads the records as questions come.

use std::collections::HashMap;
use std::fs;
use std::io::ErrorKind;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const DIR: &str = "/run/berth-net/dns";
/// Where the resolver listens inside the container.
pub const ADDRESS: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 11);
const TTL: u32 = 600;
const PENDING_MAX: usize = 1024;
const PENDING_TTL: Duration = Duration::from_secs(10);

fn dir(network: &str) -> PathBuf {
    Path::new(DIR).join(network)
}

/// Records that `holder` (a container id) answers to `names` at `ip` on
/// `network` (replacing an earlier record of the same holder).
pub fn publish(network: &str, holder: &str, ip: Ipv4Addr, names: &[String]) -> std::io::Result<()> {
    let d = dir(network);
    fs::create_dir_all(&d)?;
    let tmp = d.join(format!(".{holder}.tmp"));
    let mut text = format!("{ip}\n");
    for n in names {
        text += &n.to_ascii_lowercase();
        text.push('\n');
    }
    fs::write(&tmp, text)?;
    fs::rename(&tmp, d.join(holder))
}

/// Removes `holder`'s record on `network` (quiet if there is none).
pub fn withdraw(network: &str, holder: &str) {
    let _ = fs::remove_file(dir(network).join(holder));
}

/// Forgets every record of a network.
pub fn remove_network(network: &str) {
    let _ = fs::remove_dir_all(dir(network));
}

/// Holders with a record on `network`.
pub fn holders(network: &str) -> Vec<String> {
    fs::read_dir(dir(network))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| !n.starts_with('.'))
        .collect()
}

/// Every (network, holder) record on the host.
pub fn all_records() -> Vec<(String, String)> {
    fs::read_dir(DIR)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|n| n.file_name().into_string().ok())
        .flat_map(|n| holders(&n).into_iter().map(move |h| (n.clone(), h)))
        .collect()
}

/// Every (ip, names) record on the given networks.
fn records(networks: &[String]) -> Vec<(Ipv4Addr, Vec<String>)> {
    let mut out = Vec::new();
    for n in networks {
        for holder in holders(n) {
            let Ok(text) = fs::read_to_string(dir(n).join(&holder)) else {
                continue;
            };
            let mut lines = text.lines();
            let Some(Ok(ip)) = lines.next().map(str::parse) else {
                continue;
            };
            out.push((ip, lines.map(str::to_string).collect()));
        }
    }
    out
}

/// Addresses of `name` on `networks`, in a stable order.
pub fn lookup(networks: &[String], name: &str) -> Vec<Ipv4Addr> {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    let mut ips: Vec<Ipv4Addr> = records(networks)
        .into_iter()
        .filter(|(_, names)| names.contains(&name))
        .map(|(ip, _)| ip)
        .collect();
    ips.sort();
    ips.dedup();
    ips
}

/// The first name of the container at `ip` (for PTR questions).
fn reverse(networks: &[String], ip: Ipv4Addr) -> Option<String> {
    records(networks)
        .into_iter()
        .find(|(i, _)| *i == ip)
        .and_then(|(_, names)| names.into_iter().next())
}

/// One question of a DNS message.
#[derive(Debug, PartialEq)]
struct Question {
    name: String,
    qtype: u16,
    /// Offset just past the question in the message.
    end: usize,
}

const TYPE_A: u16 = 1;
const TYPE_PTR: u16 = 12;
const CLASS_IN: u16 = 1;

/// The first question of a query; None for anything we do not answer
/// ourselves (then it is relayed as it is).
fn question(msg: &[u8]) -> Option<Question> {
    if msg.len() < 12 || msg[2] & 0x80 != 0 || u16::from_be_bytes([msg[4], msg[5]]) != 1 {
        return None;
    }
    let mut labels = Vec::new();
    let mut i = 12;
    loop {
        let len = *msg.get(i)? as usize;
        i += 1;
        if len == 0 {
            break;
        }
        // Compression pointers do not occur in a question of a query.
        if len > 63 {
            return None;
        }
        labels.push(String::from_utf8_lossy(msg.get(i..i + len)?).to_ascii_lowercase());
        i += len;
    }
    let qtype = u16::from_be_bytes([*msg.get(i)?, *msg.get(i + 1)?]);
    let qclass = u16::from_be_bytes([*msg.get(i + 2)?, *msg.get(i + 3)?]);
    if qclass != CLASS_IN {
        return None;
    }
    Some(Question {
        name: labels.join("."),
        qtype,
        end: i + 4,
    })
}

/// An answer to `query` (whose question is `q`) with `answers`, each
/// (type, rdata).
fn answer(query: &[u8], q: &Question, answers: &[(u16, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(q.end + answers.len() * 32);
    out.extend_from_slice(&query[..2]);
    // QR, the query's opcode and RD; AA and RA set; NOERROR.
    out.push(0x80 | (query[2] & 0x79) | 0x04);
    out.push(0x80);
    out.extend_from_slice(&1u16.to_be_bytes());
    out.extend_from_slice(&(answers.len() as u16).to_be_bytes());
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(&query[12..q.end]);
    for (ty, rdata) in answers {
        // The name is the question's: a pointer to offset 12.
        out.extend_from_slice(&[0xc0, 0x0c]);
        out.extend_from_slice(&ty.to_be_bytes());
        out.extend_from_slice(&CLASS_IN.to_be_bytes());
        out.extend_from_slice(&TTL.to_be_bytes());
        out.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
        out.extend_from_slice(rdata);
    }
    out
}

fn encode_name(name: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for l in name.split('.').filter(|l| !l.is_empty()) {
        let l = &l.as_bytes()[..l.len().min(63)];
        out.push(l.len() as u8);
        out.extend_from_slice(l);
    }
    out.push(0);
    out
}

/// `4.3.2.1.in-addr.arpa` → 1.2.3.4
fn ptr_address(name: &str) -> Option<Ipv4Addr> {
    let rest = name.strip_suffix(".in-addr.arpa")?;
    let o: Vec<u8> = rest
        .split('.')
        .map(str::parse)
        .collect::<Result<_, _>>()
        .ok()?;
    (o.len() == 4).then(|| Ipv4Addr::new(o[3], o[2], o[1], o[0]))
}

/// Our own answer to `query`, when the name is one of ours.
fn local_answer(query: &[u8], networks: &[String]) -> Option<Vec<u8>> {
    let q = question(query)?;
    if q.qtype == TYPE_PTR {
        let ip = ptr_address(&q.name)?;
        let name = reverse(networks, ip)?;
        return Some(answer(query, &q, &[(TYPE_PTR, encode_name(&name))]));
    }
    let ips = lookup(networks, &q.name);
    if ips.is_empty() {
        return None;
    }
    // A name of ours has no records of other types (AAAA, MX): an empty
    // answer, not a relay that would leak the name upstream.
    let rr: Vec<(u16, Vec<u8>)> = if q.qtype == TYPE_A {
        // What fits a plain 512-byte UDP answer (there is no TCP to retry
        // over), starting at a random one so that many containers behind
        // one alias share the load, as round-robin DNS does.
        let fit = (512usize.saturating_sub(q.end) / 16).max(1);
        let start = random_u16() as usize % ips.len();
        ips.iter()
            .cycle()
            .skip(start)
            .take(ips.len().min(fit))
            .map(|ip| (TYPE_A, ip.octets().to_vec()))
            .collect()
    } else {
        Vec::new()
    };
    Some(answer(query, &q, &rr))
}

/// A SERVFAIL for `query` (no upstream could be asked).
fn servfail(query: &[u8]) -> Option<Vec<u8>> {
    if query.len() < 12 {
        return None;
    }
    let mut out = query.to_vec();
    out[2] = 0x80 | (query[2] & 0x79);
    out[3] = 0x82;
    Some(out)
}

struct Pending {
    client: SocketAddr,
    id: [u8; 2],
    /// The server asked: only its answer counts.
    server: SocketAddr,
    at: Instant,
}

/// Datagrams handled per wake-up of the monitor: a container flooding its
/// resolver must not keep the monitor from its other work.
const BATCH: usize = 64;

fn random_u16() -> u16 {
    let mut b = [0u8; 2];
    if let Ok(mut f) = fs::File::open("/dev/urandom") {
        let _ = std::io::Read::read_exact(&mut f, &mut b);
    }
    u16::from_ne_bytes(b)
}

/// A running resolver for one container.
pub struct Resolver {
    local: UdpSocket,
    up: UdpSocket,
    upstreams: Vec<SocketAddr>,
    pending: HashMap<u16, Pending>,
    buf: Vec<u8>,
}

impl Resolver {
    /// Listens on 127.0.0.11:53 inside the namespace at `netns`; relays
    /// to `upstreams` (port 53) from the calling thread's namespace.
    pub fn new(netns: &Path, upstreams: &[Ipv4Addr]) -> crate::Result<Resolver> {
        let local = crate::bind_udp_in(netns, SocketAddr::from((ADDRESS, 53)))?;
        let up = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).map_err(crate::io(
            "bind the resolver's upstream socket",
            Path::new("-"),
        ))?;
        for s in [&local, &up] {
            s.set_nonblocking(true)
                .map_err(crate::io("set non-blocking", Path::new("-")))?;
        }
        Ok(Resolver {
            local,
            up,
            upstreams: upstreams
                .iter()
                .map(|ip| SocketAddr::from((*ip, 53)))
                .collect(),
            pending: HashMap::new(),
            buf: vec![0; 65535],
        })
    }

    /// The descriptors to poll for input: the container side, upstream.
    pub fn fds(&self) -> [RawFd; 2] {
        [self.local.as_raw_fd(), self.up.as_raw_fd()]
    }

    /// Answers or relays every question waiting on the container side;
    /// `networks` are the networks whose names the container sees.
    pub fn serve_local(&mut self, networks: &[String]) {
        for _ in 0..BATCH {
            let (n, client) = match self.local.recv_from(&mut self.buf) {
                Ok(v) => v,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => return,
            };
            let query = self.buf[..n].to_vec();
            if let Some(reply) = local_answer(&query, networks) {
                let _ = self.local.send_to(&reply, client);
                continue;
            }
            self.relay(&query, client);
        }
    }

    fn relay(&mut self, query: &[u8], client: SocketAddr) {
        let now = Instant::now();
        self.pending
            .retain(|_, p| now.duration_since(p.at) < PENDING_TTL);
        let Some(first) = self.upstreams.first().copied() else {
            if let Some(r) = servfail(query) {
                let _ = self.local.send_to(&r, client);
            }
            return;
        };
        if query.len() < 12 || self.pending.len() >= PENDING_MAX {
            return;
        }
        // Our own random id upstream: answers cannot be confused between
        // clients, nor guessed by whoever else can send to our socket.
        let id = (0..8)
            .map(|_| random_u16())
            .find(|i| !self.pending.contains_key(i))
            .unwrap_or_else(random_u16);
        let mut msg = query.to_vec();
        msg[..2].copy_from_slice(&id.to_be_bytes());
        // Client retries come with the same id: spread them over the
        // upstreams so one dead server does not fail every lookup.
        let server = self
            .pending
            .values()
            .filter(|p| p.client == client && p.id == [query[0], query[1]])
            .count();
        let server = self
            .upstreams
            .get(server % self.upstreams.len())
            .copied()
            .unwrap_or(first);
        if self.up.send_to(&msg, server).is_ok() {
            self.pending.insert(
                id,
                Pending {
                    client,
                    id: [query[0], query[1]],
                    server,
                    at: now,
                },
            );
        }
    }

    /// Hands answers from upstream back to the clients that asked.
    pub fn serve_upstream(&mut self) {
        for _ in 0..BATCH {
            let (n, from) = match self.up.recv_from(&mut self.buf) {
                Ok(v) => v,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => return,
            };
            if n < 12 || !self.upstreams.contains(&from) {
                continue;
            }
            let id = u16::from_be_bytes([self.buf[0], self.buf[1]]);
            if self.pending.get(&id).is_none_or(|p| p.server != from) {
                continue;
            }
            let Some(p) = self.pending.remove(&id) else {
                continue;
            };
            self.buf[..2].copy_from_slice(&p.id);
            let _ = self.local.send_to(&self.buf[..n], p.client);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(name: &str, qtype: u16) -> Vec<u8> {
        let mut m = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        m.extend(encode_name(name));
        m.extend(qtype.to_be_bytes());
        m.extend(CLASS_IN.to_be_bytes());
        m
    }

    #[test]
    fn parses_a_question() {
        let q = question(&query("Web.Example", TYPE_A)).unwrap();
        assert_eq!(q.name, "web.example");
        assert_eq!(q.qtype, TYPE_A);
        assert_eq!(q.end, 12 + 13 + 4);
        // Responses and truncated messages are not questions.
        let mut r = query("a", TYPE_A);
        r[2] |= 0x80;
        assert!(question(&r).is_none());
        assert!(question(&query("abc", TYPE_A)[..15]).is_none());
    }

    #[test]
    fn answers_with_pointer_to_the_question() {
        let qm = query("web", TYPE_A);
        let q = question(&qm).unwrap();
        let a = answer(&qm, &q, &[(TYPE_A, vec![10, 0, 0, 2])]);
        assert_eq!(&a[..2], &[0x12, 0x34]);
        assert_eq!(a[2] & 0x80, 0x80, "QR set");
        assert_eq!(a[2] & 0x01, 0x01, "RD copied");
        assert_eq!(a[3] & 0x0f, 0, "NOERROR");
        assert_eq!(u16::from_be_bytes([a[6], a[7]]), 1);
        let rr = &a[q.end..];
        assert_eq!(&rr[..2], &[0xc0, 0x0c]);
        assert_eq!(&rr[rr.len() - 4..], &[10, 0, 0, 2]);
    }

    #[test]
    fn reads_reverse_names() {
        assert_eq!(
            ptr_address("4.3.2.1.in-addr.arpa"),
            Some(Ipv4Addr::new(1, 2, 3, 4))
        );
        assert_eq!(ptr_address("3.2.1.in-addr.arpa"), None);
        assert_eq!(ptr_address("example.com"), None);
    }

    #[test]
    fn many_addresses_fit_a_udp_answer() {
        let dir = format!("test-many-{}", std::process::id());
        let names = vec!["many".to_string()];
        for i in 0..40u8 {
            publish(
                &dir,
                &format!("c{i}"),
                Ipv4Addr::new(10, 0, 0, i + 1),
                &names,
            )
            .unwrap();
        }
        let q = query("many", TYPE_A);
        let a = local_answer(&q, std::slice::from_ref(&dir)).unwrap();
        remove_network(&dir);
        assert!(a.len() <= 512, "{}", a.len());
        let n = u16::from_be_bytes([a[6], a[7]]);
        assert!((20..=31).contains(&n), "{n} answers");
    }

    #[test]
    fn servfail_keeps_the_id() {
        let s = servfail(&query("x", TYPE_A)).unwrap();
        assert_eq!(&s[..2], &[0x12, 0x34]);
        assert_eq!(s[3] & 0x0f, 2);
    }
}
