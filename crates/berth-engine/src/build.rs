//! `build`: a Dockerfile and a context to an image, one step at a time.
//!
//! Every step leaves an image (so a failed build can be debugged from the
//! last good one), and a step is reused when its parent, its expanded
//! instruction and the content of its inputs match a cached one. Layers
//! get fixed mtimes, so the same inputs give the same layer digests.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::{lchown, symlink, MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use berth_build::cache::Key as CacheKey;
use berth_build::exec::{self, Outcome, StepRunner};
use berth_build::expand;
use berth_build::ignore::Matcher;
use berth_build::plan;
use berth_build::{CmdForm, CopySpec, Dockerfile, Inst, Src, Stage, Step};
use berth_layer::WriteOptions;
use berth_oci::media::Compression;
use berth_oci::{
    time, ContainerConfig, Digest, Hasher, HealthConfig, History, ImageConfig, Platform, Reference,
    RootFs,
};
use berth_store::ImageRecord;

use crate::containers::rootfs::{self, resolve_in_root};
use crate::containers::{AttachOptions, CreateOptions, Event, Frame};
use crate::{Engine, EngineOptions, Error, Result};

/// Build args Docker accepts without an ARG declaration.
const PROXY_ARGS: [&str; 8] = [
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "FTP_PROXY",
    "ftp_proxy",
    "NO_PROXY",
    "no_proxy",
];

#[derive(Debug, Clone, Default)]
pub struct BuildOptions {
    /// The context directory (a tar context is unpacked by the caller).
    pub context: PathBuf,
    /// The Dockerfile's text and the name to show in messages.
    pub dockerfile: String,
    pub dockerfile_name: String,
    pub tags: Vec<String>,
    pub target: Option<String>,
    /// `K=V`, or `K` to take the value from the environment.
    pub build_args: Vec<String>,
    pub no_cache: bool,
    pub labels: Vec<String>,
    /// Default network for RUN steps.
    pub network: Option<String>,
    pub platform: Option<String>,
    /// `id=…,src=…` secrets for `RUN --mount=type=secret`.
    pub secrets: Vec<String>,
    /// Layer compression: gzip (Docker's default) or zstd.
    pub compression: Option<String>,
    /// `--pull`: fetch FROM images even when the store has them.
    pub pull: bool,
}

/// What a stage leaves for later stages and the final image.
#[derive(Clone)]
struct Built {
    rec: Option<ImageRecord>,
    config: ImageConfig,
}

struct StageState {
    rec: Option<ImageRecord>,
    config: ImageConfig,
    /// ARGs declared in this stage, with their values.
    args: BTreeMap<String, String>,
    cmd_set: bool,
}

impl StageState {
    fn cfg(&mut self) -> &mut ContainerConfig {
        self.config.config.get_or_insert_with(Default::default)
    }

    fn env(&self) -> Vec<String> {
        self.config
            .config
            .as_ref()
            .and_then(|c| c.env.clone())
            .unwrap_or_default()
    }

    /// Values for word expansion: ENV wins over ARG, as in Docker.
    fn vars(&self) -> HashMap<String, String> {
        let mut m: HashMap<String, String> = self.args.clone().into_iter().collect();
        for e in self.env() {
            if let Some((k, v)) = e.split_once('=') {
                m.insert(k.to_string(), v.to_string());
            }
        }
        m
    }

    fn shell(&self) -> Vec<String> {
        self.config
            .config
            .as_ref()
            .and_then(|c| c.shell.clone())
            .unwrap_or_else(|| vec!["/bin/sh".into(), "-c".into()])
    }

    fn workdir(&self) -> String {
        self.config
            .config
            .as_ref()
            .and_then(|c| c.working_dir.clone())
            .filter(|w| !w.is_empty())
            .unwrap_or_else(|| "/".into())
    }
}

fn bad(msg: impl Into<String>) -> Error {
    Error::InvalidArgument(msg.into())
}

/// A mounted overlay of some layers with a throwaway upper dir, for COPY.
struct Scratch {
    dir: PathBuf,
    target: PathBuf,
    lowers: Vec<PathBuf>,
    mounted: bool,
}

