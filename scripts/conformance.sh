#!/bin/bash
# Runs the OCI distribution-spec conformance suite against `berth registry
# serve`, once per spec version profile (1.1, the default, and dev, which
# adds upload cancel, digest headers and tag parameters).
#
#   scripts/conformance.sh <distribution-spec checkout> [berth binary]
#
# The checkout is github.com/opencontainers/distribution-spec (a clone or
# an export; only its conformance/ and specs-go/ are used); it is copied
# to a temp dir, nothing is written into it or into this repository.
# Needs Go >= 1.24 on PATH or in /usr/lib/go-1.24 (Debian: golang-1.24-go,
# in trixie and later). Its Go modules come from GOPROXY as usual; with no
# module proxy reachable, set CONFORMANCE_DEPS to a directory holding
# go-yaml (goccy/go-yaml v1.18.0), image-spec (v1.1.1) and go-digest
# (v1.0.0) sources: they and the checkout's specs-go are used instead.
# Results (junit.xml, report.html) stay in the temp dir, printed at the end.
set -euo pipefail

spec=${1:?usage: $0 <distribution-spec checkout> [berth binary]}
berth=${2:-$(dirname "$0")/../target/debug/berth}
spec=$(realpath "$spec")
berth=$(realpath "$berth")
[ -d "$spec/conformance" ] || { echo "$spec has no conformance/" >&2; exit 2; }
[ -x "$berth" ] || { echo "no berth binary at $berth (cargo build -p berth)" >&2; exit 2; }
if ! command -v go >/dev/null || ! go version | grep -Eq 'go1\.(2[4-9]|[3-9][0-9])'; then
    export PATH=/usr/lib/go-1.24/bin:$PATH
fi
go version | grep -Eq 'go1\.(2[4-9]|[3-9][0-9])' || { echo "Go >= 1.24 needed" >&2; exit 2; }

work=$(mktemp -d /tmp/berth-conformance.XXXXXX)
echo "work dir: $work"
cp -r "$spec/conformance" "$spec/specs-go" "$work/"
cd "$work/conformance"
export GOTOOLCHAIN=local GOFLAGS=-mod=mod
if [ -n "${CONFORMANCE_DEPS:-}" ]; then
    export GOPROXY=off
    go mod edit \
        -replace "github.com/goccy/go-yaml=$CONFORMANCE_DEPS/go-yaml" \
        -replace "github.com/opencontainers/image-spec=$CONFORMANCE_DEPS/image-spec" \
        -replace "github.com/opencontainers/go-digest=$CONFORMANCE_DEPS/go-digest" \
        -replace "github.com/opencontainers/distribution-spec/specs-go=$work/specs-go"
fi
go build -o "$work/conformance.bin" .

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
status=0
for version in 1.1 dev; do
    root=$work/root-$version
    "$berth" registry serve --addr "127.0.0.1:$port" --root "$root" >"$work/server-$version.log" 2>&1 &
    server=$!
    for _ in $(seq 100); do
        curl -fs "http://127.0.0.1:$port/v2/" >/dev/null && break
        sleep 0.1
    done
    rc=0
    OCI_REGISTRY=127.0.0.1:$port OCI_TLS=disabled OCI_VERSION=$version \
        OCI_REPO1=conformance/repo1 OCI_REPO2=conformance/repo2 \
        OCI_RESULTS_DIR="$work/results-$version" \
        "$work/conformance.bin" >"$work/output-$version.txt" 2>&1 || rc=$?
    kill "$server"
    wait "$server" 2>/dev/null || true
    counts=$(grep -o '<testsuite [^>]*>' "$work/results-$version/junit.xml" | head -1)
    echo "profile $version: exit $rc; $counts"
    [ "$rc" = 0 ] || status=1
done
echo "outputs and reports: $work"
exit $status
