//! Any UTF-8 text as a Dockerfile: parsing it, expanding every word of
//! every step it yields, and reading it as a `.dockerignore` must return
//! (a value or an error) and never panic or overflow the stack.
#![no_main]

use berth_build::expand;
use berth_build::ignore::Matcher;
use berth_build::{parse, parse_trigger, CmdForm, Inst, Src};
use libfuzzer_sys::fuzz_target;

fn lookup(name: &str) -> Option<String> {
    match name {
        "X" => Some("x y".into()),
        "EMPTY" => Some(String::new()),
        _ => None,
    }
}

fn words_of(inst: &Inst) -> Vec<String> {
    let cmd = |c: &CmdForm| match c {
        CmdForm::Exec(v) => v.clone(),
        CmdForm::Shell(s) => vec![s.clone()],
    };
    match inst {
        Inst::Run { cmd: c, mounts, network } => {
            let mut v = cmd(c);
            v.extend(mounts.iter().chain(network).cloned());
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

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for escape in ['\\', '`'] {
        let _ = expand::word(text, &lookup, escape);
        let _ = expand::words(text, &lookup, escape);
    }
    if let Ok(m) = Matcher::parse(text) {
        for line in text.lines().take(4) {
            let _ = m.excluded(line);
            let _ = m.may_include_under(line);
        }
    }
    let _ = parse_trigger(text);
    if let Ok(df) = parse(text) {
        for (_, v) in &df.global_args {
            if let Some(v) = v {
                let _ = expand::word(v, &lookup, df.escape);
            }
        }
        for stage in &df.stages {
            let _ = expand::word(&stage.base, &lookup, df.escape);
            for step in &stage.steps {
                for w in words_of(&step.inst) {
                    let _ = expand::word(&w, &lookup, df.escape);
                    let _ = expand::words(&w, &lookup, df.escape);
                }
                if let Inst::Onbuild(t) = &step.inst {
                    let _ = parse_trigger(t);
                }
            }
        }
    }
});
