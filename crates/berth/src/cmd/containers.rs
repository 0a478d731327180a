//! Container commands: run, create, start, stop, restart, kill, rm, wait,
//! logs, exec, cp, ps, top, stats, pause, unpause, rename, attach, prune.

use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::time::Duration;

use anyhow::{bail, Result};
use berth_engine::{
    AttachOptions, Attached, CommitOptions, Container, CopyTarget, CreateOptions, Engine, Event,
    ExecOptions, Frame, LogOptions, PsFilter, StatsSample, Status, TtySize, UpdateOptions,
};
use berth_oci::time;
use clap::{Args, Subcommand};
use serde_json::{json, Value};

use super::{isatty, Ctx};
use crate::output::{ellipsis, go_time, print_error, print_inspected, print_rows};
use crate::render::{bytes_size, human_size, human_size_precision};

#[derive(Args, Clone, Default)]
pub struct CreateFlags {
    /// Assign a name to the container
    #[arg(long)]
    name: Option<String>,
    /// Keep STDIN open even if not attached
    #[arg(short, long)]
    interactive: bool,
    /// Allocate a pseudo-TTY
    #[arg(short, long)]
    tty: bool,
    /// Set environment variables
    #[arg(short, long = "env")]
    env: Vec<String>,
    /// Read in a file of environment variables
    #[arg(long = "env-file")]
    env_file: Vec<PathBuf>,
    /// Working directory inside the container
    #[arg(short, long)]
    workdir: Option<String>,
    /// Username or UID (format: <name|uid>[:<group|gid>])
    #[arg(short, long)]
    user: Option<String>,
    /// Overwrite the default ENTRYPOINT of the image
    #[arg(long)]
    entrypoint: Option<String>,
    /// Container host name
    #[arg(short = 'h', long)]
    hostname: Option<String>,
    /// Bind mount a volume
    #[arg(short, long = "volume")]
    volume: Vec<String>,
    /// Attach a filesystem mount to the container
    #[arg(long = "mount")]
    mount: Vec<String>,
    /// Mount a tmpfs directory
    #[arg(long)]
    tmpfs: Vec<String>,
    /// Mount the container's root filesystem as read only
    #[arg(long)]
    read_only: bool,
    /// Memory limit
    #[arg(short, long)]
    memory: Option<String>,
    /// Swap limit equal to memory plus swap: '-1' to enable unlimited swap
    #[arg(long)]
    memory_swap: Option<String>,
    /// Memory soft limit
    #[arg(long)]
    memory_reservation: Option<String>,
    /// Number of CPUs
    #[arg(long)]
    cpus: Option<f64>,
    /// CPUs in which to allow execution (0-3, 0,1)
    #[arg(long)]
    cpuset_cpus: Option<String>,
    /// CPU shares (relative weight)
    #[arg(short = 'c', long)]
    cpu_shares: Option<i64>,
    /// Tune container pids limit (set -1 for unlimited)
    #[arg(long, allow_negative_numbers = true)]
    pids_limit: Option<i64>,
    /// Add Linux capabilities
    #[arg(long)]
    cap_add: Vec<String>,
    /// Drop Linux capabilities
    #[arg(long)]
    cap_drop: Vec<String>,
    /// Give extended privileges to this container
    #[arg(long)]
    privileged: bool,
    /// Security Options
    #[arg(long)]
    security_opt: Vec<String>,
    /// Connect a container to a network (bridge, host, none, container:NAME or a user network)
    #[arg(long, alias = "net")]
    network: Option<String>,
    /// Add network-scoped alias for the container
    #[arg(long, alias = "net-alias")]
    network_alias: Vec<String>,
    /// IPv4 address (e.g., 172.30.100.104)
    #[arg(long)]
    ip: Option<String>,
    /// Container MAC address (e.g., 92:d0:c6:0a:29:33)
    #[arg(long)]
    mac_address: Option<String>,
    /// Set custom DNS servers
    #[arg(long)]
    dns: Vec<String>,
    /// Set custom DNS search domains
    #[arg(long)]
    dns_search: Vec<String>,
    /// Set DNS options
    #[arg(long, alias = "dns-opt")]
    dns_option: Vec<String>,
    /// Add a custom host-to-IP mapping (host:ip)
    #[arg(long)]
    add_host: Vec<String>,
    /// Run an init inside the container that forwards signals and reaps processes
    #[arg(long)]
    init: bool,
    /// Restart policy to apply when a container exits
    #[arg(long)]
    restart: Option<String>,
    /// Automatically remove the container when it exits
    #[arg(long)]
    rm: bool,
    /// Signal to stop the container
    #[arg(long)]
    stop_signal: Option<String>,
    /// Timeout (in seconds) to stop a container
    #[arg(long, allow_negative_numbers = true)]
    stop_timeout: Option<i64>,
    /// Set meta data on a container
    #[arg(short, long)]
    label: Vec<String>,
    /// Ulimit options
    #[arg(long)]
    ulimit: Vec<String>,
    /// Runtime to use for this container (berth, runc, crun, youki or a path)
    #[arg(long)]
    runtime: Option<String>,
    /// Size of /dev/shm
    #[arg(long)]
    shm_size: Option<String>,
    /// Publish a container's port(s) to the host
    #[arg(short = 'p', long = "publish")]
    publish: Vec<String>,
    /// Publish all exposed ports to random ports
    #[arg(short = 'P', long = "publish-all")]
    publish_all: bool,
    /// Pull image before running ("always", "missing", "never")
    #[arg(long)]
    pull: Option<String>,
    /// Command to run to check health
    #[arg(long)]
    health_cmd: Option<String>,
    /// Time between running the check (ms|s|m|h) (default 0s)
    #[arg(long)]
    health_interval: Option<String>,
    /// Consecutive failures needed to report unhealthy
    #[arg(long, allow_negative_numbers = true)]
    health_retries: Option<i64>,
    /// Start period for the container to initialize before starting health-retries countdown (ms|s|m|h) (default 0s)
    #[arg(long)]
    health_start_period: Option<String>,
    /// Time between running the check during the start period (ms|s|m|h) (default 0s)
    #[arg(long)]
    health_start_interval: Option<String>,
    /// Maximum time to allow one check to run (ms|s|m|h) (default 0s)
    #[arg(long)]
    health_timeout: Option<String>,
    /// Disable any container-specified HEALTHCHECK
    #[arg(long)]
    no_healthcheck: bool,
    /// The image, then the command and its arguments. One positional, so
    /// that flag parsing stops at the image as Docker's does (`IMAGE -c x`).
    #[arg(
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "IMAGE [COMMAND] [ARG...]"
    )]
    image_and_command: Vec<String>,
}

impl CreateFlags {
    fn image(&self) -> &str {
        &self.image_and_command[0]
    }

