//! `volume create|ls|inspect|rm|prune`.

use std::collections::BTreeMap;
use std::io::{self, Write};

use anyhow::Result;
use clap::{Args, Subcommand};
use serde_json::{json, Value};

use super::Ctx;
use crate::output::{inspect_each, print_error, print_rows};
use crate::render::human_size;

#[derive(Subcommand)]
pub enum VolumeCommand {
    /// Create a volume
    Create(CreateArgs),
    /// List volumes
    #[command(visible_alias = "list")]
    Ls(LsArgs),
    /// Display detailed information on one or more volumes
    Inspect(InspectArgs),
    /// Remove one or more volumes
    #[command(visible_alias = "remove")]
    Rm(RmArgs),
    /// Remove unused local volumes
    Prune(PruneArgs),
}

#[derive(Args)]
pub struct CreateArgs {
    name: Option<String>,
    /// Specify volume driver name
    #[arg(short, long)]
    driver: Option<String>,
    /// Set metadata for a volume
    #[arg(long)]
    label: Vec<String>,
}

#[derive(Args)]
pub struct LsArgs {
    /// Only display volume names
    #[arg(short, long)]
    quiet: bool,
    /// Provide filter values (e.g. "dangling=true")
    #[arg(short, long = "filter")]
    filter: Vec<String>,
    /// Format output using a Go template, `table …` or `json`
    #[arg(long)]
    format: Option<String>,
}

#[derive(Args)]
pub struct InspectArgs {
    #[arg(required = true)]
    volumes: Vec<String>,
    #[arg(short, long)]
    format: Option<String>,
}

#[derive(Args)]
pub struct RmArgs {
    /// Force the removal of one or more volumes
    #[arg(short, long)]
    force: bool,
    #[arg(required = true)]
    volumes: Vec<String>,
}

#[derive(Args)]
pub struct PruneArgs {
    /// Remove all unused volumes, not just anonymous ones
    #[arg(short, long)]
    all: bool,
    /// Do not prompt for confirmation
    #[arg(short, long)]
    force: bool,
}

pub fn volume(ctx: &Ctx, c: VolumeCommand) -> Result<u8> {
    let engine = ctx.engine()?;
    match c {
        VolumeCommand::Create(a) => {
            let labels: BTreeMap<String, String> = a
                .label
                .iter()
                .map(|l| {
                    let (k, v) = l.split_once('=').unwrap_or((l, ""));
                    (k.to_string(), v.to_string())
                })
                .collect();
            let v = engine.create_volume(a.name.as_deref(), labels, a.driver.as_deref())?;
            println!("{}", v.name);
            Ok(0)
        }
        VolumeCommand::Ls(a) => {
            let mut dangling = None;
            for f in &a.filter {
                match f.split_once('=') {
                    Some(("dangling", v)) => {
                        dangling = Some(match v {
                            "true" | "1" => true,
                            "false" | "0" => false,
                            _ => anyhow::bail!("invalid filter 'dangling={v}'"),
                        })
                    }
                    _ => anyhow::bail!("invalid filter '{f}'"),
                }
            }
            let list = engine.list_volumes(dangling)?;
            if a.quiet {
                let mut out = io::stdout().lock();
                for v in &list {
                    writeln!(out, "{}", v.name)?;
                }
                return Ok(0);
            }
            let rows: Vec<Value> = list
                .iter()
                .map(|v| {
                    json!({
                        "Driver": v.driver, "Name": v.name, "Mountpoint": v.mountpoint,
                        "Scope": "local", "Labels": v.labels.iter().map(|(k, x)| format!("{k}={x}")).collect::<Vec<_>>().join(","),
                    })
                })
                .collect();
            let header = json!({"Driver": "DRIVER", "Name": "VOLUME NAME", "Mountpoint": "MOUNTPOINT", "Scope": "SCOPE", "Labels": "LABELS"});
            print_rows(
                a.format.as_deref(),
                "table {{.Driver}}\t{{.Name}}",
                &header,
                &rows,
            )?;
            Ok(0)
        }
        VolumeCommand::Inspect(a) => inspect_each(&a.volumes, a.format.as_deref(), |n| {
            engine.volume(n).map(|v| engine.inspect_volume(&v))
        }),
        VolumeCommand::Rm(a) => {
            let mut code = 0;
            for n in &a.volumes {
                match engine.remove_volume(n, a.force) {
                    Ok(()) => println!("{n}"),
                    Err(e) => {
                        print_error(&e.into());
                        code = 1;
                    }
                }
            }
            Ok(code)
        }
        VolumeCommand::Prune(a) => {
            if !a.force && !super::confirm("WARNING! This will remove anonymous local volumes not used by at least one container.")? {
                return Ok(0);
            }
            let (gone, bytes) = engine.prune_volumes(a.all)?;
            let mut out = io::stdout().lock();
            if !gone.is_empty() {
                writeln!(out, "Deleted Volumes:")?;
                for n in &gone {
                    writeln!(out, "{n}")?;
                }
                writeln!(out)?;
            }
            writeln!(out, "Total reclaimed space: {}", human_size(bytes as f64))?;
            Ok(0)
        }
    }
}
