//! OCI basics shared by every Berth crate: references, digests, media types,
//! platforms and the image/manifest/index documents.
//!
//! The image config is our own type rather than `oci-spec`'s: Docker images
//! carry fields the OCI spec does not list (Healthcheck, OnBuild, Shell), an
//! image's id is the digest of its config, and a type that dropped fields on
//! a round trip would silently change images. Unknown fields are kept.

pub mod digest;
pub mod image;
pub mod media;
pub mod platform;
pub mod reference;
pub mod time;

pub use digest::{Algorithm, Digest, Hasher, HashingReader, HashingWriter};
pub use image::{
    ContainerConfig, Descriptor, HealthConfig, History, ImageConfig, Index, Manifest, RootFs,
};
pub use platform::Platform;
pub use reference::Reference;

/// What kind of failure an error is: every Berth crate's error answers
/// with one of these, the CLI turns it into an exit code and the API into
/// an HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// No such image, container, network, volume, blob (404).
    NotFound,
    /// The object's state forbids it: a name in use, a running container (409).
    Conflict,
    /// The request itself is wrong: bad flags, references, files (400).
    InvalidArgument,
    /// Credentials were refused (401).
    Unauthorized,
    /// Something outside is not there now: a registry, a runtime (503).
    Unavailable,
    /// Anything else: I/O, the kernel, a bug (500).
    Internal,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{}", reference_message(.0))]
    InvalidReference(String),
    #[error("invalid digest: {0}")]
    InvalidDigest(String),
    #[error("unsupported digest algorithm: {0}")]
    UnsupportedDigest(String),
    #[error("invalid platform {0:?}: {1}")]
    InvalidPlatform(String, &'static str),
    #[error("invalid {what}: {source}")]
    Json {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
}

impl Error {
    /// Every error here is about input: a reference, digest, platform or
    /// document that does not parse.
    pub fn kind(&self) -> ErrorKind {
        ErrorKind::InvalidArgument
    }
}

fn reference_message(detail: &str) -> String {
    if detail.is_empty() {
        "invalid reference format".to_string()
    } else if detail.starts_with("invalid ") {
        detail.to_string()
    } else {
        format!("invalid reference format: {detail}")
    }
}
