//! Image commands: import, images, inspect, tag, rmi, history, save, load, prune.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use berth_engine::{ImageFilter, ImportOptions, RemovedItem};
use berth_oci::time;
use clap::{Args, Subcommand};
use serde_json::{json, Value};

use super::{isatty, Ctx};
use crate::output::{ellipsis, go_time, print_inspected, print_rows, short_id};
use crate::render::human_size_precision;

#[derive(Args)]
pub struct ImportArgs {
    /// Tarball to import (`-` for STDIN), plain or gzip-compressed
    file: String,
    /// Name for the new image
    reference: Option<String>,
    /// Apply a Dockerfile instruction to the image config
    #[arg(short = 'c', long = "change")]
    changes: Vec<String>,
    /// Set a commit message for the imported image
    #[arg(short, long)]
    message: Option<String>,
    /// Set platform (os/arch[/variant])
    #[arg(long)]
    platform: Option<String>,
}

#[derive(Args)]
pub struct ImagesArgs {
    /// Only images matching this reference
    reference: Option<String>,
    /// Show all images (default hides intermediate images)
    #[arg(short, long)]
    all: bool,
    /// Only show image IDs
    #[arg(short, long)]
    quiet: bool,
    /// Show digests
    #[arg(long)]
    digests: bool,
    /// Don't truncate output
    #[arg(long)]
    no_trunc: bool,
    /// Filter output based on conditions provided (dangling, reference, label, before, since)
    #[arg(short, long = "filter")]
    filter: Vec<String>,
    /// Format output using a Go template, `table …` or `json`
    #[arg(long)]
    format: Option<String>,
}

#[derive(Args)]
pub struct InspectArgs {
    /// Containers, images or volumes to inspect
    #[arg(required = true)]
    names: Vec<String>,
    /// Format output using a Go template or `json`
    #[arg(short, long)]
    format: Option<String>,
    /// Return JSON for the specified type (container, image or volume)
    #[arg(long = "type")]
    kind: Option<String>,
}

#[derive(Args)]
pub struct TagArgs {
    source: String,
    target: String,
}

#[derive(Args)]
pub struct RmiArgs {
    #[arg(required = true)]
    images: Vec<String>,
    /// Force removal of the image
    #[arg(short, long)]
    force: bool,
    /// Do not delete untagged parents (accepted for Docker compatibility)
    #[arg(long)]
    no_prune: bool,
}

#[derive(Args)]
pub struct HistoryArgs {
    image: String,
    /// Print sizes and dates in human readable format
    #[arg(short = 'H', long, default_value_t = true, action = clap::ArgAction::Set)]
    human: bool,
    /// Don't truncate output
    #[arg(long)]
    no_trunc: bool,
    /// Only show image IDs
    #[arg(short, long)]
    quiet: bool,
    /// Format output using a Go template, `table …` or `json`
    #[arg(long)]
    format: Option<String>,
}

#[derive(Args)]
pub struct SaveArgs {
    #[arg(required = true)]
    images: Vec<String>,
    /// Write to a file, instead of STDOUT
    #[arg(short, long)]
    output: Option<PathBuf>,
}

#[derive(Args)]
pub struct LoadArgs {
    /// Read from tar archive file, instead of STDIN
    #[arg(short, long)]
    input: Option<PathBuf>,
    /// Suppress the load output
    #[arg(short, long)]
    quiet: bool,
}

#[derive(Args)]
pub struct PruneArgs {
    /// Remove all unused images, not just dangling ones
    #[arg(short, long)]
    all: bool,
    /// Do not prompt for confirmation
    #[arg(short, long)]
    force: bool,
}

#[derive(Subcommand)]
pub enum ImageCommand {
    /// Build an image from a Dockerfile
    Build(super::build::BuildArgs),
    /// Import the contents from a tarball to create a filesystem image
    Import(ImportArgs),
    /// List images
    #[command(visible_alias = "list")]
    Ls(ImagesArgs),
    /// Display detailed information on one or more images
    Inspect(InspectArgs),
    /// Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE
    Tag(TagArgs),
    /// Remove one or more images
    #[command(visible_alias = "remove")]
    Rm(RmiArgs),
    /// Show the history of an image
    History(HistoryArgs),
    /// Save one or more images to a tar archive
    Save(SaveArgs),
    /// Load an image from a tar archive or STDIN
    Load(LoadArgs),
    /// Remove unused images
    Prune(PruneArgs),
}

