//! `manifest create|add|annotate|inspect|push|rm`: multi-platform lists as
//! Docker's CLI makes them, from images already in a registry. A list
//! being made lives in `<root>/manifests/` until it is pushed.

use std::fs;
use std::path::PathBuf;

use berth_oci::{media, Digest, Platform, Reference};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::registry::tag_or_digest;
use crate::{Engine, Error, Result};

/// One image of a list being made.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Entry {
    /// Where it lives (`registry/repo@digest`).
    reference: String,
    /// The name it was added by (`registry/repo:tag`), which annotate uses.
    #[serde(default)]
    source: String,
    media_type: String,
    digest: String,
    size: u64,
    platform: Platform,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct List {
    reference: String,
    entries: Vec<Entry>,
}

/// `manifest annotate` flags.
#[derive(Debug, Clone, Default)]
pub struct Annotation {
    pub os: Option<String>,
    pub arch: Option<String>,
    pub variant: Option<String>,
    pub os_version: Option<String>,
    pub os_features: Vec<String>,
}

impl Engine {
    fn list_path(&self, r: &Reference) -> PathBuf {
        let name: String = r
            .to_string()
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        self.root().join("manifests").join(format!("{name}.json"))
    }

    fn load_list(&self, r: &Reference) -> Result<Option<List>> {
        match fs::read(self.list_path(r)) {
            Ok(b) => Ok(Some(serde_json::from_slice(&b).map_err(|e| {
                Error::Internal(format!("manifest list {r}: damaged: {e}"))
            })?)),
            Err(_) => Ok(None),
        }
    }

    fn save_list(&self, l: &List, r: &Reference) -> Result<()> {
        let p = self.list_path(r);
        let dir = p.parent().expect("under the root");
        fs::create_dir_all(dir).map_err(Error::io("create", dir))?;
        let tmp = p.with_extension("tmp");
        fs::write(&tmp, serde_json::to_vec_pretty(l).expect("serialises"))
            .map_err(Error::io("write", &tmp))?;
        fs::rename(&tmp, &p).map_err(Error::io("write", &p))
    }

    /// The manifest of a remote image and the platform its config says.
    fn remote_entry(&self, name: &str, insecure: bool) -> Result<Entry> {
        let r = Reference::parse(name)?;
        let client = self.client_for(r.domain(), insecure, None)?;
        let (bytes, media_type, digest) =
            self.fetch_manifest(&client, r.path(), &tag_or_digest(&r))?;
        if media::is_index(&media_type) {
            return Err(Error::InvalidArgument(format!("{name} is a manifest list")));
        }
        let m = berth_oci::Manifest::from_slice(&bytes)?;
        let mut sink = crate::registry::MemSink(Vec::new());
        client
            .blob(r.path(), &m.config.digest.to_string(), 0, &mut sink)
            .map_err(|e| crate::registry::reg_err(&format!("config of {name}"), e))?;
        let cfg: Value = serde_json::from_slice(&sink.0)
            .map_err(|e| Error::InvalidArgument(format!("config of {name}: {e}")))?;
        let s = |k: &str| cfg.get(k).and_then(|v| v.as_str()).map(str::to_string);
        Ok(Entry {
            reference: format!("{}@{digest}", r.name()),
            source: r.to_string(),
            media_type,
            digest: digest.to_string(),
            size: bytes.len() as u64,
            platform: Platform {
                architecture: s("architecture").unwrap_or_else(|| "amd64".into()),
                os: s("os").unwrap_or_else(|| "linux".into()),
                variant: s("variant"),
                os_version: s("os.version"),
                os_features: None,
            },
        })
    }

    /// `manifest create [--amend] LIST IMAGE...` (and `manifest add`).
    pub fn manifest_create(
        &self,
        list: &str,
        images: &[String],
        amend: bool,
        insecure: bool,
    ) -> Result<String> {
        let r = Reference::parse(list)?;
        let mut l = match self.load_list(&r)? {
            Some(_) if !amend => {
                return Err(Error::Conflict(format!(
                    "refusing to amend an existing manifest list with no --amend flag: {r}"
                )))
            }
            Some(l) => l,
            None => List {
                reference: r.to_string(),
                entries: Vec::new(),
            },
        };
        for img in images {
            let e = self.remote_entry(img, insecure)?;
            l.entries.retain(|x| x.digest != e.digest);
            l.entries.push(e);
        }
        self.save_list(&l, &r)?;
        Ok(r.to_string())
    }

