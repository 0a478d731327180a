//! `berth registry serve`: an OCI distribution-spec registry over a
//! directory.
//!
//! Layout under the root (plain files, so a killed server leaves nothing
//! half-written that a reader could see):
//! - `blobs/<algorithm>/<hex>`: content, verified on upload
//! - `repositories/<name>/_tags/<tag>`: the manifest digest a tag names
//! - `repositories/<name>/_manifests/<algorithm>/<hex>`: the manifest's
//!   media type (its bytes are a blob)
//! - `repositories/<name>/_blobs/<algorithm>/<hex>`: blobs the repository
//!   may serve (pushed or mounted there)
//!
//! (`_` cannot start a repository name component, so a repository named
//! `a/tags` never lands in `a`'s own files.)
//! - `uploads/<uuid>`: uploads in progress

use std::collections::HashMap;
use std::io::SeekFrom;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use berth_oci::{Digest, Hasher};
use futures_util::StreamExt;
use serde_json::json;
use tokio::fs;
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

use crate::htpasswd::Htpasswd;

const MANIFEST_TYPES: &[&str] = &[
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
];
/// Manifests larger than this are refused, as the reference registry does.
const MANIFEST_MAX: usize = 4 << 20;

pub struct ServeOptions {
    pub addr: SocketAddr,
    pub root: PathBuf,
    pub htpasswd: Option<PathBuf>,
    /// PEM certificate chain and key: serve https.
    pub tls: Option<(PathBuf, PathBuf)>,
}

/// Hands out TLS connections whose handshakes finished: each handshake
/// runs in a task of its own, so a client that never completes one holds
/// up nobody else.
struct TlsListener {
    ready: tokio::sync::mpsc::Receiver<(
        tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
        SocketAddr,
    )>,
    local: SocketAddr,
}

impl TlsListener {
    fn new(
        tcp: tokio::net::TcpListener,
        tls: tokio_rustls::TlsAcceptor,
    ) -> std::io::Result<TlsListener> {
        let local = tcp.local_addr()?;
        let (tx, ready) = tokio::sync::mpsc::channel(64);
        tokio::spawn(async move {
            loop {
                let (sock, addr) = match tcp.accept().await {
                    Ok(v) => v,
                    Err(e) => {
                        eprintln!("accept: {e}");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let (tx, tls) = (tx.clone(), tls.clone());
                tokio::spawn(async move {
                    match tokio::time::timeout(std::time::Duration::from_secs(10), tls.accept(sock))
                        .await
                    {
                        Ok(Ok(s)) => {
                            let _ = tx.send((s, addr)).await;
                        }
                        Ok(Err(e)) => eprintln!("TLS handshake with {addr}: {e}"),
                        Err(_) => eprintln!("TLS handshake with {addr}: timed out"),
                    }
                });
            }
        });
        Ok(TlsListener { ready, local })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(v) => v,
            // The accepting task only ends with the runtime.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

fn tls_config(cert: &Path, key: &Path) -> Result<rustls::ServerConfig, crate::Error> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let bad = |what: &Path, e: String| crate::Error::Invalid(format!("{}: {e}", what.display()));
    let certs: Vec<CertificateDer> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| bad(cert, e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| bad(cert, e.to_string()))?;
    if certs.is_empty() {
        return Err(bad(cert, "no PEM certificate in it".into()));
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| bad(key, e.to_string()))?;
    rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| crate::Error::Invalid(e.to_string()))?
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .map_err(|e| bad(cert, e.to_string()))
}

struct Registry {
    root: PathBuf,
    users: Option<Htpasswd>,
    /// Credentials bcrypt has accepted (their sha256): bcrypt is slow on
    /// purpose, and a pull asks once per blob.
    verified: std::sync::Mutex<std::collections::HashSet<Digest>>,
    /// One request at a time per upload: a PUT must not hash a file a
    /// PATCH is still appending to.
    uploads: std::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl Registry {
    fn upload_lock(&self, id: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut m = self.uploads.lock().expect("not poisoned");
        // Forget locks nobody holds or waits for.
        m.retain(|_, l| Arc::strong_count(l) > 1);
        m.entry(id.to_string()).or_default().clone()
    }
}

/// A distribution-spec error response.
struct Failure {
    status: StatusCode,
    code: &'static str,
    message: String,
}

fn fail(status: StatusCode, code: &'static str, message: impl Into<String>) -> Failure {
    Failure {
        status,
        code,
        message: message.into(),
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let body =
            json!({"errors": [{"code": self.code, "message": self.message, "detail": null}]});
        let mut r = (self.status, body.to_string()).into_response();
        r.headers_mut()
            .insert("Content-Type", HeaderValue::from_static("application/json"));
        if self.status == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(
                "WWW-Authenticate",
                HeaderValue::from_static("Basic realm=\"berth registry\""),
            );
        }
        r
    }
}

type Reply = Result<Response, Failure>;

fn io_fail(e: std::io::Error) -> Failure {
    fail(StatusCode::INTERNAL_SERVER_ERROR, "UNKNOWN", e.to_string())
}

/// Repository names as the spec allows them.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && name.split('/').all(|c| {
            !c.is_empty()
                && c.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
                && c.as_bytes()[0].is_ascii_alphanumeric()
                && c.as_bytes()[c.len() - 1].is_ascii_alphanumeric()
        })
}

