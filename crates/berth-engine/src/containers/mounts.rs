//! Mounts of a new container: `-v`, `--mount` and `--tmpfs` parsed with
//! Docker's rules, and the image's VOLUMEs no mount covers.

use std::collections::BTreeMap;
use std::path::Path;

use berth_oci::ContainerConfig;

use super::create::CreateOptions;
use super::limits::parse_bytes;
use super::model::MountPoint;
use crate::{Engine, Error, Result};

/// The mounts, and the `-v` and `--tmpfs` values HostConfig keeps.
pub(super) struct MountPlan {
    pub mounts: Vec<MountPoint>,
    pub binds: Vec<String>,
    pub tmpfs: BTreeMap<String, String>,
}

fn invalid(msg: impl Into<String>) -> Error {
    Error::InvalidArgument(msg.into())
}

impl Engine {
    /// Mounts: -v, --mount, --tmpfs; then the image's VOLUMEs that no
    /// mount covers become anonymous volumes.
    pub(super) fn plan_mounts(
        &self,
        opts: &CreateOptions,
        ic: &ContainerConfig,
    ) -> Result<MountPlan> {
        let mut mounts: Vec<MountPoint> = Vec::new();
        let mut binds = Vec::new();
        for v in &opts.volumes {
            let m = self.parse_volume_flag(v)?;
            if m.kind == "bind" || !m.anonymous {
                binds.push(v.clone());
            }
            mounts.push(m);
        }
        for v in &opts.mounts {
            mounts.push(self.parse_mount_flag(v)?);
        }
        let mut tmpfs = BTreeMap::new();
        for t in &opts.tmpfs {
            let (dst, o) = t.split_once(':').unwrap_or((t, ""));
            let dst = clean_dest(dst, "tmpfs")?;
            tmpfs.insert(dst.clone(), o.to_string());
            mounts.push(MountPoint {
                kind: "tmpfs".into(),
                name: String::new(),
                source: String::new(),
                destination: dst,
                driver: String::new(),
                mode: String::new(),
                rw: !o.split(',').any(|x| x == "ro"),
                propagation: String::new(),
                tmpfs_options: o.to_string(),
                anonymous: false,
            });
        }
        for (dst, _) in ic.volumes.clone().unwrap_or_default() {
            let dst = berth_layer_clean(&dst);
            if mounts.iter().any(|m| m.destination == dst) {
                continue;
            }
            mounts.push(MountPoint {
                kind: "volume".into(),
                name: random_volume_name(),
                source: String::new(),
                destination: dst,
                driver: "local".into(),
                mode: String::new(),
                rw: true,
                propagation: String::new(),
                tmpfs_options: String::new(),
                anonymous: true,
            });
        }
        {
            let mut seen = std::collections::HashSet::new();
            for m in &mounts {
                if !seen.insert(m.destination.clone()) {
                    return Err(invalid(format!("Duplicate mount point: {}", m.destination)));
                }
            }
        }
        Ok(MountPlan {
            mounts,
            binds,
            tmpfs,
        })
    }

    fn parse_volume_flag(&self, spec: &str) -> Result<MountPoint> {
        let parts: Vec<&str> = spec.split(':').collect();
        let (src, dst, mode) = match parts.as_slice() {
            [d] => ("", *d, ""),
            [s, d] => (*s, *d, ""),
            [s, d, m] => (*s, *d, *m),
            _ => return Err(invalid(format!("invalid volume specification: '{spec}'"))),
        };
        let dst = clean_dest(dst, &format!("volume specification: '{spec}'"))
            .map_err(|_| invalid(format!("invalid volume specification: '{spec}'")))?;
        let mut rw = true;
        let mut propagation = "rprivate".to_string();
        for m in mode.split(',').filter(|m| !m.is_empty()) {
            match m {
                "ro" => rw = false,
                "rw" => rw = true,
                "z" | "Z" | "nocopy" | "consistent" | "cached" | "delegated" => {}
                "shared" | "rshared" | "slave" | "rslave" | "private" | "rprivate" => {
                    propagation = m.to_string()
                }
                _ => {
                    return Err(invalid(format!(
                        "invalid mode: {m} in volume specification: '{spec}'"
                    )))
                }
            }
        }
        if src.starts_with('/') {
            let src = berth_layer_clean(src);
            // -v creates a missing host directory, as Docker does.
            if !Path::new(&src).exists() {
                std::fs::create_dir_all(&src).map_err(Error::io("create", &src))?;
            }
            return Ok(MountPoint {
                kind: "bind".into(),
                name: String::new(),
                source: src,
                destination: dst,
                driver: String::new(),
                mode: mode.to_string(),
                rw,
                propagation,
                tmpfs_options: String::new(),
                anonymous: false,
            });
        }
        let (name, anonymous) = if src.is_empty() {
            (random_volume_name(), true)
        } else {
            super::super::volumes::validate_name(src)?;
            (src.to_string(), false)
        };
        Ok(MountPoint {
            kind: "volume".into(),
            source: String::new(),
            name,
            destination: dst,
            driver: "local".into(),
            mode: mode.to_string(),
            rw,
            propagation: String::new(),
            tmpfs_options: String::new(),
            anonymous,
        })
    }

