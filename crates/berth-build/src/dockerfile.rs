//! A Dockerfile as stages of steps, with every word still unexpanded (what
//! a word expands to depends on the ARG and ENV values in force when its
//! step runs) and every step knowing its line, for error messages.

use parse_dockerfile::{
    Command, Flag, HealthcheckArguments, Instruction, JsonOrStringArray, Source,
};

/// A parse error with the Dockerfile line it is about.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("dockerfile parse error on line {line}: {message}")]
pub struct ParseError {
    pub line: usize,
    pub message: String,
}

fn perr(line: usize, message: impl Into<String>) -> ParseError {
    ParseError {
        line,
        message: message.into(),
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Dockerfile {
    /// ARGs before the first FROM: usable in FROM lines, and in a stage
    /// that redeclares them.
    pub global_args: Vec<(String, Option<String>)>,
    pub stages: Vec<Stage>,
    pub escape: char,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Stage {
    pub name: Option<String>,
    /// The FROM word, unexpanded: an image, `scratch`, or an earlier stage.
    pub base: String,
    pub platform: Option<String>,
    pub line: usize,
    /// The FROM line as written, for progress output.
    pub text: String,
    pub steps: Vec<Step>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub line: usize,
    /// The instruction as written (continuations joined), for output.
    pub text: String,
    pub inst: Inst,
}

/// Exec form (a JSON array, run as is) or shell form (run by SHELL).
#[derive(Debug, Clone, PartialEq)]
pub enum CmdForm {
    Exec(Vec<String>),
    Shell(String),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Src {
    Path(String),
    /// An inline file; `name` is its delimiter (the file name when the
    /// destination is a directory).
    HereDoc {
        name: String,
        body: String,
        expand: bool,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct CopySpec {
    pub add: bool,
    pub srcs: Vec<Src>,
    pub dest: String,
    pub from: Option<String>,
    pub chown: Option<String>,
    pub chmod: Option<String>,
    pub link: bool,
    pub checksum: Option<String>,
    pub keep_git_dir: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Health {
    /// Docker's Test: ["NONE"], ["CMD", ...] or ["CMD-SHELL", cmd].
    pub test: Vec<String>,
    pub interval: Option<String>,
    pub timeout: Option<String>,
    pub start_period: Option<String>,
    pub start_interval: Option<String>,
    pub retries: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Inst {
    Run {
        cmd: CmdForm,
        /// `--mount` values, unparsed.
        mounts: Vec<String>,
        network: Option<String>,
    },
    Copy(CopySpec),
    /// Raw `k=v ...` (or legacy `k v`) text.
    Env(String),
    Arg(String),
    Label(String),
    Workdir(String),
    Expose(Vec<String>),
    Cmd(CmdForm),
    Entrypoint(CmdForm),
    User(String),
    Volume(Vec<String>),
    Shell(Vec<String>),
    Stopsignal(String),
    Healthcheck(Health),
    /// The trigger instruction's text, run when the image is a base.
    Onbuild(String),
    Maintainer(String),
}

/// Byte offset to 1-based line number.
fn line_of(text: &str, pos: usize) -> usize {
    text.as_bytes()[..pos.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// The logical first line of the instruction on `line`, with continuation
/// lines joined (comment lines inside a continuation are dropped).
fn display_text(text: &str, line: usize, escape: char) -> String {
    let mut out = String::new();
    for l in text.split('\n').skip(line - 1) {
        let l = l.trim_end_matches('\r');
        if !out.is_empty() && l.trim_start().starts_with('#') {
            continue;
        }
        match l.trim_end().strip_suffix(escape) {
            Some(rest) => {
                out.push_str(rest.trim());
                out.push(' ');
            }
            None => {
                out.push_str(l.trim());
                break;
            }
        }
    }
    collapse(out)
}

fn collapse(s: String) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Heredoc delimiters named on an instruction's first line, in order,
/// with whether tabs are stripped (`<<-`).
fn heredoc_names(first_line: &str) -> Vec<(String, bool)> {
    let b = first_line.as_bytes();
    let mut out = Vec::new();
    let mut quote: Option<u8> = None;
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == b'"' || c == b'\'' => quote = Some(c),
            None if c == b'<' && b.get(i + 1) == Some(&b'<') && b.get(i + 2) != Some(&b'<') => {
                let mut j = i + 2;
                let strip = b.get(j) == Some(&b'-');
                if strip {
                    j += 1;
                }
                while j < b.len() && (b[j] == b'"' || b[j] == b'\'') {
                    j += 1;
                }
                let st = j;
                while j < b.len()
                    && (b[j].is_ascii_alphanumeric() || matches!(b[j], b'_' | b'-' | b'.'))
                {
                    j += 1;
                }
                // `st` and `j` both sit just past ASCII bytes, so they are
                // character boundaries.
                if j > st {
                    out.push((first_line[st..j].to_string(), strip));
                }
                i = j;
                continue;
            }
            None => {}
        }
        i += 1;
    }
    out
}

/// A RUN whose heredocs were lifted out of the text before parsing.
#[derive(Debug, Clone)]
struct HereRun {
    /// The command on the RUN line, after the flags.
    cmd: String,
    docs: Vec<(String, String)>,
}

/// Lifts the heredoc bodies of RUN instructions out of the text (the
/// parser only knows a lone leading heredoc), leaving blank lines so line
/// numbers stay true. Returns the text to parse and the lifted RUNs by line.
fn lift_run_heredocs(
    text: &str,
    escape: char,
) -> Result<(String, std::collections::HashMap<usize, HereRun>), ParseError> {
    let lines: Vec<&str> = text.split('\n').collect();
    let mut out: Vec<String> = Vec::with_capacity(lines.len());
    let mut runs = std::collections::HashMap::new();
    let mut continued = false;
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i].trim_end_matches('\r');
        let t = line.trim_start();
        // `get` rather than slicing: the third byte of a line may fall
        // inside a multi-byte character (`# éxample`).
        let starts_run = !continued
            && t.get(..3).is_some_and(|k| k.eq_ignore_ascii_case("RUN"))
            && t.as_bytes().get(3).is_some_and(u8::is_ascii_whitespace);
        let names = if starts_run {
            heredoc_names(t)
        } else {
            Vec::new()
        };
        if names.is_empty() {
            if !t.starts_with('#') {
                continued = t.trim_end().ends_with(escape);
            }
            out.push(lines[i].to_string());
            i += 1;
            continue;
        }
        let words: Vec<&str> = t[3..].split_whitespace().collect();
        let nflags = words.iter().take_while(|w| w.starts_with("--")).count();
        let cmd = words[nflags..].join(" ");
        out.push(format!("RUN {} true", words[..nflags].join(" ")));
        let run_line = i + 1;
        i += 1;
        let mut docs = Vec::new();
        for (name, strip) in names {
            let mut body = String::new();
            loop {
                let Some(l) = lines.get(i) else {
                    return Err(perr(
                        run_line,
                        format!("unterminated heredoc: no line {name:?} ends it"),
                    ));
                };
                let l = l.trim_end_matches('\r');
                let l = if strip { l.trim_start_matches('\t') } else { l };
                out.push(String::new());
                i += 1;
                if l == name {
                    break;
                }
                body.push_str(l);
                body.push('\n');
            }
            docs.push((name, body));
        }
        runs.insert(run_line, HereRun { cmd, docs });
    }
    Ok((out.join("\n"), runs))
}

fn command(c: &Command<'_>) -> CmdForm {
    match c {
        Command::Exec(v) => CmdForm::Exec(v.value.iter().map(|s| s.value.to_string()).collect()),
        Command::Shell(s) => CmdForm::Shell(s.value.to_string()),
        _ => CmdForm::Shell(String::new()),
    }
}

struct Flags<'x> {
    line: usize,
    inst: &'static str,
    flags: Vec<(String, Option<String>)>,
    _p: std::marker::PhantomData<&'x ()>,
}

impl Flags<'_> {
    fn new(line: usize, inst: &'static str, flags: &[Flag<'_>]) -> Self {
        Flags {
            line,
            inst,
            flags: flags
                .iter()
                .map(|f| {
                    (
                        f.name.value.to_string(),
                        f.value.as_ref().map(|v| v.value.to_string()),
                    )
                })
                .collect(),
            _p: std::marker::PhantomData,
        }
    }

    fn take(&mut self, name: &str) -> Option<String> {
        let i = self.flags.iter().position(|(n, _)| n == name)?;
        Some(self.flags.remove(i).1.unwrap_or_default())
    }

    fn take_all(&mut self, name: &str) -> Vec<String> {
        let mut out = Vec::new();
        while let Some(v) = self.take(name) {
            out.push(v);
        }
        out
    }

    fn take_bool(&mut self, name: &str) -> Result<bool, ParseError> {
        match self.take(name).as_deref() {
            None => Ok(false),
            Some("" | "true") => Ok(true),
            Some("false") => Ok(false),
            Some(v) => Err(perr(
                self.line,
                format!("{}: --{name} expects true or false, not {v:?}", self.inst),
            )),
        }
    }

    fn done(self) -> Result<(), ParseError> {
        match self.flags.first() {
            None => Ok(()),
            Some((n, _)) => Err(perr(
                self.line,
                format!("unknown flag: --{n} for {}", self.inst),
            )),
        }
    }
}

/// Parses a Dockerfile's text.
pub fn parse(original: &str) -> Result<Dockerfile, ParseError> {
    let escape_hint = if original
        .lines()
        .take_while(|l| l.starts_with('#'))
        .any(|l| l.replace(' ', "").eq_ignore_ascii_case("#escape=`"))
    {
        '`'
    } else {
        '\\'
    };
    let (lifted, here_runs) = lift_run_heredocs(original, escape_hint)?;
    let text = lifted.as_str();
    let df = parse_dockerfile::parse(text).map_err(|e| {
        // The crate appends " at line L column C"; we lead with the line.
        let msg = e.to_string();
        let msg = msg
            .rsplit_once(" at line ")
            .map(|(m, _)| m.to_string())
            .unwrap_or(msg);
        perr(e.line(), msg)
    })?;
    let escape = df
        .parser_directives
        .escape
        .as_ref()
        .map(|d| d.value.value)
        .unwrap_or('\\');
    let mut out = Dockerfile {
        global_args: Vec::new(),
        stages: Vec::new(),
        escape,
    };
    for inst in &df.instructions {
        let start = instruction_start(inst);
        let line = line_of(text, start);
        let shown = display_text(original, line, escape);
        match inst {
            Instruction::From(f) => {
                let mut flags = Flags::new(line, "FROM", &f.options);
                let platform = flags.take("platform");
                flags.done()?;
                let name = f.as_.as_ref().map(|(_, n)| n.value.to_ascii_lowercase());
                out.stages.push(Stage {
                    name,
                    base: f.image.value.to_string(),
                    platform,
                    line,
                    text: shown,
                    steps: Vec::new(),
                });
            }
            Instruction::Arg(a) if out.stages.is_empty() => {
                check_arg_names(&a.arguments.value, escape, line)?;
                for w in a.arguments.value.split_whitespace() {
                    let (k, v) = match w.split_once('=') {
                        Some((k, v)) => (k.to_string(), Some(unquote(v))),
                        None => (w.to_string(), None),
                    };
                    out.global_args.push((k, v));
                }
            }
            _ => {
                let Some(stage) = out.stages.last_mut() else {
                    return Err(perr(
                        line,
                        "no build stage in current context: the first instruction must be FROM (ARG may come before it)",
                    ));
                };
                let inst = step(text, inst, line, escape, here_runs.get(&line))?;
                stage.steps.push(Step {
                    line,
                    text: shown,
                    inst,
                });
            }
        }
    }
    if out.stages.is_empty() {
        return Err(perr(1, "the Dockerfile has no FROM instruction"));
    }
    Ok(out)
}

/// Parses one instruction (an ONBUILD trigger).
pub fn parse_trigger(text: &str) -> Result<Step, ParseError> {
    let df = parse(&format!("FROM scratch\n{text}\n")).map_err(|mut e| {
        e.line = 0;
        e
    })?;
    let mut stage = df.stages.into_iter().next().expect("one stage");
    match stage.steps.pop() {
        Some(mut s) if stage.steps.is_empty() => {
            s.line = 0;
            Ok(s)
        }
        _ => Err(perr(
            0,
            format!("ONBUILD trigger {text:?} is not one instruction"),
        )),
    }
}

fn unquote(v: &str) -> String {
    let t = v.trim();
    if t.len() >= 2
        && ((t.starts_with('"') && t.ends_with('"')) || (t.starts_with('\'') && t.ends_with('\'')))
    {
        // One ASCII quote at each end: both cuts are character boundaries.
        t[1..t.len() - 1].to_string()
    } else {
        t.to_string()
    }
}

/// An instruction's words as Docker's parser cuts them before any
/// expansion: split on unquoted, unescaped whitespace, with quotes and
/// escapes still in place.
fn raw_words(text: &str, escape: char) -> Vec<String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut quote = None;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match quote {
            None if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
                continue;
            }
            None if c == '"' || c == '\'' => quote = Some(c),
            Some(q) if c == q => quote = None,
            _ => {}
        }
        in_word = true;
        cur.push(c);
        // The escape keeps the next character in the word, whatever it is,
        // except inside single quotes where nothing is escaped.
        if c == escape && quote != Some('\'') {
            if let Some(n) = chars.next() {
                cur.push(n);
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    words
}

/// ENV and LABEL take `name=value ...`, or the legacy `name value`; a
/// word without `=` among pairs, a lone name, or a blank name is refused
/// with Docker's messages rather than becoming an odd key.
fn check_name_values(inst: &str, raw: &str, escape: char, line: usize) -> Result<(), ParseError> {
    let words = raw_words(raw, escape);
    let Some(first) = words.first() else {
        return Ok(());
    };
    if !first.contains('=') {
        if raw.trim().split_once(char::is_whitespace).is_none() {
            return Err(perr(line, format!("{inst} must have two arguments")));
        }
        return Ok(());
    }
    for w in &words {
        match w.split_once('=') {
            None => {
                return Err(perr(
                    line,
                    format!(
                        "Syntax error - can't find = in {w:?}. Must be of the form: name=value"
                    ),
                ))
            }
            Some(("", _)) => return Err(perr(line, format!("{inst} names can not be blank"))),
            Some(_) => {}
        }
    }
    Ok(())
}

/// ARG takes `name` or `name=default` words; the name may not be blank.
fn check_arg_names(raw: &str, escape: char, line: usize) -> Result<(), ParseError> {
    if raw_words(raw, escape).iter().any(|w| w.starts_with('=')) {
        return Err(perr(line, "ARG names can not be blank"));
    }
    Ok(())
}

fn instruction_start(inst: &Instruction<'_>) -> usize {
    match inst {
        Instruction::Add(i) => i.add.span.start,
        Instruction::Arg(i) => i.arg.span.start,
        Instruction::Cmd(i) => i.cmd.span.start,
        Instruction::Copy(i) => i.copy.span.start,
        Instruction::Entrypoint(i) => i.entrypoint.span.start,
        Instruction::Env(i) => i.env.span.start,
        Instruction::Expose(i) => i.expose.span.start,
        Instruction::From(i) => i.from.span.start,
        Instruction::Healthcheck(i) => i.healthcheck.span.start,
        Instruction::Label(i) => i.label.span.start,
        Instruction::Maintainer(i) => i.maintainer.span.start,
        Instruction::Onbuild(i) => i.onbuild.span.start,
        Instruction::Run(i) => i.run.span.start,
        Instruction::Shell(i) => i.shell.span.start,
        Instruction::Stopsignal(i) => i.stopsignal.span.start,
        Instruction::User(i) => i.user.span.start,
        Instruction::Volume(i) => i.volume.span.start,
        Instruction::Workdir(i) => i.workdir.span.start,
        _ => 0,
    }
}

fn step(
    text: &str,
    inst: &Instruction<'_>,
    line: usize,
    escape: char,
    here: Option<&HereRun>,
) -> Result<Inst, ParseError> {
    Ok(match inst {
        Instruction::Run(r) => {
            let mut flags = Flags::new(line, "RUN", &r.options);
            let mounts = flags.take_all("mount");
            let network = flags.take("network");
            // BuildKit's --security=insecure has no meaning here yet.
            if let Some(s) = flags.take("security") {
                if s != "sandbox" {
                    return Err(perr(line, format!("RUN --security={s} is not supported")));
                }
            }
            flags.done()?;
            let cmd = match here {
                Some(h) => heredoc_script(h),
                None => command(&r.arguments),
            };
            Inst::Run {
                cmd,
                mounts,
                network,
            }
        }
        Instruction::Copy(c) => {
            let mut flags = Flags::new(line, "COPY", &c.options);
            let spec = CopySpec {
                add: false,
                from: flags.take("from"),
                chown: flags.take("chown"),
                chmod: flags.take("chmod"),
                link: flags.take_bool("link")?,
                checksum: None,
                keep_git_dir: false,
                srcs: sources(text, &c.src, c.copy.span.start),
                dest: c.dest.value.to_string(),
            };
            flags.take("parents");
            flags.take_all("exclude");
            flags.done()?;
            Inst::Copy(spec)
        }
        Instruction::Add(c) => {
            let mut flags = Flags::new(line, "ADD", &c.options);
            let spec = CopySpec {
                add: true,
                from: None,
                chown: flags.take("chown"),
                chmod: flags.take("chmod"),
                link: flags.take_bool("link")?,
                checksum: flags.take("checksum"),
                keep_git_dir: flags.take_bool("keep-git-dir")?,
                srcs: sources(text, &c.src, c.add.span.start),
                dest: c.dest.value.to_string(),
            };
            flags.done()?;
            Inst::Copy(spec)
        }
        Instruction::Env(e) => {
            check_name_values("ENV", &e.arguments.value, escape, line)?;
            Inst::Env(e.arguments.value.to_string())
        }
        Instruction::Arg(a) => {
            check_arg_names(&a.arguments.value, escape, line)?;
            Inst::Arg(a.arguments.value.to_string())
        }
        Instruction::Label(l) => {
            check_name_values("LABEL", &l.arguments.value, escape, line)?;
            Inst::Label(l.arguments.value.to_string())
        }
        Instruction::Workdir(w) => Inst::Workdir(w.arguments.value.to_string()),
        Instruction::Expose(e) => {
            Inst::Expose(e.arguments.iter().map(|s| s.value.to_string()).collect())
        }
        Instruction::Cmd(c) => Inst::Cmd(command(&c.arguments)),
        Instruction::Entrypoint(c) => Inst::Entrypoint(command(&c.arguments)),
        Instruction::User(u) => Inst::User(u.arguments.value.to_string()),
        Instruction::Volume(v) => Inst::Volume(match &v.arguments {
            JsonOrStringArray::Json(j) => j.value.iter().map(|s| s.value.to_string()).collect(),
            JsonOrStringArray::String(s) => s.iter().map(|s| s.value.to_string()).collect(),
        }),
        Instruction::Shell(s) => {
            Inst::Shell(s.arguments.iter().map(|s| s.value.to_string()).collect())
        }
        Instruction::Stopsignal(s) => Inst::Stopsignal(s.arguments.value.to_string()),
        Instruction::Maintainer(m) => Inst::Maintainer(m.name.value.to_string()),
        Instruction::Healthcheck(h) => {
            let mut flags = Flags::new(line, "HEALTHCHECK", &h.options);
            let test = match &h.arguments {
                HealthcheckArguments::None { .. } => vec!["NONE".to_string()],
                HealthcheckArguments::Cmd { arguments, .. } => match command(arguments) {
                    CmdForm::Exec(v) => std::iter::once("CMD".to_string()).chain(v).collect(),
                    CmdForm::Shell(s) => vec!["CMD-SHELL".to_string(), s],
                },
                _ => return Err(perr(line, "HEALTHCHECK: expected CMD or NONE")),
            };
            let health = Health {
                test,
                interval: flags.take("interval"),
                timeout: flags.take("timeout"),
                start_period: flags.take("start-period"),
                start_interval: flags.take("start-interval"),
                retries: flags.take("retries"),
            };
            flags.done()?;
            Inst::Healthcheck(health)
        }
        Instruction::Onbuild(o) => {
            let inner = &*o.instruction;
            if matches!(
                inner,
                Instruction::Onbuild(_) | Instruction::From(_) | Instruction::Maintainer(_)
            ) {
                return Err(perr(
                    line,
                    "ONBUILD: chaining ONBUILD, FROM or MAINTAINER is not allowed",
                ));
            }
            let shown = display_text(text, line, '\\');
            let inner = shown
                .split_once(char::is_whitespace)
                .map(|(_, r)| r)
                .unwrap_or("");
            Inst::Onbuild(inner.trim().to_string())
        }
        Instruction::From(_) => unreachable!("FROM handled by the caller"),
        _ => return Err(perr(line, "unsupported instruction")),
    })
}

/// A RUN with heredocs becomes one shell script: a bare `RUN <<EOT` runs
/// the document itself; otherwise the shell reads the documents as the
/// heredocs they are in its own syntax.
fn heredoc_script(h: &HereRun) -> CmdForm {
    let only_doc = h.docs.len() == 1
        && h.cmd
            .trim_start_matches("<<")
            .trim_start_matches('-')
            .trim_matches(['"', '\''])
            == h.docs[0].0;
    if only_doc {
        let (name, body) = &h.docs[0];
        // A shebang picks the interpreter, as BuildKit does.
        if body.starts_with("#!") {
            return CmdForm::Shell(format!(
                "f=$(mktemp); cat > \"$f\" <<'{name}'\n{body}{name}\nchmod +x \"$f\"; \"$f\"; r=$?; rm -f \"$f\"; exit $r"
            ));
        }
        return CmdForm::Shell(body.clone());
    }
    let mut script = format!("{}\n", h.cmd);
    for (name, body) in &h.docs {
        script.push_str(body);
        script.push_str(name);
        script.push('\n');
    }
    CmdForm::Shell(script)
}

fn sources(text: &str, src: &[Source<'_>], start: usize) -> Vec<Src> {
    let first_line = text
        .get(start..)
        .unwrap_or("")
        .split('\n')
        .next()
        .unwrap_or("");
    let mut names = heredoc_names(first_line).into_iter().map(|(n, _)| n);
    src.iter()
        .map(|s| match s {
            Source::Path(p) => Src::Path(p.value.to_string()),
            Source::HereDoc(h) => Src::HereDoc {
                name: names.next().unwrap_or_else(|| "heredoc".into()),
                body: h.value.to_string(),
                expand: h.expand,
            },
            _ => Src::Path(String::new()),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stages_steps_lines_and_text() {
        let df = parse(
            "# syntax=docker/dockerfile:1\nARG BASE=busybox\nFROM $BASE AS Build\nRUN echo hi \\\n  && echo there\nCOPY --chown=1:1 a b /dst/\nFROM scratch\nCOPY --from=build /x /\n",
        )
        .unwrap();
        assert_eq!(
            df.global_args,
            [("BASE".to_string(), Some("busybox".to_string()))]
        );
        assert_eq!(df.stages.len(), 2);
        let s = &df.stages[0];
        assert_eq!(
            (s.name.as_deref(), s.base.as_str(), s.line),
            (Some("build"), "$BASE", 3)
        );
        assert_eq!(s.steps[0].line, 4);
        assert_eq!(s.steps[0].text, "RUN echo hi && echo there");
        assert!(
            matches!(&s.steps[1].inst, Inst::Copy(c) if c.chown.as_deref() == Some("1:1") && c.srcs.len() == 2 && c.dest == "/dst/")
        );
        assert_eq!(df.stages[1].steps[0].line, 8);
    }

    #[test]
    fn heredocs_become_scripts() {
        let df = parse("FROM x\nRUN <<EOT\necho one\necho two\nEOT\nRUN cat <<A > /f\nbody\nA\nRUN --network=none <<-X sh\n\tindented\n\tX\nCOPY <<EOF /x\nhello $X\nEOF\n").unwrap();
        let steps = &df.stages[0].steps;
        assert_eq!(
            steps[0].inst,
            Inst::Run {
                cmd: CmdForm::Shell("echo one\necho two\n".into()),
                mounts: vec![],
                network: None
            }
        );
        assert_eq!(
            steps[1].inst,
            Inst::Run {
                cmd: CmdForm::Shell("cat <<A > /f\nbody\nA\n".into()),
                mounts: vec![],
                network: None
            }
        );
        assert_eq!(
            steps[2].inst,
            Inst::Run {
                cmd: CmdForm::Shell("<<-X sh\nindented\nX\n".into()),
                mounts: vec![],
                network: Some("none".into())
            }
        );
        assert_eq!(steps[3].line, 12);
        assert!(
            matches!(&steps[3].inst, Inst::Copy(c) if c.srcs == [Src::HereDoc { name: "EOF".into(), body: "hello $X\n".into(), expand: true }])
        );
    }

    #[test]
    fn errors_name_the_line() {
        let e = parse("FROM x\nFOO bar\n").unwrap_err();
        assert_eq!(e.line, 2);
        assert!(e.to_string().contains("unknown instruction"), "{e}");
        let e = parse("FROM x\nRUN <<EOT\necho\n").unwrap_err();
        assert_eq!(e.line, 2);
        assert!(e.to_string().contains("unterminated heredoc"), "{e}");
        let e = parse("RUN true\n").unwrap_err();
        assert_eq!(e.line, 1);
        let e = parse("FROM x\nCOPY --bogus=1 a b\n").unwrap_err();
        assert_eq!(
            (e.line, e.message.as_str()),
            (2, "unknown flag: --bogus for COPY")
        );
    }

    #[test]
    fn multi_byte_characters_near_the_start_of_a_line_parse() {
        // Each of these once panicked: the third byte of the line falls
        // inside a multi-byte character.
        for text in [
            "# éxample\nFROM x\n",
            "# 中文注释\nFROM x\n",
            "FROM x\n# éxample\nRUN echo é\n",
            "FROM x\nRUé\n",
            "FROM x\nRU中 x\n",
            "FROM x\né\n",
            "FROM x\n\u{1F600}\n",
            "FROM x\n  é\n",
            "FROM x\nRUN é <<EOT\n中\nEOT\n",
        ] {
            let _ = parse(text);
        }
        let df = parse("# éxample\n# 中文注释\nFROM x\nRUN echo 中文 é\n").unwrap();
        let step = &df.stages[0].steps[0];
        assert_eq!((step.line, step.text.as_str()), (4, "RUN echo 中文 é"));
        let e = parse("FROM x\nRUé\n").unwrap_err();
        assert_eq!(e.line, 2);
        let df = parse("FROM x\nRUN cat <<中 <<EOT\nbody é\nEOT\n").unwrap();
        assert!(matches!(&df.stages[0].steps[0].inst, Inst::Run { .. }));
    }

    fn message(text: &str) -> String {
        parse(text).unwrap_err().message
    }

    #[test]
    fn name_value_lists_refuse_junk_with_dockers_words() {
        assert_eq!(
            message("FROM x\nLABEL a\n"),
            "LABEL must have two arguments"
        );
        assert_eq!(message("FROM x\nENV a\n"), "ENV must have two arguments");
        assert_eq!(
            message("FROM x\nLABEL =x\n"),
            "LABEL names can not be blank"
        );
        assert_eq!(
            message("FROM x\nENV a=1 =2\n"),
            "ENV names can not be blank"
        );
        assert_eq!(
            message("FROM x\nLABEL a=1 b\n"),
            r#"Syntax error - can't find = in "b". Must be of the form: name=value"#
        );
        assert_eq!(message("FROM x\nARG =x\n"), "ARG names can not be blank");
        assert_eq!(message("FROM x\nARG a =x\n"), "ARG names can not be blank");
        assert_eq!(message("ARG =x\nFROM x\n"), "ARG names can not be blank");
        let e = parse("FROM x\nRUN true\nLABEL a\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "dockerfile parse error on line 3: LABEL must have two arguments"
        );
        // What Docker accepts still parses.
        for ok in [
            "LABEL a=1 b=2",
            "LABEL a b c",
            "LABEL \"a b\"=c d=\"e=f g\"",
            "LABEL a=1 \\\n  b=2",
            "LABEL \"a\"=",
            "LABEL a\\ b=c",
            "ENV A B",
            "ENV A=",
            "ARG A",
            "ARG A B=1 C=",
            "ARG \"A\"=1",
        ] {
            parse(&format!("FROM x\n{ok}\n")).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
    }

    #[test]
    fn deeply_nested_substitution_parses_and_fails_to_expand_cleanly() {
        let deep = format!("{}x{}", "${X:-".repeat(20_000), "}".repeat(20_000));
        let df = parse(&format!("FROM x\nWORKDIR {deep}\nLABEL a={deep}\n")).unwrap();
        for step in &df.stages[0].steps {
            let (Inst::Workdir(w) | Inst::Label(w)) = &step.inst else {
                panic!("{:?}", step.inst)
            };
            let e = crate::expand::words(w, &|_| None, df.escape).unwrap_err();
            assert_eq!(
                e.to_string(),
                "variable substitution nested deeper than 64 levels"
            );
        }
    }

    #[test]
    fn raw_words_keep_quotes_and_escapes() {
        assert_eq!(
            raw_words(r#"a="b c" 'd e'=f g\ h "i\"j" 'k\'"#, '\\'),
            [r#"a="b c""#, "'d e'=f", r"g\ h", r#""i\"j""#, r"'k\'"]
        );
        assert_eq!(raw_words("a` b c", '`'), ["a` b", "c"]);
        assert!(raw_words("  ", '\\').is_empty());
        assert_eq!(raw_words("\"\"", '\\'), ["\"\""]);
    }

    #[test]
    fn onbuild_trigger_round_trips() {
        let df = parse("FROM x\nONBUILD RUN echo hi\n").unwrap();
        let Inst::Onbuild(t) = &df.stages[0].steps[0].inst else {
            panic!()
        };
        assert_eq!(t, "RUN echo hi");
        let s = parse_trigger(t).unwrap();
        assert!(matches!(s.inst, Inst::Run { .. }));
    }
}
