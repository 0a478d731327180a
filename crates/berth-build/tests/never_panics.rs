//! Property: parsing a Dockerfile, expanding its words and reading a
//! `.dockerignore` never panic, whatever UTF-8 text they are given: bad
//! input is an error value, never a crash of `berth build` (exit 101).
//!
//! The inputs come from a small seeded generator (no dependency needed):
//! fragments that steer into the parser's corners (keywords, flags,
//! `$`/`${`/`}`, escapes, quotes, heredoc markers, JSON brackets,
//! continuations, directives) mixed with multi-byte and random Unicode
//! characters. The run is deterministic; `BERTH_PROPTEST_CASES` and
//! `BERTH_PROPTEST_SEED` widen or move it.

use std::panic::{catch_unwind, AssertUnwindSafe};

use berth_build::expand;
use berth_build::ignore::Matcher;
use berth_build::{parse, parse_trigger, CmdForm, Inst, Src};

/// SplitMix64: tiny, fast and good enough to pick fragments.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        xs[self.below(xs.len())]
    }
}

const KEYWORDS: &[&str] = &[
    "FROM",
    "from",
    "RUN",
    "run",
    "Ru",
    "RUé",
    "CMD",
    "LABEL",
    "EXPOSE",
    "ENV",
    "ADD",
    "COPY",
    "ENTRYPOINT",
    "VOLUME",
    "USER",
    "WORKDIR",
    "ARG",
    "ONBUILD",
    "STOPSIGNAL",
    "HEALTHCHECK",
    "SHELL",
    "MAINTAINER",
    "AS",
    "scratch",
    "NONE",
];

const PIECES: &[&str] = &[
    " ",
    " ",
    " ",
    "\t",
    "\n",
    "\n",
    "\r\n",
    "\\\n",
    "`\n",
    "\\",
    "`",
    "$",
    "${",
    "}",
    "{",
    ":-",
    ":+",
    ":?",
    "-",
    "+",
    "?",
    "=",
    "\"",
    "'",
    "[",
    "]",
    ",",
    "#",
    "# ",
    "<<",
    "<<-",
    "<<EOF",
    "<<'EOF'",
    "<<\"EOF\"",
    "<<-EOT",
    "EOF",
    "EOT",
    "--from=",
    "--mount=",
    "--chown=",
    "--network=",
    "--platform=",
    "--link",
    "--checksum=",
    "--interval=",
    "=true",
    "type=cache",
    "target=/x",
    "CMD",
    "${X:-",
    "$X",
    "${X}",
    "$1",
    "${1}",
    "a",
    "b",
    "X",
    "_x",
    "0",
    "9",
    "/",
    "..",
    "*",
    "**",
    "!",
    "é",
    "中文",
    "注释",
    "😀",
    "\u{0}",
    "\u{7f}",
    "\u{85}",
    "\u{a0}",
    "\u{200b}",
    "\u{feff}",
    "\u{2028}",
    "\u{10ffff}",
    "# syntax=docker/dockerfile:1",
    "# escape=`",
    "# escape=\\",
    "[\"sh\", \"-c\"]",
    "[\"",
    "\"]",
    "[]",
];

/// A random scalar value, weighted toward the ranges that trip byte
/// arithmetic: two-, three- and four-byte UTF-8.
fn random_char(rng: &mut Rng) -> char {
    let c = match rng.below(4) {
        0 => rng.below(0x80) as u32,
        1 => 0x80 + rng.below(0x800 - 0x80) as u32,
        2 => 0x800 + rng.below(0x1_0000 - 0x800) as u32,
        _ => rng.below(0x11_0000) as u32,
    };
    char::from_u32(c).unwrap_or('\u{fffd}')
}

/// Anything at all: keywords, pieces, random characters.
fn chaos(rng: &mut Rng, out: &mut String) {
    for _ in 0..rng.below(12) {
        match rng.below(10) {
            0..=1 => out.push_str(rng.pick(KEYWORDS)),
            2..=7 => out.push_str(rng.pick(PIECES)),
            _ => out.push(random_char(rng)),
        }
    }
}

/// A line that looks like an instruction, so inputs get past the first
/// error often enough to exercise what comes after it.
fn instruction(rng: &mut Rng, out: &mut String) {
    out.push_str(rng.pick(KEYWORDS));
    out.push(' ');
    for i in 0..1 + rng.below(6) {
        if i > 0 && rng.below(3) == 0 {
            out.push(' ');
        }
        match rng.below(12) {
            0 => out.push(random_char(rng)),
            1 => out.push_str(rng.pick(KEYWORDS)),
            _ => out.push_str(rng.pick(PIECES)),
        }
    }
}

fn dockerfile(rng: &mut Rng) -> String {
    let mut s = String::new();
    // Most inputs start like a Dockerfile, so the parser gets past FROM.
    if rng.below(5) != 0 {
        s.push_str(rng.pick(&["FROM x\n", "ARG B=x\nFROM $B AS b\n", "# é\nFROM x\n"]));
    }
    for _ in 0..rng.below(10) {
        match rng.below(10) {
            0..=6 => instruction(rng, &mut s),
            7 => s.push_str(rng.pick(&["RUN <<EOF\né\nEOF", "COPY <<-EOT /x\n\t$X\nEOT"])),
            _ => chaos(rng, &mut s),
        }
        s.push('\n');
    }
    s
}

