//! info, system df, version.

use anyhow::Result;
use clap::{Args, Subcommand};
use serde_json::{json, Value};

use super::Ctx;
use crate::output::{print_rows, print_template};
use crate::render::{bytes_size, human_size};

#[derive(Args)]
pub struct InfoArgs {
    /// Format output using a Go template or `json`
    #[arg(short, long)]
    format: Option<String>,
}

#[derive(Args)]
pub struct DfArgs {
    /// Format output using a Go template, `table …` or `json`
    #[arg(long)]
    format: Option<String>,
    /// Show detailed information on space usage (accepted; same as default for now)
    #[arg(short, long)]
    verbose: bool,
}

#[derive(Args)]
pub struct VersionArgs {
    /// Format output using a Go template or `json`
    #[arg(short, long)]
    format: Option<String>,
}

#[derive(Subcommand)]
pub enum SystemCommand {
    /// Show disk usage
    Df(DfArgs),
    /// Display system-wide information
    Info(InfoArgs),
    /// Find and remove what crashed containers left behind (network namespaces, interfaces, rules, leases)
    Check(CheckArgs),
    /// Get real time events from the server
    Events(EventsArgs),
}

#[derive(Args)]
pub struct EventsArgs {
    /// Filter output based on conditions provided
    #[arg(short, long)]
    filter: Vec<String>,
    /// Format output using a custom template: 'json' or a Go template
    #[arg(long)]
    format: Option<String>,
    /// Show all events created since timestamp
    #[arg(long)]
    since: Option<String>,
    /// Stream events until this timestamp
    #[arg(long)]
    until: Option<String>,
}

/// `events`: the journal's events, replayed and followed, as Docker prints
/// them.
pub fn events(ctx: &Ctx, a: EventsArgs) -> Result<u8> {
    use std::io::Write;
    let engine = ctx.engine()?;
    let now = berth_oci::time::now_nanos();
    let when = |v: &Option<String>| -> Result<Option<i64>> {
        v.as_deref()
            .map(|s| {
                berth_oci::time::parse_timestamp(s, now)
                    .ok_or_else(|| anyhow::anyhow!("invalid value for time: {s:?}"))
            })
            .transpose()
    };
    let opts = berth_engine::EventsOptions {
        since: when(&a.since)?,
        until: when(&a.until)?,
        filter: berth_engine::EventFilter::parse(&a.filter)?,
    };
    let format = a.format.as_deref().map(crate::output::normalise_format);
    // `{{json .}}` is Docker's wire JSON; other templates see Go's field
    // names (`.ID`, `.Status`, `.Actor.Attributes.name`).
    let raw_json = format.is_some_and(|f| f.trim() == "{{json .}}");
    let template = match format {
        Some(f) if !raw_json => Some(crate::render::Template::parse(f)?),
        _ => None,
    };
    let mut out = std::io::stdout().lock();
    let mut failed: Option<anyhow::Error> = None;
    engine.events(&opts, |e| {
        let Some(e) = e else {
            return true;
        };
        let line = if raw_json {
            Ok(e.to_docker_json().to_string())
        } else if let Some(t) = &template {
            let d = e.to_docker_json();
            let v = json!({
                "Status": d.get("status").cloned().unwrap_or(json!("")),
                "ID": d.get("id").cloned().unwrap_or(json!("")),
                "From": d.get("from").cloned().unwrap_or(json!("")),
                "Type": d["Type"], "Action": d["Action"], "Actor": d["Actor"],
                "Scope": d["scope"], "Time": d["time"], "TimeNano": d["timeNano"],
            });
            t.render(&v).map_err(anyhow::Error::from)
        } else {
            Ok(e.to_line())
        };
        match line.and_then(|l| writeln!(out, "{l}").map_err(anyhow::Error::from)) {
            Ok(()) => true,
            Err(err) => {
                failed = Some(err);
                false
            }
        }
    })?;
    match failed {
        Some(e) => Err(e),
        None => Ok(0),
    }
}

#[derive(Args)]
pub struct CheckArgs {
    /// Only report, remove nothing
    #[arg(long)]
    dry_run: bool,
}

fn check(ctx: &Ctx, a: CheckArgs) -> Result<u8> {
    let found = ctx.engine()?.check_network_leftovers(!a.dry_run)?;
    if found.is_empty() {
        println!("No leftovers found");
        return Ok(0);
    }
    for f in &found {
        println!("{f}");
    }
    if a.dry_run {
        println!(
            "{} leftover(s) found; run without --dry-run to remove them",
            found.len()
        );
        Ok(1)
    } else {
        println!("{} leftover(s) removed", found.len());
        Ok(0)
    }
}

pub fn system(ctx: &Ctx, c: SystemCommand) -> Result<u8> {
    match c {
        SystemCommand::Events(a) => events(ctx, a),
        SystemCommand::Df(a) => df(ctx, a),
        SystemCommand::Info(a) => info(ctx, a),
        SystemCommand::Check(a) => check(ctx, a),
    }
}

