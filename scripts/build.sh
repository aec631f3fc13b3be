#!/usr/bin/env bash
# Builds the native addon (when its sources changed) and the TypeScript (when src changed).
set -euo pipefail
cd "$(dirname "$0")/.."
say() { printf 'build: %s\n' "$*" >&2; }

addon=native/build/Release/nspawn_native.node
if [ ! -f "$addon" ] || [ -n "$(find native/src native/binding.gyp -newer "$addon" -print -quit)" ]; then
  say "building the native addon"
  npx --no-install node-gyp rebuild --directory native --loglevel=warn >&2 || { say "error: native addon build failed"; exit 1; }
fi

stamp=dist/.build-stamp
if [ ! -f "$stamp" ] || [ -n "$(find src tsconfig.json package.json -newer "$stamp" -print -quit)" ]; then
  say "compiling TypeScript"
  rm -rf dist
  npx --no-install tsc -p tsconfig.json >&2 || { say "error: TypeScript build failed"; exit 1; }
  # the commands' start-up path: one bundle each (modules loaded only when used are split off), so a
  # launch reads a few files instead of resolving and linking a hundred modules
  say "bundling the commands"
  npx --no-install esbuild nspawn-ts=src/runtime/main.ts nspawn-netd=src/net/netd/main.ts --bundle --platform=node \
    --format=esm --target=node20 --splitting --outdir=dist --entry-names='[name].bundle' --chunk-names='chunk-[hash].bundle' \
    --log-level=warning >&2 || { say "error: bundling failed"; exit 1; }
  touch "$stamp"
fi
