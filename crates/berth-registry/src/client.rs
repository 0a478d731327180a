//! A blocking face on oci-client for one registry. The engine calls it
//! from plain threads (several at once for parallel layers); each call
//! runs on this client's own small tokio runtime.

use std::io;
use std::path::Path;

use bytes::Bytes;
use futures_util::StreamExt;
use oci_client::client::{BlobResponse, ClientConfig, ClientProtocol};
use oci_client::manifest::OciDescriptor;
use oci_client::secrets::RegistryAuth;
use oci_client::{Reference, RegistryOperation};
use tokio::io::AsyncReadExt;

use crate::Error;

/// Credentials for a registry.
#[derive(Debug, Clone, PartialEq)]
pub enum Auth {
    Anonymous,
    Basic(String, String),
    /// An identity token (credential helpers and some logins give these).
    Bearer(String),
}

/// How to reach a registry.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Transport {
    /// https, certificates verified (system roots plus extra CAs).
    Https,
    /// Docker's insecure registries: https without verification when the
    /// registry speaks it, else plain http.
    Insecure,
}

/// A manifest or index as the registry sent it.
#[derive(Debug, Clone)]
pub struct Fetched {
    pub bytes: Vec<u8>,
    /// The digest the registry named it by.
    pub digest: String,
    pub media_type: String,
}

/// Where a blob's bytes go as they arrive.
pub trait Sink {
    /// The registry ignored the range asked for and sends the whole blob:
    /// start over.
    fn restart(&mut self) -> io::Result<()>;
    fn write(&mut self, data: &[u8]) -> io::Result<()>;
}

/// The media types we ask for, most specific first.
pub const MANIFEST_TYPES: &[&str] = &[
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
];

pub struct Client {
    rt: tokio::runtime::Runtime,
    inner: oci_client::Client,
    auth: RegistryAuth,
    registry: String,
    plain_http: bool,
    insecure: bool,
    extra_ca: Vec<Vec<u8>>,
}

/// Whether anything answers https at `registry` (any HTTP status will do).
async fn speaks_https(registry: &str) -> bool {
    let Ok(c) = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .connect_timeout(std::time::Duration::from_secs(5))
        .timeout(std::time::Duration::from_secs(10))
        .build()
    else {
        return false;
    };
    c.get(format!("https://{registry}/v2/"))
        .send()
        .await
        .is_ok()
}

fn map_err(e: oci_client::errors::OciDistributionError) -> Error {
    use oci_client::errors::OciDistributionError as E;
    let text = e.to_string();
    match e {
        E::AuthenticationFailure(m) => Error::Unauthorized(format!("authentication failed: {m}")),
        E::ImageManifestNotFoundError(m) => Error::NotFound(format!("manifest unknown: {m}")),
        E::DigestError(d) => Error::Invalid(format!("digest mismatch: {d}")),
        E::ServerError { code: 401, .. } | E::ServerError { code: 403, .. } => {
            Error::Unauthorized(text)
        }
        E::ServerError { code: 404, .. } => Error::NotFound(text),
        E::RequestError(r) => Error::Io(format!(
            "cannot reach the registry: {}",
            std::error::Error::source(&r)
                .map(|s| s.to_string())
                .unwrap_or_else(|| r.to_string())
        )),
        _ if text.contains("UNAUTHORIZED") || text.contains("DENIED") => Error::Unauthorized(text),
        _ if text.contains("MANIFEST_UNKNOWN")
            || text.contains("NAME_UNKNOWN")
            || text.contains("BLOB_UNKNOWN") =>
        {
            Error::NotFound(text)
        }
        _ => Error::Registry(text),
    }
}

impl Client {
    /// A client for `registry` (host[:port]); `extra_ca` are PEM
    /// certificates to trust besides the system's.
    pub fn new(
        registry: &str,
        transport: Transport,
        auth: Auth,
        extra_ca: Vec<Vec<u8>>,
    ) -> Result<Client, Error> {
        // Once per process; a second call only reports it is done.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| Error::Io(format!("start the registry client: {e}")))?;
        let plain_http = transport == Transport::Insecure && !rt.block_on(speaks_https(registry));
        let config = ClientConfig {
            protocol: if plain_http {
                ClientProtocol::Http
            } else {
                ClientProtocol::Https
            },
            accept_invalid_certificates: transport == Transport::Insecure,
            extra_root_certificates: extra_ca
                .iter()
                .map(|data| oci_client::client::Certificate {
                    encoding: oci_client::client::CertificateEncoding::Pem,
                    data: data.clone(),
                })
                .collect(),
            connect_timeout: Some(std::time::Duration::from_secs(30)),
            ..Default::default()
        };
        let inner = {
            let _g = rt.enter();
            oci_client::Client::new(config)
        };
        Ok(Client {
            rt,
            inner,
            auth: match auth {
                Auth::Anonymous => RegistryAuth::Anonymous,
                Auth::Basic(u, p) => RegistryAuth::Basic(u, p),
                Auth::Bearer(t) => RegistryAuth::Bearer(t),
            },
            registry: registry.to_string(),
            plain_http,
            insecure: transport == Transport::Insecure,
            extra_ca,
        })
    }