fn valid_tag(tag: &str) -> bool {
    !tag.is_empty()
        && tag.len() <= 128
        && tag.as_bytes()[0] != b'.'
        && tag.as_bytes()[0] != b'-'
        && tag
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

/// A tag as the spec allows it, else TAG_INVALID (a tag is also a file
/// name here: this keeps it one).
fn check_tag(tag: &str) -> Result<(), Failure> {
    if valid_tag(tag) {
        Ok(())
    } else {
        Err(fail(
            StatusCode::BAD_REQUEST,
            "TAG_INVALID",
            format!("invalid tag {tag:?}"),
        ))
    }
}

fn name_unknown(name: &str) -> Failure {
    fail(
        StatusCode::NOT_FOUND,
        "NAME_UNKNOWN",
        format!("repository name not known to registry: {name}"),
    )
}

fn manifest_unknown(name: &str, reference: &str) -> Failure {
    fail(
        StatusCode::NOT_FOUND,
        "MANIFEST_UNKNOWN",
        format!("manifest unknown: {name}:{reference}"),
    )
}

fn parse_digest(s: &str) -> Result<Digest, Failure> {
    s.parse().map_err(|_| {
        fail(
            StatusCode::BAD_REQUEST,
            "DIGEST_INVALID",
            format!("invalid digest {s}"),
        )
    })
}

impl Registry {
    fn blob_path(&self, d: &Digest) -> PathBuf {
        self.root
            .join("blobs")
            .join(d.algorithm().as_str())
            .join(d.hex())
    }
    fn repo(&self, name: &str) -> PathBuf {
        self.root.join("repositories").join(name)
    }
    fn repo_blob(&self, name: &str, d: &Digest) -> PathBuf {
        self.repo(name)
            .join("_blobs")
            .join(d.algorithm().as_str())
            .join(d.hex())
    }
    fn manifest_mark(&self, name: &str, d: &Digest) -> PathBuf {
        self.repo(name)
            .join("_manifests")
            .join(d.algorithm().as_str())
            .join(d.hex())
    }
    fn tag_path(&self, name: &str, tag: &str) -> PathBuf {
        self.repo(name).join("_tags").join(tag)
    }
    fn upload(&self, id: &str) -> PathBuf {
        self.root.join("uploads").join(id)
    }
}

/// Writes `data` to `path` whole: a temp file renamed into place.
async fn write_whole(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().expect("paths under the root");
    fs::create_dir_all(dir).await?;
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let tmp = dir.join(format!(
        ".tmp-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    let r = async {
        fs::write(&tmp, data).await?;
        fs::rename(&tmp, path).await
    }
    .await;
    if r.is_err() {
        let _ = fs::remove_file(&tmp).await;
    }
    r
}

fn new_upload_id() -> std::io::Result<String> {
    let mut b = [0u8; 16];
    std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom")?, &mut b)?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

/// Makes the registry's root private to its owner, as Docker keeps its
/// own: created 0700, and a root left group- or world-accessible (by an
/// older Berth, or by hand) is tightened to 0700. Then its directories.
pub fn prepare_root(root: &Path) -> Result<(), crate::Error> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let io =
        |what: &str, e: std::io::Error| crate::Error::Io(format!("{what} {}: {e}", root.display()));
    // Parents get the usual mode: only the root itself is private.
    if let Some(parent) = root.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| io("create the parent of", e))?;
    }
    match std::fs::DirBuilder::new().mode(0o700).create(root) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(io("create", e)),
    }
    let meta = std::fs::metadata(root).map_err(|e| io("inspect", e))?;
    if !meta.is_dir() {
        return Err(crate::Error::Invalid(format!(
            "{} is not a directory",
            root.display()
        )));
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode != 0o700 {
        std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| io("restrict", e))?;
        if mode & 0o077 != 0 {
            eprintln!(
                "berth registry: {} was {mode:04o}, now 0700",
                root.display()
            );
        }
    }
    for d in ["blobs", "repositories", "uploads"] {
        std::fs::create_dir_all(root.join(d)).map_err(|e| io("create directories in", e))?;
    }
    Ok(())
}

/// Runs the registry until the process is stopped.
pub fn serve(opts: ServeOptions) -> Result<(), crate::Error> {
    let users = match &opts.htpasswd {
        Some(p) => Some(Htpasswd::load(p)?),
        None => None,
    };
    prepare_root(&opts.root)?;
    let tls = match &opts.tls {
        Some((c, k)) => Some(tokio_rustls::TlsAcceptor::from(Arc::new(tls_config(c, k)?))),
        None => None,
    };
    let state = Arc::new(Registry {
        root: opts.root.clone(),
        users,
        verified: Default::default(),
        uploads: Default::default(),
    });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| crate::Error::Io(format!("start the server runtime: {e}")))?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(opts.addr)
            .await
            .map_err(|e| crate::Error::Io(format!("listen on {}: {e}", opts.addr)))?;
        eprintln!(
            "berth registry listening on {}{} (root {})",
            if tls.is_some() { "https://" } else { "http://" },
            listener
                .local_addr()
                .map(|a| a.to_string())
                .unwrap_or_default(),
            opts.root.display()
        );
        let app = Router::new().fallback(handle).with_state(state);
        let served = match tls {
            Some(tls) => {
                let l = TlsListener::new(listener, tls)
                    .map_err(|e| crate::Error::Io(format!("listen: {e}")))?;
                axum::serve(l, app).await
            }
            None => axum::serve(listener, app).await,
        };
        served.map_err(|e| crate::Error::Io(format!("serve: {e}")))
    })
}

async fn handle(
    State(reg): State<Arc<Registry>>,
    method: Method,
    uri: Uri,
    Query(pairs): Query<Vec<(String, String)>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let path = uri.path().to_string();
    // `tag` may come several times (tags pushed with a manifest).
    let tag_params: Vec<String> = pairs
        .iter()
        .filter(|(k, _)| k == "tag")
        .map(|(_, v)| v.clone())
        .collect();
    let query: HashMap<String, String> = pairs.into_iter().collect();
    let r = route(&reg, &method, &path, &query, &tag_params, &headers, body).await;
    let r = match r {
        Ok(r) => r,
        Err(f) => f.into_response(),
    };
    eprintln!("{} {} {}", method, uri, r.status().as_u16());
    let mut r = r;
    r.headers_mut().insert(
        "Docker-Distribution-API-Version",
        HeaderValue::from_static("registry/2.0"),
    );
    r
}

