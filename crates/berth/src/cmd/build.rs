//! `build` (also `image build`, `buildx build`) and `builder prune`.

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use berth_engine::BuildOptions;
use clap::{Args, Subcommand};

use super::Ctx;

#[derive(Args)]
pub struct BuildArgs {
    /// Name and optionally a tag in the 'name:tag' format
    #[arg(short, long = "tag")]
    tags: Vec<String>,
    /// Name of the Dockerfile (default: 'PATH/Dockerfile', else 'PATH/Containerfile')
    #[arg(short, long)]
    file: Option<String>,
    /// Set the target build stage to build
    #[arg(long)]
    target: Option<String>,
    /// Set build-time variables
    #[arg(long = "build-arg")]
    build_args: Vec<String>,
    /// Do not use cache when building the image
    #[arg(long)]
    no_cache: bool,
    /// Always attempt to pull a newer version of the image
    #[arg(long)]
    pull: bool,
    /// Set platform if server is multi-platform capable
    #[arg(long)]
    platform: Option<String>,
    /// Set metadata for an image
    #[arg(long = "label")]
    labels: Vec<String>,
    /// Suppress the build output and print image ID on success
    #[arg(short, long)]
    quiet: bool,
    /// Write the image ID to the file
    #[arg(long)]
    iidfile: Option<PathBuf>,
    /// Set type of progress output (auto, plain, tty)
    #[arg(long, default_value = "auto")]
    progress: String,
    /// Set the networking mode for the RUN instructions during build (none, host)
    #[arg(long)]
    network: Option<String>,
    /// Secret to expose to the build (format: "id=mysecret,src=/local/secret")
    #[arg(long = "secret")]
    secrets: Vec<String>,
    /// Layer compression (gzip, zstd or uncompressed)
    #[arg(long)]
    compression: Option<String>,
    /// Build context: a directory, a tar archive, or - (a tar or a Dockerfile on stdin)
    context: String,
}

#[derive(Subcommand)]
pub enum BuilderCommand {
    /// Remove build cache
    Prune(BuilderPruneArgs),
}

#[derive(Subcommand)]
pub enum BuildxCommand {
    /// Start a build
    Build(BuildArgs),
}

#[derive(Args)]
pub struct BuilderPruneArgs {
    /// Remove all unused build cache, not just dangling ones
    #[arg(short, long)]
    all: bool,
    /// Do not prompt for confirmation
    #[arg(short, long)]
    force: bool,
}

fn is_tar(head: &[u8]) -> bool {
    head.starts_with(&[0x1f, 0x8b]) || (head.len() >= 262 && &head[257..262] == b"ustar")
}

fn read_dockerfile(
    context: &Path,
    file: Option<&str>,
    stdin_used: bool,
) -> Result<(String, String)> {
    match file {
        Some("-") => {
            if stdin_used {
                bail!("the Dockerfile and the context cannot both come from stdin");
            }
            let mut s = String::new();
            io::stdin()
                .read_to_string(&mut s)
                .context("read the Dockerfile from stdin")?;
            Ok((s, "Dockerfile".into()))
        }
        Some(f) => {
            // Relative to the current directory, as docker reads it.
            let p = Path::new(f);
            let text = std::fs::read_to_string(p)
                .or_else(|_| std::fs::read_to_string(context.join(p)))
                .with_context(|| format!("Cannot locate specified Dockerfile: {f}"))?;
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| f.to_string());
            Ok((text, name))
        }
        None => {
            for n in ["Dockerfile", "Containerfile"] {
                if let Ok(t) = std::fs::read_to_string(context.join(n)) {
                    return Ok((t, n.to_string()));
                }
            }
            bail!(
                "Cannot locate specified Dockerfile: Dockerfile (nor Containerfile) in {}",
                context.display()
            )
        }
    }
}

pub fn build(ctx: &Ctx, a: BuildArgs) -> Result<u8> {
    let engine = ctx.engine()?;
    if !matches!(
        a.progress.as_str(),
        "auto" | "plain" | "tty" | "quiet" | "rawjson"
    ) {
        bail!(
            "invalid --progress {:?}: expected auto, plain or tty",
            a.progress
        );
    }
    let mut stdin_dockerfile = None;
    let context = if a.context == "-" {
        let mut buf = Vec::new();
        io::stdin()
            .read_to_end(&mut buf)
            .context("read the build context from stdin")?;
        if is_tar(&buf) {
            engine.unpack_context(buf.as_slice())?
        } else {
            stdin_dockerfile =
                Some(String::from_utf8(buf).context("the Dockerfile on stdin is not UTF-8")?);
            engine.empty_context()?
        }
    } else {
        let p = PathBuf::from(&a.context);
        let md = std::fs::metadata(&p).with_context(|| {
            format!("unable to prepare context: path {:?} not found", a.context)
        })?;
        if md.is_dir() {
            p
        } else {
            let f = std::fs::File::open(&p).with_context(|| format!("open {}", p.display()))?;
            engine.unpack_context(io::BufReader::new(f))?
        }
    };
    let (dockerfile, dockerfile_name) = match stdin_dockerfile {
        Some(t) => (t, "Dockerfile".to_string()),
        None => read_dockerfile(&context, a.file.as_deref(), a.context == "-")?,
    };
    let opts = BuildOptions {
        context,
        dockerfile,
        dockerfile_name,
        tags: a.tags,
        target: a.target,
        build_args: a.build_args,
        no_cache: a.no_cache,
        labels: a.labels,
        network: a.network,
        platform: a.platform,
        secrets: a.secrets,
        compression: a.compression,
        pull: a.pull,
    };
    let built = if a.quiet || a.progress == "quiet" {
        engine.build(&opts, &mut io::sink())
    } else {
        let mut out = io::stdout().lock();
        let id = engine.build(&opts, &mut out);
        out.flush()?;
        id
    };
    let id = match built {
        Ok(id) => id,
        // The legacy builder's own line, without `Error: ` (scripts match
        // on it), then our hint.
        Err(berth_engine::Error::BuildFailed(m)) => {
            eprintln!("{}", crate::output::escape_controls(&m));
            return Ok(1);
        }
        Err(e) => return Err(e.into()),
    };
    if a.quiet || a.progress == "quiet" {
        println!("{id}");
    }
    if let Some(f) = a.iidfile {
        std::fs::write(&f, id.to_string()).with_context(|| format!("write {}", f.display()))?;
    }
    Ok(0)
}

pub fn builder(ctx: &Ctx, c: BuilderCommand) -> Result<u8> {
    match c {
        BuilderCommand::Prune(a) => {
            let _ = a.all;
            if !a.force
                && !super::confirm(
                    "WARNING! This will remove all dangling build cache. Are you sure you want to continue?",
                )?
            {
                return Ok(0);
            }
            let (entries, bytes) = ctx.engine()?.prune_build_cache()?;
            println!("Deleted build cache entries: {entries}");
            println!(
                "Total reclaimed space: {}",
                crate::render::human_size(bytes as f64)
            );
            Ok(0)
        }
    }
}
