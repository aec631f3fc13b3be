#!/usr/bin/env bash
# The demo (npm run demo): sets up, then runs the main job — containers with networking from the
# embedded network subsystem, no daemon — inside a private network and mount namespace, so nothing
# it does can touch this machine's own network.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec unshare --net --mount --propagation private -- bash scripts/demo-world.sh "$@"
