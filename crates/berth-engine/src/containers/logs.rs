//! `logs`: reads the CRI-format log the monitor writes
//! (`<time> <stream> <F|P> <text>`), with Docker's --tail, --since,
//! --until, -t and -f.

use std::fs::File;
use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::time::Duration;

use berth_oci::time;

use super::proc::monitor_alive;
use crate::{Engine, Error, Result};

#[derive(Debug, Clone, Default)]
pub struct LogOptions {
    pub follow: bool,
    /// Last N lines only.
    pub tail: Option<usize>,
    /// Unix nanoseconds.
    pub since: Option<i64>,
    pub until: Option<i64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LogLine {
    pub stderr: bool,
    /// Unix nanoseconds.
    pub time: i64,
    /// The text, with its newline unless the line was partial.
    pub data: Vec<u8>,
}

fn parse_line(line: &[u8]) -> Option<LogLine> {
    let mut parts = line.splitn(4, |b| *b == b' ');
    let t = std::str::from_utf8(parts.next()?).ok()?;
    let stream = parts.next()?;
    let tag = parts.next()?;
    let text = parts.next().unwrap_or(b"");
    let text = text.strip_suffix(b"\n").unwrap_or(text);
    let mut data = text.to_vec();
    if tag == b"F" {
        data.push(b'\n');
    }
    Some(LogLine {
        stderr: stream == b"stderr",
        time: time::parse_rfc3339(t)?,
        data,
    })
}

impl Engine {
    /// Calls `out` for each log line; with `follow`, keeps going until the
    /// container stops.
    pub fn container_logs(
        &self,
        name: &str,
        opts: &LogOptions,
        out: &mut dyn FnMut(&LogLine) -> std::io::Result<()>,
    ) -> Result<()> {
        let c = self.container(name)?;
        let p = self.paths(&c.id);
        let path = p.log();
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !opts.follow => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                File::create(&path).map_err(Error::io("open", &path))?;
                File::open(&path).map_err(Error::io("open", &path))?
            }
            Err(e) => return Err(Error::io("open", &path)(e)),
        };
        let mut reader = BufReader::new(file);
        let keep = |l: &LogLine| {
            opts.since.is_none_or(|s| l.time >= s) && opts.until.is_none_or(|u| l.time <= u)
        };
        let emit = |l: &LogLine, out: &mut dyn FnMut(&LogLine) -> std::io::Result<()>| {
            out(l).map_err(|e| Error::Stream("write logs", e))
        };
        // The backlog.
        let mut lines = Vec::new();
        let mut buf = Vec::new();
        loop {
            buf.clear();
            let n = reader
                .read_until(b'\n', &mut buf)
                .map_err(Error::io("read", &path))?;
            if n == 0 || !buf.ends_with(b"\n") {
                // A line being written: leave it for the follow loop.
                let back = n as i64;
                reader
                    .seek(SeekFrom::Current(-back))
                    .map_err(Error::io("read", &path))?;
                break;
            }
            if let Some(l) = parse_line(&buf) {
                if keep(&l) {
                    lines.push(l);
                }
            }
        }
        let skip = opts
            .tail
            .map(|t| lines.len().saturating_sub(t))
            .unwrap_or(0);
        for l in &lines[skip..] {
            emit(l, out)?;
        }
        if !opts.follow {
            return Ok(());
        }
        let mut pending = Vec::new();
        loop {
            let alive = monitor_alive(&p);
            loop {
                buf.clear();
                let n = reader
                    .read_until(b'\n', &mut buf)
                    .map_err(Error::io("read", &path))?;
                if n == 0 {
                    break;
                }
                pending.extend_from_slice(&buf);
                if pending.ends_with(b"\n") {
                    if let Some(l) = parse_line(&pending) {
                        if opts.until.is_some_and(|u| l.time > u) {
                            return Ok(());
                        }
                        if keep(&l) {
                            emit(&l, out)?;
                        }
                    }
                    pending.clear();
                }
            }
            if !alive {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cri_lines() {
        let l = parse_line(b"2024-01-01T00:00:00.5Z stderr F boom\n").unwrap();
        assert!(l.stderr);
        assert_eq!(l.data, b"boom\n");
        let l = parse_line(b"2024-01-01T00:00:00Z stdout P a b c\n").unwrap();
        assert_eq!(l.data, b"a b c");
        assert!(parse_line(b"garbage").is_none());
    }
}
