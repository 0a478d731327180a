#!/bin/sh
# Push and pull of a ~200 MiB, 4-layer image through a registry on this
# machine's loopback (berth registry serve), berth against skopeo (and
# podman when installed), plus this machine's local gunzip+sha256 rate over
# the same layers. Medians and ratios in one run.
# Goals: berth pull >= 2x faster than skopeo and podman, and >= 80% of the
# local gunzip+sha256 throughput.
#
# usage: bench/registry.sh [runs]   (as root; skopeo needed, podman optional)
set -eu
cd "$(dirname "$0")/.."
runs=${1:-5}
berth=${BERTH:-target/release/berth}
[ -x "$berth" ] || cargo build --release -q -p berth
command -v skopeo >/dev/null || { echo "install skopeo" >&2; exit 1; }
work=$(mktemp -d /var/tmp/berth-bench.XXXXXX)
B="$berth --root $work/root --runroot $work/run"
P="podman --root $work/podman/root --runroot $work/podman/run --runtime runc --cgroup-manager cgroupfs --events-backend file"
regpid=""
cleanup() {
    [ -n "$regpid" ] && kill "$regpid" 2>/dev/null || true
    umount -R "$work/cs/root/overlay" 2>/dev/null || true
    if command -v podman >/dev/null 2>&1; then
        $P system reset -f >/dev/null 2>&1 || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
reg="127.0.0.1:$port"
$berth registry serve --addr "$reg" --root "$work/registry" 2>/dev/null &
regpid=$!

# Four layers of 50 MiB of base64 text: compressible as real layers are,
# so gunzip does real work.
sh scripts/busybox-rootfs.sh "$work/busybox.tar"
$B import "$work/busybox.tar" busybox >/dev/null
mkdir -p "$work/ctx"
printf 'FROM busybox\n' > "$work/ctx/Dockerfile"
for i in 1 2 3 4; do
    head -c $((37 * 1024 * 1024)) /dev/urandom | base64 > "$work/ctx/data$i"
    printf 'COPY data%s /data%s\n' "$i" "$i" >> "$work/ctx/Dockerfile"
done
$B build -q -t "$reg/bench/app:v1" "$work/ctx" >/dev/null
size=$($B images --format '{{.Size}}' "$reg/bench/app:v1")
echo "image: $size, 5 layers (busybox + 4 x 50 MiB); $runs runs each; times in ms (median)"

now() { date +%s%N; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
timed() { # name, prepare, command
    : > "$work/t"
    i=0
    while [ $i -lt "$runs" ]; do
        sh -c "$2" >/dev/null 2>&1
        t0=$(now)
        sh -c "$3" >/dev/null 2>"$work/err" || { echo "$1 failed: $(tail -3 "$work/err")" >&2; exit 1; }
        t1=$(now)
        echo $(((t1 - t0) / 1000000)) >> "$work/t"
        i=$((i + 1))
    done
    m=$(median < "$work/t")
    printf '%-28s %8s\n' "$1" "$m"
    eval "r_$(echo "$1" | tr -c 'a-z0-9\n' '_')=$m"
}

# Push: into an empty registry each run (into a known one berth would
# mount the blobs from the repository it pushed to before).
: > "$work/t"
i=0
while [ $i -lt "$runs" ]; do
    p2=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    $berth registry serve --addr "127.0.0.1:$p2" --root "$work/reg$i" 2>/dev/null &
    pid2=$!
    sleep 0.3
    $B tag "$reg/bench/app:v1" "127.0.0.1:$p2/bench/app:v1"
    t0=$(now)
    $B push "127.0.0.1:$p2/bench/app:v1" >/dev/null
    t1=$(now)
    echo $(((t1 - t0) / 1000000)) >> "$work/t"
    kill $pid2
    $B rmi "127.0.0.1:$p2/bench/app:v1" >/dev/null
    rm -rf "$work/reg$i"
    i=$((i + 1))
done
r_berth_push=$(median < "$work/t")
printf '%-28s %8s\n' "berth push" "$r_berth_push"
$B save -o "$work/app.tar" "$reg/bench/app:v1"
timed "skopeo push" "true" "skopeo copy -q --dest-tls-verify=false docker-archive:$work/app.tar docker://$reg/sk\$(date +%s%N)/app:v1"
$B push "$reg/bench/app:v1" >/dev/null

# Pull into an empty store each run.
timed "berth pull" "rm -rf $work/p" "$berth --root $work/p/root --runroot $work/p/run pull -q $reg/bench/app:v1"
# skopeo to a directory only downloads and verifies; into containers-storage
# it also unpacks the layers, as berth and podman do.
timed "skopeo pull (oci dir)" "rm -rf $work/sk" "skopeo copy -q --src-tls-verify=false docker://$reg/bench/app:v1 oci:$work/sk:app"
timed "skopeo pull (storage)" "umount -R $work/cs/root/overlay; rm -rf $work/cs" "skopeo copy -q --src-tls-verify=false docker://$reg/bench/app:v1 containers-storage:[overlay@$work/cs/root+$work/cs/run]bench/app:v1"
if command -v podman >/dev/null 2>&1; then
    timed "podman pull" "$P rmi -af" "$P pull -q --tls-verify=false $reg/bench/app:v1"
fi

# This machine's own rate: gunzip + sha256 of the same layer blobs.
layers=$(find "$work/root/blobs/sha256" -type f -size +10M | tr '\n' ' ')
timed "gunzip+sha256 (local)" "true" "for f in $layers; do gzip -dc \$f | sha256sum >/dev/null; done"

bytes=$(for f in $layers; do gzip -dc "$f" | wc -c; done | awk '{s+=$1} END {print s}')
python3 - "$bytes" "$r_berth_pull" "$r_skopeo_pull__oci_dir_" "${r_podman_pull:-0}" "$r_gunzip_sha256__local_" "$r_berth_push" "$r_skopeo_push" "$r_skopeo_pull__storage_" <<'EOF'
import sys
b, bp, sp, pp, local, bpush, spush, sst = (float(x) for x in sys.argv[1:])
mb = b / 1e6
print()
print(f"berth pull: {mb / (bp / 1000):.0f} MB/s of layers; local gunzip+sha256: {mb / (local / 1000):.0f} MB/s")
print(f"berth pull vs local gunzip+sha256: {local / bp * 100:.0f}% (goal >= 80%)")
print(f"berth pull vs skopeo into containers-storage: {sst / bp:.2f}x faster (goal >= 2x)")
print(f"berth pull vs skopeo into an oci dir (no unpacking): {sp / bp:.2f}x faster")
if pp:
    print(f"berth pull vs podman: {pp / bp:.2f}x faster (goal >= 2x)")
print(f"berth push vs skopeo: {spush / bpush:.2f}x faster")
EOF
