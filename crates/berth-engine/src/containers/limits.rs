//! Option values that `create` and `update` both take: sizes, restart
//! policies, memory reservations, CPU lists. A leaf, so neither of the two
//! has to import the other.

use std::collections::BTreeSet;

use super::model::RestartPolicy;
use crate::{Error, Result};

fn invalid(msg: impl Into<String>) -> Error {
    Error::InvalidArgument(msg.into())
}

/// Docker's RAMInBytes: `512m`, `1g`, `100k`, `1024b` or plain bytes,
/// binary units.
pub fn parse_bytes(s: &str) -> Result<i64> {
    let t = s.trim().to_ascii_lowercase();
    let t = t.strip_suffix('b').filter(|r| !r.is_empty()).unwrap_or(&t);
    let (num, mult) = match t.chars().last() {
        Some('k') => (&t[..t.len() - 1], 1i64 << 10),
        Some('m') => (&t[..t.len() - 1], 1 << 20),
        Some('g') => (&t[..t.len() - 1], 1 << 30),
        Some('t') => (&t[..t.len() - 1], 1 << 40),
        _ => (t, 1),
    };
    let n: f64 = num
        .parse()
        .map_err(|_| invalid(format!("invalid size: '{s}'")))?;
    if n < 0.0 {
        return Err(invalid(format!("invalid size: '{s}'")));
    }
    Ok((n * mult as f64) as i64)
}

pub(crate) fn parse_restart(s: &str) -> Result<RestartPolicy> {
    let (name, count) = match s.split_once(':') {
        Some((n, c)) => (n, Some(c)),
        None => (s, None),
    };
    let max = match (name, count) {
        ("on-failure", Some(c)) => c
            .parse::<i64>()
            .ok()
            .filter(|n| *n >= 0)
            .ok_or_else(|| invalid(format!("invalid restart policy format: maximum retry count must be a positive integer: {c}")))?,
        (_, Some(_)) => {
            return Err(invalid(format!(
                "invalid restart policy format: maximum retry count can only be used with 'on-failure': {s}"
            )))
        }
        _ => 0,
    };
    match name {
        "" | "no" | "always" | "unless-stopped" | "on-failure" => Ok(RestartPolicy {
            name: if name.is_empty() { "no" } else { name }.to_string(),
            maximum_retry_count: max,
        }),
        _ => Err(invalid(format!(
            "invalid restart policy: unknown policy '{name}'; use one of 'no', 'always', 'on-failure', or 'unless-stopped'"
        ))),
    }
}

/// Docker's smallest memory limit and reservation.
pub(crate) const MIN_MEMORY: i64 = 6 << 20;

/// The checks of Docker's verifyPlatformContainerResources that concern
/// memory reservations (memory itself is checked by each caller).
pub(crate) fn check_reservation(memory: i64, reservation: i64) -> Result<()> {
    if reservation > 0 && reservation < MIN_MEMORY {
        return Err(invalid("Minimum memory reservation allowed is 6MB"));
    }
    if memory > 0 && reservation > 0 && memory < reservation {
        return Err(invalid(
            "Minimum memory limit can not be less than memory reservation limit, see usage",
        ));
    }
    Ok(())
}

/// Parses a CPU list (`0-2,4`) as the kernel's cpuset files take it.
fn parse_cpu_list(s: &str) -> Option<BTreeSet<u32>> {
    let mut out = BTreeSet::new();
    for part in s.trim().split(',') {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (u32, u32) = (a.parse().ok()?, b.parse().ok()?);
                if a > b {
                    return None;
                }
                out.extend(a..=b);
            }
            None => {
                out.insert(part.parse().ok()?);
            }
        }
    }
    Some(out)
}

/// `--cpuset-cpus` must name CPUs that are online.
pub(crate) fn check_cpuset(cpus: &str) -> Result<()> {
    if cpus.is_empty() {
        return Ok(());
    }
    let wanted = parse_cpu_list(cpus).ok_or_else(|| {
        invalid(format!(
            "Invalid value {cpus} for cpuset cpus: invalid format: {cpus}"
        ))
    })?;
    let online_text = std::fs::read_to_string("/sys/devices/system/cpu/online").unwrap_or_default();
    let online_text = online_text.trim();
    if let Some(online) = parse_cpu_list(online_text) {
        if !wanted.is_subset(&online) {
            return Err(invalid(format!(
                "Requested CPUs are not available - requested {cpus}, available: {online_text}"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_parse_like_docker() {
        assert_eq!(parse_bytes("512m").unwrap(), 512 << 20);
        assert_eq!(parse_bytes("1g").unwrap(), 1 << 30);
        assert_eq!(parse_bytes("1GB").unwrap(), 1 << 30);
        assert_eq!(parse_bytes("100").unwrap(), 100);
        assert_eq!(parse_bytes("64k").unwrap(), 64 << 10);
        assert!(parse_bytes("lots").is_err());
    }

    #[test]
    fn restart_policies() {
        assert_eq!(
            parse_restart("on-failure:3").unwrap().maximum_retry_count,
            3
        );
        assert_eq!(parse_restart("always").unwrap().name, "always");
        assert!(parse_restart("always:3").is_err());
        assert!(parse_restart("sometimes").is_err());
    }

    #[test]
    fn cpu_lists_parse_as_the_kernel_writes_them() {
        assert_eq!(
            parse_cpu_list("0-2,4")
                .unwrap()
                .into_iter()
                .collect::<Vec<_>>(),
            vec![0, 1, 2, 4]
        );
        assert!(parse_cpu_list("2-1").is_none());
        assert!(parse_cpu_list("a").is_none());
    }
}