fn authorised(reg: &Registry, headers: &HeaderMap) -> bool {
    let Some(users) = &reg.users else {
        return true;
    };
    let Some(raw) = headers
        .get("Authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| crate::base64_decode(b.trim()))
    else {
        return false;
    };
    let key = Digest::sha256_of(&raw);
    if reg.verified.lock().expect("not poisoned").contains(&key) {
        return true;
    }
    let ok = String::from_utf8(raw)
        .ok()
        .and_then(|s| s.split_once(':').map(|(u, p)| users.check(u, p)))
        .unwrap_or(false);
    if ok {
        reg.verified.lock().expect("not poisoned").insert(key);
    }
    ok
}

async fn route(
    reg: &Registry,
    method: &Method,
    path: &str,
    query: &HashMap<String, String>,
    tag_params: &[String],
    headers: &HeaderMap,
    body: Body,
) -> Reply {
    if !authorised(reg, headers) {
        return Err(fail(
            StatusCode::UNAUTHORIZED,
            "UNAUTHORIZED",
            "authentication required",
        ));
    }
    let Some(rest) = path.strip_prefix("/v2") else {
        return Err(fail(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            "not a registry path",
        ));
    };
    if rest.is_empty() || rest == "/" {
        return Ok((StatusCode::OK, "{}").into_response());
    }
    let Some(rest) = rest.strip_prefix('/') else {
        return Err(fail(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            "not a registry path",
        ));
    };
    if rest == "_catalog" {
        return catalog(reg, query).await;
    }
    // <name>/(blobs/uploads/[id] | blobs/<digest> | manifests/<ref> |
    // tags/list | referrers/<digest>); names have slashes of their own.
    let split = |marker: &str| -> Option<(String, String)> {
        let i = rest.rfind(marker)?;
        Some((rest[..i].to_string(), rest[i + marker.len()..].to_string()))
    };
    let (name, kind, arg) = if let Some((n, a)) = split("/blobs/uploads/") {
        (n, "upload", a)
    } else if let Some(n) = rest.strip_suffix("/blobs/uploads") {
        (n.to_string(), "upload", String::new())
    } else if let Some((n, a)) = split("/blobs/") {
        (n, "blob", a)
    } else if let Some((n, a)) = split("/manifests/") {
        (n, "manifest", a)
    } else if let Some(n) = rest.strip_suffix("/tags/list") {
        (n.to_string(), "tags", String::new())
    } else if let Some((n, a)) = split("/referrers/") {
        (n, "referrers", a)
    } else {
        return Err(fail(StatusCode::NOT_FOUND, "NOT_FOUND", "unknown endpoint"));
    };
    if !valid_name(&name) {
        return Err(fail(
            StatusCode::BAD_REQUEST,
            "NAME_INVALID",
            format!("invalid repository name {name:?}"),
        ));
    }
    match (kind, method.as_str()) {
        ("blob", "GET" | "HEAD") => {
            get_blob(reg, &name, &arg, method == Method::HEAD, headers).await
        }
        ("blob", "DELETE") => delete_blob(reg, &name, &arg).await,
        ("upload", "POST") => start_upload(reg, &name, query, headers, body).await,
        ("upload", "PATCH") => patch_upload(reg, &name, &arg, headers, body).await,
        ("upload", "PUT") => finish_upload(reg, &name, &arg, query, headers, body).await,
        ("upload", "GET") => upload_status(reg, &name, &arg).await,
        ("upload", "DELETE") => {
            upload_size(reg, &name, &arg).await?;
            let _ = fs::remove_file(reg.upload(&arg)).await;
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        ("manifest", "GET" | "HEAD") => {
            get_manifest(reg, &name, &arg, method == Method::HEAD).await
        }
        ("manifest", "PUT") => put_manifest(reg, &name, &arg, tag_params, headers, body).await,
        ("manifest", "DELETE") => delete_manifest(reg, &name, &arg).await,
        ("tags", "GET") => tags(reg, &name, query).await,
        ("referrers", "GET") => referrers(reg, &name, &arg, query).await,
        _ => Err(fail(
            StatusCode::METHOD_NOT_ALLOWED,
            "UNSUPPORTED",
            format!("{method} is not supported here"),
        )),
    }
}

async fn repo_exists(reg: &Registry, name: &str) -> bool {
    fs::metadata(reg.repo(name)).await.is_ok()
}

fn blob_unknown(name: &str, d: &str) -> Failure {
    fail(
        StatusCode::NOT_FOUND,
        "BLOB_UNKNOWN",
        format!("blob unknown to registry: {name}@{d}"),
    )
}

/// What a `Range` header asks of a blob of `len` bytes (RFC 9110 §14).
#[derive(Debug, PartialEq, Eq)]
enum Ranges {
    /// Not a byte range request, or one not worth the trouble: the whole
    /// blob with 200, as RFC 9110 lets a server do.
    Whole,
    /// No range overlaps the blob (`bytes=-0`, a start past the end, a
    /// last byte before the first): 416.
    Unsatisfiable,
    /// Inclusive byte ranges, sorted, overlapping and adjacent ones
    /// coalesced: one is a plain 206, several a `multipart/byteranges`.
    Parts(Vec<(u64, u64)>),
}

/// More ranges than this in one request are answered with the whole blob:
/// RFC 9110 §14.2 lets a server ignore requests for many small ranges.
const MAX_RANGES: usize = 64;

/// `bytes=a-b`, `bytes=a-`, `bytes=-n` and lists of them.
fn parse_ranges(h: &str, len: u64) -> Ranges {
    let Some((unit, set)) = h.split_once('=') else {
        return Ranges::Unsatisfiable;
    };
    if !unit.trim().eq_ignore_ascii_case("bytes") {
        // A unit we do not know: ignored (RFC 9110 §14.2).
        return Ranges::Whole;
    }
    let specs: Vec<&str> = set
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    if specs.is_empty() {
        return Ranges::Unsatisfiable;
    }
    if specs.len() > MAX_RANGES {
        return Ranges::Whole;
    }
    let num = |s: &str| -> Option<u64> {
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    let mut parts = Vec::new();
    for spec in specs {
        let Some((a, b)) = spec.split_once('-') else {
            return Ranges::Unsatisfiable;
        };
        let (a, b) = (a.trim(), b.trim());
        let part = if a.is_empty() {
            // The last `n` bytes; `-0` asks for none.
            let Some(n) = num(b) else {
                return Ranges::Unsatisfiable;
            };
            (n > 0 && len > 0).then(|| (len.saturating_sub(n), len - 1))
        } else {
            let Some(start) = num(a) else {
                return Ranges::Unsatisfiable;
            };
            let end = if b.is_empty() { Some(u64::MAX) } else { num(b) };
            let Some(end) = end else {
                return Ranges::Unsatisfiable;
            };
            if end < start {
                // Invalid by RFC 9110; the conformance suite wants 416.
                return Ranges::Unsatisfiable;
            }
            (start < len).then(|| (start, end.min(len - 1)))
        };
        parts.extend(part);
    }
    if parts.is_empty() {
        return Ranges::Unsatisfiable;
    }
    parts.sort_unstable();
    let mut merged: Vec<(u64, u64)> = Vec::with_capacity(parts.len());
    for (a, b) in parts {
        match merged.last_mut() {
            Some(last) if a <= last.1.saturating_add(1) => last.1 = last.1.max(b),
            _ => merged.push((a, b)),
        }
    }
    Ranges::Parts(merged)
}

type ChunkStream = futures_util::stream::BoxStream<'static, std::io::Result<Bytes>>;

/// The next `len` bytes of `file`.
fn file_stream(file: fs::File, len: u64) -> ChunkStream {
    futures_util::stream::unfold((file, len), |(mut f, left)| async move {
        if left == 0 {
            return None;
        }
        let mut buf = vec![0u8; (left.min(256 * 1024)) as usize];
        match f.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok(Bytes::from(buf)), (f, left - n as u64)))
            }
            Err(e) => Some((Err(e), (f, 0))),
        }
    })
    .boxed()
}

