//! Containers: what is recorded about each one, how a name or id prefix
//! finds it, and the operations that only touch records (list, inspect,
//! rename, remove, prune). Running them is in `lifecycle` and `monitor`.

mod attach;
mod bundle;
mod create;
pub mod exec;
mod files;
pub(crate) mod health;
pub(crate) mod lifecycle;
mod limits;
mod logs;
pub(crate) mod model;
pub(crate) mod monitor;
mod mounts;
mod names;
mod prober;
pub(crate) mod proc;
pub(crate) mod rootfs;
mod snapshot;
mod stats;
mod update;

use std::collections::BTreeMap;
use std::fs;

use berth_oci::time;
use berth_store::ContainerRow;
use serde_json::{json, Value};

pub use attach::{AttachOptions, Attached, Event, Frame, TtySize};
pub use create::CreateOptions;
pub use exec::ExecOptions;
pub use files::CopyTarget;
pub use lifecycle::{StopOutcome, WaitCondition};
pub use limits::parse_bytes;
pub use logs::{LogLine, LogOptions};
pub(crate) use model::{own_netns, Paths};
pub use model::{
    Config, Container, HostConfig, MountPoint, RestartPolicy, Spec, State, Status, Ulimit,
};
pub use snapshot::CommitOptions;
pub use stats::StatsSample;
pub use update::UpdateOptions;

pub(crate) use crate::sys::dir_size;
use crate::sys::{cgroup_path, remove_tree};
use crate::{Engine, Error, Result};

impl Container {
    fn from_row(row: ContainerRow) -> Result<Container> {
        let spec = serde_json::from_str(&row.config).map_err(|e| {
            Error::Internal(format!("container {}: bad config record: {e}", row.id))
        })?;
        let state = serde_json::from_str(&row.state)
            .map_err(|e| Error::Internal(format!("container {}: bad state record: {e}", row.id)))?;
        Ok(Container {
            id: row.id,
            name: row.name,
            image_id: row.image_id,
            created: row.created,
            spec,
            state,
        })
    }
}

/// `ps -f` filters.
#[derive(Debug, Default, Clone)]
pub struct PsFilter {
    pub status: Vec<String>,
    pub name: Vec<String>,
    pub id: Vec<String>,
    pub label: Vec<(String, Option<String>)>,
    pub ancestor: Vec<String>,
    pub exited: Vec<i32>,
    pub before: Option<String>,
    pub since: Option<String>,
    /// `starting`, `healthy`, `unhealthy` or `none`.
    pub health: Vec<String>,
}

impl PsFilter {
    pub fn parse(filters: &[String]) -> Result<PsFilter> {
        let mut f = PsFilter::default();
        for raw in filters {
            let Some((key, value)) = raw.split_once('=') else {
                return Err(Error::InvalidArgument(format!(
                    "bad format of filter (expected name=value): {raw}"
                )));
            };
            let value = value.to_string();
            match key {
                "status" => {
                    const KNOWN: &[&str] = &[
                        "created",
                        "restarting",
                        "running",
                        "removing",
                        "paused",
                        "exited",
                        "dead",
                    ];
                    if !KNOWN.contains(&value.as_str()) {
                        return Err(Error::InvalidArgument(format!(
                            "invalid filter 'status={value}'"
                        )));
                    }
                    f.status.push(value)
                }
                "name" => f.name.push(value),
                "id" => f.id.push(value),
                "label" => f.label.push(match value.split_once('=') {
                    Some((k, v)) => (k.to_string(), Some(v.to_string())),
                    None => (value, None),
                }),
                "ancestor" => f.ancestor.push(value),
                "exited" => f.exited.push(value.parse().map_err(|_| {
                    Error::InvalidArgument(format!("invalid filter 'exited={value}'"))
                })?),
                "health" => {
                    if !["starting", "healthy", "unhealthy", "none"].contains(&value.as_str()) {
                        return Err(Error::InvalidArgument(format!(
                            "Unrecognised filter value for health: {value}"
                        )));
                    }
                    f.health.push(value)
                }
                "before" => f.before = Some(value),
                "since" => f.since = Some(value),
                _ => return Err(Error::InvalidArgument(format!("invalid filter '{key}'"))),
            }
        }
        Ok(f)
    }
}

