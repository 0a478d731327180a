#!/bin/sh
# Image builds: the same 4-step Dockerfile (RUN, COPY, RUN, multistage
# COPY --from) built by berth and by `podman build` (and `buildah bud` when
# installed) on the same busybox image, fully cached and with --no-cache,
# medians and ratios in one run.
# Goals: cached rebuild >= 5x faster than podman, no-cache >= 2x faster.
#
# usage: bench/build.sh [runs]   (as root; needs hyperfine, podman)
set -eu
cd "$(dirname "$0")/.."
runs=${1:-10}
berth=${BERTH:-target/release/berth}
[ -x "$berth" ] || cargo build --release -q -p berth
command -v hyperfine >/dev/null || { echo "install hyperfine (apt-get install hyperfine)" >&2; exit 1; }
work=$(mktemp -d /var/tmp/berth-bench.XXXXXX)
B="$berth --root $work/root --runroot $work/run"
STORE="--root $work/podman/root --runroot $work/podman/run"
P="podman $STORE --runtime runc --cgroup-manager cgroupfs --events-backend file"
cleanup() {
    if command -v podman >/dev/null 2>&1; then
        # shellcheck disable=SC2086
        $P system reset -f >/dev/null 2>&1 || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

sh scripts/busybox-rootfs.sh "$work/busybox.tar"
$B import --change 'CMD ["sh"]' "$work/busybox.tar" docker.io/library/busybox:latest >/dev/null

ctx="$work/ctx"
mkdir -p "$ctx/src"
seq 1 2000 > "$ctx/src/numbers.txt"
echo 'echo hello from the app' > "$ctx/src/app.sh"
cat > "$ctx/Dockerfile" <<'EOF'
FROM docker.io/library/busybox:latest AS build
RUN mkdir -p /out && echo built > /out/stamp
COPY src /src
RUN sort -rn /src/numbers.txt > /out/sorted && cp /src/app.sh /out/
FROM docker.io/library/busybox:latest
COPY --from=build /out /app
CMD ["sh", "/app/app.sh"]
EOF

# Podman needs rlimits within this host's hard limits (see bench/start.sh).
ULIMITS="--ulimit nofile=1024:4096 --ulimit nproc=4096:4096"
set -- \
    -n "berth cached" "$B build -q -t app $ctx" \
    -n "berth no-cache" "$B build -q --no-cache -t app $ctx"
if command -v podman >/dev/null 2>&1; then
    $B save docker.io/library/busybox:latest | $P load >/dev/null
    PB="$P build --pull=never --layers $ULIMITS --network host -q -t app $ctx"
    $PB >/dev/null
    set -- "$@" -n "podman cached" "$PB" -n "podman no-cache" "$P build --pull=never --no-cache $ULIMITS --network host -q -t app $ctx"
fi
if command -v buildah >/dev/null 2>&1; then
    BB="buildah $STORE bud --pull=never --layers $ULIMITS --network host -q -t app $ctx"
    $BB >/dev/null 2>&1 && set -- "$@" -n "buildah cached" "$BB"
fi
$B build -q -t app "$ctx" >/dev/null
json="$work/results.json"
hyperfine -N -w 2 -r "$runs" --export-json "$json" "$@"

python3 - "$json" <<'EOF'
import json, sys
r = {x["command"]: x["median"] * 1000 for x in json.load(open(sys.argv[1]))["results"]}
print()
for k, v in r.items():
    print(f"{k:16s} median {v:8.1f} ms")
for mode, goal in (("cached", 5), ("no-cache", 2)):
    b = r[f"berth {mode}"]
    for peer in ("podman", "buildah"):
        k = f"{peer} {mode}"
        if k in r:
            print(f"{mode:8s} berth vs {peer}: {r[k] / b:.2f}x faster (goal >= {goal}x)")
EOF