/// A `multipart/byteranges` body (RFC 9110 §14.6) over the blob at
/// `path`: its parts' headers and bytes in turn, and its exact length.
fn multipart_body(path: PathBuf, parts: &[(u64, u64)], len: u64, boundary: &str) -> (Body, u64) {
    enum Piece {
        Text(Bytes),
        File(u64, u64),
    }
    let mut pieces = Vec::new();
    for (i, (a, b)) in parts.iter().enumerate() {
        let head = format!(
            "{}--{boundary}\r\nContent-Type: application/octet-stream\r\nContent-Range: bytes {a}-{b}/{len}\r\n\r\n",
            if i == 0 { "" } else { "\r\n" }
        );
        pieces.push(Piece::Text(Bytes::from(head)));
        pieces.push(Piece::File(*a, b - a + 1));
    }
    pieces.push(Piece::Text(Bytes::from(format!("\r\n--{boundary}--\r\n"))));
    let total = pieces
        .iter()
        .map(|p| match p {
            Piece::Text(t) => t.len() as u64,
            Piece::File(_, n) => *n,
        })
        .sum();
    let stream = futures_util::stream::iter(pieces)
        .then(move |p| {
            let path = path.clone();
            async move {
                match p {
                    Piece::Text(t) => futures_util::stream::once(async move { Ok(t) }).boxed(),
                    Piece::File(start, n) => {
                        let opened = async {
                            let mut f = fs::File::open(&path).await?;
                            f.seek(SeekFrom::Start(start)).await?;
                            Ok::<_, std::io::Error>(f)
                        };
                        match opened.await {
                            Ok(f) => file_stream(f, n),
                            Err(e) => futures_util::stream::once(async move { Err(e) }).boxed(),
                        }
                    }
                }
            }
        })
        .flatten();
    (Body::from_stream(stream), total)
}

async fn get_blob(reg: &Registry, name: &str, d: &str, head: bool, headers: &HeaderMap) -> Reply {
    let digest = parse_digest(d)?;
    if fs::metadata(reg.repo_blob(name, &digest)).await.is_err() {
        return Err(blob_unknown(name, d));
    }
    let path = reg.blob_path(&digest);
    let mut file = fs::File::open(&path)
        .await
        .map_err(|_| blob_unknown(name, d))?;
    let len = file.metadata().await.map_err(io_fail)?.len();
    let ranges = match headers.get("Range") {
        // A header that is not text asks for nothing we can serve.
        Some(v) => match v.to_str() {
            Ok(h) => parse_ranges(h, len),
            Err(_) => Ranges::Unsatisfiable,
        },
        None => Ranges::Whole,
    };
    let builder = Response::builder()
        .header("Docker-Content-Digest", d)
        .header("Accept-Ranges", "bytes");
    let (builder, start, count) = match ranges {
        Ranges::Whole => (
            builder
                .status(StatusCode::OK)
                .header("Content-Type", "application/octet-stream"),
            0,
            len,
        ),
        Ranges::Unsatisfiable => {
            return Ok(Response::builder()
                .status(StatusCode::RANGE_NOT_SATISFIABLE)
                .header("Content-Range", format!("bytes */{len}"))
                .header("Content-Length", "0")
                .body(Body::empty())
                .expect("valid response"));
        }
        Ranges::Parts(parts) if parts.len() == 1 => {
            let (a, b) = parts[0];
            (
                builder
                    .status(StatusCode::PARTIAL_CONTENT)
                    .header("Content-Type", "application/octet-stream")
                    .header("Content-Range", format!("bytes {a}-{b}/{len}")),
                a,
                b - a + 1,
            )
        }
        Ranges::Parts(parts) => {
            let boundary = new_upload_id().map_err(io_fail)?;
            let (body, total) = multipart_body(path, &parts, len, &boundary);
            let builder = builder
                .status(StatusCode::PARTIAL_CONTENT)
                .header(
                    "Content-Type",
                    format!("multipart/byteranges; boundary={boundary}"),
                )
                .header("Content-Length", total.to_string());
            return Ok(builder
                .body(if head { Body::empty() } else { body })
                .expect("valid response"));
        }
    };
    let builder = builder.header("Content-Length", count.to_string());
    if head {
        return Ok(builder.body(Body::empty()).expect("valid response"));
    }
    file.seek(SeekFrom::Start(start)).await.map_err(io_fail)?;
    Ok(builder
        .body(Body::from_stream(file_stream(file, count)))
        .expect("valid response"))
}

