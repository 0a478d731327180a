//! `.dockerignore` patterns, matched the way Docker's builder matches them so
//! a context sends the same files here as it would to Docker.

/// A `.dockerignore` line that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum IgnoreError {
    #[error("invalid pattern {pattern:?} on line {line} of .dockerignore: {reason}")]
    BadPattern {
        line: usize,
        pattern: String,
        reason: &'static str,
    },
}

/// The patterns of one `.dockerignore` file, in file order.
#[derive(Debug, Clone, Default)]
pub struct Matcher {
    patterns: Vec<Pattern>,
}

#[derive(Debug, Clone)]
struct Pattern {
    exception: bool,
    toks: Vec<Tok>,
}

#[derive(Debug, Clone)]
enum Tok {
    Lit(char),
    /// `?`
    One,
    /// `*`
    Star,
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
    /// `**` before more pattern: any number of leading whole segments,
    /// including none.
    Dirs,
    /// `**` ending the pattern: anything at all.
    Rest,
}

impl Matcher {
    /// Parses the file's text: one pattern per line, `#` comment lines and blank lines skipped,
    /// surrounding whitespace trimmed, `!` prefix = exception, pattern cleaned like Go's filepath.Clean
    /// (collapse `//`, remove `.` segments, resolve `..`), a leading `/` removed.
    pub fn parse(text: &str) -> Result<Matcher, IgnoreError> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut patterns = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            // Docker only treats `#` in the very first column as a comment;
            // an indented `#x` is a pattern.
            if raw.starts_with('#') {
                continue;
            }
            let line = raw.trim();
            if line.is_empty() {
                continue;
            }
            let bad = |reason| IgnoreError::BadPattern {
                line: i + 1,
                pattern: line.to_string(),
                reason,
            };
            let (exception, body) = match line.strip_prefix('!') {
                Some(rest) => (true, rest.trim()),
                None => (false, line),
            };
            if body.is_empty() {
                return Err(bad("\"!\" must be followed by a pattern"));
            }
            let cleaned = clean(body);
            let cleaned = match cleaned.strip_prefix('/') {
                Some(rest) if !rest.is_empty() => rest.to_string(),
                _ => cleaned,
            };
            let toks = compile(&cleaned).map_err(bad)?;
            patterns.push(Pattern { exception, toks });
        }
        Ok(Matcher { patterns })
    }

    pub fn empty() -> Matcher {
        Matcher::default()
    }

    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Whether `path` (relative to the context root, `/`-separated, no leading `/`) is excluded:
    /// the LAST pattern that matches the path or any of its parent directories decides
    /// (exception => included). Parent matching: `foo` excludes `foo/bar/baz`.
    pub fn excluded(&self, path: &str) -> bool {
        let path: Vec<char> = path.trim_matches('/').chars().collect();
        if path.is_empty() {
            return false;
        }
        self.patterns
            .iter()
            .rev()
            .find(|p| p.matches_or_parent(&path))
            .is_some_and(|p| !p.exception)
    }

    /// True when some exception pattern could re-include something under directory `dir`
    /// (so a walker must descend into an excluded dir instead of skipping it wholesale).
    pub fn may_include_under(&self, dir: &str) -> bool {
        let dir = dir.trim_matches('/');
        let mut prefix: Vec<char> = dir.chars().collect();
        if !prefix.is_empty() {
            prefix.push('/');
        }
        let own: Vec<char> = dir.chars().collect();
        // An exclusion that matches `dir` (or a parent) also matches every
        // path below it, so exceptions listed before it can never win there.
        let from = self
            .patterns
            .iter()
            .rposition(|p| !p.exception && !own.is_empty() && p.matches_or_parent(&own))
            .map_or(0, |i| i + 1);
        self.patterns[from..]
            .iter()
            .any(|p| p.exception && glob(&p.toks, &prefix, true))
    }
}

impl Pattern {
    fn matches_or_parent(&self, path: &[char]) -> bool {
        if glob(&self.toks, path, false) {
            return true;
        }
        path.iter()
            .enumerate()
            .filter(|&(_, &c)| c == '/')
            .any(|(i, _)| glob(&self.toks, &path[..i], false))
    }
}

