// The packed package, installed as a user installs it: `npm pack` in this checkout, then
// `npm install -g ./nspawn-ts-VERSION.tgz` into a temporary prefix — inside the test run's network
// namespace, where no registry is reachable, so the install must need nothing from one (bundled
// dependencies, node-gyp pointed at this Node's headers). The installed commands then run a
// networked container (DHCP lease, the remote reached through the masquerade) and `machinectl-ts
// list`, and strace shows they open nothing of the source tree.
import { existsSync, mkdtempSync, readFileSync, readdirSync, realpathSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect } from 'vitest';
import { ktest } from '../helpers/kernel.js';
import { run, runOk } from '../helpers/exec.js';
import { busyboxRoot, copyRoot } from '../helpers/rootfs.js';
import { FETCH, REMOTE, TEST_DNS, World, exitOf, startProc } from './e2e-world.js';

const SOURCE = fileURLToPath(new URL('../..', import.meta.url)).replace(/\/$/, '');
let work = '';
let prefix = '';
let pkgDir = '';

beforeAll(async () => {
  work = mkdtempSync('/var/tmp/nspawn-ts-install-');
  prefix = join(work, 'prefix');
  const npmEnv = { ...process.env, npm_config_cache: join(work, 'npm-cache'), npm_config_update_notifier: 'false' };
  // npm prints the prepack script's banner before the JSON
  const packOut = await runOk('npm', ['pack', '--json', '--pack-destination', work], { cwd: SOURCE, env: npmEnv, timeoutMs: 300_000 });
  const packed = JSON.parse(packOut.slice(packOut.search(/^\[/m))) as Array<{ filename: string; files: Array<{ path: string }> }>;
  const tarball = join(work, packed[0]?.filename as string);
  const files = packed[0]?.files.map((f) => f.path) ?? [];
  // what goes in: the bundles, the addon's sources, the bundled dependencies; no TypeScript, no build output
  expect(files).toEqual(expect.arrayContaining(['bin/nspawn-ts', 'bin/machinectl-ts', 'bin/nspawn-netd', 'dist/nspawn-ts.cjs', 'dist/machinectl-ts.cjs', 'dist/nspawn-netd.cjs', 'native/binding.gyp']));
  expect(files.filter((f) => f.startsWith('src/') || f.startsWith('test/') || f.startsWith('native/build/') || f.endsWith('.cache'))).toEqual([]);
  // the run's network namespace has no route out: a registry download would fail the install
  await runOk('npm', ['install', '-g', '--allow-scripts=nspawn-ts', '--prefix', prefix, '--no-audit', '--no-fund', tarball], { env: npmEnv, timeoutMs: 600_000 });
  pkgDir = join(prefix, 'lib/node_modules/nspawn-ts');
}, 900_000);

afterAll(() => {
  if (work) rmSync(work, { recursive: true, force: true });
});

describe('npm pack → npm install -g', () => {
  ktest('the commands are on the prefix\'s PATH, the addon was compiled there and the code caches written', async () => {
    for (const cmd of ['nspawn-ts', 'machinectl-ts', 'nspawn-netd']) expect(existsSync(join(prefix, 'bin', cmd))).toBe(true);
    expect(existsSync(join(pkgDir, 'native/build/Release/nspawn_native.node'))).toBe(true);
    const caches = readdirSync(join(pkgDir, 'dist')).filter((f) => f.endsWith(`.${process.version}.cache`));
    expect(caches.sort()).toEqual(['machinectl-ts', 'nspawn-cni-plugin', 'nspawn-cni', 'nspawn-netd', 'nspawn-ts'].map((n) => `${n}.cjs.${process.version}.cache`));
    expect(existsSync(join(prefix, 'bin', 'nspawn-cni'))).toBe(true);
    expect(existsSync(join(pkgDir, 'src'))).toBe(false);
    // man pages where man finds them, and bash completion where bash-completion's loader looks
    for (const page of ['man1/nspawn-ts.1', 'man1/machinectl-ts.1', 'man8/nspawn-netd.8']) expect(existsSync(join(prefix, 'share/man', page)), page).toBe(true);
    for (const c of ['nspawn-ts', 'machinectl-ts']) {
      expect(readFileSync(join(prefix, 'share/bash-completion/completions', c), 'utf8')).toContain(`complete -F _${c.replace('-', '_')} ${c}`);
    }
    const v = await runOk(join(prefix, 'bin/nspawn-ts'), ['--version'], { cwd: '/' });
    expect(v).toMatch(/\d+\.\d+/);
  });

  ktest('machinectl-ts list and a container from the installed copy open nothing of the source tree', async () => {
    // a user's PATH (npm test's has this checkout's node_modules/.bin first)
    const env = { ...process.env, PATH: `${join(prefix, 'bin')}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin` };
    const traced = async (args: string[]): Promise<string> => {
      const log = join(work, 'strace.log');
      const out = await run('strace', ['-f', '-e', 'trace=open,openat,execve', '-o', log, ...args], { cwd: '/', env, timeoutMs: 60_000 });
      expect(out.code, out.stderr).toBe(0);
      const opened = readFileSync(log, 'utf8');
      rmSync(log);
      expect(opened.split('\n').filter((l) => l.includes(`"${SOURCE}/`))).toEqual([]);
      return opened;
    };
    const list = await traced(['machinectl-ts', 'list', '--no-legend']);
    expect(list).toContain(join(pkgDir, 'dist/machinectl-ts.cjs'));
    const root = await copyRoot(await busyboxRoot());
    try {
      const launch = await traced(['nspawn-ts', '-q', '--pipe', '-M', `inst-s-${process.pid}`, '-D', root.dir, 'true']);
      expect(launch).toContain(join(pkgDir, 'dist/nspawn-ts.cjs'));
      expect(launch).toContain(join(pkgDir, 'native/build/Release/nspawn_native.node'));
    } finally {
      root.remove();
    }
  });

  ktest('the installed nspawn-cni: its front, compiled at install, answers VERSION; Node the rest, from the installed copy', async () => {
    const front = join(prefix, 'bin', 'nspawn-cni');
    // npm gives the packed files a fixed 1985 mtime: a recent one is install-package.sh's compile
    expect(statSync(realpathSync(front)).mtimeMs).toBeGreaterThan(Date.parse('2020-01-01'));
    const env = { PATH: `${join(prefix, 'bin')}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin`, CNI_COMMAND: 'VERSION' };
    const log = join(work, 'strace-cni.log');
    const traced = async (input: string): Promise<{ stdout: string; nodeRuns: string[] }> => {
      const r = await run('strace', ['-f', '-s', '4096', '-e', 'trace=open,openat,execve', '-o', log, 'nspawn-cni'], { cwd: '/', env, input });
      expect(r.code, r.stderr).toBe(0);
      const opened = readFileSync(log, 'utf8').split('\n');
      rmSync(log);
      expect(opened.filter((l) => l.includes(`"${SOURCE}/`))).toEqual([]);
      return { stdout: r.stdout, nodeRuns: opened.filter((l) => /execve\("[^"]*\/node"/.test(l) && !l.includes('ENOENT')) };
    };
    const answered = await traced('{"cniVersion":"1.1.0"}');
    expect(answered.stdout).toBe('{"cniVersion":"1.1.0","supportedVersions":["0.3.0","0.3.1","0.4.0","1.0.0","1.1.0"]}\n');
    expect(answered.nodeRuns).toEqual([]);
    const passed = await traced('{"cniVersion":"1.1.0","name":"n"}');
    expect(passed.stdout).toBe(answered.stdout);
    expect(passed.nodeRuns).toHaveLength(1);
    expect(passed.nodeRuns[0]).toContain(`"${join(pkgDir, 'bin/nspawn-cni.cjs')}"`);
  });

  ktest('the installed nspawn-ts runs a networked container: DHCP lease, the remote reached through the masquerade', async () => {
    const world = await World.create();
    const root = await copyRoot(await busyboxRoot());
    const machine = `inst-${process.pid}`;
    try {
      const p = startProc(join(prefix, 'bin/nspawn-ts'), ['-q', '--pipe', '-n', '-M', machine, '-D', root.dir, 'sh', '-c',
        `udhcpc -i host0 -f -q -n -t 5 -T 1 >/dev/null 2>&1 || echo udhcpc-failed; ip -4 -o addr show host0; ${FETCH}`], { NSPAWN_NETD_DNS: TEST_DNS });
      expect(await exitOf(p)).toBe(0);
      expect(p.output()).not.toContain('udhcpc-failed');
      expect(p.output()).toMatch(/inet \d+\.\d+\.\d+\.\d+\/28/);
      expect(p.output()).toMatch(/remote-ok \d+\.\d+\.\d+\.\d+/);
      expect(p.output()).not.toContain(`remote-ok ${REMOTE}`);
    } finally {
      root.remove();
      await world.destroy();
    }
  });
});
