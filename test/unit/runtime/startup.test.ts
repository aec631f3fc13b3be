// The start-up path of the commands (docs/design/startup.md): the bin/ scripts run as shipped (their #!
// line) and through `node`, without parsing NODE_EXTRA_CA_CERTS and without loading what a
// command does not need; how PID 1 enters its cgroups (cgroupEntry); the debug timeline.
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, test } from 'vitest';
import { cgroupEntry } from '../../../src/runtime/cgroups.js';
import { logger, setLogLevel, setLogSink } from '../../../src/log.js';

const BIN = fileURLToPath(new URL('../../../bin/', import.meta.url));

interface Ran { code: number | null; stdout: string; stderr: string }

function exec(file: string, args: string[], env: NodeJS.ProcessEnv = {}): Promise<Ran> {
  return new Promise((resolve) => {
    execFile(file, args, { env: { ...process.env, ...env }, timeout: 30_000 }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as NodeJS.ErrnoException & { code?: unknown }).code === 'number' ? (err as unknown as { code: number }).code : 1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

const dirs: string[] = [];
function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'nspawn-ts-startup-'));
  dirs.push(d);
  return d;
}
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

describe('bin/ commands', () => {
  // node parses the file NODE_EXTRA_CA_CERTS names before running any script, and warns when it
  // cannot: no warning means the launcher's #! line kept node from reading it at all
  test.each([
    ['nspawn-ts', ['--version'], /^nspawn-ts \d/],
    ['machinectl-ts', ['--version'], /\d/],
  ])('%s run as shipped ignores NODE_EXTRA_CA_CERTS (no certificate parsing at start-up)', async (cmd, args, out) => {
    const r = await exec(join(BIN, cmd), args, { NODE_EXTRA_CA_CERTS: '/nonexistent/nspawn-ts-test-ca.pem' });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(out);
  });

  test('node bin/nspawn-ts (CommonJS entry) works as the command does', async () => {
    const a = await exec(process.execPath, [join(BIN, 'nspawn-ts'), '--version']);
    const b = await exec(join(BIN, 'nspawn-ts'), ['--version']);
    expect(a).toEqual(b);
    expect(a.code).toBe(0);
    const bad = await exec(join(BIN, 'nspawn-ts'), ['--no-such-option']);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/no-such-option/);
  });

  test('--version and --help load neither the native addon nor the network subsystem\'s builtins', async () => {
    const dir = tempDir();
    const report = join(dir, 'loaded.json');
    const preload = join(dir, 'preload.cjs');
    writeFileSync(preload, `process.on('exit', () => require('fs').writeFileSync(${JSON.stringify(report)},
      JSON.stringify({ files: Object.keys(require.cache), builtins: process.moduleLoadList })));`);
    for (const args of [['--version'], ['--help']]) {
      const r = await exec(join(BIN, 'nspawn-ts'), args, { NODE_OPTIONS: `--require ${preload}` });
      expect(r.code).toBe(0);
      const loaded = JSON.parse(readFileSync(report, 'utf8')) as { files: string[]; builtins: string[] };
      expect(loaded.files.filter((f) => f.endsWith('.node'))).toEqual([]);
      // zlib comes with the DHCP lease journal, dgram/child_process/http with nothing on this path
      // (node:net does come: process.stdout on a pipe is a net.Socket)
      expect(loaded.builtins.filter((m) => /^NativeModule (zlib|dgram|child_process|http|https|worker_threads)$/.test(m))).toEqual([]);
    }
  });
});