/// Go's `filepath.Clean` for `/`-separated paths, which Docker applies to
/// every pattern before matching.
fn clean(p: &str) -> String {
    let rooted = p.starts_with('/');
    let mut out: Vec<&str> = Vec::new();
    for seg in p.split('/') {
        match seg {
            "" | "." => {}
            ".." => match out.last() {
                Some(&last) if last != ".." => {
                    out.pop();
                }
                // `..` above the root stays at the root.
                _ if rooted => {}
                _ => out.push(".."),
            },
            _ => out.push(seg),
        }
    }
    let joined = out.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_string(),
        (false, false) => joined,
    }
}

/// Turns a cleaned pattern into tokens, rejecting what Go's `filepath.Match`
/// rejects, since Docker refuses such a `.dockerignore` outright.
fn compile(pattern: &str) -> Result<Vec<Tok>, &'static str> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut toks = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        i += 1;
        match c {
            '*' if chars.get(i) == Some(&'*') => {
                i += 1;
                if chars.get(i) == Some(&'/') {
                    i += 1;
                }
                // `**/**/` (or `****`) is `**/`: matching recursed once per
                // copy, and a long run overflowed the stack. (A lone `*`
                // never follows `*`: two of them lex as `**`.)
                if i == chars.len() {
                    toks.push(Tok::Rest);
                } else if !matches!(toks.last(), Some(Tok::Dirs)) {
                    toks.push(Tok::Dirs);
                }
            }
            '*' => toks.push(Tok::Star),
            '?' => toks.push(Tok::One),
            '\\' => match chars.get(i) {
                Some(&n) => {
                    i += 1;
                    toks.push(Tok::Lit(n));
                }
                None => return Err("a trailing \"\\\" escapes nothing"),
            },
            '[' => {
                let (tok, next) = class(&chars, i)?;
                toks.push(tok);
                i = next;
            }
            _ => toks.push(Tok::Lit(c)),
        }
    }
    Ok(toks)
}

/// Parses a character class whose `[` sits just before `start`; returns the
/// token and the index after its `]`.
fn class(chars: &[char], start: usize) -> Result<(Tok, usize), &'static str> {
    const UNCLOSED: &str = "\"[\" is not closed by \"]\"";
    let mut i = start;
    let negated = matches!(chars.get(i), Some('^' | '!'));
    if negated {
        i += 1;
    }
    // Escapes work inside a class too, and a bare `-` or `]` where a range
    // should start is a syntax error in Go, so it is here.
    let member = |i: &mut usize| -> Result<char, &'static str> {
        match chars.get(*i) {
            None => Err(UNCLOSED),
            Some('-') | Some(']') => Err("character class has an empty or malformed range"),
            Some('\\') => {
                *i += 1;
                let c = chars.get(*i).copied().ok_or(UNCLOSED)?;
                *i += 1;
                Ok(c)
            }
            Some(&c) => {
                *i += 1;
                Ok(c)
            }
        }
    };
    let mut ranges = Vec::new();
    loop {
        let lo = member(&mut i)?;
        let hi = if chars.get(i) == Some(&'-') {
            i += 1;
            member(&mut i)?
        } else {
            lo
        };
        ranges.push((lo, hi));
        match chars.get(i) {
            Some(']') => return Ok((Tok::Class { negated, ranges }, i + 1)),
            None => return Err(UNCLOSED),
            Some(_) => {}
        }
    }
}

/// Anchored match of `toks` against `path`. With `partial`, succeeds when
/// `path` is merely a prefix of something the pattern could match, which is
/// what "could anything under this directory match" asks.
fn glob(toks: &[Tok], path: &[char], partial: bool) -> bool {
    // Memoised on (token, position) so patterns with several `*`/`**` stay
    // linear-ish instead of exploding on long paths.
    let width = path.len() + 1;
    let mut memo = vec![None; (toks.len() + 1) * width];
    glob_at(toks, path, partial, 0, 0, width, &mut memo)
}

