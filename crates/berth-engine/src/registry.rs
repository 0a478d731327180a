//! Pull and push: policy over berth-registry's client. Which registries
//! speak plain http, whose credentials to send, which platform of an index
//! to take, how downloaded blobs are verified and enter the store (and how
//! an interrupted pull resumes).

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Seek, Write};
use std::path::PathBuf;
use std::sync::{mpsc, Arc, Mutex};

use berth_oci::{media, Digest, Hasher, ImageConfig, Index, Manifest, Platform, Reference};
use berth_registry::client::Sink;
use berth_registry::{Auth, Client, Transport};
use berth_store::{LayerRef, NewImage};

use crate::{Engine, Error, Result};

mod credentials;

use credentials::credentials;

/// Layers downloaded at once unless configured.
const DEFAULT_PARALLEL: usize = 3;

#[derive(Debug, Clone, Default)]
pub struct PullOptions {
    /// `os/arch[/variant]`; the host's when None.
    pub platform: Option<String>,
    /// `--tls-verify=false`: treat the registry as insecure (unverified
    /// https, else plain http).
    pub insecure: bool,
    /// Layers at once (0: the default, 3).
    pub parallel: usize,
    /// `--cert-dir`: CA certificates (`*.crt`) to trust for this registry.
    pub cert_dir: Option<PathBuf>,
}

#[derive(Debug, Clone, Default)]
pub struct PushOptions {
    pub insecure: bool,
    pub cert_dir: Option<PathBuf>,
}

/// CA certificates for `domain`, as Docker finds them in
/// `/etc/docker/certs.d/<domain>/` (and ours in /etc/berth/certs.d),
/// plus any in `cert_dir`.
fn extra_ca(domain: &str, cert_dir: Option<&std::path::Path>) -> Vec<Vec<u8>> {
    let mut dirs: Vec<PathBuf> = ["/etc/berth/certs.d", "/etc/docker/certs.d"]
        .iter()
        .map(|d| PathBuf::from(d).join(domain))
        .collect();
    dirs.extend(cert_dir.map(PathBuf::from));
    let mut out = Vec::new();
    for d in dirs {
        for e in fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.extension().is_some_and(|x| x == "crt") {
                if let Ok(b) = fs::read(&p) {
                    out.push(b);
                }
            }
        }
    }
    out
}

/// What a pull reports as it goes, per layer (short id) or for the image.
#[derive(Debug, Clone, PartialEq)]
pub enum PullEvent {
    /// `latest: Pulling from library/busybox`
    Resolved {
        tag: String,
        repository: String,
    },
    AlreadyExists(String),
    Waiting(String),
    Downloading {
        id: String,
        current: u64,
        total: u64,
    },
    DownloadComplete(String),
    Extracting(String),
    PullComplete(String),
}