    fn reference(&self, repository: &str, tag_or_digest: &str) -> Reference {
        if tag_or_digest.contains(':') {
            Reference::with_digest(
                self.registry.clone(),
                repository.to_string(),
                tag_or_digest.to_string(),
            )
        } else {
            Reference::with_tag(
                self.registry.clone(),
                repository.to_string(),
                tag_or_digest.to_string(),
            )
        }
    }

    /// Whether this client speaks plain http.
    pub fn plain_http(&self) -> bool {
        self.plain_http
    }

    /// Checks Basic credentials the way `docker login` does: the API
    /// root must accept them, or the token service must give a token for
    /// them.
    pub fn check_login(&self) -> Result<(), Error> {
        let plain_http = self.plain_http;
        let RegistryAuth::Basic(user, password) = &self.auth else {
            return Ok(());
        };
        let host = if self.registry == "docker.io" {
            "registry-1.docker.io"
        } else {
            &self.registry
        };
        let scheme = if plain_http { "http" } else { "https" };
        let url = format!("{scheme}://{host}/v2/");
        self.rt.block_on(async {
            let mut b = reqwest::Client::builder().danger_accept_invalid_certs(self.insecure);
            for pem in &self.extra_ca {
                if let Ok(c) = reqwest::Certificate::from_pem(pem) {
                    b = b.add_root_certificate(c);
                }
            }
            let http = b
                .build()
                .map_err(|e| Error::Io(format!("http client: {e}")))?;
            let res = http
                .get(&url)
                .basic_auth(user, Some(password))
                .send()
                .await
                .map_err(|e| Error::Io(format!("cannot reach {url}: {e}")))?;
            if res.status().is_success() {
                return Ok(());
            }
            let challenge = res
                .headers()
                .get("WWW-Authenticate")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string();
            if res.status() == reqwest::StatusCode::UNAUTHORIZED
                && challenge.to_ascii_lowercase().starts_with("bearer")
            {
                // The token service judges the credentials.
                let r = self.reference("library/hello-world", "latest");
                return self
                    .inner
                    .auth(&r, &self.auth, RegistryOperation::Pull)
                    .await
                    .map(drop)
                    .map_err(|_| {
                        Error::Unauthorized("unauthorized: incorrect username or password".into())
                    });
            }
            if res.status() == reqwest::StatusCode::UNAUTHORIZED {
                return Err(Error::Unauthorized(
                    "unauthorized: incorrect username or password".into(),
                ));
            }
            Err(Error::Registry(format!("{url} answered {}", res.status())))
        })
    }

    /// Logs in (the token dance for `push` when asked) and checks the
    /// credentials work.
    pub fn authenticate(&self, repository: &str, push: bool) -> Result<(), Error> {
        let r = self.reference(repository, "latest");
        let op = if push {
            RegistryOperation::Push
        } else {
            RegistryOperation::Pull
        };
        self.rt
            .block_on(self.inner.auth(&r, &self.auth, op))
            .map(drop)
            .map_err(map_err)
    }

