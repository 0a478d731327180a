//! `info`, `system df`, version facts.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::path::Path;

use serde::Serialize;

use crate::{Engine, Result};

pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The Docker Engine API version Berth answers as.
pub const API_VERSION: &str = "1.43";

/// What `info` reports. Field names are Docker's, so `--format '{{.Driver}}'`
/// and `{{json .}}` read the same as against Docker.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Info {
    #[serde(rename = "ID")]
    pub id: String,
    pub containers: u64,
    pub containers_running: u64,
    pub containers_paused: u64,
    pub containers_stopped: u64,
    pub images: u64,
    pub driver: String,
    pub driver_status: Vec<[String; 2]>,
    pub cgroup_driver: String,
    pub cgroup_version: String,
    pub kernel_version: String,
    pub operating_system: String,
    #[serde(rename = "OSType")]
    pub os_type: String,
    pub architecture: String,
    #[serde(rename = "NCPU")]
    pub ncpu: u64,
    pub mem_total: u64,
    pub docker_root_dir: String,
    pub berth_run_dir: String,
    pub name: String,
    pub server_version: String,
    pub default_runtime: String,
}

/// `system df`: what images (and later containers, volumes) occupy.
#[derive(Debug, Clone, Serialize)]
pub struct DiskUsage {
    pub images_total: u64,
    pub images_active: u64,
    /// Bytes of distinct layers, each counted once however many images share it.
    pub images_size: u64,
    pub images_reclaimable: u64,
    pub containers_total: u64,
    pub containers_active: u64,
    pub volumes_total: u64,
    pub volumes_active: u64,
    pub volumes_size: u64,
    pub volumes_reclaimable: u64,
    /// Cached build steps, and the bytes only they hold (layers no tagged
    /// image uses, plus RUN cache mounts).
    pub build_cache_total: u64,
    pub build_cache_size: u64,
}

/// "1" or "2": v2 when /sys/fs/cgroup is itself a cgroup2 mount, as runc decides.
pub fn cgroup_version() -> &'static str {
    match nix::sys::statfs::statfs("/sys/fs/cgroup") {
        Ok(s) if s.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC => "2",
        _ => "1",
    }
}

fn os_release() -> String {
    let text = fs::read_to_string("/etc/os-release").unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .map(|v| v.trim_matches('"').to_string())
        .unwrap_or_else(|| "Linux".into())
}

pub(crate) fn mem_total() -> u64 {
    let text = fs::read_to_string("/proc/meminfo").unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

fn backing_fs(path: &Path) -> String {
    use nix::sys::statfs::*;
    match statfs(path).map(|s| s.filesystem_type()) {
        Ok(t) if t == EXT4_SUPER_MAGIC => "extfs".into(),
        Ok(t) if t == XFS_SUPER_MAGIC => "xfs".into(),
        Ok(t) if t == BTRFS_SUPER_MAGIC => "btrfs".into(),
        Ok(t) if t == TMPFS_MAGIC => "tmpfs".into(),
        Ok(t) if t == OVERLAYFS_SUPER_MAGIC => "overlayfs".into(),
        Ok(t) => format!("0x{:x}", t.0),
        Err(_) => "unknown".into(),
    }
}

impl Engine {
    pub fn info(&self) -> Result<Info> {
        let uts = nix::sys::utsname::uname().ok();
        let field = |f: fn(&nix::sys::utsname::UtsName) -> &std::ffi::OsStr| {
            uts.as_ref()
                .map(|u| f(u).to_string_lossy().into_owned())
                .unwrap_or_default()
        };
        let images = self.store.images()?.len() as u64;
        let all = self.list_containers(true, &crate::PsFilter::default())?;
        let count =
            |f: fn(crate::Status) -> bool| all.iter().filter(|c| f(c.state.status)).count() as u64;
        Ok(Info {
            id: String::new(),
            containers: all.len() as u64,
            containers_running: count(|s| {
                matches!(s, crate::Status::Running | crate::Status::Restarting)
            }),
            containers_paused: count(|s| s == crate::Status::Paused),
            containers_stopped: count(|s| !s.is_live()),
            images,
            driver: "overlay".into(),
            driver_status: vec![
                ["Backing Filesystem".into(), backing_fs(self.root())],
                ["Supports d_type".into(), "true".into()],
            ],
            cgroup_driver: "cgroupfs".into(),
            cgroup_version: cgroup_version().into(),
            kernel_version: field(|u| u.release()),
            operating_system: os_release(),
            os_type: "linux".into(),
            architecture: field(|u| u.machine()),
            ncpu: std::thread::available_parallelism()
                .map(|n| n.get() as u64)
                .unwrap_or(1),
            mem_total: mem_total(),
            docker_root_dir: self.root().display().to_string(),
            berth_run_dir: self.runroot().display().to_string(),
            name: field(|u| u.nodename()),
            server_version: VERSION.into(),
            default_runtime: self.default_runtime(),
        })
    }

    pub fn disk_usage(&self) -> Result<DiskUsage> {
        let images = self.store.images()?;
        let mut layer_sizes: HashMap<String, u64> = HashMap::new();
        let mut active_layers: HashMap<String, u64> = HashMap::new();
        let mut active = 0;
        for img in &images {
            let in_use = !self.store.containers_using(&img.id)?.is_empty();
            if in_use {
                active += 1;
            }
            for l in self.store.image_layers(&img.id)? {
                layer_sizes.insert(l.diff_id.to_string(), l.size);
                if in_use {
                    active_layers.insert(l.diff_id.to_string(), l.size);
                }
            }
        }
        let total: u64 = layer_sizes.values().sum();
        let used: u64 = active_layers.values().sum();

        let mut tagged_layers: HashSet<String> = HashSet::new();
        for img in images.iter().filter(|i| !i.tags.is_empty()) {
            for l in self.store.image_layers(&img.id)? {
                tagged_layers.insert(l.diff_id.to_string());
            }
        }
        let cached = self.store.cache_images()?;
        let mut cache_layers: HashMap<String, u64> = HashMap::new();
        for id in &cached {
            for l in self.store.image_layers(id)? {
                if !tagged_layers.contains(&l.diff_id.to_string()) {
                    cache_layers.insert(l.diff_id.to_string(), l.size);
                }
            }
        }
        let cache_mounts = crate::sys::dir_size(&self.root().join("build-cache-mounts"));

        let volumes = self.list_volumes(None)?;
        let (mut vol_active, mut vol_size, mut vol_free) = (0, 0, 0);
        for v in &volumes {
            let size = crate::sys::dir_size(&v.mountpoint);
            vol_size += size;
            if self.volume_users(&v.name)?.is_empty() {
                vol_free += size;
            } else {
                vol_active += 1;
            }
        }
        Ok(DiskUsage {
            volumes_total: volumes.len() as u64,
            volumes_active: vol_active,
            volumes_size: vol_size,
            volumes_reclaimable: vol_free,
            build_cache_total: cached.len() as u64,
            build_cache_size: cache_layers.values().sum::<u64>() + cache_mounts,
            images_total: images.len() as u64,
            images_active: active,
            images_size: total,
            images_reclaimable: total - used,
            containers_total: self.store.containers()?.len() as u64,
            containers_active: self
                .list_containers(false, &crate::PsFilter::default())?
                .len() as u64,
        })
    }
}
