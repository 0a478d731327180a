//! Berth's operations. Every front end (CLI, API socket, compose) calls this
//! crate and nothing below it; the policy Docker users rely on (how names
//! resolve, when removal is refused, what a load prints) lives here.

mod archive;
mod build;
mod changes;
mod commit;
mod config;
pub mod containers;
mod events;
mod fetch;
mod ids;
mod images;
mod import;
mod manifest_lists;
mod net_model;
mod network;
mod networks;
mod registry;
mod sys;
mod system;
mod volumes;

use std::path::{Path, PathBuf};

pub use archive::{LoadedImage, SaveOptions};
pub use berth_layer::ChangeKind;
/// `registry serve` runs outside any store, so the engine only passes it on.
pub use berth_registry::{serve as serve_registry, ServeOptions as RegistryServeOptions};
pub use berth_store::GcReport;
pub use build::BuildOptions;
pub use containers::exec::wait_exec;
pub use containers::monitor::run as run_monitor;
pub use containers::{
    AttachOptions, Attached, CommitOptions, Container, CopyTarget, CreateOptions, Event,
    ExecOptions, Frame, LogLine, LogOptions, PsFilter, StatsSample, Status, StopOutcome, TtySize,
    UpdateOptions, WaitCondition,
};
pub use events::{EventFilter, EventMessage, EventsOptions};
pub use images::{HistoryRow, ImageFilter, ImageSummary, RemovedItem};
pub use import::ImportOptions;
pub use manifest_lists::Annotation;
pub use net_model::{Endpoint, EndpointConfig, PortBinding};
pub use networks::{Network, NetworkCreateOptions};
pub use registry::{PullEvent, PullOptions, Pulled, PushEvent, PushOptions};
pub use system::{cgroup_version, DiskUsage, Info, API_VERSION, VERSION};
pub use volumes::Volume;

use berth_store::Store;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("No such image: {0}")]
    NoSuchImage(String),
    #[error("No such container: {0}")]
    NoSuchContainer(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Internal(String),
    /// The container's process could not start; `code` is Docker's exit
    /// code for it (125, 126 or 127).
    #[error("{message}")]
    StartFailed { message: String, code: i32 },
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    Conflict(String),
    /// A build step failed; the message names the step and how to debug it.
    #[error("{0}")]
    BuildFailed(String),
    #[error("invalid archive: {0}")]
    InvalidArchive(String),
    #[error(transparent)]
    Oci(#[from] berth_oci::Error),
    #[error(transparent)]
    Store(#[from] berth_store::Error),
    #[error(transparent)]
    Layer(#[from] berth_layer::Error),
    #[error("network: {0}")]
    Net(#[from] berth_net::Error),
    #[error(transparent)]
    Runtime(#[from] berth_runtime::Error),
    /// A registry refused the credentials.
    #[error("{0}")]
    Unauthorized(String),
    /// Something outside Berth is not answering (a registry).
    #[error("{0}")]
    Unavailable(String),
    #[error("{op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}: {1}")]
    Stream(&'static str, #[source] std::io::Error),
    /// The kernel refused a live change of a container's cgroup.
    #[error("Cannot update container {id}: {source}")]
    CannotUpdate {
        id: String,
        #[source]
        source: berth_runtime::Error,
    },
}

pub use berth_store::ErrorKind;

impl Error {
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::NoSuchImage(_) | Error::NoSuchContainer(_) | Error::NotFound(_) => {
                ErrorKind::NotFound
            }
            Error::Internal(_) | Error::StartFailed { .. } | Error::BuildFailed(_) => {
                ErrorKind::Internal
            }
            Error::InvalidArgument(_) | Error::InvalidArchive(_) => ErrorKind::InvalidArgument,
            Error::Oci(e) => e.kind(),
            Error::Layer(e) => e.kind(),
            Error::Net(e) => e.kind(),
            Error::Runtime(e) => e.kind(),
            Error::Unauthorized(_) => ErrorKind::Unauthorized,
            Error::Unavailable(_) => ErrorKind::Unavailable,
            Error::Conflict(_) => ErrorKind::Conflict,
            Error::Store(e) => e.kind(),
            Error::Io { .. } | Error::Stream(..) | Error::CannotUpdate { .. } => {
                ErrorKind::Internal
            }
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

#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Persistent state (default /var/lib/berth).
    pub root: PathBuf,
    /// Live state: pids, sockets (default /run/berth).
    pub runroot: PathBuf,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            root: PathBuf::from("/var/lib/berth"),
            runroot: PathBuf::from("/run/berth"),
        }
    }
}

pub struct Engine {
    store: Store,
    opts: EngineOptions,
}

impl Engine {
    pub fn open(opts: EngineOptions) -> Result<Engine> {
        let store = Store::open(&opts.root)?;
        // Live state (sockets, bundles, rootfs mount points) is root's too.
        if opts.runroot.exists() {
            berth_store::private_dir(&opts.runroot, 0o710)?;
        } else {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o710)
                .create(&opts.runroot)
                .map_err(Error::io("create", &opts.runroot))?;
        }
        Ok(Engine { store, opts })
    }

    pub fn root(&self) -> &Path {
        self.store.root()
    }

    pub fn runroot(&self) -> &Path {
        &self.opts.runroot
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each crate's error keeps its kind through the engine's, so the API
    /// can answer 404/409/400/401/503/500 from it.
    #[test]
    fn kinds_survive_the_engine() {
        let io = || std::io::Error::other("disk full");
        let layer = berth_layer::Error::Io {
            op: "write",
            path: "/x".into(),
            source: io(),
        };
        assert_eq!(Error::from(layer).kind(), ErrorKind::Internal);
        let hostile = berth_layer::Error::Unsafe {
            entry: "../x".into(),
            reason: "escapes".into(),
        };
        assert_eq!(Error::from(hostile).kind(), ErrorKind::InvalidArgument);
        let bad_ref = berth_oci::Reference::parse("UPPER").unwrap_err();
        assert_eq!(Error::from(bad_ref).kind(), ErrorKind::InvalidArgument);
        let rt = berth_runtime::Error::Invalid("runtime \"nope\" not found".into());
        assert_eq!(Error::from(rt).kind(), ErrorKind::InvalidArgument);
        let net = berth_net::Error::Nft("boom".into());
        let e = Error::from(net);
        assert_eq!(e.kind(), ErrorKind::Internal);
        assert!(
            std::error::Error::source(&e).is_some(),
            "the source is kept"
        );
        let reg = registry::reg_err("pull", berth_registry::Error::Unauthorized("denied".into()));
        assert_eq!(reg.kind(), ErrorKind::Unauthorized);
        let reg = registry::reg_err("pull", berth_registry::Error::Io("refused".into()));
        assert_eq!(reg.kind(), ErrorKind::Unavailable);
        assert_eq!(
            Error::NoSuchContainer("x".into()).kind(),
            ErrorKind::NotFound
        );
        assert_eq!(Error::Conflict("x".into()).kind(), ErrorKind::Conflict);
    }
}
