#!/usr/bin/env bash
# Idempotent set-up for a fresh Debian machine, run as root: system packages (apt), npm packages
# (npm ci from the committed lock file), the native addon and the TypeScript build. Each step runs
# only when needed and says what it does.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf 'setup: %s\n' "$*" >&2; }
die() { printf 'setup: error: %s\n' "$*" >&2; exit 1; }

[ "$(uname -s)" = Linux ] || die "nspawn-ts needs Linux (namespaces, netlink, nftables); this is $(uname -s)"
[ "$(id -u)" = 0 ] || die "run as root (it installs packages, and nspawn-ts creates namespaces and links)"
command -v node >/dev/null || die "Node.js 20 or newer is needed (node not found)"
node_major=$(node -p 'process.versions.node.split(".")[0]')
[ "$node_major" -ge 20 ] || die "Node.js 20 or newer is needed (found $(node --version))"

# System packages. Keep this list the one place that names what the project needs from apt.
APT_PACKAGES=(
  iproute2 nftables libnftables-dev pkg-config  # links, firewall, the addon's libnftables
  busybox-static udhcpc dhcpcd-base isc-dhcp-client  # test container roots and real DHCP clients
  kea-admin kea-dhcp4-server dnsmasq-base  # perfdhcp, and reference DHCP servers for bench/dhcp
  systemd-container debootstrap  # the real systemd-nspawn, and the Debian root for boot tests
  iptables iperf3 tcpdump strace procps psmisc util-linux e2fsprogs  # benches, captures, process tools, chattr
  gcc libc6-dev  # bench/connrate.c, the static udp-echo of the port-forwarding tests
  g++ make python3  # node-gyp: the addon, also when an installed package builds it (docs/install.md)
  tar gzip xz-utils zstd bzip2  # machinectl-ts import/export
  help2man bash-completion  # man pages from --help (scripts/build-docs.mjs); the completion tests
  attr acl xfsprogs  # xattrs and ACLs of --template= copies and image transfers, an XFS image for their reflinks
  dnsperf  # bench/dns
  ndisc6  # rdisc6: reads our router advertisements (RDNSS, DNSSL) as a real client
  podman crun containernetworking-plugins golang-go golang-github-appc-cni-dev  # nspawn-cni: the podman e2e, the reference plugins, the libcni driver
)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  say "installing system packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >/dev/null || die "apt-get update failed"
  # Services some packages start on install are not wanted here (we run our own, in namespaces).
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
  if ! apt-get install -y -q --no-install-recommends "${missing[@]}" >/tmp/nspawn-ts-apt.log 2>&1; then
    tail -20 /tmp/nspawn-ts-apt.log >&2
    die "apt-get install failed for: ${missing[*]} (log: /tmp/nspawn-ts-apt.log)"
  fi
  rm -f /usr/sbin/policy-rc.d
fi

# npm packages, from the lock file.
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  say "installing npm packages (npm ci)"
  npm ci --no-audit --no-fund --loglevel=error >&2 || die "npm ci failed"
fi

bash scripts/build.sh

# Container roots for tests and the demo: the Debian one needs the network (tests run without it).
bash scripts/build-test-roots.sh
