#!/bin/sh
# Installs the Debian packages Berth's build, demo and tests need. Safe to
# run again; does nothing when everything is present.
#   busybox-static   the base image of the demo and every test
#   libseccomp-dev, pkg-config   seccomp for the runtime
#   skopeo, podman   peers the tests check our archives against
#   runc             the external-runtime path and the bare-runtime benchmark
#   tini             `run --init` (Docker ships it as docker-init)
#   procps           `top` reads ps
#   nftables         published ports and masquerading (berth runs nft)
#   iproute2         tests look at links and make an "outside" namespace
#   docker-registry  Docker's reference registry, a peer the registry tests use
#   apache2-utils    htpasswd, for registries with Basic auth
#   openssl          certificates for the TLS registry test
#   debootstrap      the Python base image of the tutorial tests (Debian minbase + python3)
set -eu
pkgs="busybox-static libseccomp-dev pkg-config gcc skopeo podman runc tini procps nftables iproute2 docker-registry apache2-utils openssl debootstrap"
missing=""
for p in $pkgs; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # shellcheck disable=SC2086
    apt-get install -y -qq $missing >/dev/null
fi
if ! command -v cargo >/dev/null 2>&1; then
    echo "cargo is missing: install Rust (https://rustup.rs) first" >&2
    exit 1
fi
