//! `pull`, `push` and `registry serve`.

use std::io::{self, Write};
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{bail, Result};
use berth_engine::{Engine, PullEvent, PullOptions, PushEvent, PushOptions};
use clap::{Args, Subcommand};

use super::{isatty, Ctx};

#[derive(Args)]
pub struct PullArgs {
    /// Download all tagged images in the repository
    #[arg(short, long)]
    all_tags: bool,
    /// Set platform if server is multi-platform capable (os/arch[/variant])
    #[arg(long)]
    platform: Option<String>,
    /// Suppress verbose output
    #[arg(short, long)]
    quiet: bool,
    /// Require HTTPS and verify certificates (false: plain http)
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    tls_verify: bool,
    /// Layers to download at once
    #[arg(long, default_value_t = 3)]
    max_concurrent_downloads: usize,
    /// CA certificates (*.crt) to trust for the registry
    #[arg(long)]
    cert_dir: Option<PathBuf>,
    name: String,
}

#[derive(Args)]
pub struct PushArgs {
    /// Suppress verbose output
    #[arg(short, long)]
    quiet: bool,
    /// Require HTTPS and verify certificates (false: plain http)
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    tls_verify: bool,
    /// CA certificates (*.crt) to trust for the registry
    #[arg(long)]
    cert_dir: Option<PathBuf>,
    name: String,
}

#[derive(Subcommand)]
pub enum RegistryCommand {
    /// Run an OCI distribution registry in the foreground
    Serve(ServeArgs),
}

#[derive(Args)]
pub struct ServeArgs {
    /// Address to listen on
    #[arg(long, default_value = "127.0.0.1:5000")]
    addr: SocketAddr,
    /// Where the registry keeps its content
    #[arg(long, default_value = "/var/lib/berth-registry")]
    root: PathBuf,
    /// Require HTTP Basic auth against this htpasswd file (bcrypt entries)
    #[arg(long)]
    htpasswd: Option<PathBuf>,
    /// Serve https with this PEM certificate (chain)
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
}

/// Docker's per-layer lines: plain lines when not on a terminal, lines
/// redrawn in place when on one.
struct PullView {
    /// `run` and `create` pull to stderr, as Docker's do.
    stderr: bool,
    tty: bool,
    quiet: bool,
    order: Vec<String>,
    lines: Vec<String>,
    drawn: usize,
}

fn bar(current: u64, total: u64) -> String {
    let width = 50;
    let done = (current.min(total) * width as u64)
        .checked_div(total)
        .map_or(width, |d| d as usize);
    let mut s = "=".repeat(done.saturating_sub(1));
    if done > 0 {
        s.push(if done == width { '=' } else { '>' });
    }
    format!(
        "[{s:<width$}] {}/{}",
        crate::render::human_size(current as f64),
        crate::render::human_size(total as f64)
    )
}

impl PullView {
    fn new(quiet: bool, stderr: bool) -> PullView {
        PullView {
            stderr,
            tty: isatty(if stderr { 2 } else { 1 }),
            quiet,
            order: Vec::new(),
            lines: Vec::new(),
            drawn: 0,
        }
    }

    fn set(&mut self, id: &str, text: String, final_line: bool) {
        if self.quiet {
            return;
        }
        let line = format!("{id}: {text}");
        if !self.tty {
            // Byte counts are only for terminals.
            if final_line {
                self.say(&line);
            }
            return;
        }
        match self.order.iter().position(|o| o == id) {
            Some(i) => self.lines[i] = line,
            None => {
                self.order.push(id.to_string());
                self.lines.push(line);
            }
        }
        let mut text = String::new();
        if self.drawn > 0 {
            text += &format!("\x1b[{}A", self.drawn);
        }
        for l in &self.lines {
            text += &format!("\x1b[2K{l}\n");
        }
        self.write(&text);
        self.drawn = self.lines.len();
    }

    fn write(&self, text: &str) {
        if self.stderr {
            let _ = io::stderr().lock().write_all(text.as_bytes());
        } else {
            let mut o = io::stdout().lock();
            let _ = o.write_all(text.as_bytes());
            let _ = o.flush();
        }
    }

    fn say(&self, line: &str) {
        self.write(&format!("{line}\n"));
    }

    fn event(&mut self, e: PullEvent) {
        match e {
            PullEvent::Resolved { tag, repository } => {
                if !self.quiet {
                    self.say(&format!("{tag}: Pulling from {repository}"));
                }
            }
            PullEvent::AlreadyExists(id) => self.set(&id, "Already exists".into(), true),
            PullEvent::Waiting(id) => self.set(&id, "Pulling fs layer".into(), true),
            PullEvent::Downloading { id, current, total } => {
                self.set(&id, format!("Downloading {}", bar(current, total)), false)
            }
            PullEvent::DownloadComplete(id) => self.set(&id, "Download complete".into(), true),
            PullEvent::Extracting(id) => self.set(&id, "Extracting".into(), false),
            PullEvent::PullComplete(id) => self.set(&id, "Pull complete".into(), true),
        }
    }
}

