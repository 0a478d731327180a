//! `save` and `load`: image archives.
//!
//! `save` writes what Docker 25+ writes: an OCI image layout (oci-layout,
//! index.json, blobs/sha256/…) that also carries Docker's manifest.json and
//! repositories, so both OCI and Docker tools read it. `load` reads that,
//! plain OCI archives and older Docker archives (a directory per layer),
//! gzip-compressed or not, in one pass over the stream.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Component, Path, PathBuf};

use berth_oci::{
    media, media::Compression, Descriptor, Digest, Hasher, HashingWriter, ImageConfig, Index,
    Manifest, Platform, Reference,
};
use berth_store::{ImageRecord, LayerRef, NewImage};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::{Engine, Error, Result};

const IMAGE_NAME_ANNOTATION: &str = "io.containerd.image.name";
const REF_NAME_ANNOTATION: &str = "org.opencontainers.image.ref.name";
/// manifest.json, index.json and friends are small; a huge one is an attack.
const MAX_METADATA: u64 = 16 << 20;
const COPY_BUF: usize = 1 << 20;
/// Staged blobs are fsynced when adopted; asking the kernel to start
/// writing them back every few MiB lets that happen while the rest of the
/// archive streams in, so the final fsync has little left to wait for.
const WRITEBACK_CHUNK: u64 = 8 << 20;

fn start_writeback(f: &File, offset: u64, len: u64) {
    use std::os::fd::AsRawFd;
    // SAFETY: sync_file_range only schedules I/O on an fd we own. A failure
    // only loses the head start; the fsync at adoption still runs.
    unsafe {
        libc::sync_file_range(
            f.as_raw_fd(),
            offset as i64,
            len as i64,
            libc::SYNC_FILE_RANGE_WRITE,
        );
    }
}

#[derive(Debug, Clone, Default)]
pub struct SaveOptions {
    pub names: Vec<String>,
}

/// What `load` added: an image and the tags now naming it.
#[derive(Debug, Clone)]
pub struct LoadedImage {
    pub id: Digest,
    /// Familiar names, e.g. `busybox:latest`.
    pub tags: Vec<String>,
    /// Tags that moved here from another image (tag, old image id).
    pub replaced: Vec<(String, Digest)>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerManifestEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    #[serde(default)]
    layers: Vec<String>,
}

fn bad(msg: impl Into<String>) -> Error {
    Error::InvalidArchive(msg.into())
}

fn blob_name(d: &Digest) -> String {
    format!("blobs/{}/{}", d.algorithm().as_str(), d.hex())
}

/// Writes tar entries straight to the output, so blob bodies go through
/// `io::copy` from file to file (copy_file_range when the output is a file).
struct TarOut<W> {
    out: W,
}

impl<W: Write> TarOut<W> {
    fn header(&mut self, path: &str, size: u64, kind: tar::EntryType, mode: u32) -> io::Result<()> {
        let mut h = tar::Header::new_ustar();
        h.set_path(path)?;
        h.set_size(size);
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_mtime(0);
        h.set_uid(0);
        h.set_gid(0);
        h.set_cksum();
        self.out.write_all(h.as_bytes())
    }

    fn pad(&mut self, size: u64) -> io::Result<()> {
        let pad = ((512 - size % 512) % 512) as usize;
        self.out.write_all(&[0u8; 512][..pad])
    }

    fn dir(&mut self, path: &str) -> io::Result<()> {
        self.header(path, 0, tar::EntryType::Directory, 0o755)
    }

    fn bytes(&mut self, path: &str, data: &[u8]) -> io::Result<()> {
        self.header(path, data.len() as u64, tar::EntryType::Regular, 0o644)?;
        self.out.write_all(data)?;
        self.pad(data.len() as u64)
    }

    /// io::copy turns into copy_file_range when both ends are files, so
    /// the writer's concrete type must reach it (no `dyn Write`).
    fn file(&mut self, path: &str, src: &mut File, size: u64) -> io::Result<()> {
        self.header(path, size, tar::EntryType::Regular, 0o644)?;
        let copied = io::copy(src, &mut self.out)?;
        if copied != size {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("{path}: expected {size} bytes, read {copied}"),
            ));
        }
        self.pad(size)
    }

    fn finish(mut self) -> io::Result<W> {
        self.out.write_all(&[0u8; 1024])?;
        self.out.flush()?;
        Ok(self.out)
    }
}