    /// A manifest or index by tag or digest.
    pub fn manifest(&self, repository: &str, reference: &str) -> Result<Fetched, Error> {
        let r = self.reference(repository, reference);
        let (bytes, digest) = self
            .rt
            .block_on(self.inner.pull_manifest_raw(&r, &self.auth, MANIFEST_TYPES))
            .map_err(map_err)?;
        let doc: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| {
            Error::Invalid(format!(
                "the registry sent a manifest that is not JSON: {e}"
            ))
        })?;
        let media_type = doc
            .get("mediaType")
            .and_then(|m| m.as_str())
            .map(str::to_string)
            .unwrap_or_else(|| {
                if doc.get("manifests").is_some() {
                    MANIFEST_TYPES[0].to_string()
                } else {
                    MANIFEST_TYPES[2].to_string()
                }
            });
        Ok(Fetched {
            bytes: bytes.to_vec(),
            digest,
            media_type,
        })
    }

    /// Streams blob `digest` from byte `offset` into `sink`. Verifying the
    /// content is the caller's (it saw the bytes before `offset`).
    pub fn blob(
        &self,
        repository: &str,
        digest: &str,
        offset: u64,
        sink: &mut dyn Sink,
    ) -> Result<(), Error> {
        let r = self.reference(repository, digest);
        let desc = OciDescriptor {
            digest: digest.to_string(),
            ..Default::default()
        };
        self.rt.block_on(async {
            let mut stream = if offset == 0 {
                self.inner
                    .pull_blob_stream(&r, &desc)
                    .await
                    .map_err(map_err)?
            } else {
                match self
                    .inner
                    .pull_blob_stream_partial(&r, &desc, offset, None)
                    .await
                    .map_err(map_err)?
                {
                    BlobResponse::Full(s) => {
                        sink.restart()
                            .map_err(|e| Error::Io(format!("restart {digest}: {e}")))?;
                        s
                    }
                    BlobResponse::Partial(s) => s,
                }
            };
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|e| Error::Io(format!("download {digest}: {e}")))?;
                sink.write(&chunk)
                    .map_err(|e| Error::Io(format!("write {digest}: {e}")))?;
            }
            Ok(())
        })
    }

    /// Every tag of a repository, page by page.
    pub fn tags(&self, repository: &str) -> Result<Vec<String>, Error> {
        let r = self.reference(repository, "latest");
        let mut out: Vec<String> = Vec::new();
        loop {
            let last = out.last().cloned();
            let page = self
                .rt
                .block_on(
                    self.inner
                        .list_tags(&r, &self.auth, Some(1000), last.as_deref()),
                )
                .map_err(map_err)?;
            let n = page.tags.len();
            out.extend(page.tags);
            if n < 1000 {
                return Ok(out);
            }
        }
    }

    pub fn blob_exists(&self, repository: &str, digest: &str) -> Result<bool, Error> {
        let r = self.reference(repository, "latest");
        self.rt
            .block_on(async {
                self.inner
                    .auth(&r, &self.auth, RegistryOperation::Push)
                    .await?;
                self.inner.blob_exists(&r, digest).await
            })
            .map_err(map_err)
    }

    /// Mounts a blob the registry has in `from` into `repository`.
    pub fn mount_blob(&self, repository: &str, from: &str, digest: &str) -> Result<(), Error> {
        let r = self.reference(repository, "latest");
        let src = self.reference(from, "latest");
        self.rt
            .block_on(self.inner.mount_blob(&r, &src, digest))
            .map_err(map_err)
    }

    /// Uploads the file at `path` as blob `digest`, in chunks read as they
    /// go (never the whole blob in memory).
    pub fn push_blob_file(&self, repository: &str, digest: &str, path: &Path) -> Result<(), Error> {
        let r = self.reference(repository, "latest");
        let path = path.to_path_buf();
        self.rt
            .block_on(async {
                self.inner
                    .auth(&r, &self.auth, RegistryOperation::Push)
                    .await?;
                let file = tokio::fs::File::open(&path).await?;
                let chunks = futures_util::stream::unfold(file, |mut f| async move {
                    let mut buf = vec![0u8; 4 << 20];
                    let mut filled = 0;
                    while filled < buf.len() {
                        match f.read(&mut buf[filled..]).await {
                            Ok(0) => break,
                            Ok(n) => filled += n,
                            Err(e) => return Some((Err(e.into()), f)),
                        }
                    }
                    if filled == 0 {
                        return None;
                    }
                    buf.truncate(filled);
                    Some((Ok(Bytes::from(buf)), f))
                });
                self.inner.push_blob_stream(&r, chunks, digest).await
            })
            .map(drop)
            .map_err(map_err)
    }

    /// Uploads a manifest under `reference` (tag or digest); returns the
    /// digest the registry stored it as.
    pub fn push_manifest(
        &self,
        repository: &str,
        reference: &str,
        bytes: Vec<u8>,
        media_type: &str,
    ) -> Result<(), Error> {
        let r = self.reference(repository, reference);
        let ct = reqwest_header(media_type)?;
        self.rt
            .block_on(async {
                self.inner
                    .auth(&r, &self.auth, RegistryOperation::Push)
                    .await?;
                self.inner.push_manifest_raw(&r, bytes, ct).await
            })
            .map(drop)
            .map_err(map_err)
    }
}

fn reqwest_header(v: &str) -> Result<axum::http::HeaderValue, Error> {
    axum::http::HeaderValue::from_str(v)
        .map_err(|_| Error::Invalid(format!("bad media type {v:?}")))
}