    /// `manifest annotate LIST IMAGE`.
    pub fn manifest_annotate(&self, list: &str, image: &str, a: &Annotation) -> Result<()> {
        let r = Reference::parse(list)?;
        let mut l = self
            .load_list(&r)?
            .ok_or_else(|| Error::NotFound(format!("No such manifest: {r}")))?;
        let target = Reference::parse(image)?;
        let e = l
            .entries
            .iter_mut()
            .find(|e| {
                e.source == target.to_string()
                    || target.digest().is_some_and(|d| d.to_string() == e.digest)
            })
            .ok_or_else(|| {
                Error::NotFound(format!("manifest for image {image} does not exist in {r}"))
            })?;
        if let Some(v) = &a.os {
            e.platform.os = v.clone();
        }
        if let Some(v) = &a.arch {
            e.platform.architecture = v.clone();
        }
        if let Some(v) = &a.variant {
            e.platform.variant = Some(v.clone());
        }
        if let Some(v) = &a.os_version {
            e.platform.os_version = Some(v.clone());
        }
        if !a.os_features.is_empty() {
            e.platform.os_features = Some(a.os_features.clone());
        }
        self.save_list(&l, &r)
    }

    fn index_of(l: &List) -> Value {
        let manifests: Vec<Value> = l
            .entries
            .iter()
            .map(|e| {
                json!({
                    "mediaType": e.media_type,
                    "size": e.size,
                    "digest": e.digest,
                    "platform": e.platform,
                })
            })
            .collect();
        // Docker's list type when every entry is a Docker manifest.
        let docker = l
            .entries
            .iter()
            .all(|e| e.media_type == media::DOCKER_MANIFEST);
        json!({
            "schemaVersion": 2,
            "mediaType": if docker { media::DOCKER_MANIFEST_LIST } else { media::OCI_INDEX },
            "manifests": manifests,
        })
    }

    /// `manifest inspect`: a list being made, else the remote document.
    pub fn manifest_inspect(&self, name: &str, insecure: bool) -> Result<Value> {
        let r = Reference::parse(name)?;
        if let Some(l) = self.load_list(&r)? {
            return Ok(Self::index_of(&l));
        }
        let client = self.client_for(r.domain(), insecure, None)?;
        let (bytes, _, _) = self.fetch_manifest(&client, r.path(), &tag_or_digest(&r))?;
        serde_json::from_slice(&bytes)
            .map_err(|e| Error::InvalidArgument(format!("manifest of {name}: {e}")))
    }

    /// `manifest push [--purge] LIST`: the images' manifests (and their
    /// blobs, mounted) into the list's repository, then the list.
    pub fn manifest_push(&self, list: &str, purge: bool, insecure: bool) -> Result<Digest> {
        let r = Reference::parse(list)?;
        let l = self
            .load_list(&r)?
            .ok_or_else(|| Error::NotFound(format!("No such manifest: {r}")))?;
        let client = self.client_for(r.domain(), insecure, None)?;
        let repo = r.path();
        for e in &l.entries {
            let src = Reference::parse(&e.reference)?;
            if src.domain() != r.domain() {
                return Err(Error::InvalidArgument(format!(
                    "cannot use source images from a different registry than the target image: {} != {}",
                    src.domain(),
                    r.domain()
                )));
            }
            if src.path() == repo {
                continue;
            }
            let (bytes, media_type, _) = self.fetch_manifest(&client, src.path(), &e.digest)?;
            let m = berth_oci::Manifest::from_slice(&bytes)?;
            for d in m.layers.iter().map(|x| &x.digest).chain([&m.config.digest]) {
                let d = d.to_string();
                let have = client
                    .blob_exists(repo, &d)
                    .map_err(|x| crate::registry::reg_err("manifest push", x))?;
                if !have {
                    client.mount_blob(repo, src.path(), &d).map_err(|x| {
                        crate::registry::reg_err(&format!("manifest push: mount {d}"), x)
                    })?;
                }
            }
            client
                .push_manifest(repo, &e.digest, bytes, &media_type)
                .map_err(|x| crate::registry::reg_err("manifest push", x))?;
        }
        let index = Self::index_of(&l);
        let bytes = serde_json::to_vec(&index).expect("serialises");
        let media_type = index["mediaType"]
            .as_str()
            .unwrap_or(media::OCI_INDEX)
            .to_string();
        client
            .push_manifest(repo, &tag_or_digest(&r), bytes.clone(), &media_type)
            .map_err(|x| crate::registry::reg_err("manifest push", x))?;
        if purge {
            let _ = fs::remove_file(self.list_path(&r));
        }
        Ok(Digest::sha256_of(&bytes))
    }

    /// `manifest rm`.
    pub fn manifest_rm(&self, list: &str) -> Result<()> {
        let r = Reference::parse(list)?;
        fs::remove_file(self.list_path(&r))
            .map_err(|_| Error::NotFound(format!("No such manifest: {r}")))
    }
}
