#!/bin/sh
# Builds a root filesystem tarball from the host's static busybox (Debian's
# busybox-static): /bin/busybox, a symlink per applet, /etc/passwd,
# /etc/group, /tmp. This is the base image of the demo and of every test;
# nothing comes from the internet. The tar is reproducible (sorted, fixed
# times and owners), so the same busybox always gives the same layer digest.
#
# usage: scripts/busybox-rootfs.sh OUT.tar
set -eu
out=${1:?usage: $0 OUT.tar}
bb=${BUSYBOX:-/bin/busybox}
if ! "$bb" --list-full >/dev/null 2>&1; then
    echo "$0: $bb is not a working busybox; install Debian's busybox-static" >&2
    exit 1
fi
if ldd "$bb" >/dev/null 2>&1; then
    echo "$0: $bb is dynamically linked; install Debian's busybox-static" >&2
    exit 1
fi
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
mkdir -p "$dir/bin" "$dir/sbin" "$dir/usr/bin" "$dir/usr/sbin" "$dir/etc" "$dir/tmp" \
    "$dir/root" "$dir/proc" "$dir/sys" "$dir/dev" "$dir/home" "$dir/var"
cp "$bb" "$dir/bin/busybox"
for app in $("$bb" --list-full); do
    [ -e "$dir/$app" ] || [ -L "$dir/$app" ] || ln -s /bin/busybox "$dir/$app"
done
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$dir/etc/passwd"
printf 'root:x:0:\nnobody:x:65534:\n' >"$dir/etc/group"
chmod 755 "$dir"
chmod 1777 "$dir/tmp"
chmod 700 "$dir/root"
tmp="$out.tmp.$$"
tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$dir" -cf "$tmp" .
mv "$tmp" "$out"
