pub mod build;
pub mod containers;
pub mod images;
pub mod networks;
pub mod registry;
pub mod system;
pub mod volumes;

use std::path::PathBuf;

use anyhow::{Context, Result};
use berth_engine::{Engine, EngineOptions};

pub struct Ctx {
    pub root: PathBuf,
    pub runroot: PathBuf,
}

impl Ctx {
    pub fn engine(&self) -> Result<Engine> {
        Engine::open(EngineOptions {
            root: self.root.clone(),
            runroot: self.runroot.clone(),
        })
        .with_context(|| format!("opening the store at {}", self.root.display()))
    }
}

/// Whether `fd` is a terminal.
pub fn isatty(fd: i32) -> bool {
    // SAFETY: isatty only inspects the descriptor.
    unsafe { libc::isatty(fd) == 1 }
}

/// Docker's prune prompt; true when the user agrees.
pub fn confirm(warning: &str) -> Result<bool> {
    use std::io::{BufRead, Write};
    print!("{warning}\nAre you sure you want to continue? [y/N] ");
    std::io::stdout().flush()?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(matches!(line.trim(), "y" | "Y" | "yes"))
}
