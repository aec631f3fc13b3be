// machinectl-ts against running busybox machines (test/kernel/machinectl-fixture.ts): list, status
// and show (table and JSON), kill, poweroff, reboot, terminate, shell (plain and with a pty),
// login, set-property; and bad input for each verb.
import { describe, expect } from 'vitest';
import { PassThrough, Writable } from 'node:stream';
import { existsSync, readFileSync, readlinkSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ktest } from '../helpers/kernel.js';
import { run, waitFor } from '../helpers/exec.js';
import { busyboxRoot, startFakeMachine, tempDir, type FakeMachine } from './machinectl-fixture.js';
import { main } from '../../src/machinectl/main.js';
import { defaultOptions } from '../../src/machinectl/args.js';
import { terminate } from '../../src/machinectl/control.js';
import { loginMachine, shellMachine } from '../../src/machinectl/shell.js';
import { MachineRegistry } from '../../src/runtime/registry.js';
import { ImageStore } from '../../src/runtime/images.js';
import { detectLayout } from '../../src/runtime/cgroups.js';
import { sys } from '../../src/native.js';
import { Rtnl } from '../../src/net/rtnl.js';

const BIN = new URL('../../bin/machinectl-ts', import.meta.url).pathname;

interface World {
  dir: string;
  runDir: string;
  registry: MachineRegistry;
  images: ImageStore;
  env: NodeJS.ProcessEnv;
  machines: FakeMachine[];
  /** a running busybox machine NAME (busybox init unless argv is given) */
  machine(name: string, opts?: Omit<Parameters<typeof startFakeMachine>[0], 'name' | 'root' | 'registryDir'> & { inittab?: string }): Promise<FakeMachine>;
  /** main() in this process; output captured */
  ctl(...argv: string[]): Promise<{ code: number; stdout: string; stderr: string }>;
  /** bin/machinectl-ts in a process of its own */
  bin(argv: string[], opts?: { input?: string }): Promise<{ code: number | null; stdout: string; stderr: string }>;
}

const mtest = ktest.extend<{ world: World }>({
  // eslint-disable-next-line no-empty-pattern
  world: async ({}, use) => {
    const t = tempDir('machinectl-k-');
    const runDir = join(t.dir, 'run');
    const pool = join(t.dir, 'machines');
    const registry = new MachineRegistry({ dir: join(runDir, 'machines') });
    const images = new ImageStore({ searchPath: [pool], machinesDir: pool, settingsDirs: [join(t.dir, 'etc-nspawn')] });
    const env = {
      ...process.env, NSPAWN_TS_RUN_DIR: runDir, NSPAWN_TS_MACHINES_DIR: pool, NSPAWN_TS_PROPERTIES_DIR: join(t.dir, 'properties'),
      NSPAWN_TS_SETTINGS_DIRS: join(t.dir, 'etc-nspawn'), NSPAWN_TS_LOG_DIR: join(t.dir, 'log'), TERM: 'xterm-test',
    };
    const machines: FakeMachine[] = [];
    const world: World = {
      dir: t.dir, runDir, registry, images, env, machines,
      machine: async (name, opts = {}) => {
        const root = busyboxRoot(pool, name, opts.inittab !== undefined ? { inittab: opts.inittab } : {});
        const m = await startFakeMachine({ ...opts, name, root, registryDir: join(runDir, 'machines') });
        machines.push(m);
        return m;
      },
      ctl: async (...argv) => {
        let stdout = '';
        let stderr = '';
        const code = await main(argv, {
          io: { stdout: (s) => { stdout += s; }, stderr: (s) => { stderr += s; } },
          registry, images, timeZone: 'UTC', propertiesDir: join(t.dir, 'properties'),
        });
        return { code, stdout, stderr };
      },
      bin: async (argv, opts = {}) => {
        const r = await run(BIN, argv, { env, timeoutMs: 30_000, ...(opts.input !== undefined ? { input: opts.input } : {}) });
        return { code: r.code, stdout: r.stdout, stderr: r.stderr };
      },
    };
    try {
      await use(world);
    } finally {
      for (const m of machines) await m.stop();
      t.cleanup();
    }
  },
});