pub fn image(ctx: &Ctx, c: ImageCommand) -> Result<u8> {
    match c {
        ImageCommand::Build(a) => super::build::build(ctx, a),
        ImageCommand::Import(a) => import(ctx, a),
        ImageCommand::Ls(a) => images(ctx, a),
        ImageCommand::Inspect(a) => inspect(ctx, a),
        ImageCommand::Tag(a) => tag(ctx, a),
        ImageCommand::Rm(a) => rmi(ctx, a),
        ImageCommand::History(a) => history(ctx, a),
        ImageCommand::Save(a) => save(ctx, a),
        ImageCommand::Load(a) => load(ctx, a),
        ImageCommand::Prune(a) => prune(ctx, a),
    }
}

pub fn import(ctx: &Ctx, a: ImportArgs) -> Result<u8> {
    let engine = ctx.engine()?;
    let opts = ImportOptions {
        reference: a.reference,
        changes: a.changes,
        platform: a.platform,
        message: a.message,
        source: if a.file == "-" {
            "-".into()
        } else {
            a.file.clone()
        },
    };
    let id = if a.file == "-" {
        engine.import(io::stdin().lock(), &opts)
    } else {
        let f = File::open(&a.file).with_context(|| format!("open {}", a.file))?;
        engine.import(f, &opts)
    }
    .with_context(|| {
        format!(
            "importing {}",
            if a.file == "-" { "STDIN" } else { &a.file }
        )
    })?;
    println!("{id}");
    Ok(0)
}

pub fn images(ctx: &Ctx, a: ImagesArgs) -> Result<u8> {
    let engine = ctx.engine()?;
    let mut filters = a.filter.clone();
    if let Some(r) = &a.reference {
        filters.push(format!("reference={r}"));
    }
    let filter = ImageFilter::parse(&filters)?;
    let list = engine.list_images(a.all, &filter)?;
    if a.quiet {
        let mut seen = std::collections::HashSet::new();
        let mut out = io::stdout().lock();
        for img in &list {
            if seen.insert(img.id.clone()) {
                writeln!(out, "{}", short_id(&img.id, a.no_trunc))?;
            }
        }
        return Ok(0);
    }
    let mut rows = Vec::new();
    for img in &list {
        let base = |repo: &str, tag: &str, digest: &str| {
            json!({
                "Containers": "N/A",
                "CreatedAt": go_time(img.created),
                "CreatedSince": time::ago(img.created),
                "Digest": digest,
                "ID": short_id(&img.id, a.no_trunc),
                "Repository": repo,
                "SharedSize": "N/A",
                "Size": human_size_precision(img.size as f64, 3),
                "Tag": tag,
                "UniqueSize": "N/A",
                "VirtualSize": human_size_precision(img.size as f64, 3),
            })
        };
        let digest_for = |repo: &str| -> String {
            img.repo_digests
                .iter()
                .find_map(|d| {
                    d.split_once('@')
                        .filter(|(n, _)| *n == repo)
                        .map(|(_, d)| d.to_string())
                })
                .unwrap_or_else(|| "<none>".into())
        };
        if img.repo_tags.is_empty() {
            let (repo, digest) = match img.repo_digests.first().and_then(|d| d.split_once('@')) {
                Some((n, d)) => (n.to_string(), d.to_string()),
                None => ("<none>".into(), "<none>".into()),
            };
            rows.push(base(&repo, "<none>", &digest));
        }
        for t in &img.repo_tags {
            let (repo, tag) = t.rsplit_once(':').unwrap_or((t, "<none>"));
            rows.push(base(repo, tag, &digest_for(repo)));
        }
    }
    let default = if a.digests {
        "table {{.Repository}}\t{{.Tag}}\t{{.Digest}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}"
    } else {
        "table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}"
    };
    let header = json!({
        "Containers": "CONTAINERS", "CreatedAt": "CREATED AT", "CreatedSince": "CREATED",
        "Digest": "DIGEST", "ID": "IMAGE ID", "Repository": "REPOSITORY", "SharedSize": "SHARED SIZE",
        "Size": "SIZE", "Tag": "TAG", "UniqueSize": "UNIQUE SIZE", "VirtualSize": "VIRTUAL SIZE",
    });
    print_rows(a.format.as_deref(), default, &header, &rows)?;
    Ok(0)
}

