#!/bin/sh
# The whole test suite, as CI runs it. Run as root: the tests create real
# namespaces, mounts and device nodes.
set -eu
cd "$(dirname "$0")/.."
sh scripts/deps.sh
# Peers (skopeo, podman) are installed above, so a test must not skip them.
export BERTH_REQUIRE_PEERS=1
cargo test --workspace --locked
