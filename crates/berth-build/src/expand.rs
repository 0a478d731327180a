//! Word expansion for Dockerfile instructions, following the rules of the
//! shell-like lexer Docker's builder uses: quotes, the escape character,
//! and `$VAR` / `${VAR...}` substitution. There is deliberately no command
//! substitution, globbing or arithmetic: Docker has none either, and a
//! Dockerfile that relied on them would build differently elsewhere.

/// Why a word could not be expanded.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ExpandError {
    #[error("unexpected end of statement while looking for matching single-quote")]
    UnterminatedSingleQuote,
    #[error("unexpected end of statement while looking for matching double-quote")]
    UnterminatedDoubleQuote,
    /// Holds the text from `${` to the end of the word.
    #[error("missing '}}' in variable substitution {0:?}")]
    UnterminatedBrace(String),
    /// Holds the offending `${...}` text.
    #[error("bad substitution {0:?}")]
    BadSubstitution(String),
    /// `${NAME:?message}` or `${NAME?message}` met an unset (or empty) variable.
    #[error("{name}: {message}")]
    Required { name: String, message: String },
    /// `${A:-${B:-...}}` nested past [`MAX_NESTING`]; each level is a
    /// frame of recursion, so without a limit a crafted Dockerfile would
    /// overflow the stack.
    #[error("variable substitution nested deeper than {0} levels")]
    TooDeep(usize),
}

/// How deeply `${...}` may nest inside an operand. Docker has no such
/// limit, but no real Dockerfile comes near it.
pub const MAX_NESTING: usize = 64;

/// Expands one word: quotes removed, variables substituted, no splitting on spaces.
/// `lookup` returns a variable's value (None = unset). `escape` is the Dockerfile escape char (`\\` or '`').
pub fn word(
    s: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    escape: char,
) -> Result<String, ExpandError> {
    let mut out = Sink::new(false);
    Lexer::new(s, lookup, escape).run(&mut out, None)?;
    Ok(out.cur)
}

/// Expands and splits on unquoted whitespace (for ENV/LABEL/ARG key=value lists, EXPOSE, VOLUME).
/// Quotes group words and are removed; `a="b c"` is one word `a=b c`.
///
/// Only whitespace written in the instruction splits: a variable whose value
/// contains spaces stays inside its word, because Docker expands ENV/LABEL/ARG
/// values after splitting them (`ENV A=$B` keeps all of `$B` in `A`).
pub fn words(
    s: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    escape: char,
) -> Result<Vec<String>, ExpandError> {
    let mut out = Sink::new(true);
    Lexer::new(s, lookup, escape).run(&mut out, None)?;
    out.end_word();
    Ok(out.words)
}

/// Splits `words(...)` output of ENV/LABEL/ARG into pairs: `k=v` -> (k, Some(v)), bare `k` -> (k, None).
pub fn key_values(words: Vec<String>) -> Vec<(String, Option<String>)> {
    words
        .into_iter()
        .map(|w| match w.split_once('=') {
            Some((k, v)) => (k.to_string(), Some(v.to_string())),
            None => (w, None),
        })
        .collect()
}

/// Collects expanded text, optionally cutting it into words.
struct Sink {
    split: bool,
    words: Vec<String>,
    cur: String,
    // Separate from `cur.is_empty()` so that `""` still yields an (empty)
    // word while an unset `$VAR` on its own yields none, as in Docker.
    in_word: bool,
}

impl Sink {
    fn new(split: bool) -> Sink {
        Sink {
            split,
            words: Vec::new(),
            cur: String::new(),
            in_word: false,
        }
    }

    fn open(&mut self) {
        self.in_word = true;
    }

    fn push(&mut self, c: char) {
        self.cur.push(c);
        self.in_word = true;
    }

    fn push_str(&mut self, s: &str) {
        if !s.is_empty() {
            self.cur.push_str(s);
            self.in_word = true;
        }
    }

    /// A character that was neither quoted nor escaped: the only kind that
    /// may separate words.
    fn bare(&mut self, c: char) {
        if self.split && c.is_whitespace() {
            self.end_word();
        } else {
            self.push(c);
        }
    }

    fn end_word(&mut self) {
        if self.in_word {
            self.words.push(std::mem::take(&mut self.cur));
            self.in_word = false;
        }
    }
}

