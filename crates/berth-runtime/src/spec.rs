//! config.json for a container, with Docker's defaults: the capability
//! set, the /proc and /sys masks, the /dev nodes a container may use and a
//! seccomp profile. Written as plain JSON so the same bundle runs under
//! the embedded runtime and under runc or crun.

use std::path::PathBuf;

use serde_json::{json, Value};

use crate::{Error, Result};

/// Docker's default capability set.
pub const DEFAULT_CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// Every capability the kernel defines, in number order.
pub const ALL_CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

const MASKED_PATHS: &[&str] = &[
    "/proc/asound",
    "/proc/acpi",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

const READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// Normalises a user's capability name (`net_admin`, `CAP_NET_ADMIN`,
/// `ALL`) to the kernel's spelling.
pub fn cap_name(name: &str) -> Result<String> {
    let up = name.trim().to_ascii_uppercase();
    if up == "ALL" {
        return Ok(up);
    }
    let full = if up.starts_with("CAP_") {
        up
    } else {
        format!("CAP_{up}")
    };
    if ALL_CAPS.contains(&full.as_str()) {
        Ok(full)
    } else {
        Err(Error::Invalid(format!("unknown capability: \"{name}\"")))
    }
}

/// Capabilities in our own bounding set: a container cannot get more
/// (root on some hosts lacks CAP_SYS_RESOURCE, say).
fn host_caps() -> Vec<String> {
    let bnd = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapBnd:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .unwrap_or(u64::MAX);
    ALL_CAPS
        .iter()
        .enumerate()
        .filter(|(i, _)| bnd & (1u64 << i) != 0)
        .map(|(_, c)| c.to_string())
        .collect()
}

/// The capability set for `--cap-add`/`--cap-drop`/`--privileged`, in
/// Docker's order of application: drops first, then adds win. "All"
/// means all this host grants us.
pub fn capabilities(add: &[String], drop: &[String], privileged: bool) -> Result<Vec<String>> {
    if privileged {
        return Ok(host_caps());
    }
    let add: Vec<String> = add.iter().map(|c| cap_name(c)).collect::<Result<_>>()?;
    let drop: Vec<String> = drop.iter().map(|c| cap_name(c)).collect::<Result<_>>()?;
    let mut caps: Vec<String> = if drop.iter().any(|c| c == "ALL") {
        Vec::new()
    } else {
        DEFAULT_CAPS
            .iter()
            .filter(|c| !drop.iter().any(|d| d == *c))
            .map(|c| c.to_string())
            .collect()
    };
    let host = host_caps();
    if add.iter().any(|c| c == "ALL") {
        return Ok(host);
    }
    caps.retain(|c| host.contains(c));
    for c in add {
        if !host.contains(&c) {
            return Err(Error::Invalid(format!(
                "capability {c} is not available on this host (it is not in Berth's own bounding set)"
            )));
        }
        if !caps.contains(&c) {
            caps.push(c);
        }
    }
    Ok(caps)
}

#[derive(Debug, Clone, PartialEq)]
pub struct Mount {
    pub destination: String,
    pub source: String,
    pub kind: String,
    pub options: Vec<String>,
}

impl Mount {
    pub fn bind(source: impl Into<String>, destination: impl Into<String>, ro: bool) -> Mount {
        let mut options = vec!["rbind".to_string(), "rprivate".to_string()];
        if ro {
            options.push("ro".to_string());
        }
        Mount {
            destination: destination.into(),
            source: source.into(),
            kind: "bind".into(),
            options,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Resources {
    pub memory: Option<i64>,
    /// Memory plus swap; -1 for unlimited swap.
    pub memory_swap: Option<i64>,
    /// Soft limit (`--memory-reservation`).
    pub memory_reservation: Option<i64>,
    pub cpu_shares: Option<u64>,
    pub cpu_quota: Option<i64>,
    pub cpu_period: Option<u64>,
    pub pids_limit: Option<i64>,
    /// CPUs the container may run on (`--cpuset-cpus`, e.g. `0-1,3`).
    pub cpuset_cpus: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Rlimit {
    /// Kernel name, e.g. RLIMIT_NOFILE.
    pub kind: String,
    pub soft: u64,
    pub hard: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Seccomp {
    Default,
    Unconfined,
    /// A profile in Docker's / the OCI format.
    Profile(Value),
}

#[derive(Debug, Clone, PartialEq)]
pub enum NetworkMode {
    /// A private network namespace with only a loopback device.
    None,
    Host,
    /// Join an existing namespace (a path under /proc or /run/netns).
    Path(String),
}

#[derive(Debug, Clone)]
pub struct Process {
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: String,
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    pub terminal: bool,
    pub no_new_privileges: bool,
    pub capabilities: Vec<String>,
    pub rlimits: Vec<Rlimit>,
}

#[derive(Debug, Clone)]
pub struct BundleSpec {
    pub rootfs: PathBuf,
    pub readonly_rootfs: bool,
    pub hostname: String,
    pub process: Process,
    /// Extra mounts (volumes, binds, tmpfs, /etc files), in order.
    pub mounts: Vec<Mount>,
    pub network: NetworkMode,
    pub resources: Resources,
    pub privileged: bool,
    pub seccomp: Seccomp,
    /// e.g. `/berth/<id>`.
    pub cgroups_path: String,
    pub shm_size: u64,
}

fn process_json(p: &Process) -> Value {
    let caps = &p.capabilities;
    let mut v = json!({
        "terminal": p.terminal,
        "user": {"uid": p.uid, "gid": p.gid},
        "args": p.args,
        "env": p.env,
        "cwd": p.cwd,
        "capabilities": {
            "bounding": caps,
            "effective": caps,
            "permitted": caps,
        },
    });
    // Only when set: libcontainer 0.7 tests the key's presence, not its
    // value, and with `false` present it loads seccomp after dropping
    // CAP_SYS_ADMIN, which the kernel refuses.
    if p.no_new_privileges {
        v["noNewPrivileges"] = json!(true);
    }
    if !p.additional_gids.is_empty() {
        v["user"]["additionalGids"] = json!(p.additional_gids);
    }
    if !p.rlimits.is_empty() {
        v["rlimits"] = p
            .rlimits
            .iter()
            .map(|r| json!({"type": r.kind, "soft": r.soft, "hard": r.hard}))
            .collect();
    }
    v
}

fn device_rules(privileged: bool) -> Value {
    if privileged {
        return json!([{"allow": true, "access": "rwm"}]);
    }
    let mut rules = vec![
        json!({"allow": false, "access": "rwm"}),
        json!({"allow": true, "type": "c", "access": "m"}),
        json!({"allow": true, "type": "b", "access": "m"}),
    ];
    // null, zero, full, random, urandom, tty, ptmx, pts/*, net/tun
    for (major, minor) in [
        (1, Some(3)),
        (1, Some(5)),
        (1, Some(7)),
        (1, Some(8)),
        (1, Some(9)),
        (5, Some(0)),
        (5, Some(1)),
        (5, Some(2)),
        (136, None),
        (10, Some(200)),
    ] {
        let mut r = json!({"allow": true, "type": "c", "major": major, "access": "rwm"});
        if let Some(m) = minor {
            r["minor"] = json!(m);
        }
        rules.push(r);
    }
    Value::Array(rules)
}

fn resources_json(r: &Resources, privileged: bool) -> Value {
    let mut v = json!({ "devices": device_rules(privileged) });
    let mut memory = serde_json::Map::new();
    if let Some(m) = r.memory {
        memory.insert("limit".into(), json!(m));
        // Docker's default: swap as large as the memory limit again.
        let swap = r.memory_swap.unwrap_or(m * 2);
        memory.insert("swap".into(), json!(swap));
    } else if let Some(s) = r.memory_swap {
        memory.insert("swap".into(), json!(s));
    }
    if let Some(v) = r.memory_reservation {
        memory.insert("reservation".into(), json!(v));
    }
    if !memory.is_empty() {
        v["memory"] = Value::Object(memory);
    }
    let mut cpu = serde_json::Map::new();
    if let Some(s) = r.cpu_shares {
        cpu.insert("shares".into(), json!(s));
    }
    if let Some(q) = r.cpu_quota {
        cpu.insert("quota".into(), json!(q));
        cpu.insert("period".into(), json!(r.cpu_period.unwrap_or(100_000)));
    }
    if let Some(c) = &r.cpuset_cpus {
        cpu.insert("cpus".into(), json!(c));
    }
    if !cpu.is_empty() {
        v["cpu"] = Value::Object(cpu);
    }
    if let Some(p) = r.pids_limit {
        v["pids"] = json!({"limit": p});
    }
    v
}

/// The whole config.json document.
pub fn build(spec: &BundleSpec) -> Value {
    let mut mounts = vec![
        json!({"destination": "/proc", "type": "proc", "source": "proc",
               "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
               "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
        json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts",
               "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]}),
        json!({"destination": "/sys", "type": "sysfs", "source": "sysfs",
               "options": ["nosuid", "noexec", "nodev", if spec.privileged { "rw" } else { "ro" }]}),
        json!({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
               "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
               "options": ["nosuid", "noexec", "nodev", "mode=1777", format!("size={}", spec.shm_size)]}),
    ];
    for m in &spec.mounts {
        mounts.push(json!({
            "destination": m.destination,
            "type": m.kind,
            "source": m.source,
            "options": m.options,
        }));
    }

    let mut namespaces = vec![
        json!({"type": "pid"}),
        json!({"type": "ipc"}),
        json!({"type": "uts"}),
        json!({"type": "mount"}),
    ];
    match &spec.network {
        NetworkMode::None => namespaces.push(json!({"type": "network"})),
        NetworkMode::Host => {}
        NetworkMode::Path(p) => namespaces.push(json!({"type": "network", "path": p})),
    }

    let mut linux = json!({
        "namespaces": namespaces,
        "cgroupsPath": spec.cgroups_path,
        "resources": resources_json(&spec.resources, spec.privileged),
    });
    if !spec.privileged {
        linux["maskedPaths"] = json!(MASKED_PATHS);
        linux["readonlyPaths"] = json!(READONLY_PATHS);
        match &spec.seccomp {
            Seccomp::Default => {
                linux["seccomp"] = crate::seccomp::default_profile(&spec.process.capabilities)
            }
            Seccomp::Unconfined => {}
            Seccomp::Profile(p) => linux["seccomp"] = p.clone(),
        }
    }

    let mut hostname = spec.hostname.clone();
    if spec.network == NetworkMode::Host && hostname.is_empty() {
        hostname = nix::unistd::gethostname()
            .ok()
            .and_then(|h| h.into_string().ok())
            .unwrap_or_default();
    }

    json!({
        "ociVersion": "1.0.2",
        "process": process_json(&spec.process),
        "root": {"path": spec.rootfs, "readonly": spec.readonly_rootfs},
        "hostname": hostname,
        "mounts": mounts,
        "linux": linux,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_follow_docker_rules() {
        let c = capabilities(&[], &[], false).unwrap();
        assert_eq!(c.len(), DEFAULT_CAPS.len());
        let c = capabilities(&["net_admin".into()], &["CHOWN".into()], false).unwrap();
        assert!(c.contains(&"CAP_NET_ADMIN".to_string()));
        assert!(!c.contains(&"CAP_CHOWN".to_string()));
        let c = capabilities(&["KILL".into()], &["ALL".into()], false).unwrap();
        assert_eq!(c, vec!["CAP_KILL".to_string()]);
        assert_eq!(capabilities(&[], &[], true).unwrap(), host_caps());
        let e = capabilities(&["FLY".into()], &[], false).unwrap_err();
        assert_eq!(e.to_string(), "unknown capability: \"FLY\"");
    }

    #[test]
    fn memory_limit_doubles_for_swap_by_default() {
        let r = Resources {
            memory: Some(64 << 20),
            ..Default::default()
        };
        let v = resources_json(&r, false);
        assert_eq!(v["memory"]["limit"], json!(64 << 20));
        assert_eq!(v["memory"]["swap"], json!(128 << 20));
    }

    #[test]
    fn reservation_and_cpuset_reach_the_config() {
        let r = Resources {
            memory_reservation: Some(32 << 20),
            cpuset_cpus: Some("0".into()),
            ..Default::default()
        };
        let v = resources_json(&r, false);
        assert_eq!(v["memory"]["reservation"], json!(32 << 20));
        assert_eq!(v["cpu"]["cpus"], json!("0"));
    }
}
