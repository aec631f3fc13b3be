// The pure parts of shell, login, poweroff/reboot and start: users from a machine's files, command
// lookup, environment, getty choice, shutdown signals, the launcher's command line, the unit.
import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readlinkSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { shutdownSignal, SIGNALS, type LeaderFacts } from '../../../src/machinectl/control.js';
import { commandCandidates, parseGroup, parsePasswd, resolveUser } from '../../../src/machinectl/enter.js';
import { maskHas } from '../../../src/machinectl/procfs.js';
import { DEFAULT_PATH, gettyCommand, shellEnvironment } from '../../../src/machinectl/shell.js';
import {
  startArguments, UNIT_OPTIONS,
} from '../../../src/machinectl/start.js';
import { disableMachines, enableMachines, TEMPLATE_UNIT, unitText, type BootSystem } from '../../../src/machinectl/units.js';
import { ImageStore } from '../../../src/runtime/images.js';
import { parseCommandLine } from '../../../src/runtime/cli.js';

let root: string;
beforeEach(() => {
  root = mkdtempSync(join(tmpdir(), 'machinectl-shell-'));
  mkdirSync(join(root, 'etc'));
  mkdirSync(join(root, 'bin'));
  mkdirSync(join(root, 'usr/bin'), { recursive: true });
});
afterEach(() => rmSync(root, { recursive: true, force: true }));

describe('users of a machine', () => {
  test('passwd and group parsing skips malformed lines', () => {
    expect(parsePasswd('root:x:0:0:root:/root:/bin/bash\nbroken\nbob:x:1000:1000::/home/bob:/bin/sh\nnum:x:a:1:::\n')).toEqual([
      { name: 'root', uid: 0, gid: 0, home: '/root', shell: '/bin/bash' },
      { name: 'bob', uid: 1000, gid: 1000, home: '/home/bob', shell: '/bin/sh' },
    ]);
    expect(parseGroup('wheel:x:10:bob,alice\nbad\nbob:x:1000:\n')).toEqual([
      { name: 'wheel', gid: 10, members: ['bob', 'alice'] }, { name: 'bob', gid: 1000, members: [] },
    ]);
  });

  test('by name or number, with supplementary groups; root without a passwd file', () => {
    expect(resolveUser(root, undefined, 'machine x')).toEqual({ name: 'root', uid: 0, gid: 0, home: '/root', shell: '/bin/sh', groups: [0] });
    writeFileSync(join(root, 'usr/passwd'), 'root:x:0:0:root:/root:/bin/ash\nbob:x:1000:100:Bob:/home/bob:/bin/sh\n');
    symlinkSync('/usr/passwd', join(root, 'etc/passwd')); // an absolute link means the machine's /usr
    writeFileSync(join(root, 'etc/group'), 'users:x:100:\nwheel:x:10:bob\naudio:x:29:alice,bob\n');
    expect(resolveUser(root, 'bob', 'machine x')).toEqual({ name: 'bob', uid: 1000, gid: 100, home: '/home/bob', shell: '/bin/sh', groups: [100, 10, 29] });
    expect(resolveUser(root, '1000', 'machine x').name).toBe('bob');
    expect(resolveUser(root, 'root', 'machine x').shell).toBe('/bin/ash');
    expect(resolveUser(root, '4242', 'machine x')).toMatchObject({ uid: 4242, gid: 4242, home: '/' });
    expect(() => resolveUser(root, 'alice', "machine 'x'")).toThrow("User 'alice' does not exist in machine 'x' (looked in its /etc/passwd)");
  });

  test('commands: absolute as given, others along PATH inside the machine', () => {
    writeFileSync(join(root, 'usr/bin/tool'), '');
    expect(commandCandidates(root, '/opt/x', '/bin')).toEqual(['/opt/x']);
    expect(commandCandidates(root, 'tool', '/bin:/usr/bin')).toEqual(['/usr/bin/tool']);
    expect(commandCandidates(root, 'missing', '/bin:relative:/usr/bin/')).toEqual(['/bin/missing', '/usr/bin/missing']);
  });

  test('environment: PATH, HOME, USER, LOGNAME, SHELL, TERM; -E wins', () => {
    const u = { name: 'bob', home: '/home/bob', shell: '/bin/sh' };
    expect(shellEnvironment(u, [], 'xterm')).toEqual([
      `PATH=${DEFAULT_PATH}`, 'HOME=/home/bob', 'USER=bob', 'LOGNAME=bob', 'SHELL=/bin/sh', 'TERM=xterm',
    ]);
    expect(shellEnvironment(u, ['TERM=vt100', 'PATH=/x', 'A=b=c'], undefined)).toEqual([
      'PATH=/x', 'HOME=/home/bob', 'USER=bob', 'LOGNAME=bob', 'SHELL=/bin/sh', 'TERM=vt100', 'A=b=c',
    ]);
  });

  test('getty: agetty with container-getty@.service\'s arguments, busybox getty otherwise, or none', () => {
    expect(gettyCommand(root, 'vt220')).toBeUndefined();
    writeFileSync(join(root, 'bin/busybox'), '');
    mkdirSync(join(root, 'sbin'));
    symlinkSync('../bin/busybox', join(root, 'sbin/getty'));
    expect(gettyCommand(root, 'vt220')).toEqual({ argv: ['getty', '-L', '115200,38400,9600', '-', 'vt220'], candidates: ['/sbin/getty'] });
    writeFileSync(join(root, 'sbin/agetty'), '');
    expect(gettyCommand(root, 'xterm')).toEqual({
      argv: ['agetty', '-o', '-p -- \\u', '--noclear', '--keep-baud', '-', '115200,38400,9600', 'xterm'], candidates: ['/sbin/agetty'],
    });
  });
});

