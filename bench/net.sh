#!/bin/sh
# Container networking: a 100 MiB download from busybox httpd in a
# container, through berth's published port (host loopback and the host's
# own address), straight to the container's IP, and through podman's
# published port; plus connection setup (connect + tiny GET + close).
# Medians and ratios in one run; all traffic stays on this machine.
# Goals: published-port throughput >= 90% of direct-to-IP, and >= podman's.
#
# usage: bench/net.sh [runs]   (as root; podman optional)
set -eu
cd "$(dirname "$0")/.."
runs=${1:-7}
berth=${BERTH:-target/release/berth}
[ -x "$berth" ] || cargo build --release -q -p berth
work=$(mktemp -d /var/tmp/berth-bench.XXXXXX)
B="$berth --root $work/root --runroot $work/run"
P="podman --root $work/podman/root --runroot $work/podman/run --runtime runc --cgroup-manager cgroupfs --events-backend file"
cleanup() {
    $B rm -f web >/dev/null 2>&1 || true
    if command -v podman >/dev/null 2>&1; then
        $P rm -f -a >/dev/null 2>&1 || true
        $P system reset -f >/dev/null 2>&1 || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

sh scripts/busybox-rootfs.sh "$work/busybox.tar"
$B import "$work/busybox.tar" busybox >/dev/null
mkdir -p "$work/www"
head -c $((100 * 1024 * 1024)) /dev/urandom > "$work/www/big"
echo ok > "$work/www/small"

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
bport=$(free_port)
$B run -d --name web -p "$bport:80" -v "$work/www:/www:ro" busybox httpd -f -p 80 -h /www >/dev/null
bip=$($B inspect -f '{{.NetworkSettings.IPAddress}}' web)
hostip=$(ip -4 -o route get 1.1.1.1 2>/dev/null | sed -n 's/.* src \([0-9.]*\).*/\1/p')

set -- "berth published (127.0.0.1)" "127.0.0.1:$bport" \
    "berth direct to container IP" "$bip:80"
if [ -n "$hostip" ]; then
    set -- "$@" "berth published (host $hostip)" "$hostip:$bport"
fi
if command -v podman >/dev/null 2>&1; then
    $B save busybox | $P load -q >/dev/null
    pport=$(free_port)
    # Podman needs rlimits within this host's hard limits (see bench/start.sh).
    if $P run -d --ulimit nofile=1024:4096 --ulimit nproc=4096:4096 -p "$pport:80" \
        -v "$work/www:/www:ro" busybox httpd -f -p 80 -h /www >/dev/null 2>"$work/podman.err"; then
        set -- "$@" "podman published (127.0.0.1)" "127.0.0.1:$pport"
    else
        echo "podman: could not start ($(tail -1 "$work/podman.err"))" >&2
    fi
fi

python3 - "$runs" "$@" <<'EOF'
import socket, statistics, sys, time

runs = int(sys.argv[1])
targets = list(zip(sys.argv[2::2], sys.argv[3::2]))

def get(addr, path, buf):
    host, port = addr.rsplit(":", 1)
    t0 = time.perf_counter()
    s = socket.create_connection((host, int(port)), timeout=10)
    s.sendall(f"GET /{path} HTTP/1.0\r\n\r\n".encode())
    n = 0
    while True:
        k = s.recv_into(buf)
        if not k:
            break
        n += k
    s.close()
    return time.perf_counter() - t0, n

buf = bytearray(1 << 20)
for _, addr in targets:
    end = time.time() + 20
    while True:
        try:
            get(addr, "small", buf)
            break
        except OSError:
            if time.time() > end:
                raise
            time.sleep(0.1)

tput, lat = {}, {}
for name, addr in targets:
    get(addr, "big", buf)  # warm-up
    speeds = []
    for _ in range(runs):
        t, n = get(addr, "big", buf)
        if n < 100 * 1024 * 1024:
            sys.exit(f"{name}: short download ({n} bytes)")
        speeds.append(n / t / 1e6)
    tput[name] = statistics.median(speeds)
    times = [get(addr, "small", buf)[0] * 1e6 for _ in range(300)]
    lat[name] = statistics.median(times)

print()
print(f"{'path':36s} {'MB/s (median)':>14s} {'connect+GET us':>15s}")
for name, _ in targets:
    print(f"{name:36s} {tput[name]:14.0f} {lat[name]:15.0f}")
pub = tput["berth published (127.0.0.1)"]
direct = tput["berth direct to container IP"]
print()
print(f"published / direct throughput: {pub / direct * 100:.0f}% (goal >= 90%)")
if "podman published (127.0.0.1)" in tput:
    pod = tput["podman published (127.0.0.1)"]
    print(f"berth published / podman published: {pub / pod:.2f}x (goal >= 1.0x)")
    print(f"connection setup, podman / berth: {lat['podman published (127.0.0.1)'] / lat['berth published (127.0.0.1)']:.2f}x")
EOF
