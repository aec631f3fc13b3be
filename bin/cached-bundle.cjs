// Loads a command's bundle (dist/NAME.cjs, built by scripts/build.sh) with V8's code cache
// (dist/NAME.cjs.<node version>.cache): a launch skips parsing and compiling the code it runs — the
// larger part of its start-up before the container exists. scripts/build.sh writes the cache with
// every function of the bundle compiled (build()), so what a launch finds compiled does not depend
// on which command happened to run first after a build (a --version first used to leave a cache
// without the launcher, a static launch one without the DHCP server). Without a cache, or with one
// V8 rejects (another Node), the first run writes one at its exit, with what it ran; a read-only
// install simply runs without one.
'use strict';
const fs = require('node:fs');
const path = require('node:path');
const vm = require('node:vm');
// The CommonJS loader's Module class as this file's module has it, not require('node:module'): that
// module loads (and compiles) Node's ES module loader and source maps, ~1 ms in every short command.
const Module = module.constructor;

function paths(name) {
  const file = path.join(__dirname, '..', 'dist', `${name}.cjs`);
  return { file, cacheFile: `${file}.${process.version}.cache` };
}

function writeAtomically(target, data) {
  const tmp = `${target}.${process.pid}`;
  try {
    fs.writeFileSync(tmp, data);
    fs.renameSync(tmp, target);
  } catch {
    try { fs.unlinkSync(tmp); } catch { /* never written */ }
  }
}

/**
 * The Node options NAME's command runs with (its bin/ script's #! line; a bundle NAME-PART belongs to
 * the command NAME; a command whose executable is native, nspawn-cni, has its script in bin/NAME.cjs).
 * V8 accepts a code cache only from a run with the same V8 flags (--max-semi-space-size changes its
 * flag hash): the cache is written under these.
 */
exports.nodeOptions = function nodeOptions(name) {
  let first = '';
  search: for (let n = name; n; n = n.includes('-') ? n.slice(0, n.lastIndexOf('-')) : '') {
    for (const file of [`${n}.cjs`, n]) {
      try {
        first = fs.readFileSync(path.join(__dirname, file), 'utf8').split('\n', 1)[0];
        break search;
      } catch {
        // no such command: try its prefix
      }
    }
  }
  const m = /^#!.*?\bnode((?: --[^\s]+)*)\s*$/.exec(first);
  return m ? m[1].trim().split(/\s+/).filter(Boolean) : [];
};

/**
 * Writes NAME's code cache with every function compiled (V8 compiles lazily: --no-lazy while this
 * compiles, then back, so that the cache carries the flags of a normal run and is accepted).
 */
exports.build = function build(name) {
  // The standalone DHCP server runs for long and is measured by its peak RSS: a cache with every
  // function compiled would put the bytecode of code it never runs in its heap. Its first run writes
  // its cache instead, with what it ran (load()).
  if (LAZY.has(name)) return;
  const { file, cacheFile } = paths(name);
  const v8 = require('node:v8');
  const source = readSource(file);
  let script;
  v8.setFlagsFromString('--no-lazy');
  try {
    script = new vm.Script(Module.wrap(source), { filename: file });
  } finally {
    v8.setFlagsFromString('--lazy');
  }
  const tmp = `${cacheFile}.${process.pid}`;
  fs.writeFileSync(tmp, script.createCachedData());
  fs.renameSync(tmp, cacheFile);
};

/** Bundles whose cache is left to their first run (build() says why). */
const LAZY = new Set(['nspawn-netd-dhcp']);

/**
 * A bundle's source as latin1: scripts/ascii-bundle.mjs makes every bundle pure ASCII, where latin1 and
 * UTF-8 read the same, and latin1 skips the UTF-8 decoding of ~0.6 MB per start.
 */
function readSource(file) {
  return fs.readFileSync(file, 'latin1');
}

exports.load = function load(name) {
  const { file, cacheFile } = paths(name);
  let source;
  try {
    source = readSource(file);
  } catch (err) {
    if (err.code !== 'ENOENT') throw err;
    process.stderr.write(`${name}: ${file} is not built; run "npm run setup" (as root) in ${path.join(__dirname, '..')} first\n`);
    process.exit(1);
  }
  let cachedData;
  try {
    cachedData = fs.readFileSync(cacheFile);
  } catch {
    cachedData = undefined;
  }
  const script = new vm.Script(Module.wrap(source), { filename: file, cachedData });
  const mod = { exports: {} };
  script.runInThisContext()(mod.exports, Module.createRequire(file), mod, file, path.dirname(file));
  if (cachedData === undefined || script.cachedDataRejected) {
    // at exit: by then the code of everything this run did is compiled and goes into the cache
    process.once('exit', () => writeAtomically(cacheFile, script.createCachedData()));
  }
  return mod.exports;
};
