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

# the CNI plugin's executable, a native front (native/front/nspawn-cni.c); a checkout from before it
# had a script of that name
front=bin/nspawn-cni
if [ ! -f "$front" ] || [ native/front/nspawn-cni.c -nt "$front" ] || [ "$(head -c 4 "$front")" != $'\x7fELF' ]; then
  say "building bin/nspawn-cni (the CNI plugin's front)"
  bash scripts/build-cni-front.sh >&2 || { say "error: building bin/nspawn-cni failed (it needs gcc and libc6-dev)"; exit 1; }
fi

stamp=dist/.build-stamp
if [ ! -f "$stamp" ] || [ -n "$(find src tsconfig.json package.json scripts/build.sh scripts/ascii-bundle.mjs -newer "$stamp" -print -quit)" ]; then
  say "compiling TypeScript"
  rm -rf dist
  npx --no-install tsc -p tsconfig.json >&2 || { say "error: TypeScript build failed"; exit 1; }
  # the commands' start-up path: one CommonJS bundle each, loaded with V8's code cache by
  # bin/cached-bundle.cjs, so a launch neither resolves a hundred modules nor compiles them again
  say "bundling the commands"
  # nspawn-cni-plugin: what nspawn-cni loads for ADD, CHECK and DEL (its VERSION loads none of it)
  # nspawn-netd-dhcp: the standalone DHCP server (`nspawn-netd dhcp-serve`) without the sidecar's code
  for entry in nspawn-ts=src/runtime/main.ts nspawn-netd=src/cni/netd-main.ts nspawn-netd-dhcp=src/dhcp/serve-main.ts \
      machinectl-ts=src/machinectl/main.ts nspawn-cni=src/cni/main.ts nspawn-cni-plugin=src/cni/plugin.ts; do
    npx --no-install esbuild "src/${entry#*=src/}" --bundle --platform=node --format=cjs --target=node20 \
      --outfile="dist/${entry%%=*}.cjs" --define:import.meta.url=__import_meta_url \
      --banner:js="const __import_meta_url = require('url').pathToFileURL(__filename).href;" --log-level=warning >&2 \
      || { say "error: bundling failed"; exit 1; }
    # ASCII only: V8 holds a source with one non-ASCII character as UTF-16 (scripts/ascii-bundle.mjs)
    node scripts/ascii-bundle.mjs "dist/${entry%%=*}.cjs" || { say "error: making dist/${entry%%=*}.cjs ASCII failed"; exit 1; }
    # V8's code cache with every function compiled, under the command's own V8 flags (bin/cached-bundle.cjs)
    # shellcheck disable=SC2046 # the options are words
    node $(node -p 'require(process.argv[1]).nodeOptions(process.argv[2]).join(" ")' "$PWD/bin/cached-bundle.cjs" "${entry%%=*}") \
      -e 'require(process.argv[1]).build(process.argv[2])' "$PWD/bin/cached-bundle.cjs" "${entry%%=*}" \
      || { say "error: writing the code cache failed"; exit 1; }
  done
  # man pages (help2man) and bash completion, from each command's --help
  say "writing man pages and bash completion"
  command -v help2man >/dev/null || { say "error: help2man is missing (npm run setup installs it)"; exit 1; }
  node scripts/build-docs.mjs || { say "error: building man pages and completion failed"; exit 1; }
  touch "$stamp"
fi