impl Engine {
    pub(crate) fn paths(&self, id: &str) -> Paths {
        Paths {
            dir: self.root().join("containers").join(id),
            run: self.runroot().join("containers").join(id),
        }
    }

    fn load_container(&self, row: ContainerRow) -> Result<Container> {
        let mut c = Container::from_row(row)?;
        self.reconcile(&mut c)?;
        Ok(c)
    }

    /// A container recorded as running whose monitor is gone (killed, or
    /// the machine rebooted and emptied the run dir) is exited, never a
    /// phantom running one. Docker reports such containers as 255.
    fn reconcile(&self, c: &mut Container) -> Result<()> {
        let p = self.paths(&c.id);
        if !c.state.status.is_live() || proc::monitor_alive(&p) {
            return Ok(());
        }
        // The monitor may have recorded the exit between our read and its
        // last breath: hold its lock (no new monitor can start) and read
        // again before calling it dead.
        let _lock = proc::lock_monitor(&p, false).ok().flatten();
        if let Some(row) = self.store.container(&c.id)? {
            let fresh = Container::from_row(row)?;
            if !fresh.state.status.is_live() {
                *c = fresh;
                return Ok(());
            }
        }
        // What the dead monitor left: processes, the cgroup, the mount.
        let cg = berth_runtime::cgroup::Cgroup::new(&cgroup_path(&c.id));
        for pid in cg.pids() {
            // SAFETY: signalling a pid read from the container's cgroup.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        if let Ok(rt) = self.runtime_for(c) {
            let _ = rt.delete(&c.id);
        }
        rootfs::unmount(&p.rootfs());
        self.net_down(c, &p);
        c.state.status = Status::Exited;
        if c.state.finished_at == 0 || c.state.finished_at < c.state.started_at {
            c.state.exit_code = 255;
            c.state.finished_at = time::now_nanos();
        }
        c.state.pid = 0;
        c.state.monitor_pid = 0;
        self.save_state(c)?;
        Ok(())
    }

    pub(crate) fn save_spec(&self, c: &Container) -> Result<()> {
        let s = serde_json::to_string(&c.spec).expect("spec serialises");
        if !self.store.set_container_config(&c.id, &s)? {
            return Err(Error::NoSuchContainer(c.id.clone()));
        }
        Ok(())
    }

    pub(crate) fn save_state(&self, c: &Container) -> Result<bool> {
        let s = serde_json::to_string(&c.state).expect("state serialises");
        Ok(self.store.set_container_state(&c.id, &s)?)
    }

    /// Finds a container by full id, name, or unique id prefix.
    pub fn container(&self, name: &str) -> Result<Container> {
        let name = name.strip_prefix('/').unwrap_or(name);
        if let Some(row) = self.store.container(name)? {
            return self.load_container(row);
        }
        if let Some(row) = self.store.container_by_name(name)? {
            return self.load_container(row);
        }
        let is_hex = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if is_hex {
            let ids = self.store.container_ids_with_prefix(name)?;
            match ids.len() {
                0 => {}
                1 => {
                    let row = self
                        .store
                        .container(&ids[0])?
                        .ok_or_else(|| Error::NoSuchContainer(name.to_string()))?;
                    return self.load_container(row);
                }
                _ => {
                    return Err(Error::InvalidArgument(format!(
                        "multiple containers found with provided prefix: {name}"
                    )))
                }
            }
        }
        Err(Error::NoSuchContainer(name.to_string()))
    }

