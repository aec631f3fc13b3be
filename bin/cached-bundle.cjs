// Loads a command's bundle (dist/NAME.cjs, built by scripts/build.sh) with V8's code cache: the
// first run stores the compiled code of every function it ran (dist/NAME.cjs.<node version>.cache),
// later runs skip parsing and compiling it — the larger part of a launch's start-up before the
// container exists. A cache V8 rejects (another Node, another bundle) is rewritten; a read-only
// install simply runs without one.
'use strict';
const fs = require('node:fs');
const path = require('node:path');
const vm = require('node:vm');
const Module = require('node:module');

exports.load = function load(name) {
  const file = path.join(__dirname, '..', 'dist', `${name}.cjs`);
  const cacheFile = `${file}.${process.version}.cache`;
  let source;
  try {
    source = fs.readFileSync(file, 'utf8');
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
    process.once('exit', () => {
      const tmp = `${cacheFile}.${process.pid}`;
      try {
        fs.writeFileSync(tmp, script.createCachedData());
        fs.renameSync(tmp, cacheFile);
      } catch {
        try { fs.unlinkSync(tmp); } catch { /* never written */ }
      }
    });
  }
  return mod.exports;
};
