//! Named volumes: a directory per volume under `<root>/volumes/<name>/_data`
//! (Docker's layout), recorded in the store so names are unique and
//! listing is one query.

use std::collections::BTreeMap;
use std::fs;
use std::path::PathBuf;

use berth_oci::time;
use berth_store::VolumeRow;
use serde::Serialize;
use serde_json::{json, Value};

use crate::{Engine, Error, Result};

#[derive(Debug, Clone, Serialize)]
pub struct Volume {
    pub name: String,
    pub driver: String,
    pub created: i64,
    pub labels: BTreeMap<String, String>,
    pub options: BTreeMap<String, String>,
    pub mountpoint: PathBuf,
    /// Made for one container (`-v /data`); shown like any other volume.
    pub anonymous: bool,
}

/// Docker's rule for volume names.
pub(crate) fn validate_name(name: &str) -> Result<()> {
    let mut chars = name.chars();
    let ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && name.len() >= 2
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidArgument(format!(
            "\"{name}\" includes invalid characters for a local volume name, only \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed. If you intended to pass a host directory, use absolute path"
        )))
    }
}

impl Engine {
    pub fn volume_path(&self, name: &str) -> PathBuf {
        self.root().join("volumes").join(name).join("_data")
    }

    fn to_volume(&self, r: VolumeRow) -> Volume {
        let labels: BTreeMap<String, String> = serde_json::from_str(&r.labels).unwrap_or_default();
        Volume {
            mountpoint: self.volume_path(&r.name),
            anonymous: labels.contains_key("com.docker.volume.anonymous"),
            name: r.name,
            driver: r.driver,
            created: r.created,
            labels,
            options: serde_json::from_str(&r.options).unwrap_or_default(),
        }
    }

    /// Creates a volume if it does not exist (idempotent, as Docker's).
    pub fn create_volume(
        &self,
        name: Option<&str>,
        labels: BTreeMap<String, String>,
        driver: Option<&str>,
    ) -> Result<Volume> {
        if let Some(d) = driver {
            if d != "local" {
                return Err(Error::NotFound(format!(
                    "error looking up volume plugin {d}: plugin \"{d}\" not found"
                )));
            }
        }
        let name = match name {
            Some(n) => {
                validate_name(n)?;
                n.to_string()
            }
            None => crate::ids::random_hex64(),
        };
        self.put_volume(&name, labels)
    }

    fn put_volume(&self, name: &str, labels: BTreeMap<String, String>) -> Result<Volume> {
        let data = self.volume_path(name);
        fs::create_dir_all(&data).map_err(Error::io("create", &data))?;
        let row = VolumeRow {
            name: name.to_string(),
            driver: "local".into(),
            created: time::now_nanos(),
            labels: serde_json::to_string(&labels).expect("serialises"),
            options: "{}".into(),
        };
        self.store.put_volume(&row)?;
        self.emit_volume("create", name, &[]);
        let r = self
            .store
            .volume(name)?
            .ok_or_else(|| Error::NotFound(format!("get {name}: no such volume")))?;
        Ok(self.to_volume(r))
    }

    pub(crate) fn ensure_volume(&self, name: &str, anonymous: bool) -> Result<()> {
        if self.store.volume(name)?.is_some() {
            return Ok(());
        }
        let mut labels = BTreeMap::new();
        if anonymous {
            labels.insert("com.docker.volume.anonymous".to_string(), String::new());
        }
        self.put_volume(name, labels)?;
        Ok(())
    }

    pub fn volume(&self, name: &str) -> Result<Volume> {
        let r = self
            .store
            .volume(name)?
            .ok_or_else(|| Error::NotFound(format!("get {name}: no such volume")))?;
        Ok(self.to_volume(r))
    }

    /// Containers (ids) whose mounts name the volume.
    pub fn volume_users(&self, name: &str) -> Result<Vec<String>> {
        let mut out = Vec::new();
        for row in self.store.containers()? {
            let spec: crate::containers::model::Spec = match serde_json::from_str(&row.config) {
                Ok(s) => s,
                Err(_) => continue,
            };
            if spec
                .mounts
                .iter()
                .any(|m| m.kind == "volume" && m.name == name)
            {
                out.push(row.id);
            }
        }
        Ok(out)
    }

    /// `volume ls`, with Docker's `dangling` filter.
    pub fn list_volumes(&self, dangling: Option<bool>) -> Result<Vec<Volume>> {
        let mut out = Vec::new();
        for r in self.store.volumes()? {
            if let Some(want) = dangling {
                let unused = self.volume_users(&r.name)?.is_empty();
                if unused != want {
                    continue;
                }
            }
            out.push(self.to_volume(r));
        }
        Ok(out)
    }

    pub fn inspect_volume(&self, v: &Volume) -> Value {
        json!({
            "CreatedAt": time::format_rfc3339(v.created - v.created % 1_000_000_000),
            "Driver": v.driver,
            "Labels": v.labels,
            "Mountpoint": v.mountpoint,
            "Name": v.name,
            "Options": v.options,
            "Scope": "local",
        })
    }

    /// `volume rm`: refuses a volume a container uses unless `force` is
    /// set and the containers are gone already.
    pub fn remove_volume(&self, name: &str, force: bool) -> Result<()> {
        if self.store.volume(name)?.is_none() {
            if force {
                return Ok(());
            }
            return Err(Error::NotFound(format!("get {name}: no such volume")));
        }
        let users = self.volume_users(name)?;
        if !users.is_empty() {
            return Err(Error::Conflict(format!(
                "remove {name}: volume is in use - [{}]",
                users.join(", ")
            )));
        }
        self.store.delete_volume(name)?;
        let dir = self.root().join("volumes").join(name);
        crate::sys::remove_tree(&dir)?;
        self.emit_volume("destroy", name, &[]);
        Ok(())
    }

    /// `volume prune`: anonymous unused volumes, or all unused with `all`.
    pub fn prune_volumes(&self, all: bool) -> Result<(Vec<String>, u64)> {
        let mut gone = Vec::new();
        let mut bytes = 0;
        for v in self.list_volumes(Some(true))? {
            if !all && !v.anonymous {
                continue;
            }
            bytes += crate::sys::dir_size(&v.mountpoint);
            self.remove_volume(&v.name, false)?;
            gone.push(v.name);
        }
        Ok((gone, bytes))
    }
}
