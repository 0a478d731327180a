//! Image operations on the local store: resolve, list, inspect, tag,
//! remove, history, prune.

use std::collections::{BTreeMap, HashSet};

use berth_oci::{reference::glob_match, time, Digest, ImageConfig, Reference};
use berth_store::{ImageRecord, LockMode};
use serde::Serialize;
use serde_json::{json, Value};

use crate::{Engine, Error, Result};

/// One image as `images` lists it.
#[derive(Debug, Clone, Serialize)]
pub struct ImageSummary {
    pub id: Digest,
    /// Familiar references, e.g. `busybox:latest`.
    pub repo_tags: Vec<String>,
    pub repo_digests: Vec<String>,
    /// Unix nanoseconds, from the config (0 when it has none).
    pub created: i64,
    pub size: u64,
    pub dangling: bool,
    /// Untagged, but a parent of other images (a build step).
    pub intermediate: bool,
    pub labels: BTreeMap<String, String>,
}

/// `images -f` filters, parsed.
#[derive(Debug, Default, Clone)]
pub struct ImageFilter {
    pub dangling: Option<bool>,
    pub references: Vec<String>,
    pub labels: Vec<(String, Option<String>)>,
    pub before: Option<String>,
    pub since: Option<String>,
}

impl ImageFilter {
    /// Parses `key=value` filters as `docker images -f` takes them.
    pub fn parse(filters: &[String]) -> Result<ImageFilter> {
        let mut f = ImageFilter::default();
        for raw in filters {
            let Some((key, value)) = raw.split_once('=') else {
                return Err(Error::InvalidArgument(format!(
                    "bad format of filter (expected name=value): {raw}"
                )));
            };
            match key {
                "dangling" => {
                    f.dangling = Some(match value.to_ascii_lowercase().as_str() {
                        "true" | "1" => true,
                        "false" | "0" => false,
                        _ => {
                            return Err(Error::InvalidArgument(format!(
                                "invalid filter 'dangling={value}'"
                            )))
                        }
                    })
                }
                "reference" => f.references.push(value.to_string()),
                "label" => f.labels.push(match value.split_once('=') {
                    Some((k, v)) => (k.to_string(), Some(v.to_string())),
                    None => (value.to_string(), None),
                }),
                "before" => f.before = Some(value.to_string()),
                "since" => f.since = Some(value.to_string()),
                _ => return Err(Error::InvalidArgument(format!("invalid filter '{key}'"))),
            }
        }
        Ok(f)
    }
}

/// One line of `history`, newest first.
#[derive(Debug, Clone, Serialize)]
pub struct HistoryRow {
    /// The image id for the top row, None (`<missing>`) below it.
    pub id: Option<Digest>,
    pub created: Option<i64>,
    pub created_by: String,
    pub size: u64,
    pub comment: String,
}

#[derive(Debug, Clone, PartialEq)]
pub enum RemovedItem {
    Untagged(String),
    Deleted(Digest),
}

pub(crate) fn familiar(full: &str) -> String {
    Reference::parse(full)
        .map(|r| r.familiar())
        .unwrap_or_else(|_| full.to_string())
}

