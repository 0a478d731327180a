//! `create`: turns run options plus the image's config into a container
//! record, with Docker's rules for ENTRYPOINT/CMD, env, volumes and
//! limits. Anything a user can get wrong is rejected here, before a
//! record exists.

use std::collections::BTreeMap;
use std::path::PathBuf;

use berth_oci::{time, ContainerConfig, ImageConfig};
use berth_store::ContainerRow;

use super::limits::{check_cpuset, check_reservation, parse_bytes, parse_restart};
use super::{names, Config, Container, HostConfig, Spec, State, Ulimit};
use crate::{Engine, Error, Result};

pub(crate) const DEFAULT_PATH: &str =
    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// What `create`/`run` was asked for, as flags give it.
#[derive(Debug, Clone, Default)]
pub struct CreateOptions {
    pub image: String,
    pub name: Option<String>,
    pub cmd: Vec<String>,
    /// `--entrypoint`; `Some("")` clears the image's.
    pub entrypoint: Option<String>,
    pub env: Vec<String>,
    pub env_files: Vec<PathBuf>,
    pub workdir: Option<String>,
    pub user: Option<String>,
    pub hostname: Option<String>,
    pub tty: bool,
    pub interactive: bool,
    /// The creator will attach (run without -d).
    pub attach: bool,
    pub auto_remove: bool,
    pub volumes: Vec<String>,
    pub mounts: Vec<String>,
    pub tmpfs: Vec<String>,
    pub read_only: bool,
    pub memory: Option<String>,
    pub memory_swap: Option<String>,
    /// `--memory-reservation`: the soft limit.
    pub memory_reservation: Option<String>,
    pub cpus: Option<f64>,
    pub cpu_shares: Option<i64>,
    pub pids_limit: Option<i64>,
    /// `--cpuset-cpus`: the CPUs it may use (`0-1,3`).
    pub cpuset_cpus: Option<String>,
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    pub privileged: bool,
    pub security_opt: Vec<String>,
    pub network: Option<String>,
    pub init: bool,
    pub restart: Option<String>,
    pub stop_signal: Option<String>,
    pub stop_timeout: Option<i64>,
    pub labels: Vec<String>,
    pub ulimits: Vec<String>,
    pub runtime: Option<String>,
    pub shm_size: Option<String>,
    /// `-p` values.
    pub publish: Vec<String>,
    /// `-P`: every port the image EXPOSEs, on random host ports.
    pub publish_all: bool,
    pub network_aliases: Vec<String>,
    /// `--ip`, `--mac-address` on the container's network.
    pub ip: Option<String>,
    pub mac_address: Option<String>,
    pub dns: Vec<String>,
    pub dns_search: Vec<String>,
    pub dns_options: Vec<String>,
    /// `--add-host name:ip`.
    pub add_hosts: Vec<String>,
    /// `--health-cmd` (run with the shell).
    pub health_cmd: Option<String>,
    /// `--health-interval` and friends, as Go durations (`1s`, `500ms`).
    pub health_interval: Option<String>,
    pub health_timeout: Option<String>,
    pub health_start_period: Option<String>,
    pub health_start_interval: Option<String>,
    pub health_retries: Option<i64>,
    /// `--no-healthcheck`: the image's HEALTHCHECK is not run.
    pub no_healthcheck: bool,
}

/// The container's health check: `--health-*` and `--no-healthcheck`
/// over the image's HEALTHCHECK, with Docker's checks and messages.
fn healthcheck(
    opts: &CreateOptions,
    image: Option<&berth_oci::HealthConfig>,
) -> Result<Option<berth_oci::HealthConfig>> {
    let dur = |v: &Option<String>, flag: &str| -> Result<Option<i64>> {
        let Some(v) = v else { return Ok(None) };
        let ns = time::parse_go_duration(v).ok_or_else(|| {
            invalid(format!(
                "invalid argument \"{v}\" for \"--{flag}\" flag: time: invalid duration \"{v}\""
            ))
        })?;
        if ns < 0 {
            return Err(invalid(format!("--{flag} cannot be negative")));
        }
        if ns != 0 && ns < 1_000_000 {
            return Err(invalid(format!(
                "{} in Healthcheck cannot be less than 1ms",
                match flag {
                    "health-interval" => "Interval",
                    "health-timeout" => "Timeout",
                    "health-start-period" => "StartPeriod",
                    _ => "StartInterval",
                }
            )));
        }
        Ok(Some(ns))
    };
    let user = berth_oci::HealthConfig {
        test: opts
            .health_cmd
            .as_ref()
            .map(|c| vec!["CMD-SHELL".to_string(), c.clone()]),
        interval: dur(&opts.health_interval, "health-interval")?,
        timeout: dur(&opts.health_timeout, "health-timeout")?,
        start_period: dur(&opts.health_start_period, "health-start-period")?,
        start_interval: dur(&opts.health_start_interval, "health-start-interval")?,
        retries: match opts.health_retries {
            Some(r) if r < 0 => return Err(invalid("--health-retries cannot be negative")),
            r => r,
        },
    };
    let any = user != berth_oci::HealthConfig::default();
    if opts.no_healthcheck {
        if any {
            return Err(invalid(
                "--no-healthcheck conflicts with --health-* options",
            ));
        }
        return Ok(Some(berth_oci::HealthConfig {
            test: Some(vec!["NONE".into()]),
            ..Default::default()
        }));
    }
    Ok(super::health::merge(any.then_some(user), image))
}

