//! The OCI distribution protocol: a client for pulling and pushing (over
//! oci-client, which does the token dance) and Berth's own registry server
//! (axum). Mechanism only: which images to fetch and how they enter a
//! store is the engine's business.

pub mod client;
mod htpasswd;
pub mod server;

pub use client::{Auth, Client, Fetched, Transport};
pub use server::{serve, ServeOptions};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Io(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Registry(String),
}

impl Error {
    pub fn kind(&self) -> berth_oci::ErrorKind {
        use berth_oci::ErrorKind as K;
        match self {
            Error::Io(_) => K::Unavailable,
            Error::Invalid(_) => K::InvalidArgument,
            Error::NotFound(_) => K::NotFound,
            Error::Unauthorized(_) => K::Unauthorized,
            Error::Registry(_) => K::Unavailable,
        }
    }
}

pub fn base64_decode(s: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.decode(s).ok()
}

pub fn base64_encode(b: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(b)
}
