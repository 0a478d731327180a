//! Printing: errors, JSON as Docker indents it, template output.

use std::io::Write;

use anyhow::Result;
use serde_json::Value;

use crate::render as format;

/// Prints `Error: message: cause: cause`, skipping causes whose text the
/// message already carries (our error types often embed their source).
pub fn print_error(e: &anyhow::Error) {
    let mut msg = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !msg.contains(&text) {
            msg.push_str(": ");
            msg.push_str(&text);
        }
        source = s.source();
    }
    eprintln!("Error: {}", escape_controls(&msg));
}

/// Control characters in a message (an error can quote a hostile tar's
/// entry names, a file's contents, a registry's answer) shown as `\x1b`
/// escapes, so nothing the input holds can drive the terminal.
pub fn escape_controls(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if c.is_control() && c != '\n' && c != '\t' {
            let n = c as u32;
            if n <= 0xff {
                out.push_str(&format!("\\x{n:02x}"));
            } else {
                out.push_str(&format!("\\u{{{n:x}}}"));
            }
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

/// JSON with four-space indents, as `docker inspect` prints it.
pub fn pretty_json(v: &Value) -> String {
    let mut buf = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut ser = serde_json::Serializer::with_formatter(&mut buf, fmt);
    serde::Serialize::serialize(v, &mut ser).expect("JSON value serialises");
    String::from_utf8(buf).expect("serde_json writes UTF-8")
}

/// Docker's `--format json` shorthand.
pub fn normalise_format(f: &str) -> &str {
    if f == "json" {
        "{{json .}}"
    } else {
        f
    }
}

/// Renders `rows` with `fmt` (a Go template, possibly starting with
/// `table`), or with `default` when no format was given.
pub fn print_rows(fmt: Option<&str>, default: &str, header: &Value, rows: &[Value]) -> Result<()> {
    let f = normalise_format(fmt.unwrap_or(default));
    let text = format::render_rows(f, header, rows)?;
    std::io::stdout().lock().write_all(text.as_bytes())?;
    Ok(())
}

/// Renders one value per line with a template (`inspect -f`, `info -f`).
pub fn print_template(fmt: &str, values: &[Value]) -> Result<()> {
    let t = format::Template::parse(normalise_format(fmt))?;
    let mut out = std::io::stdout().lock();
    for v in values {
        let s = t.render(v)?;
        writeln!(out, "{s}")?;
    }
    Ok(())
}

/// Go's time.Time.String() for a UTC instant, which Docker prints for
/// `{{.CreatedAt}}`: `2024-05-01 12:00:00 +0000 UTC`.
/// What `inspect` prints: each document through `--format`, or all of
/// them as one JSON array.
pub fn print_inspected(fmt: Option<&str>, found: Vec<Value>) -> Result<()> {
    match fmt {
        Some(f) => print_template(f, &found),
        None => {
            println!("{}", pretty_json(&Value::Array(found)));
            Ok(())
        }
    }
}

/// `inspect` of several names: those `lookup` finds are printed, the
/// others named in an error each; exit code 1 if any was missing.
pub fn inspect_each<E: Into<anyhow::Error>>(
    names: &[String],
    fmt: Option<&str>,
    mut lookup: impl FnMut(&str) -> std::result::Result<Value, E>,
) -> Result<u8> {
    let mut found = Vec::new();
    let mut code = 0;
    for n in names {
        match lookup(n) {
            Ok(v) => found.push(v),
            Err(e) => {
                print_error(&e.into());
                code = 1;
            }
        }
    }
    print_inspected(fmt, found)?;
    Ok(code)
}

pub fn go_time(nanos: i64) -> String {
    let s = berth_oci::time::format_rfc3339(nanos - nanos.rem_euclid(1_000_000_000));
    let (date, rest) = s.split_once('T').unwrap_or((&s, ""));
    format!("{date} {} +0000 UTC", rest.trim_end_matches('Z'))
}

/// `sha256:abcdef…` → `abcdef012345` unless `no_trunc`.
pub fn short_id(id: &berth_oci::Digest, no_trunc: bool) -> String {
    if no_trunc {
        id.to_string()
    } else {
        id.short().to_string()
    }
}

/// Go's stringutils.Ellipsis: at most `max` characters, the last one "…".
pub fn ellipsis(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}
