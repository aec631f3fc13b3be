#!/usr/bin/env -S -u NODE_EXTRA_CA_CERTS MALLOC_ARENA_MAX=1 node --min-semi-space-size=16 --max-semi-space-size=16 --v8-pool-size=1
// nspawn-cni: the network library as a CNI plugin (src/cni/main.ts, bundled into dist/). Runtimes start
// bin/nspawn-cni, a small native front (native/front/nspawn-cni.c, built by scripts/build.sh): it
// answers the runtime's VERSION itself and runs this script for every other call as the #! line above
// would (the same environment and V8 flags: a unit test compares them; the code caches are written
// under this line's flags). Started per call (ADD/DEL per container): two bundles with V8's code
// cache — the entry, all VERSION needs, and the operations (src/cni/plugin.ts), loaded for ADD, CHECK
// and DEL only — and no NODE_EXTRA_CA_CERTS file parsed (it makes no TLS connection). Young-generation
// semi-spaces of 16 MiB from the start: a call allocates less than that (the code cache's objects
// among it), so it runs without a scavenge (3 in an ADD at 4 MiB, ~1 ms each); pages are touched
// only as allocated.
'use strict';

const bundles = require('./cached-bundle.cjs');
const { main, exitAfterAnswer } = bundles.load('nspawn-cni');

main(process.argv.slice(2), process.env, async () => bundles.load('nspawn-cni-plugin')).then(exitAfterAnswer);