pub fn info(ctx: &Ctx, a: InfoArgs) -> Result<u8> {
    let info = ctx.engine()?.info()?;
    if let Some(f) = &a.format {
        print_template(f, &[serde_json::to_value(&info)?])?;
        return Ok(0);
    }
    let mut s = String::new();
    s += "Client:\n";
    s += &format!(" Version:    {}\n", berth_engine::VERSION);
    s += " Context:    default\n\nServer:\n";
    s += &format!(" Containers: {}\n", info.containers);
    s += &format!(
        "  Running: {}\n  Paused: {}\n  Stopped: {}\n",
        info.containers_running, info.containers_paused, info.containers_stopped
    );
    s += &format!(" Images: {}\n", info.images);
    s += &format!(" Server Version: {}\n", info.server_version);
    s += &format!(" Storage Driver: {}\n", info.driver);
    for [k, v] in &info.driver_status {
        s += &format!("  {k}: {v}\n");
    }
    s += &format!(" Cgroup Driver: {}\n", info.cgroup_driver);
    s += &format!(" Cgroup Version: {}\n", info.cgroup_version);
    s += &format!(" Default Runtime: {}\n", info.default_runtime);
    s += &format!(" Kernel Version: {}\n", info.kernel_version);
    s += &format!(" Operating System: {}\n", info.operating_system);
    s += &format!(" OSType: {}\n", info.os_type);
    s += &format!(" Architecture: {}\n", info.architecture);
    s += &format!(" CPUs: {}\n", info.ncpu);
    s += &format!(" Total Memory: {}\n", bytes_size(info.mem_total as f64));
    s += &format!(" Name: {}\n", info.name);
    s += &format!(" Docker Root Dir: {}\n", info.docker_root_dir);
    s += &format!(" Berth Run Dir: {}\n", info.berth_run_dir);
    print!("{s}");
    Ok(0)
}

fn reclaimable(bytes: u64, total: u64) -> String {
    match (100 * bytes).checked_div(total) {
        Some(pct) => format!("{} ({pct}%)", human_size(bytes as f64)),
        None => human_size(bytes as f64),
    }
}

pub fn df(ctx: &Ctx, a: DfArgs) -> Result<u8> {
    let _ = a.verbose;
    let du = ctx.engine()?.disk_usage()?;
    let row = |kind: &str, total: u64, active: u64, size: u64, reclaim: u64| -> Value {
        json!({
            "Type": kind,
            "TotalCount": total.to_string(),
            "Active": active.to_string(),
            "Size": human_size(size as f64),
            "Reclaimable": reclaimable(reclaim, size),
        })
    };
    let rows = vec![
        row(
            "Images",
            du.images_total,
            du.images_active,
            du.images_size,
            du.images_reclaimable,
        ),
        row(
            "Containers",
            du.containers_total,
            du.containers_active,
            0,
            0,
        ),
        row(
            "Local Volumes",
            du.volumes_total,
            du.volumes_active,
            du.volumes_size,
            du.volumes_reclaimable,
        ),
        row(
            "Build Cache",
            du.build_cache_total,
            0,
            du.build_cache_size,
            du.build_cache_size,
        ),
    ];
    let header = json!({
        "Type": "TYPE", "TotalCount": "TOTAL", "Active": "ACTIVE", "Size": "SIZE", "Reclaimable": "RECLAIMABLE",
    });
    print_rows(
        a.format.as_deref(),
        "table {{.Type}}\t{{.TotalCount}}\t{{.Active}}\t{{.Size}}\t{{.Reclaimable}}",
        &header,
        &rows,
    )?;
    Ok(0)
}

pub fn version(ctx: &Ctx, a: VersionArgs) -> Result<u8> {
    let _ = ctx;
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    let os_arch = format!("linux/{arch}");
    let v = json!({
        "Client": {
            "Version": berth_engine::VERSION,
            "ApiVersion": berth_engine::API_VERSION,
            "Os": "linux",
            "Arch": arch,
        },
        "Server": {
            "Version": berth_engine::VERSION,
            "ApiVersion": berth_engine::API_VERSION,
            "MinAPIVersion": "1.24",
            "Os": "linux",
            "Arch": arch,
        },
    });
    if let Some(f) = &a.format {
        print_template(f, &[v])?;
        return Ok(0);
    }
    println!("Client:");
    println!(" Version:           {}", berth_engine::VERSION);
    println!(" API version:       {}", berth_engine::API_VERSION);
    println!(" OS/Arch:           {os_arch}");
    println!();
    println!("Server: Berth Engine");
    println!(" Engine:");
    println!("  Version:          {}", berth_engine::VERSION);
    println!(
        "  API version:      {} (minimum version 1.24)",
        berth_engine::API_VERSION
    );
    println!("  OS/Arch:          {os_arch}");
    Ok(0)
}