impl Engine {
    /// Images named by `names` with the references to record for each.
    fn images_to_save(&self, names: &[String]) -> Result<Vec<(ImageRecord, Vec<Reference>)>> {
        let mut out: Vec<(ImageRecord, Vec<Reference>)> = Vec::new();
        let mut add = |img: ImageRecord, r: Option<Reference>| {
            let slot = match out.iter().position(|(i, _)| i.id == img.id) {
                Some(i) => i,
                None => {
                    out.push((img, Vec::new()));
                    out.len() - 1
                }
            };
            if let Some(r) = r {
                if !out[slot].1.contains(&r) {
                    out[slot].1.push(r);
                }
            }
        };
        for name in names {
            // A bare repository name means every tag of it, as in Docker.
            if let Ok(repo) = Reference::parse_name_only(name) {
                if repo.tag().is_none() && repo.digest().is_none() {
                    let mut found = false;
                    for img in self.store.images()? {
                        for t in img.tags.clone() {
                            let tr = Reference::parse(&t)?;
                            if tr.name() == repo.name() {
                                add(img.clone(), Some(tr));
                                found = true;
                            }
                        }
                    }
                    if found {
                        continue;
                    }
                }
            }
            let img = self.resolve_image(name)?;
            let r = Reference::parse(name)
                .ok()
                .filter(|r| r.tag().is_some() && img.tags.contains(&r.to_string()));
            add(img, r);
        }
        Ok(out)
    }

    /// Writes the named images as one archive to `out`.
    pub fn save<W: Write>(&self, names: &[String], out: W) -> Result<W> {
        if names.is_empty() {
            return Err(Error::InvalidArgument(
                "save needs at least one image".into(),
            ));
        }
        let images = self.images_to_save(names)?;
        let out = self.save_all(&images, out)?;
        for (img, _) in &images {
            self.emit_image("save", &img.id.to_string(), &img.id.to_string());
        }
        Ok(out)
    }

    fn save_all<W: Write>(&self, images: &[(ImageRecord, Vec<Reference>)], out: W) -> Result<W> {
        let mut blobs: Vec<(Digest, u64)> = Vec::new();
        let mut index = Vec::new();
        let mut docker_manifest = Vec::new();
        let mut repositories: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
        for (img, refs) in images {
            let layers = self.store.image_layers(&img.id)?;
            let manifest_size = self.blob_size(&img.manifest_digest)?;
            blobs.push((img.manifest_digest.clone(), manifest_size));
            blobs.push((img.id.clone(), self.blob_size(&img.id)?));
            for l in &layers {
                blobs.push((l.blob.clone(), l.blob_size));
            }
            let desc = Descriptor::new(
                &img.manifest_media_type,
                img.manifest_digest.clone(),
                manifest_size,
            );
            if refs.is_empty() {
                index.push(desc.clone());
            }
            for r in refs {
                let mut d = desc.clone();
                let mut ann = BTreeMap::new();
                ann.insert(IMAGE_NAME_ANNOTATION.to_string(), r.to_string());
                ann.insert(
                    REF_NAME_ANNOTATION.to_string(),
                    r.tag().unwrap_or_default().to_string(),
                );
                d.annotations = Some(ann);
                index.push(d);
                if let (Some(tag), Some(top)) = (r.tag(), layers.last()) {
                    repositories
                        .entry(r.familiar_name())
                        .or_default()
                        .insert(tag.to_string(), top.blob.hex().to_string());
                }
            }
            docker_manifest.push(DockerManifestEntry {
                config: blob_name(&img.id),
                repo_tags: (!refs.is_empty())
                    .then(|| refs.iter().map(Reference::familiar).collect()),
                layers: layers.iter().map(|l| blob_name(&l.blob)).collect(),
            });
        }
        let mut seen = std::collections::HashSet::new();
        blobs.retain(|(d, _)| seen.insert(d.clone()));

        let stream = |e: io::Error| Error::Stream("writing the archive", e);
        let mut tar = TarOut { out };
        tar.dir("blobs/").map_err(stream)?;
        tar.dir("blobs/sha256/").map_err(stream)?;
        for (d, size) in &blobs {
            let mut f = self.store.open_blob(d)?;
            tar.file(&blob_name(d), &mut f, *size).map_err(stream)?;
        }
        tar.bytes("index.json", &Index::new(index).to_vec())
            .map_err(stream)?;
        let mj = serde_json::to_vec(&docker_manifest).expect("manifest.json serialises");
        tar.bytes("manifest.json", &mj).map_err(stream)?;
        let layout = json!({ "imageLayoutVersion": media::OCI_LAYOUT_VERSION }).to_string();
        tar.bytes("oci-layout", layout.as_bytes()).map_err(stream)?;
        if !repositories.is_empty() {
            let repos = serde_json::to_vec(&repositories).expect("repositories serialises");
            tar.bytes("repositories", &repos).map_err(stream)?;
        }
        tar.finish().map_err(stream)
    }

