//! Running containers: the OCI bundle (config.json with Docker's
//! defaults), the runtimes that run it, and the cgroup readings the engine
//! reports. Mechanism only: which options a container gets is the
//! engine's business.

pub mod cgroup;
mod runtime;
pub mod seccomp;
pub mod spec;

use std::path::PathBuf;

pub use runtime::{open, Embedded, ExecSpec, External, Runtime, Stdio};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Runtime(String),
    #[error("{op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    pub fn kind(&self) -> berth_oci::ErrorKind {
        match self {
            Error::Invalid(_) => berth_oci::ErrorKind::InvalidArgument,
            Error::Runtime(_) | Error::Io { .. } => berth_oci::ErrorKind::Internal,
        }
    }

    pub(crate) fn io(
        op: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io { op, path, source }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
