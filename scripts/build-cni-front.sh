#!/usr/bin/env bash
# Compiles bin/nspawn-cni, the CNI plugin's native front (native/front/nspawn-cni.c: it answers VERSION
# itself and runs bin/nspawn-cni.cjs on Node for every other call). Static when the C library allows
# (one exec less of the dynamic loader per CNI call), else dynamic. Run by scripts/build.sh when the
# source changed, and by scripts/install-package.sh for the installing machine.
set -euo pipefail
cd "$(dirname "$0")/.."
cc=${CC:-gcc}
out=bin/nspawn-cni
tmp="$out.tmp.$$"
trap 'rm -f "$tmp"' EXIT
flags=(-std=gnu11 -O2 -s -Wall -Wextra -o "$tmp" native/front/nspawn-cni.c)
"$cc" -static "${flags[@]}" 2>/dev/null || "$cc" "${flags[@]}"
# a rename: a runtime starting the plugin meanwhile finds the old or the new one, never half of one
mv -f "$tmp" "$out"