fn invalid(msg: impl Into<String>) -> Error {
    Error::InvalidArgument(msg.into())
}

fn parse_ulimit(s: &str) -> Result<Ulimit> {
    let bad = || invalid(format!("invalid ulimit argument: {s}"));
    let (name, vals) = s.split_once('=').ok_or_else(bad)?;
    const KNOWN: &[&str] = &[
        "core",
        "cpu",
        "data",
        "fsize",
        "locks",
        "memlock",
        "msgqueue",
        "nice",
        "nofile",
        "nproc",
        "rss",
        "rtprio",
        "rttime",
        "sigpending",
        "stack",
        "as",
    ];
    if !KNOWN.contains(&name) {
        return Err(invalid(format!("invalid ulimit type: {name}")));
    }
    let (soft, hard) = match vals.split_once(':') {
        Some((a, b)) => (a, b),
        None => (vals, vals),
    };
    let num = |v: &str| -> Result<u64> {
        if v == "-1" || v == "unlimited" {
            Ok(u64::MAX)
        } else {
            v.parse().map_err(|_| bad())
        }
    };
    let (soft, hard) = (num(soft)?, num(hard)?);
    if soft > hard {
        return Err(invalid(format!(
            "ulimit soft limit must be less than or equal to hard limit: {soft} > {hard}"
        )));
    }
    Ok(Ulimit {
        name: name.to_string(),
        soft,
        hard,
    })
}

/// A container's environment as it is assembled: later entries replace
/// earlier ones of the same key, in linear time however many there are
/// (`--env-file` with 200,000 lines).
struct EnvList {
    list: Vec<String>,
    index: std::collections::HashMap<String, usize>,
}

impl EnvList {
    fn new(list: Vec<String>) -> EnvList {
        let mut e = EnvList {
            list: Vec::with_capacity(list.len()),
            index: Default::default(),
        };
        for entry in list {
            e.set(entry);
        }
        e
    }

    fn set(&mut self, entry: String) {
        let key = entry.split('=').next().unwrap_or("").to_string();
        match self.index.get(&key) {
            Some(&i) => self.list[i] = entry,
            None => {
                self.index.insert(key, self.list.len());
                self.list.push(entry);
            }
        }
    }

    /// `-e KEY=value`, or `-e KEY` to pass the caller's value through.
    fn entry(&mut self, raw: &str) {
        if raw.contains('=') {
            self.set(raw.to_string());
        } else if let Ok(v) = std::env::var(raw) {
            self.set(format!("{raw}={v}"));
        }
    }

    fn has(&self, key: &str) -> bool {
        self.index.contains_key(key)
    }
}

pub(crate) fn set_env(env: &mut Vec<String>, entry: String) {
    let key = entry.split('=').next().unwrap_or("").to_string();
    match env
        .iter_mut()
        .find(|e| e.split('=').next() == Some(key.as_str()))
    {
        Some(slot) => *slot = entry,
        None => env.push(entry),
    }
}