    /// Containers for `ps`, newest first.
    pub fn list_containers(&self, all: bool, filter: &PsFilter) -> Result<Vec<Container>> {
        let rows = self.store.containers()?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            out.push(self.load_container(row)?);
        }
        let created_of = |name: &str| -> Result<i64> { Ok(self.container(name)?.created) };
        let before = filter.before.as_deref().map(created_of).transpose()?;
        let since = filter.since.as_deref().map(created_of).transpose()?;
        let ancestors: Vec<String> = filter
            .ancestor
            .iter()
            .filter_map(|a| self.resolve_image(a).ok().map(|i| i.id.to_string()))
            .collect();
        // Status filters name what they want; without one, -a decides.
        let all = all || !filter.status.is_empty() || !filter.exited.is_empty();
        out.retain(|c| {
            let st = c.state.status;
            (all || st.is_live())
                && (filter.status.is_empty() || filter.status.iter().any(|s| s == st.as_str()))
                && (filter.name.is_empty()
                    || filter.name.iter().any(|n| c.name.contains(n.as_str())))
                && (filter.id.is_empty() || filter.id.iter().any(|i| c.id.starts_with(i.as_str())))
                && filter.label.iter().all(|(k, v)| {
                    c.spec
                        .config
                        .labels
                        .get(k)
                        .is_some_and(|have| v.as_ref().is_none_or(|v| v == have))
                })
                && (filter.ancestor.is_empty() || ancestors.contains(&c.image_id))
                && (filter.exited.is_empty()
                    || (st == Status::Exited && filter.exited.contains(&c.state.exit_code)))
                && (filter.health.is_empty()
                    || filter.health.iter().any(|h| *h == c.health_status()))
                && before.is_none_or(|b| c.created < b)
                && since.is_none_or(|s| c.created > s)
        });
        Ok(out)
    }

    /// Bytes written to a container's upper layer (`ps -s`).
    pub fn container_size(&self, c: &Container) -> u64 {
        dir_size(&self.paths(&c.id).dir.join("upper"))
    }

    /// Docker's inspect document.
    pub fn inspect_container(&self, c: &Container) -> Result<Value> {
        let p = self.paths(&c.id);
        let s = &c.state;
        let t = |n: i64| {
            if n == 0 {
                "0001-01-01T00:00:00Z".to_string()
            } else {
                time::format_rfc3339(n)
            }
        };
        let layers = self.image_layer_dirs(&c.image_id)?;
        let lower: Vec<String> = layers.iter().map(|l| l.display().to_string()).collect();
        let mut host = serde_json::to_value(&c.spec.host).expect("serialises");
        host["Tmpfs"] = json!(c.spec.host.tmpfs);
        let mounts = inspect_mounts(c);
        let network = self.network_settings(c, &p);
        let mut doc = json!({
            "Id": c.id,
            "Created": time::format_rfc3339(c.created),
            "Path": c.spec.path,
            "Args": c.spec.args,
            "State": {
                "Status": s.status.as_str(),
                "Running": matches!(s.status, Status::Running | Status::Paused),
                "Paused": s.status == Status::Paused,
                "Restarting": s.status == Status::Restarting,
                "OOMKilled": s.oom_killed,
                "Dead": s.status == Status::Dead,
                "Pid": s.pid,
                "ExitCode": s.exit_code,
                "Error": s.error,
                "StartedAt": t(s.started_at),
                "FinishedAt": t(s.finished_at),
            },
            "Image": c.image_id,
            "ResolvConfPath": p.dir.join("resolv.conf"),
            "HostnamePath": p.dir.join("hostname"),
            "HostsPath": p.dir.join("hosts"),
            "LogPath": p.log(),
            "Name": format!("/{}", c.name),
            "RestartCount": s.restart_count,
            "Driver": "overlay2",
            "Platform": "linux",
            "MountLabel": "",
            "ProcessLabel": "",
            "AppArmorProfile": "",
            "HostConfig": host,
            "GraphDriver": {
                "Name": "overlay2",
                "Data": {
                    "LowerDir": lower.join(":"),
                    "MergedDir": p.rootfs(),
                    "UpperDir": p.dir.join("upper"),
                    "WorkDir": p.dir.join("work"),
                }
            },
            "Mounts": mounts,
            "Config": c.spec.config,
            "NetworkSettings": network,
        });
        // Docker leaves Health out for containers without a check.
        if let Some(h) = &s.health {
            doc["State"]["Health"] = json!(h);
        }
        Ok(doc)
    }

    /// inspect's `NetworkSettings`: published ports, and an endpoint per
    /// network it is on (or asked to be on).
    fn network_settings(&self, c: &Container, p: &Paths) -> Value {
        let s = &c.state;
        let eps = if s.status.is_live() {
            self.endpoints(c)
        } else {
            Vec::new()
        };
        let ports: BTreeMap<String, Value> = {
            let mut m: BTreeMap<String, Value> = BTreeMap::new();
            for k in c.spec.host.port_bindings.keys() {
                m.insert(k.clone(), Value::Null);
            }
            for (k, v) in &s.ports {
                m.insert(k.clone(), json!(v));
            }
            m
        };
        let endpoint_json = |cfg: Option<&crate::net_model::EndpointConfig>,
                             e: &crate::net_model::Endpoint| {
            json!({
                "IPAMConfig": cfg.filter(|c| !c.ipv4_address.is_empty()).map(|c| json!({"IPv4Address": c.ipv4_address})),
                "Links": null,
                "Aliases": cfg.filter(|c| !c.aliases.is_empty()).map(|c| c.aliases.clone()),
                "NetworkID": e.network_id,
                "EndpointID": e.endpoint_id,
                "Gateway": e.gateway,
                "IPAddress": e.ip_address,
                "IPPrefixLen": e.ip_prefix_len,
                "IPv6Gateway": "",
                "GlobalIPv6Address": "",
                "GlobalIPv6PrefixLen": 0,
                "MacAddress": e.mac_address,
                "DriverOpts": null,
            })
        };
        let mut networks = serde_json::Map::new();
        let mode = c.spec.host.network_mode.as_str();
        if mode == "host" || mode == "none" {
            let id = self.network(mode).map(|n| n.id).unwrap_or_default();
            let e = crate::net_model::Endpoint {
                network_id: id,
                ..Default::default()
            };
            networks.insert(mode.to_string(), endpoint_json(None, &e));
        }
        for (name, cfg) in &c.spec.networks {
            let e = eps
                .iter()
                .find(|e| e.network == *name)
                .cloned()
                .unwrap_or_else(|| crate::net_model::Endpoint {
                    network_id: self.network(name).map(|n| n.id).unwrap_or_default(),
                    ..Default::default()
                });
            networks.insert(name.clone(), endpoint_json(Some(cfg), &e));
        }
        for e in eps
            .iter()
            .filter(|e| !c.spec.networks.contains_key(&e.network))
        {
            networks.insert(e.network.clone(), endpoint_json(None, e));
        }
        // Docker fills the top-level fields from the default bridge only.
        let top = eps
            .iter()
            .find(|e| e.network == crate::networks::DEFAULT)
            .cloned()
            .unwrap_or_default();
        let netns = crate::network::netns_path(p);
        json!({
            "Bridge": "",
            "SandboxID": "",
            "Ports": ports,
            "SandboxKey": if mode == "host" { String::new() } else if s.status.is_live() && netns.exists() { netns.display().to_string() } else if s.pid > 0 { format!("/proc/{}/ns/net", s.pid) } else { String::new() },
            "Gateway": top.gateway,
            "IPAddress": top.ip_address,
            "IPPrefixLen": top.ip_prefix_len,
            "MacAddress": top.mac_address,
            "Networks": networks,
        })
    }

    pub fn rename_container(&self, name: &str, new_name: &str) -> Result<()> {
        let c = self.container(name)?;
        let new_name = new_name.strip_prefix('/').unwrap_or(new_name);
        names::validate(new_name)?;
        if c.name == new_name {
            return Err(Error::InvalidArgument(
                "Renaming a container with the same name as its current name".into(),
            ));
        }
        self.store
            .rename_container(&c.id, new_name)
            .map_err(|e| match e.kind() {
                berth_store::ErrorKind::Conflict => Error::Conflict(format!(
                    "Conflict. The container name \"/{new_name}\" is already in use. You have to remove (or rename) that container to be able to reuse that name."
                )),
                _ => e.into(),
            })?;
        let mut renamed = c.clone();
        renamed.name = new_name.to_string();
        self.emit_container(&renamed, "rename", &[("oldName", format!("/{}", c.name))]);
        // Its peers find it by the new name from now on.
        if c.state.status.is_live() {
            self.republish_names(&renamed);
        }
        Ok(())
    }

    /// `rm`: refuses a running container unless `force`, which kills it
    /// first. `volumes` also removes its anonymous volumes.
    pub fn remove_container(&self, name: &str, force: bool, volumes: bool) -> Result<String> {
        let c = self.container(name)?;
        // A monitor still starting it: recorded as created, but running
        // (or about to) all the same.
        let starting = !c.state.status.is_live() && proc::monitor_alive(&self.paths(&c.id));
        if c.state.status.is_live() || starting {
            if !force {
                let what = if c.state.status == Status::Paused {
                    "paused"
                } else {
                    "running"
                };
                return Err(Error::Conflict(format!(
                    "cannot remove container \"/{}\": container is {what}: stop the container before removing or force remove",
                    c.name
                )));
            }
            self.kill_and_wait(&c)?;
        }
        self.destroy(&c, volumes)?;
        Ok(c.id)
    }

    /// Removes every trace of a stopped container.
    pub(crate) fn destroy(&self, c: &Container, volumes: bool) -> Result<()> {
        let p = self.paths(&c.id);
        // A monitor that is still winding down holds the lock; wait for it
        // so we never pull the rootfs from under its cleanup.
        let _lock = proc::lock_monitor(&p, true)?;
        self.destroy_inner(c, volumes)
    }

    pub(crate) fn destroy_inner(&self, c: &Container, volumes: bool) -> Result<()> {
        let p = self.paths(&c.id);
        rootfs::unmount(&p.rootfs());
        self.net_down(&mut c.clone(), &p);
        if let Ok(rt) = self.runtime_for(c) {
            let _ = rt.delete(&c.id);
        }
        // The runtime removes the cgroup, unless its state went missing.
        berth_runtime::cgroup::Cgroup::new(&cgroup_path(&c.id)).remove();
        // Files first, the record last: once `ps` no longer lists it,
        // nothing of it is left; a removal cut short is finished by the
        // next `rm`.
        let _ = fs::remove_dir_all(&p.run);
        remove_tree(&p.dir)?;
        if self.store.delete_container(&c.id)? {
            self.emit_container(c, "destroy", &[]);
        }
        if volumes {
            for m in c.spec.mounts.iter().filter(|m| m.anonymous) {
                let _ = self.remove_volume(&m.name, true);
            }
        }
        Ok(())
    }

    /// `container prune`: removes every stopped container.
    pub fn prune_containers(&self) -> Result<(Vec<String>, u64)> {
        let mut gone = Vec::new();
        let mut bytes = 0;
        for c in self.list_containers(true, &PsFilter::default())? {
            if matches!(
                c.state.status,
                Status::Exited | Status::Created | Status::Dead
            ) {
                bytes += self.container_size(&c);
                self.destroy(&c, false)?;
                gone.push(c.id);
            }
        }
        Ok((gone, bytes))
    }
}

/// inspect's `Mounts`: as recorded, without Berth's own fields.
fn inspect_mounts(c: &Container) -> Vec<Value> {
    c.spec
        .mounts
        .iter()
        .map(|m| {
            let mut v = serde_json::to_value(m).expect("serialises");
            if let Some(o) = v.as_object_mut() {
                o.remove("Anonymous");
                o.remove("TmpfsOptions");
            }
            if m.kind == "volume" && v.get("Driver").is_none() {
                v["Driver"] = json!("local");
            }
            v
        })
        .collect()
}
