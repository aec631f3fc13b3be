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
# A fresh, empty /run, as on a freshly booted machine: nothing a test or a tool it drives needs may come
# from what ran on this machine before (a green run here means a green run on a fresh install). What
# they need, the harness makes below or the test makes itself. /run/lock and /run/shm are what Debian's
# initramfs/tmpfiles make on every boot.
mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs /run
mkdir -m 1777 /run/lock
ln -s /dev/shm /run/shm
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
mkdir -p /var/lib/nspawn-ts
mount -t tmpfs tmpfs /var/lib/nspawn-ts
# So do the tests' scratch files: the leak check (test/helpers/leak-files.ts) names what a test leaves
# in /tmp and /var/tmp, which must not be what other programs on this machine make meanwhile.
# The checkout itself may live below /tmp or /var/tmp (a CI clone there): it is carried into the fresh
# tmpfs at its own path (a bind mount, which the leak check's walks do not enter: another file system)
# and its top directory there is left out of the end-of-run check below.
repo=$PWD
checkout_top=""
for scratch in /tmp /var/tmp; do
  carried=""
  case "$repo/" in
    "$scratch"/*)
      carried=$(mktemp -d /run/nspawn-ts-checkout.XXXXXX)
      mount --rbind "$repo" "$carried"
      rest=${repo#"$scratch"/}
      checkout_top="$scratch/${rest%%/*}/"
      ;;
  esac
  mount -t tmpfs -o mode=1777 tmpfs "$scratch"
  if [ -n "$carried" ]; then
    mkdir -p "$repo"
    mount --move "$carried" "$repo"
    rmdir "$carried"
  fi
done
cd "$repo"
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
# Per test and per test file, the leak check names files a kernel test leaves; unit tests run in
# parallel, so what they leave in the run's scratch directories is only seen here, at the end.
left=$(find /tmp /var/tmp -mindepth 1 -maxdepth 1 \( -type d -printf '%p/\n' -o -printf '%p\n' \) | grep -v -x -F "${checkout_top:-//}" | sort || true)
if [ -n "$left" ]; then
  echo "test run leaked files (a test made them and did not remove them):" >&2
  echo "$left" | sed 's/^/  /' >&2
  rc=1
fi
exit $rc