    fn parse_mount_flag(&self, spec: &str) -> Result<MountPoint> {
        let mut kind = "volume".to_string();
        let mut src = String::new();
        let mut dst = String::new();
        let mut rw = true;
        let mut size = None;
        let mut mode = None;
        for field in spec.split(',') {
            let (k, v) = match field.split_once('=') {
                Some((k, v)) => (k.trim(), v.trim()),
                None => (field.trim(), ""),
            };
            match k {
                "type" => kind = v.to_string(),
                "source" | "src" => src = v.to_string(),
                "target" | "destination" | "dst" => dst = v.to_string(),
                "readonly" | "ro" => rw = !matches!(v, "" | "true" | "1"),
                "tmpfs-size" => size = Some(parse_bytes(v)?),
                "tmpfs-mode" => mode = Some(v.to_string()),
                "volume-nocopy" | "bind-propagation" | "consistency" | "volume-driver" => {}
                _ => return Err(invalid(format!("unexpected key '{k}' in '{field}'"))),
            }
        }
        if dst.is_empty() {
            return Err(invalid(
                "invalid mount config: field Target must not be empty",
            ));
        }
        let dst = clean_dest(&dst, "mount config")?;
        let mut m = MountPoint {
            kind: kind.clone(),
            name: String::new(),
            source: String::new(),
            destination: dst,
            driver: String::new(),
            mode: String::new(),
            rw,
            propagation: String::new(),
            tmpfs_options: String::new(),
            anonymous: false,
        };
        match kind.as_str() {
            "bind" => {
                if src.is_empty() {
                    return Err(invalid(
                        "invalid mount config for type \"bind\": field Source must not be empty",
                    ));
                }
                if !Path::new(&src).exists() {
                    return Err(invalid(format!(
                        "invalid mount config for type \"bind\": bind source path does not exist: {src}"
                    )));
                }
                m.source = berth_layer_clean(&src);
                m.propagation = "rprivate".into();
            }
            "volume" => {
                if src.is_empty() {
                    m.name = random_volume_name();
                    m.anonymous = true;
                } else {
                    super::super::volumes::validate_name(&src)?;
                    m.name = src;
                }
                m.driver = "local".into();
            }
            "tmpfs" => {
                if !src.is_empty() {
                    return Err(invalid(
                        "invalid mount config for type \"tmpfs\": field Source must not be specified",
                    ));
                }
                let mut opts = vec![];
                if let Some(s) = size {
                    opts.push(format!("size={s}"));
                }
                if let Some(md) = mode {
                    opts.push(format!("mode={md}"));
                }
                m.tmpfs_options = opts.join(",");
            }
            other => {
                return Err(invalid(format!(
                    "invalid mount config: mount type unknown: \"{other}\""
                )))
            }
        }
        Ok(m)
    }
}

fn random_volume_name() -> String {
    crate::ids::random_hex64()
}

fn clean_dest(d: &str, what: &str) -> Result<String> {
    if !d.starts_with('/') {
        return Err(invalid(format!(
            "invalid {what}: mount path must be absolute: {d}"
        )));
    }
    let cleaned = berth_layer_clean(d);
    if cleaned == "/" {
        return Err(invalid(format!("invalid {what}: destination can't be '/'")));
    }
    Ok(cleaned)
}

/// Lexically cleans an absolute path (no `.`/`..`, no double slashes).
fn berth_layer_clean(p: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for part in p.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            x => out.push(x),
        }
    }
    format!("/{}", out.join("/"))
}