async fn delete_blob(reg: &Registry, name: &str, d: &str) -> Reply {
    let digest = parse_digest(d)?;
    match fs::remove_file(reg.repo_blob(name, &digest)).await {
        Ok(()) => Ok(StatusCode::ACCEPTED.into_response()),
        Err(_) => Err(blob_unknown(name, d)),
    }
}

/// Links a stored blob into a repository.
async fn link_blob(reg: &Registry, name: &str, d: &Digest) -> Result<(), Failure> {
    write_whole(&reg.repo_blob(name, d), b"")
        .await
        .map_err(io_fail)
}

fn upload_location(name: &str, id: &str) -> String {
    format!("/v2/{name}/blobs/uploads/{id}")
}

fn accepted(name: &str, id: &str, size: u64) -> Response {
    let range = if size == 0 {
        "0-0".to_string()
    } else {
        format!("0-{}", size - 1)
    };
    Response::builder()
        .status(StatusCode::ACCEPTED)
        .header("Location", upload_location(name, id))
        .header("Range", range)
        .header("Docker-Upload-UUID", id)
        .header("Content-Length", "0")
        .body(Body::empty())
        .expect("valid response")
}

fn created_blob(name: &str, d: &Digest) -> Response {
    Response::builder()
        .status(StatusCode::CREATED)
        .header("Location", format!("/v2/{name}/blobs/{d}"))
        .header("Docker-Content-Digest", d.to_string())
        .header("Content-Length", "0")
        .body(Body::empty())
        .expect("valid response")
}

/// Appends a request body to an upload file; returns its new size.
async fn append(path: &Path, body: Body) -> Result<u64, Failure> {
    let mut f = fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .await
        .map_err(io_fail)?;
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            fail(
                StatusCode::BAD_REQUEST,
                "BLOB_UPLOAD_INVALID",
                e.to_string(),
            )
        })?;
        f.write_all(&chunk).await.map_err(io_fail)?;
    }
    f.flush().await.map_err(io_fail)?;
    Ok(f.metadata().await.map_err(io_fail)?.len())
}

async fn start_upload(
    reg: &Registry,
    name: &str,
    query: &HashMap<String, String>,
    headers: &HeaderMap,
    body: Body,
) -> Reply {
    // Cross-repository mount.
    if let (Some(d), Some(from)) = (query.get("mount"), query.get("from")) {
        let digest = parse_digest(d)?;
        if valid_name(from) && fs::metadata(reg.repo_blob(from, &digest)).await.is_ok() {
            link_blob(reg, name, &digest).await?;
            return Ok(created_blob(name, &digest));
        }
    }
    let id = new_upload_id().map_err(io_fail)?;
    let path = reg.upload(&id);
    fs::write(&path, b"").await.map_err(io_fail)?;
    // Monolithic: POST with ?digest= and the whole blob.
    if let Some(d) = query.get("digest") {
        let _ = headers;
        append(&path, body).await?;
        return commit_upload(reg, name, &id, d).await;
    }
    Ok(accepted(name, &id, 0))
}

/// The size of upload `id`; an id that is not one of ours (only hex:
/// never a path) is unknown.
async fn upload_size(reg: &Registry, name: &str, id: &str) -> Result<u64, Failure> {
    let unknown = || {
        fail(
            StatusCode::NOT_FOUND,
            "BLOB_UPLOAD_UNKNOWN",
            format!("upload {id} unknown in {name}"),
        )
    };
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(unknown());
    }
    fs::metadata(reg.upload(id))
        .await
        .map(|m| m.len())
        .map_err(|_| unknown())
}

async fn upload_status(reg: &Registry, name: &str, id: &str) -> Reply {
    let size = upload_size(reg, name, id).await?;
    let mut r = accepted(name, id, size);
    *r.status_mut() = StatusCode::NO_CONTENT;
    Ok(r)
}

/// A chunk must start where the upload ends: the 416 that says where that
/// is when its `Content-Range` (`<start>-<end>`) starts elsewhere. The
/// upload is left as it was, to be continued from its `Range`.
fn out_of_order(headers: &HeaderMap, name: &str, id: &str, size: u64) -> Option<Response> {
    let cr = headers.get("Content-Range")?;
    let start = cr
        .to_str()
        .ok()
        .map(|s| s.trim().trim_start_matches("bytes").trim())
        .and_then(|s| s.split(['-', '/']).next())
        .and_then(|s| s.trim().parse::<u64>().ok());
    if start == Some(size) {
        return None;
    }
    // The same headers as a 202 for the upload, with the 416 status.
    let mut r = accepted(name, id, size);
    *r.status_mut() = StatusCode::RANGE_NOT_SATISFIABLE;
    Some(r)
}

async fn patch_upload(
    reg: &Registry,
    name: &str,
    id: &str,
    headers: &HeaderMap,
    body: Body,
) -> Reply {
    // The size checked must still be the size appended to.
    let lock = reg.upload_lock(id);
    let _turn = lock.lock().await;
    let size = upload_size(reg, name, id).await?;
    if let Some(refused) = out_of_order(headers, name, id, size) {
        return Ok(refused);
    }
    let size = append(&reg.upload(id), body).await?;
    Ok(accepted(name, id, size))
}

