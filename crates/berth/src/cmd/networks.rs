//! `network create|ls|inspect|rm|prune|connect|disconnect`.

use std::collections::BTreeMap;
use std::io::{self, Write};

use anyhow::{bail, Result};
use berth_engine::{EndpointConfig, Network, NetworkCreateOptions};
use clap::{Args, Subcommand};
use serde_json::{json, Value};

use super::Ctx;
use crate::output::{inspect_each, print_error, print_rows};

#[derive(Subcommand)]
pub enum NetworkCommand {
    /// Create a network
    Create(CreateArgs),
    /// List networks
    #[command(visible_alias = "list")]
    Ls(LsArgs),
    /// Display detailed information on one or more networks
    Inspect(InspectArgs),
    /// Remove one or more networks
    #[command(visible_alias = "remove")]
    Rm(RmArgs),
    /// Remove all unused networks
    Prune(PruneArgs),
    /// Connect a container to a network
    Connect(ConnectArgs),
    /// Disconnect a container from a network
    Disconnect(DisconnectArgs),
}

#[derive(Args)]
pub struct CreateArgs {
    name: String,
    /// Driver to manage the Network
    #[arg(short, long)]
    driver: Option<String>,
    /// Subnet in CIDR format that represents a network segment
    #[arg(long)]
    subnet: Option<String>,
    /// IPv4 Gateway for the master subnet
    #[arg(long)]
    gateway: Option<String>,
    /// Restrict external access to the network
    #[arg(long)]
    internal: bool,
    /// Set metadata on a network
    #[arg(long)]
    label: Vec<String>,
    /// Set driver specific options
    #[arg(short, long = "opt")]
    opt: Vec<String>,
}

#[derive(Args)]
pub struct LsArgs {
    /// Only display network IDs
    #[arg(short, long)]
    quiet: bool,
    /// Do not truncate the output
    #[arg(long)]
    no_trunc: bool,
    /// Provide filter values (e.g. "driver=bridge")
    #[arg(short, long = "filter")]
    filter: Vec<String>,
    /// Format output using a Go template, `table …` or `json`
    #[arg(long)]
    format: Option<String>,
}

#[derive(Args)]
pub struct InspectArgs {
    #[arg(required = true)]
    networks: Vec<String>,
    #[arg(short, long)]
    format: Option<String>,
}

#[derive(Args)]
pub struct RmArgs {
    /// Do not error if the network does not exist
    #[arg(short, long)]
    force: bool,
    #[arg(required = true)]
    networks: Vec<String>,
}

#[derive(Args)]
pub struct PruneArgs {
    /// Do not prompt for confirmation
    #[arg(short, long)]
    force: bool,
}

#[derive(Args)]
pub struct ConnectArgs {
    network: String,
    container: String,
    /// Add network-scoped alias for the container
    #[arg(long)]
    alias: Vec<String>,
    /// IPv4 address (e.g., "172.30.100.104")
    #[arg(long)]
    ip: Option<String>,
}

#[derive(Args)]
pub struct DisconnectArgs {
    network: String,
    container: String,
    /// Force the container to disconnect from a network
    #[arg(short, long)]
    force: bool,
}

fn pairs(items: &[String]) -> BTreeMap<String, String> {
    items
        .iter()
        .map(|l| {
            let (k, v) = l.split_once('=').unwrap_or((l, ""));
            (k.to_string(), v.to_string())
        })
        .collect()
}

/// Docker's `network ls` filters: name (substring), id (prefix), driver,
/// type (builtin|custom), label (key or key=value).
fn matches(n: &Network, filters: &[(String, String)]) -> Result<bool> {
    let mut by_key: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (k, v) in filters {
        by_key.entry(k.as_str()).or_default().push(v.as_str());
    }
    for (k, vals) in by_key {
        let ok = match k {
            "name" => vals.iter().any(|v| n.name.contains(v)),
            "id" => vals.iter().any(|v| n.id.starts_with(v)),
            "driver" => vals.iter().any(|v| n.driver == *v),
            "type" => vals.iter().any(|v| match *v {
                "builtin" => n.builtin,
                "custom" => !n.builtin,
                _ => false,
            }),
            "label" => vals.iter().all(|v| match v.split_once('=') {
                Some((lk, lv)) => n.labels.get(lk).is_some_and(|x| x == lv),
                None => n.labels.contains_key(*v),
            }),
            _ => bail!("invalid filter '{k}'"),
        };
        if !ok {
            return Ok(false);
        }
    }
    Ok(true)
}