fn glob_at(
    toks: &[Tok],
    path: &[char],
    partial: bool,
    t: usize,
    p: usize,
    width: usize,
    memo: &mut [Option<bool>],
) -> bool {
    if partial && p == path.len() {
        return true;
    }
    let Some(tok) = toks.get(t) else {
        return p == path.len();
    };
    if let Some(known) = memo[t * width + p] {
        return known;
    }
    let mut next = |p: usize| glob_at(toks, path, partial, t + 1, p, width, memo);
    let here = path.get(p).copied();
    let result = match tok {
        Tok::Lit(c) => here == Some(*c) && next(p + 1),
        Tok::One => here.is_some_and(|c| c != '/') && next(p + 1),
        Tok::Class { negated, ranges } => {
            here.is_some_and(|c| {
                c != '/' && ranges.iter().any(|&(lo, hi)| lo <= c && c <= hi) != *negated
            }) && next(p + 1)
        }
        Tok::Star => {
            let run = path[p..].iter().take_while(|&&c| c != '/').count();
            (p..=p + run).any(&mut next)
        }
        // The skipped segments may run past the end of a partial path.
        Tok::Dirs if partial => true,
        Tok::Dirs => next(p) || (p..path.len()).any(|q| path[q] == '/' && next(q + 1)),
        Tok::Rest => true,
    };
    memo[t * width + p] = Some(result);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(text: &str) -> Matcher {
        Matcher::parse(text).unwrap()
    }

    #[test]
    fn empty_matcher_excludes_nothing() {
        let e = Matcher::empty();
        assert!(e.is_empty());
        assert!(!e.excluded("a"));
        assert!(!e.may_include_under("a"));
        assert!(m("").is_empty());
        assert!(m("# only a comment\n\n   \n").is_empty());
    }

    #[test]
    fn comments_and_blank_lines() {
        let x = m("# node_modules\n\n  \nbuild\n\t\n");
        assert!(!x.is_empty());
        assert!(!x.excluded("node_modules"));
        assert!(!x.excluded("# node_modules"));
        assert!(x.excluded("build"));
        // Only the first column starts a comment.
        assert!(m("  #keep").excluded("#keep"));
    }

    #[test]
    fn whitespace_crlf_and_bom() {
        let x = m("\u{feff}a\r\n  b  \r\n! c \r\n");
        assert!(x.excluded("a"));
        assert!(x.excluded("b"));
        assert!(!x.excluded("c"));
    }

    #[test]
    fn literal_patterns_are_anchored() {
        let x = m("foo");
        assert!(x.excluded("foo"));
        assert!(!x.excluded("a/foo"));
        assert!(!x.excluded("foobar"));
        assert!(!x.excluded("fo"));
    }

    #[test]
    fn parent_directories_match() {
        let x = m("foo\nlib/gen");
        assert!(x.excluded("foo/bar/baz"));
        assert!(x.excluded("foo/bar"));
        assert!(x.excluded("lib/gen/x.rs"));
        assert!(!x.excluded("lib/general"));
        assert!(!x.excluded("lib"));
        let x = m("*/tmp");
        assert!(x.excluded("a/tmp/deep/file"));
        assert!(!x.excluded("tmp/x"));
    }

    #[test]
    fn exceptions_re_include() {
        let x = m("*.md\n!README.md");
        assert!(x.excluded("CHANGES.md"));
        assert!(!x.excluded("README.md"));
        assert!(!x.excluded("main.rs"));
        assert!(!x.excluded("docs/a.md"));
    }

    #[test]
    fn last_matching_pattern_wins() {
        let x = m("*.md\n!README*.md\nREADME-secret.md");
        assert!(x.excluded("README-secret.md"));
        assert!(!x.excluded("README.md"));
        assert!(x.excluded("notes.md"));
        let x = m("!keep\n*");
        assert!(x.excluded("keep"));
        let x = m("docs\n!docs/keep.txt");
        assert!(x.excluded("docs/other.txt"));
        assert!(!x.excluded("docs/keep.txt"));
        assert!(x.excluded("docs"));
    }

    #[test]
    fn star_and_question_mark() {
        let x = m("*.log\nfile?.txt");
        assert!(x.excluded("a.log"));
        assert!(x.excluded(".log"));
        assert!(!x.excluded("dir/a.log"));
        assert!(x.excluded("file1.txt"));
        assert!(!x.excluded("file.txt"));
        assert!(!x.excluded("file12.txt"));
        assert!(!m("a?b").excluded("a/b"));
        assert!(!m("a*b").excluded("a/b"));
        assert!(m("a*b").excluded("ab"));
        assert!(m("*").excluded("anything/at/all"));
        assert!(m("a*c*e").excluded("abcdcxe"));
        assert!(m("é?").excluded("éü"));
    }

    #[test]
    fn character_classes() {
        let x = m("[abc].txt\n[0-9][!0-9]\nx[^a-c]");
        assert!(x.excluded("a.txt"));
        assert!(!x.excluded("d.txt"));
        assert!(x.excluded("5x"));
        assert!(!x.excluded("55"));
        assert!(x.excluded("xd"));
        assert!(!x.excluded("xb"));
        assert!(!m("a[^x]b").excluded("a/b"));
        assert!(m(r"[\]]").excluded("]"));
        assert!(m(r"[a\-z]").excluded("-"));
        assert!(!m(r"[a\-z]").excluded("b"));
    }

    #[test]
    fn double_star() {
        let x = m("**/foo");
        assert!(x.excluded("foo"));
        assert!(x.excluded("a/b/foo"));
        assert!(x.excluded("a/foo/inner"));
        assert!(!x.excluded("afoo"));

        let x = m("foo/**");
        assert!(x.excluded("foo/a"));
        assert!(x.excluded("foo/a/b"));
        assert!(!x.excluded("foo"));
        assert!(!x.excluded("foobar"));

        let x = m("a/**/b");
        assert!(x.excluded("a/b"));
        assert!(x.excluded("a/x/y/b"));
        assert!(!x.excluded("a/xb"));
        assert!(!x.excluded("b"));

        assert!(m("**").excluded("any/thing"));
        assert!(m("**/*.go").excluded("main.go"));
        assert!(m("**/*.go").excluded("cmd/x/main.go"));
        assert!(m("dir/**/*.o").excluded("dir/x.o"));
        assert!(!m("dir/**/*.o").excluded("other/x.o"));
    }

    #[test]
    fn escapes() {
        assert!(m(r"\*").excluded("*"));
        assert!(!m(r"\*").excluded("a"));
        assert!(m(r"a\?").excluded("a?"));
        assert!(!m(r"a\?").excluded("ab"));
    }

    #[test]
    fn cleaning() {
        assert!(m("/foo").excluded("foo"));
        assert!(m("./foo").excluded("foo"));
        assert!(m("a//b/").excluded("a/b"));
        assert!(m("a/./b").excluded("a/b"));
        assert!(m("a/x/../b").excluded("a/b"));
        assert!(m("!/foo\n*").excluded("foo"));
        let x = m("*\n!/keep");
        assert!(!x.excluded("keep"));
        assert_eq!(clean("../x"), "../x");
        assert_eq!(clean("/../x"), "/x");
        assert_eq!(clean("a/.."), ".");
        assert_eq!(clean("/"), "/");
        // Cleans to "/", which names no path inside the context.
        assert!(!m("/").excluded("a"));
    }

    #[test]
    fn bad_patterns() {
        for bad in ["[abc", "a[", "[]", "[^]", "[a-]", "x\\", "!", "  !  "] {
            let err = Matcher::parse(&format!("ok\n{bad}\n")).err();
            let err = err.unwrap_or_else(|| panic!("{bad:?} should be rejected"));
            let msg = err.to_string();
            assert!(msg.contains("line 2"), "{msg}");
            assert!(msg.contains(bad.trim()), "{msg}");
        }
    }

    #[test]
    fn long_runs_of_stars_match_without_deep_recursion() {
        // Each of these once overflowed the stack (berth build aborted).
        for p in [
            "*".repeat(100_000),
            "**/".repeat(30_000),
            format!("{}x", "*".repeat(100_000)),
        ] {
            let x = m(&p);
            assert!(x.excluded("a/b/x"), "{}", &p[..6]);
            let _ = x.may_include_under("a");
        }
        assert!(!m(&format!("{}x", "**/".repeat(30_000))).excluded("a/b/y"));
        // What the runs mean is unchanged.
        assert!(m("a***").excluded("abc/d") && !m("a***").excluded("b"));
        assert!(m("**/**/x").excluded("x") && m("**/**/x").excluded("a/b/x"));
        assert!(m("a**/*c").excluded("ab/xc") && !m("a**/*c").excluded("ab/x/d"));
    }

    #[test]
    fn may_include_under() {
        let x = m("node_modules\n!node_modules/keep/**");
        assert!(x.may_include_under("node_modules"));
        assert!(x.may_include_under("node_modules/keep"));
        assert!(!x.may_include_under("node_modules/other"));

        // A top-level wildcard exception cannot reach into subdirectories.
        let x = m("docs\n!*.md");
        assert!(!x.may_include_under("docs"));
        let x = m("docs\n!**/*.md");
        assert!(x.may_include_under("docs"));
        assert!(m("*\n!*/keep").may_include_under("a"));
        assert!(!m("*\n!*/keep").may_include_under("a/b"));

        // An exclusion listed after the exception overrides it.
        let x = m("!build/out\nbuild");
        assert!(!x.may_include_under("build"));

        assert!(!m("build").may_include_under("build"));
        assert!(m("*\n![a-c]*/x").may_include_under("b"));
        assert!(!m("*\n![a-c]*/x").may_include_under("d"));
    }
}