async fn finish_upload(
    reg: &Registry,
    name: &str,
    id: &str,
    query: &HashMap<String, String>,
    headers: &HeaderMap,
    body: Body,
) -> Reply {
    let lock = reg.upload_lock(id);
    let _turn = lock.lock().await;
    let size = upload_size(reg, name, id).await?;
    // A last chunk out of order is refused before it touches the upload,
    // which a PATCH or PUT from the right offset can still complete.
    if let Some(refused) = out_of_order(headers, name, id, size) {
        return Ok(refused);
    }
    let Some(d) = query.get("digest") else {
        return Err(fail(
            StatusCode::BAD_REQUEST,
            "DIGEST_INVALID",
            "the digest parameter is missing",
        ));
    };
    append(&reg.upload(id), body).await?;
    commit_upload(reg, name, id, d).await
}

/// Verifies an upload against `d` and moves it into the blobs.
async fn commit_upload(reg: &Registry, name: &str, id: &str, d: &str) -> Reply {
    let digest = parse_digest(d)?;
    let path = reg.upload(id);
    let mut f = fs::File::open(&path).await.map_err(io_fail)?;
    let mut h = Hasher::new(digest.algorithm());
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).await.map_err(io_fail)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    let actual = h.finish();
    if actual != digest {
        let _ = fs::remove_file(&path).await;
        return Err(fail(
            StatusCode::BAD_REQUEST,
            "DIGEST_INVALID",
            format!("the upload's content is {actual}, not {digest}"),
        ));
    }
    let dest = reg.blob_path(&digest);
    fs::create_dir_all(dest.parent().expect("under the root"))
        .await
        .map_err(io_fail)?;
    fs::rename(&path, &dest).await.map_err(io_fail)?;
    link_blob(reg, name, &digest).await?;
    Ok(created_blob(name, &digest))
}

/// A tag or digest to the manifest digest.
async fn resolve(reg: &Registry, name: &str, reference: &str) -> Result<Digest, Failure> {
    let unknown = || manifest_unknown(name, reference);
    if reference.contains(':') {
        let d = parse_digest(reference)?;
        return match fs::metadata(reg.manifest_mark(name, &d)).await {
            Ok(_) => Ok(d),
            Err(_) => Err(unknown()),
        };
    }
    check_tag(reference)?;
    if !repo_exists(reg, name).await {
        return Err(name_unknown(name));
    }
    let text = fs::read_to_string(reg.tag_path(name, reference))
        .await
        .map_err(|_| unknown())?;
    parse_digest(text.trim())
}

async fn get_manifest(reg: &Registry, name: &str, reference: &str, head: bool) -> Reply {
    let d = resolve(reg, name, reference).await?;
    let media = fs::read_to_string(reg.manifest_mark(name, &d))
        .await
        .map_err(io_fail)?;
    let bytes = fs::read(reg.blob_path(&d)).await.map_err(io_fail)?;
    let b = Response::builder()
        .status(StatusCode::OK)
        .header("Content-Type", media.trim())
        .header("Docker-Content-Digest", d.to_string())
        .header("Content-Length", bytes.len().to_string());
    Ok(b.body(if head {
        Body::empty()
    } else {
        Body::from(bytes)
    })
    .expect("valid response"))
}

/// Tags one manifest push by digest may set (`?tag=`): the spec asks for
/// at least 10; more is 414.
const TAG_PARAMS_MAX: usize = 100;