/// Pulls `name` with Docker's output (on stderr for run and create);
/// returns the reference pulled.
pub fn pull_image(
    engine: &Engine,
    name: &str,
    opts: &PullOptions,
    quiet: bool,
    stderr: bool,
) -> Result<String> {
    let mut view = PullView::new(quiet, stderr);
    let p = engine.pull(name, opts, &mut |e| view.event(e))?;
    let familiar = berth_oci::Reference::parse(&p.reference)
        .map(|r| r.familiar())
        .unwrap_or(p.reference.clone());
    if quiet {
        if !stderr {
            println!("{}", p.reference);
        }
    } else {
        view.say(&format!("Digest: {}", p.digest));
        if p.downloaded {
            view.say(&format!("Status: Downloaded newer image for {familiar}"));
        } else {
            view.say(&format!("Status: Image is up to date for {familiar}"));
        }
        if !stderr {
            view.say(&p.reference);
        }
    }
    Ok(p.reference)
}

pub fn pull(ctx: &Ctx, a: PullArgs) -> Result<u8> {
    let engine = ctx.engine()?;
    if a.max_concurrent_downloads == 0 {
        bail!("max-concurrent-downloads must be at least 1");
    }
    let opts = PullOptions {
        platform: a.platform,
        insecure: !a.tls_verify,
        parallel: a.max_concurrent_downloads,
        cert_dir: a.cert_dir,
    };
    if a.all_tags {
        let mut view = PullView::new(a.quiet, false);
        let pulled = engine.pull_all_tags(&a.name, &opts, &mut |e| view.event(e))?;
        for p in &pulled {
            if !a.quiet {
                view.say(&format!("Digest: {}", p.digest));
            }
        }
        if !a.quiet {
            let r = berth_oci::Reference::parse(&a.name)?;
            view.say(&format!(
                "Status: Downloaded newer images for {}",
                r.familiar_name()
            ));
        }
        view.say(&a.name);
        return Ok(0);
    }
    pull_image(&engine, &a.name, &opts, a.quiet, false)?;
    Ok(0)
}

pub fn push(ctx: &Ctx, a: PushArgs) -> Result<u8> {
    let engine = ctx.engine()?;
    let r = berth_oci::Reference::parse(&a.name)?;
    if !a.quiet {
        println!("The push refers to repository [{}]", r.name());
    }
    let quiet = a.quiet;
    let (digest, size) = engine.push(
        &a.name,
        &PushOptions {
            insecure: !a.tls_verify,
            cert_dir: a.cert_dir,
        },
        &mut |e| {
            if quiet {
                return;
            }
            match e {
                PushEvent::Preparing(_) | PushEvent::Pushing { .. } => {}
                PushEvent::AlreadyExists(id) => println!("{id}: Layer already exists"),
                PushEvent::Pushed(id) => println!("{id}: Pushed"),
                PushEvent::Mounted { id, from } => println!("{id}: Mounted from {from}"),
            }
        },
    )?;
    let tag = r.tag().unwrap_or("latest");
    if quiet {
        println!("{}", a.name);
    } else {
        println!("{tag}: digest: {digest} size: {size}");
    }
    Ok(0)
}

pub fn registry(_ctx: &Ctx, c: RegistryCommand) -> Result<u8> {
    match c {
        RegistryCommand::Serve(a) => {
            berth_engine::serve_registry(berth_engine::RegistryServeOptions {
                addr: a.addr,
                root: a.root,
                htpasswd: a.htpasswd,
                tls: a.tls_cert.zip(a.tls_key),
            })?;
            Ok(0)
        }
    }
}

#[derive(Args)]
pub struct LoginArgs {
    /// Username
    #[arg(short, long)]
    username: Option<String>,
    /// Password
    #[arg(short, long)]
    password: Option<String>,
    /// Take the password from stdin
    #[arg(long)]
    password_stdin: bool,
    /// Plain http for a registry without TLS
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    tls_verify: bool,
    server: Option<String>,
}

#[derive(Args)]
pub struct LogoutArgs {
    server: Option<String>,
}

