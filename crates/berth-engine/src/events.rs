//! The events journal: what `berth events` (and later the API's
//! `/events`) reads. Berth has no daemon to hold events in memory, so
//! every berth process and every monitor appends to one journal file per
//! store, and readers replay it and follow it.
//!
//! - Appends take a lock (`events/lock`) so that lines never interleave,
//!   times only go forward (the last time is kept in the lock file) and
//!   rotation is safe. Each event is one JSON line written in one call.
//! - The journal is bounded: past `MAX_BYTES` it becomes `journal.1`
//!   (replacing the one before) and a new `journal` starts, so at most
//!   two files' worth of old events are kept.
//! - A follower reads to the end, then watches for more; when the file it
//!   holds has been rotated away it drains what is left of it before it
//!   opens the new one, so it sees every event once and in order.
//!
//! Events are best effort for the operation that emits them: a journal
//! that cannot be written never fails a container start.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use berth_oci::time;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::{Engine, Error, Result};

/// Size at which the journal rotates.
const MAX_BYTES: u64 = 4 << 20;
/// How often a follower looks for new lines.
const FOLLOW_TICK: Duration = Duration::from_millis(50);

/// One event, as stored (one JSON line of the journal).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventMessage {
    /// `container`, `image`, `network`, `volume`.
    #[serde(rename = "type")]
    pub kind: String,
    /// `create`, `start`, `die`, `health_status: healthy`, …
    pub action: String,
    /// The object: a container or network id, an image reference or id,
    /// a volume name.
    pub id: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub attributes: BTreeMap<String, String>,
    /// Unix nanoseconds.
    pub time: i64,
}

impl EventMessage {
    /// Docker's JSON for the event (`docker events --format '{{json .}}'`
    /// and the API's `/events`).
    pub fn to_docker_json(&self) -> Value {
        let mut v = json!({
            "Type": self.kind,
            "Action": self.action,
            "Actor": {"ID": self.id, "Attributes": self.attributes},
            "scope": "local",
            "time": self.time.div_euclid(1_000_000_000),
            "timeNano": self.time,
        });
        // The fields Docker kept from its first event format.
        if self.kind == "container" {
            v["status"] = json!(self.action);
            v["id"] = json!(self.id);
            v["from"] = json!(self.attributes.get("image").cloned().unwrap_or_default());
        } else if self.kind == "image" {
            v["status"] = json!(self.action);
            v["id"] = json!(self.id);
        }
        v
    }

    /// Docker's line: `2024-05-01T12:00:00.000000000Z container start
    /// 0123… (image=busybox, name=web)`.
    pub fn to_line(&self) -> String {
        let secs = self.time.div_euclid(1_000_000_000);
        let frac = self.time.rem_euclid(1_000_000_000);
        let stamp = time::format_rfc3339(secs * 1_000_000_000);
        let stamp = format!("{}.{frac:09}Z", stamp.trim_end_matches('Z'));
        let mut s = format!("{stamp} {} {} {}", self.kind, self.action, self.id);
        if !self.attributes.is_empty() {
            let attrs: Vec<String> = self
                .attributes
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            s.push_str(&format!(" ({})", attrs.join(", ")));
        }
        s
    }
}

/// `events --filter` (Docker's keys). Values of one key are alternatives;
/// different keys must all match.
#[derive(Debug, Default, Clone)]
pub struct EventFilter {
    filters: BTreeMap<String, Vec<String>>,
}

impl EventFilter {
    pub fn parse(raw: &[String]) -> Result<EventFilter> {
        let mut f = EventFilter::default();
        for r in raw {
            let Some((k, v)) = r.split_once('=') else {
                return Err(Error::InvalidArgument(format!(
                    "bad format of filter (expected name=value): {r}"
                )));
            };
            const KEYS: &[&str] = &[
                "type",
                "event",
                "container",
                "image",
                "label",
                "network",
                "volume",
                "scope",
                "daemon",
            ];
            if !KEYS.contains(&k) {
                return Err(Error::InvalidArgument(format!("invalid filter '{k}'")));
            }
            f.filters
                .entry(k.to_string())
                .or_default()
                .push(v.to_string());
        }
        Ok(f)
    }

    /// Events of one container (by full id).
    pub fn container(id: &str) -> EventFilter {
        let mut f = EventFilter::default();
        f.filters.insert("type".into(), vec!["container".into()]);
        f.filters.insert("container".into(), vec![id.to_string()]);
        f
    }