fn lookup(name: &str) -> Option<String> {
    match name {
        "X" => Some("x y".into()),
        "EMPTY" => Some(String::new()),
        "_x" => Some("é".into()),
        _ => None,
    }
}

/// Everything the engine would expand out of a parsed step.
fn step_words(inst: &Inst) -> Vec<String> {
    let cmd = |c: &CmdForm| match c {
        CmdForm::Exec(v) => v.clone(),
        CmdForm::Shell(s) => vec![s.clone()],
    };
    match inst {
        Inst::Run {
            cmd: c,
            mounts,
            network,
        } => {
            let mut v = cmd(c);
            v.extend(mounts.iter().cloned());
            v.extend(network.iter().cloned());
            v
        }
        Inst::Copy(c) => {
            let mut v: Vec<String> = c
                .srcs
                .iter()
                .map(|s| match s {
                    Src::Path(p) => p.clone(),
                    Src::HereDoc { body, .. } => body.clone(),
                })
                .collect();
            v.push(c.dest.clone());
            v.extend(c.from.iter().chain(&c.chown).chain(&c.chmod).cloned());
            v
        }
        Inst::Env(s)
        | Inst::Arg(s)
        | Inst::Label(s)
        | Inst::Workdir(s)
        | Inst::User(s)
        | Inst::Stopsignal(s)
        | Inst::Onbuild(s)
        | Inst::Maintainer(s) => vec![s.clone()],
        Inst::Expose(v) | Inst::Volume(v) | Inst::Shell(v) => v.clone(),
        Inst::Cmd(c) | Inst::Entrypoint(c) => cmd(c),
        Inst::Healthcheck(h) => h.test.clone(),
    }
}

fn exercise(text: &str) {
    for escape in ['\\', '`'] {
        let _ = expand::word(text, &lookup, escape);
        let _ = expand::words(text, &lookup, escape);
    }
    // .dockerignore lines and context paths are short; a 100 kB pattern
    // matched against a 100 kB path is not a case worth the test's time.
    let matcher = Matcher::parse(text);
    if let (Ok(m), true) = (matcher, text.len() <= 512) {
        for line in text.lines().take(4) {
            let _ = m.excluded(line);
            let _ = m.may_include_under(line);
        }
    }
    if let Ok(df) = parse(text) {
        for w in df.global_args.iter().filter_map(|(_, v)| v.as_deref()) {
            let _ = expand::word(w, &lookup, df.escape);
        }
        for stage in &df.stages {
            let _ = expand::word(&stage.base, &lookup, df.escape);
            for step in &stage.steps {
                for w in step_words(&step.inst) {
                    let _ = expand::word(&w, &lookup, df.escape);
                    let _ = expand::words(&w, &lookup, df.escape);
                }
                if let Inst::Onbuild(t) = &step.inst {
                    let _ = parse_trigger(t);
                }
            }
        }
    }
    for line in text.lines().take(3) {
        let _ = parse_trigger(line);
    }
}

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[test]
fn parse_and_expansion_never_panic_on_any_utf8() {
    let cases = env_or("BERTH_PROPTEST_CASES", 20_000);
    let seed = env_or("BERTH_PROPTEST_SEED", 0x6265_7274_6862_7531);
    let mut rng = Rng(seed);
    let mut parsed = 0;
    // Quiet the default hook: a failure is reported below with its input.
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let mut failure = None;
    for case in 0..cases {
        let text = dockerfile(&mut rng);
        let run = catch_unwind(AssertUnwindSafe(|| {
            exercise(&text);
            parse(&text).is_ok()
        }));
        match run {
            Ok(true) => parsed += 1,
            Ok(false) => {}
            Err(e) => {
                let msg = e
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                failure = Some(format!(
                    "case {case} (seed {seed:#x}): {msg}\ninput: {text:?}"
                ));
                break;
            }
        }
    }
    std::panic::set_hook(hook);
    if let Some(f) = failure {
        panic!("{f}");
    }
    eprintln!("{cases} cases, {parsed} parsed as Dockerfiles");
    // The generator must keep reaching past the parser's first error, or
    // the property says little about what follows it.
    assert!(parsed * 10 >= cases, "only {parsed} of {cases} parsed");
}

/// The inputs that once panicked or overflowed, kept as fixed cases.
#[test]
fn known_bad_inputs_are_errors_or_dockerfiles() {
    let deep = format!("{}x{}", "${X:-".repeat(20_000), "}".repeat(20_000));
    for text in [
        "# éxample\nFROM x\n".to_string(),
        "# 中文注释\nFROM x\n".to_string(),
        "FROM x\nRUé\n".to_string(),
        format!("FROM x\nRUN echo {deep}\n"),
        format!("FROM {deep}\n"),
        "FROM x\nLABEL a\n".to_string(),
        "ARG =x\nFROM x\n".to_string(),
    ] {
        exercise(&text);
    }
}
