#!/usr/bin/env bash
# Builds the Debian bookworm container root the boot tests use (debootstrap --variant=minbase with
# systemd, systemd-sysv, dbus, iproute2; ~35 s, ~250 MB) into the cache shared by every clone on
# this machine. It needs the network, so setup runs it (tests run in a namespace without one).
# Built into a temporary directory and renamed into place under a lock; done once per recipe version
# (test/helpers/rootfs.ts reads the same cache and version).
set -euo pipefail
ROOTS=${NSPAWN_TS_TEST_ROOTS:-/var/cache/nspawn-ts/roots}
NAME=debian-bookworm
VERSION=1   # keep in step with DEBIAN_VERSION in test/helpers/rootfs.ts
say() { printf 'setup: %s\n' "$*" >&2; }

mkdir -p "$ROOTS"
current() { [ -d "$ROOTS/$NAME" ] && [ "$(cat "$ROOTS/.$NAME.version" 2>/dev/null)" = "$VERSION" ]; }
current && exit 0

exec 9>"$ROOTS/.$NAME.lock"
flock 9
current && exit 0

# the mirror the host's apt uses for bookworm (sources.list or deb822 .sources)
mirror=$(awk '$1=="deb" && $3 ~ /^bookworm$/ {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
if [ -z "$mirror" ]; then
  mirror=$(awk 'BEGIN{RS=""} /Suites:[^\n]*bookworm( |\n|$)/ && !/security/ { if (match($0, /URIs: *[^ \n]+/)) { print substr($0, RSTART+6, RLENGTH-6); exit } }' /etc/apt/sources.list.d/*.sources 2>/dev/null | tr -d ' ' || true)
fi
mirror=${mirror:-http://deb.debian.org/debian}

say "building the Debian bookworm test root with debootstrap from $mirror (once; ~35 s)"
tmp=$(mktemp -d "$ROOTS/.$NAME.build-XXXXXX")
trap 'rm -rf "$tmp"' EXIT
if ! debootstrap --variant=minbase --include=systemd,systemd-sysv,dbus,iproute2 bookworm "$tmp" "$mirror" >"$ROOTS/.$NAME.log" 2>&1; then
  tail -20 "$ROOTS/.$NAME.log" >&2
  say "error: debootstrap failed (log: $ROOTS/.$NAME.log)"
  exit 1
fi
# a fresh machine: systemd makes its ID at first boot; the hostname comes from the container
# manager (debootstrap copied the build host's); no package cache
: > "$tmp/etc/machine-id"
rm -f "$tmp/etc/hostname"
rm -rf "$tmp/var/cache/apt/archives"/*.deb
chmod 755 "$tmp"
rm -rf "$ROOTS/$NAME"
mv "$tmp" "$ROOTS/$NAME"
trap - EXIT
echo "$VERSION" > "$ROOTS/.$NAME.version"
say "Debian test root ready: $ROOTS/$NAME"
