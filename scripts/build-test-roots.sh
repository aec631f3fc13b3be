#!/usr/bin/env bash
# Builds the container roots that tests, benches and the demo use, into a cache shared by every
# clone on this machine ($NSPAWN_TS_TEST_ROOTS, default /var/cache/nspawn-ts/roots):
#
#   busybox          Debian's busybox-static with every applet linked; /etc/passwd and group (root,
#                    a user "test" 1000:1000, nobody), os-release, a busybox init inittab and rcS,
#                    a udhcpc default.script. Under a second.
#   debian-bookworm  debootstrap --variant=minbase --include=systemd,systemd-sysv,dbus,iproute2
#                    from the host's apt mirror (~35 s, ~250 MB). Needs the network, so setup runs
#                    it (tests run in a namespace without one).
#
# Each is built into a temporary directory and renamed into place under a lock, and rebuilt only
# when missing or when its recipe version below changes. test/helpers/rootfs.ts reads the same
# cache (and runs this script for the busybox root when it is missing).
# Usage: scripts/build-test-roots.sh [busybox|debian|all]
set -euo pipefail
ROOTS=${NSPAWN_TS_TEST_ROOTS:-/var/cache/nspawn-ts/roots}
BUSYBOX_VERSION=1
DEBIAN_VERSION=1
say() { printf 'setup: %s\n' "$*" >&2; }

mkdir -p "$ROOTS"
current() { [ -d "$ROOTS/$1" ] && [ "$(cat "$ROOTS/.$1.version" 2>/dev/null)" = "$2" ]; }

# build NAME VERSION FUNCTION: FUNCTION fills the directory given as $1
build() {
  local name=$1 version=$2 fn=$3
  current "$name" "$version" && return 0
  (
    exec 9>"$ROOTS/.$name.lock"
    flock 9
    current "$name" "$version" && exit 0
    tmp=$(mktemp -d "$ROOTS/.$name.build-XXXXXX")
    trap 'rm -rf "$tmp"' EXIT
    "$fn" "$tmp"
    chmod 755 "$tmp"
    # an outdated root may still be in use by a container of another test run: set it aside
    # (removed at the next rebuild) rather than deleting files under it
    rm -rf "${ROOTS:?}/.$name.old"
    [ -e "$ROOTS/$name" ] && mv "$ROOTS/$name" "$ROOTS/.$name.old"
    mv "$tmp" "$ROOTS/$name"
    trap - EXIT
    echo "$version" > "$ROOTS/.$name.version"
  )
}

busybox_root() {
  local d=$1
  mkdir -p "$d"/{bin,sbin,usr/bin,usr/sbin,etc/init.d,etc/udhcpc,usr/share/udhcpc,root,home/test,proc,sys,dev,run,tmp,var/log,var/tmp,mnt}
  chmod 1777 "$d/tmp" "$d/var/tmp"
  chmod 700 "$d/root"
  cp /bin/busybox "$d/bin/busybox"
  /bin/busybox --list-full | while read -r applet; do
    [ "$applet" = bin/busybox ] || [ -e "$d/$applet" ] || ln -s /bin/busybox "$d/$applet"
  done
  printf '%s\n' 'root:x:0:0:root:/root:/bin/sh' 'test:x:1000:1000:Test User:/home/test:/bin/sh' \
    'nobody:x:65534:65534:nobody:/nonexistent:/bin/false' > "$d/etc/passwd"
  printf '%s\n' 'root:x:0:' 'tty:x:5:' 'users:x:100:test' 'test:x:1000:' 'nogroup:x:65534:' > "$d/etc/group"
  printf '%s\n' 'NAME="BusyBox test root"' 'ID=busybox' 'PRETTY_NAME="BusyBox (nspawn-ts tests)"' > "$d/etc/os-release"
  echo busybox > "$d/etc/hostname"
  printf '%s\n' '# busybox init (nspawn-ts test root)' '::sysinit:/etc/init.d/rcS' '::shutdown:/bin/echo nspawn-ts-test: shutdown' > "$d/etc/inittab"
  cat > "$d/etc/init.d/rcS" <<'EOF'
#!/bin/sh
echo "nspawn-ts-test: booted as PID $$ on $(hostname)"
touch /run/booted
EOF
  # udhcpc runs it on each lease event: configure the address with busybox ip, write resolv.conf
  cat > "$d/etc/udhcpc/default.script" <<'EOF'
#!/bin/sh
case "$1" in
  deconfig)
    ip link set "$interface" up
    ip -4 addr flush dev "$interface"
    ;;
  bound|renew)
    ip -4 addr flush dev "$interface"
    ip -4 addr add "$ip/${mask:-24}" dev "$interface"
    if [ -n "$router" ]; then
      ip -4 route replace default via "${router%% *}" dev "$interface"
    fi
    : > /etc/resolv.conf
    for d in $dns; do echo "nameserver $d" >> /etc/resolv.conf; done
    env | sort > "/run/udhcpc.$interface.env"
    ;;
esac
exit 0
EOF
  cp "$d/etc/udhcpc/default.script" "$d/usr/share/udhcpc/default.script"
  chmod 755 "$d/etc/init.d/rcS" "$d/etc/udhcpc/default.script" "$d/usr/share/udhcpc/default.script"
  chown 1000:1000 "$d/home/test"
}

debian_root() {
  local d=$1 mirror
  # the mirror the host's apt uses for bookworm (sources.list or deb822 .sources)
  mirror=$(awk '$1=="deb" && $3 ~ /^bookworm$/ {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
  if [ -z "$mirror" ]; then
    mirror=$(awk 'BEGIN{RS=""} /Suites:[^\n]*bookworm( |\n|$)/ && !/security/ { if (match($0, /URIs: *[^ \n]+/)) { print substr($0, RSTART+6, RLENGTH-6); exit } }' /etc/apt/sources.list.d/*.sources 2>/dev/null | tr -d ' ' || true)
  fi
  mirror=${mirror:-http://deb.debian.org/debian}
  say "building the Debian bookworm test root with debootstrap from $mirror (once; ~35 s)"
  if ! debootstrap --variant=minbase --include=systemd,systemd-sysv,dbus,iproute2 bookworm "$d" "$mirror" >"$ROOTS/.debian-bookworm.log" 2>&1; then
    tail -20 "$ROOTS/.debian-bookworm.log" >&2
    say "error: debootstrap failed (log: $ROOTS/.debian-bookworm.log)"
    exit 1
  fi
  # a fresh machine: systemd makes its ID at first boot; the hostname comes from the container
  # manager (debootstrap copied the build host's); no package cache
  : > "$d/etc/machine-id"
  rm -f "$d/etc/hostname"
  rm -rf "$d/var/cache/apt/archives"/*.deb
}

what=${1:-all}
case $what in
  busybox) build busybox "$BUSYBOX_VERSION" busybox_root ;;
  debian) build debian-bookworm "$DEBIAN_VERSION" debian_root ;;
  all) build busybox "$BUSYBOX_VERSION" busybox_root; build debian-bookworm "$DEBIAN_VERSION" debian_root ;;
  *) echo "usage: $0 [busybox|debian|all]" >&2; exit 2 ;;
esac
