// The systemd units machinectl-ts installs: written with this installation's paths by
// `machinectl-ts install-units DIR`, accepted by systemd's own checker (systemd-analyze verify, which
// also checks that ExecStart= is there and executable — a unit pointing nowhere fails it), and the
// start/enable verbs dispatching to systemctl where systemd is PID 1 (sd_booted(): /run/systemd/system).
import { existsSync, mkdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect } from 'vitest';
import { ktest } from '../helpers/kernel.js';
import { run } from '../helpers/exec.js';
import { tempDir } from './machinectl-fixture.js';
import { main } from '../../src/machinectl/main.js';
import { ImageStore } from '../../src/runtime/images.js';
import { MachineRegistry } from '../../src/runtime/registry.js';
import { UNIT_OPTIONS } from '../../src/machinectl/start.js';
import { writeUnits, type BootSystem } from '../../src/machinectl/units.js';

const BIN = fileURLToPath(new URL('../../bin/machinectl-ts', import.meta.url));
const LAUNCHER = fileURLToPath(new URL('../../bin/nspawn-ts', import.meta.url));
const NETD = fileURLToPath(new URL('../../bin/nspawn-netd', import.meta.url));

let t: { dir: string; cleanup: () => void };
beforeAll(() => { t = tempDir('machinectl-units-'); });
afterAll(() => t.cleanup());

/** systemd-analyze verify, without the marker it leaves in /run/systemd (systemd-units-load). */
async function verify(dir: string, units: string[]): Promise<{ code: number | null; out: string }> {
  const marker = '/run/systemd/systemd-units-load';
  const had = existsSync(marker);
  try {
    const r = await run('systemd-analyze', ['verify', '--man=no', ...units.map((u) => join(dir, u))], { env: { ...process.env, SYSTEMD_LOG_LEVEL: 'notice' }, timeoutMs: 60_000 });
    return { code: r.code, out: (r.stdout + r.stderr).trim() };
  } finally {
    if (!had) rmSync(marker, { force: true });
  }
}

describe('install-units', () => {
  ktest('writes nspawn-ts@.service and nspawn-netd.service with this installation\'s paths; systemd-analyze verify accepts them', async () => {
    const dir = join(t.dir, 'units');
    const env = { ...process.env, NSPAWN_TS_LAUNCHER: '', NSPAWN_TS_NETD: '' };
    const r = await run(BIN, ['install-units', dir], { env });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toBe(`Created ${dir}/nspawn-ts@.service.\nCreated ${dir}/nspawn-netd.service.\n`);
    const template = readFileSync(join(dir, 'nspawn-ts@.service'), 'utf8');
    expect(template).toContain(`\nExecStart=${LAUNCHER} ${UNIT_OPTIONS.join(' ')} --machine=%i\n`);
    expect(readFileSync(join(dir, 'nspawn-netd.service'), 'utf8')).toContain(`\nExecStart=${NETD} --state-dir=`);
    // the second time: nothing to do
    expect((await run(BIN, ['install-units', dir], { env })).stderr).toBe(`The units in ${dir} are up to date.\n`);
    // an instance of the template, as systemd would load nspawn-ts@web.service
    symlinkSync('nspawn-ts@.service', join(dir, 'nspawn-ts@web.service'));
    const ok = await verify(dir, ['nspawn-netd.service', 'nspawn-ts@web.service']);
    expect(ok, ok.out).toEqual({ code: 0, out: '' });
    // the checker does check: a unit whose ExecStart= points nowhere is rejected
    const bad = join(t.dir, 'bad');
    mkdirSync(bad);
    writeFileSync(join(bad, 'nspawn-ts@.service'), template.replace(LAUNCHER, '/nonexistent/nspawn-ts'));
    symlinkSync('nspawn-ts@.service', join(bad, 'nspawn-ts@web.service'));
    const rejected = await verify(bad, ['nspawn-ts@web.service']);
    expect(rejected.code).not.toBe(0);
    expect(rejected.out).toMatch(/\/nonexistent\/nspawn-ts/);
  });

  ktest('machines.target is written only where systemd has none; it verifies too', async () => {
    const dir = join(t.dir, 'units-target');
    expect(writeUnits(dir, { systemUnitDirs: ['/lib/systemd/system'] })).toHaveLength(2);
    expect(writeUnits(join(dir, 'bare'), { systemUnitDirs: [join(t.dir, 'no-systemd')] })).toEqual(
      ['nspawn-ts@.service', 'nspawn-netd.service', 'machines.target'].map((u) => `Created ${join(dir, 'bare', u)}.`));
    const r = await verify(join(dir, 'bare'), ['machines.target']);
    expect(r, r.out).toEqual({ code: 0, out: '' });
  });
});

describe('start and enable where systemd is PID 1', () => {
  ktest('start asks systemctl for nspawn-ts@NAME.service (the template installed first); enable links it into machines.target', async () => {
    const pool = join(t.dir, 'machines');
    mkdirSync(join(pool, 'web'), { recursive: true });
    const unitDir = join(t.dir, 'etc-units');
    const calls: string[] = [];
    const boot: BootSystem = {
      systemdIsInit: () => true, pid1: () => 'systemd', unitDir,
      reload: async () => { calls.push('daemon-reload'); },
      systemctl: async (args) => { calls.push(args.join(' ')); },
    };
    let stderr = '';
    const ctl = (...argv: string[]): Promise<number> => main(argv, {
      io: { stdout: () => {}, stderr: (s) => { stderr += s; } },
      registry: new MachineRegistry({ dir: join(t.dir, 'run') }), images: new ImageStore({ searchPath: [pool], machinesDir: pool, settingsDirs: [] }), boot,
    });
    expect(await ctl('start', 'web')).toBe(0);
    expect(calls).toEqual(['daemon-reload', 'start nspawn-ts@web.service']);
    expect(stderr).toBe("Started machine 'web' as nspawn-ts@web.service.\n");
    expect(readFileSync(join(unitDir, 'nspawn-ts@.service'), 'utf8')).toContain('--machine=%i');
    expect(await ctl('start', 'web')).toBe(0);
    expect(calls.slice(2)).toEqual(['start nspawn-ts@web.service']); // unit unchanged: no reload
    expect(await ctl('enable', 'web')).toBe(0);
    expect(readFileSync(join(unitDir, 'machines.target.wants', 'nspawn-ts@web.service'), 'utf8')).toContain('--machine=%i');
    expect(await ctl('start', 'nope')).toBe(1);
    expect(stderr).toMatch(/Machine image 'nope' does not exist/);
  });
});