impl Engine {
    /// Records a new container; nothing runs yet.
    pub fn create_container(&self, opts: &CreateOptions) -> Result<Container> {
        let image = self.resolve_image(&opts.image)?;
        let cfg_bytes = self.store.read_blob(&image.id)?;
        let img = ImageConfig::from_slice(&cfg_bytes)?;
        let ic = img.config.clone().unwrap_or_default();

        let (entrypoint, cmd) = command_of(opts, &ic);
        let argv: Vec<String> = entrypoint.iter().chain(cmd.iter()).cloned().collect();
        if argv.is_empty() {
            return Err(invalid("No command specified"));
        }

        if opts.auto_remove
            && opts
                .restart
                .as_deref()
                .is_some_and(|r| !r.is_empty() && r != "no")
        {
            return Err(invalid("Conflicting options: --restart and --rm"));
        }
        let restart = parse_restart(opts.restart.as_deref().unwrap_or("no"))?;

        let net = self.plan_network(opts)?;
        let mut env = env_of(opts, &ic)?;
        let labels = labels_of(opts, &ic);
        let mp = self.plan_mounts(opts, &ic)?;

        let ulimits = opts
            .ulimits
            .iter()
            .map(|u| parse_ulimit(u))
            .collect::<Result<Vec<_>>>()?;
        check_security(opts)?;
        let limits = parse_limits(opts)?;

        let runtime = match &opts.runtime {
            Some(r) => r.clone(),
            None => self.default_runtime(),
        };
        // Fail now on a runtime that isn't there.
        berth_runtime::open(&runtime, &self.runroot().join("runtime"))
            .map_err(|e| invalid(e.to_string()))?;

        let id = self.new_container_id()?;
        let hostname = hostname_of(opts, &net.network, &id)?;
        if !env.iter().any(|e| e.starts_with("HOSTNAME=")) {
            env.insert(1.min(env.len()), format!("HOSTNAME={hostname}"));
        }
        let config = config_of(opts, &ic, hostname, env, labels, entrypoint, cmd)?;
        let port_bindings = port_bindings_of(opts, &ic, net.own_net)?;
        let host = HostConfig {
            port_bindings,
            publish_all_ports: opts.publish_all,
            binds: mp.binds,
            network_mode: net.network,
            dns: opts.dns.clone(),
            dns_search: opts.dns_search.clone(),
            dns_options: opts.dns_options.clone(),
            extra_hosts: net.extra_hosts,
            restart_policy: restart,
            auto_remove: opts.auto_remove,
            cap_add: opts.cap_add.clone(),
            cap_drop: opts.cap_drop.clone(),
            privileged: opts.privileged,
            readonly_rootfs: opts.read_only,
            security_opt: opts.security_opt.clone(),
            tmpfs: mp.tmpfs,
            shm_size: limits.shm_size,
            runtime,
            memory: limits.memory,
            memory_swap: limits.memory_swap,
            memory_reservation: limits.memory_reservation,
            nano_cpus: limits.nano_cpus,
            cpu_shares: opts.cpu_shares.unwrap_or(0),
            cpuset_cpus: limits.cpuset_cpus,
            pids_limit: opts.pids_limit.filter(|p| *p != 0),
            ulimits,
            init: opts.init,
        };
        let spec = Spec {
            path: argv[0].clone(),
            args: argv[1..].to_vec(),
            config,
            host,
            mounts: mp.mounts,
            image_id: image.id.to_string(),
            networks: net.networks,
        };
        self.record_container(opts, id, image.id.to_string(), spec)
    }

    /// The network it is created on, what it asks of it, and `--add-host`.
    fn plan_network(&self, opts: &CreateOptions) -> Result<NetPlan> {
        let network = match opts.network.as_deref() {
            None | Some("default") => crate::networks::DEFAULT.to_string(),
            Some(n) => n.to_string(),
        };
        let network = match network.strip_prefix("container:") {
            Some(other) => format!("container:{}", self.container(other)?.id),
            None => self.network(&network)?.name,
        };
        // Only a network of its own gives a container an address.
        let own_net = super::own_netns(&network);
        let user_net = own_net && network != crate::networks::DEFAULT;
        if opts.ip.is_some() && !user_net {
            return Err(invalid(crate::networks::IP_NEEDS_USER_NETWORK));
        }
        if !opts.network_aliases.is_empty() && !user_net {
            return Err(invalid(crate::networks::ALIAS_NEEDS_USER_NETWORK));
        }
        if let Some(ip) = &opts.ip {
            ip.parse::<std::net::Ipv4Addr>()
                .map_err(|_| invalid(format!("invalid IPv4 address: {ip}")))?;
        }
        if let Some(m) = &opts.mac_address {
            if !own_net {
                return Err(invalid(
                    "conflicting options: mac-address and the network mode",
                ));
            }
            crate::network::parse_mac(m)?;
        }
        for d in &opts.dns {
            d.parse::<std::net::IpAddr>()
                .map_err(|_| invalid(format!("{d} is not an ip address")))?;
        }
        let mut extra_hosts = Vec::new();
        for h in &opts.add_hosts {
            let (name, ip) = h
                .split_once(['=', ':'])
                .filter(|(n, _)| !n.is_empty())
                .ok_or_else(|| invalid(format!("bad format for add-host: {h:?}")))?;
            if ip != "host-gateway" && ip.parse::<std::net::IpAddr>().is_err() {
                return Err(invalid(format!("invalid IP address in add-host: {ip:?}")));
            }
            extra_hosts.push(format!("{name}:{ip}"));
        }
        let mut networks = BTreeMap::new();
        if own_net {
            networks.insert(
                network.clone(),
                crate::net_model::EndpointConfig {
                    aliases: opts.network_aliases.clone(),
                    ipv4_address: opts.ip.clone().unwrap_or_default(),
                    mac_address: opts.mac_address.clone().unwrap_or_default(),
                },
            );
        }
        Ok(NetPlan {
            network,
            own_net,
            extra_hosts,
            networks,
        })
    }