    fn blob_size(&self, d: &Digest) -> Result<u64> {
        let p = self.store.blob_path(d);
        Ok(fs::metadata(&p)
            .map_err(|_| berth_store::Error::MissingBlob(d.clone()))?
            .len())
    }

    /// Reads an image archive from `input` and adds its images.
    pub fn load<R: Read>(&self, input: R) -> Result<Vec<LoadedImage>> {
        let loaded = self.load_all(input)?;
        for l in &loaded {
            self.emit_image("load", &l.id.to_string(), &l.id.to_string());
        }
        Ok(loaded)
    }

    fn load_all<R: Read>(&self, input: R) -> Result<Vec<LoadedImage>> {
        let _adding = self.adding()?;
        let staged = self.stage(input)?;
        // Blobs are fsynced when adopted. Syncing them now, on a second
        // thread, overlaps that disk wait with unpacking the layers.
        let by_digest = &staged.by_digest;
        let result = std::thread::scope(|s| {
            s.spawn(move || {
                for p in by_digest.values() {
                    if let Ok(f) = File::open(p) {
                        let _ = f.sync_all();
                    }
                }
            });
            self.load_staged(&staged)
        });
        let _ = fs::remove_dir_all(&staged.dir);
        result
    }

    fn stage<R: Read>(&self, input: R) -> Result<Staged> {
        let dir = self.store.scratch_dir("load")?;
        let mut staged = Staged {
            dir,
            files: HashMap::new(),
            by_digest: HashMap::new(),
            links: HashMap::new(),
            meta: HashMap::new(),
        };
        let stream = berth_layer::decompress(input)?;
        let mut archive = tar::Archive::new(stream);
        let tar_err = |e: io::Error| bad(format!("not a readable tar stream: {e}"));
        let mut buf = vec![0u8; COPY_BUF];
        for (n, entry) in archive.entries().map_err(tar_err)?.enumerate() {
            let mut entry = entry.map_err(tar_err)?;
            let raw = entry.path().map_err(tar_err)?.into_owned();
            let name = clean(&raw)?;
            match entry.header().entry_type() {
                tar::EntryType::Regular | tar::EntryType::Continuous => {}
                tar::EntryType::Symlink | tar::EntryType::Link => {
                    let target = entry
                        .link_name()
                        .map_err(tar_err)?
                        .ok_or_else(|| bad(format!("link {name} has no target")))?;
                    let target = if entry.header().entry_type() == tar::EntryType::Symlink {
                        // Relative to the link's directory.
                        let base = Path::new(&name).parent().unwrap_or(Path::new(""));
                        clean(&base.join(target))
                    } else {
                        clean(&target)
                    };
                    // A link that leads out of the archive can only matter if
                    // a manifest names it, and then lookup reports it missing.
                    if let Ok(target) = target {
                        staged.links.insert(name, target);
                    }
                    continue;
                }
                _ => continue,
            }
            let size = entry.header().size().map_err(tar_err)?;
            if matches!(
                name.as_str(),
                "manifest.json" | "index.json" | "repositories" | "oci-layout"
            ) {
                if size > MAX_METADATA {
                    return Err(bad(format!(
                        "{name} is {size} bytes, too large to be metadata"
                    )));
                }
                let mut v = Vec::with_capacity(size as usize);
                entry.read_to_end(&mut v).map_err(tar_err)?;
                staged.meta.insert(name, v);
                continue;
            }
            let path = staged.dir.join(format!("f{n}"));
            let file = File::create(&path).map_err(Error::io("create", &path))?;
            let mut w = HashingWriter::new(file, berth_oci::Algorithm::Sha256);
            let (mut written, mut flushed) = (0u64, 0u64);
            loop {
                let k = entry.read(&mut buf).map_err(tar_err)?;
                if k == 0 {
                    break;
                }
                w.write_all(&buf[..k]).map_err(Error::io("write", &path))?;
                written += k as u64;
                if written - flushed >= WRITEBACK_CHUNK {
                    start_writeback(&w.inner, flushed, written - flushed);
                    flushed = written;
                }
            }
            let digest = w.hasher.finish();
            if let Some(expected) = name.strip_prefix("blobs/") {
                let (algo, hex) = expected.split_once('/').unwrap_or(("", expected));
                if algo == "sha256" && hex != digest.hex() {
                    return Err(bad(format!(
                        "{name} does not match its digest: its content is {digest}"
                    )));
                }
            }
            staged.by_digest.insert(digest.clone(), path.clone());
            staged.files.insert(name, digest);
        }
        Ok(staged)
    }

