// machinectl-ts against containers of the real launcher (bin/nspawn-ts -b on the busybox test root,
// with busybox init as PID 1): the records it writes, the cgroups it makes, how it stops.
import { beforeAll, describe, expect } from 'vitest';
import { readFileSync, readlinkSync } from 'node:fs';
import { join } from 'node:path';
import { ktest } from '../helpers/kernel.js';
import { run, waitFor } from '../helpers/exec.js';
import { copyRoot, busyboxRoot } from '../helpers/rootfs.js';
import { exited, leftoverCgroups, machineLeader, machineRecords, removeMachineCgroups, startNspawn, sweepKilledLaunchers } from '../helpers/nspawn.js';
import { main } from '../../src/machinectl/main.js';
import { detectLayout, cgroupFsPath, parseProcCgroup } from '../../src/runtime/cgroups.js';
import { sys } from '../../src/native.js';
import { Rtnl } from '../../src/net/rtnl.js';

const BIN = new URL('../../bin/machinectl-ts', import.meta.url).pathname;
let base: string;
beforeAll(async () => {
  base = await busyboxRoot();
}, 120_000);

let counter = 0;

interface Booted {
  name: string;
  root: string;
  child: ReturnType<typeof startNspawn>;
  leader: number;
  done: () => Promise<void>;
}

/** nspawn-ts -b on a private copy of the busybox root, until its leader is registered. */
const btest = ktest.extend<{ boot: (extra?: string[]) => Promise<Booted> }>({
  // eslint-disable-next-line no-empty-pattern
  boot: async ({}, use) => {
    const started: Booted[] = [];
    const copies: Array<{ remove: () => void }> = [];
    await use(async (extra = []) => {
      const copy = await copyRoot(base);
      copies.push(copy);
      const name = `mc${process.pid}-${++counter}`;
      const child = startNspawn(['-q', '-b', '-D', copy.dir, '-M', name, '--private-network', ...extra]);
      const leader = await waitFor(() => machineLeader(name), `machine ${name} to register its leader (output: ${child.output()})`, 20_000);
      // busybox init is up once rcS has run
      await waitFor(() => { try { return readFileSync(`/proc/${leader}/root/run/booted`) !== undefined; } catch { return false; } }, 'rcS to run', 10_000);
      const b: Booted = {
        name, root: copy.dir, child, leader,
        done: async () => {
          if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
          await exited(child);
          await removeMachineCgroups(name);
          await sweepKilledLaunchers();
        },
      };
      started.push(b);
      return b;
    });
    for (const b of started) await b.done();
    for (const c of copies) c.remove();
  },
});

async function ctl(...argv: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const code = await main(argv, { io: { stdout: (s) => { stdout += s; }, stderr: (s) => { stderr += s; } }, timeZone: 'UTC' });
  return { code, stdout, stderr };
}