    /// A fresh id, unused and never all digits in its short form.
    fn new_container_id(&self) -> Result<String> {
        Ok(loop {
            let id = crate::ids::random_hex64();
            // Ids must never look like a number, or short ids would too.
            if id[..12].bytes().any(|b| b.is_ascii_alphabetic())
                && self.store.container(&id)?.is_none()
            {
                break id;
            }
        })
    }

    /// Makes its volumes, then inserts the record under its name (or a
    /// generated one) and makes its upper and work dirs.
    fn record_container(
        &self,
        opts: &CreateOptions,
        id: String,
        image_id: String,
        spec: Spec,
    ) -> Result<Container> {
        // Volumes exist before the record that uses them.
        for m in spec.mounts.iter().filter(|m| m.kind == "volume") {
            self.ensure_volume(&m.name, m.anonymous)?;
        }

        let created = time::now_nanos();
        let state = State::default();
        let mut attempt = 0;
        let name = loop {
            let name = match &opts.name {
                Some(n) => {
                    let n = n.strip_prefix('/').unwrap_or(n).to_string();
                    names::validate(&n)?;
                    n
                }
                None => names::generate(attempt),
            };
            let row = ContainerRow {
                id: id.clone(),
                name: name.clone(),
                image_id: image_id.clone(),
                created,
                config: serde_json::to_string(&spec).expect("serialises"),
                state: serde_json::to_string(&state).expect("serialises"),
            };
            match self.store.put_container(&row) {
                Ok(()) => break name,
                Err(e) if e.kind() == berth_store::ErrorKind::Conflict => {
                    if opts.name.is_some() {
                        let holder = self
                            .store
                            .container_by_name(&name)?
                            .map(|r| r.id)
                            .unwrap_or_default();
                        return Err(Error::Conflict(format!(
                            "Conflict. The container name \"/{name}\" is already in use by container \"{holder}\". You have to remove (or rename) that container to be able to reuse that name."
                        )));
                    }
                    attempt += 1;
                    if attempt > 50 {
                        return Err(e.into());
                    }
                }
                Err(e) => return Err(e.into()),
            }
        };
        let p = self.paths(&id);
        for d in [p.dir.join("upper"), p.dir.join("work")] {
            if let Err(e) = std::fs::create_dir_all(&d) {
                let _ = self.store.delete_container(&id);
                return Err(Error::io("create", &d)(e));
            }
        }
        let c = Container {
            id,
            name,
            image_id,
            created,
            spec,
            state,
        };
        self.emit_container(&c, "create", &[]);
        Ok(c)
    }
}

/// The network part of a create: the mode, the networks it joins at
/// start, and `--add-host` as Docker records it.
struct NetPlan {
    network: String,
    own_net: bool,
    extra_hosts: Vec<String>,
    networks: BTreeMap<String, crate::net_model::EndpointConfig>,
}

/// Resource limits, checked as Docker checks them.
struct Limits {
    memory: i64,
    memory_swap: i64,
    memory_reservation: i64,
    cpuset_cpus: String,
    nano_cpus: i64,
    shm_size: u64,
}

