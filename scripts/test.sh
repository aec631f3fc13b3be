#!/usr/bin/env bash
# The project's test command (npm test). Sets up, then runs every suite inside a private network and
# mount namespace: nothing a test does can reach the machine's own links, routes or firewall, and
# every namespace, mount and link made inside is gone when the run ends.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# test-in-netns.sh checks it is not in these namespaces before it remounts anything.
NSPAWN_TS_OUTER_NS="$(readlink /proc/self/ns/mnt) $(readlink /proc/self/ns/net)" \
  exec unshare --net --mount --propagation private -- bash scripts/test-in-netns.sh "$@"
