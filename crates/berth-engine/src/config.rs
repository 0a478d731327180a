//! Berth's own configuration, read where it is needed. A leaf.

use std::fs;
use std::path::PathBuf;

/// Berth's daemon.json (Docker's keys): `$BERTH_CONFIG`, else
/// /etc/berth/daemon.json.
pub(crate) fn daemon_config() -> Option<serde_json::Value> {
    let path = std::env::var_os("BERTH_CONFIG")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/etc/berth/daemon.json"));
    serde_json::from_slice(&fs::read(path).ok()?).ok()
}