/// ENTRYPOINT / CMD, Docker's way: --entrypoint replaces the image's and
/// drops its CMD; arguments replace CMD.
fn command_of(opts: &CreateOptions, ic: &ContainerConfig) -> (Vec<String>, Vec<String>) {
    match &opts.entrypoint {
        Some(e) => {
            let ep = if e.is_empty() {
                vec![]
            } else {
                vec![e.clone()]
            };
            (ep, opts.cmd.clone())
        }
        None => {
            let cmd = if opts.cmd.is_empty() {
                ic.cmd.clone().unwrap_or_default()
            } else {
                opts.cmd.clone()
            };
            (ic.entrypoint.clone().unwrap_or_default(), cmd)
        }
    }
}

/// Env: the image's, then -e and --env-file in order.
fn env_of(opts: &CreateOptions, ic: &ContainerConfig) -> Result<Vec<String>> {
    let mut image_env = ic.env.clone().unwrap_or_default();
    if !image_env.iter().any(|e| e.starts_with("PATH=")) {
        image_env.insert(0, DEFAULT_PATH.to_string());
    }
    let mut env = EnvList::new(image_env);
    for f in &opts.env_files {
        let text = std::fs::read_to_string(f).map_err(|e| {
            invalid(format!(
                "open {}: {}",
                f.display(),
                e.kind().to_string().to_lowercase()
            ))
        })?;
        for line in text.lines() {
            let l = line.trim_start();
            if l.is_empty() || l.starts_with('#') {
                continue;
            }
            env.entry(l);
        }
    }
    for e in &opts.env {
        if e.starts_with('=') {
            return Err(invalid(format!("invalid environment variable: {e}")));
        }
        env.entry(e);
    }
    if opts.tty && !env.has("TERM") {
        env.set("TERM=xterm".into());
    }
    Ok(env.list)
}

/// The image's labels, then `--label`.
fn labels_of(opts: &CreateOptions, ic: &ContainerConfig) -> BTreeMap<String, String> {
    let mut labels: BTreeMap<String, String> = ic.labels.clone().unwrap_or_default();
    for l in &opts.labels {
        let (k, v) = l.split_once('=').unwrap_or((l, ""));
        labels.insert(k.to_string(), v.to_string());
    }
    labels
}

/// `--security-opt` values Berth knows (a seccomp profile must parse),
/// and `--cap-add`/`--cap-drop`.
fn check_security(opts: &CreateOptions) -> Result<()> {
    for o in &opts.security_opt {
        let ok = o == "no-new-privileges"
            || o == "no-new-privileges:true"
            || o == "no-new-privileges=true"
            || o == "no-new-privileges:false"
            || o == "no-new-privileges=false"
            || o.starts_with("seccomp=")
            || o.starts_with("seccomp:")
            || o.starts_with("label=")
            || o.starts_with("apparmor=");
        if !ok {
            return Err(invalid(format!("invalid --security-opt: \"{o}\"")));
        }
        if let Some(path) = o
            .strip_prefix("seccomp=")
            .or_else(|| o.strip_prefix("seccomp:"))
        {
            if path != "unconfined" {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    invalid(format!("opening seccomp profile ({path}) failed: {e}"))
                })?;
                serde_json::from_str::<serde_json::Value>(&text)
                    .map_err(|e| invalid(format!("decoding seccomp profile failed: {e}")))?;
            }
        }
    }
    // Caps are checked now so a typo fails create, not start.
    berth_runtime::spec::capabilities(&opts.cap_add, &opts.cap_drop, opts.privileged)
        .map_err(|e| invalid(e.to_string()))?;
    Ok(())
}

/// `--memory`, `--memory-swap`, `--memory-reservation`, `--cpuset-cpus`,
/// `--cpus` and `--shm-size`.
fn parse_limits(opts: &CreateOptions) -> Result<Limits> {
    let memory = opts
        .memory
        .as_deref()
        .map(parse_bytes)
        .transpose()?
        .unwrap_or(0);
    if memory != 0 && memory < 6 << 20 {
        return Err(invalid("Minimum memory limit allowed is 6MB"));
    }
    let memory_swap = match opts.memory_swap.as_deref() {
        Some("-1") => -1,
        Some(s) => parse_bytes(s)?,
        None => 0,
    };
    if memory_swap > 0 && memory == 0 {
        return Err(invalid(
            "You should always set the Memory limit when using Memoryswap limit",
        ));
    }
    if memory_swap > 0 && memory_swap < memory {
        return Err(invalid(
            "Minimum memoryswap limit should be larger than memory limit, see usage",
        ));
    }
    let memory_reservation = opts
        .memory_reservation
        .as_deref()
        .map(parse_bytes)
        .transpose()?
        .unwrap_or(0);
    check_reservation(memory, memory_reservation)?;
    let cpuset_cpus = opts.cpuset_cpus.clone().unwrap_or_default();
    check_cpuset(&cpuset_cpus)?;
    let nano_cpus = match opts.cpus {
        Some(c) if c < 0.0 => {
            return Err(invalid(format!(
                "invalid argument \"{c}\" for \"--cpus\" flag"
            )))
        }
        Some(c) => {
            let max = std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1);
            if c > max as f64 {
                return Err(invalid(format!(
                    "range of CPUs is from 0.01 to {max}.00, as there are only {max} CPUs available"
                )));
            }
            (c * 1e9) as i64
        }
        None => 0,
    };
    let shm_size = opts
        .shm_size
        .as_deref()
        .map(parse_bytes)
        .transpose()?
        .unwrap_or(64 << 20) as u64;
    Ok(Limits {
        memory,
        memory_swap,
        memory_reservation,
        cpuset_cpus,
        nano_cpus,
        shm_size,
    })
}

