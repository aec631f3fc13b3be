#!/usr/bin/env bash
# npm's "install" step of the packed nspawn-ts (`npm install -g ./nspawn-ts-VERSION.tgz`): compiles
# the native addon with the node-gyp that npm carries, and writes V8's code cache of each command's
# bundle (bin/cached-bundle.cjs) for the Node that will run them. Nothing is downloaded: the addon's
# only dependency, node-addon-api, travels in the tarball (bundleDependencies), and node-gyp is
# pointed at this Node's own headers (Debian's nodejs ships them in /usr/include/node) unless npm's
# nodedir setting names others. In a source checkout `npm run setup` builds instead.
set -euo pipefail
cd "$(dirname "$0")/.."
say() { printf 'nspawn-ts install: %s\n' "$*" >&2; }

if [ -d src ] && [ -f scripts/build.sh ]; then
  exit 0 # a source checkout (npm ci): scripts/build.sh builds the addon and the bundles
fi
for f in dist/nspawn-ts.cjs dist/nspawn-netd.cjs dist/machinectl-ts.cjs dist/completion/nspawn-ts; do
  [ -f "$f" ] || { say "error: $f is missing from the package (it is built by 'npm pack' in a source checkout)"; exit 1; }
done

gyp=(node-gyp) # npm puts its own node-gyp on PATH for install scripts
[ -n "${npm_config_node_gyp:-}" ] && gyp=(node "$npm_config_node_gyp")
nodedir=()
if [ -z "${npm_config_nodedir:-}" ]; then
  prefix=$(dirname "$(dirname "$(node -p process.execPath)")")
  [ -f "$prefix/include/node/node_api.h" ] && nodedir=("--nodedir=$prefix")
fi
say "compiling the native addon (node-gyp)"
if ! "${gyp[@]}" rebuild --directory native --loglevel=warn "${nodedir[@]}" >&2; then
  say "error: the native addon did not compile; it needs g++, make, python3, pkg-config and libnftables-dev (apt-get install build-essential python3 pkg-config libnftables-dev), and Node's headers (Debian: the nodejs package's /usr/include/node, or npm config set nodedir DIR)"
  exit 1
fi
rm -rf native/build/Release/obj.target native/build/Release/.deps
# the CNI plugin's executable, for this machine (the package carries the packer's build)
say "compiling bin/nspawn-cni"
if ! bash scripts/build-cni-front.sh >&2; then
  say "error: bin/nspawn-cni did not compile; it needs gcc and the C library's headers (apt-get install gcc libc6-dev)"
  exit 1
fi

# bash completion: linked where bash-completion looks (PREFIX/share/bash-completion/completions) for
# a global install; npm installs the man pages itself (package.json "man"). A link left by an
# uninstall dangles, and bash-completion skips it.
if [ "${npm_config_global:-}" = true ] && [ -n "${npm_config_prefix:-}" ]; then
  comp="$npm_config_prefix/share/bash-completion/completions"
  if mkdir -p "$comp" 2>/dev/null; then
    # relative links: they stay right when the prefix is a staging root (DESTDIR, a container image)
    for name in nspawn-ts machinectl-ts; do ln -sfn "$(realpath --relative-to="$comp" "$PWD/dist/completion/$name")" "$comp/$name"; done
  else
    say "note: could not create $comp; source $PWD/dist/completion/nspawn-ts for completion"
  fi
fi

for bundle in dist/*.cjs; do
  name=$(basename "$bundle" .cjs)
  # under the command's own V8 flags, or V8 rejects the cache (bin/cached-bundle.cjs nodeOptions)
  # shellcheck disable=SC2046 # the options are words
  node $(node -p 'require(process.argv[1]).nodeOptions(process.argv[2]).join(" ")' "$PWD/bin/cached-bundle.cjs" "$name") \
    -e 'require(process.argv[1]).build(process.argv[2])' "$PWD/bin/cached-bundle.cjs" "$name" \
    || { say "error: writing the code cache of $name failed"; exit 1; }
done