/** Adds a documentation address to the machine's loopback (as a DHCP client would add one to host0). */
async function addAddress(m: FakeMachine, cidr: string): Promise<void> {
  const fd = sys().openNamespace(`/proc/${m.leader}/ns/net`);
  const rtnl = Rtnl.open({ netnsFd: fd });
  try {
    await rtnl.addAddress('lo', cidr);
  } finally {
    rtnl.close();
    sys().close(fd);
  }
}

function childPids(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

describe('list, status, show', () => {
  mtest('list: table and JSON with OS, version and the addresses of the machine\'s namespace', async ({ world }) => {
    const web = await world.machine('web');
    await world.machine('db');
    await addAddress(web, '192.0.2.10/24');
    await addAddress(web, '2001:db8::10/64');
    const t = await world.ctl('list');
    expect(t.code).toBe(0);
    expect(t.stdout).toBe(
      'MACHINE CLASS     SERVICE   OS      VERSION ADDRESSES\n' +
      'db      container nspawn-ts busybox 1.36    -\n' +
      'web     container nspawn-ts busybox 1.36    192.0.2.10…\n' +
      '\n2 machines listed.\n');
    const j = await world.ctl('list', '-o', 'json');
    expect(JSON.parse(j.stdout)).toEqual([
      { machine: 'db', class: 'container', service: 'nspawn-ts', os: 'busybox', version: '1.36', addresses: null },
      { machine: 'web', class: 'container', service: 'nspawn-ts', os: 'busybox', version: '1.36', addresses: '192.0.2.10\n2001:db8::10' },
    ]);
    expect((await world.ctl('list', '--no-legend', '--max-addresses=all')).stdout).toBe(
      'db  container nspawn-ts busybox 1.36 -\n' +
      'web container nspawn-ts busybox 1.36 192.0.2.10\n' +
      '                                     2001:db8::10\n');
    // the same through the binary, with the registry found through NSPAWN_TS_RUN_DIR
    const b = await world.bin(['list', '--output=json-pretty']);
    expect(b.code).toBe(0);
    expect(JSON.parse(b.stdout).map((r: { machine: string }) => r.machine)).toEqual(['db', 'web']);
  });

  mtest('list: no machines; a machine whose launcher died is pruned', async ({ world }) => {
    expect((await world.ctl('list')).stdout).toBe('No machines.\n');
    expect((await world.ctl('list', '-o', 'json')).stdout).toBe('[]\n');
    const m = await world.machine('gone');
    expect((await world.ctl('list', '--no-legend')).stdout).toMatch(/^gone /);
    await m.stop();
    expect((await world.ctl('list')).stdout).toBe('No machines.\n');
  });

  mtest('status: leader, root, OS, addresses, processes', async ({ world }) => {
    const m = await world.machine('web', {
      network: { links: [{ name: 've-web', side: 'host', ifindex: 77 }], subnets: ['192.0.2.0/28'], ports: [{ protocol: 'tcp', hostPort: 8080, hostPortEnd: 8080, containerPort: 80, containerPortEnd: 80 }] },
    });
    await addAddress(m, '192.0.2.2/28');
    // init's respawned child, once it runs sleep
    const sleep = await waitFor(() => childPids(m.leader).find((p) => readFileSync(`/proc/${p}/cmdline`, 'utf8').startsWith('/bin/sleep')), 'init\'s sleep', 5000);
    const r = await world.ctl('status', 'web');
    expect(r.code).toBe(0);
    const lines = r.stdout.split('\n');
    expect(lines[0]).toBe('web');
    expect(lines[1]).toMatch(/^\t {3}Since: \w{3} \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC; (\d+(ms|s) ago|now)$/);
    expect(lines).toContain(`\t  Leader: ${m.leader} (init)`);
    expect(lines).toContain('\t Service: nspawn-ts; class container');
    expect(lines).toContain(`\t    Root: ${m.root}`);
    expect(lines).toContain('\t   Iface: ve-web');
    expect(lines).toContain('\t Address: 192.0.2.2');
    expect(lines).toContain('\t  Subnet: 192.0.2.0/28');
    expect(lines).toContain('\t   Ports: tcp 8080 → 80');
    expect(lines).toContain('\t      OS: BusyBox test root');
    expect(lines).toContain('       Processes:');
    expect(lines).toContain(`\t          └─${m.leader} init`);
    expect(lines).toContain(`\t            └─${sleep} /bin/sleep 3600`);
    // two machines: one block each, a blank line between
    await world.machine('db');
    const two = await world.ctl('status', 'web', 'db');
    expect(two.stdout).toMatch(/\n\ndb\n/);
  });

  mtest('show: properties, -p, --value, --all', async ({ world }) => {
    const m = await world.machine('web', { network: { links: [{ name: 've-web', side: 'host', ifindex: 77 }] } });
    const r = await world.ctl('show', 'web');
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('Name=web\n');
    expect(r.stdout).toContain(`Leader=${m.leader}\n`);
    expect(r.stdout).toContain('Class=container\n');
    expect(r.stdout).toContain('Service=nspawn-ts\n');
    expect(r.stdout).toContain(`RootDirectory=${m.root}\n`);
    expect(r.stdout).toContain('NetworkInterfaces=77\n');
    expect(r.stdout).toContain('State=running\n');
    expect(r.stdout).toMatch(/^TimestampMonotonic=\d+$/m);
    expect(r.stdout).not.toContain('Unit=');
    expect((await world.ctl('show', 'web', '-p', 'Leader', '--value')).stdout).toBe(`${m.leader}\n`);
    expect((await world.ctl('show', 'web', '-p', 'Name,Class')).stdout).toBe('Name=web\nClass=container\n');
    expect((await world.ctl('show', 'web', '--all')).stdout).toContain('Unit=\n');
    expect((await world.ctl('show')).stdout).toBe(`PoolPath=${world.images.machinesDir}\n`);
  });
});

describe('signals', () => {
  const trapInit = (dir: string): string[] => ['/bin/sh', '-c',
    `for s in USR1 TERM INT 38; do trap "echo $s >> /run/got; [ $s = 38 ] && exit 0" $s; done; ` +
    `echo ready > /run/got; while :; do sleep 1 & wait; done # ${dir}`];

  mtest('kill: the leader only, or every process of the machine', async ({ world }) => {
    const m = await world.machine('sig', { argv: trapInit('sig') });
    const got = `/proc/${m.leader}/root/run/got`;
    await waitFor(() => existsSync(got), 'existsSync(got)', 5000);
    expect((await world.ctl('kill', '--kill-whom=leader', '--signal=USR1', 'sig')).code).toBe(0);
    await waitFor(() => readFileSync(got, 'utf8').includes('USR1'), 'readFileSync(got, utf8).includes(USR1)', 5000);
    // SIGTERM to all: the leader's trap notes it, its `sleep` child dies of it
    await waitFor(() => childPids(m.leader).length > 0, 'childPids(m.leader).length > 0', 5000);
    const sleeper = childPids(m.leader)[0] as number;
    expect((await world.ctl('kill', 'sig')).code).toBe(0);
    await waitFor(() => readFileSync(got, 'utf8').includes('TERM'), 'readFileSync(got, utf8).includes(TERM)', 5000);
    await waitFor(() => !existsSync(`/proc/${sleeper}`) || readFileSync(`/proc/${sleeper}/stat`, 'utf8').includes(') Z'), '!existsSync(`/proc/${sleeper}`) || readFileSync(`/proc', 5000);
    expect(readlinkSync(`/proc/${m.leader}/ns/pid`)).toBeTruthy();
  });

  mtest('poweroff: SIGRTMIN+4 to a PID 1 that handles it', async ({ world }) => {
    const m = await world.machine('sig', { argv: trapInit('sig') });
    await waitFor(() => existsSync(`/proc/${m.leader}/root/run/got`), 'existsSync(`/proc/${m.leader}/root/run/got`)', 5000);
    expect((await world.ctl('poweroff', 'sig')).code).toBe(0);
    await m.exited;
    expect(m.log()).toContain('container ended {"code":0,"signal":null}');
    expect((await world.ctl('list')).stdout).toBe('No machines.\n');
  });

  mtest('poweroff and reboot of busybox init: SIGUSR2 and SIGTERM, which it acts on', async ({ world }) => {
    const off = await world.machine('off');
    expect((await world.ctl('stop', 'off')).code).toBe(0);
    await off.exited;
    // busybox init powers off with reboot(2): in a PID namespace its end is SIGINT
    expect(off.log()).toContain('container ended {"code":null,"signal":2}');
    const rb = await world.machine('rb');
    expect((await world.ctl('reboot', 'rb')).code).toBe(0);
    await rb.exited;
    // a reboot ends a PID namespace's init with SIGHUP (the launcher would start it again)
    expect(rb.log()).toContain('container ended {"code":null,"signal":1}');
  });

  mtest('poweroff and reboot of a PID 1 that would ignore them: refused, nothing sent', async ({ world }) => {
    const m = await world.machine('deaf', { argv: ['/bin/sleep', '3600'] });
    const r = await world.ctl('poweroff', 'deaf');
    expect(r.code).toBe(1);
    expect(r.stderr).toBe(`machinectl-ts: Cannot power off machine 'deaf': its PID 1 (sleep, PID ${m.leader}) does not handle SIGRTMIN+4, ` +
      "the signal machinectl uses to power off a container, so nothing would happen; nothing was sent. Use 'machinectl-ts terminate deaf' " +
      "to stop it, or 'machinectl-ts kill deaf --signal=…'.\n");
    expect((await world.ctl('reboot', 'deaf')).stderr).toMatch(/does not handle SIGINT/);
    expect(existsSync(`/proc/${m.leader}`)).toBe(true);
  });

  mtest('terminate: SIGKILL to the leader, SIGTERM to the launcher, which ends and cleans up', async ({ world }) => {
    const m = await world.machine('t1');
    const r = await world.ctl('terminate', 't1');
    expect(r).toEqual({ code: 0, stdout: '', stderr: '' });
    expect(await m.exited, m.log()).toEqual({ code: 0, signal: null });
    expect(world.registry.get('t1')).toBeUndefined();
  });

  mtest('terminate kills the machine at once, also under a launcher that ignores SIGTERM (which then ends with its container)', async ({ world }) => {
    const m = await world.machine('stubborn', { onTerm: 'ignore' });
    const rec = world.registry.get('stubborn');
    expect(rec).toBeDefined();
    const res = await terminate(rec!, { timeoutMs: 300 });
    expect(res).toEqual({ graceful: true, killed: false });
    await m.exited;
    expect(m.log()).toContain('"signal":9');
  });
});

describe('terminate of a launcher stuck in its clean-up', () => {
  mtest('SIGKILL after the timeout, and the message says what it was doing', async ({ world }) => {
    const m = await world.machine('stuck', { onTerm: 'hang' });
    const rec = world.registry.get('stuck');
    expect(rec).toBeDefined();
    const t0 = Date.now();
    const res = await terminate(rec!, { timeoutMs: 300 });
    expect(res).toMatchObject({ graceful: false, killed: true, stuck: expect.stringMatching(/^state [SR]/) });
    expect(Date.now() - t0).toBeLessThan(5_000);
    expect(await m.exited).toMatchObject({ signal: 'SIGKILL' });
  });
});

describe('bad input for every machine verb', () => {
  mtest('invalid names and unknown machines: exit 1, a clear message, nothing done', async ({ world }) => {
    await world.machine('here', { argv: ['/bin/sleep', '3600'] });
    for (const verb of ['status', 'show', 'poweroff', 'reboot', 'terminate', 'kill', 'login']) {
      const bad = await world.ctl(verb, 'no_such');
      expect(bad.code, verb).toBe(1);
      expect(bad.stderr, verb).toMatch(/^machinectl-ts: Invalid machine name: no_such\nmachinectl-ts: "_" is not allowed/);
      const unknown = await world.ctl(verb, 'nosuch');
      expect(unknown, verb).toEqual({ code: 1, stdout: '', stderr: "machinectl-ts: No machine 'nosuch' known\n" });
    }
    // the first failure stops a list of machines, as in machinectl
    expect((await world.ctl('status', 'nosuch', 'here')).stdout).toBe('');
    expect((await world.bin(['shell', 'nosuch', '/bin/true'])).stderr).toBe("machinectl-ts: No machine 'nosuch' known\n");
    expect((await world.bin(['shell', '-bad-'])).stderr).toMatch(/^machinectl-ts: Unknown option '-b'/);
    expect((await world.bin(['shell', 'a..b'])).stderr).toMatch(/^machinectl-ts: Invalid machine name: a\.\.b/);
    expect(world.registry.get('here')).toBeDefined();
  });
});

describe('shell', () => {
  mtest('runs in every namespace and cgroup of the machine, as root, with its home and environment', async ({ world }) => {
    const m = await world.machine('sh1');
    const r = await world.bin(['shell', '-E', 'EXTRA=1', 'sh1', '/bin/sh', '-c',
      'id; pwd; echo "$HOME|$USER|$LOGNAME|$SHELL|$TERM|$EXTRA|$PATH"; hostname; cat /proc/1/comm; ' +
      'for n in mnt pid uts ipc net cgroup; do readlink /proc/self/ns/$n; done; grep CapBnd /proc/self/status; tty || true']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const lines = r.stdout.trim().split('\n');
    expect(lines[0]).toBe('uid=0(root) gid=0(root) groups=0(root)');
    expect(lines[1]).toBe('/root');
    expect(lines[2]).toBe('/root|root|root|/bin/sh|xterm-test|1|/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin');
    expect(lines[3]).toBe('sh1');
    expect(lines[4]).toBe('init');
    const ns = ['mnt', 'pid', 'uts', 'ipc', 'net', 'cgroup'].map((n) => readlinkSync(`/proc/${m.leader}/ns/${n}`));
    expect(lines.slice(5, 11)).toEqual(ns);
    const capBnd = /^CapBnd:\s*(\S+)$/m.exec(readFileSync(`/proc/${m.leader}/status`, 'utf8'))?.[1];
    expect(lines[11]).toBe(`CapBnd:\t${capBnd}`);
    expect(lines[12]).toBe('not a tty');
  });

  mtest('a machine with a user namespace: joined first, IDs are the container\'s', async ({ world }) => {
    const base = 0x10000 * 40;
    const m = await world.machine('userns', { userns: base });
    const r = await world.bin(['shell', 'userns', '/bin/sh', '-c', 'id -u; cat /proc/self/uid_map; readlink /proc/self/ns/user; grep CapEff /proc/self/status; touch /run/mine && stat -c %u /run/mine']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const lines = r.stdout.trim().split('\n');
    expect(lines[0]).toBe('0');
    expect(lines[1]?.trim().split(/\s+/)).toEqual(['0', String(base), '65536']);
    expect(lines[2]).toBe(readlinkSync(`/proc/${m.leader}/ns/user`));
    expect(lines[2]).not.toBe(readlinkSync('/proc/self/ns/user'));
    const capEff = /^CapEff:\s*(\S+)$/m.exec(readFileSync(`/proc/${m.leader}/status`, 'utf8'))?.[1];
    expect(lines[3]).toBe(`CapEff:\t${capEff}`);
    expect(lines[4]).toBe('0');
    // the host sees the file owned by the shifted root
    expect(statSync(`/proc/${m.leader}/root/run/mine`).uid).toBe(base);
    expect((await world.bin(['shell', 'bob@userns', '/bin/id', '-u'])).stdout).toBe('1000\n');
    expect((await world.ctl('status', 'userns')).stdout).toContain(`       UID Shift: ${base}\n`);
  });

  mtest('as another user: IDs, groups, home; --uid and USER@ forms', async ({ world }) => {
    await world.machine('sh2');
    const r = await world.bin(['shell', 'bob@sh2', '/bin/sh', '-c', 'id; pwd; echo $HOME $USER; grep -E "^Cap(Eff|Prm)" /proc/self/status']);
    expect(r.code).toBe(0);
    expect(r.stdout).toBe('uid=1000(bob) gid=1000(bob) groups=10(wheel),1000(bob)\n/home/bob\n/home/bob bob\nCapPrm:\t0000000000000000\nCapEff:\t0000000000000000\n');
    expect((await world.bin(['shell', '--uid=1000', 'sh2', '/bin/id', '-u'])).stdout).toBe('1000\n');
    expect((await world.bin(['shell', '--uid=bob', 'root@sh2', '/bin/id', '-u'])).stdout).toBe('0\n');
    const bad = await world.bin(['shell', 'alice@sh2', '/bin/true']);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toBe("machinectl-ts: User 'alice' does not exist in machine 'sh2' (looked in its /etc/passwd)\n");
  });

  mtest('exit status, standard input, PATH lookup, missing commands', async ({ world }) => {
    await world.machine('sh3');
    expect((await world.bin(['shell', 'sh3', '/bin/sh', '-c', 'exit 7'])).code).toBe(7);
    expect((await world.bin(['shell', 'sh3', '/bin/sh', '-c', 'kill -TERM $$'])).code).toBe(128 + 15);
    expect((await world.bin(['shell', 'sh3', '/bin/cat'], { input: 'through stdin\n' })).stdout).toBe('through stdin\n');
    expect((await world.bin(['shell', 'sh3', 'hostname'])).stdout).toBe('sh3\n');
    const missing = await world.bin(['shell', 'sh3', '/usr/bin/nosuch']);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toBe("machinectl-ts: Failed to execute /usr/bin/nosuch in machine 'sh3': ENOENT (not found; tried /usr/bin/nosuch)\n");
  });

  mtest('a failure inside the machine leaves no process behind; the host itself is machine .host', async ({ world }) => {
    await world.machine('sh4');
    // in this process: the inner child that failed to exec is reaped (the leak check would see it)
    await expect(shellMachine(world.registry, ['sh4', '/nonexistent'], defaultOptions(), { forcePty: false })).rejects.toThrow(/^Failed to execute \/nonexistent in machine 'sh4': ENOENT/);
    const host = await world.bin(['shell', '.host', '/bin/sh', '-c', 'readlink /proc/self/ns/mnt; readlink /proc/self/ns/pid']);
    expect(host.code).toBe(0);
    expect(host.stdout).toBe(`${readlinkSync('/proc/self/ns/mnt')}\n${readlinkSync('/proc/self/ns/pid')}\n`);
    expect((await world.bin(['shell', '', '/bin/true'])).code).toBe(0);
  });

  mtest('with a pty of the machine\'s own devpts; Ctrl-] three times ends the session', async ({ world }) => {
    const m = await world.machine('tty1');
    const input = new PassThrough();
    let out = '';
    const output = new Writable({ write(chunk, _enc, cb) { out += chunk.toString(); cb(); } });
    let err = '';
    const running = shellMachine(world.registry, ['tty1'], defaultOptions(), {
      input, output, forcePty: true, stderr: (s) => { err += s; }, env: { TERM: 'vt100' },
    });
    input.write('tty; echo "T=$TERM"; echo "P=$0"\n');
    await waitFor(() => /P=-?\/bin\/sh/.test(out), 'the output of the commands', 10_000);
    expect(out).toContain('/dev/pts/0');
    expect(out).toContain('T=vt100');
    expect(out).toMatch(/P=-?\/bin\/sh/);
    // the pty belongs to the machine's devpts, not the host's
    expect(existsSync(`/proc/${m.leader}/root/dev/pts/0`)).toBe(true);
    input.write('\x1d\x1d\x1d');
    expect(await running).toBe(128 + 1); // the session was hung up
    expect(err).toBe('Connected to machine tty1. Press ^] three times within 1s to exit session.\nConnection to machine tty1 terminated.\n');
  });

  mtest('with a pty: the shell\'s exit ends the session with its status', async ({ world }) => {
    await world.machine('tty2');
    const input = new PassThrough();
    let out = '';
    const output = new Writable({ write(chunk, _enc, cb) { out += chunk.toString(); cb(); } });
    const running = shellMachine(world.registry, ['bob@tty2'], { ...defaultOptions(), quiet: true }, { input, output, forcePty: true, stderr: () => {} });
    input.write('stat -c %U $(tty); exit 3\n');
    expect(await running).toBe(3);
    expect(out).toContain('bob');
  });
});

describe('login', () => {
  mtest('the machine\'s getty and login on a pty of its own', async ({ world }) => {
    await world.machine('lg');
    const input = new PassThrough();
    let out = '';
    const output = new Writable({ write(chunk, _enc, cb) { out += chunk.toString(); cb(); } });
    const running = loginMachine(world.registry, 'lg', { ...defaultOptions(), quiet: true }, { input, output, stderr: () => {}, env: { TERM: 'vt100' } });
    await waitFor(() => /login: $/.test(out), '/login: $/.test(out)', 10_000);
    input.write('root\n');
    // ash's prompt, perhaps followed by its cursor-position query
    // eslint-disable-next-line no-control-regex -- the terminal's cursor-position query (ESC [6n) the shell may print
    await waitFor(() => /# (\x1b\[6n)?$/.test(out), 'the shell prompt', 10_000);
    input.write('echo LOGGED-IN-$((6*7)) $(id -u)\n');
    await waitFor(() => out.includes('LOGGED-IN-42 0'), 'out.includes(LOGGED-IN-42 0)', 10_000);
    input.write('exit\n');
    expect(await running).toBe(0);
  });

  mtest('a machine without a getty: a clear error', async ({ world }) => {
    const m = await world.machine('nogetty', { argv: ['/bin/sleep', '3600'] });
    unlinkSync(join(m.root, 'sbin/getty'));
    const r = await world.ctl('login', 'nogetty');
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^machinectl-ts: machine 'nogetty' has no getty \(looked for \/sbin\/agetty, .* inside it\), so there is nothing to log in with; use 'machinectl-ts shell nogetty' instead\n$/);
  });
});

describe('set-property', () => {
  const layout = detectLayout();
  const memoryLimit = (leader: number): string | undefined => {
    const h = layout.controllers.memory;
    if (!h) return undefined;
    const line = readFileSync(`/proc/${leader}/cgroup`, 'utf8').split('\n').find((l) => (h.version === 2 ? l.startsWith('0::') : l.split(':')[1]?.split(',').includes('memory')));
    const path = line?.split(':').slice(2).join(':');
    const root = h.mountRoot === '/' ? '' : h.mountRoot;
    return readFileSync(join(h.mountPoint, (path ?? '').slice(root.length), h.version === 2 ? 'memory.max' : 'memory.limit_in_bytes'), 'utf8').trim();
  };

  mtest('--runtime changes the running machine; without it the value is stored too', async ({ world }) => {
    const m = await world.machine('res', { cgroup: 'record' });
    const r = await world.ctl('set-property', '--runtime', 'res', 'MemoryMax=64M', 'TasksMax=50');
    expect(r).toEqual({ code: 0, stdout: '', stderr: '' });
    expect(memoryLimit(m.leader)).toBe(String(64 * 1024 * 1024));
    expect(world.registry.get('res')?.cgroup?.properties).toEqual(['MemoryMax=67108864', 'TasksMax=50']);
    expect(existsSync(join(world.dir, 'properties', 'res.properties'))).toBe(false);
    const st = await world.ctl('status', 'res');
    expect(st.stdout).toMatch(/\t {2}Memory: [0-9.]+[BKM] \(max: 64\.0M/);
    expect(st.stdout).toMatch(/\t {3}Tasks: \d+ \(limit: 50\)/);
    expect((await world.ctl('show', 'res', '-p', 'MemoryMax', '--value')).stdout).toBe('67108864\n');
    // persistent: applied now and stored for the next start
    expect((await world.ctl('set-property', 'res', 'MemoryMax=96M')).code).toBe(0);
    expect(memoryLimit(m.leader)).toBe(String(96 * 1024 * 1024));
    expect(readFileSync(join(world.dir, 'properties', 'res.properties'), 'utf8')).toContain('\nMemoryMax=100663296\n');
  });

  mtest('the cgroup found from the leader when the record has none', async ({ world }) => {
    const m = await world.machine('res2', { cgroup: 'derive' });
    expect(world.registry.get('res2')?.cgroup).toBeUndefined();
    expect((await world.ctl('set-property', '--runtime', 'res2', 'MemoryMax=48M')).code).toBe(0);
    expect(memoryLimit(m.leader)).toBe(String(48 * 1024 * 1024));
  });

  mtest('a stopped machine: stored only; bad input changes nothing', async ({ world }) => {
    const m = await world.machine('res3', { cgroup: 'record' });
    const bad = await world.ctl('set-property', 'res3', 'MemoryMax=lots');
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/^machinectl-ts: set-property: .*MemoryMax/);
    expect((await world.ctl('set-property', 'res3', 'Frobs=1')).stderr).toMatch(/Frobs/);
    expect((await world.ctl('set-property', 'res3', 'nonsense')).stderr).toMatch(/not of the form NAME=VALUE/);
    expect(world.registry.get('res3')?.cgroup?.properties).toEqual([]);
    expect(existsSync(join(world.dir, 'properties', 'res3.properties'))).toBe(false);
    await m.stop();
    const stored = await world.ctl('set-property', 'res3', 'CPUQuota=50%');
    expect(stored.code).toBe(0);
    expect(stored.stderr).toBe("Machine 'res3' is not running; the properties apply from its next start.\n");
    expect(readFileSync(join(world.dir, 'properties', 'res3.properties'), 'utf8')).toContain('CPUQuota=50%');
    expect((await world.ctl('set-property', '--runtime', 'res3', 'CPUQuota=50%')).stderr).toBe("machinectl-ts: No machine 'res3' known (--runtime changes a running machine only)\n");
    expect((await world.ctl('set-property', 'ghost', 'CPUQuota=50%')).stderr).toMatch(/^machinectl-ts: No machine or image 'ghost' known/);
    expect((await world.ctl('set-property', 'bad_name', 'CPUQuota=50%')).stderr).toMatch(/^machinectl-ts: Invalid machine name: bad_name/);
  });

  mtest('a machine without a cgroup of its own: a clear error', async ({ world }) => {
    await world.machine('nocg', { argv: ['/bin/sleep', '3600'] });
    const r = await world.ctl('set-property', '--runtime', 'nocg', 'MemoryMax=1G');
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/runs without a cgroup of its own/);
    writeFileSync(join(world.dir, 'unused'), '');
  });
});