/// Reads a line from the terminal without echoing it.
fn read_secret(prompt: &str) -> Result<String> {
    use nix::sys::termios::{tcgetattr, tcsetattr, LocalFlags, SetArg};
    eprint!("{prompt}");
    let stdin = io::stdin();
    let old = tcgetattr(&stdin)?;
    let mut quiet = old.clone();
    quiet.local_flags.remove(LocalFlags::ECHO);
    tcsetattr(&stdin, SetArg::TCSANOW, &quiet)?;
    let mut line = String::new();
    let r = stdin.read_line(&mut line);
    tcsetattr(&stdin, SetArg::TCSANOW, &old)?;
    eprintln!();
    r?;
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

pub fn login(ctx: &Ctx, a: LoginArgs) -> Result<u8> {
    let engine = ctx.engine()?;
    if a.password.is_some() && a.password_stdin {
        bail!("--password and --password-stdin are mutually exclusive");
    }
    let interactive = isatty(0);
    let user = match a.username {
        Some(u) => u,
        None if a.password_stdin => bail!("Must provide --username with --password-stdin"),
        None if interactive => {
            eprint!("Username: ");
            let mut u = String::new();
            io::stdin().read_line(&mut u)?;
            u.trim().to_string()
        }
        None => bail!("Cannot perform an interactive login from a non TTY device"),
    };
    let password = match a.password {
        Some(p) => {
            eprintln!("WARNING! Using --password via the CLI is insecure. Use --password-stdin.");
            p
        }
        None if a.password_stdin => {
            let mut p = String::new();
            io::Read::read_to_string(&mut io::stdin(), &mut p)?;
            p.trim_end_matches(['\r', '\n']).to_string()
        }
        None if interactive => read_secret("Password: ")?,
        None => bail!("Cannot perform an interactive login from a non TTY device"),
    };
    if user.is_empty() {
        bail!("Username is required");
    }
    if password.is_empty() {
        bail!("Password is required");
    }
    engine.login(a.server.as_deref(), &user, &password, !a.tls_verify)?;
    println!("Login Succeeded");
    Ok(0)
}

pub fn logout(ctx: &Ctx, a: LogoutArgs) -> Result<u8> {
    let (domain, had) = ctx.engine()?.logout(a.server.as_deref())?;
    if had {
        println!("Removing login credentials for {domain}");
    } else {
        println!("Not logged in to {domain}");
    }
    Ok(0)
}

#[derive(Subcommand)]
pub enum ManifestCommand {
    /// Create a local manifest list for annotating and pushing to a registry
    Create(ManifestCreateArgs),
    /// Add an image to a local manifest list
    Add(ManifestAddArgs),
    /// Add additional information to a local image manifest
    Annotate(ManifestAnnotateArgs),
    /// Display an image manifest, or manifest list
    Inspect(ManifestInspectArgs),
    /// Push a manifest list to a repository
    Push(ManifestPushArgs),
    /// Delete one or more manifest lists from local storage
    Rm(ManifestRmArgs),
}

#[derive(Args)]
pub struct ManifestCreateArgs {
    /// Amend an existing manifest list
    #[arg(short, long)]
    amend: bool,
    /// Allow communication with an insecure registry
    #[arg(long)]
    insecure: bool,
    list: String,
    #[arg(required = true)]
    images: Vec<String>,
}

#[derive(Args)]
pub struct ManifestAddArgs {
    #[arg(long)]
    insecure: bool,
    list: String,
    image: String,
}

#[derive(Args)]
pub struct ManifestAnnotateArgs {
    /// Set operating system
    #[arg(long)]
    os: Option<String>,
    /// Set architecture
    #[arg(long)]
    arch: Option<String>,
    /// Set architecture variant
    #[arg(long)]
    variant: Option<String>,
    /// Set operating system version
    #[arg(long)]
    os_version: Option<String>,
    /// Set operating system feature
    #[arg(long)]
    os_features: Vec<String>,
    list: String,
    image: String,
}

#[derive(Args)]
pub struct ManifestInspectArgs {
    /// Allow communication with an insecure registry
    #[arg(long)]
    insecure: bool,
    /// A manifest list's name, then optionally one of its images
    #[arg(required = true, num_args = 1..=2)]
    refs: Vec<String>,
}

#[derive(Args)]
pub struct ManifestPushArgs {
    /// Remove the local manifest list after push
    #[arg(short, long)]
    purge: bool,
    /// Allow push to an insecure registry
    #[arg(long)]
    insecure: bool,
    list: String,
}

#[derive(Args)]
pub struct ManifestRmArgs {
    #[arg(required = true)]
    lists: Vec<String>,
}

pub fn manifest(ctx: &Ctx, c: ManifestCommand) -> Result<u8> {
    let engine = ctx.engine()?;
    match c {
        ManifestCommand::Create(a) => {
            let name = engine.manifest_create(&a.list, &a.images, a.amend, a.insecure)?;
            println!("Created manifest list {name}");
        }
        ManifestCommand::Add(a) => {
            engine.manifest_create(&a.list, &[a.image], true, a.insecure)?;
        }
        ManifestCommand::Annotate(a) => {
            engine.manifest_annotate(
                &a.list,
                &a.image,
                &berth_engine::Annotation {
                    os: a.os,
                    arch: a.arch,
                    variant: a.variant,
                    os_version: a.os_version,
                    os_features: a.os_features,
                },
            )?;
        }
        ManifestCommand::Inspect(a) => {
            let name = a.refs.last().expect("one or two");
            let v = engine.manifest_inspect(name, a.insecure)?;
            println!("{}", crate::output::pretty_json(&v));
        }
        ManifestCommand::Push(a) => {
            let d = engine.manifest_push(&a.list, a.purge, a.insecure)?;
            println!("{d}");
        }
        ManifestCommand::Rm(a) => {
            let mut code = 0;
            for l in &a.lists {
                if let Err(e) = engine.manifest_rm(l) {
                    crate::output::print_error(&e.into());
                    code = 1;
                }
            }
            return Ok(code);
        }
    }
    Ok(0)
}