    fn any(&self, key: &str, f: impl Fn(&str) -> bool) -> bool {
        self.filters
            .get(key)
            .is_none_or(|vals| vals.iter().any(|v| f(v)))
    }

    pub fn matches(&self, e: &EventMessage) -> bool {
        let attr = |k: &str| e.attributes.get(k).map(String::as_str).unwrap_or("");
        self.any("type", |v| v == e.kind)
            && self.any("scope", |v| v == "local")
            && self.any("event", |v| {
                // `health_status` matches `health_status: healthy`.
                v == e.action || e.action.split_once(':').is_some_and(|(a, _)| a == v)
            })
            && self.any("container", |v| {
                e.kind == "container" && (e.id.starts_with(v) || attr("name") == v)
            })
            && self.any("image", |v| {
                let name = if e.kind == "image" {
                    attr("name")
                } else {
                    attr("image")
                };
                let bare = |s: &str| {
                    s.rsplit_once(':')
                        .filter(|(_, t)| !t.contains('/'))
                        .map(|(r, _)| r.to_string())
                        .unwrap_or_else(|| s.to_string())
                };
                (e.kind == "image" && e.id == v)
                    || name == v
                    || (!v.contains(':') && bare(name) == v)
            })
            && self.any("label", |v| match v.split_once('=') {
                Some((k, want)) => e.attributes.get(k).is_some_and(|have| have == want),
                None => e.attributes.contains_key(v),
            })
            && self.any("network", |v| {
                e.kind == "network" && (e.id.starts_with(v) || attr("name") == v)
            })
            && self.any("volume", |v| e.kind == "volume" && e.id == v)
    }
}

/// What `events` replays and how long it follows.
#[derive(Debug, Default, Clone)]
pub struct EventsOptions {
    /// Unix nanoseconds; replay from here. Without since and until, only
    /// new events are shown.
    pub since: Option<i64>,
    /// Unix nanoseconds; stop here (at once when it has passed).
    pub until: Option<i64>,
    pub filter: EventFilter,
}

struct Journal {
    dir: PathBuf,
}

impl Journal {
    fn current(&self) -> PathBuf {
        self.dir.join("journal")
    }
    fn previous(&self) -> PathBuf {
        self.dir.join("journal.1")
    }

    fn lock(&self) -> io::Result<File> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)?;
        let f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(self.dir.join("lock"))?;
        // SAFETY: flock on our own fd.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(f)
    }

    fn append(&self, e: &mut EventMessage) -> io::Result<()> {
        let lock = self.lock()?;
        // Times only go forward, whatever the clock does between writers.
        let mut last = [0u8; 8];
        let last = match lock.read_at(&mut last, 0) {
            Ok(8) => i64::from_le_bytes(last),
            _ => 0,
        };
        e.time = e.time.max(last + 1);
        let mut line = serde_json::to_vec(e).map_err(io::Error::other)?;
        line.push(b'\n');
        let cur = self.current();
        let size = fs::metadata(&cur).map(|m| m.len()).unwrap_or(0);
        if size > 0 && size + line.len() as u64 > MAX_BYTES {
            fs::rename(&cur, self.previous())?;
        }
        let mut f = OpenOptions::new().create(true).append(true).open(&cur)?;
        f.write_all(&line)?;
        lock.write_at(&e.time.to_le_bytes(), 0)?;
        Ok(())
    }
}

/// Reads lines from one journal file, keeping a partial last line for
/// the next read.
struct Tail {
    reader: BufReader<File>,
    ino: u64,
    partial: Vec<u8>,
}

impl Tail {
    fn open(p: &Path) -> Option<Tail> {
        let f = File::open(p).ok()?;
        let ino = f.metadata().ok()?.ino();
        Some(Tail {
            reader: BufReader::new(f),
            ino,
            partial: Vec::new(),
        })
    }

    /// Every whole line now in the file.
    fn read(&mut self, out: &mut Vec<EventMessage>) {
        loop {
            let mut buf = std::mem::take(&mut self.partial);
            match self.reader.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => {
                    self.partial = buf;
                    return;
                }
                Ok(_) if buf.last() != Some(&b'\n') => {
                    // A writer is half-way through this line.
                    self.partial = buf;
                    return;
                }
                Ok(_) => {
                    if let Ok(e) = serde_json::from_slice::<EventMessage>(&buf) {
                        out.push(e);
                    }
                }
            }
        }
    }
}

