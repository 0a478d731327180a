//! nftables rules, applied with `nft -f -` in one transaction each.
//!
//! Everything lives in the table `ip berth`: base chains for DNAT (from
//! outside and from the host itself) and masquerading, and one chain per
//! container holding its published ports, jumped to from the base chains.
//! Rules are tagged with the container's short id so they can be found
//! and removed, also after a crash.

use std::io::Write;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};

use crate::{Error, Result};

const TABLE: &str = "ip berth";

fn nft(script: &str) -> Result<String> {
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            Error::Nft(format!(
                "cannot run nft (install the nftables package): {e}"
            ))
        })?;
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(script.as_bytes())
        .map_err(|e| Error::Nft(e.to_string()))?;
    let out = child
        .wait_with_output()
        .map_err(|e| Error::Nft(e.to_string()))?;
    if !out.status.success() {
        return Err(Error::Nft(
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn list(args: &[&str]) -> String {
    Command::new("nft")
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

/// The table and its base chains (idempotent), as lines to begin a script
/// with: each `nft` run costs a few milliseconds of a container's start.
fn base_script() -> String {
    format!(
        "add table {TABLE}\n\
         add chain {TABLE} prerouting {{ type nat hook prerouting priority dstnat; }}\n\
         add chain {TABLE} output {{ type nat hook output priority -100; }}\n\
         add chain {TABLE} postrouting {{ type nat hook postrouting priority srcnat; }}\n\
         add chain {TABLE} forward {{ type filter hook forward priority filter; }}\n\
         add chain {TABLE} input {{ type filter hook input priority filter; }}\n"
    )
}

/// Masquerading for a network's outbound traffic (and for host loopback
/// traffic DNATed into it), or isolation for an internal one; either way
/// no traffic between two of our bridges (Docker isolates networks).
pub fn ensure_network(
    tag: &str,
    bridge: &str,
    subnet: Ipv4Addr,
    prefix: u8,
    internal: bool,
) -> Result<()> {
    let existing = list(&["-a", "list", "table", "ip", "berth"]);
    let mut s = String::new();
    if !existing.contains("chain input {") {
        s += &base_script();
    }
    if !existing.contains("\"base:localnet\"") {
        // route_localnet (which published ports on 127.0.0.1 need) would
        // also let a container reach services on the host's loopback:
        // only DNATed traffic may arrive there from outside lo. And a
        // published port is reachable from every network (Docker's
        // proxy makes it so), whatever isolates the networks otherwise.
        s += &format!(
            "add rule {TABLE} input iifname != \"lo\" ip daddr 127.0.0.0/8 ct status & dnat == 0 drop comment \"base:localnet\"\n\
             insert rule {TABLE} forward ct status dnat accept comment \"base:dnat\"\n"
        );
    }
    if existing.contains(&format!("\"net:{tag}\"")) {
        return if s.is_empty() {
            Ok(())
        } else {
            nft(&s).map(drop)
        };
    }
    for other in ["br-*", "berth0"] {
        s += &format!(
            "add rule {TABLE} forward iifname \"{bridge}\" oifname != \"{bridge}\" oifname \"{other}\" drop comment \"net:{tag}\"\n"
        );
    }
    if internal {
        // Not the outside, and not the host itself (its address on the
        // bridge included).
        s += &format!(
            "add rule {TABLE} forward iifname \"{bridge}\" oifname != \"{bridge}\" drop comment \"net:{tag}\"\n\
             add rule {TABLE} forward oifname \"{bridge}\" iifname != \"{bridge}\" drop comment \"net:{tag}\"\n\
             add rule {TABLE} input iifname \"{bridge}\" drop comment \"net:{tag}\"\n"
        );
    } else {
        // Outbound, and hairpin: a container reaching a published port
        // of a neighbour through the host's address must see the answer
        // come back the same way.
        s += &format!(
            "add rule {TABLE} postrouting ip saddr {subnet}/{prefix} ip daddr != {subnet}/{prefix} masquerade comment \"net:{tag}\"\n\
             add rule {TABLE} postrouting oifname \"{bridge}\" ct status dnat ip saddr {subnet}/{prefix} masquerade comment \"net:{tag}\"\n"
        );
    }
    s += &format!(
        "add rule {TABLE} postrouting oifname \"{bridge}\" ip saddr 127.0.0.0/8 masquerade comment \"net:{tag}\"\n"
    );
    nft(&s).map(drop)
}

/// Removes a network's rules.
pub fn remove_network(tag: &str) -> Result<()> {
    remove_tagged(&format!("net:{tag}"))
}

/// One published port.
#[derive(Debug, Clone, PartialEq)]
pub struct PortMap {
    pub host_ip: Option<Ipv4Addr>,
    pub host_port: u16,
    pub container_port: u16,
    pub proto: String,
}

/// DNAT rules for a container's published ports.
pub fn publish(tag: &str, ip: Ipv4Addr, ports: &[PortMap]) -> Result<()> {
    if ports.is_empty() {
        return Ok(());
    }
    let chain = format!("ctr-{tag}");
    let mut s = base_script();
    s += &format!("add chain {TABLE} {chain}\nflush chain {TABLE} {chain}\n");
    for p in ports {
        let dst = match p.host_ip {
            Some(h) if !h.is_unspecified() => format!("ip daddr {h} "),
            _ => "fib daddr type local ".to_string(),
        };
        s += &format!(
            "add rule {TABLE} {chain} {dst}{proto} dport {hp} dnat to {ip}:{cp}\n",
            proto = p.proto,
            hp = p.host_port,
            cp = p.container_port
        );
    }
    s += &format!(
        "add rule {TABLE} prerouting jump {chain} comment \"ctr:{tag}\"\n\
         add rule {TABLE} output jump {chain} comment \"ctr:{tag}\"\n"
    );
    nft(&s).map(drop)
}

/// Removes a container's rules and chain (quiet when there are none).
pub fn unpublish(tag: &str) -> Result<()> {
    // One listing serves both the jumps and the chain.
    let listing = list(&["-a", "list", "table", "ip", "berth"]);
    let chain = format!("ctr-{tag}");
    let mut s = deletions(&listing, &format!("ctr:{tag}"));
    if listing.contains(&format!("chain {chain} {{")) {
        s += &format!("delete chain {TABLE} {chain}\n");
    }
    if s.is_empty() {
        return Ok(());
    }
    nft(&s).map(drop)
}

/// Deletes every rule of the table whose comment is `comment`.
fn remove_tagged(comment: &str) -> Result<()> {
    let s = deletions(&list(&["-a", "list", "table", "ip", "berth"]), comment);
    if s.is_empty() {
        return Ok(());
    }
    nft(&s).map(drop)
}

/// `delete rule` lines for the rules of `listing` commented `comment`.
fn deletions(listing: &str, comment: &str) -> String {
    let mut chain = String::new();
    let mut s = String::new();
    let needle = format!("comment \"{comment}\"");
    for line in listing.lines() {
        let t = line.trim();
        if let Some(rest) = t.strip_prefix("chain ") {
            chain = rest.split_whitespace().next().unwrap_or("").to_string();
        } else if t.contains(&needle) {
            if let Some(h) = t.rsplit_once("# handle ").map(|(_, h)| h.trim()) {
                s += &format!("delete rule {TABLE} {chain} handle {h}\n");
            }
        }
    }
    s
}

/// Tags of containers that still have rules (for leftover checks).
pub fn container_tags() -> Vec<String> {
    list(&["list", "chains", "ip"])
        .lines()
        .filter_map(|l| l.trim().strip_prefix("chain ctr-"))
        .map(|r| r.split_whitespace().next().unwrap_or("").to_string())
        .collect()
}
