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
app=$(mktemp -d)
trap 'rm -rf "$tarball" "$app"' EXIT
sh scripts/busybox-rootfs.sh "$tarball"
set -x
berth import --change 'CMD ["sh"]' "$tarball" busybox:latest
berth images
berth inspect --format '{{.Id}} {{.Os}}/{{.Architecture}} {{json .Config.Cmd}}' busybox
berth history busybox

# A real container: its own namespaces, overlay rootfs and cgroup.
berth run --rm --name demo-hello busybox sh -c 'echo "hello from $(hostname), PID $$"; cat /proc/self/cgroup | grep memory'
# One in the background: logs, exec, ps, stop, rm.
berth rm -f demo-web >/dev/null 2>&1 || true
berth run -d --name demo-web --memory 64m -v demo-data:/data busybox \
    sh -c 'trap "exit 0" TERM; while true; do date >> /data/log; echo tick; sleep 1; done'
sleep 2
berth ps
berth logs --tail 2 demo-web
berth exec demo-web sh -c 'wc -l < /data/log'
berth stop demo-web
berth ps -a --filter name=demo-web
berth rm -v demo-web
berth volume rm demo-data

# A Dockerfile build: a multistage image whose final stage holds only the
# built artifact; the second build is all cache hits.
cat > "$app/Dockerfile" <<'DOCKERFILE'
FROM busybox AS build
COPY greet.sh /src/greet.sh
RUN mkdir /out && sed 's/WHO/Berth/' /src/greet.sh > /out/greet.sh
FROM busybox
COPY --from=build /out/greet.sh /usr/local/bin/greet
CMD ["sh", "/usr/local/bin/greet"]
DOCKERFILE
echo 'echo "hello from a Dockerfile built by WHO"' > "$app/greet.sh"
berth build -t demo-app "$app"
berth build -t demo-app "$app"
berth run --rm demo-app
berth history demo-app
berth rmi demo-app

# Networking: a web server on a user network, found by name from a second
# container, and published on the host's loopback.
berth rm -f demo-www >/dev/null 2>&1 || true
berth network rm demo-net >/dev/null 2>&1 || true
berth network create demo-net
berth run -d --name demo-www --network demo-net -p 127.0.0.1:18080:80 \
    --health-cmd 'wget -qO /dev/null http://127.0.0.1/' --health-interval 1s busybox \
    sh -c 'mkdir -p /www && echo "hello over the network" > /www/index.html && exec httpd -f -p 80 -h /www'
# Its health check, run by its monitor, turns it healthy once httpd answers.
i=0
until [ "$(berth inspect -f '{{.State.Health.Status}}' demo-www)" = healthy ] || [ $i -ge 60 ]; do
    sleep 0.5
    i=$((i + 1))
done
berth ps --filter name=demo-www --format '{{.Names}}: {{.Status}}'
berth events --since 1m --until 0s --filter container=demo-www
berth run --rm --network demo-net busybox wget -qO- http://demo-www/
berth port demo-www
busybox wget -qO- http://127.0.0.1:18080/
berth rm -f demo-www
berth network rm demo-net

# A registry on this machine: push the image built above's base there,
# and pull it back under the registry's name.
regdir=$(mktemp -d)
berth registry serve --addr 127.0.0.1:15000 --root "$regdir" 2>/dev/null &
regpid=$!
sleep 1
berth tag busybox 127.0.0.1:15000/demo/busybox:v1
berth push 127.0.0.1:15000/demo/busybox:v1
berth rmi 127.0.0.1:15000/demo/busybox:v1
berth pull 127.0.0.1:15000/demo/busybox:v1
berth run --rm 127.0.0.1:15000/demo/busybox:v1 echo "pulled from the registry"
berth rmi 127.0.0.1:15000/demo/busybox:v1
kill $regpid
rm -rf "$regdir"