    fn load_staged(&self, staged: &Staged) -> Result<Vec<LoadedImage>> {
        let index = staged
            .meta
            .get("index.json")
            .map(|b| Index::from_slice(b))
            .transpose()?;
        let mut loaded = Vec::new();
        if let Some(mj) = staged.meta.get("manifest.json") {
            let entries: Vec<DockerManifestEntry> =
                serde_json::from_slice(mj).map_err(|e| bad(format!("manifest.json: {e}")))?;
            if entries.is_empty() {
                return Err(bad("manifest.json lists no images"));
            }
            for e in entries {
                let config = staged.lookup(&e.config)?.clone();
                let layers = e
                    .layers
                    .iter()
                    .map(|l| Ok(staged.lookup(l)?.clone()))
                    .collect::<Result<Vec<_>>>()?;
                let tags = e
                    .repo_tags
                    .unwrap_or_default()
                    .iter()
                    .map(|t| {
                        Reference::parse(t)
                            .map_err(|_| bad(format!("manifest.json: invalid tag {t:?}")))
                    })
                    .collect::<Result<Vec<_>>>()?;
                // Keep the OCI manifest the archive carries for this image, so
                // a save/load round trip keeps the manifest digest.
                let manifest = index
                    .as_ref()
                    .map(|idx| self.matching_manifest(staged, idx, &config, &layers))
                    .transpose()?
                    .flatten();
                loaded.push(self.add_loaded(staged, config, layers, manifest, tags)?);
            }
        } else if let Some(idx) = &index {
            for desc in &idx.manifests {
                let mut tags = Vec::new();
                if let Some(n) = desc.annotation(IMAGE_NAME_ANNOTATION) {
                    tags.push(
                        Reference::parse(n)
                            .map_err(|_| bad(format!("index.json: invalid image name {n:?}")))?,
                    );
                } else if let Some(n) = desc.annotation(REF_NAME_ANNOTATION) {
                    // A bare tag ("latest") names nothing on its own.
                    if n.contains(':') || n.contains('/') {
                        if let Ok(r) = Reference::parse(n) {
                            tags.push(r);
                        }
                    }
                }
                let (mdesc, manifest) = self.pick_manifest(staged, desc)?;
                let layers = manifest.layers.iter().map(|l| l.digest.clone()).collect();
                loaded.push(self.add_loaded(
                    staged,
                    manifest.config.digest.clone(),
                    layers,
                    Some((mdesc.digest.clone(), mdesc.media_type.clone())),
                    tags,
                )?);
            }
        } else {
            return Err(bad(
                "no manifest.json or index.json: not a Docker or OCI image archive",
            ));
        }
        Ok(loaded)
    }

    /// Follows an index entry to an image manifest, choosing the host's
    /// platform from nested indexes.
    fn pick_manifest(&self, staged: &Staged, desc: &Descriptor) -> Result<(Descriptor, Manifest)> {
        let mut desc = desc.clone();
        for _ in 0..4 {
            let bytes = staged.read(self, &desc.digest)?;
            if media::is_index(&desc.media_type) {
                let idx = Index::from_slice(&bytes)?;
                let host = Platform::host();
                desc = idx
                    .manifests
                    .iter()
                    .find(|m| m.platform.as_ref().is_some_and(|p| p.matches(&host)))
                    .or(idx.manifests.first())
                    .cloned()
                    .ok_or_else(|| bad(format!("index {} lists no manifests", desc.digest)))?;
                continue;
            }
            return Ok((desc, Manifest::from_slice(&bytes)?));
        }
        Err(bad("image indexes nest too deeply"))
    }

