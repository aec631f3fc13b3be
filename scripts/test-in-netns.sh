#!/usr/bin/env bash
# Runs inside the private namespaces made by scripts/test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
# It remounts /sys, /run/netns and state directories: run outside the private namespaces made by
# scripts/test.sh, it would do that to the machine itself.
here="$(readlink /proc/self/ns/mnt) $(readlink /proc/self/ns/net)"
outer="${NSPAWN_TS_OUTER_NS:-}"
if [ -z "$outer" ] || [ "${here% *}" = "${outer% *}" ] || [ "${here#* }" = "${outer#* }" ]; then
  echo "test-in-netns.sh: not in a private mount and network namespace; run 'npm test' (scripts/test.sh), which makes them" >&2
  exit 2
fi
# /sys shows the links of the namespace that mounted it: remount it for ours. The fresh sysfs would
# hide the cgroup hierarchies mounted below /sys/fs/cgroup (resource-control tests and
# systemd-nspawn need them): carry them over.
cgroups=""
if mountpoint -q /sys/fs/cgroup; then
  cgroups=$(mktemp -d /run/nspawn-ts-cgroup.XXXXXX)
  mount --rbind /sys/fs/cgroup "$cgroups"
fi
mount -t sysfs sysfs /sys
if [ -n "$cgroups" ]; then
  mount --move "$cgroups" /sys/fs/cgroup
  rmdir "$cgroups"
fi
# Machine records and sidecar state of tests stay inside this run.
mkdir -p /run/nspawn-ts /var/lib/nspawn-ts /run/netns
mount -t tmpfs tmpfs /run/nspawn-ts
mount -t tmpfs tmpfs /var/lib/nspawn-ts
# Named network namespaces of this run only: another run on this machine adds its own to the shared
# /run/netns, and the leak check (ip netns list) would blame them on our tests.
mount -t tmpfs -o mode=0755 tmpfs /run/netns
ip link set lo up
# The first `ip netns add` turns /run/netns into a mount point; do it now, not inside a leak-checked test.
ip netns add nspawn-ts-warmup && ip netns del nspawn-ts-warmup

results=.test-results.json
rm -f "$results"
rc=0
npx --no-install vitest run --reporter=default --reporter=json --outputFile="$results" "$@" || rc=$?
if [ -f "$results" ]; then
  node -e '
    const r = require(process.argv[1]);
    const skipped = (r.numPendingTests ?? 0) + (r.numTodoTests ?? 0);
    console.log(`tests: ${r.numPassedTests} passed, ${r.numFailedTests} failed, ${skipped} skipped`);
  ' "$PWD/$results"
fi
exit $rc
