#!/bin/sh
# berth save / load of a ~200 MiB image against podman save / load of the
# same image, in one run on this machine. Prints medians and ratios.
# Goal: berth at least 3x faster than podman at both.
#
# usage: bench/store.sh [runs]   (as root; build with cargo build --release first)
set -eu
cd "$(dirname "$0")/.."
runs=${1:-5}
berth=${BERTH:-target/release/berth}
[ -x "$berth" ] || cargo build --release -q -p berth
work=$(mktemp -d /var/tmp/berth-bench.XXXXXX)
cleanup() {
    if command -v podman >/dev/null 2>&1; then
        for r in "$work"/podman-*; do
            [ -d "$r" ] && podman --root "$r/root" --runroot "$r/run" system reset -f >/dev/null 2>&1 || true
        done
    fi
    rm -rf "$work"
}
trap cleanup EXIT

# The image: the busybox rootfs plus 200 MiB of incompressible files, so
# neither tool can win by compressing.
sh scripts/busybox-rootfs.sh "$work/base.tar"
mkdir -p "$work/rootfs/data"
tar -xf "$work/base.tar" -C "$work/rootfs"
i=0
while [ $i -lt 50 ]; do
    head -c 4194304 /dev/urandom >"$work/rootfs/data/blob$i"
    i=$((i + 1))
done
tar --sort=name -C "$work/rootfs" -cf "$work/image.tar" .
size=$(du -m "$work/image.tar" | cut -f1)
echo "image: ${size} MiB, one layer; $runs runs each; times in ms (median)"

now() { date +%s%N; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }


# berth
"$berth" --root "$work/berth-src" --runroot "$work/run" import "$work/image.tar" bench:1 >/dev/null
save_b=""; load_b=""
i=0
while [ $i -lt "$runs" ]; do
    rm -f "$work/b.tar"; sync
    t0=$(now); "$berth" --root "$work/berth-src" --runroot "$work/run" save -o "$work/b.tar" bench:1; t1=$(now)
    save_b="$save_b $(( (t1 - t0) / 1000000 ))"
    rm -rf "$work/berth-dst"; sync
    t0=$(now); "$berth" --root "$work/berth-dst" --runroot "$work/run" load -i "$work/b.tar" >/dev/null; t1=$(now)
    load_b="$load_b $(( (t1 - t0) / 1000000 ))"
    i=$((i + 1))
done
ms_save_b=$(echo $save_b | tr ' ' '\n' | median)
ms_load_b=$(echo $load_b | tr ' ' '\n' | median)
printf '%-8s save %6s   load %6s\n' berth "$ms_save_b" "$ms_load_b"

if ! command -v podman >/dev/null 2>&1; then
    echo "podman is not installed: no ratio (apt-get install podman)"
    exit 0
fi
P() { r=$1; shift; podman --root "$r/root" --runroot "$r/run" --storage-driver overlay --cgroup-manager cgroupfs --events-backend none "$@"; }
P "$work/podman-src" import "$work/image.tar" localhost/bench:1 >/dev/null
save_p=""; load_p=""
i=0
while [ $i -lt "$runs" ]; do
    rm -f "$work/p.tar"; sync
    t0=$(now); P "$work/podman-src" save -o "$work/p.tar" localhost/bench:1 >/dev/null 2>&1; t1=$(now)
    save_p="$save_p $(( (t1 - t0) / 1000000 ))"
    [ -d "$work/podman-dst" ] && P "$work/podman-dst" system reset -f >/dev/null 2>&1 || true
    rm -rf "$work/podman-dst"; sync
    t0=$(now); P "$work/podman-dst" load -i "$work/p.tar" >/dev/null 2>&1; t1=$(now)
    load_p="$load_p $(( (t1 - t0) / 1000000 ))"
    i=$((i + 1))
done
ms_save_p=$(echo $save_p | tr ' ' '\n' | median)
ms_load_p=$(echo $load_p | tr ' ' '\n' | median)
printf '%-8s save %6s   load %6s\n' podman "$ms_save_p" "$ms_load_p"
awk -v sb="$ms_save_b" -v lb="$ms_load_b" -v sp="$ms_save_p" -v lp="$ms_load_p" 'BEGIN {
    printf "podman/berth: save %.1fx   load %.1fx   (goal: >= 3x)\n", sp / (sb ? sb : 1), lp / (lb ? lb : 1)
}'
