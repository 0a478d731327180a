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
    /// Display system-wide information
    Info(cmd::system::InfoArgs),
    /// Manage Berth
    #[command(subcommand)]
    System(cmd::system::SystemCommand),
    /// Show the Berth version information
    Version(cmd::system::VersionArgs),
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
        Command::Import(a) => cmd::images::import(&ctx, a),
        Command::Images(a) => cmd::images::images(&ctx, a),
        Command::Image(c) => cmd::images::image(&ctx, c),
        Command::Inspect(a) => cmd::images::inspect(&ctx, a),
        Command::Tag(a) => cmd::images::tag(&ctx, a),
        Command::Rmi(a) => cmd::images::rmi(&ctx, a),
        Command::History(a) => cmd::images::history(&ctx, a),
        Command::Save(a) => cmd::images::save(&ctx, a),
        Command::Load(a) => cmd::images::load(&ctx, a),
        Command::Info(a) => cmd::system::info(&ctx, a),
        Command::System(c) => cmd::system::system(&ctx, c),
        Command::Version(a) => cmd::system::version(&ctx, a),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            output::print_error(&e);
            ExitCode::from(1)
        }
    }
}