    fn matching_manifest(
        &self,
        staged: &Staged,
        idx: &Index,
        config: &Digest,
        layers: &[Digest],
    ) -> Result<Option<(Digest, String)>> {
        for d in &idx.manifests {
            if !media::is_manifest(&d.media_type) || !staged.by_digest.contains_key(&d.digest) {
                continue;
            }
            let m = Manifest::from_slice(&staged.read(self, &d.digest)?)?;
            if m.config.digest == *config && m.layers.iter().map(|l| &l.digest).eq(layers.iter()) {
                return Ok(Some((d.digest.clone(), d.media_type.clone())));
            }
        }
        Ok(None)
    }

    fn add_loaded(
        &self,
        staged: &Staged,
        config: Digest,
        layer_blobs: Vec<Digest>,
        manifest: Option<(Digest, String)>,
        tags: Vec<Reference>,
    ) -> Result<LoadedImage> {
        let config_bytes = staged.read(self, &config)?;
        let cfg = ImageConfig::from_slice(&config_bytes)?;
        if cfg.rootfs.diff_ids.len() != layer_blobs.len() {
            return Err(bad(format!(
                "image config {config} lists {} layers but the manifest has {}",
                cfg.rootfs.diff_ids.len(),
                layer_blobs.len()
            )));
        }
        let mut layers = Vec::new();
        for (blob, diff_id) in layer_blobs.iter().zip(&cfg.rootfs.diff_ids) {
            layers.push(self.load_layer(staged, blob, diff_id)?);
        }
        let (manifest_digest, manifest_type) = match manifest {
            Some((d, t)) => {
                staged.adopt(self, &d)?;
                // Layer media types as that manifest states them.
                let m = Manifest::from_slice(&staged.read(self, &d)?)?;
                for (l, md) in layers.iter_mut().zip(&m.layers) {
                    l.media_type = md.media_type.clone();
                }
                (d, t)
            }
            None => {
                let m = Manifest {
                    schema_version: 2,
                    media_type: Some(media::OCI_MANIFEST.into()),
                    artifact_type: None,
                    config: Descriptor::new(
                        media::OCI_CONFIG,
                        config.clone(),
                        config_bytes.len() as u64,
                    ),
                    layers: layers
                        .iter()
                        .map(|l| Descriptor::new(&l.media_type, l.blob.clone(), l.blob_size))
                        .collect(),
                    subject: None,
                    annotations: None,
                };
                (
                    self.store.put_blob(&m.to_vec())?,
                    media::OCI_MANIFEST.to_string(),
                )
            }
        };
        staged.adopt(self, &config)?;
        for l in &layers {
            staged.adopt(self, &l.blob)?;
        }
        let created = cfg
            .created
            .as_deref()
            .and_then(berth_oci::time::parse_rfc3339);
        let full_tags: Vec<String> = tags.iter().map(|t| t.to_string()).collect();
        let replaced = self.store.put_image(
            &NewImage {
                id: config.clone(),
                manifest_digest,
                manifest_media_type: manifest_type,
                created,
                parent: None,
                layers,
            },
            &full_tags,
            &[],
        )?;
        Ok(LoadedImage {
            id: config,
            tags: tags.iter().map(Reference::familiar).collect(),
            replaced: replaced
                .into_iter()
                .map(|(t, old)| (Reference::parse(&t).map(|r| r.familiar()).unwrap_or(t), old))
                .collect(),
        })
    }

    /// One layer of a loaded image into the layer cache (a cached one
    /// must still prove it is that layer); its record.
    fn load_layer(&self, staged: &Staged, blob: &Digest, diff_id: &Digest) -> Result<LayerRef> {
        let (path, blob_size) = staged.blob_file(self, blob)?;
        let mut head = [0u8; 4];
        let n = File::open(&path)
            .and_then(|mut f| f.read(&mut head))
            .map_err(Error::io("read", &path))?;
        let compression = Compression::sniff(&head[..n]);
        let size =
            if compression == Compression::None && blob == diff_id && self.store.has_layer(diff_id)
            {
                blob_size
            } else if self.store.has_layer(diff_id) {
                // Cached already, but this blob must still prove it is that layer.
                let f = File::open(&path).map_err(Error::io("open", &path))?;
                let mut h = Hasher::sha256();
                io::copy(&mut berth_layer::decompress(f)?, &mut h)
                    .map_err(|e| bad(format!("layer {blob}: {e}")))?;
                let got = h.len();
                let actual = h.finish();
                if actual != *diff_id {
                    return Err(berth_store::Error::DigestMismatch {
                        expected: diff_id.clone(),
                        actual,
                    }
                    .into());
                }
                got
            } else if compression == Compression::None && blob == diff_id {
                // Staging hashed these bytes already: they are the layer.
                let f = File::open(&path).map_err(Error::io("open", &path))?;
                self.store
                    .unpack_verified_layer(io::BufReader::with_capacity(COPY_BUF, f), diff_id)?
                    .size
            } else {
                let f = File::open(&path).map_err(Error::io("open", &path))?;
                self.store
                    .unpack_layer(berth_layer::decompress(f)?, Some(diff_id))
                    .map_err(|e| match e {
                        berth_store::Error::DigestMismatch { expected, actual } => bad(format!(
                        "layer {blob} unpacks to {actual}, but the image config says {expected}"
                    )),
                        e => e.into(),
                    })?
                    .size
            };
        Ok(LayerRef {
            diff_id: diff_id.clone(),
            blob: blob.clone(),
            media_type: compression.oci_layer_type().to_string(),
            size,
            blob_size,
        })
    }
}