/// The hostname: `--hostname`, the host's for `--network host`, else the
/// short id.
fn hostname_of(opts: &CreateOptions, network: &str, id: &str) -> Result<String> {
    let hostname = opts.hostname.clone().unwrap_or_else(|| {
        if network == "host" {
            nix::unistd::gethostname()
                .ok()
                .and_then(|h| h.into_string().ok())
                .unwrap_or_default()
        } else {
            id[..12].to_string()
        }
    });
    if let Some(h) = &opts.hostname {
        if h.len() > 63 || h.is_empty() {
            return Err(invalid(format!("invalid hostname format: {h}")));
        }
    }
    Ok(hostname)
}

/// Docker's `Config`: the options over the image's config.
fn config_of(
    opts: &CreateOptions,
    ic: &ContainerConfig,
    hostname: String,
    env: Vec<String>,
    labels: BTreeMap<String, String>,
    entrypoint: Vec<String>,
    cmd: Vec<String>,
) -> Result<Config> {
    let config = Config {
        hostname,
        domainname: String::new(),
        user: opts.user.clone().or(ic.user.clone()).unwrap_or_default(),
        attach_stdin: opts.attach && opts.interactive,
        attach_stdout: opts.attach,
        attach_stderr: opts.attach,
        tty: opts.tty,
        open_stdin: opts.interactive,
        stdin_once: opts.attach && opts.interactive,
        env,
        cmd: if cmd.is_empty() { None } else { Some(cmd) },
        image: opts.image.clone(),
        working_dir: opts
            .workdir
            .clone()
            .or(ic.working_dir.clone())
            .unwrap_or_default(),
        entrypoint: if entrypoint.is_empty() {
            None
        } else {
            Some(entrypoint)
        },
        labels,
        stop_signal: opts.stop_signal.clone().or(ic.stop_signal.clone()),
        stop_timeout: opts.stop_timeout,
        healthcheck: healthcheck(opts, ic.healthcheck.as_ref())?,
    };
    if !config.working_dir.is_empty() && !config.working_dir.starts_with('/') {
        return Err(invalid(format!(
            "the working directory '{}' is invalid, it needs to be an absolute path",
            config.working_dir
        )));
    }
    if let Some(sig) = &config.stop_signal {
        super::proc::parse_signal(sig)?;
    }
    Ok(config)
}

/// `-p` and `-P`. Published ports only mean something on a bridge
/// (Docker drops them for host and none too).
fn port_bindings_of(
    opts: &CreateOptions,
    ic: &ContainerConfig,
    own_net: bool,
) -> Result<BTreeMap<String, Vec<crate::net_model::PortBinding>>> {
    let mut port_bindings = crate::network::parse_publish(&opts.publish)?;
    if opts.publish_all {
        for p in ic.exposed_ports.iter().flat_map(|m| m.keys()) {
            let key = if p.contains('/') {
                p.clone()
            } else {
                format!("{p}/tcp")
            };
            port_bindings
                .entry(key)
                .or_insert_with(|| vec![crate::net_model::PortBinding::default()]);
        }
    }
    if !own_net {
        port_bindings.clear();
    }
    Ok(port_bindings)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ulimits() {
        let u = parse_ulimit("nofile=1024:2048").unwrap();
        assert_eq!((u.soft, u.hard), (1024, 2048));
        assert!(parse_ulimit("nofile=5:1").is_err());
        assert!(parse_ulimit("bogus=1").is_err());
    }
}
