//! Image references, normalised the way Docker does it:
//! `busybox` is `docker.io/library/busybox:latest`.

use std::fmt;
use std::str::FromStr;

use crate::{Digest, Error};

pub const DEFAULT_DOMAIN: &str = "docker.io";
pub const DEFAULT_TAG: &str = "latest";
const LEGACY_DOMAIN: &str = "index.docker.io";
const OFFICIAL_PREFIX: &str = "library/";
const MAX_NAME_LEN: usize = 255;

/// A fully normalised reference. A reference always has a tag or a digest
/// (or both); a bare name gets `latest`, as Docker gives it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    domain: String,
    path: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

fn invalid(detail: impl Into<String>) -> Error {
    Error::InvalidReference(detail.into())
}

impl Reference {
    /// Parses and normalises, adding `:latest` when neither tag nor digest is given.
    pub fn parse(s: &str) -> Result<Self, Error> {
        let mut r = Self::parse_name_only(s)?;
        if r.tag.is_none() && r.digest.is_none() {
            r.tag = Some(DEFAULT_TAG.to_string());
        }
        Ok(r)
    }

    /// Parses without adding a default tag: `busybox` stays tagless. Used
    /// where "every tag of this repository" is meant (`pull -a`, filters).
    pub fn parse_name_only(s: &str) -> Result<Self, Error> {
        if s.is_empty() {
            return Err(invalid(""));
        }
        let (name_tag, digest) = match s.split_once('@') {
            Some((n, d)) => {
                let digest = d.parse::<Digest>().map_err(|_| invalid(""))?;
                (n, Some(digest))
            }
            None => (s, None),
        };
        let last_slash = name_tag.rfind('/').map(|i| i + 1).unwrap_or(0);
        let (name, tag) = match name_tag[last_slash..].rfind(':') {
            Some(i) => {
                let i = last_slash + i;
                (&name_tag[..i], Some(&name_tag[i + 1..]))
            }
            None => (name_tag, None),
        };
        if let Some(tag) = tag {
            validate_tag(tag)?;
        }
        if name.is_empty() {
            return Err(invalid(""));
        }
        if tag.is_none() && digest.is_none() && is_full_hex_id(name) {
            return Err(Error::InvalidReference(format!(
                "invalid repository name ({name}), cannot specify 64-byte hexadecimal strings"
            )));
        }
        let (domain, mut path) = split_domain(name);
        if domain == DEFAULT_DOMAIN && !path.contains('/') {
            path = format!("{OFFICIAL_PREFIX}{path}");
        }
        validate_domain(&domain)?;
        if path.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(invalid(format!(
                "repository name ({path}) must be lowercase"
            )));
        }
        for component in path.split('/') {
            validate_path_component(component)?;
        }
        if domain.len() + 1 + path.len() > MAX_NAME_LEN {
            return Err(invalid(format!(
                "repository name must not be more than {MAX_NAME_LEN} characters"
            )));
        }
        Ok(Reference {
            domain,
            path,
            tag: tag.map(str::to_string),
            digest,
        })
    }

    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// The repository path inside the registry, e.g. `library/busybox`.
    pub fn path(&self) -> &str {
        &self.path
    }

    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// `docker.io/library/busybox`
    pub fn name(&self) -> String {
        format!("{}/{}", self.domain, self.path)
    }

    /// `busybox` for official images, `user/app` for other Docker Hub ones,
    /// the full name for every other registry: what Docker prints.
    pub fn familiar_name(&self) -> String {
        if self.domain == DEFAULT_DOMAIN {
            self.path
                .strip_prefix(OFFICIAL_PREFIX)
                .filter(|rest| !rest.contains('/'))
                .unwrap_or(&self.path)
                .to_string()
        } else {
            self.name()
        }
    }

    /// The familiar form with tag and digest, e.g. `busybox:latest`.
    pub fn familiar(&self) -> String {
        let mut s = self.familiar_name();
        self.push_suffix(&mut s);
        s
    }

    pub fn with_tag(&self, tag: &str) -> Result<Self, Error> {
        validate_tag(tag)?;
        Ok(Reference {
            tag: Some(tag.to_string()),
            digest: None,
            ..self.clone()
        })
    }

    pub fn with_digest(&self, digest: Digest) -> Self {
        Reference {
            tag: None,
            digest: Some(digest),
            ..self.clone()
        }
    }

    fn push_suffix(&self, s: &mut String) {
        if let Some(t) = &self.tag {
            s.push(':');
            s.push_str(t);
        }
        if let Some(d) = &self.digest {
            s.push('@');
            s.push_str(&d.to_string());
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = self.name();
        self.push_suffix(&mut s);
        f.write_str(&s)
    }
}

