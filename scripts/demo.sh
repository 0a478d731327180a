#!/bin/sh
# The main job: installs what Berth needs, builds and installs the binary,
# then builds the busybox base image from the host's static busybox and
# shows it. Run as root on Debian 12.
set -eu
cd "$(dirname "$0")/.."
sh scripts/deps.sh
cargo build --release --locked -p berth
install -m 0755 target/release/berth /usr/local/bin/berth
echo "installed $(berth version --format '{{.Client.Version}}') to /usr/local/bin/berth"

root=${BERTH_ROOT:-/var/lib/berth}
export BERTH_ROOT="$root"
tarball=$(mktemp --suffix=.tar)
trap 'rm -f "$tarball"' EXIT
sh scripts/busybox-rootfs.sh "$tarball"
set -x
berth import --change 'CMD ["sh"]' "$tarball" busybox:latest
berth images
berth inspect --format '{{.Id}} {{.Os}}/{{.Architecture}} {{json .Config.Cmd}}' busybox
berth history busybox
