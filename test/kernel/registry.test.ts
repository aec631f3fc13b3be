// The machine registry with real processes: real /proc start times and namespaces, the real
// flock(2), and launchers in separate processes racing for one name.
import { describe, expect } from 'vitest';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readlinkSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ktest } from '../helpers/kernel.js';
import { killAndWait, start, waitFor } from '../helpers/exec.js';
import { MachineRegistry, ProcFs, summarizeSpec, type NewMachine } from '../../src/runtime/registry.js';
import { defaultNetworkSpec } from '../../src/runtime/spec.js';

// child processes run the compiled modules (scripts/build.sh keeps dist/ current before the tests)
const registryModule = new URL('../../dist/runtime/registry.js', import.meta.url).href;
const nativeModule = new URL('../../dist/native.js', import.meta.url).href;

function machine(name: string, leader?: number): NewMachine {
  const m: NewMachine = {
    name, rootDirectory: `/srv/${name}`,
    spec: summarizeSpec({
      directory: `/srv/${name}`, machine: name, mode: 'command', command: ['sleep', '30'], environment: [], binds: [], tmpfs: [],
      ephemeral: false, privateUsers: { mode: 'no' }, privateUsersChown: false, network: defaultNetworkSpec(), resolvConf: 'auto',
      quiet: false, register: true, keepUnit: false, linkJournal: 'auto', notifyReady: false, properties: [],
    }),
  };
  if (leader !== undefined) m.leader = leader;
  return m;
}

function withDir<T>(fn: (dir: string) => Promise<T>): Promise<T> {
  const root = mkdtempSync(join(tmpdir(), 'nspawn-registry-k-'));
  return fn(join(root, 'machines')).finally(() => rmSync(root, { recursive: true, force: true }));
}

/** A launcher in its own process: registers NAME once `go` exists, prints the outcome, then waits for stdin to close. */
function launcher(dir: string, name: string): { child: ChildProcess; outcome: Promise<string> } {
  const script = `
    import { MachineRegistry } from ${JSON.stringify(registryModule)};
    const reg = new MachineRegistry({ dir: ${JSON.stringify(dir)} });
    process.stdin.once('data', async () => {
      let out;
      try { await reg.register({ name: ${JSON.stringify(name)}, rootDirectory: '/srv/x', spec: {} }); out = 'won'; }
      catch (e) { out = 'lost:' + e.code; }
      process.stdout.write(out + '\\n');
    });
    process.stdin.on('end', () => process.exit(0));
  `;
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['pipe', 'pipe', 'pipe'] });
  const outcome = new Promise<string>((resolve, reject) => {
    let buf = '';
    let err = '';
    child.stdout?.on('data', (d: Buffer) => {
      buf += d.toString();
      if (buf.includes('\n')) resolve(buf.trim());
    });
    child.stderr?.on('data', (d: Buffer) => { err += d.toString(); });
    child.on('exit', (code) => reject(new Error(`launcher exited (${code}) before answering: ${err}`)));
  });
  return { child, outcome };
}

describe('machine registry with real processes', () => {
  ktest('records the leader with its start time and namespaces; a killed machine is pruned', async () => {
    await withDir(async (dir) => {
      const leader = start('sleep', ['30']);
      const fakeLauncher = start('sleep', ['30']);
      try {
        const proc = new ProcFs();
        const launcherRef = proc.process(fakeLauncher.pid as number);
        expect(launcherRef).toBeDefined();
        const reg = new MachineRegistry({ dir, self: launcherRef });
        const r = await reg.register(machine('web', leader.pid as number));
        expect(r.leader?.pid).toBe(leader.pid);
        expect(r.leader?.startTime).toMatch(/^[0-9]+$/);
        expect(r.namespaces.net).toEqual({ path: `/proc/${leader.pid}/ns/net`, id: readlinkSync(`/proc/${leader.pid}/ns/net`) });
        expect(r.namespaces.mnt?.id).toMatch(/^mnt:\[[0-9]+\]$/);
        expect(reg.list().map((m) => m.name)).toEqual(['web']);

        await killAndWait(leader);
        expect(reg.list().map((m) => m.name)).toEqual(['web']); // its launcher still runs
        await killAndWait(fakeLauncher);
        expect(reg.list()).toEqual([]);
        expect((await new MachineRegistry({ dir }).register(machine('web'))).launcher.pid).toBe(process.pid);
      } finally {
        await killAndWait(leader);
        await killAndWait(fakeLauncher);
      }
    });
  });

  ktest('a reused PID does not keep a record alive', async () => {
    await withDir(async (dir) => {
      const p = start('sleep', ['30']);
      try {
        const real = new ProcFs().process(p.pid as number);
        expect(real).toBeDefined();
        // a record whose launcher has the PID of a running process but another start time
        const reg = new MachineRegistry({ dir, self: { pid: p.pid as number, startTime: String(Number(real?.startTime) - 1) } });
        await reg.register(machine('ghost'));
        expect(reg.list()).toEqual([]);
      } finally {
        await killAndWait(p);
      }
    });
  });

  ktest('launchers racing for one name: exactly one wins', async () => {
    await withDir(async (dir) => {
      const n = 6;
      const launchers = Array.from({ length: n }, () => launcher(dir, 'race'));
      try {
        // let every child load, then release them all at once
        await new Promise((r) => setTimeout(r, 300));
        for (const l of launchers) l.child.stdin?.write('go\n');
        const outcomes = await Promise.all(launchers.map((l) => l.outcome));
        expect(outcomes.filter((o) => o === 'won')).toHaveLength(1);
        expect(outcomes.filter((o) => o === 'lost:REG_EXISTS')).toHaveLength(n - 1);
        const winner = launchers[outcomes.indexOf('won')]?.child.pid;
        expect(new MachineRegistry({ dir }).get('race')?.launcher.pid).toBe(winner);
      } finally {
        for (const l of launchers) {
          l.outcome.catch(() => {});
          l.child.stdin?.end();
        }
        await waitFor(() => launchers.every((l) => l.child.exitCode !== null || l.child.signalCode !== null), 'launchers to exit');
      }
    });
  });

  ktest('the lock is released when its holder dies', async () => {
    await withDir(async (dir) => {
      const reg = new MachineRegistry({ dir, lockTimeoutMs: 2000 });
      await reg.register(machine('first')); // creates the directory and the lock file
      // another process takes the registry lock and never lets go
      const script = `
        import { openSync } from 'node:fs';
        import { sys } from ${JSON.stringify(nativeModule)};
        const fd = openSync(${JSON.stringify(join(dir, '.lock'))}, 'a');
        sys().flock(fd, 2);
        process.stdout.write('locked\\n');
        setInterval(() => {}, 1000);
      `;
      const holder = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
      try {
        await new Promise<void>((resolve, reject) => {
          holder.stdout?.once('data', () => resolve());
          holder.once('exit', (code) => reject(new Error(`lock holder exited (${code})`)));
        });
        // waiting for it never stops this process's event loop (a launcher serving DHCP in-process)
        let ticks = 0;
        const timer = setInterval(() => { ticks++; }, 10);
        try {
          const probe = new MachineRegistry({ dir, lockTimeoutMs: 500 });
          await expect(probe.register(machine('probe'))).rejects.toThrow(/stayed locked by another process for 500 ms/);
          expect(ticks).toBeGreaterThan(10);
          const waiting = reg.register(machine('second'));
          await killAndWait(holder);
          expect((await waiting).name).toBe('second');
        } finally {
          clearInterval(timer);
        }
      } finally {
        await killAndWait(holder);
      }
    });
  });
});
