#!/usr/bin/env bash
# The demo (npm run demo): sets up, then runs the main job inside a private network namespace, so
# nothing it does can touch this machine's own network.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec unshare --net --mount --propagation private -- bash -c 'mount -t sysfs sysfs /sys; ip link set lo up; exec node dist/demo.js "$@"' demo "$@"