async fn put_manifest(
    reg: &Registry,
    name: &str,
    reference: &str,
    tag_params: &[String],
    headers: &HeaderMap,
    body: Body,
) -> Reply {
    // Tags pushed with a manifest by digest: all valid, or none is set.
    let by_digest = reference.contains(':');
    let extra_tags: &[String] = if by_digest { tag_params } else { &[] };
    if extra_tags.len() > TAG_PARAMS_MAX {
        return Err(fail(
            StatusCode::URI_TOO_LONG,
            "TAG_INVALID",
            format!("at most {TAG_PARAMS_MAX} tags in one push"),
        ));
    }
    for t in extra_tags {
        check_tag(t)?;
    }
    let bytes = axum::body::to_bytes(body, MANIFEST_MAX)
        .await
        .map_err(|_| {
            fail(
                StatusCode::PAYLOAD_TOO_LARGE,
                "SIZE_INVALID",
                "manifest too large",
            )
        })?;
    let invalid = |m: String| fail(StatusCode::BAD_REQUEST, "MANIFEST_INVALID", m);
    let doc: serde_json::Value = serde_json::from_slice(&bytes)
        .map_err(|e| invalid(format!("manifest is not JSON: {e}")))?;
    let media = headers
        .get("Content-Type")
        .and_then(|v| v.to_str().ok())
        .map(|s| s.split(';').next().unwrap_or("").trim().to_string())
        .filter(|s| !s.is_empty())
        .or_else(|| {
            doc.get("mediaType")
                .and_then(|m| m.as_str())
                .map(str::to_string)
        })
        .unwrap_or_else(|| MANIFEST_TYPES[0].to_string());
    // It is served back as a header: a media type, nothing else.
    let media_ok = media.split_once('/').is_some_and(|(t, st)| {
        !t.is_empty()
            && !st.is_empty()
            && media
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"/.+-_".contains(&b))
    });
    if !media_ok {
        return Err(invalid(format!("invalid media type {media:?}")));
    }
    let digest = if reference.contains(':') {
        let d = parse_digest(reference)?;
        let mut h = Hasher::new(d.algorithm());
        h.update(&bytes);
        if h.finish() != d {
            return Err(fail(
                StatusCode::BAD_REQUEST,
                "DIGEST_INVALID",
                "the manifest does not match its digest",
            ));
        }
        d
    } else {
        check_tag(reference)?;
        Digest::sha256_of(&bytes)
    };
    // Everything it refers to must be here already.
    let mut refs: Vec<String> = Vec::new();
    if let Some(c) = doc.pointer("/config/digest").and_then(|v| v.as_str()) {
        refs.push(c.to_string());
    }
    for key in ["layers", "blobs"] {
        for l in doc
            .get(key)
            .and_then(|v| v.as_array())
            .into_iter()
            .flatten()
        {
            // Foreign layers live elsewhere (their urls).
            if l.get("urls").is_some() {
                continue;
            }
            if let Some(d) = l.get("digest").and_then(|v| v.as_str()) {
                refs.push(d.to_string());
            }
        }
    }
    for r in &refs {
        let d = parse_digest(r)?;
        if fs::metadata(reg.repo_blob(name, &d)).await.is_err() {
            return Err(fail(
                StatusCode::BAD_REQUEST,
                "MANIFEST_BLOB_UNKNOWN",
                format!("blob unknown to registry: {r}"),
            ));
        }
    }
    for m in doc
        .get("manifests")
        .and_then(|v| v.as_array())
        .into_iter()
        .flatten()
    {
        let Some(d) = m.get("digest").and_then(|v| v.as_str()) else {
            return Err(invalid("an index entry has no digest".into()));
        };
        let d = parse_digest(d)?;
        if fs::metadata(reg.manifest_mark(name, &d)).await.is_err() {
            return Err(fail(
                StatusCode::BAD_REQUEST,
                "MANIFEST_UNKNOWN",
                format!("manifest unknown: {d}"),
            ));
        }
    }
    write_whole(&reg.blob_path(&digest), &bytes)
        .await
        .map_err(io_fail)?;
    write_whole(&reg.manifest_mark(name, &digest), media.as_bytes())
        .await
        .map_err(io_fail)?;
    let tags: Vec<&str> = if by_digest {
        extra_tags.iter().map(String::as_str).collect()
    } else {
        vec![reference]
    };
    for t in &tags {
        write_whole(&reg.tag_path(name, t), digest.to_string().as_bytes())
            .await
            .map_err(io_fail)?;
    }
    let mut r = Response::builder()
        .status(StatusCode::CREATED)
        .header("Location", format!("/v2/{name}/manifests/{digest}"))
        .header("Docker-Content-Digest", digest.to_string())
        .header("Content-Length", "0");
    if by_digest && !tags.is_empty() {
        r = r.header("OCI-Tag", tags.join(", "));
    }
    if let Some(s) = doc
        .pointer("/subject/digest")
        .and_then(|v| v.as_str())
        .and_then(|s| s.parse::<Digest>().ok())
    {
        r = r.header("OCI-Subject", s.to_string());
    }
    Ok(r.body(Body::empty()).expect("valid response"))
}

async fn delete_manifest(reg: &Registry, name: &str, reference: &str) -> Reply {
    if !reference.contains(':') {
        // Deleting a tag.
        check_tag(reference)?;
        return match fs::remove_file(reg.tag_path(name, reference)).await {
            Ok(()) => Ok(StatusCode::ACCEPTED.into_response()),
            Err(_) => Err(manifest_unknown(name, reference)),
        };
    }
    let d = resolve(reg, name, reference).await?;
    fs::remove_file(reg.manifest_mark(name, &d))
        .await
        .map_err(io_fail)?;
    // Tags that named it go with it.
    if let Ok(mut dir) = fs::read_dir(reg.repo(name).join("_tags")).await {
        while let Ok(Some(e)) = dir.next_entry().await {
            if fs::read_to_string(e.path())
                .await
                .is_ok_and(|t| t.trim() == d.to_string())
            {
                let _ = fs::remove_file(e.path()).await;
            }
        }
    }
    Ok(StatusCode::ACCEPTED.into_response())
}

/// `n` / `last` pagination over a sorted list, with the Link header.
fn paginate(
    items: Vec<String>,
    query: &HashMap<String, String>,
    base: &str,
) -> (Vec<String>, Option<String>) {
    let mut items: Vec<String> = match query.get("last") {
        Some(l) => items.into_iter().filter(|t| t > l).collect(),
        None => items,
    };
    let n = query.get("n").and_then(|n| n.parse::<usize>().ok());
    let mut link = None;
    if let Some(n) = n {
        if items.len() > n {
            items.truncate(n);
            if let Some(last) = items.last() {
                link = Some(format!("<{base}?n={n}&last={last}>; rel=\"next\""));
            }
        }
    }
    (items, link)
}

fn json_reply(v: serde_json::Value, link: Option<String>) -> Response {
    let mut b = Response::builder()
        .status(StatusCode::OK)
        .header("Content-Type", "application/json");
    if let Some(l) = link {
        b = b.header("Link", l);
    }
    b.body(Body::from(v.to_string())).expect("valid response")
}

async fn tags(reg: &Registry, name: &str, query: &HashMap<String, String>) -> Reply {
    if !repo_exists(reg, name).await {
        return Err(name_unknown(name));
    }
    let mut all = Vec::new();
    if let Ok(mut dir) = fs::read_dir(reg.repo(name).join("_tags")).await {
        while let Ok(Some(e)) = dir.next_entry().await {
            let t = e.file_name().to_string_lossy().into_owned();
            if !t.starts_with('.') {
                all.push(t);
            }
        }
    }
    all.sort();
    let (tags, link) = paginate(all, query, &format!("/v2/{name}/tags/list"));
    Ok(json_reply(json!({"name": name, "tags": tags}), link))
}