pub fn inspect(ctx: &Ctx, a: InspectArgs) -> Result<u8> {
    let kind = a.kind.as_deref().unwrap_or("");
    if !matches!(kind, "" | "image" | "container" | "volume") {
        bail!("\"{kind}\" is not a valid value for --type");
    }
    let engine = ctx.engine()?;
    let mut found = Vec::new();
    let mut missing = Vec::new();
    for n in &a.names {
        // Docker looks for a container first, then an image, then a volume.
        if matches!(kind, "" | "container") {
            match engine.container(n) {
                Ok(c) => {
                    found.push(engine.inspect_container(&c)?);
                    continue;
                }
                Err(berth_engine::Error::NoSuchContainer(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        if matches!(kind, "" | "image") {
            match engine.inspect_image(n) {
                Ok(v) => {
                    found.push(v);
                    continue;
                }
                Err(berth_engine::Error::NoSuchImage(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        if matches!(kind, "" | "volume") {
            if let Ok(v) = engine.volume(n) {
                found.push(engine.inspect_volume(&v));
                continue;
            }
        }
        missing.push(n.clone());
    }
    print_inspected(a.format.as_deref(), found)?;
    if missing.is_empty() {
        return Ok(0);
    }
    for m in &missing {
        match kind {
            "image" => eprintln!("Error: No such image: {m}"),
            "container" => eprintln!("Error: No such container: {m}"),
            "volume" => eprintln!("Error: No such volume: {m}"),
            _ => eprintln!("Error: No such object: {m}"),
        }
    }
    Ok(1)
}

pub fn tag(ctx: &Ctx, a: TagArgs) -> Result<u8> {
    ctx.engine()?.tag_image(&a.source, &a.target)?;
    Ok(0)
}

pub fn rmi(ctx: &Ctx, a: RmiArgs) -> Result<u8> {
    let engine = ctx.engine()?;
    let mut code = 0;
    let mut out = io::stdout().lock();
    // One image at a time, so a failure on one still removes the others and
    // each failure is reported, as Docker does.
    for name in &a.images {
        match engine.remove_images(std::slice::from_ref(name), a.force) {
            Ok(items) => print_removed(&mut out, &items, "Untagged", "Deleted")?,
            Err(e) => {
                crate::output::print_error(&e.into());
                code = 1;
            }
        }
    }
    Ok(code)
}

fn print_removed(
    out: &mut impl Write,
    items: &[RemovedItem],
    untagged: &str,
    deleted: &str,
) -> Result<()> {
    for item in items {
        match item {
            RemovedItem::Untagged(t) => writeln!(out, "{untagged}: {t}")?,
            RemovedItem::Deleted(id) => writeln!(out, "{deleted}: {id}")?,
        }
    }
    Ok(())
}

pub fn history(ctx: &Ctx, a: HistoryArgs) -> Result<u8> {
    let engine = ctx.engine()?;
    let rows = engine.image_history(&a.image)?;
    if a.quiet {
        for r in &rows {
            match &r.id {
                Some(id) => println!("{}", short_id(id, a.no_trunc)),
                None => println!("<missing>"),
            }
        }
        return Ok(0);
    }
    let values: Vec<Value> = rows
        .iter()
        .map(|r| {
            let created_by = r.created_by.replace('\t', " ");
            let created = r.created.unwrap_or(0);
            json!({
                "ID": r.id.as_ref().map(|i| short_id(i, a.no_trunc)).unwrap_or_else(|| "<missing>".into()),
                "CreatedSince": if a.human { time::ago(created) } else { berth_oci::time::format_rfc3339(created) },
                "CreatedAt": berth_oci::time::format_rfc3339(created),
                "CreatedBy": if a.no_trunc { created_by } else { ellipsis(&created_by, 45) },
                "Size": if a.human { human_size_precision(r.size as f64, 3) } else { r.size.to_string() },
                "Comment": r.comment,
            })
        })
        .collect();
    let header = json!({
        "ID": "IMAGE", "CreatedSince": "CREATED", "CreatedAt": "CREATED AT",
        "CreatedBy": "CREATED BY", "Size": "SIZE", "Comment": "COMMENT",
    });
    print_rows(
        a.format.as_deref(),
        "table {{.ID}}\t{{.CreatedSince}}\t{{.CreatedBy}}\t{{.Size}}\t{{.Comment}}",
        &header,
        &values,
    )?;
    Ok(0)
}

pub fn save(ctx: &Ctx, a: SaveArgs) -> Result<u8> {
    let engine = ctx.engine()?;
    match &a.output {
        None => {
            if isatty(1) {
                bail!("cowardly refusing to save to a terminal. Use the -o flag or redirect");
            }
            engine.save(&a.images, io::stdout().lock())?.flush()?;
        }
        Some(path) => save_to_file(&engine, &a.images, path)?,
    }
    Ok(0)
}

/// Writes next to `path` and renames, so a failed save never leaves a
/// truncated archive under the requested name. Special files (a fifo,
/// /dev/stdout) are written in place.
fn save_to_file(engine: &berth_engine::Engine, images: &[String], path: &Path) -> Result<()> {
    let special = fs::metadata(path).map(|m| !m.is_file()).unwrap_or(false);
    if special {
        let f = fs::OpenOptions::new()
            .write(true)
            .open(path)
            .with_context(|| format!("failed to save image: open {}", path.display()))?;
        engine.save(images, f)?;
        return Ok(());
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.berth-{}", std::process::id()));
    let f = File::create(&tmp)
        .with_context(|| format!("failed to save image: create {}", tmp.display()))?;
    let result = engine
        .save(images, f)
        .map_err(anyhow::Error::from)
        // No fsync: an export is not store state (Docker does not sync it either).
        .and_then(|_| {
            fs::rename(&tmp, path).with_context(|| format!("rename to {}", path.display()))
        });
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

pub fn load(ctx: &Ctx, a: LoadArgs) -> Result<u8> {
    let engine = ctx.engine()?;
    let loaded = match &a.input {
        Some(p) => {
            let f = File::open(p).with_context(|| format!("open {}", p.display()))?;
            engine.load(f)
        }
        None => {
            if isatty(0) {
                bail!("requested load from stdin, but stdin is empty");
            }
            engine.load(io::stdin().lock())
        }
    }?;
    let mut out = io::stdout().lock();
    for img in &loaded {
        for (tag, old) in &img.replaced {
            writeln!(
                out,
                "The image {tag} already exists, renaming the old one with ID {old} to empty string"
            )?;
        }
        if img.tags.is_empty() {
            writeln!(out, "Loaded image ID: {}", img.id)?;
        }
        for t in &img.tags {
            writeln!(out, "Loaded image: {t}")?;
        }
    }
    Ok(0)
}

pub fn prune(ctx: &Ctx, a: PruneArgs) -> Result<u8> {
    if !a.force {
        let warning = if a.all {
            "WARNING! This will remove all images without at least one container associated to them."
        } else {
            "WARNING! This will remove all dangling images."
        };
        if !super::confirm(warning)? {
            return Ok(0);
        }
    }
    let engine = ctx.engine()?;
    let (items, bytes) = engine.prune_images(a.all)?;
    let mut out = io::stdout().lock();
    if !items.is_empty() {
        writeln!(out, "Deleted Images:")?;
        print_removed(&mut out, &items, "untagged", "deleted")?;
        writeln!(out)?;
    }
    writeln!(
        out,
        "Total reclaimed space: {}",
        crate::render::human_size(bytes as f64)
    )?;
    Ok(0)
}