#[derive(Debug, Clone)]
pub struct Pulled {
    pub id: Digest,
    /// The manifest's digest (of the platform's manifest, or of the index
    /// when the reference named one).
    pub digest: Digest,
    pub reference: String,
    /// False when the store already had the image under that name.
    pub downloaded: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum PushEvent {
    Preparing(String),
    AlreadyExists(String),
    Pushing { id: String, size: u64 },
    Pushed(String),
    Mounted { id: String, from: String },
}

/// Layers Docker does not push (their content lives at their URLs).
fn is_foreign(media_type: &str) -> bool {
    media_type.contains(".foreign.") || media_type.contains(".nondistributable.")
}

pub(crate) fn reg_err(what: &str, e: berth_registry::Error) -> Error {
    use berth_registry::Error as E;
    match e {
        E::NotFound(m) => Error::NotFound(format!("{what}: {m}")),
        E::Unauthorized(m) => Error::Unauthorized(format!(
            "{what}: {m} (log in with `berth login`, or check the repository name)"
        )),
        E::Invalid(m) => Error::InvalidArgument(format!("{what}: {m}")),
        E::Io(m) | E::Registry(m) => Error::Unavailable(format!("{what}: {m}")),
    }
}

fn short(d: &Digest) -> String {
    d.hex()[..12].to_string()
}

/// Registries on this machine speak plain http without being told, as
/// Docker treats them.
fn is_local(domain: &str) -> bool {
    let host = match domain.rsplit_once(':') {
        Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => domain,
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Docker's rule: registries on this machine's loopback, those named in
/// insecure-registries and those the user says so of are insecure.
fn transport(domain: &str, insecure: bool) -> Transport {
    if insecure || is_local(domain) || configured_insecure(domain) {
        Transport::Insecure
    } else {
        Transport::Https
    }
}

/// Registries named insecure in daemon.json (Docker's key).
fn configured_insecure(domain: &str) -> bool {
    crate::config::daemon_config()
        .and_then(|v| v.get("insecure-registries").cloned())
        .and_then(|v| v.as_array().cloned())
        .is_some_and(|list| list.iter().any(|e| e.as_str() == Some(domain)))
}

fn client_with(
    domain: &str,
    insecure: bool,
    cert_dir: Option<&std::path::Path>,
    auth: Auth,
) -> Result<Client> {
    Client::new(
        domain,
        transport(domain, insecure),
        auth,
        extra_ca(domain, cert_dir),
    )
    .map_err(|e| reg_err(&format!("registry {domain}"), e))
}

/// A tag or digest as the registry API takes it.
pub(crate) fn tag_or_digest(r: &Reference) -> String {
    r.digest()
        .map(|d| d.to_string())
        .or_else(|| r.tag().map(str::to_string))
        .unwrap_or_else(|| "latest".into())
}

/// A downloading blob: the partial file and the hash of what it holds.
struct Partial {
    file: File,
    hasher: Hasher,
    done: u64,
    total: u64,
    id: String,
    events: mpsc::Sender<PullEvent>,
    reported: u64,
}

impl Sink for Partial {
    fn restart(&mut self) -> io::Result<()> {
        self.file.set_len(0)?;
        self.file.rewind()?;
        self.hasher = Hasher::sha256();
        self.done = 0;
        Ok(())
    }
    fn write(&mut self, data: &[u8]) -> io::Result<()> {
        // More than the manifest said is wrong already; do not let it
        // fill the disk before the digest says so.
        if self.total > 0 && self.done + data.len() as u64 > self.total {
            return Err(io::Error::other(format!(
                "the registry sent more than the {} bytes the manifest states",
                self.total
            )));
        }
        self.file.write_all(data)?;
        self.hasher.update(data);
        self.done += data.len() as u64;
        // A progress line every 1 MiB is plenty.
        if self.done - self.reported >= 1 << 20 || self.done == self.total {
            self.reported = self.done;
            let _ = self.events.send(PullEvent::Downloading {
                id: self.id.clone(),
                current: self.done,
                total: self.total,
            });
        }
        Ok(())
    }
}

impl Engine {
    /// A client for `domain` with the credentials config.json has for it.
    pub(crate) fn client_for(
        &self,
        domain: &str,
        insecure: bool,
        cert_dir: Option<&std::path::Path>,
    ) -> Result<Client> {
        client_with(domain, insecure, cert_dir, credentials(domain))
    }

    /// `pull --all-tags`: every tag of the repository `name` names.
    pub fn pull_all_tags(
        &self,
        name: &str,
        opts: &PullOptions,
        progress: &mut dyn FnMut(PullEvent),
    ) -> Result<Vec<Pulled>> {
        let r = Reference::parse_name_only(name)?;
        if r.tag().is_some() || r.digest().is_some() {
            return Err(Error::InvalidArgument(
                "tag can't be used with --all-tags/-a".into(),
            ));
        }
        let client = self.client_for(r.domain(), opts.insecure, opts.cert_dir.as_deref())?;
        let tags = client
            .tags(r.path())
            .map_err(|e| reg_err(&format!("tags of {name}"), e))?;
        let mut out = Vec::new();
        for t in tags {
            out.push(self.pull(&r.with_tag(&t)?.to_string(), opts, progress)?);
        }
        Ok(out)
    }

    /// Where blobs being downloaded wait, kept across interrupted pulls so
    /// the next one resumes.
    fn downloads_dir(&self) -> Result<PathBuf> {
        let d = self.root().join("downloads");
        fs::create_dir_all(&d).map_err(Error::io("create", &d))?;
        Ok(d)
    }

    /// Fetches a manifest and checks it is the content its digest names.
    pub(crate) fn fetch_manifest(
        &self,
        client: &Client,
        repo: &str,
        reference: &str,
    ) -> Result<(Vec<u8>, String, Digest)> {
        let f = client
            .manifest(repo, reference)
            .map_err(|e| reg_err(&format!("manifest for {repo}:{reference}"), e))?;
        let actual = Digest::sha256_of(&f.bytes);
        if reference.contains(':') && reference != actual.to_string() {
            return Err(Error::InvalidArgument(format!(
                "manifest {reference} of {repo}: the registry sent content whose digest is {actual}"
            )));
        }
        Ok((f.bytes, f.media_type, actual))
    }

    /// `pull`: the image `name` from its registry into the store. Events
    /// go to `progress` as they happen.
    pub fn pull(
        &self,
        name: &str,
        opts: &PullOptions,
        progress: &mut dyn FnMut(PullEvent),
    ) -> Result<Pulled> {
        let pulled = self.pull_one(name, opts, progress)?;
        let familiar = crate::images::familiar(&pulled.reference);
        self.emit_image("pull", &familiar, &familiar);
        Ok(pulled)
    }

    fn pull_one(
        &self,
        name: &str,
        opts: &PullOptions,
        progress: &mut dyn FnMut(PullEvent),
    ) -> Result<Pulled> {
        // Reference::parse names `latest` when no tag or digest is given.
        let r = Reference::parse(name)?;
        let repo = r.path().to_string();
        let want = tag_or_digest(&r);
        let client = self.client_for(r.domain(), opts.insecure, opts.cert_dir.as_deref())?;
        progress(PullEvent::Resolved {
            tag: r.tag().unwrap_or(&want).to_string(),
            repository: repo.clone(),
        });
        let (bytes, media_type, top_digest, manifest_digest) =
            self.platform_manifest(&client, &repo, &want, name, opts)?;
        let m = Manifest::from_slice(&bytes)?;
        // Docker keeps the digest the user can pull again by (the index's
        // for a multi-platform image) and no tag when a digest was named.
        let tag_name = match (r.tag(), r.digest()) {
            (Some(t), None) => Some(format!("{}:{t}", r.name())),
            _ => None,
        };
        let repo_digest = format!("{}@{}", r.name(), top_digest);

        // The config first (small): it names the layers' diff ids.
        let config = m.config.digest.clone();
        self.fetch_config(&client, &repo, &config, name)?;
        let cfg = ImageConfig::from_slice(&self.store.read_blob(&config)?)?;
        if cfg.rootfs.diff_ids.len() != m.layers.len() {
            return Err(Error::InvalidArgument(format!(
                "{name}: the config lists {} layers but the manifest {}",
                cfg.rootfs.diff_ids.len(),
                m.layers.len()
            )));
        }
        let already = self.store.image(&config)?.is_some_and(|img| {
            img.manifest_digest == manifest_digest
                && tag_name.as_ref().is_none_or(|t| img.tags.contains(t))
        });

        let mut todo = Vec::new();
        for (l, diff_id) in m.layers.iter().zip(&cfg.rootfs.diff_ids) {
            if self.store.has_blob(&l.digest) {
                progress(PullEvent::AlreadyExists(short(&l.digest)));
            } else if todo
                .iter()
                .any(|(t, _): &(berth_oci::Descriptor, Digest)| t.digest == l.digest)
            {
                // The same layer twice (empty layers often are): once.
            } else {
                progress(PullEvent::Waiting(short(&l.digest)));
                todo.push((l.clone(), diff_id.clone()));
            }
        }
        // Docker says "Already exists" and nothing more for those.
        let fetching: Vec<Digest> = todo.iter().map(|(l, _)| l.digest.clone()).collect();
        let parallel = if opts.parallel == 0 {
            DEFAULT_PARALLEL
        } else {
            opts.parallel
        };
        let unpacked = self.download_layers(&client, &repo, todo, parallel, progress)?;

        // Unpack what the cache lacks, then record the image.
        let layers = self.layer_refs(&m, &cfg, &unpacked, &fetching, progress)?;
        self.store.put_blob(&bytes)?;
        let created = cfg
            .created
            .as_deref()
            .and_then(berth_oci::time::parse_rfc3339);
        self.store.put_image(
            &NewImage {
                id: config.clone(),
                manifest_digest: manifest_digest.clone(),
                manifest_media_type: media_type,
                created,
                parent: None,
                layers,
            },
            &tag_name.iter().cloned().collect::<Vec<_>>(),
            &[repo_digest],
        )?;
        Ok(Pulled {
            id: config,
            digest: top_digest,
            reference: r.to_string(),
            downloaded: !already,
        })
    }

    /// The manifest to pull: `want`'s, or for an index the entry for the
    /// platform asked for (or the host's). Returns its bytes and media
    /// type, the digest of what `want` named, and the manifest's digest.
    fn platform_manifest(
        &self,
        client: &Client,
        repo: &str,
        want: &str,
        name: &str,
        opts: &PullOptions,
    ) -> Result<(Vec<u8>, String, Digest, Digest)> {
        let (mut bytes, mut media_type, top_digest) = self.fetch_manifest(client, repo, want)?;
        let platform = match &opts.platform {
            Some(p) => Platform::parse(p)?,
            None => Platform::host(),
        };
        let mut manifest_digest = top_digest.clone();
        for _ in 0..4 {
            if !media::is_index(&media_type) {
                break;
            }
            let idx = Index::from_slice(&bytes)?;
            let d = idx
                .manifests
                .iter()
                .find(|m| m.platform.as_ref().is_some_and(|p| p.matches(&platform)))
                .ok_or_else(|| {
                    Error::NotFound(format!(
                        "no matching manifest for {} in the manifest list entries",
                        platform_text(&platform)
                    ))
                })?
                .digest
                .clone();
            (bytes, media_type, manifest_digest) =
                self.fetch_manifest(client, repo, &d.to_string())?;
        }
        if !media::is_manifest(&media_type) {
            return Err(Error::InvalidArgument(format!(
                "{name}: unsupported manifest type {media_type}"
            )));
        }
        Ok((bytes, media_type, top_digest, manifest_digest))
    }

    /// The config first (small): it names the layers' diff ids.
    fn fetch_config(&self, client: &Client, repo: &str, config: &Digest, name: &str) -> Result<()> {
        if !self.store.has_blob(config) {
            let mut buf = MemSink(Vec::new());
            client
                .blob(repo, &config.to_string(), 0, &mut buf)
                .map_err(|e| reg_err(&format!("config {config}"), e))?;
            if Digest::sha256_of(&buf.0) != *config {
                return Err(Error::InvalidArgument(format!(
                    "config {config} of {name}: the registry sent content with another digest"
                )));
            }
            self.store.put_blob(&buf.0)?;
        }
        Ok(())
    }

    /// Downloads `todo` on `parallel` threads, each unpacking a layer as
    /// soon as it is down; returns the layers unpacked (diff id -> size).
    fn download_layers(
        &self,
        client: &Client,
        repo: &str,
        todo: Vec<(berth_oci::Descriptor, Digest)>,
        parallel: usize,
        progress: &mut dyn FnMut(PullEvent),
    ) -> Result<BTreeMap<Digest, u64>> {
        let (tx, rx) = mpsc::channel();
        let queue = Arc::new(Mutex::new(todo));
        let downloads = self.downloads_dir()?;
        let root = self.store.root().to_path_buf();
        let failure: Mutex<Option<Error>> = Mutex::new(None);
        // Layers unpacked by the download threads: diff id -> size.
        let unpacked: Mutex<BTreeMap<Digest, u64>> = Mutex::new(BTreeMap::new());
        std::thread::scope(|s| {
            for _ in 0..parallel {
                let queue = queue.clone();
                let tx = tx.clone();
                let downloads = &downloads;
                let failure = &failure;
                let unpacked = &unpacked;
                let root = &root;
                s.spawn(move || {
                    // A connection of its own to the store: a layer is
                    // unpacked as soon as it is down, while others still
                    // download.
                    let mut store: Option<berth_store::Store> = None;
                    loop {
                        if failure.lock().expect("not poisoned").is_some() {
                            return;
                        }
                        let Some((layer, diff_id)) = queue.lock().expect("not poisoned").pop()
                        else {
                            return;
                        };
                        let r = (|| -> Result<Option<u64>> {
                            if store.is_none() {
                                store = Some(berth_store::Store::open(root)?);
                            }
                            let st = store.as_ref().expect("opened above");
                            download(client, st, repo, &layer, downloads, &tx)?;
                            if st.has_layer(&diff_id) {
                                return Ok(None);
                            }
                            let _ = tx.send(PullEvent::Extracting(short(&layer.digest)));
                            let f = st.open_blob(&layer.digest)?;
                            Ok(Some(unpack(st, f, &layer.digest, &diff_id)?))
                        })();
                        match r {
                            Ok(Some(size)) => {
                                unpacked.lock().expect("not poisoned").insert(diff_id, size);
                            }
                            Ok(None) => {}
                            Err(e) => {
                                failure.lock().expect("not poisoned").get_or_insert(e);
                                return;
                            }
                        }
                    }
                });
            }
            drop(tx);
            for ev in rx {
                progress(ev);
            }
        });
        if let Some(e) = failure.into_inner().expect("not poisoned") {
            return Err(e);
        }
        Ok(unpacked.into_inner().expect("not poisoned"))
    }

    /// Unpacks what the cache lacks; the image's layers as recorded.
    fn layer_refs(
        &self,
        m: &Manifest,
        cfg: &ImageConfig,
        unpacked: &BTreeMap<Digest, u64>,
        fetching: &[Digest],
        progress: &mut dyn FnMut(PullEvent),
    ) -> Result<Vec<LayerRef>> {
        let mut layers = Vec::new();
        for (l, diff_id) in m.layers.iter().zip(&cfg.rootfs.diff_ids) {
            let size = match (unpacked.get(diff_id), self.store.layer_size(diff_id)?) {
                (Some(s), _) => *s,
                (None, Some(s)) if self.store.has_layer(diff_id) => s,
                _ => {
                    progress(PullEvent::Extracting(short(&l.digest)));
                    let f = self.store.open_blob(&l.digest)?;
                    unpack(&self.store, f, &l.digest, diff_id)?
                }
            };
            if fetching.contains(&l.digest) {
                progress(PullEvent::PullComplete(short(&l.digest)));
            }
            layers.push(LayerRef {
                diff_id: diff_id.clone(),
                blob: l.digest.clone(),
                media_type: l.media_type.clone(),
                size,
                blob_size: l.size,
            });
        }
        Ok(layers)
    }

    /// `push`: an image of the store to the registry its name says.
    /// Returns the manifest's digest and size.
    pub fn push(
        &self,
        name: &str,
        opts: &PushOptions,
        progress: &mut dyn FnMut(PushEvent),
    ) -> Result<(Digest, usize)> {
        let pushed = self.push_one(name, opts, progress)?;
        let familiar = Reference::parse(name)
            .map(|r| crate::images::familiar(&r.to_string()))
            .unwrap_or_else(|_| name.to_string());
        self.emit_image("push", &familiar, &familiar);
        Ok(pushed)
    }

    fn push_one(
        &self,
        name: &str,
        opts: &PushOptions,
        progress: &mut dyn FnMut(PushEvent),
    ) -> Result<(Digest, usize)> {
        let img = self.resolve_image(name)?;
        let r = Reference::parse(name)?;
        let repo = r.path().to_string();
        let client = self.client_for(r.domain(), opts.insecure, opts.cert_dir.as_deref())?;
        let manifest = self.store.read_blob(&img.manifest_digest)?;
        let m = Manifest::from_slice(&manifest)?;
        // Docker leaves non-distributable (foreign) layers where their
        // URLs point.
        let mut blobs: Vec<(Digest, u64)> = m
            .layers
            .iter()
            .filter(|l| !is_foreign(&l.media_type))
            .map(|l| (l.digest.clone(), l.size))
            .collect();
        blobs.push((m.config.digest.clone(), m.config.size));
        // Repositories of the same registry this image came from or went
        // to: the registry can mount blobs from them instead of taking
        // them again.
        let mount_from: Vec<String> = img
            .repo_digests
            .iter()
            .filter_map(|rd| Reference::parse(rd).ok())
            .filter(|o| o.domain() == r.domain() && o.path() != repo)
            .map(|o| o.path().to_string())
            .collect();
        let mut seen = std::collections::BTreeSet::new();
        for (d, size) in blobs {
            if !seen.insert(d.clone()) {
                continue;
            }
            let id = short(&d);
            // Docker reports layers, not the config.
            let is_config = d == m.config.digest;
            let mut progress = |e: PushEvent| {
                if !is_config {
                    progress(e)
                }
            };
            progress(PushEvent::Preparing(id.clone()));
            let exists = client
                .blob_exists(&repo, &d.to_string())
                .map_err(|e| reg_err(&format!("push {name}"), e))?;
            if exists {
                progress(PushEvent::AlreadyExists(id));
                continue;
            }
            if let Some(from) = mount_from
                .iter()
                .find(|from| client.mount_blob(&repo, from, &d.to_string()).is_ok())
            {
                progress(PushEvent::Mounted {
                    id,
                    from: from.clone(),
                });
                continue;
            }
            if !self.store.has_blob(&d) {
                return Err(Error::NotFound(format!(
                    "push {name}: blob {d} is not in the store (the image was loaded without it)"
                )));
            }
            progress(PushEvent::Pushing {
                id: id.clone(),
                size,
            });
            client
                .push_blob_file(&repo, &d.to_string(), &self.store.blob_path(&d))
                .map_err(|e| reg_err(&format!("push {name}: blob {d}"), e))?;
            progress(PushEvent::Pushed(id));
        }
        client
            .push_manifest(
                &repo,
                &tag_or_digest(&r),
                manifest.clone(),
                &img.manifest_media_type,
            )
            .map_err(|e| reg_err(&format!("push {name}: manifest"), e))?;
        let digest = img.manifest_digest.clone();
        self.store
            .add_repo_digest(&format!("{}@{}", r.name(), digest), &img.id)?;
        Ok((digest, manifest.len()))
    }
}

/// Downloads one blob into `downloads`, resuming a partial download and
/// verifying every byte against its digest before it is stored.
fn download(
    client: &Client,
    store: &berth_store::Store,
    repo: &str,
    layer: &berth_oci::Descriptor,
    downloads: &std::path::Path,
    events: &mpsc::Sender<PullEvent>,
) -> Result<()> {
    let id = short(&layer.digest);
    let path = downloads.join(format!("{}.partial", layer.digest.hex()));
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&path)
        .map_err(Error::io("open", &path))?;
    // Two pulls of the same layer take turns: the second finds it whole.
    let _turn = nix::fcntl::Flock::lock(
        file.try_clone().map_err(Error::io("open", &path))?,
        nix::fcntl::FlockArg::LockExclusive,
    )
    .map_err(|(_, e)| Error::io("lock", &path)(e.into()))?;
    // The pull we waited for stored it: our file is the blob now.
    if store.has_blob(&layer.digest) {
        return Ok(());
    }
    // What an interrupted pull left: hash it and go on from there.
    let mut hasher = Hasher::sha256();
    io::copy(&mut file, &mut hasher).map_err(Error::io("read", &path))?;
    let mut done = hasher.len();
    if done > layer.size {
        file.set_len(0).map_err(Error::io("truncate", &path))?;
        file.rewind().map_err(Error::io("rewind", &path))?;
        hasher = Hasher::sha256();
        done = 0;
    }
    let mut sink = Partial {
        file,
        hasher,
        done,
        total: layer.size,
        id: id.clone(),
        events: events.clone(),
        reported: done,
    };
    if done < layer.size || layer.size == 0 {
        if let Err(e) = client.blob(repo, &layer.digest.to_string(), done, &mut sink) {
            // All of it came and the client refused it: the content is
            // wrong, not the transfer, so nothing of it is worth keeping.
            // Anything shorter stays for the next pull to resume.
            if sink.done < layer.size || layer.size == 0 {
                return Err(reg_err(&format!("layer {}", layer.digest), e));
            }
        }
    }
    let actual = sink.hasher.finish();
    if actual != layer.digest {
        let _ = fs::remove_file(&path);
        return Err(Error::InvalidArgument(format!(
            "layer {}: the registry sent content whose digest is {actual}; nothing was stored",
            layer.digest
        )));
    }
    let _ = events.send(PullEvent::DownloadComplete(id));
    // Still holding the turn: nobody else renames or truncates it.
    store.adopt_blob(&path, &layer.digest)?;
    Ok(())
}

/// Unpacks a layer blob into the store's cache, checking it is the layer
/// the config names; returns its uncompressed size.
fn unpack(
    store: &berth_store::Store,
    blob: File,
    digest: &Digest,
    diff_id: &Digest,
) -> Result<u64> {
    Ok(store
        .unpack_layer(berth_layer::decompress(blob)?, Some(diff_id))
        .map_err(|e| match e {
            berth_store::Error::DigestMismatch { expected, actual } => Error::InvalidArgument(
                format!("layer {digest} unpacks to {actual}, but the image config says {expected}"),
            ),
            e => e.into(),
        })?
        .size)
}

fn platform_text(p: &Platform) -> String {
    match &p.variant {
        Some(v) => format!("{}/{}/{v}", p.os, p.architecture),
        None => format!("{}/{}", p.os, p.architecture),
    }
}

/// A small blob in memory (configs).
pub(crate) struct MemSink(pub Vec<u8>);

impl Sink for MemSink {
    fn restart(&mut self) -> io::Result<()> {
        self.0.clear();
        Ok(())
    }
    fn write(&mut self, data: &[u8]) -> io::Result<()> {
        if self.0.len() + data.len() > 16 << 20 {
            return Err(io::Error::other("an image config over 16 MiB"));
        }
        self.0.extend_from_slice(data);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_registries_are_plain_http() {
        assert!(is_local("localhost:5000"));
        assert!(is_local("127.0.0.1:5000"));
        assert!(is_local("[::1]:5000"));
        assert!(!is_local("registry.example.com"));
        assert!(!is_local("docker.io"));
    }
}