    fn options(&self, attach: bool) -> CreateOptions {
        CreateOptions {
            image: self.image().to_string(),
            name: self.name.clone(),
            cmd: self.image_and_command[1..].to_vec(),
            entrypoint: self.entrypoint.clone(),
            env: self.env.clone(),
            env_files: self.env_file.clone(),
            workdir: self.workdir.clone(),
            user: self.user.clone(),
            hostname: self.hostname.clone(),
            tty: self.tty,
            interactive: self.interactive,
            attach,
            auto_remove: self.rm,
            volumes: self.volume.clone(),
            mounts: self.mount.clone(),
            tmpfs: self.tmpfs.clone(),
            read_only: self.read_only,
            memory: self.memory.clone(),
            memory_swap: self.memory_swap.clone(),
            memory_reservation: self.memory_reservation.clone(),
            cpus: self.cpus,
            cpuset_cpus: self.cpuset_cpus.clone(),
            cpu_shares: self.cpu_shares,
            pids_limit: self.pids_limit,
            cap_add: self.cap_add.clone(),
            cap_drop: self.cap_drop.clone(),
            privileged: self.privileged,
            security_opt: self.security_opt.clone(),
            network: self.network.clone(),
            init: self.init,
            restart: self.restart.clone(),
            stop_signal: self.stop_signal.clone(),
            stop_timeout: self.stop_timeout,
            labels: self.label.clone(),
            ulimits: self.ulimit.clone(),
            runtime: self.runtime.clone(),
            shm_size: self.shm_size.clone(),
            publish: self.publish.clone(),
            publish_all: self.publish_all,
            network_aliases: self.network_alias.clone(),
            ip: self.ip.clone(),
            mac_address: self.mac_address.clone(),
            dns: self.dns.clone(),
            dns_search: self.dns_search.clone(),
            dns_options: self.dns_option.clone(),
            add_hosts: self.add_host.clone(),
            health_cmd: self.health_cmd.clone(),
            health_interval: self.health_interval.clone(),
            health_timeout: self.health_timeout.clone(),
            health_start_period: self.health_start_period.clone(),
            health_start_interval: self.health_start_interval.clone(),
            health_retries: self.health_retries,
            no_healthcheck: self.no_healthcheck,
        }
    }
}

#[derive(Args)]
#[command(disable_help_flag = true)]
pub struct RunArgs {
    /// Print help
    #[arg(long, action = clap::ArgAction::Help)]
    help: Option<bool>,
    /// Run container in background and print container ID
    #[arg(short, long)]
    detach: bool,
    #[command(flatten)]
    create: CreateFlags,
}

#[derive(Args)]
#[command(disable_help_flag = true)]
pub struct CreateArgs {
    /// Print help
    #[arg(long, action = clap::ArgAction::Help)]
    help: Option<bool>,
    #[command(flatten)]
    create: CreateFlags,
}

#[derive(Args)]
pub struct StartArgs {
    /// Attach STDOUT/STDERR and forward signals
    #[arg(short, long)]
    attach: bool,
    /// Attach container's STDIN
    #[arg(short, long)]
    interactive: bool,
    #[arg(required = true)]
    containers: Vec<String>,
}

#[derive(Args)]
pub struct StopArgs {
    /// Seconds to wait before killing the container
    #[arg(short, long, alias = "timeout", allow_negative_numbers = true)]
    time: Option<i64>,
    /// Signal to send to the container
    #[arg(short, long)]
    signal: Option<String>,
    #[arg(required = true)]
    containers: Vec<String>,
}

#[derive(Args)]
pub struct KillArgs {
    /// Signal to send to the container
    #[arg(short, long)]
    signal: Option<String>,
    #[arg(required = true)]
    containers: Vec<String>,
}

#[derive(Args)]
pub struct RmArgs {
    /// Force the removal of a running container (uses SIGKILL)
    #[arg(short, long)]
    force: bool,
    /// Remove anonymous volumes associated with the container
    #[arg(short, long)]
    volumes: bool,
    #[arg(required = true)]
    containers: Vec<String>,
}

#[derive(Args)]
pub struct ContainersArgs {
    #[arg(required = true)]
    containers: Vec<String>,
}

#[derive(Args)]
pub struct LogsArgs {
    /// Follow log output
    #[arg(short, long)]
    follow: bool,
    /// Number of lines to show from the end of the logs ("all" for all)
    #[arg(short = 'n', long)]
    tail: Option<String>,
    /// Show timestamps
    #[arg(short, long)]
    timestamps: bool,
    /// Show logs since timestamp (e.g. 2013-01-02T13:23:37Z) or relative (e.g. 42m)
    #[arg(long)]
    since: Option<String>,
    /// Show logs before a timestamp or relative (e.g. 42m)
    #[arg(long)]
    until: Option<String>,
    container: String,
}