impl Scratch {
    fn unmount(&mut self) {
        if self.mounted {
            rootfs::unmount(&self.target);
            let _ = fs::remove_dir(&self.target);
            self.mounted = false;
        }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        self.unmount();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

struct Builder<'a> {
    engine: &'a Engine,
    opts: &'a BuildOptions,
    df: &'a Dockerfile,
    out: &'a mut dyn Write,
    ignore: Matcher,
    build_args: HashMap<String, String>,
    global: HashMap<String, String>,
    built: Vec<Option<Built>>,
    step_no: usize,
    total: usize,
    epoch: Option<u64>,
    platform: Platform,
    compression: Compression,
    /// ADD URLs fetched by this build: url to (file, content digest).
    downloads: std::cell::RefCell<HashMap<String, (PathBuf, Digest)>>,
}

/// Seconds for `5s`, `1m30s`, `100ms`, as Go's time.ParseDuration reads them; nanoseconds out.
fn parse_duration(s: &str) -> Option<i64> {
    let mut total: f64 = 0.0;
    let mut rest = s.trim();
    if rest == "0" {
        return Some(0);
    }
    while !rest.is_empty() {
        let n = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let value: f64 = rest[..n].parse().ok()?;
        rest = &rest[n..];
        let u = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let mult = match &rest[..u] {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        total += value * mult;
        rest = &rest[u..];
    }
    Some(total as i64)
}

fn join_workdir(workdir: &str, p: &str) -> String {
    if p.starts_with('/') {
        p.to_string()
    } else {
        format!("{}/{}", workdir.trim_end_matches('/'), p)
    }
}

/// Cleans a context-relative source; None if it leaves the context.
fn clean_rel(p: &str) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in Path::new(p).components() {
        match c {
            Component::Normal(x) => out.push(x),
            Component::ParentDir if !out.pop() => return None,
            _ => {}
        }
    }
    Some(out)
}

fn has_glob(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

/// `$VAR` and `${VAR}` in a heredoc body (quotes are the file's content).
fn expand_heredoc(body: &str, vars: &HashMap<String, String>) -> String {
    let mut out = String::new();
    let b: Vec<char> = body.chars().collect();
    let mut i = 0;
    while i < b.len() {
        if b[i] == '$' && i + 1 < b.len() {
            let (name, next) = if b[i + 1] == '{' {
                match b[i + 2..].iter().position(|&c| c == '}') {
                    Some(end) => (
                        b[i + 2..i + 2 + end].iter().collect::<String>(),
                        i + 3 + end,
                    ),
                    None => (String::new(), i),
                }
            } else {
                let n: String = b[i + 1..]
                    .iter()
                    .take_while(|c| c.is_ascii_alphanumeric() || **c == '_')
                    .collect();
                let len = n.len();
                (n, i + 1 + len)
            };
            if !name.is_empty() && next > i {
                out.push_str(vars.get(&name).map(String::as_str).unwrap_or(""));
                i = next;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

impl Engine {
    /// Builds the image; progress and RUN output go to `out`. Returns the
    /// image id.
    pub fn build(&self, opts: &BuildOptions, out: &mut dyn Write) -> Result<Digest> {
        let df = berth_build::parse(&opts.dockerfile)
            .map_err(|e| bad(format!("{}: {e}", opts.dockerfile_name)))?;
        let ignore_text = [".dockerignore", ".containerignore"]
            .iter()
            .find_map(|n| fs::read_to_string(opts.context.join(n)).ok())
            .unwrap_or_default();
        let ignore =
            Matcher::parse(&ignore_text).map_err(|e| bad(format!(".dockerignore: {e}")))?;
        let tags = opts
            .tags
            .iter()
            .map(|t| -> Result<String> {
                let r = Reference::parse(t)?;
                if r.digest().is_some() {
                    return Err(bad(format!(
                        "invalid tag {t:?}: a tag cannot hold a digest"
                    )));
                }
                Ok(r.to_string())
            })
            .collect::<Result<Vec<_>>>()?;
        let mut build_args = HashMap::new();
        for a in &opts.build_args {
            match a.split_once('=') {
                Some((k, v)) => {
                    build_args.insert(k.to_string(), v.to_string());
                }
                None => {
                    if let Ok(v) = std::env::var(a) {
                        build_args.insert(a.clone(), v);
                    }
                }
            }
        }
        let epoch = build_args
            .get("SOURCE_DATE_EPOCH")
            .cloned()
            .or_else(|| std::env::var("SOURCE_DATE_EPOCH").ok())
            .map(|s| {
                s.trim().parse::<u64>().map_err(|_| {
                    bad(format!(
                        "SOURCE_DATE_EPOCH={s:?} is not a number of seconds"
                    ))
                })
            })
            .transpose()?;
        let platform = match &opts.platform {
            Some(p) => {
                let p = Platform::parse(p)?;
                let host = Platform::host();
                if p.os != host.os || p.architecture != host.architecture {
                    return Err(bad(format!(
                        "cannot build for {p} on this {host} machine (no emulation)"
                    )));
                }
                p
            }
            None => Platform::host(),
        };

        let compression = match opts.compression.as_deref() {
            None | Some("gzip") => Compression::Gzip,
            Some("zstd") => Compression::Zstd,
            Some("uncompressed") => Compression::None,
            Some(c) => {
                return Err(bad(format!(
                    "unknown compression {c:?}: expected gzip, zstd or uncompressed"
                )))
            }
        };
        let mut global = HashMap::new();
        for (k, v) in &df.global_args {
            let value = match build_args.get(k) {
                Some(v) => Some(v.clone()),
                None => v
                    .as_deref()
                    .map(|v| expand::word(v, &|n| global.get(n).cloned(), df.escape))
                    .transpose()
                    .map_err(|e| bad(format!("ARG {k}: {e}")))?,
            };
            global.insert(k.clone(), value.unwrap_or_default());
        }

        let target = plan::target(&df, opts.target.as_deref()).map_err(|e| bad(e.to_string()))?;
        let mut b = Builder {
            engine: self,
            opts,
            df: &df,
            out,
            ignore,
            build_args,
            global,
            built: vec![None; df.stages.len()],
            step_no: 0,
            total: 0,
            epoch,
            platform,
            compression,
            downloads: Default::default(),
        };
        let plan = plan::plan(&df, target, &|w| {
            expand::word(w, &|n| b.global.get(n).cloned(), df.escape)
        })
        .map_err(|e| match e {
            plan::PlanError::NoSuchStage { line, .. } => {
                bad(format!("{}:{line}: {e}", opts.dockerfile_name))
            }
            e => bad(e.to_string()),
        })?;
        b.total = plan.total;
        for wave in &plan.waves {
            b.wave(wave, &plan.first_step)?;
        }
        let last = b.built[target].clone().expect("target built");
        let mut rec = last.rec;
        let mut config = last.config;
        if !opts.labels.is_empty() {
            let labels = config
                .config
                .get_or_insert_with(Default::default)
                .labels
                .get_or_insert_with(BTreeMap::new);
            for l in &opts.labels {
                let (k, v) = l.split_once('=').unwrap_or((l, ""));
                labels.insert(k.to_string(), v.to_string());
            }
            config.created = Some(b.created());
            let id = self.put_child_image(rec.as_ref(), None, &config, &[])?;
            rec = self.store.image(&id)?;
        }
        let rec = match rec {
            Some(r) => r,
            // FROM scratch with nothing else: an image with no layers.
            None => {
                config.created = Some(b.created());
                let id = self.put_child_image(None, None, &config, &[])?;
                self.store
                    .image(&id)?
                    .ok_or_else(|| Error::Internal("image vanished".into()))?
            }
        };
        for t in &tags {
            self.tag_image(&rec.id.to_string(), t)?;
        }
        writeln!(b.out, "Successfully built {}", &rec.id.hex()[..12]).ok();
        for t in &opts.tags {
            writeln!(b.out, "Successfully tagged {}", crate::images::familiar(t)).ok();
        }
        Ok(rec.id)
    }
}

impl Engine {
    /// Unpacks a tar (plain or gzip) build context into scratch space that
    /// lives as long as this process.
    pub fn unpack_context<R: Read>(&self, r: R) -> Result<PathBuf> {
        let dir = self.store.scratch_dir("context-")?;
        let r = berth_layer::decompress(r)?;
        berth_layer::extract(
            r,
            &dir,
            &berth_layer::ExtractOptions {
                whiteouts: berth_layer::Whiteouts::Apply,
                same_owner: true,
            },
        )?;
        Ok(dir)
    }

    /// An empty context, for a Dockerfile given alone on stdin.
    pub fn empty_context(&self) -> Result<PathBuf> {
        Ok(self.store.scratch_dir("context-")?)
    }

    /// `builder prune`: forgets cached steps, removes step images nothing
    /// uses any more and the RUN cache mounts. Returns the entries dropped
    /// and the bytes reclaimed.
    pub fn prune_build_cache(&self) -> Result<(usize, u64)> {
        let entries = self.store.cache_clear()?;
        let mounts = self.root().join("build-cache-mounts");
        let mount_bytes = crate::containers::dir_size(&mounts);
        let _ = fs::remove_dir_all(&mounts);
        let (_, bytes) = self.prune_images(false)?;
        Ok((entries, bytes + mount_bytes))
    }
}

struct Seed<'a> {
    opts: &'a BuildOptions,
    df: &'a Dockerfile,
    ignore: Matcher,
    build_args: HashMap<String, String>,
    global: HashMap<String, String>,
    built: Vec<Option<Built>>,
    total: usize,
    epoch: Option<u64>,
    platform: Platform,
    compression: Compression,
}

impl<'a> Seed<'a> {
    fn builder<'b>(self, engine: &'b Engine, out: &'b mut dyn Write) -> Builder<'b>
    where
        'a: 'b,
    {
        Builder {
            engine,
            opts: self.opts,
            df: self.df,
            out,
            ignore: self.ignore,
            build_args: self.build_args,
            global: self.global,
            built: self.built,
            step_no: 0,
            total: self.total,
            epoch: self.epoch,
            platform: self.platform,
            compression: self.compression,
            downloads: Default::default(),
        }
    }
}

impl<'a> Builder<'a> {
    fn created(&self) -> String {
        match self.epoch {
            Some(e) => time::format_rfc3339(e as i64 * 1_000_000_000),
            None => time::format_rfc3339(time::now_nanos()),
        }
    }

    fn stage_index(&self, name: &str, before: usize) -> Option<usize> {
        plan::stage_index(self.df, name, before)
    }

    fn global_word(&self, w: &str) -> Result<String> {
        expand::word(w, &|n| self.global.get(n).cloned(), self.df.escape)
            .map_err(|e| bad(e.to_string()))
    }

    /// What a builder on another thread starts from: everything but the
    /// engine (the store's SQLite handle stays on its thread) and output.
    fn seed(&self) -> Seed<'a> {
        Seed {
            opts: self.opts,
            df: self.df,
            ignore: self.ignore.clone(),
            build_args: self.build_args.clone(),
            global: self.global.clone(),
            built: self.built.clone(),
            total: self.total,
            epoch: self.epoch,
            platform: self.platform.clone(),
            compression: self.compression,
        }
    }

    /// Builds the stages of one wave, in parallel when there are several;
    /// their output is shown stage by stage, in Dockerfile order.
    fn wave(&mut self, wave: &[usize], first_step: &BTreeMap<usize, usize>) -> Result<()> {
        if let [i] = wave {
            self.step_no = first_step[i];
            let built = self.stage(*i)?;
            self.built[*i] = Some(built);
            return Ok(());
        }
        let engine_opts = EngineOptions {
            root: self.engine.root().to_path_buf(),
            runroot: self.engine.runroot().to_path_buf(),
        };
        let results: Vec<(usize, Result<Built>, Vec<u8>)> = std::thread::scope(|sc| {
            let handles: Vec<_> = wave
                .iter()
                .map(|&i| {
                    let engine_opts = engine_opts.clone();
                    let start = first_step[&i];
                    let seed = self.seed();
                    sc.spawn(move || {
                        let mut buf = Vec::new();
                        let r = Engine::open(engine_opts).and_then(|engine| {
                            let mut b = seed.builder(&engine, &mut buf);
                            b.step_no = start;
                            b.stage(i)
                        });
                        (i, r, buf)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("stage thread panicked"))
                .collect()
        });
        let mut first_err = None;
        for (i, r, buf) in results {
            let _ = self.out.write_all(&buf);
            match r {
                Ok(b) => self.built[i] = Some(b),
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    fn say(&mut self, line: &str) {
        let _ = writeln!(self.out, "{line}");
    }

    fn stage(&mut self, i: usize) -> Result<Built> {
        let df = self.df;
        let stage: &Stage = &df.stages[i];
        self.step_no += 1;
        // Docker's legacy builder's lines, which tutorials show and
        // scripts grep for.
        let header = format!("Step {}/{} : {}", self.step_no, self.total, stage.text);
        self.say(&header);
        let base = self.global_word(&stage.base)?;
        let mut st = if base.eq_ignore_ascii_case("scratch") {
            StageState {
                rec: None,
                config: ImageConfig {
                    architecture: self.platform.architecture.clone(),
                    os: self.platform.os.clone(),
                    variant: self.platform.variant.clone(),
                    rootfs: RootFs {
                        typ: "layers".into(),
                        diff_ids: vec![],
                    },
                    ..Default::default()
                },
                args: BTreeMap::new(),
                cmd_set: false,
            }
        } else if let Some(j) = self.stage_index(&base, i) {
            let b = self.built[j]
                .clone()
                .ok_or_else(|| Error::Internal(format!("stage {j} not built")))?;
            StageState {
                rec: b.rec,
                config: b.config,
                args: BTreeMap::new(),
                cmd_set: false,
            }
        } else {
            let rec = match self.engine.resolve_image(&base) {
                Ok(r) if !self.opts.pull => r,
                Ok(_) | Err(Error::NoSuchImage(_)) => {
                    // Missing (or --pull): from its registry, as Docker.
                    let mut lines = Vec::new();
                    let pulled = self.engine.pull(
                        &base,
                        &crate::PullOptions {
                            platform: self.opts.platform.clone(),
                            ..Default::default()
                        },
                        &mut |e| {
                            if let crate::PullEvent::PullComplete(id) = e {
                                lines.push(format!("{id}: Pull complete"));
                            }
                        },
                    );
                    for l in &lines {
                        self.say(l);
                    }
                    let pulled = pulled.map_err(|e| {
                        bad(format!(
                            "{}:{}: FROM {base}: {e}",
                            self.opts.dockerfile_name, stage.line
                        ))
                    })?;
                    self.say(&format!("Pulled {}", pulled.reference));
                    self.engine.resolve_image(&pulled.reference)?
                }
                Err(e) => return Err(e),
            };
            let config = self.engine.image_config(&rec)?;
            StageState {
                rec: Some(rec),
                config,
                args: BTreeMap::new(),
                cmd_set: false,
            }
        };
        if let Some(r) = &st.rec {
            self.say(&format!(" ---> {}", &r.id.hex()[..12]));
        }
        // A base image's ONBUILD triggers run first, and are not inherited.
        let triggers = st
            .config
            .config
            .as_mut()
            .and_then(|c| c.on_build.take())
            .unwrap_or_default();
        for t in triggers {
            let step =
                berth_build::parse_trigger(&t).map_err(|e| bad(format!("ONBUILD {t}: {e}")))?;
            self.say(&format!("# Executing build trigger: {}", step.text));
            self.step(i, &mut st, &step)?;
        }
        for step in &stage.steps {
            self.step_no += 1;
            let header = format!("Step {}/{} : {}", self.step_no, self.total, step.text);
            self.say(&header);
            self.step(i, &mut st, step)?;
        }
        Ok(Built {
            rec: st.rec,
            config: st.config,
        })
    }

    fn where_(&self, step: &Step) -> String {
        format!("{}:{}", self.opts.dockerfile_name, step.line)
    }

    fn word(&self, st: &StageState, w: &str, step: &Step) -> Result<String> {
        let vars = st.vars();
        expand::word(w, &|n| vars.get(n).cloned(), self.df.escape)
            .map_err(|e| bad(format!("{}: {e}", self.where_(step))))
    }

    fn words(&self, st: &StageState, w: &str, step: &Step) -> Result<Vec<String>> {
        let vars = st.vars();
        expand::words(w, &|n| vars.get(n).cloned(), self.df.escape)
            .map_err(|e| bad(format!("{}: {e}", self.where_(step))))
    }

    /// One step: from the cache or for real, as `berth_build::exec`
    /// decides.
    fn step(&mut self, stage: usize, st: &mut StageState, step: &Step) -> Result<()> {
        let use_cache = !self.opts.no_cache;
        let mut runner = StageRunner { b: self, stage, st };
        match exec::run_step(&mut runner, step, use_cache)? {
            Outcome::Declared => {}
            Outcome::Cached(id) => {
                self.say(" ---> Using cache");
                self.say(&format!(" ---> {}", &id.hex()[..12]));
            }
            Outcome::Built(id) => self.say(&format!(" ---> {}", &id.hex()[..12])),
        }
        Ok(())
    }

    /// ARG only changes what later steps see; it makes no image.
    fn declare_args(&self, st: &mut StageState, step: &Step) -> Result<()> {
        let Inst::Arg(raw) = &step.inst else {
            return Ok(());
        };
        for (k, v) in expand::key_values(self.words(st, raw, step)?) {
            let value = self
                .build_args
                .get(&k)
                .cloned()
                .or(v)
                .or_else(|| self.global.get(&k).cloned());
            st.args.insert(k, value.unwrap_or_default());
        }
        Ok(())
    }

    /// Makes the image cached under `key` the stage's state, if the store
    /// still has it.
    fn use_cached(&self, st: &mut StageState, key: &str, step: &Step) -> Result<Option<Digest>> {
        let Some(id) = self.engine.store.cache_get(key)? else {
            return Ok(None);
        };
        let Some(rec) = self.engine.store.image(&id)? else {
            return Ok(None);
        };
        st.config = self.engine.image_config(&rec)?;
        st.rec = Some(rec);
        if matches!(step.inst, Inst::Cmd(_)) {
            st.cmd_set = true;
        }
        Ok(Some(id))
    }

    /// The step's cache key: its parent, the instruction as parsed, and
    /// what it reads besides: ARG values (COPY reads none), the command
    /// as run, and for COPY/ADD its expanded paths and a digest of its
    /// sources (see `berth_build::cache` for the encoding).
    fn cache_key(&self, st: &StageState, step: &Step) -> Result<String> {
        let parent = st
            .rec
            .as_ref()
            .map(|r| r.id.to_string())
            .unwrap_or_else(|| "scratch".into());
        let mut key = CacheKey::new(&parent);
        key.step(&step.inst);
        match &step.inst {
            Inst::Copy(c) => self.copy_inputs(st, c, step, &mut key)?,
            Inst::Run { cmd, .. } => {
                key.pairs("args", &st.args)
                    .list("argv", self.run_argv(st, cmd));
            }
            _ => {
                key.pairs("args", &st.args);
            }
        }
        Ok(key.digest())
    }

    fn run_argv(&self, st: &StageState, cmd: &CmdForm) -> Vec<String> {
        match cmd {
            CmdForm::Exec(v) => v.clone(),
            CmdForm::Shell(s) => {
                let mut v = st.shell();
                v.push(s.clone());
                v
            }
        }
    }

    fn history(&self, st: &mut StageState, created_by: String, empty: bool) {
        st.config.history.push(History {
            created: Some(self.created()),
            created_by: Some(created_by),
            comment: Some("berth build".into()),
            empty_layer: empty,
            ..Default::default()
        });
    }

    /// Runs one step for real and records its image.
    fn execute(&mut self, stage: usize, st: &mut StageState, step: &Step) -> Result<Digest> {
        let mut layer = None;
        let shown = step.text.clone();
        match &step.inst {
            Inst::Run {
                cmd,
                mounts,
                network,
            } => {
                let created_by = format!("RUN {}", self.run_argv(st, cmd).join(" "));
                layer = Some(self.run_step(stage, st, step, cmd, mounts, network.as_deref())?);
                self.history(st, created_by, false);
            }
            Inst::Copy(c) => {
                layer = Some(self.copy_step(st, c, step)?);
                self.history(st, shown, false);
            }
            Inst::Env(raw) => {
                let words = self.words(st, raw, step)?;
                let pairs: Vec<(String, String)> =
                    if words.first().is_some_and(|w| !w.contains('=')) {
                        // Legacy `ENV KEY value with spaces`.
                        let (k, rest) = raw
                            .trim()
                            .split_once(char::is_whitespace)
                            .unwrap_or((raw.trim(), ""));
                        vec![(k.to_string(), self.word(st, rest.trim(), step)?)]
                    } else {
                        expand::key_values(words)
                            .into_iter()
                            .map(|(k, v)| (k, v.unwrap_or_default()))
                            .collect()
                    };
                let mut shown = Vec::new();
                for (k, v) in pairs {
                    shown.push(format!("{k}={v}"));
                    st.cfg().set_env(&k, &v);
                }
                self.history(st, format!("ENV {}", shown.join(" ")), true);
            }
            Inst::Label(raw) => {
                let pairs = expand::key_values(self.words(st, raw, step)?);
                let labels = st.cfg().labels.get_or_insert_with(BTreeMap::new);
                for (k, v) in pairs {
                    labels.insert(k, v.unwrap_or_default());
                }
                self.history(st, shown, true);
            }
            Inst::Workdir(raw) => {
                let w = self.word(st, raw, step)?;
                let dir = join_workdir(&st.workdir(), &w);
                st.cfg().working_dir = Some(dir.clone());
                self.history(st, format!("WORKDIR {dir}"), true);
            }
            Inst::Expose(raw) => {
                let mut ports = Vec::new();
                for r in raw {
                    ports.extend(self.words(st, r, step)?);
                }
                let line = format!("EXPOSE {}", ports.join(" "));
                crate::changes::apply(st.cfg(), &line)
                    .map_err(|e| bad(format!("{}: {e}", self.where_(step))))?;
                self.history(st, line, true);
            }
            Inst::Cmd(c) => {
                let v = self.run_argv(st, c);
                st.cfg().cmd = Some(v);
                st.cmd_set = true;
                self.history(st, shown, true);
            }
            Inst::Entrypoint(c) => {
                let v = self.run_argv(st, c);
                let cmd_set = st.cmd_set;
                let cfg = st.cfg();
                cfg.entrypoint = Some(v);
                // Docker: an ENTRYPOINT resets a CMD inherited from the base.
                if !cmd_set {
                    cfg.cmd = None;
                }
                self.history(st, shown, true);
            }
            Inst::User(raw) => {
                let u = self.word(st, raw, step)?;
                st.cfg().user = Some(u);
                self.history(st, shown, true);
            }
            Inst::Volume(raw) => {
                let mut vols = Vec::new();
                for r in raw {
                    vols.push(self.word(st, r, step)?);
                }
                let v = st.cfg().volumes.get_or_insert_with(BTreeMap::new);
                for p in vols {
                    if p.is_empty() {
                        return Err(bad(format!(
                            "{}: VOLUME specified can not be an empty string",
                            self.where_(step)
                        )));
                    }
                    v.insert(p, serde_json::json!({}));
                }
                self.history(st, shown, true);
            }
            Inst::Shell(v) => {
                if v.is_empty() {
                    return Err(bad(format!(
                        "{}: SHELL requires the arguments to be in JSON form",
                        self.where_(step)
                    )));
                }
                st.cfg().shell = Some(v.clone());
                self.history(st, shown, true);
            }
            Inst::Stopsignal(raw) => {
                let s = self.word(st, raw, step)?;
                crate::containers::lifecycle::parse_signal(&s)
                    .map_err(|e| bad(format!("{}: {e}", self.where_(step))))?;
                st.cfg().stop_signal = Some(s);
                self.history(st, shown, true);
            }
            Inst::Healthcheck(h) => {
                let dur = |v: &Option<String>, what: &str| -> Result<Option<i64>> {
                    v.as_deref()
                        .map(|s| {
                            parse_duration(s).ok_or_else(|| {
                                bad(format!(
                                    "{}: HEALTHCHECK --{what}={s}: not a duration",
                                    self.where_(step)
                                ))
                            })
                        })
                        .transpose()
                };
                let hc = HealthConfig {
                    test: Some(h.test.clone()),
                    interval: dur(&h.interval, "interval")?,
                    timeout: dur(&h.timeout, "timeout")?,
                    start_period: dur(&h.start_period, "start-period")?,
                    start_interval: dur(&h.start_interval, "start-interval")?,
                    retries: h
                        .retries
                        .as_deref()
                        .map(|r| {
                            r.parse::<i64>().map_err(|_| {
                                bad(format!(
                                    "{}: HEALTHCHECK --retries={r}: not a number",
                                    self.where_(step)
                                ))
                            })
                        })
                        .transpose()?,
                };
                st.cfg().healthcheck = Some(hc);
                self.history(st, shown, true);
            }
            Inst::Onbuild(t) => {
                st.cfg()
                    .on_build
                    .get_or_insert_with(Vec::new)
                    .push(t.clone());
                self.history(st, shown, true);
            }
            Inst::Maintainer(m) => {
                st.config.author = Some(m.clone());
                self.history(st, shown, true);
            }
            Inst::Arg(_) => unreachable!("ARG is declared, not executed"),
        }
        if let Some(l) = &layer {
            st.config.rootfs.diff_ids.push(l.diff_id.clone());
        }
        st.config.created = Some(self.created());
        let _adding = self.engine.adding()?;
        let id = self
            .engine
            .put_child_image(st.rec.as_ref(), layer, &st.config, &[])?;
        st.rec = self.engine.store.image(&id)?;
        Ok(id)
    }

    fn layer_opts(&self) -> WriteOptions {
        WriteOptions {
            mtime: Some(self.epoch.unwrap_or(0)),
        }
    }

    fn run_step(
        &mut self,
        stage: usize,
        st: &StageState,
        step: &Step,
        cmd: &CmdForm,
        mounts: &[String],
        network: Option<&str>,
    ) -> Result<berth_store::LayerRef> {
        let Some(rec) = &st.rec else {
            return Err(bad(format!(
                "{}: {}: there is nothing to run in an empty (scratch) filesystem",
                self.where_(step),
                step.text
            )));
        };
        let argv = self.run_argv(st, cmd);
        let mut env: Vec<String> = Vec::new();
        let image_env = st.env();
        let in_env = |k: &str| {
            image_env
                .iter()
                .any(|e| e.split_once('=').map(|(a, _)| a) == Some(k))
        };
        for (k, v) in &st.args {
            if !in_env(k) {
                env.push(format!("{k}={v}"));
            }
        }
        for k in PROXY_ARGS {
            if let Some(v) = self.build_args.get(k) {
                env.push(format!("{k}={v}"));
            }
        }
        // Layers carry SOURCE_DATE_EPOCH (0 unless given) as every mtime;
        // tools that write timestamps into files must know, or what they
        // write goes stale: Python's py_compile then writes hash-checked
        // .pyc files, which stay valid at run time (no recompiling at each
        // start, nothing written to the container), as BuildKit does when
        // given the variable.
        let epoch_set =
            in_env("SOURCE_DATE_EPOCH") || env.iter().any(|e| e.starts_with("SOURCE_DATE_EPOCH="));
        if !epoch_set {
            env.push(format!("SOURCE_DATE_EPOCH={}", self.epoch.unwrap_or(0)));
        }
        let (mount_specs, exclude, _mounted) = self.run_mounts(stage, st, step, mounts)?;
        let opts = CreateOptions {
            image: rec.id.to_string(),
            cmd: argv.clone(),
            entrypoint: Some(String::new()),
            env,
            workdir: Some(st.workdir()),
            user: st
                .config
                .config
                .as_ref()
                .and_then(|c| c.user.clone())
                .filter(|u| !u.is_empty()),
            attach: true,
            network: Some(
                network
                    .map(str::to_string)
                    .or_else(|| self.opts.network.clone())
                    .unwrap_or_else(|| "host".into()),
            ),
            mounts: mount_specs,
            labels: vec!["berth.build=1".into()],
            ..Default::default()
        };
        let e = self.engine;
        let c = e.create_container(&opts)?;
        let _ = writeln!(self.out, " ---> Running in {}", c.short_id());
        let result = (|| -> Result<berth_store::LayerRef> {
            let (_, att) = e.start_container(
                &c.id,
                Some(AttachOptions {
                    stdin: false,
                    stdout: true,
                    stderr: true,
                }),
            )?;
            let mut att = att.ok_or_else(|| Error::Internal("no attach stream".into()))?;
            let mut code = None;
            while let Some(f) = att
                .next_frame()
                .map_err(|e| Error::Internal(format!("RUN output: {e}")))?
            {
                match f {
                    Frame::Stdout(b) | Frame::Stderr(b) => {
                        let _ = self.out.write_all(&b);
                    }
                    Frame::Event(Event::Exit { code: c }) => {
                        code = Some(c);
                        break;
                    }
                    Frame::Event(Event::Error { message, code: c }) => {
                        let _ = writeln!(self.out, "{message}");
                        code = Some(c);
                        break;
                    }
                    Frame::Event(_) => {}
                }
            }
            let _ = self.out.flush();
            let code = code.unwrap_or(-1);
            if code != 0 {
                let debug = st
                    .rec
                    .as_ref()
                    .map(|r| format!("\nto debug: berth run -it --rm {} sh", &r.id.hex()[..12]))
                    .unwrap_or_default();
                // Docker's line first (scripts match it), then where and
                // how to look.
                return Err(Error::BuildFailed(format!(
                    "The command '{}' returned a non-zero code: {code}\nat {}: {}{debug}",
                    argv.join(" "),
                    self.where_(step),
                    step.text,
                )));
            }
            let c = e.container(&c.id)?;
            let (upper, items) = e.changed_items(&c, &exclude)?;
            let _adding = e.adding()?;
            e.store_layer(&upper, &items, &self.layer_opts(), self.compression)
        })();
        let _ = e.remove_container(&c.id, true, true);
        if result.is_ok() {
            let _ = writeln!(self.out, "Removing intermediate container {}", c.short_id());
        }
        result
    }

    /// `RUN --mount` options as `--mount` specs for the container, and the
    /// targets to keep out of the layer.
    fn run_mounts(
        &self,
        stage: usize,
        st: &StageState,
        step: &Step,
        mounts: &[String],
    ) -> Result<(Vec<String>, Vec<PathBuf>, Vec<Scratch>)> {
        let mut specs = Vec::new();
        let mut exclude = Vec::new();
        // Stages and images bound with from= stay mounted until the RUN ends.
        let mut guards = Vec::new();
        for m in mounts {
            let mut kv: BTreeMap<String, String> = BTreeMap::new();
            for part in m.split(',') {
                let (k, v) = part.split_once('=').unwrap_or((part, "true"));
                kv.insert(k.to_ascii_lowercase(), v.to_string());
            }
            let typ = kv.get("type").cloned().unwrap_or_else(|| "bind".into());
            let target = kv
                .get("target")
                .or(kv.get("dst"))
                .or(kv.get("destination"))
                .cloned();
            let need_target = |t: Option<String>| {
                t.ok_or_else(|| {
                    bad(format!(
                        "{}: RUN --mount={m}: a target is required",
                        self.where_(step)
                    ))
                })
            };
            let spec = match typ.as_str() {
                "tmpfs" => {
                    let t = join_workdir(&st.workdir(), &need_target(target)?);
                    exclude.push(PathBuf::from(t.trim_start_matches('/')));
                    format!("type=tmpfs,target={t}")
                }
                "cache" => {
                    let t = join_workdir(&st.workdir(), &need_target(target)?);
                    let id = kv.get("id").cloned().unwrap_or_else(|| t.clone());
                    let dir = self
                        .engine
                        .root()
                        .join("build-cache-mounts")
                        .join(Digest::sha256_of(id.as_bytes()).hex());
                    fs::create_dir_all(&dir).map_err(Error::io("create", &dir))?;
                    exclude.push(PathBuf::from(t.trim_start_matches('/')));
                    format!("type=bind,source={},target={t}", dir.display())
                }
                "bind" => {
                    let t = join_workdir(&st.workdir(), &need_target(target)?);
                    let src = kv
                        .get("source")
                        .or(kv.get("src"))
                        .cloned()
                        .unwrap_or_default();
                    if kv.get("rw").is_some_and(|v| v == "true") || kv.contains_key("readwrite") {
                        return Err(bad(format!(
                            "{}: RUN --mount=type=bind,rw is not supported yet (writes would reach the source)",
                            self.where_(step)
                        )));
                    }
                    let host = match kv.get("from") {
                        Some(f) => {
                            let (root, guard) = self.source_root(stage, f, step)?;
                            guards.extend(guard);
                            resolve_in_root(&root, &src).map_err(Error::io("resolve", &root))?
                        }
                        None => {
                            let rel = clean_rel(&src).ok_or_else(|| {
                                bad(format!(
                                    "{}: RUN --mount: {src} is outside the build context",
                                    self.where_(step)
                                ))
                            })?;
                            self.opts.context.join(rel)
                        }
                    };
                    exclude.push(PathBuf::from(t.trim_start_matches('/')));
                    format!("type=bind,source={},target={t},readonly", host.display())
                }
                "secret" => {
                    let id = kv.get("id").cloned().unwrap_or_default();
                    let src = self.secret(&id).ok_or_else(|| {
                        bad(format!(
                            "{}: secret {id:?} was not given (--secret id={id},src=FILE)",
                            self.where_(step)
                        ))
                    })?;
                    let t = target.unwrap_or_else(|| format!("/run/secrets/{id}"));
                    exclude.push(PathBuf::from(t.trim_start_matches('/')));
                    format!("type=bind,source={},target={t},readonly", src.display())
                }
                other => {
                    return Err(bad(format!(
                        "{}: RUN --mount type {other:?} is not supported",
                        self.where_(step)
                    )))
                }
            };
            specs.push(spec);
        }
        Ok((specs, exclude, guards))
    }

    fn secret(&self, id: &str) -> Option<PathBuf> {
        for s in &self.opts.secrets {
            let mut sid = None;
            let mut src = None;
            for part in s.split(',') {
                match part.split_once('=') {
                    Some(("id", v)) => sid = Some(v.to_string()),
                    Some(("src" | "source", v)) => src = Some(PathBuf::from(v)),
                    _ => {}
                }
            }
            if sid.as_deref() == Some(id) {
                return src;
            }
        }
        None
    }

    /// The filesystem COPY --from reads: an earlier stage or an image,
    /// mounted read-only (kept alive by the returned guard).
    fn source_root(
        &self,
        stage: usize,
        from: &str,
        step: &Step,
    ) -> Result<(PathBuf, Option<Scratch>)> {
        let rec = match self.stage_index(from, stage) {
            Some(j) => self.built[j].as_ref().and_then(|b| b.rec.clone()),
            None => {
                if self
                    .df
                    .stages
                    .iter()
                    .any(|s| s.name.as_deref() == Some(from.to_ascii_lowercase().as_str()))
                {
                    return Err(bad(format!(
                        "{}: stage {from:?} comes after this one",
                        self.where_(step)
                    )));
                }
                Some(self.engine.resolve_image(from).map_err(|_| {
                    bad(format!(
                        "{}: --from={from}: no stage or image by that name",
                        self.where_(step)
                    ))
                })?)
            }
        };
        let lowers = match &rec {
            Some(r) => {
                self.engine.ensure_layers(&r.id.to_string())?;
                self.engine.image_layer_dirs(&r.id.to_string())?
            }
            None => Vec::new(),
        };
        let s = self.mount_scratch(lowers)?;
        Ok((s.target.clone(), Some(s)))
    }

    fn mount_scratch(&self, lowers: Vec<PathBuf>) -> Result<Scratch> {
        let e = self.engine;
        let dir = e.store.scratch_dir("build-")?;
        let run = e.runroot().join("build");
        fs::create_dir_all(&run).map_err(Error::io("create", &run))?;
        let target = run.join(format!(
            "{}-{}",
            std::process::id(),
            dir.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        ));
        let mut s = Scratch {
            dir: dir.clone(),
            target: target.clone(),
            lowers: lowers.clone(),
            mounted: false,
        };
        e.mount_overlay(lowers, &dir, &target)?;
        s.mounted = true;
        Ok(s)
    }

    /// Context files a source pattern names: (path relative to the context).
    fn context_matches(&self, pattern: &str, step: &Step, what: &str) -> Result<Vec<PathBuf>> {
        let rel = clean_rel(pattern).ok_or_else(|| {
            bad(format!(
                "{}: {what} failed: forbidden path outside the build context: {pattern}",
                self.where_(step)
            ))
        })?;
        let rel_s = rel.to_string_lossy().into_owned();
        if !has_glob(&rel_s) {
            let p = self.opts.context.join(&rel);
            if rel_s.is_empty()
                || (fs::symlink_metadata(&p).is_ok() && !self.ignore.excluded(&rel_s))
            {
                return Ok(vec![rel]);
            }
            return Err(bad(format!(
                "{}: {what} failed: file not found in build context or excluded by .dockerignore: stat {pattern}: file does not exist",
                self.where_(step)
            )));
        }
        let m = Matcher::parse(&rel_s).map_err(|e| bad(format!("{}: {e}", self.where_(step))))?;
        let mut out = Vec::new();
        let mut todo = vec![PathBuf::new()];
        while let Some(d) = todo.pop() {
            let abs = self.opts.context.join(&d);
            let Ok(rd) = fs::read_dir(&abs) else { continue };
            let mut names: Vec<_> = rd.filter_map(|e| e.ok()).map(|e| e.file_name()).collect();
            names.sort();
            for n in names {
                let p = d.join(&n);
                let ps = p.to_string_lossy().into_owned();
                if self.ignore.excluded(&ps) {
                    continue;
                }
                if m.excluded(&ps) {
                    out.push(p);
                } else if abs.join(&n).is_dir()
                    && ps.matches('/').count() < rel_s.matches('/').count()
                {
                    todo.push(p);
                }
            }
        }
        out.sort();
        if out.is_empty() {
            return Err(bad(format!(
                "{}: {what} failed: no source files were specified (nothing matches {pattern})",
                self.where_(step)
            )));
        }
        Ok(out)
    }

    /// Adds to a COPY/ADD key its expanded paths and options and a digest
    /// of its sources: the image a `--from` names, or the context files
    /// (name, mode, content) and downloads it reads.
    fn copy_inputs(
        &self,
        st: &StageState,
        c: &CopySpec,
        step: &Step,
        key: &mut CacheKey,
    ) -> Result<()> {
        let what = if c.add { "ADD" } else { "COPY" };
        let vars = st.vars();
        let mut srcs = Vec::new();
        for s in &c.srcs {
            srcs.push(match s {
                Src::Path(p) => self.word(st, p, step)?,
                Src::HereDoc { name, body, expand } => {
                    let body = if *expand {
                        expand_heredoc(body, &vars)
                    } else {
                        body.clone()
                    };
                    format!("<<{name}:{}", Digest::sha256_of(body.as_bytes()))
                }
            });
        }
        let dest = self.word(st, &c.dest, step)?;
        let from = c
            .from
            .as_deref()
            .map(|f| self.word(st, f, step))
            .transpose()?;
        let chown = c
            .chown
            .as_deref()
            .map(|u| self.word(st, u, step))
            .transpose()?;
        key.list("srcs", &srcs)
            .field("dest", &dest)
            .field("workdir", &st.workdir())
            .opt("from", from.as_deref())
            .opt("chown", chown.as_deref());
        let mut h = Hasher::sha256();
        if let Some(f) = &from {
            // An image or stage is content-addressed already.
            let id = match self.stage_index(f, self.current_stage(step)) {
                Some(j) => self.built[j]
                    .as_ref()
                    .and_then(|b| b.rec.as_ref().map(|r| r.id.to_string()))
                    .unwrap_or_else(|| "scratch".into()),
                None => self
                    .engine
                    .resolve_image(f)
                    .map(|r| r.id.to_string())
                    .unwrap_or_default(),
            };
            h.update(id.as_bytes());
        } else {
            for (s, src) in srcs.iter().zip(&c.srcs) {
                if let Src::Path(_) = src {
                    if c.add && is_url(s) {
                        let (_, digest) = self.download(s, c.checksum.as_deref(), step)?;
                        h.update(s.as_bytes());
                        h.update(digest.to_string().as_bytes());
                        continue;
                    }
                    for rel in self.context_matches(s, step, what)? {
                        self.hash_tree(&rel, &mut h)?;
                    }
                }
            }
        }
        key.field("inputs", &h.finish().to_string());
        Ok(())
    }

    /// Digests a context path by name, mode and content (never mtime).
    fn hash_tree(&self, rel: &Path, h: &mut Hasher) -> Result<()> {
        let abs = self.opts.context.join(rel);
        let md = fs::symlink_metadata(&abs).map_err(Error::io("stat", &abs))?;
        h.update(rel.as_os_str().as_encoded_bytes());
        h.update(format!("\0{:o}\0", md.mode()).as_bytes());
        if md.is_dir() {
            let mut names: Vec<_> = fs::read_dir(&abs)
                .map_err(Error::io("read", &abs))?
                .filter_map(|e| e.ok())
                .map(|e| e.file_name())
                .collect();
            names.sort();
            for n in names {
                let r = rel.join(&n);
                if !self.ignore.excluded(&r.to_string_lossy()) {
                    self.hash_tree(&r, h)?;
                }
            }
        } else if md.file_type().is_symlink() {
            let t = fs::read_link(&abs).map_err(Error::io("readlink", &abs))?;
            h.update(t.as_os_str().as_encoded_bytes());
        } else if md.is_file() {
            let mut f = fs::File::open(&abs).map_err(Error::io("open", &abs))?;
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let n = f.read(&mut buf).map_err(Error::io("read", &abs))?;
                if n == 0 {
                    break;
                }
                h.update(&buf[..n]);
            }
        }
        h.update(b"\n");
        Ok(())
    }

    fn copy_step(
        &mut self,
        st: &StageState,
        c: &CopySpec,
        step: &Step,
    ) -> Result<berth_store::LayerRef> {
        let what = if c.add { "ADD" } else { "COPY" };
        let stage = self.current_stage(step);
        let lowers = match &st.rec {
            Some(r) => {
                self.engine.ensure_layers(&r.id.to_string())?;
                self.engine.image_layer_dirs(&r.id.to_string())?
            }
            None => Vec::new(),
        };
        let mut scratch = self.mount_scratch(lowers)?;
        let root = scratch.target.clone();
        let (src_root, _guard) = match &c.from {
            Some(f) => {
                let f = self.word(st, f, step)?;
                let (p, g) = self.source_root(stage, &f, step)?;
                (p, g)
            }
            None => (self.opts.context.clone(), None),
        };
        let owner = match &c.chown {
            Some(spec) => {
                let spec = self.word(st, spec, step)?;
                let u = rootfs::lookup_user(&root, &spec).map_err(|e| {
                    bad(format!("{}: {what} --chown={spec}: {e}", self.where_(step)))
                })?;
                (u.uid, u.gid)
            }
            None => (0, 0),
        };
        let chmod = c
            .chmod
            .as_deref()
            .map(|m| {
                u32::from_str_radix(m, 8)
                    .ok()
                    .filter(|m| *m <= 0o7777)
                    .ok_or_else(|| {
                        bad(format!(
                            "{}: {what} --chmod={m}: expected an octal mode",
                            self.where_(step)
                        ))
                    })
            })
            .transpose()?;
        let dest = join_workdir(&st.workdir(), &self.word(st, &c.dest, step)?);
        let vars = st.vars();
        // WORKDIR makes its directory, as Docker's does: `WORKDIR /app`
        // then `COPY requirements.txt /app` copies into /app, never over it.
        let workdir = st.workdir();
        if workdir != "/" {
            let dir = resolve_in_root(&root, &workdir).map_err(Error::io("resolve", &root))?;
            if fs::symlink_metadata(&dir).is_err() {
                fs::create_dir_all(&dir).map_err(Error::io("create", &dir))?;
            }
        }

        // (source on the host, name it keeps when copied into a directory)
        let mut sources: Vec<(Option<PathBuf>, String, Option<String>)> = Vec::new();
        let mut globbed = false;
        // Remote files are copied as they are, never unpacked (Docker's rule).
        let mut downloaded: HashSet<PathBuf> = HashSet::new();
        for s in &c.srcs {
            match s {
                Src::HereDoc { name, body, expand } => {
                    let body = if *expand {
                        expand_heredoc(body, &vars)
                    } else {
                        body.clone()
                    };
                    sources.push((None, name.clone(), Some(body)));
                }
                Src::Path(p) => {
                    let p = self.word(st, p, step)?;
                    if c.add && is_url(&p) {
                        let (file, _) = self.download(&p, c.checksum.as_deref(), step)?;
                        let name = p
                            .split(['?', '#'])
                            .next()
                            .and_then(|u| u.rsplit('/').next())
                            .filter(|n| !n.is_empty())
                            .unwrap_or("index.html")
                            .to_string();
                        downloaded.insert(file.clone());
                        sources.push((Some(file), name, None));
                        continue;
                    }
                    globbed |= has_glob(&p);
                    if c.from.is_some() {
                        let host = resolve_in_root(&src_root, &p)
                            .map_err(Error::io("resolve", &src_root))?;
                        if fs::symlink_metadata(&host).is_err() {
                            return Err(bad(format!(
                                "{}: {what} --from: {p}: no such file or directory in the source",
                                self.where_(step)
                            )));
                        }
                        let name = Path::new(&p)
                            .file_name()
                            .map(|n| n.to_string_lossy().into_owned())
                            .unwrap_or_default();
                        sources.push((Some(host), name, None));
                    } else {
                        for rel in self.context_matches(&p, step, what)? {
                            let name = rel
                                .file_name()
                                .map(|n| n.to_string_lossy().into_owned())
                                .unwrap_or_default();
                            sources.push((Some(src_root.join(&rel)), name, None));
                        }
                    }
                }
            }
        }
        let dest_dir_syntax = dest.ends_with('/') || dest.ends_with("/.") || dest == ".";
        if (sources.len() > 1 || globbed) && !dest_dir_syntax {
            let resolved = resolve_in_root(&root, &dest).map_err(Error::io("resolve", &root))?;
            if !resolved.is_dir() {
                return Err(bad(format!(
                    "{}: When using {what} with more than one source file, the destination must be a directory and end with a /",
                    self.where_(step)
                )));
            }
        }
        let copy = Copier {
            ignore: if c.from.is_none() {
                Some(&self.ignore)
            } else {
                None
            },
            context: &self.opts.context,
            owner,
            chmod,
        };
        for (host, name, body) in sources {
            let target_dir = resolve_in_root(&root, &dest).map_err(Error::io("resolve", &root))?;
            let dest_is_dir = dest_dir_syntax || target_dir.is_dir();
            match (host, body) {
                (None, Some(body)) => {
                    let path = if dest_is_dir {
                        target_dir.join(&name)
                    } else {
                        target_dir.clone()
                    };
                    copy.mkdirs(&root, path.parent().unwrap_or(&root))?;
                    fs::write(&path, body).map_err(Error::io("write", &path))?;
                    copy.finish(&path, 0o644)?;
                }
                (Some(src), _) => {
                    let md = fs::symlink_metadata(&src).map_err(Error::io("stat", &src))?;
                    if md.is_dir() {
                        copy.mkdirs(&root, &target_dir)?;
                        copy.tree(&src, &target_dir)?;
                    } else if c.add && !downloaded.contains(&src) && is_archive(&src) {
                        copy.mkdirs(&root, &target_dir)?;
                        let f = fs::File::open(&src).map_err(Error::io("open", &src))?;
                        let r = berth_layer::decompress(io::BufReader::new(f))?;
                        berth_layer::extract(
                            r,
                            &target_dir,
                            &berth_layer::ExtractOptions {
                                whiteouts: berth_layer::Whiteouts::Apply,
                                same_owner: true,
                            },
                        )?;
                    } else {
                        let path = if dest_is_dir {
                            target_dir.join(&name)
                        } else {
                            target_dir.clone()
                        };
                        copy.mkdirs(&root, path.parent().unwrap_or(&root))?;
                        copy.entry(&src, &path, &md)?;
                    }
                }
                (None, None) => {}
            }
        }
        scratch.unmount();
        let upper = scratch.dir.join("upper");
        let items = berth_layer::overlay_changes(&upper, &scratch.lowers, &[])?;
        let _adding = self.engine.adding()?;
        self.engine
            .store_layer(&upper, &items, &self.layer_opts(), self.compression)
    }

    /// Fetches an ADD URL once per build and checks `--checksum`.
    fn download(
        &self,
        url: &str,
        checksum: Option<&str>,
        step: &Step,
    ) -> Result<(PathBuf, Digest)> {
        if let Some(d) = self.downloads.borrow().get(url) {
            return Ok(d.clone());
        }
        let dir = self.engine.store.scratch_dir("add-")?;
        let file = dir.join("download");
        let digest = crate::fetch::http_get(url, &file)
            .map_err(|e| bad(format!("{}: {e}", self.where_(step))))?;
        if let Some(want) = checksum {
            let want: Digest = want.parse().map_err(|_| {
                bad(format!(
                    "{}: ADD --checksum={want}: expected sha256:<hex>",
                    self.where_(step)
                ))
            })?;
            if want != digest {
                return Err(bad(format!(
                    "{}: ADD {url}: checksum mismatch: expected {want}, got {digest}",
                    self.where_(step)
                )));
            }
        }
        self.downloads
            .borrow_mut()
            .insert(url.to_string(), (file.clone(), digest.clone()));
        Ok((file, digest))
    }

    fn current_stage(&self, step: &Step) -> usize {
        self.df
            .stages
            .iter()
            .rposition(|s| s.line <= step.line)
            .unwrap_or(0)
    }
}

/// The engine's side of `berth_build::exec`: one stage's state, and the
/// builder that holds the store, the context and the output.
struct StageRunner<'r, 'a> {
    b: &'r mut Builder<'a>,
    stage: usize,
    st: &'r mut StageState,
}

impl StepRunner for StageRunner<'_, '_> {
    type Image = Digest;
    type Error = Error;

    fn declare_args(&mut self, step: &Step) -> Result<()> {
        self.b.declare_args(self.st, step)
    }

    fn cache_key(&mut self, step: &Step) -> Result<String> {
        self.b.cache_key(self.st, step)
    }

    fn use_cached(&mut self, key: &str, step: &Step) -> Result<Option<Digest>> {
        self.b.use_cached(self.st, key, step)
    }

    fn run(&mut self, step: &Step) -> Result<Digest> {
        self.b.execute(self.stage, self.st, step)
    }

    fn remember(&mut self, key: &str, image: &Digest) -> Result<()> {
        Ok(self
            .b
            .engine
            .store
            .cache_put(key, image, time::now_nanos())?)
    }
}

fn is_url(s: &str) -> bool {
    s.starts_with("http://") || s.starts_with("https://")
}

/// A gzip or plain tar (ADD extracts those).
fn is_archive(p: &Path) -> bool {
    let mut head = [0u8; 512];
    let Ok(mut f) = fs::File::open(p) else {
        return false;
    };
    let n = f.read(&mut head).unwrap_or(0);
    if n >= 2 && head[..2] == [0x1f, 0x8b] {
        return true;
    }
    n >= 262 && &head[257..262] == b"ustar"
}

struct Copier<'a> {
    ignore: Option<&'a Matcher>,
    context: &'a Path,
    owner: (u32, u32),
    chmod: Option<u32>,
}

impl Copier<'_> {
    /// Creates missing directories down to `dir` (inside `root`), owned as
    /// the copied files will be.
    fn mkdirs(&self, root: &Path, dir: &Path) -> Result<()> {
        let rel = dir.strip_prefix(root).unwrap_or(dir);
        let mut cur = root.to_path_buf();
        for c in rel.components() {
            cur.push(c);
            if fs::symlink_metadata(&cur).is_err() {
                fs::create_dir(&cur).map_err(Error::io("create", &cur))?;
                fs::set_permissions(&cur, fs::Permissions::from_mode(0o755))
                    .map_err(Error::io("chmod", &cur))?;
                lchown(&cur, Some(self.owner.0), Some(self.owner.1))
                    .map_err(Error::io("chown", &cur))?;
            }
        }
        Ok(())
    }

    fn finish(&self, path: &Path, mode: u32) -> Result<()> {
        lchown(path, Some(self.owner.0), Some(self.owner.1)).map_err(Error::io("chown", path))?;
        let mode = self.chmod.unwrap_or(mode & 0o7777);
        fs::set_permissions(path, fs::Permissions::from_mode(mode))
            .map_err(Error::io("chmod", path))
    }

    fn entry(&self, src: &Path, dst: &Path, md: &fs::Metadata) -> Result<()> {
        if let Ok(old) = fs::symlink_metadata(dst) {
            if !old.is_dir() || !md.is_dir() {
                if old.is_dir() {
                    fs::remove_dir_all(dst).map_err(Error::io("replace", dst))?;
                } else {
                    fs::remove_file(dst).map_err(Error::io("replace", dst))?;
                }
            }
        }
        let ft = md.file_type();
        if ft.is_symlink() {
            let t = fs::read_link(src).map_err(Error::io("readlink", src))?;
            symlink(&t, dst).map_err(Error::io("symlink", dst))?;
            lchown(dst, Some(self.owner.0), Some(self.owner.1)).map_err(Error::io("chown", dst))?;
            return Ok(());
        }
        if ft.is_dir() {
            if fs::symlink_metadata(dst).is_err() {
                fs::create_dir(dst).map_err(Error::io("create", dst))?;
            }
            self.tree(src, dst)?;
            return self.finish(dst, md.mode());
        }
        if ft.is_file() {
            fs::copy(src, dst).map_err(Error::io("copy to", dst))?;
            return self.finish(dst, md.mode());
        }
        Ok(())
    }

    fn tree(&self, src: &Path, dst: &Path) -> Result<()> {
        let mut names: Vec<_> = fs::read_dir(src)
            .map_err(Error::io("read", src))?
            .filter_map(|e| e.ok())
            .map(|e| e.file_name())
            .collect();
        names.sort();
        for n in names {
            let s = src.join(&n);
            if let (Some(ig), Ok(rel)) = (self.ignore, s.strip_prefix(self.context)) {
                if ig.excluded(&rel.to_string_lossy()) {
                    continue;
                }
            }
            let md = fs::symlink_metadata(&s).map_err(Error::io("stat", &s))?;
            self.entry(&s, &dst.join(&n), &md)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_like_go() {
        assert_eq!(parse_duration("5s"), Some(5_000_000_000));
        assert_eq!(parse_duration("1m30s"), Some(90_000_000_000));
        assert_eq!(parse_duration("100ms"), Some(100_000_000));
        assert_eq!(parse_duration("5x"), None);
    }

    #[test]
    fn sources_stay_in_the_context() {
        assert_eq!(clean_rel("./a/../b"), Some(PathBuf::from("b")));
        assert_eq!(clean_rel("../x"), None);
        assert_eq!(clean_rel("/abs/x"), Some(PathBuf::from("abs/x")));
    }

    #[test]
    fn heredoc_bodies_expand_variables_only() {
        let vars: HashMap<String, String> = [("X".to_string(), "1".to_string())].into();
        assert_eq!(expand_heredoc("a $X ${X} \"$Y\" $", &vars), "a 1 1 \"\" $");
    }
}