impl FromStr for Reference {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        Reference::parse(s)
    }
}

fn is_full_hex_id(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

/// Docker's rule: the first component is a registry host when it looks like
/// one (has a dot or a port, is `localhost`, or has capitals, which a
/// repository path never may).
fn split_domain(name: &str) -> (String, String) {
    match name.split_once('/') {
        Some((first, rest))
            if first.contains(['.', ':'])
                || first == "localhost"
                || first.bytes().any(|b| b.is_ascii_uppercase()) =>
        {
            let domain = if first == LEGACY_DOMAIN {
                DEFAULT_DOMAIN
            } else {
                first
            };
            (domain.to_string(), rest.to_string())
        }
        _ => (DEFAULT_DOMAIN.to_string(), name.to_string()),
    }
}

fn validate_tag(tag: &str) -> Result<(), Error> {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let bytes = tag.as_bytes();
    let ok = !bytes.is_empty()
        && bytes.len() <= 128
        && word(bytes[0])
        && bytes[1..]
            .iter()
            .all(|&b| word(b) || b == b'.' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(invalid(""))
    }
}

fn validate_domain(domain: &str) -> Result<(), Error> {
    let (host, port) = if let Some(rest) = domain.strip_prefix('[') {
        // IPv6 literal: [addr]:port
        let (addr, after) = rest.split_once(']').ok_or_else(|| invalid(""))?;
        if addr.is_empty() || !addr.bytes().all(|b| b.is_ascii_hexdigit() || b == b':') {
            return Err(invalid(""));
        }
        (None, after.strip_prefix(':'))
    } else {
        match domain.rsplit_once(':') {
            Some((h, p)) => (Some(h), Some(p)),
            None => (Some(domain), None),
        }
    };
    if let Some(host) = host {
        let label_ok = |l: &str| {
            !l.is_empty()
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        };
        if !host.split('.').all(label_ok) {
            return Err(invalid(""));
        }
    }
    if let Some(port) = port {
        if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
            return Err(invalid(""));
        }
        // The grammar takes any digits; a dial would fail later with a
        // vaguer error.
        if !port.parse::<u32>().is_ok_and(|p| (1..=65535).contains(&p)) {
            return Err(invalid(format!(
                "port {port} of {domain:?} is not between 1 and 65535"
            )));
        }
    }
    Ok(())
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`
fn validate_path_component(c: &str) -> Result<(), Error> {
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    let mut i = 0;
    let mut expect_alnum = true;
    while i < b.len() {
        if alnum(b[i]) {
            while i < b.len() && alnum(b[i]) {
                i += 1;
            }
            expect_alnum = false;
            continue;
        }
        if expect_alnum {
            return Err(invalid(""));
        }
        // a separator
        let start = i;
        match b[i] {
            b'.' => i += 1,
            b'_' => {
                i += 1;
                if i < b.len() && b[i] == b'_' {
                    i += 1;
                }
            }
            b'-' => {
                while i < b.len() && b[i] == b'-' {
                    i += 1;
                }
            }
            _ => return Err(invalid("")),
        }
        debug_assert!(i > start);
        expect_alnum = true;
    }
    if expect_alnum {
        return Err(invalid(""));
    }
    Ok(())
}

/// Matches `pattern` against `name` with Go's `path.Match` rules (`*`, `?`,
/// `[...]`, `\\` escapes; `*` does not cross `/`), which
/// `images -f reference=` uses. Go's algorithm too: the pattern is cut
/// into chunks at each `*`, and each chunk takes the first place it fits,
/// so a pattern of many stars costs O(pattern × name), never more.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let mut n: &[char] = &name.chars().collect::<Vec<char>>();
    let mut rest: &[char] = &p;
    'pattern: while !rest.is_empty() {
        let (star, chunk, after) = scan_chunk(rest);
        rest = after;
        if star && chunk.is_empty() {
            // A trailing star takes the rest, unless it holds a `/`.
            return !n.contains(&'/');
        }
        if let Some(t) = match_chunk(chunk, n) {
            if t.is_empty() || !rest.is_empty() {
                n = t;
                continue;
            }
        }
        if star {
            let mut i = 0;
            while i < n.len() && n[i] != '/' {
                if let Some(t) = match_chunk(chunk, &n[i + 1..]) {
                    if rest.is_empty() && !t.is_empty() {
                        i += 1;
                        continue;
                    }
                    n = t;
                    continue 'pattern;
                }
                i += 1;
            }
        }
        return false;
    }
    n.is_empty()
}

/// Go's scanChunk: leading stars, then the text up to the next unescaped
/// star outside a class.
fn scan_chunk(p: &[char]) -> (bool, &[char], &[char]) {
    let mut p = p;
    let mut star = false;
    while p.first() == Some(&'*') {
        p = &p[1..];
        star = true;
    }
    let mut in_range = false;
    let mut i = 0;
    while i < p.len() {
        match p[i] {
            '\\' if i + 1 < p.len() => i += 1,
            '[' => in_range = true,
            ']' => in_range = false,
            '*' if !in_range => break,
            _ => {}
        }
        i += 1;
    }
    (star, &p[..i], &p[i..])
}

/// Go's matchChunk: the chunk against the start of `s`; what is left of
/// `s` when it fits.
fn match_chunk<'a>(chunk: &[char], s: &'a [char]) -> Option<&'a [char]> {
    let mut chunk = chunk;
    let mut s = s;
    while let Some(&c) = chunk.first() {
        match c {
            '[' => {
                let (&r, rest_s) = s.split_first()?;
                chunk = &chunk[1..];
                let negated = chunk.first() == Some(&'^');
                if negated {
                    chunk = &chunk[1..];
                }
                let mut matched = false;
                let mut n = 0;
                loop {
                    if !chunk.is_empty() && chunk[0] == ']' && n > 0 {
                        chunk = &chunk[1..];
                        break;
                    }
                    let (lo, after) = get_esc(chunk)?;
                    chunk = after;
                    let mut hi = lo;
                    if chunk.first() == Some(&'-') {
                        let (h, after) = get_esc(&chunk[1..])?;
                        hi = h;
                        chunk = after;
                    }
                    if lo <= r && r <= hi {
                        matched = true;
                    }
                    n += 1;
                }
                if matched == negated || r == '/' {
                    return None;
                }
                s = rest_s;
            }
            '?' => {
                if s.first().is_none_or(|c| *c == '/') {
                    return None;
                }
                s = &s[1..];
                chunk = &chunk[1..];
            }
            '\\' => {
                chunk = &chunk[1..];
                let e = *chunk.first()?;
                if s.first() != Some(&e) {
                    return None;
                }
                s = &s[1..];
                chunk = &chunk[1..];
            }
            _ => {
                if s.first() != Some(&c) {
                    return None;
                }
                s = &s[1..];
                chunk = &chunk[1..];
            }
        }
    }
    Some(s)
}

/// One character of a class, `\\` escapes allowed; None when malformed.
fn get_esc(chunk: &[char]) -> Option<(char, &[char])> {
    let (&c, mut rest) = chunk.split_first()?;
    if c == '-' || c == ']' {
        return None;
    }
    let mut c = c;
    if c == '\\' {
        let (&e, r) = rest.split_first()?;
        c = e;
        rest = r;
    }
    Some((c, rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(s: &str) -> String {
        Reference::parse(s).unwrap().to_string()
    }

    #[test]
    fn normalises_like_docker() {
        assert_eq!(norm("busybox"), "docker.io/library/busybox:latest");
        assert_eq!(norm("busybox:1.36"), "docker.io/library/busybox:1.36");
        assert_eq!(norm("user/app"), "docker.io/user/app:latest");
        assert_eq!(
            norm("index.docker.io/busybox"),
            "docker.io/library/busybox:latest"
        );
        assert_eq!(norm("localhost:5000/a/b:1.0"), "localhost:5000/a/b:1.0");
        assert_eq!(norm("localhost/x"), "localhost/x:latest");
        assert_eq!(
            norm("quay.io/podman/stable"),
            "quay.io/podman/stable:latest"
        );
        assert_eq!(norm("[::1]:5000/x:y"), "[::1]:5000/x:y");
        let d = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        assert_eq!(
            norm(&format!("busybox@{d}")),
            format!("docker.io/library/busybox@{d}")
        );
        assert_eq!(
            norm(&format!("busybox:1@{d}")),
            format!("docker.io/library/busybox:1@{d}")
        );
        // a lone host:port is a name with a tag, as in Docker
        assert_eq!(norm("localhost:5000"), "docker.io/library/localhost:5000");
    }

    #[test]
    fn familiar_forms() {
        let r = Reference::parse("docker.io/library/busybox").unwrap();
        assert_eq!(r.familiar(), "busybox:latest");
        assert_eq!(r.familiar_name(), "busybox");
        let r = Reference::parse("user/app:2").unwrap();
        assert_eq!(r.familiar(), "user/app:2");
        let r = Reference::parse("localhost:5000/a:1").unwrap();
        assert_eq!(r.familiar(), "localhost:5000/a:1");
        assert_eq!(Reference::parse_name_only("busybox").unwrap().tag(), None);
    }

    #[test]
    fn rejects_bad_references() {
        for bad in [
            "",
            ":",
            "Busybox",
            "busybox:",
            "busybox:-x",
            "a//b",
            "-a",
            "a-",
            "a..b",
            "a___b",
            "busybox@sha256:abc",
            "bad host!/x",
            "localhost:port/x",
            "localhost:99999999/x",
            "localhost:0/x",
            &"a".repeat(300),
        ] {
            let e = Reference::parse(bad).unwrap_err();
            assert!(
                e.to_string().starts_with("invalid reference format"),
                "{bad}: {e}"
            );
        }
        let e = Reference::parse("Busybox").unwrap_err().to_string();
        assert_eq!(
            e,
            "invalid reference format: repository name (library/Busybox) must be lowercase"
        );
        let id = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        assert!(Reference::parse(id)
            .unwrap_err()
            .to_string()
            .contains("cannot specify 64-byte hexadecimal strings"));
        // separators that the grammar allows
        for ok in [
            "a.b",
            "a_b",
            "a__b",
            "a---b",
            "a/b/c",
            "my-registry.example:443/x/y",
        ] {
            Reference::parse(ok).unwrap();
        }
    }

    #[test]
    fn glob() {
        assert!(glob_match("busy*", "busybox"));
        assert!(glob_match("*", "busybox"));
        assert!(!glob_match("*", "user/app"));
        assert!(glob_match("*/*", "user/app"));
        assert!(glob_match("b?sybox:[a-z]*", "busybox:latest"));
        assert!(glob_match("b[^x]", "by"));
        assert!(!glob_match("busybox", "busybox:latest"));
        assert!(glob_match("*box*", "busybox:latest"));
        assert!(glob_match("a*b*c", "aXbYc"));
        assert!(!glob_match("a*b*c", "aXbYcZ"));
        assert!(glob_match("\\*x", "*x"));
        assert!(!glob_match("[", "a"));
    }

    #[test]
    fn glob_of_many_stars_is_not_exponential() {
        // 20 stars against a name that almost fits took > 20 s when each
        // star tried every split.
        let pattern = format!("{}b", "a*".repeat(20));
        let name = "a".repeat(60);
        assert!(!glob_match(&pattern, &name));
        let name = "a".repeat(5000);
        assert!(!glob_match(&format!("{}b", "*a".repeat(500)), &name));
    }
}