#[derive(Args)]
pub struct ExecArgs {
    /// Detached mode: run command in the background
    #[arg(short, long)]
    detach: bool,
    /// Keep STDIN open even if not attached
    #[arg(short, long)]
    interactive: bool,
    /// Allocate a pseudo-TTY
    #[arg(short, long)]
    tty: bool,
    /// Set environment variables
    #[arg(short, long = "env")]
    env: Vec<String>,
    /// Username or UID (format: "<name|uid>[:<group|gid>]")
    #[arg(short, long)]
    user: Option<String>,
    /// Working directory inside the container
    #[arg(short, long)]
    workdir: Option<String>,
    /// Give extended privileges to the command
    #[arg(long)]
    privileged: bool,
    container: String,
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

#[derive(Args)]
pub struct CpArgs {
    /// SRC: CONTAINER:PATH, a host path, or - for a tar stream on STDIN
    src: String,
    /// DEST: CONTAINER:PATH, a host path, or - for a tar stream on STDOUT
    dest: String,
    /// Archive mode (copy all uid/gid information)
    #[arg(short, long)]
    archive: bool,
    /// Suppress progress output during copy
    #[arg(short, long)]
    quiet: bool,
}

#[derive(Args)]
pub struct PsArgs {
    /// Show all containers (default shows just running)
    #[arg(short, long)]
    all: bool,
    /// Only display container IDs
    #[arg(short, long)]
    quiet: bool,
    /// Show the latest created container (includes all states)
    #[arg(short, long)]
    latest: bool,
    /// Show n last created containers (includes all states)
    #[arg(short = 'n', long, default_value_t = -1, allow_negative_numbers = true)]
    last: i64,
    /// Display total file sizes
    #[arg(short, long)]
    size: bool,
    /// Don't truncate output
    #[arg(long)]
    no_trunc: bool,
    /// Filter output based on conditions provided
    #[arg(short, long = "filter")]
    filter: Vec<String>,
    /// Format output using a Go template, `table …` or `json`
    #[arg(long)]
    format: Option<String>,
}

#[derive(Args)]
pub struct TopArgs {
    container: String,
    /// ps options
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    ps_args: Vec<String>,
}

#[derive(Args)]
pub struct StatsArgs {
    /// Show all containers (default shows just running)
    #[arg(short, long)]
    all: bool,
    /// Disable streaming stats and only pull the first result
    #[arg(long)]
    no_stream: bool,
    /// Do not truncate output
    #[arg(long)]
    no_trunc: bool,
    /// Format output using a Go template, `table …` or `json`
    #[arg(long)]
    format: Option<String>,
    containers: Vec<String>,
}

#[derive(Args)]
pub struct UpdateArgs {
    /// Memory limit
    #[arg(short, long)]
    memory: Option<String>,
    /// Swap limit equal to memory plus swap: -1 to enable unlimited swap
    #[arg(long, allow_negative_numbers = true)]
    memory_swap: Option<String>,
    /// Memory soft limit
    #[arg(long)]
    memory_reservation: Option<String>,
    /// Number of CPUs
    #[arg(long)]
    cpus: Option<f64>,
    /// CPU shares (relative weight)
    #[arg(short = 'c', long)]
    cpu_shares: Option<i64>,
    /// CPUs in which to allow execution (0-3, 0,1)
    #[arg(long)]
    cpuset_cpus: Option<String>,
    /// Tune container pids limit (set -1 for unlimited)
    #[arg(long, allow_negative_numbers = true)]
    pids_limit: Option<i64>,
    /// Restart policy to apply when a container exits
    #[arg(long)]
    restart: Option<String>,
    #[arg(required = true)]
    containers: Vec<String>,
}

#[derive(Args)]
pub struct ExportArgs {
    /// Write to a file, instead of STDOUT
    #[arg(short, long)]
    output: Option<PathBuf>,
    container: String,
}

#[derive(Args)]
pub struct RenameArgs {
    container: String,
    new_name: String,
}

#[derive(Args)]
pub struct DiffArgs {
    container: String,
}

#[derive(Args)]
pub struct CommitArgs {
    /// Author (e.g., "John Hannibal Smith <hannibal@a-team.com>")
    #[arg(short, long)]
    author: Option<String>,
    /// Apply Dockerfile instruction to the created image
    #[arg(short = 'c', long = "change")]
    changes: Vec<String>,
    /// Commit message
    #[arg(short, long)]
    message: Option<String>,
    /// Pause container during commit
    #[arg(short, long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pause: bool,
    container: String,
    /// REPOSITORY[:TAG] for the new image
    reference: Option<String>,
}

#[derive(Args)]
pub struct AttachArgs {
    /// Do not attach STDIN
    #[arg(long)]
    no_stdin: bool,
    /// Proxy all received signals to the process
    #[arg(long, default_value_t = true)]
    sig_proxy: bool,
    container: String,
}

#[derive(Args)]
pub struct PruneArgs {
    /// Do not prompt for confirmation
    #[arg(short, long)]
    force: bool,
}

#[derive(Args)]
pub struct InspectArgs {
    #[arg(required = true)]
    containers: Vec<String>,
    /// Format output using a Go template or `json`
    #[arg(short, long)]
    format: Option<String>,
    /// Display total file sizes
    #[arg(short, long)]
    size: bool,
}

#[derive(Subcommand)]
pub enum ContainerCommand {
    /// List containers
    #[command(visible_aliases = ["ps", "list"])]
    Ls(PsArgs),
    /// Remove all stopped containers
    Prune(PruneArgs),
    /// Display detailed information on one or more containers
    Inspect(InspectArgs),
    /// Create and run a new container from an image
    Run(RunArgs),
    /// Create a new container
    Create(CreateArgs),
    /// Start one or more stopped containers
    Start(StartArgs),
    /// Stop one or more running containers
    Stop(StopArgs),
    /// Restart one or more containers
    Restart(StopArgs),
    /// Kill one or more running containers
    Kill(KillArgs),
    /// Remove one or more containers
    #[command(visible_alias = "remove")]
    Rm(RmArgs),
    /// Block until one or more containers stop, then print their exit codes
    Wait(WaitArgs),
    /// Fetch the logs of a container
    Logs(LogsArgs),
    /// Execute a command in a running container
    Exec(ExecArgs),
    /// Copy files/folders between a container and the local filesystem
    Cp(CpArgs),
    /// Display the running processes of a container
    Top(TopArgs),
    /// Display a live stream of container(s) resource usage statistics
    Stats(StatsArgs),
    /// Update configuration of one or more containers
    Update(UpdateArgs),
    /// Export a container's filesystem as a tar archive
    Export(ExportArgs),
    /// Pause all processes within one or more containers
    Pause(ContainersArgs),
    /// Unpause all processes within one or more containers
    Unpause(ContainersArgs),
    /// Rename a container
    Rename(RenameArgs),
    /// Attach local standard input, output, and error streams to a running container
    Attach(AttachArgs),
    /// Inspect changes to files or directories on a container's filesystem
    Diff(DiffArgs),
    /// List port mappings or a specific mapping for the container
    Port(PortArgs),
    /// Create a new image from a container's changes
    Commit(CommitArgs),
}

pub fn container(ctx: &Ctx, c: ContainerCommand) -> Result<u8> {
    match c {
        ContainerCommand::Ls(a) => ps(ctx, a),
        ContainerCommand::Prune(a) => prune(ctx, a),
        ContainerCommand::Inspect(a) => inspect(ctx, a),
        ContainerCommand::Run(a) => run(ctx, a),
        ContainerCommand::Create(a) => create(ctx, a),
        ContainerCommand::Start(a) => start(ctx, a),
        ContainerCommand::Stop(a) => stop(ctx, a),
        ContainerCommand::Restart(a) => restart(ctx, a),
        ContainerCommand::Kill(a) => kill(ctx, a),
        ContainerCommand::Rm(a) => rm(ctx, a),
        ContainerCommand::Wait(a) => wait(ctx, a),
        ContainerCommand::Logs(a) => logs(ctx, a),
        ContainerCommand::Exec(a) => exec(ctx, a),
        ContainerCommand::Cp(a) => cp(ctx, a),
        ContainerCommand::Top(a) => top(ctx, a),
        ContainerCommand::Stats(a) => stats(ctx, a),
        ContainerCommand::Update(a) => update(ctx, a),
        ContainerCommand::Export(a) => export(ctx, a),
        ContainerCommand::Pause(a) => pause(ctx, a),
        ContainerCommand::Unpause(a) => unpause(ctx, a),
        ContainerCommand::Rename(a) => rename(ctx, a),
        ContainerCommand::Attach(a) => attach(ctx, a),
        ContainerCommand::Diff(a) => diff(ctx, a),
        ContainerCommand::Port(a) => port(ctx, a),
        ContainerCommand::Commit(a) => commit(ctx, a),
    }
}

/// Docker's exit code for an engine error during run/create/start.
fn engine_failure(e: berth_engine::Error) -> u8 {
    let code = match &e {
        berth_engine::Error::StartFailed { code, .. } => *code,
        _ => 125,
    };
    print_error(&e.into());
    code as u8
}

pub fn create(ctx: &Ctx, a: CreateArgs) -> Result<u8> {
    let engine = ctx.engine()?;
    if let Err(e) = check_pull(&engine, &a.create) {
        print_error(&e);
        return Ok(125);
    }
    match engine.create_container(&a.create.options(false)) {
        Ok(c) => {
            println!("{}", c.id);
            Ok(0)
        }
        Err(e) => Ok(engine_failure(e)),
    }
}

/// `--pull`: fetches the image when the policy says so, as Docker does
/// (its output on stderr).
fn check_pull(engine: &berth_engine::Engine, f: &CreateFlags) -> Result<()> {
    let image = f.image();
    let missing = || {
        matches!(
            engine.resolve_image(image),
            Err(berth_engine::Error::NoSuchImage(_))
        )
    };
    let pull = match f.pull.as_deref() {
        None | Some("missing") => missing(),
        Some("always") => true,
        Some("never") => false,
        Some(p) => {
            bail!("invalid pull option: '{p}': must be one of \"always\", \"missing\" or \"never\"")
        }
    };
    if pull {
        if missing() {
            eprintln!("Unable to find image '{image}' locally");
        }
        super::registry::pull_image(engine, image, &Default::default(), false, true)?;
    }
    Ok(())
}

pub fn run(ctx: &Ctx, a: RunArgs) -> Result<u8> {
    let engine = ctx.engine()?;
    if let Err(e) = check_pull(&engine, &a.create) {
        print_error(&e);
        return Ok(125);
    }
    if a.detach && a.create.rm && a.create.restart.is_some() {
        return Ok(engine_failure(berth_engine::Error::InvalidArgument(
            "Conflicting options: --restart and --rm".into(),
        )));
    }
    let f = &a.create;
    if f.tty && f.interactive && !isatty(0) {
        eprintln!("the input device is not a TTY");
        return Ok(1);
    }
    let c = match engine.create_container(&f.options(!a.detach)) {
        Ok(c) => c,
        Err(e) => return Ok(engine_failure(e)),
    };
    if a.detach {
        return match engine.start_container(&c.id, None) {
            Ok(_) => {
                println!("{}", c.id);
                Ok(0)
            }
            Err(e) => Ok(engine_failure(e)),
        };
    }
    let opts = AttachOptions {
        stdin: f.interactive,
        stdout: true,
        stderr: true,
    };
    let (c, att) = match engine.start_container(&c.id, Some(opts)) {
        Ok(v) => v,
        Err(e) => return Ok(engine_failure(e)),
    };
    let att = att.expect("attach requested");
    drop(engine);
    let code = stream(att, &c, f.tty, f.interactive, true)?;
    Ok(code.unwrap_or(0) as u8)
}

static PROXY_PID: AtomicI32 = AtomicI32::new(0);
static WINCH_FD: AtomicI32 = AtomicI32::new(-1);

extern "C" fn on_winch(_: libc::c_int) {
    let fd = WINCH_FD.load(Ordering::Relaxed);
    if fd >= 0 {
        // SAFETY: write(2) is async-signal-safe.
        unsafe {
            libc::write(fd, b"w".as_ptr().cast(), 1);
        }
    }
}

extern "C" fn on_signal(sig: libc::c_int) {
    let pid = PROXY_PID.load(Ordering::Relaxed);
    if pid > 0 {
        // SAFETY: kill(2) is async-signal-safe.
        unsafe {
            libc::kill(pid, sig);
        }
    }
}

fn term_size(fd: i32) -> Option<TtySize> {
    let mut ws = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ fills the struct we pass.
    let r = unsafe { libc::ioctl(fd, libc::TIOCGWINSZ, &mut ws) };
    (r == 0 && ws.ws_row > 0).then_some(TtySize {
        rows: ws.ws_row,
        cols: ws.ws_col,
    })
}

/// Puts the terminal in raw mode until dropped.
struct RawMode {
    saved: nix::sys::termios::Termios,
}

impl RawMode {
    fn enter() -> Option<RawMode> {
        use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg};
        let stdin = io::stdin();
        let saved = tcgetattr(&stdin).ok()?;
        let mut raw = saved.clone();
        cfmakeraw(&mut raw);
        tcsetattr(&stdin, SetArg::TCSANOW, &raw).ok()?;
        Some(RawMode { saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = nix::sys::termios::tcsetattr(
            io::stdin(),
            nix::sys::termios::SetArg::TCSANOW,
            &self.saved,
        );
    }
}

/// Relays an attach connection until the container ends (its exit code)
/// or the user detaches (`None`).
fn stream(
    mut att: Attached,
    c: &Container,
    tty: bool,
    stdin: bool,
    proxy_signals: bool,
) -> Result<Option<i32>> {
    let _raw = (tty && stdin && isatty(0)).then(RawMode::enter).flatten();
    let mut writer = att.writer()?;
    if tty {
        if let Some(s) = term_size(1).or_else(|| term_size(0)) {
            let _ = writer.resize(s);
        }
        let (r, w) = nix::unistd::pipe()?;
        WINCH_FD.store(w.as_raw_fd(), Ordering::Relaxed);
        std::mem::forget(w);
        // SAFETY: installing a handler that only calls write(2).
        unsafe {
            libc::signal(libc::SIGWINCH, on_winch as *const () as libc::sighandler_t);
        }
        let mut resizer = att.writer()?;
        std::thread::spawn(move || {
            let mut f = std::fs::File::from(r);
            let mut b = [0u8; 16];
            while f.read(&mut b).is_ok_and(|n| n > 0) {
                if let Some(s) = term_size(1).or_else(|| term_size(0)) {
                    let _ = resizer.resize(s);
                }
            }
        });
    } else if proxy_signals {
        for sig in [
            libc::SIGINT,
            libc::SIGTERM,
            libc::SIGHUP,
            libc::SIGQUIT,
            libc::SIGUSR1,
            libc::SIGUSR2,
        ] {
            // SAFETY: installing a handler that only calls kill(2).
            unsafe {
                libc::signal(sig, on_signal as *const () as libc::sighandler_t);
            }
        }
    }
    if c.state.pid > 0 {
        PROXY_PID.store(c.state.pid, Ordering::Relaxed);
    }
    let (detach_tx, detach_rx) = std::sync::mpsc::channel::<()>();
    if stdin {
        std::thread::spawn(move || {
            let mut input = io::stdin().lock();
            let mut buf = [0u8; 32 * 1024];
            // ctrl-p ctrl-q detaches, as in Docker.
            let mut saw_ctrl_p = false;
            loop {
                let n = match input.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                let mut data = &buf[..n];
                if tty {
                    if let Some(i) = data.iter().enumerate().position(|(i, b)| {
                        *b == 0x11 && (i > 0 && data[i - 1] == 0x10 || i == 0 && saw_ctrl_p)
                    }) {
                        let keep = i.saturating_sub(1);
                        let _ = writer.stdin(&data[..keep]);
                        let _ = detach_tx.send(());
                        let _ = writer.detach();
                        return;
                    }
                    saw_ctrl_p = data.last() == Some(&0x10);
                    if saw_ctrl_p {
                        data = &data[..data.len() - 1];
                    }
                }
                if writer.stdin(data).is_err() {
                    return;
                }
            }
            let _ = writer.close_stdin();
        });
    }
    let mut out = io::stdout();
    let mut err = io::stderr();
    loop {
        let frame = att.next_frame().unwrap_or_default();
        match frame {
            Some(Frame::Stdout(d)) => {
                let _ = out.write_all(&d);
                let _ = out.flush();
            }
            Some(Frame::Stderr(d)) => {
                let _ = err.write_all(&d);
                let _ = err.flush();
            }
            Some(Frame::Event(Event::Started { pid })) => PROXY_PID.store(pid, Ordering::Relaxed),
            Some(Frame::Event(Event::Exit { code })) => return Ok(Some(code)),
            Some(Frame::Event(Event::Error { message, code })) => {
                drop(_raw);
                eprintln!("Error: {message}");
                return Ok(Some(code));
            }
            None => {
                if detach_rx.try_recv().is_ok() {
                    return Ok(None);
                }
                // The monitor went away without a word: report what the
                // store says.
                return Ok(Some(125));
            }
        }
    }
}

pub fn start(ctx: &Ctx, a: StartArgs) -> Result<u8> {
    let engine = ctx.engine()?;
    if a.attach || a.interactive {
        if a.containers.len() > 1 {
            bail!("you cannot start and attach multiple containers at once");
        }
        let c = engine.container(&a.containers[0])?;
        let opts = AttachOptions {
            stdin: a.interactive && c.spec.config.open_stdin,
            stdout: true,
            stderr: true,
        };
        let (c, att) = match engine.start_container(&c.id, Some(opts)) {
            Ok(v) => v,
            Err(e) => return Ok(engine_failure(e)),
        };
        let Some(att) = att else {
            // Already running: attach to it instead.
            let (c, att) = engine.attach_container(&c.id, opts)?;
            let code = stream(att, &c, c.spec.config.tty, opts.stdin, true)?;
            return Ok(code.unwrap_or(0) as u8);
        };
        let code = stream(att, &c, c.spec.config.tty, opts.stdin, true)?;
        return Ok(code.unwrap_or(0) as u8);
    }
    let mut code = 0;
    for name in &a.containers {
        match engine.start_container(name, None) {
            Ok(_) => println!("{name}"),
            Err(e) => {
                print_error(&e.into());
                code = 1;
            }
        }
    }
    Ok(code)
}

fn each(names: &[String], mut f: impl FnMut(&str) -> Result<()>) -> Result<u8> {
    let mut code = 0;
    for n in names {
        match f(n) {
            Ok(()) => println!("{n}"),
            Err(e) => {
                print_error(&e);
                code = 1;
            }
        }
    }
    Ok(code)
}

pub fn update(ctx: &Ctx, a: UpdateArgs) -> Result<u8> {
    let opts = UpdateOptions {
        memory: a.memory,
        memory_swap: a.memory_swap,
        memory_reservation: a.memory_reservation,
        cpus: a.cpus,
        cpu_shares: a.cpu_shares,
        cpuset_cpus: a.cpuset_cpus,
        pids_limit: a.pids_limit,
        restart: a.restart,
    };
    if opts.is_empty() {
        bail!("You must provide one or more flags when using this command.");
    }
    let engine = ctx.engine()?;
    each(&a.containers, |n| Ok(engine.update_container(n, &opts)?))
}

pub fn export(ctx: &Ctx, a: ExportArgs) -> Result<u8> {
    let engine = ctx.engine()?;
    match &a.output {
        None => {
            if isatty(1) {
                bail!("cowardly refusing to save to a terminal. Use the -o flag or redirect");
            }
            let mut out = io::BufWriter::new(io::stdout().lock());
            engine.export_container(&a.container, &mut out)?;
        }
        Some(path) => {
            // Written next to the target and renamed: a failed export
            // leaves no truncated archive under the asked-for name.
            let special = std::fs::metadata(path)
                .map(|m| !m.is_file())
                .unwrap_or(false);
            if special {
                let mut f = std::fs::OpenOptions::new().write(true).open(path)?;
                engine.export_container(&a.container, &mut f)?;
                return Ok(0);
            }
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let tmp = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
            let r = (|| -> Result<()> {
                let f = std::fs::File::create(&tmp)?;
                let mut w = io::BufWriter::new(f);
                engine.export_container(&a.container, &mut w)?;
                let f = w.into_inner().map_err(|e| e.into_error())?;
                f.sync_all()?;
                std::fs::rename(&tmp, path)?;
                Ok(())
            })();
            if r.is_err() {
                let _ = std::fs::remove_file(&tmp);
            }
            r?;
        }
    }
    Ok(0)
}

pub fn stop(ctx: &Ctx, a: StopArgs) -> Result<u8> {
    let engine = ctx.engine()?;
    each(&a.containers, |n| {
        if let Some(sig) = &a.signal {
            let c = engine.container(n)?;
            if c.state.status == Status::Running {
                engine.kill_container(n, Some(sig))?;
            }
        }
        engine.stop_container(n, a.time)?;
        Ok(())
    })
}

pub fn restart(ctx: &Ctx, a: StopArgs) -> Result<u8> {
    let engine = ctx.engine()?;
    each(&a.containers, |n| {
        engine.restart_container(n, a.time)?;
        Ok(())
    })
}

pub fn kill(ctx: &Ctx, a: KillArgs) -> Result<u8> {
    let engine = ctx.engine()?;
    each(&a.containers, |n| {
        engine.kill_container(n, a.signal.as_deref())?;
        Ok(())
    })
}

pub fn rm(ctx: &Ctx, a: RmArgs) -> Result<u8> {
    let engine = ctx.engine()?;
    each(&a.containers, |n| {
        engine.remove_container(n, a.force, a.volumes)?;
        Ok(())
    })
}

#[derive(Args)]
pub struct WaitArgs {
    /// Wait until the container is "not-running" (the default), has its "next-exit", or is "removed"
    #[arg(long, default_value = "not-running")]
    condition: String,
    #[arg(required = true)]
    containers: Vec<String>,
}

pub fn wait(ctx: &Ctx, a: WaitArgs) -> Result<u8> {
    let engine = ctx.engine()?;
    let condition: berth_engine::WaitCondition = a.condition.parse()?;
    let mut code = 0;
    for n in &a.containers {
        match engine.wait_container(n, condition) {
            Ok(c) => println!("{c}"),
            Err(e) => {
                print_error(&e.into());
                code = 1;
            }
        }
    }
    Ok(code)
}

pub fn pause(ctx: &Ctx, a: ContainersArgs) -> Result<u8> {
    let engine = ctx.engine()?;
    each(&a.containers, |n| {
        engine.pause_container(n)?;
        Ok(())
    })
}

pub fn unpause(ctx: &Ctx, a: ContainersArgs) -> Result<u8> {
    let engine = ctx.engine()?;
    each(&a.containers, |n| {
        engine.unpause_container(n)?;
        Ok(())
    })
}

pub fn rename(ctx: &Ctx, a: RenameArgs) -> Result<u8> {
    ctx.engine()?.rename_container(&a.container, &a.new_name)?;
    Ok(0)
}

pub fn diff(ctx: &Ctx, a: DiffArgs) -> Result<u8> {
    let mut out = std::io::stdout().lock();
    for (kind, path) in ctx.engine()?.container_changes(&a.container)? {
        writeln!(out, "{} {path}", kind.letter())?;
    }
    Ok(0)
}

pub fn commit(ctx: &Ctx, a: CommitArgs) -> Result<u8> {
    let id = ctx.engine()?.commit_container(
        &a.container,
        &CommitOptions {
            reference: a.reference,
            author: a.author,
            message: a.message,
            changes: a.changes,
            pause: a.pause,
        },
    )?;
    println!("{id}");
    Ok(0)
}

pub fn attach(ctx: &Ctx, a: AttachArgs) -> Result<u8> {
    let engine = ctx.engine()?;
    let c = engine.container(&a.container)?;
    let opts = AttachOptions {
        stdin: !a.no_stdin && c.spec.config.open_stdin,
        stdout: true,
        stderr: true,
    };
    let (c, att) = engine.attach_container(&c.id, opts)?;
    drop(engine);
    let code = stream(att, &c, c.spec.config.tty, opts.stdin, a.sig_proxy)?;
    Ok(code.unwrap_or(0) as u8)
}

/// `--since 42m` or a timestamp, as Docker takes them.
fn parse_time(s: &str) -> Result<i64> {
    if let Some(t) = time::parse_rfc3339(s) {
        return Ok(t);
    }
    if let Some(t) = time::parse_rfc3339(&format!("{s}Z")) {
        return Ok(t);
    }
    let (num, unit) = s.split_at(
        s.find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(s.len()),
    );
    let n: f64 = num
        .parse()
        .map_err(|_| anyhow::anyhow!("invalid value for time: {s:?}"))?;
    let secs = match unit {
        "" => return Ok((n * 1e9) as i64),
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        "ms" => n / 1000.0,
        _ => bail!("invalid value for time: {s:?}"),
    };
    Ok(time::now_nanos() - (secs * 1e9) as i64)
}

pub fn logs(ctx: &Ctx, a: LogsArgs) -> Result<u8> {
    let engine = ctx.engine()?;
    let tail = match a.tail.as_deref() {
        None | Some("all") => None,
        Some(t) => Some(
            t.parse::<i64>()
                .map_err(|_| anyhow::anyhow!("invalid value for --tail: {t}"))?,
        )
        .filter(|n| *n >= 0)
        .map(|n| n as usize),
    };
    let opts = LogOptions {
        follow: a.follow,
        tail,
        since: a.since.as_deref().map(parse_time).transpose()?,
        until: a.until.as_deref().map(parse_time).transpose()?,
    };
    let c = engine.container(&a.container)?;
    let mut out = io::stdout();
    let mut err = io::stderr();
    let tty = c.spec.config.tty;
    let r = engine.container_logs(&c.id, &opts, &mut |l| {
        let w: &mut dyn Write = if l.stderr && !tty { &mut err } else { &mut out };
        if a.timestamps {
            let t = time::format_rfc3339(l.time);
            // Docker pads the fraction to nine digits.
            let t = match t.split_once('.') {
                Some((s, f)) => format!("{s}.{:0<9}Z", f.trim_end_matches('Z')),
                None => format!("{}.000000000Z", t.trim_end_matches('Z')),
            };
            w.write_all(t.as_bytes())?;
            w.write_all(b" ")?;
        }
        w.write_all(&l.data)?;
        w.flush()
    });
    match r {
        Err(berth_engine::Error::Stream(_, e)) if e.kind() == io::ErrorKind::BrokenPipe => Ok(0),
        r => r.map(|_| 0).map_err(Into::into),
    }
}

pub fn exec(ctx: &Ctx, a: ExecArgs) -> Result<u8> {
    let engine = ctx.engine()?;
    if a.tty && a.interactive && !isatty(0) {
        eprintln!("the input device is not a TTY");
        return Ok(1);
    }
    let opts = ExecOptions {
        cmd: a.command.clone(),
        env: a.env.clone(),
        user: a.user.clone(),
        workdir: a.workdir.clone(),
        tty: a.tty,
        interactive: a.interactive,
        detach: a.detach,
        privileged: a.privileged,
    };
    let mut p = match engine.exec_container(&a.container, &opts) {
        Ok(p) => p,
        Err(berth_engine::Error::StartFailed { message, code }) => {
            eprintln!("{message}");
            return Ok(code as u8);
        }
        Err(e) => return Err(e.into()),
    };
    if a.detach {
        return Ok(0);
    }
    if let Some(master) = p.master.take() {
        relay_pty(master, a.interactive);
    }
    let code = berth_engine::wait_exec(p.pid);
    engine.exec_finished(&p, code);
    Ok(code as u8)
}

/// Copies between our terminal and a pty master until the master closes.
fn relay_pty(master: OwnedFd, interactive: bool) {
    let _raw = (interactive && isatty(0)).then(RawMode::enter).flatten();
    let fd = master.as_raw_fd();
    let set_size = move || {
        if let Some(s) = term_size(1).or_else(|| term_size(0)) {
            let ws = libc::winsize {
                ws_row: s.rows,
                ws_col: s.cols,
                ws_xpixel: 0,
                ws_ypixel: 0,
            };
            // SAFETY: TIOCSWINSZ reads the struct we pass.
            unsafe { libc::ioctl(fd, libc::TIOCSWINSZ, &ws) };
        }
    };
    set_size();
    // Our window's later sizes follow (SIGWINCH wakes a thread through a
    // pipe, as for run and attach).
    if let Ok((r, w)) = nix::unistd::pipe() {
        WINCH_FD.store(w.as_raw_fd(), Ordering::Relaxed);
        std::mem::forget(w);
        // SAFETY: installing a handler that only calls write(2).
        unsafe {
            libc::signal(libc::SIGWINCH, on_winch as *const () as libc::sighandler_t);
        }
        std::thread::spawn(move || {
            let mut f = std::fs::File::from(r);
            let mut b = [0u8; 16];
            while f.read(&mut b).is_ok_and(|n| n > 0) {
                set_size();
            }
        });
    }
    if interactive {
        std::thread::spawn(move || {
            let mut input = io::stdin().lock();
            // SAFETY: the master outlives this thread's use (the process
            // exits after the relay).
            let mut m = std::mem::ManuallyDrop::new(unsafe { std::fs::File::from_raw_fd(fd) });
            let mut buf = [0u8; 4096];
            while let Ok(n) = input.read(&mut buf) {
                if n == 0 || m.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        });
    }
    let mut m = std::fs::File::from(master);
    let mut out = io::stdout();
    let mut buf = [0u8; 32 * 1024];
    while let Ok(n) = m.read(&mut buf) {
        if n == 0 || out.write_all(&buf[..n]).is_err() {
            break;
        }
        let _ = out.flush();
    }
}

fn split_container_path(s: &str) -> Option<(&str, &str)> {
    // A host path with a colon needs a slash first (Docker's rule).
    if s.starts_with('/') || s.starts_with('.') {
        return None;
    }
    s.split_once(':')
}

pub fn cp(ctx: &Ctx, a: CpArgs) -> Result<u8> {
    let engine = ctx.engine()?;
    match (split_container_path(&a.src), split_container_path(&a.dest)) {
        (Some((c, p)), None) => {
            if a.dest == "-" {
                let mut out = io::stdout().lock();
                engine.copy_from_container(c, p, CopyTarget::StreamOut(&mut out))?;
            } else {
                engine.copy_from_container(c, p, CopyTarget::Host(PathBuf::from(&a.dest)))?;
            }
        }
        (None, Some((c, p))) => {
            if a.src == "-" {
                let mut input = io::stdin().lock();
                engine.copy_to_container(c, CopyTarget::Stream(&mut input), p)?;
            } else {
                engine.copy_to_container(c, CopyTarget::Host(PathBuf::from(&a.src)), p)?;
            }
        }
        (Some(_), Some(_)) => bail!("copying between containers is not supported"),
        (None, None) => bail!("must specify at least one container source"),
    }
    Ok(0)
}

fn ps_row(engine: &Engine, c: &Container, no_trunc: bool, size: bool) -> Value {
    let command = c.command();
    let command = if no_trunc {
        format!("\"{command}\"")
    } else {
        format!("\"{}\"", ellipsis(&command, 20))
    };
    let size_text = if size {
        let rw = engine.container_size(c);
        let virt = engine
            .resolve_image(&c.image_id)
            .map(|i| i.size)
            .unwrap_or(0)
            + rw;
        format!(
            "{} (virtual {})",
            human_size_precision(rw as f64, 3),
            human_size_precision(virt as f64, 3)
        )
    } else {
        String::new()
    };
    let labels: Vec<String> = c
        .spec
        .config
        .labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let mounts: Vec<String> = c
        .spec
        .mounts
        .iter()
        .map(|m| {
            if m.kind == "volume" {
                if no_trunc {
                    m.name.clone()
                } else {
                    ellipsis(&m.name, 15)
                }
            } else {
                m.source.clone()
            }
        })
        .filter(|s| !s.is_empty())
        .collect();
    json!({
        "ID": if no_trunc { c.id.clone() } else { c.short_id().to_string() },
        "Image": c.spec.config.image,
        "Command": command,
        "CreatedAt": go_time(c.created),
        "RunningFor": time::ago(c.created),
        "Ports": ports_text(c),
        "State": c.state.status.as_str(),
        "Status": c.status_text(),
        "Size": size_text,
        "Names": c.name,
        "Labels": labels.join(","),
        "Mounts": mounts.join(","),
        "Networks": c.spec.host.network_mode,
        "LocalVolumes": c.spec.mounts.iter().filter(|m| m.kind == "volume").count().to_string(),
    })
}

/// Docker's PORTS column: `0.0.0.0:8080->80/tcp, 53/udp`.
fn ports_text(c: &Container) -> String {
    let mut out = Vec::new();
    for (key, binds) in &c.state.ports {
        for b in binds {
            out.push(format!("{}:{}->{key}", b.host_ip, b.host_port));
        }
    }
    if c.state.ports.is_empty() && c.state.status == Status::Running {
        out.extend(c.spec.host.port_bindings.keys().cloned());
    }
    out.join(", ")
}

#[derive(Args)]
pub struct PortArgs {
    container: String,
    /// PRIVATE_PORT[/PROTO]
    port: Option<String>,
}

/// `port`: the host sides of a container's published ports.
pub fn port(ctx: &Ctx, a: PortArgs) -> Result<u8> {
    let c = ctx.engine()?.container(&a.container)?;
    let want = a.port.as_deref().map(|p| {
        if p.contains('/') {
            p.to_string()
        } else {
            format!("{p}/tcp")
        }
    });
    let mut out = io::stdout().lock();
    let mut any = false;
    for (key, binds) in &c.state.ports {
        if want.as_ref().is_some_and(|w| w != key) {
            continue;
        }
        for b in binds {
            any = true;
            if want.is_some() {
                writeln!(out, "{}:{}", b.host_ip, b.host_port)?;
            } else {
                writeln!(out, "{key} -> {}:{}", b.host_ip, b.host_port)?;
            }
        }
    }
    if let (Some(w), false) = (&want, any) {
        anyhow::bail!("No public port '{w}' published for {}", c.short_id());
    }
    Ok(0)
}

pub fn ps(ctx: &Ctx, a: PsArgs) -> Result<u8> {
    let engine = ctx.engine()?;
    let filter = PsFilter::parse(&a.filter)?;
    let last = if a.latest { 1 } else { a.last };
    let mut list = engine.list_containers(a.all || last > 0, &filter)?;
    if last > 0 {
        list.truncate(last as usize);
    }
    if a.quiet {
        let mut out = io::stdout().lock();
        for c in &list {
            writeln!(out, "{}", if a.no_trunc { &c.id } else { c.short_id() })?;
        }
        return Ok(0);
    }
    let rows: Vec<Value> = list
        .iter()
        .map(|c| ps_row(&engine, c, a.no_trunc, a.size))
        .collect();
    let mut default = "table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t{{.Ports}}\t{{.Names}}".to_string();
    if a.size {
        default.push_str("\t{{.Size}}");
    }
    let header = json!({
        "ID": "CONTAINER ID", "Image": "IMAGE", "Command": "COMMAND", "CreatedAt": "CREATED AT",
        "RunningFor": "CREATED", "Ports": "PORTS", "State": "STATE", "Status": "STATUS",
        "Size": "SIZE", "Names": "NAMES", "Labels": "LABELS", "Mounts": "MOUNTS",
        "Networks": "NETWORKS", "LocalVolumes": "LOCAL VOLUMES",
    });
    print_rows(a.format.as_deref(), &default, &header, &rows)?;
    Ok(0)
}

pub fn inspect(ctx: &Ctx, a: InspectArgs) -> Result<u8> {
    let engine = ctx.engine()?;
    let mut found = Vec::new();
    let mut code = 0;
    for n in &a.containers {
        match engine.container(n) {
            Ok(c) => {
                let mut v = engine.inspect_container(&c)?;
                if a.size {
                    let rw = engine.container_size(&c);
                    v["SizeRw"] = json!(rw);
                }
                found.push(v)
            }
            Err(berth_engine::Error::NoSuchContainer(_)) => {
                eprintln!("Error: No such container: {n}");
                code = 1;
            }
            Err(e) => return Err(e.into()),
        }
    }
    print_inspected(a.format.as_deref(), found)?;
    Ok(code)
}

pub fn prune(ctx: &Ctx, a: PruneArgs) -> Result<u8> {
    if !a.force && !super::confirm("WARNING! This will remove all stopped containers.")? {
        return Ok(0);
    }
    let (gone, bytes) = ctx.engine()?.prune_containers()?;
    let mut out = io::stdout().lock();
    if !gone.is_empty() {
        writeln!(out, "Deleted Containers:")?;
        for id in &gone {
            writeln!(out, "{id}")?;
        }
        writeln!(out)?;
    }
    writeln!(out, "Total reclaimed space: {}", human_size(bytes as f64))?;
    Ok(0)
}

pub fn top(ctx: &Ctx, a: TopArgs) -> Result<u8> {
    let (header, rows) = ctx.engine()?.top_container(&a.container, &a.ps_args)?;
    let mut tw = crate::render::TabWriter::new();
    tw.add(&header.join("\t"));
    for r in rows {
        tw.add(&r.join("\t"));
    }
    print!("{}", tw.render());
    Ok(0)
}

/// Set by SIGINT/SIGTERM while `stats` streams.
static STATS_STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_stats_stop(_: libc::c_int) {
    STATS_STOP.store(true, Ordering::Relaxed);
}

/// Docker's interval between two redraws of `stats`.
const STATS_INTERVAL: Duration = Duration::from_secs(1);

/// One row of the stats table from a reading and the one before it.
fn stats_row(c: &Container, s: &StatsSample, prev: Option<&StatsSample>, no_trunc: bool) -> Value {
    let id = if no_trunc {
        c.id.clone()
    } else {
        c.short_id().to_string()
    };
    let cpu = prev.map(|p| s.cpu_percent(p)).unwrap_or(0.0);
    let pair = |a: u64, b: u64| {
        format!(
            "{} / {}",
            human_size_precision(a as f64, 3),
            human_size_precision(b as f64, 3)
        )
    };
    let (mem, limit) = if s.running {
        (s.memory_used(), s.memory_limit)
    } else {
        (0, 0)
    };
    json!({
        "ID": id,
        "Container": id,
        "Name": c.name,
        "CPUPerc": format!("{cpu:.2}%"),
        "MemUsage": format!("{} / {}", bytes_size(mem as f64), bytes_size(limit as f64)),
        "MemPerc": format!("{:.2}%", if s.running { s.memory_percent() } else { 0.0 }),
        "NetIO": pair(s.net_rx, s.net_tx),
        "BlockIO": pair(s.block_read, s.block_write),
        "PIDs": s.pids.to_string(),
    })
}

pub fn stats(ctx: &Ctx, a: StatsArgs) -> Result<u8> {
    let engine = ctx.engine()?;
    // Named containers must exist now; without names the set follows
    // what runs (or exists, with -a) at each redraw.
    for n in &a.containers {
        engine.container(n)?;
    }
    let list = |engine: &Engine| -> Result<Vec<Container>> {
        if a.containers.is_empty() {
            Ok(engine.list_containers(a.all, &PsFilter::default())?)
        } else {
            Ok(a.containers
                .iter()
                .filter_map(|n| engine.container(n).ok())
                .collect())
        }
    };
    let header = json!({
        "ID": "CONTAINER ID", "Container": "CONTAINER", "Name": "NAME", "CPUPerc": "CPU %",
        "MemUsage": "MEM USAGE / LIMIT", "MemPerc": "MEM %", "NetIO": "NET I/O",
        "BlockIO": "BLOCK I/O", "PIDs": "PIDS",
    });
    let format = crate::output::normalise_format(a.format.as_deref().unwrap_or(
        "table {{.ID}}\t{{.Name}}\t{{.CPUPerc}}\t{{.MemUsage}}\t{{.MemPerc}}\t{{.NetIO}}\t{{.BlockIO}}\t{{.PIDs}}",
    ))
    .to_string();
    let mut prev: std::collections::HashMap<String, StatsSample> = Default::default();
    let sample = |engine: &Engine,
                  prev: &mut std::collections::HashMap<String, StatsSample>|
     -> Result<String> {
        let mut rows = Vec::new();
        let mut next = std::collections::HashMap::new();
        for c in list(engine)? {
            let s = engine.container_stats(&c);
            rows.push(stats_row(&c, &s, prev.get(&c.id), a.no_trunc));
            next.insert(c.id.clone(), s);
        }
        *prev = next;
        Ok(crate::render::render_rows(&format, &header, &rows)?)
    };
    if a.no_stream {
        // CPU % needs two readings; Docker's one-shot waits for a second.
        let _ = sample(&engine, &mut prev)?;
        std::thread::sleep(Duration::from_millis(500));
        let text = sample(&engine, &mut prev)?;
        io::stdout().lock().write_all(text.as_bytes())?;
        return Ok(0);
    }
    let tty = isatty(1);
    // SAFETY: the handler only stores to an atomic.
    unsafe {
        libc::signal(
            libc::SIGINT,
            on_stats_stop as *const () as libc::sighandler_t,
        );
        libc::signal(
            libc::SIGTERM,
            on_stats_stop as *const () as libc::sighandler_t,
        );
    }
    let mut out = io::stdout().lock();
    // On a terminal the table is redrawn in place, cursor hidden.
    if tty {
        let _ = out.write_all(b"\x1b[?25l");
    }
    let mut result = Ok(());
    while !STATS_STOP.load(Ordering::Relaxed) {
        let text = match sample(&engine, &mut prev) {
            Ok(t) => t,
            Err(e) => {
                result = Err(e);
                break;
            }
        };
        let frame = if tty {
            format!("\x1b[2J\x1b[H{text}")
        } else {
            text
        };
        // A closed pipe (`| head`) ends the stream quietly.
        if out
            .write_all(frame.as_bytes())
            .and_then(|_| out.flush())
            .is_err()
        {
            break;
        }
        let until = std::time::Instant::now() + STATS_INTERVAL;
        while std::time::Instant::now() < until && !STATS_STOP.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    if tty {
        let _ = out.write_all(b"\x1b[?25h");
        let _ = out.flush();
    }
    result.map(|_| 0)
}
