//! The OCI bundle of one run of a container: its /etc files, mounts,
//! security options and resources, written as config.json for the
//! runtime. Failures carry Docker's exit codes (125: Berth's fault or
//! the user's options).

use std::fs;
use std::path::{Path, PathBuf};

use berth_runtime::spec::{self as rspec, BundleSpec, NetworkMode, Seccomp};

use super::model::{Container, HostConfig, Paths, Spec, Status};
use super::rootfs::{self, check_executable, lookup_user};
use crate::Engine;

/// The servers the embedded resolver relays to, when it serves.
pub(super) type Upstreams = Option<Vec<std::net::Ipv4Addr>>;

/// A failure to start, with the exit code `run` gives it.
type Failed = (String, i32);

/// What the security options ask for.
struct Security {
    caps: Vec<String>,
    no_new_privileges: bool,
    seccomp: Seccomp,
}

impl Engine {
    pub(crate) fn unmount_container(&self, paths: &Paths) {
        rootfs::unmount(&paths.rootfs());
    }

    /// Writes config.json (and the /etc files) for one run; returns the
    /// bundle dir and, when its resolv.conf names the embedded resolver,
    /// the servers that resolver relays to.
    pub(super) fn prepare_bundle(
        &self,
        c: &Container,
        paths: &Paths,
    ) -> Result<(PathBuf, Upstreams), Failed> {
        let e125 = |e: String| (e, 125);
        let rootfs = paths.rootfs();
        let spec = &c.spec;
        let user = lookup_user(&rootfs, &spec.config.user).map_err(e125)?;
        let mut env = spec.config.env.clone();
        super::rootfs::default_home(&mut env, &user.home);
        let mut args: Vec<String> = std::iter::once(spec.path.clone())
            .chain(spec.args.iter().cloned())
            .collect();
        if let Err(e) = check_executable(&rootfs, &spec.path, &env) {
            return Err((e.message, e.code));
        }
        let cwd = if spec.config.working_dir.is_empty() {
            "/".to_string()
        } else {
            spec.config.working_dir.clone()
        };
        if let Ok(p) = rootfs::resolve_in_root(&rootfs, &cwd) {
            if !p.exists() {
                let _ = fs::create_dir_all(&p);
                let _ = std::os::unix::fs::chown(&p, Some(user.uid), Some(user.gid));
            }
        }

        let (mut mounts, resolver) = self.write_etc_files(c, paths)?;
        self.spec_mounts(c, &rootfs, &mut mounts)?;
        if spec.host.init {
            let init = super::proc::init_binary().ok_or_else(|| {
                (
                    "--init needs tini-static (apt-get install tini): not found".to_string(),
                    125,
                )
            })?;
            mounts.push(rspec::Mount::bind(
                init.display().to_string(),
                "/sbin/docker-init",
                true,
            ));
            args.splice(0..0, ["/sbin/docker-init".to_string(), "--".to_string()]);
        }

        let Security {
            caps,
            no_new_privileges,
            seccomp,
        } = security_of(spec)?;
        let rlimits = super::proc::rlimits(&spec.host.ulimits).map_err(e125)?;
        let network = self.network_mode_of(spec, paths)?;
        let resources = resources_of(&spec.host);
        let b = BundleSpec {
            rootfs: rootfs.clone(),
            readonly_rootfs: spec.host.readonly_rootfs,
            hostname: spec.config.hostname.clone(),
            process: rspec::Process {
                args,
                env,
                cwd,
                uid: user.uid,
                gid: user.gid,
                additional_gids: user.additional_gids,
                terminal: spec.config.tty,
                no_new_privileges,
                capabilities: caps,
                rlimits,
            },
            mounts,
            network,
            resources,
            privileged: spec.host.privileged,
            seccomp,
            cgroups_path: crate::sys::cgroup_path(&c.id),
            shm_size: spec.host.shm_size,
        };
        let json = rspec::build(&b);
        let cfg = paths.run.join("config.json");
        fs::write(&cfg, serde_json::to_vec(&json).expect("serialises"))
            .map_err(|e| (format!("write {}: {e}", cfg.display()), 125))?;
        Ok((paths.run.clone(), resolver))
    }