describe('code cache', () => {
  test('the build writes a complete cache that V8 accepts, and a command does not rewrite it', async () => {
    const bundle = fileURLToPath(new URL('../../../dist/nspawn-ts.cjs', import.meta.url));
    const cache = `${bundle}.${process.version}.cache`;
    const before = readFileSync(cache);
    // accepted as it is (flags of a normal run), and bigger than what a --version run compiles
    const check = `const fs = require('fs'), vm = require('vm'), Module = require('module');
      const s = new vm.Script(Module.wrap(fs.readFileSync(${JSON.stringify(bundle)}, 'utf8')), { filename: ${JSON.stringify(bundle)}, cachedData: fs.readFileSync(${JSON.stringify(cache)}) });
      s.runInThisContext();
      console.log(JSON.stringify({ rejected: s.cachedDataRejected }));`;
    const r = await exec(process.execPath, ['-e', check]);
    expect(JSON.parse(r.stdout)).toEqual({ rejected: false });
    // the first command after a build no longer decides what the cache holds
    expect((await exec(join(BIN, 'nspawn-ts'), ['--version'])).code).toBe(0);
    expect(readFileSync(cache).equals(before)).toBe(true);
    // what --version alone compiles is a fraction of it
    const dir = tempDir();
    const lazy = join(dir, 'lazy.cache');
    const partial = `const fs = require('fs'), vm = require('vm'), Module = require('module');
      const s = new vm.Script(Module.wrap(fs.readFileSync(${JSON.stringify(bundle)}, 'utf8')), { filename: ${JSON.stringify(bundle)} });
      const m = { exports: {} };
      s.runInThisContext()(m.exports, Module.createRequire(${JSON.stringify(bundle)}), m, ${JSON.stringify(bundle)}, '.');
      m.exports.main(['--version']).then(() => fs.writeFileSync(${JSON.stringify(lazy)}, s.createCachedData()));`;
    expect((await exec(process.execPath, ['-e', partial])).code).toBe(0);
    expect(before.length).toBeGreaterThan(2 * readFileSync(lazy).length);
  });
});

describe('lazy builtins', () => {
  test('the DHCP lease journal loads node:zlib only when it encodes or decodes a line', async () => {
    const journal = new URL('../../../dist/dhcp/journal.js', import.meta.url).href;
    const script = `const zlib = () => process.moduleLoadList.includes('NativeModule zlib');
      const j = await import(${JSON.stringify(journal)});
      const before = zlib();
      const line = j.encodeLine({ t: 'x' });
      // the checksum is zlib's CRC-32: a changed byte fails it
      const bad = line.replace('x', 'y');
      console.log(JSON.stringify({ before, after: zlib(), crc: /^[0-9a-f]{8} /.test(line), bad: j.decodeLine(bad.trimEnd()) === undefined }));`;
    const r = await exec(process.execPath, ['--input-type=module', '-e', script]);
    expect(r.stderr).toBe('');
    expect(JSON.parse(r.stdout)).toEqual({ before: false, after: true, crc: true, bad: true });
  });
});

describe('cgroupEntry', () => {
  test('v1 cgroups are joined through their tasks files, in order; the cgroup2 one is where PID 1 is cloned', () => {
    expect(cgroupEntry([
      { version: 1, path: '/sys/fs/cgroup/cpu/nspawn-ts/machine-a' },
      { version: 2, path: '/sys/fs/cgroup/unified/nspawn-ts/machine-a' },
      { version: 1, path: '/sys/fs/cgroup/devices/nspawn-ts/machine-a' },
    ])).toEqual({
      tasksFiles: ['/sys/fs/cgroup/cpu/nspawn-ts/machine-a/tasks', '/sys/fs/cgroup/devices/nspawn-ts/machine-a/tasks'],
      cgroup2Dir: '/sys/fs/cgroup/unified/nspawn-ts/machine-a',
    });
    expect(cgroupEntry([])).toEqual({ tasksFiles: [] });
  });
});

describe('debug log timeline', () => {
  test('with detail on, each line says when it happened (ms since start) and which module wrote it', () => {
    const lines: string[] = [];
    const prev = setLogSink((l) => lines.push(l));
    setLogLevel('debug');
    try {
      logger('launcher').debug('PID 1 waits');
      logger('net').info('serving ve-x');
    } finally {
      setLogLevel('info');
      setLogSink(prev);
    }
    expect(lines[0]).toMatch(/^debug: \[\s*\d+\.\d ms launcher\] PID 1 waits$/);
    expect(lines[1]).toMatch(/^\[\s*\d+\.\d ms net\] serving ve-x$/);
    const t = (l: string) => Number(/\[\s*([\d.]+) ms/.exec(l)?.[1]);
    expect(t(lines[1] as string)).toBeGreaterThanOrEqual(t(lines[0] as string));
  });
});
