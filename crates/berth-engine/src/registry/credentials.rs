//! Registry credentials as the Docker client keeps them: config.json's
//! `auths` and credential helpers, and `login`/`logout` that edit them.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::PathBuf;

use berth_registry::Auth;

use super::{client_with, reg_err};
use crate::{Engine, Error, Result};

fn docker_config_path() -> Option<PathBuf> {
    Some(match std::env::var_os("DOCKER_CONFIG") {
        Some(d) => PathBuf::from(d).join("config.json"),
        None => PathBuf::from(std::env::var_os("HOME")?).join(".docker/config.json"),
    })
}

/// The Docker client's config.json (credentials), as Docker finds it.
fn docker_config() -> Option<serde_json::Value> {
    serde_json::from_slice(&fs::read(docker_config_path()?).ok()?).ok()
}

/// The key `auths` uses for a registry.
fn auth_key(domain: &str) -> String {
    if domain == "docker.io" {
        "https://index.docker.io/v1/".into()
    } else {
        domain.to_string()
    }
}

/// Rewrites config.json whole with `change` applied, keeping every other
/// setting, readable only by its owner.
fn edit_docker_config(change: impl FnOnce(&mut serde_json::Value)) -> Result<()> {
    let path = docker_config_path()
        .ok_or_else(|| Error::InvalidArgument("neither DOCKER_CONFIG nor HOME is set".into()))?;
    // A config.json we cannot read is the user's to fix, not ours to
    // replace (it holds more than credentials).
    let mut cfg = match fs::read(&path) {
        Ok(b) => serde_json::from_slice::<serde_json::Value>(&b)
            .ok()
            .filter(|v| v.is_object())
            .ok_or_else(|| {
                Error::InvalidArgument(format!(
                    "{} is not a JSON object; fix or remove it",
                    path.display()
                ))
            })?,
        Err(_) => serde_json::json!({}),
    };
    change(&mut cfg);
    let dir = path.parent().expect("a file in a directory");
    fs::create_dir_all(dir).map_err(Error::io("create", dir))?;
    let tmp = dir.join(".config.json.tmp");
    {
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(Error::io("write", &tmp))?;
        let text = serde_json::to_string_pretty(&cfg).expect("serialises");
        f.write_all(text.as_bytes())
            .map_err(Error::io("write", &tmp))?;
        f.sync_all().map_err(Error::io("sync", &tmp))?;
    }
    fs::rename(&tmp, &path).map_err(Error::io("write", &path))
}

/// `docker.io` for Docker Hub's many spellings, else the host as given.
fn login_domain(server: Option<&str>) -> String {
    let s = server.unwrap_or("docker.io");
    let s = s
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .trim_end_matches('/');
    let s = s.strip_suffix("/v1").unwrap_or(s);
    match s {
        "index.docker.io" | "registry-1.docker.io" | "docker.io" => "docker.io".into(),
        other => other.to_string(),
    }
}

/// The keys config.json may know a registry by, Docker's first.
fn auth_keys(domain: &str) -> Vec<String> {
    let mut keys = vec![auth_key(domain)];
    if domain == "docker.io" {
        keys.extend(["index.docker.io".into(), "docker.io".into()]);
    } else {
        keys.extend([
            format!("https://{domain}"),
            format!("http://{domain}"),
            format!("https://{domain}/v1/"),
        ]);
    }
    keys
}

/// The credential helper config.json names for `domain` (its own, else
/// the store for every registry).
fn helper_for(cfg: &serde_json::Value, domain: &str) -> Option<String> {
    auth_keys(domain)
        .iter()
        .find_map(|k| cfg.pointer(&format!("/credHelpers/{}", k.replace('/', "~1"))))
        .or_else(|| cfg.get("credsStore"))
        .and_then(|h| h.as_str())
        .map(str::to_string)
}