describe('poweroff and reboot signals', () => {
  const bit = (...sigs: number[]): bigint => sigs.reduce((m, s) => m | (1n << BigInt(s - 1)), 0n);
  const leader = (o: Partial<LeaderFacts>): LeaderFacts => ({ pid: 7, comm: 'init', deliverable: 0n, sigwait: false, busyboxInit: false, ...o });

  test('machined\'s: SIGRTMIN+4 and SIGINT to an init that takes them', () => {
    const systemd = leader({ comm: 'systemd', deliverable: bit(2, 15, 34, 35, 36, 37, 38) });
    expect(shutdownSignal('poweroff', systemd)).toEqual({ signal: SIGNALS.SIGRTMIN_4 });
    expect(shutdownSignal('reboot', systemd)).toEqual({ signal: SIGNALS.SIGINT });
  });

  test('busybox init: SIGUSR2 and SIGTERM', () => {
    const bb = leader({ busyboxInit: true, sigwait: true });
    expect(shutdownSignal('poweroff', bb)).toEqual({ signal: SIGNALS.SIGUSR2 });
    expect(shutdownSignal('reboot', bb)).toEqual({ signal: SIGNALS.SIGTERM });
  });

  test('an init waiting in sigtimedwait may take anything; one that takes nothing is refused', () => {
    expect(shutdownSignal('poweroff', leader({ sigwait: true }))).toEqual({ signal: 38 });
    const r = shutdownSignal('poweroff', leader({ comm: 'sleep', deliverable: bit(15) }));
    expect(r).toEqual({ error: 'its PID 1 (sleep, PID 7) does not handle SIGRTMIN+4, the signal machinectl uses to power off a container, so nothing would happen; nothing was sent' });
    expect(shutdownSignal('reboot', leader({ deliverable: bit(38) }))).toHaveProperty('error');
    expect(maskHas(bit(38), 38)).toBe(true);
    expect(maskHas(bit(38), 37)).toBe(false);
  });
});