/// An archive's files, written to scratch space and hashed on the way in.
struct Staged {
    dir: PathBuf,
    files: HashMap<String, Digest>,
    by_digest: HashMap<Digest, PathBuf>,
    links: HashMap<String, String>,
    meta: HashMap<String, Vec<u8>>,
}

impl Staged {
    fn lookup(&self, name: &str) -> Result<&Digest> {
        let mut name = clean(Path::new(name))?;
        for _ in 0..16 {
            if let Some(f) = self.files.get(&name) {
                return Ok(f);
            }
            match self.links.get(&name) {
                Some(t) => name = t.clone(),
                None => break,
            }
        }
        Err(bad(format!("{name} is listed but not in the archive")))
    }

    /// The file holding blob `d`: staged here, or already in the store.
    fn blob_file(&self, engine: &Engine, d: &Digest) -> Result<(PathBuf, u64)> {
        let path = match self.by_digest.get(d) {
            Some(p) => p.clone(),
            None if engine.store.has_blob(d) => engine.store.blob_path(d),
            None => {
                return Err(bad(format!(
                    "blob {d} is referenced but not in the archive"
                )))
            }
        };
        let size = fs::metadata(&path).map_err(Error::io("stat", &path))?.len();
        Ok((path, size))
    }

    fn read(&self, engine: &Engine, d: &Digest) -> Result<Vec<u8>> {
        let (path, size) = self.blob_file(engine, d)?;
        if size > MAX_METADATA {
            return Err(bad(format!(
                "{d} is {size} bytes, too large for a manifest or config"
            )));
        }
        fs::read(&path).map_err(Error::io("read", &path))
    }

    /// Moves a staged blob into the store (a no-op when the store has it).
    fn adopt(&self, engine: &Engine, d: &Digest) -> Result<()> {
        if engine.store.has_blob(d) {
            return Ok(());
        }
        match self.by_digest.get(d) {
            // The same content may be staged under several names; link, so
            // the staged copy stays readable for later images.
            Some(p) => {
                let tmp = p.with_extension("adopt");
                fs::hard_link(p, &tmp).map_err(Error::io("link", &tmp))?;
                Ok(engine.store.adopt_blob(&tmp, d)?)
            }
            None => Err(bad(format!(
                "blob {d} is referenced but not in the archive"
            ))),
        }
    }
}

/// An archive member's name, relative and free of `.` and `..`.
fn clean(raw: &Path) -> Result<String> {
    let mut parts: Vec<String> = Vec::new();
    for c in raw.components() {
        match c {
            Component::CurDir => {}
            Component::Normal(p) => parts.push(p.to_string_lossy().into_owned()),
            Component::ParentDir if !parts.is_empty() => {
                parts.pop();
            }
            _ => return Err(bad(format!("entry {:?} points outside the archive", raw))),
        }
    }
    Ok(parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::clean;
    use std::path::Path;

    #[test]
    fn cleans_names() {
        assert_eq!(
            clean(Path::new("./blobs/sha256/ab")).unwrap(),
            "blobs/sha256/ab"
        );
        assert_eq!(clean(Path::new("a/../b/layer.tar")).unwrap(), "b/layer.tar");
        assert!(clean(Path::new("../etc/passwd")).is_err());
        assert!(clean(Path::new("/etc/passwd")).is_err());
    }
}