pub fn network(ctx: &Ctx, c: NetworkCommand) -> Result<u8> {
    let engine = ctx.engine()?;
    match c {
        NetworkCommand::Create(a) => {
            let n = engine.create_network(&NetworkCreateOptions {
                name: a.name,
                driver: a.driver,
                subnet: a.subnet,
                gateway: a.gateway,
                internal: a.internal,
                labels: pairs(&a.label),
                options: pairs(&a.opt),
            })?;
            println!("{}", n.id);
            Ok(0)
        }
        NetworkCommand::Ls(a) => {
            let mut filters = Vec::new();
            for f in &a.filter {
                let Some((k, v)) = f.split_once('=') else {
                    bail!("bad format of filter (expected name=value)");
                };
                filters.push((k.to_string(), v.to_string()));
            }
            let mut list = Vec::new();
            for n in engine.networks()? {
                if matches(&n, &filters)? {
                    list.push(n);
                }
            }
            let id = |n: &Network| {
                if a.no_trunc {
                    n.id.clone()
                } else {
                    n.id[..12].to_string()
                }
            };
            if a.quiet {
                let mut out = io::stdout().lock();
                for n in &list {
                    writeln!(out, "{}", id(n))?;
                }
                return Ok(0);
            }
            let rows: Vec<Value> = list
                .iter()
                .map(|n| {
                    json!({
                        "ID": id(n), "Name": n.name, "Driver": n.driver, "Scope": "local",
                        "IPv6": "false", "Internal": n.internal.to_string(),
                        "Labels": n.labels.iter().map(|(k, x)| format!("{k}={x}")).collect::<Vec<_>>().join(","),
                        "CreatedAt": berth_oci::time::format_rfc3339(n.created),
                    })
                })
                .collect();
            let header = json!({"ID": "NETWORK ID", "Name": "NAME", "Driver": "DRIVER", "Scope": "SCOPE",
                "IPv6": "IPV6", "Internal": "INTERNAL", "Labels": "LABELS", "CreatedAt": "CREATED AT"});
            print_rows(
                a.format.as_deref(),
                "table {{.ID}}\t{{.Name}}\t{{.Driver}}\t{{.Scope}}",
                &header,
                &rows,
            )?;
            Ok(0)
        }
        NetworkCommand::Inspect(a) => inspect_each(&a.networks, a.format.as_deref(), |n| {
            engine.inspect_network(n)
        }),
        NetworkCommand::Rm(a) => {
            let mut code = 0;
            for n in &a.networks {
                match engine.remove_network(n) {
                    Ok(_) => println!("{n}"),
                    Err(e) if a.force && e.kind() == berth_engine::ErrorKind::NotFound => {}
                    Err(e) => {
                        print_error(&e.into());
                        code = 1;
                    }
                }
            }
            Ok(code)
        }
        NetworkCommand::Prune(a) => {
            if !a.force
                && !super::confirm(
                    "WARNING! This will remove all custom networks not used by at least one container.",
                )?
            {
                return Ok(0);
            }
            let gone = engine.prune_networks()?;
            if !gone.is_empty() {
                let mut out = io::stdout().lock();
                writeln!(out, "Deleted Networks:")?;
                for n in &gone {
                    writeln!(out, "{n}")?;
                }
            }
            Ok(0)
        }
        NetworkCommand::Connect(a) => {
            engine.connect_network(
                &a.network,
                &a.container,
                EndpointConfig {
                    aliases: a.alias,
                    ipv4_address: a.ip.unwrap_or_default(),
                    mac_address: String::new(),
                },
            )?;
            Ok(0)
        }
        NetworkCommand::Disconnect(a) => {
            engine.disconnect_network(&a.network, &a.container, a.force)?;
            Ok(0)
        }
    }
}