describe('start and enable', () => {
  test('the launcher\'s command line is systemd-nspawn@.service\'s, and nspawn-ts accepts it', () => {
    const args = startArguments('web', '/var/lib/machines/web', ['MemoryMax=1073741824']);
    expect(args).toEqual([
      '--quiet', '--keep-unit', '--boot', '--link-journal=try-guest', '--network-veth', '-U', '--settings=override',
      '--machine=web', '--directory=/var/lib/machines/web', '--property=MemoryMax=1073741824',
    ]);
    const env = { cwd: '/', hostname: () => 'h', random64: () => 1n, findMachineImage: () => undefined, userNamespacesSupported: true };
    const cl = parseCommandLine(args, env);
    if (cl.action !== 'run') throw new Error('not a run');
    expect(cl.spec).toMatchObject({ machine: 'web', directory: '/var/lib/machines/web', mode: 'boot', quiet: true, keepUnit: true, linkJournal: 'try-guest' });
    expect(cl.spec.network.veth).toBe(true);
    expect(cl.spec.privateUsers).toEqual({ mode: 'pick' });
    expect(cl.settingsMode).toBe('override');
    expect(cl.spec.properties).toEqual([{ name: 'MemoryMax', value: '1073741824' }]);
  });

  test('the unit runs the same command line for %i', () => {
    const text = unitText('/opt/nspawn-ts/bin/nspawn-ts');
    expect(text).toContain(`\nExecStart=/opt/nspawn-ts/bin/nspawn-ts ${UNIT_OPTIONS.join(' ')} --machine=%i\n`);
    expect(text).toContain('\nWantedBy=machines.target\n');
    expect(text).toContain('\nDelegate=yes\n');
  });

  function bootSystem(systemd: boolean, dir: string): BootSystem & { reloads: number } {
    const sys = {
      systemdIsInit: () => systemd, pid1: () => 'tini', unitDir: dir, reloads: 0,
      reload: async () => { sys.reloads++; },
    };
    return sys;
  }

  test('enable/disable with systemd as PID 1: template unit, wants link, reload', async () => {
    const pool = join(root, 'machines');
    mkdirSync(join(pool, 'web'), { recursive: true });
    const images = new ImageStore({ searchPath: [pool], machinesDir: pool, settingsDirs: [] });
    const units = join(root, 'units');
    const sys = bootSystem(true, units);
    const out = await enableMachines(images, ['web'], sys, { NSPAWN_TS_LAUNCHER: '/usr/bin/nspawn-ts' });
    const link = join(units, 'machines.target.wants', 'nspawn-ts@web.service');
    expect(out).toBe(`Created ${join(units, TEMPLATE_UNIT)}.\nCreated symlink ${link} → ${join(units, TEMPLATE_UNIT)}.`);
    expect(readlinkSync(link)).toBe('../nspawn-ts@.service');
    expect(readFileSync(join(units, TEMPLATE_UNIT), 'utf8')).toContain('ExecStart=/usr/bin/nspawn-ts ');
    expect(sys.reloads).toBe(1);
    expect(await enableMachines(images, ['web'], sys, { NSPAWN_TS_LAUNCHER: '/usr/bin/nspawn-ts' })).toBe(''); // already enabled
    expect(await disableMachines(['web'], sys)).toBe(`Removed ${link}.`);
    expect(existsSync(link)).toBe(false);
    expect(await disableMachines(['web'], sys)).toBe('');
    await expect(enableMachines(images, ['nope'], sys)).rejects.toThrow(/^Machine image 'nope' does not exist/);
    await expect(enableMachines(images, ['bad_name'], sys)).rejects.toThrow('Invalid machine name: bad_name');
  });

  test('enable/disable without systemd as PID 1: a clear error, nothing written', async () => {
    const pool = join(root, 'machines');
    mkdirSync(join(pool, 'web'), { recursive: true });
    const images = new ImageStore({ searchPath: [pool], machinesDir: pool, settingsDirs: [] });
    const units = join(root, 'units');
    const sys = bootSystem(false, units);
    await expect(enableMachines(images, ['web'], sys)).rejects.toThrow(
      "Cannot enable machines here: 'enable' makes systemd start a machine at boot, but this system's PID 1 is 'tini', not systemd " +
      "(/run/systemd/system does not exist). Start the machine from your init system's boot scripts with 'machinectl-ts start NAME' instead.");
    await expect(disableMachines(['web'], sys)).rejects.toThrow(/^Cannot disable machines here/);
    expect(existsSync(units)).toBe(false);
    expect(sys.reloads).toBe(0);
  });
});
