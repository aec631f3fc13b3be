#!/usr/bin/env bash
# The project's test command (npm test). Sets up, then runs every suite inside a private network and
# mount namespace: nothing a test does can reach the machine's own links, routes or firewall, and
# every namespace, mount and link made inside is gone when the run ends.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# The whole suite (no arguments, as CI runs it) first checks types and the lint rules (eslint.config.js:
# the module boundaries among them); NSPAWN_TS_CHECK=1 does it for a partial run too.
if [ $# -eq 0 ] || [ -n "${NSPAWN_TS_CHECK:-}" ]; then
  npm run --silent typecheck
  npm run --silent lint
fi
# test-in-netns.sh checks it is not in these namespaces before it remounts anything.
NSPAWN_TS_OUTER_NS="$(readlink /proc/self/ns/mnt) $(readlink /proc/self/ns/net)" \
  exec unshare --net --mount --propagation private -- bash scripts/test-in-netns.sh "$@"
