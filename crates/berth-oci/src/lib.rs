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

fn reference_message(detail: &str) -> String {
    if detail.is_empty() {
        "invalid reference format".to_string()
    } else if detail.starts_with("invalid ") {
        detail.to_string()
    } else {
        format!("invalid reference format: {detail}")
    }
}
