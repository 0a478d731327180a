pub mod images;
pub mod system;

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
