// Image verbs and start/enable through machinectl-ts, with busybox images in a temp pool and
// machines running from them: list-images/image-status/show-image (table and JSON), remove,
// rename and clone (refused while a machine uses the image), start (detached, logged, waited for;
// its failures reported), enable/disable.
import { describe, expect } from 'vitest';
import { existsSync, readFileSync, rmSync, symlinkSync, mkdirSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { ktest } from '../helpers/kernel.js';
import { run, waitFor } from '../helpers/exec.js';
import { busyboxRoot, fakeLauncherBinary, startFakeMachine, tempDir, type FakeMachine } from './machinectl-fixture.js';
import { main } from '../../src/machinectl/main.js';
import type { BootSystem } from '../../src/machinectl/units.js';
import { MachineRegistry } from '../../src/runtime/registry.js';
import { ImageStore } from '../../src/runtime/images.js';

const BIN = new URL('../../bin/machinectl-ts', import.meta.url).pathname;

interface World {
  dir: string;
  pool: string;
  registryDir: string;
  registry: MachineRegistry;
  env: NodeJS.ProcessEnv;
  machines: FakeMachine[];
  ctl(...argv: string[]): Promise<{ code: number; stdout: string; stderr: string }>;
  bin(argv: string[]): Promise<{ code: number | null; stdout: string; stderr: string }>;
}

const noSystemd: BootSystem = { systemdIsInit: () => false, pid1: () => 'tini', unitDir: '/nonexistent', reload: async () => {} };

const itest = ktest.extend<{ world: World }>({
  // eslint-disable-next-line no-empty-pattern
  world: async ({}, use) => {
    const t = tempDir('machinectl-img-');
    const pool = join(t.dir, 'machines');
    mkdirSync(pool);
    const runDir = join(t.dir, 'run');
    const registryDir = join(runDir, 'machines');
    const registry = new MachineRegistry({ dir: registryDir });
    const images = new ImageStore({ searchPath: [pool], machinesDir: pool, settingsDirs: [join(t.dir, 'etc-nspawn')] });
    const env: NodeJS.ProcessEnv = {
      ...process.env, NSPAWN_TS_RUN_DIR: runDir, NSPAWN_TS_MACHINES_DIR: pool, NSPAWN_TS_PROPERTIES_DIR: join(t.dir, 'properties'),
      NSPAWN_TS_SETTINGS_DIRS: join(t.dir, 'etc-nspawn'), NSPAWN_TS_LOG_DIR: join(t.dir, 'log'),
      NSPAWN_TS_LAUNCHER: fakeLauncherBinary(t.dir, registryDir),
    };
    const machines: FakeMachine[] = [];
    const world: World = {
      dir: t.dir, pool, registryDir, registry, env, machines,
      ctl: async (...argv) => {
        let stdout = '';
        let stderr = '';
        const code = await main(argv, {
          io: { stdout: (s) => { stdout += s; }, stderr: (s) => { stderr += s; } },
          registry, images, timeZone: 'UTC', propertiesDir: join(t.dir, 'properties'), boot: noSystemd,
        });
        return { code, stdout, stderr };
      },
      bin: async (argv) => {
        const r = await run(BIN, argv, { env, timeoutMs: 60_000 });
        return { code: r.code, stdout: r.stdout, stderr: r.stderr };
      },
    };
    try {
      await use(world);
    } finally {
      for (const m of machines) await m.stop();
      // machines started by `start` run under the stand-in launcher: end them the way terminate does
      for (const r of registry.list()) {
        try {
          process.kill(r.launcher.pid, 'SIGTERM');
        } catch { /* gone */ }
        await waitFor(() => registry.get(r.name) === undefined, `machine ${r.name} to end`, 10_000);
      }
      t.cleanup();
    }
  },
});

describe('image listing', () => {
  itest('list-images, image-status, show-image', async ({ world }) => {
    busyboxRoot(world.pool, 'deb');
    busyboxRoot(world.pool, 'alp');
    const far = join(world.dir, 'elsewhere');
    mkdirSync(far);
    busyboxRoot(far, 'far');
    symlinkSync(join(far, 'far'), join(world.pool, 'far'));
    const t = await world.bin(['list-images']);
    expect(t.code).toBe(0);
    const lines = t.stdout.split('\n');
    expect(lines[0]).toBe('NAME TYPE      RO USAGE CREATED                     MODIFIED');
    expect(lines[1]).toMatch(/^alp {2}directory no {5}- \w{3} \d{4}-\d\d-\d\d \d\d:\d\d:\d\d \S+ \w{3} \d{4}-\d\d-\d\d \d\d:\d\d:\d\d \S+$/);
    expect(lines.slice(2, 4).map((l) => l.split(' ')[0])).toEqual(['deb', 'far']);
    expect(t.stdout.endsWith('\n3 images listed.\n')).toBe(true);
    const j = JSON.parse((await world.bin(['list-images', '-o', 'json'])).stdout) as Array<Record<string, unknown>>;
    expect(j.map((r) => [r.name, r.type, r.ro, r.usage])).toEqual([['alp', 'directory', false, null], ['deb', 'directory', false, null], ['far', 'directory', false, null]]);
    expect(typeof j[0]?.modified).toBe('number');

    const st = await world.ctl('image-status', 'far');
    expect(st.stdout.split('\n').slice(0, 7)).toEqual([
      'far', '\t    Type: directory', `\t    Path: ${join(world.pool, 'far')}`, `\t  Target: ${join(far, 'far')}`, '\tHostname: far',
      '\t      OS: BusyBox test root', '\t      RO: writable',
    ]);
    expect((await world.ctl('show-image', 'deb', '-p', 'Type,ReadOnly')).stdout).toBe('Type=directory\nReadOnly=no\n');
    expect((await world.ctl('image-status')).stdout).toBe(`\t    Path: ${world.pool}\n`);
    expect(await world.ctl('image-status', 'nope')).toEqual({ code: 1, stdout: '', stderr: `machinectl-ts: No image 'nope' known (looked in ${world.pool})\n` });
    expect((await world.ctl('show-image', 'a/b')).stderr).toMatch(/^machinectl-ts: Invalid image name 'a\/b'/);
  });
});

describe('remove, rename, clone', () => {
  itest('an image in use by a running machine is neither removed nor renamed; once stopped it is', async ({ world }) => {
    const root = busyboxRoot(world.pool, 'web');
    const m = await startFakeMachine({ name: 'web', root, registryDir: world.registryDir });
    world.machines.push(m);
    const rm = await world.ctl('remove', 'web');
    expect(rm).toEqual({ code: 1, stdout: '', stderr: "machinectl-ts: Image 'web' is in use by running machine 'web'; stop it first (machinectl-ts poweroff web)\n" });
    expect((await world.ctl('rename', 'web', 'www')).stderr).toMatch(/in use by running machine 'web'/);
    // a clone of a running machine's image is fine
    expect((await world.ctl('clone', 'web', 'web2')).code).toBe(0);
    expect(readFileSync(join(world.pool, 'web2/etc/hostname'), 'utf8')).toBe('web\n');
    expect((await world.ctl('terminate', 'web')).code).toBe(0);
    await m.exited;
    expect((await world.ctl('rename', 'web', 'www')).code).toBe(0);
    expect((await world.ctl('remove', 'www', 'web2')).code).toBe(0);
    expect((await world.ctl('list-images')).stdout).toBe('No images.\n');
  });

  itest('bad input: unknown images, clashing and invalid new names, missing arguments', async ({ world }) => {
    busyboxRoot(world.pool, 'a');
    busyboxRoot(world.pool, 'b');
    expect((await world.ctl('remove', 'nope')).stderr).toMatch(/^machinectl-ts: No image 'nope' known/);
    expect((await world.ctl('rename', 'a', 'b')).stderr).toBe(`machinectl-ts: Image 'b' already exists (${join(world.pool, 'b')})\n`);
    expect((await world.ctl('clone', 'a', 'b')).stderr).toMatch(/Image 'b' already exists/);
    expect((await world.ctl('clone', 'a', '.#x')).stderr).toMatch(/^machinectl-ts: Invalid image name '\.#x'/);
    expect((await world.ctl('rename', 'a')).stderr).toBe("machinectl-ts: Too few arguments for 'rename'.\nmachinectl-ts: usage: machinectl-ts rename NAME NEWNAME\n");
    expect((await world.ctl('clone', 'a', 'b', 'c')).code).toBe(1);
    expect((await world.ctl('list-images', '--no-legend')).stdout.split('\n').filter(Boolean).map((l) => l.split(' ')[0])).toEqual(['a', 'b']);
  });

  itest("set-property's file goes with its image: removed by remove, moved by rename", async ({ world }) => {
    busyboxRoot(world.pool, 'a');
    busyboxRoot(world.pool, 'b');
    const props = (n: string): string => join(world.dir, 'properties', `${n}.properties`);
    expect((await world.ctl('set-property', 'a', 'TasksMax=33')).code).toBe(0);
    expect((await world.ctl('set-property', 'b', 'TasksMax=44')).code).toBe(0);
    expect((await world.ctl('rename', 'a', 'c')).code).toBe(0);
    expect(existsSync(props('a'))).toBe(false);
    expect(readFileSync(props('c'), 'utf8')).toContain('TasksMax=33\n');
    expect((await world.ctl('remove', 'b', 'c')).code).toBe(0);
    expect(existsSync(props('b'))).toBe(false);
    expect(existsSync(props('c'))).toBe(false);
  });

  itest('remove of a symlinked image leaves its target', async ({ world }) => {
    const far = join(world.dir, 'elsewhere');
    mkdirSync(far);
    busyboxRoot(far, 'far');
    symlinkSync(join(far, 'far'), join(world.pool, 'far'));
    const r = await world.ctl('remove', 'far');
    expect(r.code).toBe(0);
    expect(r.stderr).toBe(`Removed the link ${join(world.pool, 'far')}; the directory it pointed to, ${join(far, 'far')}, was left in place.\n`);
    expect(existsSync(join(far, 'far/etc/hostname'))).toBe(true);
  });
});

describe('start', () => {
  itest('runs the launcher detached with systemd-nspawn@.service\'s options and waits for the machine', async ({ world }) => {
    busyboxRoot(world.pool, 'web');
    expect((await world.ctl('set-property', 'web', 'TasksMax=77')).code).toBe(0);
    const r = await world.bin(['start', 'web']);
    expect(r.code).toBe(0);
    const log = join(world.dir, 'log', 'web.log');
    expect(r.stderr).toMatch(new RegExp(`^Started machine 'web' \\(launcher PID \\d+\\); its output goes to ${log}\\.\\n$`));
    const rec = world.registry.get('web');
    expect(rec?.leader).toBeDefined();
    expect(rec?.rootDirectory).toBe(join(world.pool, 'web'));
    const text = readFileSync(log, 'utf8');
    expect(text).toContain(`machinectl-ts start web: ${world.env.NSPAWN_TS_LAUNCHER} --quiet --keep-unit --boot --link-journal=try-guest --network-veth -U --settings=override --machine=web --directory=${join(world.pool, 'web')} --property=TasksMax=77\n`);
    expect(text).toContain('"machine":"web","mode":"boot","properties":[{"name":"TasksMax","value":"77"}]');
    // the machine outlives the machinectl-ts that started it
    expect((await world.bin(['list', '--no-legend'])).stdout).toMatch(/^web container nspawn-ts busybox 1\.36/);
    const again = await world.bin(['start', 'web']);
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/^machinectl-ts: Machine 'web' is already running \(leader PID \d+, launcher PID \d+\)\n$/);
    expect((await world.bin(['terminate', 'web'])).code).toBe(0);
    expect(world.registry.get('web')).toBeUndefined();
  });

  itest('failures: no image, a bad name, a launcher that fails (with the end of its log)', async ({ world }) => {
    expect((await world.ctl('start', 'nope')).stderr).toBe(`machinectl-ts: Machine image 'nope' does not exist (looked in ${world.pool})\n`);
    expect((await world.ctl('start', '-x-')).code).toBe(1);
    expect((await world.ctl('start', 'a_b')).stderr).toMatch(/^machinectl-ts: Invalid machine name: a_b\n/);
    const root = busyboxRoot(world.pool, 'broken');
    unlinkSync(join(root, 'sbin/init'));
    const r = await world.bin(['start', 'broken']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^machinectl-ts: Failed to start machine 'broken': nspawn-ts exited with status 1; the end of .*broken\.log:\n/);
    expect(r.stderr).toContain('"error":"ENOENT"');
    expect(world.registry.get('broken')).toBeUndefined();
    rmSync(root, { recursive: true });
  });

  itest('enable and disable where systemd is not PID 1: a clear error', async ({ world }) => {
    busyboxRoot(world.pool, 'web');
    const r = await world.ctl('enable', 'web');
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^machinectl-ts: Cannot enable machines here: 'enable' makes systemd start a machine at boot, but this system's PID 1 is 'tini', not systemd/);
    expect((await world.ctl('disable', 'web')).stderr).toMatch(/^machinectl-ts: Cannot disable machines here: 'disable' stops systemd from starting a machine at boot, but this system's PID 1 is 'tini'/);
    expect((await world.ctl('enable', 'nope')).stderr).toMatch(/^machinectl-ts: Machine image 'nope' does not exist/);
  });
});