    /// /etc/hostname, /etc/hosts, /etc/resolv.conf: written to the
    /// container's dir and bind-mounted. Returns their mounts and the
    /// embedded resolver's upstreams.
    fn write_etc_files(
        &self,
        c: &Container,
        paths: &Paths,
    ) -> Result<(Vec<rspec::Mount>, Upstreams), Failed> {
        let spec = &c.spec;
        let host_mode = spec.host.network_mode == "host";
        let etc = |name: &str, text: String| -> Result<String, (String, i32)> {
            let p = paths.dir.join(name);
            fs::write(&p, text).map_err(|e| (format!("write {}: {e}", p.display()), 125))?;
            Ok(p.display().to_string())
        };
        let hostname = etc("hostname", format!("{}\n", spec.config.hostname))?;
        let hosts_text = if host_mode {
            fs::read_to_string("/etc/hosts").unwrap_or_default()
        } else {
            "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n".to_string()
        };
        // A container in another's namespace sees that one's addresses.
        let endpoints = match spec.host.network_mode.strip_prefix("container:") {
            Some(other) => crate::network::read_endpoints(&self.paths(other)),
            None => crate::network::read_endpoints(paths),
        };
        let mut hosts_text = hosts_text;
        for h in &spec.host.extra_hosts {
            let Some((name, ip)) = h.split_once(':') else {
                continue;
            };
            // Docker's host-gateway: the host as the container reaches it.
            let ip = if ip == "host-gateway" {
                match endpoints.iter().find(|e| !e.internal) {
                    Some(e) => e.gateway.clone(),
                    None => continue,
                }
            } else {
                ip.to_string()
            };
            hosts_text += &format!("{ip}\t{name}\n");
        }
        for ep in &endpoints {
            hosts_text += &format!("{}\t{}\n", ep.ip_address, spec.config.hostname);
        }
        let hosts = etc("hosts", hosts_text)?;
        let plan = self.resolv_plan(c, &endpoints);
        let resolv = etc("resolv.conf", plan.text)?;

        let mounts = vec![
            rspec::Mount::bind(hostname, "/etc/hostname", false),
            rspec::Mount::bind(hosts, "/etc/hosts", false),
            rspec::Mount::bind(resolv, "/etc/resolv.conf", false),
        ];
        Ok((mounts, plan.resolver))
    }

