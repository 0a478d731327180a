//! What is recorded about a container: Docker's `Config` and
//! `HostConfig`, the create-time `Spec`, the live `State`, and where its
//! files live. A leaf: plain data and pure methods, no engine calls, so
//! every other module can use it without forming a circle.

use std::collections::BTreeMap;
use std::path::PathBuf;

use berth_oci::time;
use serde::{Deserialize, Serialize};

use super::health;
use crate::net_model::{EndpointConfig, PortBinding};

fn is_false(b: &bool) -> bool {
    !*b
}

/// Docker's `Config` of a container, as inspect shows it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Config {
    pub hostname: String,
    pub domainname: String,
    pub user: String,
    pub attach_stdin: bool,
    pub attach_stdout: bool,
    pub attach_stderr: bool,
    pub tty: bool,
    pub open_stdin: bool,
    pub stdin_once: bool,
    pub env: Vec<String>,
    pub cmd: Option<Vec<String>>,
    pub image: String,
    pub working_dir: String,
    pub entrypoint: Option<Vec<String>>,
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_timeout: Option<i64>,
    /// The image's HEALTHCHECK merged with `--health-*`; `None` or a test
    /// of `["NONE"]` means no checks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<berth_oci::HealthConfig>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct RestartPolicy {
    pub name: String,
    pub maximum_retry_count: i64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct Ulimit {
    pub name: String,
    pub soft: u64,
    pub hard: u64,
}

/// Docker's `HostConfig`, the part of it Berth acts on.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct HostConfig {
    pub binds: Vec<String>,
    pub network_mode: String,
    pub restart_policy: RestartPolicy,
    pub auto_remove: bool,
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    pub privileged: bool,
    pub readonly_rootfs: bool,
    pub security_opt: Vec<String>,
    pub tmpfs: BTreeMap<String, String>,
    pub shm_size: u64,
    pub runtime: String,
    pub memory: i64,
    pub memory_swap: i64,
    /// `--memory-reservation`: the soft limit, 0 for none.
    #[serde(default)]
    pub memory_reservation: i64,
    pub nano_cpus: i64,
    pub cpu_shares: i64,
    /// `--cpuset-cpus`: the CPUs it may use (`0-1,3`), empty for all.
    #[serde(default)]
    pub cpuset_cpus: String,
    pub pids_limit: Option<i64>,
    pub ulimits: Vec<Ulimit>,
    pub init: bool,
    /// `-p`: container port ("80/tcp") to the host sides asked for.
    #[serde(default)]
    pub port_bindings: BTreeMap<String, Vec<PortBinding>>,
    #[serde(default)]
    pub publish_all_ports: bool,
    #[serde(default)]
    pub dns: Vec<String>,
    #[serde(default)]
    pub dns_search: Vec<String>,
    #[serde(default)]
    pub dns_options: Vec<String>,
    /// `--add-host name:ip` as given.
    #[serde(default)]
    pub extra_hosts: Vec<String>,
}

/// One mount of a container, as inspect's `Mounts` lists it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct MountPoint {
    #[serde(rename = "Type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    pub source: String,
    pub destination: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub driver: String,
    pub mode: String,
    #[serde(rename = "RW")]
    pub rw: bool,
    pub propagation: String,
    /// tmpfs options (size, mode), as mount(8) takes them.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub tmpfs_options: String,
    /// A volume made for this container alone (`-v /data`, or an image
    /// VOLUME); `rm -v` and `run --rm` remove it.
    #[serde(default, skip_serializing_if = "is_false")]
    pub anonymous: bool,
}

