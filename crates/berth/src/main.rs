//! `berth`: Docker's command line over a daemonless engine.

mod cmd;
mod output;
mod render;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "berth",
    version,
    about = "A daemonless container engine with Docker's command line",
    disable_help_subcommand = true
)]
struct Cli {
    /// Where images, containers and volumes are stored.
    #[arg(
        long,
        global = true,
        env = "BERTH_ROOT",
        default_value = "/var/lib/berth"
    )]
    root: PathBuf,
    /// Where live state (pids, sockets) is kept.
    #[arg(
        long,
        global = true,
        env = "BERTH_RUNROOT",
        default_value = "/run/berth"
    )]
    runroot: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Build an image from a Dockerfile
    Build(cmd::build::BuildArgs),
    /// Manage builds
    #[command(subcommand)]
    Builder(cmd::build::BuilderCommand),
    /// Docker Buildx (only `build`)
    #[command(subcommand)]
    Buildx(cmd::build::BuildxCommand),
    /// Import the contents from a tarball to create a filesystem image
    Import(cmd::images::ImportArgs),
    /// List images
    #[command(visible_alias = "image-ls")]
    Images(cmd::images::ImagesArgs),
    /// Manage images
    #[command(subcommand)]
    Image(cmd::images::ImageCommand),
    /// Return low-level information on objects
    Inspect(cmd::images::InspectArgs),
    /// Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE
    Tag(cmd::images::TagArgs),
    /// Remove one or more images
    Rmi(cmd::images::RmiArgs),
    /// Show the history of an image
    History(cmd::images::HistoryArgs),
    /// Save one or more images to a tar archive (streamed to STDOUT by default)
    Save(cmd::images::SaveArgs),
    /// Load an image from a tar archive or STDIN
    Load(cmd::images::LoadArgs),
    /// Get real time events from the server
    Events(cmd::system::EventsArgs),
    /// Display system-wide information
    Info(cmd::system::InfoArgs),
    /// Manage Berth
    #[command(subcommand)]
    System(cmd::system::SystemCommand),
    /// Show the Berth version information
    Version(cmd::system::VersionArgs),
    /// Create and run a new container from an image
    Run(cmd::containers::RunArgs),
    /// Create a new container
    Create(cmd::containers::CreateArgs),
    /// Start one or more stopped containers
    Start(cmd::containers::StartArgs),
    /// Stop one or more running containers
    Stop(cmd::containers::StopArgs),
    /// Restart one or more containers
    Restart(cmd::containers::StopArgs),
    /// Kill one or more running containers
    Kill(cmd::containers::KillArgs),
    /// Remove one or more containers
    Rm(cmd::containers::RmArgs),
    /// Block until one or more containers stop, then print their exit codes
    Wait(cmd::containers::WaitArgs),
    /// Fetch the logs of a container
    Logs(cmd::containers::LogsArgs),
    /// Execute a command in a running container
    Exec(cmd::containers::ExecArgs),
    /// Copy files/folders between a container and the local filesystem
    Cp(cmd::containers::CpArgs),
    /// List containers
    Ps(cmd::containers::PsArgs),
    /// Display the running processes of a container
    Top(cmd::containers::TopArgs),
    /// Display a live stream of container(s) resource usage statistics
    Stats(cmd::containers::StatsArgs),
    /// Update configuration of one or more containers
    Update(cmd::containers::UpdateArgs),
    /// Export a container's filesystem as a tar archive
    Export(cmd::containers::ExportArgs),
    /// Pause all processes within one or more containers
    Pause(cmd::containers::ContainersArgs),
    /// Unpause all processes within one or more containers
    Unpause(cmd::containers::ContainersArgs),
    /// Rename a container
    Rename(cmd::containers::RenameArgs),
    /// Attach local standard input, output, and error streams to a running container
    Attach(cmd::containers::AttachArgs),
    /// Inspect changes to files or directories on a container's filesystem
    Diff(cmd::containers::DiffArgs),
    /// Create a new image from a container's changes
    Commit(cmd::containers::CommitArgs),
    /// List port mappings or a specific mapping for the container
    Port(cmd::containers::PortArgs),
    /// Manage containers
    #[command(subcommand)]
    Container(cmd::containers::ContainerCommand),
    /// Manage volumes
    #[command(subcommand)]
    Volume(cmd::volumes::VolumeCommand),
    /// Manage networks
    #[command(subcommand)]
    Network(cmd::networks::NetworkCommand),
    /// Download an image from a registry
    Pull(cmd::registry::PullArgs),
    /// Upload an image to a registry
    Push(cmd::registry::PushArgs),
    /// Run a registry
    #[command(subcommand)]
    Registry(cmd::registry::RegistryCommand),
    /// Log in to a registry
    Login(cmd::registry::LoginArgs),
    /// Manage manifest lists (multi-platform images) in registries
    #[command(subcommand)]
    Manifest(cmd::registry::ManifestCommand),
    /// Log out from a registry
    Logout(cmd::registry::LogoutArgs),
    /// The per-container monitor (started by Berth itself)
    #[command(hide = true)]
    Monitor { id: String },
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            use clap::error::ErrorKind;
            let code = match e.kind() {
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => 0,
                // Docker exits 125 when the command line itself is wrong.
                _ => 125,
            };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    let ctx = cmd::Ctx {
        root: cli.root,
        runroot: cli.runroot,
    };
    let result = match cli.command {
        Command::Build(a) => cmd::build::build(&ctx, a),
        Command::Builder(c) => cmd::build::builder(&ctx, c),
        Command::Buildx(cmd::build::BuildxCommand::Build(a)) => cmd::build::build(&ctx, a),
        Command::Import(a) => cmd::images::import(&ctx, a),
        Command::Images(a) => cmd::images::images(&ctx, a),
        Command::Image(c) => cmd::images::image(&ctx, c),
        Command::Inspect(a) => cmd::images::inspect(&ctx, a),
        Command::Tag(a) => cmd::images::tag(&ctx, a),
        Command::Rmi(a) => cmd::images::rmi(&ctx, a),
        Command::History(a) => cmd::images::history(&ctx, a),
        Command::Save(a) => cmd::images::save(&ctx, a),
        Command::Load(a) => cmd::images::load(&ctx, a),
        Command::Events(a) => cmd::system::events(&ctx, a),
        Command::Info(a) => cmd::system::info(&ctx, a),
        Command::System(c) => cmd::system::system(&ctx, c),
        Command::Version(a) => cmd::system::version(&ctx, a),
        Command::Run(a) => cmd::containers::run(&ctx, a),
        Command::Create(a) => cmd::containers::create(&ctx, a),
        Command::Start(a) => cmd::containers::start(&ctx, a),
        Command::Stop(a) => cmd::containers::stop(&ctx, a),
        Command::Restart(a) => cmd::containers::restart(&ctx, a),
        Command::Kill(a) => cmd::containers::kill(&ctx, a),
        Command::Rm(a) => cmd::containers::rm(&ctx, a),
        Command::Wait(a) => cmd::containers::wait(&ctx, a),
        Command::Logs(a) => cmd::containers::logs(&ctx, a),
        Command::Exec(a) => cmd::containers::exec(&ctx, a),
        Command::Cp(a) => cmd::containers::cp(&ctx, a),
        Command::Ps(a) => cmd::containers::ps(&ctx, a),
        Command::Top(a) => cmd::containers::top(&ctx, a),
        Command::Stats(a) => cmd::containers::stats(&ctx, a),
        Command::Update(a) => cmd::containers::update(&ctx, a),
        Command::Export(a) => cmd::containers::export(&ctx, a),
        Command::Pause(a) => cmd::containers::pause(&ctx, a),
        Command::Unpause(a) => cmd::containers::unpause(&ctx, a),
        Command::Rename(a) => cmd::containers::rename(&ctx, a),
        Command::Attach(a) => cmd::containers::attach(&ctx, a),
        Command::Diff(a) => cmd::containers::diff(&ctx, a),
        Command::Commit(a) => cmd::containers::commit(&ctx, a),
        Command::Port(a) => cmd::containers::port(&ctx, a),
        Command::Container(c) => cmd::containers::container(&ctx, c),
        Command::Volume(c) => cmd::volumes::volume(&ctx, c),
        Command::Network(c) => cmd::networks::network(&ctx, c),
        Command::Pull(a) => cmd::registry::pull(&ctx, a),
        Command::Push(a) => cmd::registry::push(&ctx, a),
        Command::Registry(c) => cmd::registry::registry(&ctx, c),
        Command::Login(a) => cmd::registry::login(&ctx, a),
        Command::Manifest(c) => cmd::registry::manifest(&ctx, c),
        Command::Logout(a) => cmd::registry::logout(&ctx, a),
        Command::Monitor { id } => {
            let code = berth_engine::run_monitor(
                berth_engine::EngineOptions {
                    root: ctx.root.clone(),
                    runroot: ctx.runroot.clone(),
                },
                &id,
            );
            return ExitCode::from(code as u8);
        }
    };
    match result {
        Ok(code) => ExitCode::from(code),
        // Output piped into `head` and closed early: end quietly, with the
        // status a process killed by SIGPIPE has (as the docker CLI does).
        Err(e)
            if e.chain().any(|c| {
                c.downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            }) =>
        {
            ExitCode::from(141)
        }
        Err(e) => {
            output::print_error(&e);
            ExitCode::from(1)
        }
    }
}