    /// The container's own mounts: binds, volumes (a new one takes a copy
    /// of the image's data), tmpfs.
    fn spec_mounts(
        &self,
        c: &Container,
        rootfs: &Path,
        mounts: &mut Vec<rspec::Mount>,
    ) -> Result<(), Failed> {
        let spec = &c.spec;
        for m in &spec.mounts {
            match m.kind.as_str() {
                "bind" => {
                    if !Path::new(&m.source).exists() {
                        return Err((
                            format!("invalid mount config for type \"bind\": bind source path does not exist: {}", m.source),
                            125,
                        ));
                    }
                    let mut b = rspec::Mount::bind(m.source.clone(), m.destination.clone(), !m.rw);
                    if !m.propagation.is_empty() && m.propagation != "rprivate" {
                        b.options.retain(|o| o != "rprivate");
                        b.options.push(m.propagation.clone());
                    }
                    mounts.push(b);
                }
                "volume" => {
                    let data = self.volume_path(&m.name);
                    fs::create_dir_all(&data)
                        .map_err(|e| (format!("volume {}: {e}", m.name), 125))?;
                    // A new, empty volume takes a copy of what the image
                    // has at the mount point, as Docker does.
                    if let Ok(src) = rootfs::resolve_in_root(rootfs, &m.destination) {
                        let empty = fs::read_dir(&data)
                            .map(|mut d| d.next().is_none())
                            .unwrap_or(false);
                        if empty && src.is_dir() {
                            rootfs::copy_tree(&src, &data).map_err(|e| {
                                (format!("copy image data into volume {}: {e}", m.name), 125)
                            })?;
                            if let Ok(md) = fs::metadata(&src) {
                                use std::os::unix::fs::MetadataExt;
                                let _ = fs::set_permissions(&data, md.permissions());
                                let _ =
                                    std::os::unix::fs::chown(&data, Some(md.uid()), Some(md.gid()));
                            }
                        }
                    }
                    mounts.push(rspec::Mount::bind(
                        data.display().to_string(),
                        m.destination.clone(),
                        !m.rw,
                    ));
                    self.emit_volume(
                        "mount",
                        &m.name,
                        &[
                            ("container", c.id.clone()),
                            ("destination", m.destination.clone()),
                            ("propagation", m.propagation.clone()),
                            ("read/write", m.rw.to_string()),
                        ],
                    );
                }
                "tmpfs" => {
                    let mut options = vec![
                        "nosuid".to_string(),
                        "nodev".to_string(),
                        "noexec".to_string(),
                    ];
                    for o in m.tmpfs_options.split(',').filter(|o| !o.is_empty()) {
                        options.push(o.to_string());
                    }
                    if !m.rw && !options.iter().any(|o| o == "ro") {
                        options.push("ro".into());
                    }
                    mounts.push(rspec::Mount {
                        destination: m.destination.clone(),
                        source: "tmpfs".into(),
                        kind: "tmpfs".into(),
                        options,
                    });
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// The network namespace it runs in.
    fn network_mode_of(&self, spec: &Spec, paths: &Paths) -> Result<NetworkMode, Failed> {
        let network = match spec.host.network_mode.as_str() {
            "host" => NetworkMode::Host,
            n if n.starts_with("container:") => {
                let other = self
                    .container(&n["container:".len()..])
                    .map_err(|e| (e.to_string(), 125))?;
                if other.state.status != Status::Running {
                    return Err((
                        format!(
                            "cannot join network of a non running container: {}",
                            other.id
                        ),
                        125,
                    ));
                }
                NetworkMode::Path(format!("/proc/{}/ns/net", other.state.pid))
            }
            "none" => NetworkMode::None,
            _ => NetworkMode::Path(crate::network::netns_path(paths).display().to_string()),
        };
        Ok(network)
    }
}

/// Capabilities, no-new-privileges and the seccomp profile.
fn security_of(spec: &Spec) -> Result<Security, Failed> {
    let caps = rspec::capabilities(
        &spec.host.cap_add,
        &spec.host.cap_drop,
        spec.host.privileged,
    )
    .map_err(|e| (e.to_string(), 125))?;
    let mut no_new_privileges = false;
    let mut seccomp = Seccomp::Default;
    for o in &spec.host.security_opt {
        match o.as_str() {
            "no-new-privileges" | "no-new-privileges:true" | "no-new-privileges=true" => {
                no_new_privileges = true
            }
            "seccomp=unconfined" | "seccomp:unconfined" => seccomp = Seccomp::Unconfined,
            o => {
                if let Some(path) = o
                    .strip_prefix("seccomp=")
                    .or_else(|| o.strip_prefix("seccomp:"))
                {
                    let text = fs::read_to_string(path).map_err(|e| {
                        (format!("opening seccomp profile ({path}) failed: {e}"), 125)
                    })?;
                    let v: serde_json::Value = serde_json::from_str(&text)
                        .map_err(|e| (format!("decoding seccomp profile failed: {e}"), 125))?;
                    seccomp = Seccomp::Profile(v);
                }
            }
        }
    }
    Ok(Security {
        caps,
        no_new_privileges,
        seccomp,
    })
}

/// The cgroup limits asked for.
fn resources_of(host: &HostConfig) -> rspec::Resources {
    rspec::Resources {
        memory: (host.memory > 0).then_some(host.memory),
        memory_swap: (host.memory_swap != 0).then_some(host.memory_swap),
        memory_reservation: (host.memory_reservation > 0).then_some(host.memory_reservation),
        cpu_shares: (host.cpu_shares > 0).then_some(host.cpu_shares as u64),
        cpu_quota: (host.nano_cpus > 0).then_some(host.nano_cpus / 10_000),
        cpu_period: (host.nano_cpus > 0).then_some(100_000),
        pids_limit: host.pids_limit,
        cpuset_cpus: (!host.cpuset_cpus.is_empty()).then(|| host.cpuset_cpus.clone()),
    }
}