struct Lexer<'a> {
    src: Vec<char>,
    pos: usize,
    /// How many `${...}` operands enclose the current position.
    depth: usize,
    lookup: &'a dyn Fn(&str) -> Option<String>,
    escape: char,
}

impl<'a> Lexer<'a> {
    fn new(s: &str, lookup: &'a dyn Fn(&str) -> Option<String>, escape: char) -> Lexer<'a> {
        Lexer {
            src: s.chars().collect(),
            pos: 0,
            depth: 0,
            lookup,
            escape,
        }
    }

    fn peek(&self) -> Option<char> {
        self.src.get(self.pos).copied()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += 1;
        Some(c)
    }

    /// Expands until the end of input or, when `brace` holds the position of
    /// the enclosing `${`, until the `}` that closes it.
    fn run(&mut self, out: &mut Sink, brace: Option<usize>) -> Result<(), ExpandError> {
        while let Some(c) = self.bump() {
            match c {
                '}' if brace.is_some() => return Ok(()),
                '\'' => self.single_quoted(out)?,
                '"' => self.double_quoted(out)?,
                '$' => {
                    let v = self.dollar(self.pos - 1)?;
                    out.push_str(&v);
                }
                // A lone escape at the very end has nothing to escape; Docker
                // keeps it rather than silently dropping a character.
                _ if c == self.escape => out.push(self.bump().unwrap_or(c)),
                _ => out.bare(c),
            }
        }
        match brace {
            Some(start) => Err(ExpandError::UnterminatedBrace(self.text_from(start))),
            None => Ok(()),
        }
    }

    fn single_quoted(&mut self, out: &mut Sink) -> Result<(), ExpandError> {
        out.open();
        loop {
            match self.bump() {
                None => return Err(ExpandError::UnterminatedSingleQuote),
                Some('\'') => return Ok(()),
                Some(c) => out.push(c),
            }
        }
    }

    fn double_quoted(&mut self, out: &mut Sink) -> Result<(), ExpandError> {
        out.open();
        loop {
            match self.bump() {
                None => return Err(ExpandError::UnterminatedDoubleQuote),
                Some('"') => return Ok(()),
                Some('$') => {
                    let v = self.dollar(self.pos - 1)?;
                    out.push_str(&v);
                }
                // Inside double quotes the escape only protects the characters
                // that would otherwise mean something there, so Windows paths
                // like "C:\Program Files" survive with the default escape.
                Some(c) if c == self.escape => match self.peek() {
                    Some(n) if n == '$' || n == '"' || n == self.escape => {
                        self.pos += 1;
                        out.push(n);
                    }
                    _ => out.push(c),
                },
                Some(c) => out.push(c),
            }
        }
    }

    /// Called just after the `$` found at `start`.
    fn dollar(&mut self, start: usize) -> Result<String, ExpandError> {
        match self.peek() {
            Some('{') => {
                self.pos += 1;
                self.braced(start)
            }
            // Positional parameters never exist in a Dockerfile, so `$1` is
            // always empty, but it must still consume the digit.
            Some(c) if c.is_ascii_digit() => {
                self.pos += 1;
                Ok(String::new())
            }
            Some(c) if is_name_start(c) => {
                let name = self.name();
                Ok((self.lookup)(&name).unwrap_or_default())
            }
            _ => Ok("$".to_string()),
        }
    }

    fn name(&mut self) -> String {
        let mut name = String::new();
        while let Some(c) = self.peek().filter(|&c| is_name_char(c)) {
            name.push(c);
            self.pos += 1;
        }
        name
    }

    /// Called just after the `{` of the `${` found at `start`.
    fn braced(&mut self, start: usize) -> Result<String, ExpandError> {
        let positional = self.peek().is_some_and(|c| c.is_ascii_digit());
        let name = if positional {
            let mut digits = String::new();
            while let Some(c) = self.peek().filter(char::is_ascii_digit) {
                digits.push(c);
                self.pos += 1;
            }
            digits
        } else if self.peek().is_some_and(is_name_start) {
            self.name()
        } else {
            String::new()
        };

        let Some(next) = self.bump() else {
            return Err(ExpandError::UnterminatedBrace(self.text_from(start)));
        };
        if name.is_empty() {
            return Err(self.bad_substitution(start));
        }
        let value = if positional {
            None
        } else {
            (self.lookup)(&name)
        };
        let (op, colon) = match next {
            '}' => return Ok(value.unwrap_or_default()),
            ':' => match self.bump() {
                Some(op @ ('-' | '+' | '?')) => (op, true),
                Some(_) => return Err(self.bad_substitution(start)),
                None => return Err(ExpandError::UnterminatedBrace(self.text_from(start))),
            },
            '-' | '+' | '?' => (next, false),
            _ => return Err(self.bad_substitution(start)),
        };

        // Docker expands the operand whether or not it ends up used, so an
        // error inside it (e.g. a nested `:?`) surfaces either way.
        if self.depth >= MAX_NESTING {
            return Err(ExpandError::TooDeep(MAX_NESTING));
        }
        let mut operand = Sink::new(false);
        self.depth += 1;
        let r = self.run(&mut operand, Some(start));
        self.depth -= 1;
        r?;
        let operand = operand.cur;

        // With the colon an empty value counts as unset.
        let set = match &value {
            Some(v) => !colon || !v.is_empty(),
            None => false,
        };
        match op {
            '-' if set => Ok(value.unwrap_or_default()),
            '-' => Ok(operand),
            '+' if set => Ok(operand),
            '+' => Ok(String::new()),
            _ if set => Ok(value.unwrap_or_default()),
            _ => {
                let message = if !operand.is_empty() {
                    operand
                } else if colon {
                    "parameter null or not set".to_string()
                } else {
                    "parameter not set".to_string()
                };
                Err(ExpandError::Required { name, message })
            }
        }
    }

    fn text_from(&self, start: usize) -> String {
        self.src[start..].iter().collect()
    }

    /// The `${...}` text starting at `start`, up to its `}` if there is one,
    /// so the error shows the user exactly what Docker would have rejected.
    fn bad_substitution(&self, start: usize) -> ExpandError {
        let rest = &self.src[start..];
        let end = rest
            .iter()
            .position(|&c| c == '}')
            .map_or(rest.len(), |i| i + 1);
        ExpandError::BadSubstitution(rest[..end].iter().collect())
    }
}

fn is_name_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_'
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "A" => Some("alpha".into()),
            "B" => Some("b c".into()),
            "EMPTY" => Some(String::new()),
            "_x1" => Some("under".into()),
            _ => None,
        }
    }

    fn w(s: &str) -> String {
        word(s, &env, '\\').unwrap()
    }

    fn wb(s: &str) -> String {
        word(s, &env, '`').unwrap()
    }

    fn ws(s: &str) -> Vec<String> {
        words(s, &env, '\\').unwrap()
    }

    fn err(s: &str) -> ExpandError {
        word(s, &env, '\\').unwrap_err()
    }

    #[test]
    fn plain_text_is_unchanged() {
        assert_eq!(w("hello world"), "hello world");
        assert_eq!(w(""), "");
    }

    #[test]
    fn simple_variables() {
        assert_eq!(w("$A"), "alpha");
        assert_eq!(w("x$A-y"), "xalpha-y");
        assert_eq!(w("$_x1"), "under");
        assert_eq!(w("${A}x"), "alphax");
        assert_eq!(w("$Ax"), "");
        assert_eq!(w("$UNSET"), "");
        assert_eq!(w("${UNSET}"), "");
        assert_eq!(w("$A$A"), "alphaalpha");
    }

    #[test]
    fn dollar_without_a_name_is_literal() {
        assert_eq!(w("$"), "$");
        assert_eq!(w("a$"), "a$");
        assert_eq!(w("$-x"), "$-x");
        assert_eq!(w("$ x"), "$ x");
        assert_eq!(w("$/"), "$/");
        assert_eq!(w("\"$\""), "$");
    }

    #[test]
    fn digits_are_empty_positionals() {
        assert_eq!(w("$1"), "");
        assert_eq!(w("$12"), "2");
        assert_eq!(w("a$0b"), "ab");
        assert_eq!(w("${1}"), "");
        assert_eq!(w("${1:-one}"), "one");
    }

    #[test]
    fn single_quotes_are_literal() {
        assert_eq!(w("'$A'"), "$A");
        assert_eq!(w(r"'a\b'"), r"a\b");
        assert_eq!(w(r#"'"'"#), "\"");
        assert_eq!(w("'a b'c"), "a bc");
        assert_eq!(w("''"), "");
    }

    #[test]
    fn double_quotes_expand() {
        assert_eq!(w("\"$A\""), "alpha");
        assert_eq!(w("\"${A} and $B\""), "alpha and b c");
        assert_eq!(w("\"'$A'\""), "'alpha'");
        assert_eq!(w("x\"y\"z"), "xyz");
    }

    #[test]
    fn escape_in_double_quotes_only_protects_specials() {
        assert_eq!(w(r#""\$A""#), "$A");
        assert_eq!(w(r#""\"""#), "\"");
        assert_eq!(w(r#""\\""#), "\\");
        assert_eq!(w(r#""\n""#), r"\n");
        assert_eq!(w(r#""C:\Program Files""#), r"C:\Program Files");
    }

    #[test]
    fn escape_outside_quotes() {
        assert_eq!(w(r"\$A"), "$A");
        assert_eq!(w(r"\a\b"), "ab");
        assert_eq!(w(r"\\"), "\\");
        assert_eq!(w(r"\'x\'"), "'x'");
        assert_eq!(w(r#"\""#), "\"");
        assert_eq!(w(r"a\"), r"a\");
    }

    #[test]
    fn backtick_escape() {
        assert_eq!(wb(r"C:\Windows\$A"), r"C:\Windows\alpha");
        assert_eq!(wb("`$A"), "$A");
        assert_eq!(wb("a``b"), "a`b");
        assert_eq!(wb("a`"), "a`");
        assert_eq!(wb(r#""`$A `" `x\""#), "$A \" `x\\");
        assert_eq!(wb("'`$A'"), "`$A");
        assert_eq!(wb("${UNSET:-`}}"), "}");
        assert_eq!(
            words("a` b c", &env, '`').unwrap(),
            vec!["a b".to_string(), "c".to_string()]
        );
    }

    #[test]
    fn default_operators() {
        assert_eq!(w("${UNSET:-dflt}"), "dflt");
        assert_eq!(w("${EMPTY:-dflt}"), "dflt");
        assert_eq!(w("${A:-dflt}"), "alpha");
        assert_eq!(w("${UNSET-dflt}"), "dflt");
        assert_eq!(w("${EMPTY-dflt}"), "");
        assert_eq!(w("${A-dflt}"), "alpha");
        assert_eq!(w("${UNSET:-}"), "");
    }

    #[test]
    fn alternative_operators() {
        assert_eq!(w("${A:+alt}"), "alt");
        assert_eq!(w("${EMPTY:+alt}"), "");
        assert_eq!(w("${UNSET:+alt}"), "");
        assert_eq!(w("${A+alt}"), "alt");
        assert_eq!(w("${EMPTY+alt}"), "alt");
        assert_eq!(w("${UNSET+alt}"), "");
    }

    #[test]
    fn required_operators() {
        assert_eq!(w("${A:?no}"), "alpha");
        assert_eq!(w("${EMPTY?no}"), "");
        assert_eq!(
            err("${UNSET:?must be set}"),
            ExpandError::Required {
                name: "UNSET".into(),
                message: "must be set".into()
            }
        );
        assert_eq!(
            err("${EMPTY:?}").to_string(),
            "EMPTY: parameter null or not set"
        );
        assert_eq!(err("${UNSET?}").to_string(), "UNSET: parameter not set");
        assert_eq!(
            err("${UNSET?$A is needed}").to_string(),
            "UNSET: alpha is needed"
        );
    }

    #[test]
    fn operand_is_itself_expanded() {
        assert_eq!(w("${UNSET:-$A}"), "alpha");
        assert_eq!(w("${UNSET:-${A}/x}"), "alpha/x");
        assert_eq!(w("${UNSET:-${ALSO:-deep}}"), "deep");
        assert_eq!(w("${UNSET:-\"a}b\"}"), "a}b");
        assert_eq!(w("${UNSET:-'$A'}"), "$A");
        assert_eq!(w(r"${UNSET:-a\}b}"), "a}b");
        assert_eq!(w("\"${UNSET:-x y}\""), "x y");
        assert_eq!(w("${A:+[$A]}"), "[alpha]");
        // Docker evaluates the operand even when the variable is set.
        assert_eq!(err("${A:-${UNSET:?inner}}").to_string(), "UNSET: inner");
    }

    #[test]
    fn errors() {
        assert_eq!(err("'abc"), ExpandError::UnterminatedSingleQuote);
        assert_eq!(err("\"abc"), ExpandError::UnterminatedDoubleQuote);
        assert_eq!(err(r#""abc\""#), ExpandError::UnterminatedDoubleQuote);
        assert_eq!(err("x${A"), ExpandError::UnterminatedBrace("${A".into()));
        assert_eq!(err("${"), ExpandError::UnterminatedBrace("${".into()));
        assert_eq!(
            err("${A:-abc"),
            ExpandError::UnterminatedBrace("${A:-abc".into())
        );
        assert_eq!(err("${A:"), ExpandError::UnterminatedBrace("${A:".into()));
        assert_eq!(err("${}"), ExpandError::BadSubstitution("${}".into()));
        assert_eq!(err("${A B}"), ExpandError::BadSubstitution("${A B}".into()));
        assert_eq!(
            err("${A:x}y"),
            ExpandError::BadSubstitution("${A:x}".into())
        );
        assert_eq!(err("${-A}"), ExpandError::BadSubstitution("${-A}".into()));
        assert_eq!(err("${A:-'x}"), ExpandError::UnterminatedSingleQuote);
        assert_eq!(
            err("${A").to_string(),
            "missing '}' in variable substitution \"${A\""
        );
    }

    fn nested(levels: usize) -> String {
        format!("{}x{}", "${X:-".repeat(levels), "}".repeat(levels))
    }

    #[test]
    fn nesting_is_limited_not_a_stack_overflow() {
        assert_eq!(w(&nested(MAX_NESTING)), "x");
        assert_eq!(w(&format!("\"{}\"", nested(MAX_NESTING))), "x");
        for levels in [MAX_NESTING + 1, 20_000] {
            let e = err(&nested(levels));
            assert_eq!(e, ExpandError::TooDeep(MAX_NESTING));
            assert_eq!(
                e.to_string(),
                "variable substitution nested deeper than 64 levels"
            );
            // Inside double quotes the recursion takes another path.
            let e = err(&format!("\"{}\"", nested(levels)));
            assert_eq!(e, ExpandError::TooDeep(MAX_NESTING));
            assert_eq!(
                words(&nested(levels), &env, '\\').unwrap_err(),
                ExpandError::TooDeep(MAX_NESTING)
            );
        }
        // Siblings do not add up: only nesting counts.
        assert_eq!(w(&nested(40).repeat(100)), "x".repeat(100));
    }

    #[test]
    fn word_does_not_split() {
        assert_eq!(w("a  b\tc"), "a  b\tc");
        assert_eq!(w("$B"), "b c");
    }

    #[test]
    fn words_split_on_unquoted_whitespace() {
        assert_eq!(ws("  a b\t c  "), vec!["a", "b", "c"]);
        assert_eq!(ws("a=\"b c\" d='e f'"), vec!["a=b c", "d=e f"]);
        assert_eq!(ws(r"a\ b c"), vec!["a b", "c"]);
        assert_eq!(ws("\"\" x"), vec!["", "x"]);
        assert_eq!(ws("a= b"), vec!["a=", "b"]);
        assert!(ws("").is_empty());
        assert!(ws("   ").is_empty());
    }

    #[test]
    fn words_keep_variable_values_whole() {
        assert_eq!(ws("X=$B Y=$A"), vec!["X=b c", "Y=alpha"]);
        assert_eq!(ws("$UNSET 80"), vec!["80"]);
        assert_eq!(ws("$EMPTY\"\""), vec![""]);
        assert_eq!(ws("x=${UNSET:-a b}"), vec!["x=a b"]);
    }

    #[test]
    fn words_errors_propagate() {
        assert_eq!(
            words("a 'b", &env, '\\').unwrap_err(),
            ExpandError::UnterminatedSingleQuote
        );
    }

    #[test]
    fn key_value_pairs() {
        let kv = key_values(ws("a=1 b= c d=x=y \"e f\"=g"));
        assert_eq!(
            kv,
            vec![
                ("a".to_string(), Some("1".to_string())),
                ("b".to_string(), Some(String::new())),
                ("c".to_string(), None),
                ("d".to_string(), Some("x=y".to_string())),
                ("e f".to_string(), Some("g".to_string())),
            ]
        );
        assert!(key_values(Vec::new()).is_empty());
    }

    #[test]
    fn non_ascii_text_passes_through() {
        assert_eq!(w("héllo $A ✓"), "héllo alpha ✓");
        assert_eq!(w("$é"), "$é");
    }
}