fn is_hex(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

impl Engine {
    /// Finds an image the way Docker does: a full or short id (with or
    /// without `sha256:`), a `name:tag`, or a `name@digest`.
    pub fn resolve_image(&self, name: &str) -> Result<ImageRecord> {
        let id = self.resolve_image_id(name)?;
        self.store
            .image(&id)?
            .ok_or_else(|| Error::NoSuchImage(name.to_string()))
    }

    fn resolve_image_id(&self, name: &str) -> Result<Digest> {
        if let Some(hex) = name.strip_prefix("sha256:") {
            if is_hex(hex) {
                return self.id_by_prefix(name, hex);
            }
            return Err(Error::NoSuchImage(name.to_string()));
        }
        if name.len() == 64 && is_hex(name) {
            return self.id_by_prefix(name, name);
        }
        match Reference::parse(name) {
            Ok(r) => {
                let found = if r.digest().is_some() {
                    let by_digest = format!("{}@{}", r.name(), r.digest().expect("checked"));
                    match self.store.repo_digest_target(&by_digest)? {
                        Some(id) => Some(id),
                        // name@digest also finds an image whose stored
                        // manifest has that digest under a tag of that name.
                        None => self.by_manifest_digest(&r)?,
                    }
                } else {
                    self.store.tag_target(&r.to_string())?
                };
                if let Some(id) = found {
                    return Ok(id);
                }
            }
            Err(e) if !is_hex(name) => return Err(e.into()),
            Err(_) => {}
        }
        if is_hex(name) {
            return self.id_by_prefix(name, name);
        }
        Err(Error::NoSuchImage(name.to_string()))
    }

    fn by_manifest_digest(&self, r: &Reference) -> Result<Option<Digest>> {
        let digest = r.digest().expect("caller checked");
        for img in self.store.images()? {
            if img.manifest_digest == *digest
                && img.tags.iter().any(|t| {
                    Reference::parse(t)
                        .map(|t| t.name() == r.name())
                        .unwrap_or(false)
                })
            {
                return Ok(Some(img.id));
            }
        }
        Ok(None)
    }

    fn id_by_prefix(&self, name: &str, hex: &str) -> Result<Digest> {
        let ids = self.store.ids_with_prefix(hex)?;
        match ids.len() {
            0 => Err(Error::NoSuchImage(name.to_string())),
            1 => Ok(ids.into_iter().next().expect("one id")),
            _ => Err(Error::InvalidArgument(format!(
                "multiple IDs found with provided prefix: {name}"
            ))),
        }
    }

    pub fn image_config(&self, img: &ImageRecord) -> Result<ImageConfig> {
        let bytes = self.store.read_blob(&img.id)?;
        Ok(ImageConfig::from_slice(&bytes)?)
    }

    /// Images as `images` lists them, filtered; intermediate images only with `all`.
    pub fn list_images(&self, all: bool, filter: &ImageFilter) -> Result<Vec<ImageSummary>> {
        let records = self.store.images()?;
        let parents: HashSet<Digest> = records.iter().filter_map(|r| r.parent.clone()).collect();
        let created_of = |name: &str| -> Result<i64> {
            let img = self.resolve_image(name)?;
            Ok(img.created.unwrap_or(0))
        };
        let before = filter.before.as_deref().map(created_of).transpose()?;
        let since = filter.since.as_deref().map(created_of).transpose()?;
        let mut out = Vec::new();
        for rec in records {
            let untagged = rec.tags.is_empty();
            let intermediate = untagged && parents.contains(&rec.id);
            let dangling = untagged && !intermediate;
            if intermediate && !all && filter.dangling.is_none() {
                continue;
            }
            if let Some(d) = filter.dangling {
                if d != dangling {
                    continue;
                }
            }
            let created = rec.created.unwrap_or(0);
            if before.is_some_and(|b| created >= b) || since.is_some_and(|s| created <= s) {
                continue;
            }
            let repo_tags: Vec<String> = rec.tags.iter().map(|t| familiar(t)).collect();
            if !filter.references.is_empty() {
                let hit = repo_tags.iter().any(|t| {
                    let name = t.rsplit_once(':').map(|(n, _)| n).unwrap_or(t);
                    filter
                        .references
                        .iter()
                        .any(|p| glob_match(p, t) || glob_match(p, name))
                });
                if !hit {
                    continue;
                }
            }
            let labels = if filter.labels.is_empty() {
                BTreeMap::new()
            } else {
                self.image_config(&rec)?
                    .config
                    .and_then(|c| c.labels)
                    .unwrap_or_default()
            };
            let label_ok = filter.labels.iter().all(|(k, v)| match (labels.get(k), v) {
                (Some(have), Some(want)) => have == want,
                (Some(_), None) => true,
                (None, _) => false,
            });
            if !label_ok {
                continue;
            }
            out.push(ImageSummary {
                id: rec.id,
                repo_tags,
                repo_digests: rec.repo_digests.iter().map(|t| familiar(t)).collect(),
                created,
                size: rec.size,
                dangling,
                intermediate,
                labels,
            });
        }
        out.sort_by(|a, b| b.created.cmp(&a.created).then(a.id.cmp(&b.id)));
        Ok(out)
    }

    /// `image inspect` in Docker's JSON shape.
    pub fn inspect_image(&self, name: &str) -> Result<Value> {
        let img = self.resolve_image(name)?;
        let cfg = self.image_config(&img)?;
        let cc = cfg.config.clone().unwrap_or_default();
        let mut config = json!({
            "Hostname": "",
            "Domainname": "",
            "User": cc.user.clone().unwrap_or_default(),
            "AttachStdin": false,
            "AttachStdout": false,
            "AttachStderr": false,
        });
        let c = config.as_object_mut().expect("object");
        if let Some(p) = &cc.exposed_ports {
            c.insert("ExposedPorts".into(), json!(p));
        }
        c.insert("Tty".into(), json!(false));
        c.insert("OpenStdin".into(), json!(false));
        c.insert("StdinOnce".into(), json!(false));
        c.insert("Env".into(), json!(cc.env));
        c.insert("Cmd".into(), json!(cc.cmd));
        if let Some(h) = &cc.healthcheck {
            c.insert("Healthcheck".into(), json!(h));
        }
        if let Some(e) = cc.args_escaped {
            c.insert("ArgsEscaped".into(), json!(e));
        }
        c.insert("Image".into(), json!(""));
        c.insert("Volumes".into(), json!(cc.volumes));
        c.insert(
            "WorkingDir".into(),
            json!(cc.working_dir.clone().unwrap_or_default()),
        );
        c.insert("Entrypoint".into(), json!(cc.entrypoint));
        c.insert("OnBuild".into(), json!(cc.on_build));
        c.insert("Labels".into(), json!(cc.labels));
        if let Some(s) = &cc.stop_signal {
            c.insert("StopSignal".into(), json!(s));
        }
        if let Some(s) = &cc.shell {
            c.insert("Shell".into(), json!(s));
        }
        let comment = cfg
            .extra
            .get("comment")
            .and_then(Value::as_str)
            .map(str::to_string)
            .or_else(|| cfg.history.last().and_then(|h| h.comment.clone()))
            .unwrap_or_default();
        let layers = self.store.image_layers(&img.id)?;
        let mut v = json!({
            "Id": img.id.to_string(),
            "RepoTags": img.tags.iter().map(|t| familiar(t)).collect::<Vec<_>>(),
            "RepoDigests": img.repo_digests.iter().map(|t| familiar(t)).collect::<Vec<_>>(),
            "Parent": img.parent.as_ref().map(|p| p.to_string()).unwrap_or_default(),
            "Comment": comment,
            "Created": cfg.created.clone().unwrap_or_else(|| time::format_rfc3339(0)),
            "DockerVersion": cfg.extra.get("docker_version").cloned().unwrap_or(json!("")),
            "Author": cfg.author.clone().unwrap_or_default(),
            "Config": config,
            "Architecture": cfg.architecture,
            "Os": cfg.os,
            "Size": img.size,
            "GraphDriver": {
                "Data": {
                    "LowerDir": layers.iter().rev().map(|l| self.store.layer_dir(&l.diff_id).display().to_string()).collect::<Vec<_>>().join(":"),
                },
                "Name": "overlay",
            },
            "RootFS": {
                "Type": "layers",
                "Layers": cfg.rootfs.diff_ids.iter().map(|d| d.to_string()).collect::<Vec<_>>(),
            },
            "Metadata": {
                "LastTagTime": time::format_rfc3339(img.added),
            },
            "Descriptor": {
                "mediaType": img.manifest_media_type,
                "digest": img.manifest_digest.to_string(),
                "size": std::fs::metadata(self.store.blob_path(&img.manifest_digest)).map(|m| m.len()).unwrap_or(0),
            },
        });
        if let Some(variant) = &cfg.variant {
            v.as_object_mut()
                .expect("object")
                .insert("Variant".into(), json!(variant));
        }
        Ok(v)
    }

    /// `tag SOURCE TARGET`.
    pub fn tag_image(&self, source: &str, target: &str) -> Result<()> {
        let img = self.resolve_image(source)?;
        let r = Reference::parse(target)?;
        if r.digest().is_some() {
            return Err(Error::InvalidArgument(
                "refusing to create a tag with a digest reference".into(),
            ));
        }
        self.store.tag(&r.to_string(), &img.id)?;
        self.emit_image("tag", &img.id.to_string(), &familiar(&r.to_string()));
        Ok(())
    }

    /// `rmi`: untags, and deletes an image once nothing names it, unless a
    /// container or a child image still needs it.
    pub fn remove_images(&self, names: &[String], force: bool) -> Result<Vec<RemovedItem>> {
        let mut out = Vec::new();
        let mut first_err = None;
        for name in names {
            match self.remove_image(name, force) {
                Ok(mut items) => out.append(&mut items),
                Err(e) => {
                    if first_err.is_none() {
                        first_err = Some(e);
                    }
                }
            }
        }
        self.store.collect_garbage()?;
        for item in &out {
            match item {
                RemovedItem::Untagged(r) => self.emit_image("untag", r, r),
                RemovedItem::Deleted(id) => {
                    self.emit_image("delete", &id.to_string(), &id.to_string())
                }
            }
        }
        match first_err {
            // Docker removes what it can and reports the first failure too.
            Some(e) if out.is_empty() || names.len() == 1 => Err(e),
            Some(e) => Err(Error::Conflict(format!("{e} (other images were removed)"))),
            None => Ok(out),
        }
    }

    fn remove_image(&self, name: &str, force: bool) -> Result<Vec<RemovedItem>> {
        let img = self.resolve_image(name)?;
        let short = img.id.short().to_string();
        // Given by reference (not by id): that reference is what goes.
        let by_ref = Reference::parse(name).ok().filter(|r| {
            let key = r.to_string();
            img.tags.contains(&key) || img.repo_digests.contains(&key)
        });
        let containers = self.store.containers_using(&img.id)?;
        let mut out = Vec::new();
        if let Some(r) = &by_ref {
            let key = r.to_string();
            let others = img.tags.len() + img.repo_digests.len() > 1;
            if others || (!containers.is_empty() && force) {
                self.untag_one(&key, &img.id, &mut out)?;
                return Ok(out);
            }
            if !containers.is_empty() {
                return Err(Error::Conflict(format!(
                    "conflict: unable to remove repository reference \"{}\" (must force) - container {} is using its referenced image {short}",
                    name,
                    &containers[0][..12.min(containers[0].len())]
                )));
            }
        } else {
            if !containers.is_empty() {
                return Err(Error::Conflict(format!(
                    "conflict: unable to delete {short} (must be forced) - image is being used by container {}",
                    &containers[0][..12.min(containers[0].len())]
                )));
            }
            if img.tags.len() > 1 && !force {
                return Err(Error::Conflict(format!(
                    "conflict: unable to delete {short} (must be forced) - image is referenced in multiple repositories"
                )));
            }
        }
        if !self.store.children(&img.id)?.is_empty() {
            return Err(Error::Conflict(format!(
                "conflict: unable to delete {short} (cannot be forced) - image has dependent child images"
            )));
        }
        for t in img.tags.iter().chain(&img.repo_digests) {
            out.push(RemovedItem::Untagged(familiar(t)));
        }
        self.store.delete_image(&img.id)?;
        out.push(RemovedItem::Deleted(img.id));
        // Untagged parents nothing else needs go too (a build's step
        // images), as Docker's rmi prunes them.
        let mut parent = img.parent;
        while let Some(pid) = parent {
            let Some(p) = self.store.image(&pid)? else {
                break;
            };
            if !p.tags.is_empty()
                || !p.repo_digests.is_empty()
                || !self.store.children(&p.id)?.is_empty()
                || !self.store.containers_using(&p.id)?.is_empty()
            {
                break;
            }
            self.store.delete_image(&p.id)?;
            out.push(RemovedItem::Deleted(p.id));
            parent = p.parent;
        }
        Ok(out)
    }

    fn untag_one(&self, key: &str, id: &Digest, out: &mut Vec<RemovedItem>) -> Result<()> {
        if key.contains('@') {
            self.store.remove_repo_digest(key, id)?;
        } else {
            self.store.untag(key)?;
        }
        out.push(RemovedItem::Untagged(familiar(key)));
        Ok(())
    }

    /// `history`: the config's history, newest first, each entry with the
    /// size of the layer it made.
    pub fn image_history(&self, name: &str) -> Result<Vec<HistoryRow>> {
        let img = self.resolve_image(name)?;
        let cfg = self.image_config(&img)?;
        let layers = self.store.image_layers(&img.id)?;
        let mut sizes = layers.iter().map(|l| l.size);
        let mut rows: Vec<HistoryRow> = Vec::new();
        if cfg.history.is_empty() {
            // Images without history get one row per layer, as Docker shows them.
            for l in &layers {
                rows.push(HistoryRow {
                    id: None,
                    created: img.created,
                    created_by: String::new(),
                    size: l.size,
                    comment: String::new(),
                });
            }
        }
        for h in &cfg.history {
            let size = if h.empty_layer {
                0
            } else {
                sizes.next().unwrap_or(0)
            };
            rows.push(HistoryRow {
                id: None,
                created: h.created.as_deref().and_then(time::parse_rfc3339),
                created_by: h.created_by.clone().unwrap_or_default(),
                size,
                comment: h.comment.clone().unwrap_or_default(),
            });
        }
        rows.reverse();
        // Each image Berth made on a local parent (a build step, a commit)
        // added one history entry: walk the parents to name each row.
        let mut cur = Some(img);
        for row in rows.iter_mut() {
            let Some(c) = cur else { break };
            row.id = Some(c.id.clone());
            cur = match &c.parent {
                Some(p) => self.store.image(p)?,
                None => None,
            };
        }
        Ok(rows)
    }

    /// `image prune`: dangling images, or with `all` every image no
    /// container uses. Returns what went and the bytes reclaimed.
    pub fn prune_images(&self, all: bool) -> Result<(Vec<RemovedItem>, u64)> {
        let mut out = Vec::new();
        // Removing an image can make its parent dangling; repeat until stable.
        loop {
            let records = self.store.images()?;
            let parents: HashSet<Digest> =
                records.iter().filter_map(|r| r.parent.clone()).collect();
            let mut removed_any = false;
            for rec in records {
                if parents.contains(&rec.id) || !self.store.containers_using(&rec.id)?.is_empty() {
                    continue;
                }
                if !all && !rec.tags.is_empty() {
                    continue;
                }
                for t in rec.tags.iter().chain(&rec.repo_digests) {
                    out.push(RemovedItem::Untagged(familiar(t)));
                }
                self.store.delete_image(&rec.id)?;
                out.push(RemovedItem::Deleted(rec.id));
                removed_any = true;
            }
            if !removed_any {
                break;
            }
        }
        let report = self.store.collect_garbage()?;
        Ok((out, report.bytes))
    }

    /// Holds the store lock shared while content is added, so a concurrent
    /// garbage collection cannot take it before it is recorded.
    pub(crate) fn adding(&self) -> Result<berth_store::LockGuard> {
        Ok(self.store.lock(LockMode::Shared)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{EngineOptions, ImportOptions};

    fn tiny_layer() -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(2);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, "hi", &b"hi"[..]).unwrap();
        b.into_inner().unwrap()
    }

    /// Containers arrive with the next issue; their rows already pin images.
    #[test]
    fn rmi_respects_containers() {
        let t = tempfile::tempdir().unwrap();
        let e = Engine::open(EngineOptions {
            root: t.path().join("root"),
            runroot: t.path().join("run"),
        })
        .unwrap();
        let opts = ImportOptions {
            reference: Some("a".into()),
            source: "-".into(),
            ..Default::default()
        };
        let id = e.import(&tiny_layer()[..], &opts).unwrap();
        e.store
            .db()
            .execute(
                "INSERT INTO containers (id, name, image_id, created, config) VALUES (?1, 'c', ?2, 0, '{}')",
                ["0123456789abcdef", &id.to_string()],
            )
            .unwrap();
        let err = e
            .remove_images(&["a".into()], false)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("container 0123456789ab is using its referenced image"),
            "{err}"
        );
        let err = e
            .remove_images(&[id.to_string()], true)
            .unwrap_err()
            .to_string();
        assert!(err.contains("image is being used by container"), "{err}");
        // -f by name takes the name away but keeps what the container runs on.
        let out = e.remove_images(&["a".into()], true).unwrap();
        assert_eq!(out, vec![RemovedItem::Untagged("a:latest".into())]);
        assert!(e.store.image(&id).unwrap().is_some());
        assert!(e.store.has_layer(&Digest::sha256_of(&tiny_layer())));
        // Nor does prune -a take it.
        let (gone, _) = e.prune_images(true).unwrap();
        assert!(gone.is_empty(), "{gone:?}");
    }
}
