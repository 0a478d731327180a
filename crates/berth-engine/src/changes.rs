//! `--change` instructions for `import` (and later `commit`): the subset of
//! Dockerfile instructions that only touch the image config.

use std::collections::BTreeMap;

use berth_oci::ContainerConfig;
use serde_json::json;

use crate::{Error, Result};

fn bad(msg: impl Into<String>) -> Error {
    Error::InvalidArgument(msg.into())
}

/// `["a", "b"]` (JSON form) or `a b` (shell form, run by /bin/sh -c).
fn exec_or_shell(args: &str) -> Vec<String> {
    let t = args.trim();
    if t.starts_with('[') {
        if let Ok(v) = serde_json::from_str::<Vec<String>>(t) {
            return v;
        }
    }
    vec!["/bin/sh".into(), "-c".into(), t.to_string()]
}

/// Splits `k=v k2="v 2"` into pairs, honouring double quotes and backslashes.
fn key_values(args: &str, what: &str) -> Result<Vec<(String, String)>> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_quote = None;
    let mut chars = args.trim().chars();
    let mut any = false;
    while let Some(c) = chars.next() {
        match (c, in_quote) {
            ('\\', _) => {
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
                any = true;
            }
            ('"' | '\'', None) => {
                in_quote = Some(c);
                any = true;
            }
            (q, Some(open)) if q == open => in_quote = None,
            (c, None) if c.is_whitespace() => {
                if any {
                    words.push(std::mem::take(&mut cur));
                    any = false;
                }
            }
            (c, _) => {
                cur.push(c);
                any = true;
            }
        }
    }
    if in_quote.is_some() {
        return Err(bad(format!("{what}: unterminated quote in {args:?}")));
    }
    if any {
        words.push(cur);
    }
    if words.is_empty() {
        return Err(bad(format!("{what} requires at least one argument")));
    }
    // Legacy form: `ENV KEY value with spaces`.
    if !words[0].contains('=') {
        let (k, rest) = args
            .trim()
            .split_once(char::is_whitespace)
            .ok_or_else(|| bad(format!("{what} names must have a value: {}", args.trim())))?;
        return Ok(vec![(k.to_string(), rest.trim().to_string())]);
    }
    words
        .into_iter()
        .map(|w| match w.split_once('=') {
            Some(("", _)) => Err(bad(format!("{what} names can not be blank"))),
            Some((k, v)) => Ok((k.to_string(), v.to_string())),
            None => Err(bad(format!(
                "{what}: {w:?} has no value (expected KEY=VALUE)"
            ))),
        })
        .collect()
}

/// Applies one `--change` line to `config`.
pub(crate) fn apply(config: &mut ContainerConfig, line: &str) -> Result<()> {
    let line = line.trim();
    let (instr, args) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
    let args = args.trim();
    let upper = instr.to_ascii_uppercase();
    if args.is_empty() {
        return Err(bad(format!("{upper} requires at least one argument")));
    }
    match upper.as_str() {
        "CMD" => config.cmd = Some(exec_or_shell(args)),
        "ENTRYPOINT" => config.entrypoint = Some(exec_or_shell(args)),
        "ENV" => {
            for (k, v) in key_values(args, "ENV")? {
                config.set_env(&k, &v);
            }
        }
        "LABEL" => {
            let labels = config.labels.get_or_insert_with(BTreeMap::new);
            for (k, v) in key_values(args, "LABEL")? {
                labels.insert(k, v);
            }
        }
        "EXPOSE" => {
            let ports = config.exposed_ports.get_or_insert_with(BTreeMap::new);
            for p in args.split_whitespace() {
                let (num, proto) = p.split_once('/').unwrap_or((p, "tcp"));
                let ok = !num.is_empty()
                    && num.split('-').all(|n| n.parse::<u16>().is_ok())
                    && matches!(proto.to_ascii_lowercase().as_str(), "tcp" | "udp" | "sctp");
                if !ok {
                    return Err(bad(format!("invalid containerPort: {p}")));
                }
                ports.insert(format!("{num}/{}", proto.to_ascii_lowercase()), json!({}));
            }
        }
        "USER" => config.user = Some(args.to_string()),
        "WORKDIR" => {
            let dir = if args.starts_with('/') {
                args.to_string()
            } else {
                // Relative to the previous WORKDIR, as in a Dockerfile.
                let base = config.working_dir.clone().unwrap_or_else(|| "/".into());
                format!("{}/{}", base.trim_end_matches('/'), args)
            };
            config.working_dir = Some(dir);
        }
        "VOLUME" => {
            let vols = config.volumes.get_or_insert_with(BTreeMap::new);
            let list = if args.starts_with('[') {
                serde_json::from_str::<Vec<String>>(args)
                    .map_err(|e| bad(format!("VOLUME: invalid JSON array {args:?}: {e}")))?
            } else {
                args.split_whitespace().map(str::to_string).collect()
            };
            for v in list {
                vols.insert(v, json!({}));
            }
        }
        "STOPSIGNAL" => config.stop_signal = Some(args.to_string()),
        "ONBUILD" => config.on_build.get_or_insert_with(Vec::new).push(args.to_string()),
        "HEALTHCHECK" | "SHELL" => {
            return Err(bad(format!("{upper} is not supported in --change yet")));
        }
        _ => {
            return Err(bad(format!(
                "{instr} is not a valid change command (valid: CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, ONBUILD, STOPSIGNAL, USER, VOLUME, WORKDIR)"
            )))
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn applied(lines: &[&str]) -> ContainerConfig {
        let mut c = ContainerConfig::default();
        for l in lines {
            apply(&mut c, l).unwrap();
        }
        c
    }

    #[test]
    fn forms() {
        let c = applied(&[
            r#"CMD ["sh", "-c", "echo hi"]"#,
            "ENTRYPOINT /bin/init --flag",
            r#"ENV A=1 B="two words""#,
            "ENV LEGACY value with spaces",
            "EXPOSE 80 53/udp",
            "LABEL a=b",
            "WORKDIR /srv",
            "WORKDIR app",
            "USER 1000:1000",
            "VOLUME /data /logs",
        ]);
        assert_eq!(c.cmd.unwrap(), ["sh", "-c", "echo hi"]);
        assert_eq!(c.entrypoint.unwrap(), ["/bin/sh", "-c", "/bin/init --flag"]);
        assert_eq!(
            c.env.unwrap(),
            ["A=1", "B=two words", "LEGACY=value with spaces"]
        );
        assert_eq!(
            c.exposed_ports.unwrap().keys().collect::<Vec<_>>(),
            ["53/udp", "80/tcp"]
        );
        assert_eq!(c.working_dir.unwrap(), "/srv/app");
        assert_eq!(c.volumes.unwrap().len(), 2);
    }

    #[test]
    fn errors_name_the_problem() {
        let mut c = ContainerConfig::default();
        let e = apply(&mut c, "RUN rm -rf /").unwrap_err().to_string();
        assert!(e.contains("RUN is not a valid change command"), "{e}");
        let e = apply(&mut c, "EXPOSE http").unwrap_err().to_string();
        assert!(e.contains("invalid containerPort: http"), "{e}");
        let e = apply(&mut c, "ENV").unwrap_err().to_string();
        assert!(e.contains("ENV requires at least one argument"), "{e}");
        let e = apply(&mut c, r#"ENV A="open"#).unwrap_err().to_string();
        assert!(e.contains("unterminated quote"), "{e}");
    }
}