async fn catalog(reg: &Registry, query: &HashMap<String, String>) -> Reply {
    let mut names = Vec::new();
    let base = reg.root.join("repositories");
    let mut stack = vec![base.clone()];
    while let Some(dir) = stack.pop() {
        let Ok(mut rd) = fs::read_dir(&dir).await else {
            continue;
        };
        while let Ok(Some(e)) = rd.next_entry().await {
            let p = e.path();
            let fname = e.file_name().to_string_lossy().into_owned();
            if fname == "_manifests" {
                if let Ok(rel) = dir.strip_prefix(&base) {
                    names.push(rel.to_string_lossy().into_owned());
                }
            } else if !fname.starts_with('_') && e.file_type().await.is_ok_and(|t| t.is_dir()) {
                stack.push(p);
            }
        }
    }
    names.sort();
    let (names, link) = paginate(names, query, "/v2/_catalog");
    Ok(json_reply(json!({"repositories": names}), link))
}

/// The referrers API: manifests in the repository whose subject is `d`.
async fn referrers(reg: &Registry, name: &str, d: &str, query: &HashMap<String, String>) -> Reply {
    let subject = parse_digest(d)?;
    let mut out = Vec::new();
    for algo in ["sha256", "sha512"] {
        let Ok(mut rd) = fs::read_dir(reg.repo(name).join("_manifests").join(algo)).await else {
            continue;
        };
        while let Ok(Some(e)) = rd.next_entry().await {
            let hex = e.file_name().to_string_lossy().into_owned();
            let Ok(md) = format!("{algo}:{hex}").parse::<Digest>() else {
                continue;
            };
            let Ok(bytes) = fs::read(reg.blob_path(&md)).await else {
                continue;
            };
            let Ok(doc) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
                continue;
            };
            if doc.pointer("/subject/digest").and_then(|v| v.as_str()) != Some(&subject.to_string())
            {
                continue;
            }
            let media = fs::read_to_string(e.path()).await.unwrap_or_default();
            let artifact = doc
                .get("artifactType")
                .and_then(|v| v.as_str())
                .or_else(|| doc.pointer("/config/mediaType").and_then(|v| v.as_str()))
                .unwrap_or("")
                .to_string();
            if query.get("artifactType").is_some_and(|t| *t != artifact) {
                continue;
            }
            let mut entry = json!({
                "mediaType": media.trim(),
                "digest": md.to_string(),
                "size": bytes.len(),
                "artifactType": artifact,
            });
            if let Some(a) = doc.get("annotations") {
                entry["annotations"] = a.clone();
            }
            out.push(entry);
        }
    }
    let mut r = json_reply(
        json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": out}),
        None,
    );
    r.headers_mut().insert(
        "Content-Type",
        HeaderValue::from_static("application/vnd.oci.image.index.v1+json"),
    );
    if query.contains_key("artifactType") {
        r.headers_mut().insert(
            "OCI-Filters-Applied",
            HeaderValue::from_static("artifactType"),
        );
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_ranges_as_rfc_9110_has_them() {
        use Ranges::*;
        let p = |h| parse_ranges(h, 2048);
        assert_eq!(p("bytes=500-1499"), Parts(vec![(500, 1499)]));
        assert_eq!(p("bytes=500-"), Parts(vec![(500, 2047)]));
        assert_eq!(p("bytes=2000-5000"), Parts(vec![(2000, 2047)]));
        // Suffixes: the last n bytes, all of them when n is larger.
        assert_eq!(p("bytes=-500"), Parts(vec![(1548, 2047)]));
        assert_eq!(p("bytes=-5000"), Parts(vec![(0, 2047)]));
        assert_eq!(p("bytes=-0"), Unsatisfiable);
        assert_eq!(parse_ranges("bytes=-1", 0), Unsatisfiable);
        assert_eq!(parse_ranges("bytes=0-", 0), Unsatisfiable);
        // Nothing that overlaps, or backwards, or not numbers.
        assert_eq!(p("bytes=5000-10000"), Unsatisfiable);
        assert_eq!(p("bytes=500-0"), Unsatisfiable);
        assert_eq!(p("bytes=a-b"), Unsatisfiable);
        assert_eq!(p("bytes=+1-2"), Unsatisfiable);
        assert_eq!(p("bytes="), Unsatisfiable);
        // Several: sorted, overlapping and adjacent ones joined, the
        // unsatisfiable ones dropped.
        assert_eq!(
            p("bytes=0-9, -10, 100-199"),
            Parts(vec![(0, 9), (100, 199), (2038, 2047)])
        );
        assert_eq!(p("bytes=10-19,0-9,5-12"), Parts(vec![(0, 19)]));
        assert_eq!(p("bytes=0-9,3000-"), Parts(vec![(0, 9)]));
        assert_eq!(p("bytes=3000-,-0"), Unsatisfiable);
        // Other units, and floods of ranges, get the whole blob.
        assert_eq!(p("items=0-9"), Whole);
        let many = (0..100)
            .map(|i| format!("{}-{}", i * 3, i * 3))
            .collect::<Vec<_>>()
            .join(",");
        assert_eq!(p(&format!("bytes={many}")), Whole);
    }

    #[test]
    fn the_root_is_made_private_and_tightened_when_it_was_not() {
        use std::os::unix::fs::PermissionsExt;
        let base = std::env::temp_dir().join(format!("berth-registry-root-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
        let fresh = base.join("parent/fresh");
        prepare_root(&fresh).unwrap();
        assert_eq!(mode(&fresh), 0o700);
        // Only the root: its parents keep the usual mode.
        assert_ne!(mode(&base.join("parent")), 0o700);
        for d in ["blobs", "repositories", "uploads"] {
            assert!(fresh.join(d).is_dir(), "{d}");
        }
        let old = base.join("old");
        std::fs::create_dir_all(old.join("blobs")).unwrap();
        std::fs::write(old.join("blobs/keep"), "x").unwrap();
        std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o755)).unwrap();
        prepare_root(&old).unwrap();
        assert_eq!(mode(&old), 0o700);
        assert_eq!(
            std::fs::read_to_string(old.join("blobs/keep")).unwrap(),
            "x"
        );
        let file = base.join("file");
        std::fs::write(&file, "").unwrap();
        assert!(prepare_root(&file).is_err());
        std::fs::remove_dir_all(&base).unwrap();
    }
}