/// Everything decided at create time.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Spec {
    pub path: String,
    pub args: Vec<String>,
    pub config: Config,
    pub host: HostConfig,
    pub mounts: Vec<MountPoint>,
    /// The image's own config (for its layers' order and history).
    pub image_id: String,
    /// Networks it joins at start, by name: the one it was created on and
    /// those `network connect` added.
    #[serde(default)]
    pub networks: BTreeMap<String, EndpointConfig>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    #[default]
    Created,
    Running,
    Paused,
    Restarting,
    Removing,
    Exited,
    Dead,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Restarting => "restarting",
            Status::Removing => "removing",
            Status::Exited => "exited",
            Status::Dead => "dead",
        }
    }

    /// A monitor is (or should be) looking after it.
    pub fn is_live(self) -> bool {
        matches!(self, Status::Running | Status::Paused | Status::Restarting)
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct State {
    #[serde(default)]
    pub status: Status,
    #[serde(default)]
    pub pid: i32,
    #[serde(default)]
    pub exit_code: i32,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub error: String,
    /// Nanoseconds since the epoch; 0 = never.
    #[serde(default)]
    pub started_at: i64,
    #[serde(default)]
    pub finished_at: i64,
    #[serde(default, skip_serializing_if = "is_false")]
    pub oom_killed: bool,
    #[serde(default)]
    pub restart_count: i64,
    #[serde(default)]
    pub monitor_pid: i32,
    /// Published ports as bound (random host ports resolved).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub ports: BTreeMap<String, Vec<PortBinding>>,
    /// The health check's state, for containers that have one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<health::Health>,
}

/// Whether a container with this network mode gets a network namespace
/// of its own (made and plugged in by the engine).
pub(crate) fn own_netns(mode: &str) -> bool {
    !matches!(mode, "host" | "none") && !mode.starts_with("container:")
}

/// A container as the engine sees it.
#[derive(Debug, Clone)]
pub struct Container {
    pub id: String,
    pub name: String,
    pub image_id: String,
    pub created: i64,
    pub spec: Spec,
    pub state: State,
}

impl Container {
    /// Docker's health filter value: the check's status while it runs,
    /// `none` for a container without one.
    pub fn health_status(&self) -> &str {
        // A stopped container keeps its last health, as inspect shows.
        self.state
            .health
            .as_ref()
            .map_or("none", |h| h.status.as_str())
    }

    pub fn short_id(&self) -> &str {
        &self.id[..12]
    }

    /// The command column: path and args joined, as Docker shows it.
    pub fn command(&self) -> String {
        let mut parts = vec![self.spec.path.clone()];
        parts.extend(self.spec.args.iter().cloned());
        parts.join(" ")
    }

    /// Docker's STATUS column: `Up 2 seconds`, `Exited (0) 3 minutes ago`.
    pub fn status_text(&self) -> String {
        let s = &self.state;
        match s.status {
            Status::Created => "Created".into(),
            Status::Running | Status::Paused => {
                let up = format!("Up {}", since(s.started_at));
                if s.status == Status::Paused {
                    format!("{up} (Paused)")
                } else if let Some(h) = &s.health {
                    format!("{up} {}", h.status_suffix())
                } else {
                    up
                }
            }
            Status::Restarting => {
                format!("Restarting ({}) {} ago", s.exit_code, since(s.finished_at))
            }
            Status::Removing => "Removal In Progress".into(),
            Status::Exited => format!("Exited ({}) {} ago", s.exit_code, since(s.finished_at)),
            Status::Dead => "Dead".into(),
        }
    }
}

fn since(nanos: i64) -> String {
    let d = (time::now_nanos() - nanos).max(0) as u64;
    time::human_duration(std::time::Duration::from_nanos(d))
}

/// Where a container's files live.
pub(crate) struct Paths {
    /// `<root>/containers/<id>`: upper and work dirs, logs, /etc files.
    pub dir: PathBuf,
    /// `<runroot>/containers/<id>`: bundle, rootfs mount point, sockets.
    pub run: PathBuf,
}

impl Paths {
    pub fn rootfs(&self) -> PathBuf {
        self.run.join("rootfs")
    }
    pub fn log(&self) -> PathBuf {
        self.dir.join("container.log")
    }
    pub fn lock(&self) -> PathBuf {
        self.run.join("monitor.lock")
    }
}