/// Runs `docker-credential-<helper> <verb>` with `input` on stdin;
/// returns what it printed.
fn helper_run(helper: &str, verb: &str, input: &str) -> Result<Vec<u8>> {
    let name = format!("docker-credential-{helper}");
    let mut child = std::process::Command::new(&name)
        .arg(verb)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| Error::InvalidArgument(format!("credential helper {name}: {e}")))?;
    if let Some(mut i) = child.stdin.take() {
        let _ = i.write_all(input.as_bytes());
    }
    let out = child
        .wait_with_output()
        .map_err(|e| Error::Internal(format!("credential helper {name}: {e}")))?;
    if !out.status.success() {
        return Err(Error::InvalidArgument(format!(
            "credential helper {name} {verb}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(out.stdout)
}

/// Credentials for `domain` from config.json: a credential helper named
/// for it (or for every registry), else an `auths` entry.
pub(super) fn credentials(domain: &str) -> Auth {
    let Some(cfg) = docker_config() else {
        return Auth::Anonymous;
    };
    let keys = auth_keys(domain);
    if let Some(h) = helper_for(&cfg, domain) {
        if let Some(a) = helper_get(&h, &keys[0]) {
            return a;
        }
    }
    let auths = cfg.get("auths");
    for k in &keys {
        let Some(entry) = auths.and_then(|a| a.get(k)) else {
            continue;
        };
        if let Some(t) = entry.get("identitytoken").and_then(|t| t.as_str()) {
            return Auth::Bearer(t.to_string());
        }
        if let Some(raw) = entry
            .get("auth")
            .and_then(|a| a.as_str())
            .and_then(berth_registry::base64_decode)
        {
            if let Some((u, p)) = String::from_utf8_lossy(&raw).split_once(':') {
                return Auth::Basic(u.to_string(), p.to_string());
            }
        }
    }
    Auth::Anonymous
}

/// `docker-credential-<helper> get`.
fn helper_get(helper: &str, server: &str) -> Option<Auth> {
    let out = helper_run(helper, "get", server).ok()?;
    let v: serde_json::Value = serde_json::from_slice(&out).ok()?;
    let user = v.get("Username")?.as_str()?.to_string();
    let secret = v.get("Secret")?.as_str()?.to_string();
    Some(if user == "<token>" {
        Auth::Bearer(secret)
    } else {
        Auth::Basic(user, secret)
    })
}

impl Engine {
    /// `login`: checks the credentials against the registry and keeps
    /// them in config.json (Docker's `auths`). Returns the registry name.
    pub fn login(
        &self,
        server: Option<&str>,
        user: &str,
        password: &str,
        insecure: bool,
    ) -> Result<String> {
        let domain = login_domain(server);
        let client = client_with(
            &domain,
            insecure,
            None,
            Auth::Basic(user.into(), password.into()),
        )?;
        client
            .check_login()
            .map_err(|e| reg_err(&format!("login to {domain}"), e))?;
        // With a credential helper configured, the secret goes to it and
        // config.json only notes the registry, as Docker does.
        let key = auth_key(&domain);
        let helper = docker_config().and_then(|c| helper_for(&c, &domain));
        let entry = match &helper {
            Some(h) => {
                let msg =
                    serde_json::json!({"ServerURL": key, "Username": user, "Secret": password});
                helper_run(h, "store", &msg.to_string())?;
                serde_json::json!({})
            }
            None => serde_json::json!({
                "auth": berth_registry::base64_encode(format!("{user}:{password}").as_bytes())
            }),
        };
        edit_docker_config(|cfg| {
            cfg["auths"][key.clone()] = entry;
        })?;
        Ok(domain)
    }

    /// `logout`: forgets the credentials; false if there were none.
    pub fn logout(&self, server: Option<&str>) -> Result<(String, bool)> {
        let domain = login_domain(server);
        let key = auth_key(&domain);
        let cfg = docker_config();
        let mut had = cfg
            .as_ref()
            .and_then(|c| c.get("auths").and_then(|a| a.get(&key)).cloned())
            .is_some();
        if let Some(h) = cfg.as_ref().and_then(|c| helper_for(c, &domain)) {
            had |= helper_run(&h, "erase", &key).is_ok();
        }
        if had {
            edit_docker_config(|cfg| {
                if let Some(a) = cfg.get_mut("auths").and_then(|a| a.as_object_mut()) {
                    a.remove(&key);
                }
            })?;
        }
        Ok((domain, had))
    }
}
