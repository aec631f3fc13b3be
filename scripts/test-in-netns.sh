#!/usr/bin/env bash
# Runs inside the private namespaces made by scripts/test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
# /sys shows the links of the namespace that mounted it: remount it for ours. The fresh sysfs would
# hide the cgroup hierarchies mounted below it (containers booting systemd need them): move them over.
cgroups=$(mktemp -d)
mount --rbind /sys/fs/cgroup "$cgroups"
mount -t sysfs sysfs /sys
mount --move "$cgroups" /sys/fs/cgroup
rmdir "$cgroups"
# Machine records and sidecar state of tests stay inside this run.
mkdir -p /run/nspawn-ts /var/lib/nspawn-ts /run/netns
mount -t tmpfs tmpfs /run/nspawn-ts
mount -t tmpfs tmpfs /var/lib/nspawn-ts
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
