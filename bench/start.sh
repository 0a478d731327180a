#!/bin/sh
# Container start-up: `berth run --rm --network none busybox true` against
# podman (runc, cgroupfs) on the same image and bare `runc run` on the same
# rootfs, and both engines on their default bridge network, in one run on
# this machine. Also the RSS of one idle monitor (without and with a 1 s
# health check) and
# `berth ps -a` with 100 containers in the store.
# Goals: >= 5x faster than podman, no slower than runc; monitor <= 2 MiB;
# ps -a < 50 ms.
#
# usage: bench/start.sh [runs]   (as root; needs hyperfine, runc, podman)
set -eu
cd "$(dirname "$0")/.."
runs=${1:-20}
berth=${BERTH:-target/release/berth}
[ -x "$berth" ] || cargo build --release -q -p berth
command -v hyperfine >/dev/null || { echo "install hyperfine (apt-get install hyperfine)" >&2; exit 1; }
work=$(mktemp -d /var/tmp/berth-bench.XXXXXX)
B="$berth --root $work/root --runroot $work/run"
P="podman --root $work/podman/root --runroot $work/podman/run --runtime runc --cgroup-manager cgroupfs --events-backend file --network-backend netavark"
cleanup() {
    # shellcheck disable=SC2086
    $B ps -aq 2>/dev/null | xargs -r $B rm -f >/dev/null 2>&1 || true
    if command -v podman >/dev/null 2>&1; then
        # shellcheck disable=SC2086
        $P system reset -f >/dev/null 2>&1 || true
    fi
    runc delete -f berth-bench >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT

sh scripts/busybox-rootfs.sh "$work/busybox.tar"
$B import "$work/busybox.tar" busybox >/dev/null
$B run --rm --network none busybox true   # warm the layer cache

# A runc bundle on the same rootfs, with runc's own default config.
mkdir -p "$work/bundle/rootfs"
tar -xf "$work/busybox.tar" -C "$work/bundle/rootfs"
(cd "$work/bundle" && runc spec)
sed -i 's/"terminal": true/"terminal": false/; s/"sh"$/"true"/' "$work/bundle/config.json"

json="$work/results.json"
set -- \
    -n berth "$B run --rm --network none busybox true" \
    -n runc "runc --root $work/runc run --bundle $work/bundle berth-bench" \
    -n "berth bridge" "$B run --rm busybox true"
if command -v podman >/dev/null 2>&1; then
    $B save busybox | $P load >/dev/null
    # --ulimit nofile/nproc: podman asks for rlimits above this host's
    # hard limits, so out of the box it cannot start anything here.
    $P run --rm --network none --ulimit nofile=1024:4096 --ulimit nproc=4096:4096 --pull never docker.io/library/busybox true
    set -- "$@" -n podman "$P run --rm --network none --ulimit nofile=1024:4096 --ulimit nproc=4096:4096 --pull never docker.io/library/busybox true" \
        -n "podman bridge" "$P run --rm --ulimit nofile=1024:4096 --ulimit nproc=4096:4096 --pull never docker.io/library/busybox true"
fi
hyperfine -N -w 3 -r "$runs" --export-json "$json" "$@"

python3 - "$json" <<'EOF'
import json, sys
r = {x["command"]: x for x in json.load(open(sys.argv[1]))["results"]}
med = {k: v["median"] * 1000 for k, v in r.items()}
print()
for k, v in med.items():
    print(f"{k:14s} median {v:7.1f} ms")
b = med["berth"]
for peer in ("runc", "podman"):
    if peer in med:
        print(f"berth vs {peer}: {med[peer] / b:.2f}x faster")
if "podman bridge" in med:
    print(f"on the default bridge, berth vs podman: {med['podman bridge'] / med['berth bridge']:.2f}x faster")
EOF

# One idle monitor's memory.
id=$($B run -d --network none busybox sleep 60)
sleep 1   # the monitor sheds start-up memory 0.5 s in
mon=$(pgrep -f "monitor $id" | head -1)
rss=$(awk '/VmRSS/ {print $2}' "/proc/$mon/status")
pss=$(awk '/^Pss:/ {s+=$2} END {print s}' "/proc/$mon/smaps" 2>/dev/null || echo "?")
echo "idle monitor: RSS ${rss} KiB, PSS ${pss} KiB (goal: RSS <= 2048 KiB; RSS counts libc pages shared with every process)"
$B rm -f "$id" >/dev/null

# The same with a health check every second: probing must not make it grow.
# HEALTH_SECS (default 300) is how long it probes before the second reading.
health_secs=${HEALTH_SECS:-300}
id=$($B run -d --network none --health-cmd true --health-interval 1s busybox sleep 100000)
mon=$(pgrep -f "monitor $id" | head -1)
mem() {
    printf 'RSS %s KiB, PSS %s KiB' "$(awk '/VmRSS/ {print $2}' "/proc/$mon/status")" \
        "$(awk '/^Pss:/ {s+=$2} END {print s}' "/proc/$mon/smaps" 2>/dev/null || echo "?")"
}
sleep 10
echo "monitor with a 1 s health check, after 10 s: $(mem)"
sleep $((health_secs - 10))
echo "monitor with a 1 s health check, after ${health_secs} s: $(mem) ($($B inspect -f '{{len .State.Health.Log}} probes in the log, {{.State.Health.Status}}' "$id"))"
$B rm -f "$id" >/dev/null

# ps -a with 100 containers.
i=0
while [ $i -lt 100 ]; do
    $B create busybox true >/dev/null
    i=$((i + 1))
done
hyperfine -N -w 3 -r "$runs" -n "ps -a (100 containers)" "$B ps -a" | grep -E 'Time|±'
