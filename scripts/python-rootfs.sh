#!/bin/sh
# Builds the Python base image's root filesystem for the tutorial tests:
# Debian bookworm `debootstrap --variant=minbase` plus python3, from
# Debian's own package archive (a package registry, never a container
# registry), with docs, man pages, locales and apt's caches left out.
# The tests build it once per target dir and reuse the tarball.
#
# usage: scripts/python-rootfs.sh OUT.tar   (as root; needs debootstrap)
set -eu
out=${1:?usage: $0 OUT.tar}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
command -v debootstrap >/dev/null || {
    echo "$0: install debootstrap (apt-get install debootstrap)" >&2
    exit 1
}
dir=$(mktemp -d /var/tmp/berth-pyroot.XXXXXX)
trap 'rm -rf "$dir"' EXIT
debootstrap --variant=minbase --include=python3 bookworm "$dir/root" "$mirror" >"$dir/log" 2>&1 || {
    tail -20 "$dir/log" >&2
    exit 1
}
r="$dir/root"
rm -rf "$r"/usr/share/doc/* "$r"/usr/share/man/* "$r"/usr/share/info/* \
    "$r"/usr/share/locale/* "$r"/var/cache/apt/* "$r"/var/lib/apt/lists/* \
    "$r"/var/cache/debconf/*-old "$r"/var/log/*
tmp="$out.tmp.$$"
tar --sort=name --numeric-owner -C "$r" -cf "$tmp" .
mv "$tmp" "$out"