impl Engine {
    fn journal(&self) -> Journal {
        Journal {
            dir: self.root().join("events"),
        }
    }

    /// Records an event; never fails the caller.
    pub(crate) fn emit(
        &self,
        kind: &str,
        action: &str,
        id: &str,
        attributes: BTreeMap<String, String>,
    ) {
        let mut e = EventMessage {
            kind: kind.to_string(),
            action: action.to_string(),
            id: id.to_string(),
            attributes,
            time: time::now_nanos(),
        };
        let _ = self.journal().append(&mut e);
    }

    /// A container event with Docker's attributes: its image, name and
    /// labels, plus `extra`.
    pub(crate) fn emit_container(
        &self,
        c: &crate::Container,
        action: &str,
        extra: &[(&str, String)],
    ) {
        let mut attrs: BTreeMap<String, String> = c.spec.config.labels.clone();
        attrs.insert("image".into(), c.spec.config.image.clone());
        attrs.insert("name".into(), c.name.clone());
        for (k, v) in extra {
            attrs.insert(k.to_string(), v.clone());
        }
        self.emit("container", action, &c.id, attrs);
    }

    /// An image event: `id` is what Docker names (a reference for pull
    /// and push, the image id otherwise), `name` its `name` attribute.
    pub(crate) fn emit_image(&self, action: &str, id: &str, name: &str) {
        let attrs = BTreeMap::from([("name".to_string(), name.to_string())]);
        self.emit("image", action, id, attrs);
    }

    /// A network event (Docker's attributes: name, type, and the
    /// container for connect and disconnect).
    pub(crate) fn emit_network(&self, action: &str, id: &str, name: &str, container: Option<&str>) {
        let mut attrs = BTreeMap::from([
            ("name".to_string(), name.to_string()),
            ("type".to_string(), "bridge".to_string()),
        ]);
        if let Some(c) = container {
            attrs.insert("container".into(), c.to_string());
        }
        self.emit("network", action, id, attrs);
    }

    /// A volume event; `extra` adds to Docker's `driver`.
    pub(crate) fn emit_volume(&self, action: &str, name: &str, extra: &[(&str, String)]) {
        let mut attrs = BTreeMap::from([("driver".to_string(), "local".to_string())]);
        for (k, v) in extra {
            attrs.insert(k.to_string(), v.clone());
        }
        self.emit("volume", action, name, attrs);
    }