describe('machines of nspawn-ts', () => {
  btest('list, status and show what the launcher recorded and made', async ({ boot }) => {
    const m = await boot();
    const fd = sys().openNamespace(`/proc/${m.leader}/ns/net`);
    const rtnl = Rtnl.open({ netnsFd: fd });
    try {
      await rtnl.addAddress('lo', '198.51.100.7/24');
    } finally {
      rtnl.close();
      sys().close(fd);
    }
    const list = await ctl('list', '--no-legend');
    const row = list.stdout.split('\n').find((l) => l.startsWith(`${m.name} `));
    expect(row?.split(/ +/)).toEqual([m.name, 'container', 'nspawn-ts', 'busybox', '-', '198.51.100.7']);
    const json = JSON.parse((await ctl('list', '-o', 'json')).stdout) as Array<Record<string, unknown>>;
    expect(json.find((r) => r.machine === m.name)).toEqual({ machine: m.name, class: 'container', service: 'nspawn-ts', os: 'busybox', version: null, addresses: '198.51.100.7' });

    const st = await ctl('status', m.name);
    const lines = st.stdout.split('\n');
    expect(lines).toContain(`\t  Leader: ${m.leader} (init)`);
    expect(lines).toContain(`\t    Root: ${m.root}`);
    expect(lines).toContain('\t Address: 198.51.100.7');
    expect(lines).toContain('\t      OS: BusyBox (nspawn-ts tests)');
    expect(lines).toContain(`\tLauncher: ${m.child.pid} (nspawn-ts)`);
    expect(lines.some((l) => /^\t {2}Memory: [0-9.]+[BKMG]/.test(l))).toBe(true);
    expect(lines).toContain(`\t          └─${m.leader} init`);
    expect((await ctl('show', m.name, '-p', 'Leader', '--value')).stdout).toBe(`${m.leader}\n`);
  });

  btest('shell enters every namespace of the container', async ({ boot }) => {
    const m = await boot();
    const r = await run(BIN, ['shell', m.name, '/bin/sh', '-c', 'hostname; for n in mnt pid uts ipc net cgroup; do readlink /proc/self/ns/$n; done; exit 5']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(5);
    expect(r.stdout.trim().split('\n')).toEqual([m.name, ...['mnt', 'pid', 'uts', 'ipc', 'net', 'cgroup'].map((n) => readlinkSync(`/proc/${m.leader}/ns/${n}`))]);
  });

  btest('set-property --runtime changes the limits of the cgroup the launcher made', async ({ boot }) => {
    const m = await boot();
    expect(await ctl('set-property', '--runtime', m.name, 'MemoryMax=64M', 'TasksMax=40')).toEqual({ code: 0, stdout: '', stderr: '' });
    const layout = detectLayout();
    const own = parseProcCgroup(readFileSync(`/proc/${m.leader}/cgroup`, 'utf8'));
    const pids = layout.controllers.pids;
    expect(pids).toBeDefined();
    const entry = pids!.version === 2 ? own.find((e) => e.id === 0) : own.find((e) => e.controllers.includes('pids'));
    const path = entry!.path.slice(0, entry!.path.indexOf(`/machine-${m.name}`) + `/machine-${m.name}`.length);
    expect(readFileSync(join(cgroupFsPath(pids!, path)!, 'pids.max'), 'utf8').trim()).toBe('40');
    expect((await ctl('status', m.name)).stdout).toMatch(/\t {3}Tasks: \d+ \(limit: 40\)\n/);
  });

  btest('poweroff: busybox init shuts down, the launcher ends and cleans up', async ({ boot }) => {
    const m = await boot();
    expect(await ctl('poweroff', m.name)).toEqual({ code: 0, stdout: '', stderr: '' });
    expect(await exited(m.child)).toEqual({ code: 0, signal: null });
    expect(machineRecords()).not.toContain(m.name);
    expect(leftoverCgroups().filter((d) => d.endsWith(`machine-${m.name}`))).toEqual([]);
  });

  btest('reboot: the launcher starts the container again, with a new leader', async ({ boot }) => {
    const m = await boot();
    expect((await ctl('reboot', m.name)).code).toBe(0);
    const again = await waitFor(() => { const l = machineLeader(m.name); return l !== undefined && l !== m.leader ? l : undefined; }, 'the rebooted leader', 20_000);
    expect(again).not.toBe(m.leader);
    expect((await ctl('terminate', m.name)).code).toBe(0);
    expect((await exited(m.child)).code).not.toBeNull();
    expect(machineRecords()).not.toContain(m.name);
  });

  btest('terminate and kill', async ({ boot }) => {
    const m = await boot();
    // SIGKILL to every process: PID 1 of the container dies, and with it the machine
    expect((await ctl('kill', '--signal=KILL', m.name)).code).toBe(0);
    await exited(m.child);
    expect(machineRecords()).not.toContain(m.name);
    const n = await boot();
    expect(await ctl('terminate', n.name)).toEqual({ code: 0, stdout: '', stderr: '' });
    await exited(n.child);
    expect(machineRecords()).not.toContain(n.name);
    expect(leftoverCgroups().filter((d) => d.endsWith(`machine-${n.name}`))).toEqual([]);
  });
});