    /// Replays the journal (per `opts`) and follows it. `each` sees every
    /// matching event in order, and `None` on each idle tick while
    /// following; it returns false to stop.
    pub fn events(
        &self,
        opts: &EventsOptions,
        mut each: impl FnMut(Option<&EventMessage>) -> bool,
    ) -> Result<()> {
        let j = self.journal();
        let start = time::now_nanos();
        if let (Some(s), Some(u)) = (opts.since, opts.until) {
            if u < s {
                return Err(Error::InvalidArgument(
                    "`since` time must be before `until` time".into(),
                ));
            }
        }
        let replay = opts.since.is_some() || opts.until.is_some();
        let since = opts.since.unwrap_or(i64::MIN);
        let until = opts.until.unwrap_or(i64::MAX);
        // Open the current file before the previous one: a rotation in
        // between makes them the same file, which is then read once.
        let mut cur = Tail::open(&j.current());
        let prev =
            Tail::open(&j.previous()).filter(|p| cur.as_ref().is_none_or(|c| c.ino != p.ino));
        let mut batch = Vec::new();
        if let Some(mut p) = prev {
            p.read(&mut batch);
        }
        match cur.as_mut() {
            Some(c) if replay => c.read(&mut batch),
            Some(c) => {
                // Only what comes after now.
                let _ = c.reader.seek(SeekFrom::End(0));
            }
            None => {}
        }
        if !replay {
            batch.clear();
        }
        let emit = |batch: &mut Vec<EventMessage>,
                    each: &mut dyn FnMut(Option<&EventMessage>) -> bool|
         -> Option<bool> {
            for e in batch.drain(..) {
                if e.time > until {
                    return Some(false);
                }
                if e.time >= since && opts.filter.matches(&e) && !each(Some(&e)) {
                    return Some(false);
                }
            }
            None
        };
        if let Some(false) = emit(&mut batch, &mut each) {
            return Ok(());
        }
        // Only past events asked for: done.
        if until <= start {
            return Ok(());
        }
        loop {
            match cur.as_mut() {
                Some(c) => {
                    c.read(&mut batch);
                    // Rotated away: drain the old file, then take the new.
                    let now_ino = fs::metadata(j.current()).map(|m| m.ino()).ok();
                    if now_ino.is_some_and(|i| i != c.ino) {
                        c.read(&mut batch);
                        cur = Tail::open(&j.current());
                        if let Some(n) = cur.as_mut() {
                            n.read(&mut batch);
                        }
                    }
                }
                None => {
                    cur = Tail::open(&j.current());
                    if let Some(n) = cur.as_mut() {
                        n.read(&mut batch);
                    }
                }
            }
            if let Some(false) = emit(&mut batch, &mut each) {
                return Ok(());
            }
            if time::now_nanos() > until || !each(None) {
                return Ok(());
            }
            std::thread::sleep(FOLLOW_TICK);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(kind: &str, action: &str, id: &str, attrs: &[(&str, &str)]) -> EventMessage {
        EventMessage {
            kind: kind.into(),
            action: action.into(),
            id: id.into(),
            attributes: attrs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            time: 1,
        }
    }

    fn f(args: &[&str]) -> EventFilter {
        EventFilter::parse(&args.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn filters_as_docker() {
        let e = ev(
            "container",
            "health_status: healthy",
            "abcdef0123",
            &[
                ("image", "busybox:latest"),
                ("name", "web"),
                ("tier", "front"),
            ],
        );
        assert!(f(&[]).matches(&e));
        assert!(f(&["event=health_status"]).matches(&e));
        assert!(f(&["event=health_status: healthy"]).matches(&e));
        assert!(!f(&["event=start"]).matches(&e));
        assert!(f(&["event=start", "event=health_status"]).matches(&e));
        assert!(f(&["container=web"]).matches(&e));
        assert!(f(&["container=abcd"]).matches(&e));
        assert!(!f(&["container=other"]).matches(&e));
        assert!(f(&["image=busybox"]).matches(&e));
        assert!(f(&["image=busybox:latest"]).matches(&e));
        assert!(f(&["label=tier"]).matches(&e));
        assert!(f(&["label=tier=front"]).matches(&e));
        assert!(!f(&["label=tier=back"]).matches(&e));
        assert!(!f(&["type=image"]).matches(&e));
        assert!(!f(&["type=container", "network=x"]).matches(&e));
        assert!(EventFilter::parse(&["bogus=1".to_string()]).is_err());
        assert!(EventFilter::parse(&["nokey".to_string()]).is_err());
    }

    #[test]
    fn docker_shapes() {
        let mut e = ev(
            "container",
            "die",
            "abc",
            &[("exitCode", "3"), ("image", "bb"), ("name", "n")],
        );
        e.time = 1_700_000_000_000_000_005;
        assert_eq!(
            e.to_line(),
            "2023-11-14T22:13:20.000000005Z container die abc (exitCode=3, image=bb, name=n)"
        );
        let v = e.to_docker_json();
        assert_eq!(v["status"], "die");
        assert_eq!(v["from"], "bb");
        assert_eq!(v["Actor"]["Attributes"]["exitCode"], "3");
        assert_eq!(v["time"], 1_700_000_000);
    }

    #[test]
    fn journal_appends_rotates_and_follows() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal {
            dir: dir.path().join("events"),
        };
        let mut e = ev("volume", "create", "v", &[]);
        for _ in 0..3 {
            e.time = 0;
            j.append(&mut e).unwrap();
        }
        let mut t = Tail::open(&j.current()).unwrap();
        let mut got = Vec::new();
        t.read(&mut got);
        let times: Vec<i64> = got.iter().map(|e| e.time).collect();
        assert_eq!(times, vec![1, 2, 3], "times only go forward");
        // A half-written line waits for its end.
        let mut f = OpenOptions::new().append(true).open(j.current()).unwrap();
        f.write_all(b"{\"type\":\"volume\"").unwrap();
        got.clear();
        t.read(&mut got);
        assert!(got.is_empty());
        f.write_all(b",\"action\":\"x\",\"id\":\"v\",\"time\":9}\n")
            .unwrap();
        t.read(&mut got);
        assert_eq!(got.len(), 1);
    }
}
