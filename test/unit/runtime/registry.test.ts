// Registry logic against a fake /proc in a temp dir (processes are files we write); the lock is
// the real flock (a second open file description of this process stands for another holder). Real processes, real /proc and the real flock are in test/kernel/registry.test.ts.
import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  MachineRegistry, ProcFs, RegistryError, defaultRunDir, summarizeSpec, type MachineRecord, type NewMachine,
} from '../../../src/runtime/registry.js';
import { parseProcStat } from '../../../src/common/proc.js';
import { tryLock } from '../../../src/common/lock.js';
import { defaultNetworkSpec, type LaunchSpec } from '../../../src/runtime/spec.js';

let root: string;
let proc: string;
let dir: string;

function stat(pid: number, startTime: number, state = 'S', comm = 'sleep'): string {
  // pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime cutime cstime
  // priority nice threads itrealvalue starttime ...
  return `${pid} (${comm}) ${state} 1 ${pid} ${pid} 0 -1 4194560 100 0 0 0 0 0 0 0 20 0 1 0 ${startTime} 5000 100 18446744073709551615 0 0 0\n`;
}
function fakeProcess(pid: number, startTime: number, state = 'S'): void {
  mkdirSync(join(proc, String(pid), 'ns'), { recursive: true });
  writeFileSync(join(proc, String(pid), 'stat'), stat(pid, startTime, state));
  for (const [kind, id] of [['net', 4026532001], ['mnt', 4026532002], ['pid', 4026532003], ['uts', 4026532004]] as const) {
    const p = join(proc, String(pid), 'ns', kind);
    if (!existsSync(p)) symlinkSync(`${kind}:[${id + pid}]`, p);
  }
}
function endProcess(pid: number): void {
  rmSync(join(proc, String(pid)), { recursive: true, force: true });
}

const spec = (): LaunchSpec => ({
  directory: '/srv/web', machine: 'web', mode: 'boot', command: [], environment: ['SECRET=x'], binds: [], tmpfs: [],
  ephemeral: false, privateUsers: { mode: 'pick' }, privateUsersChown: false, network: { ...defaultNetworkSpec(), private: true, veth: true },
  resolvConf: 'auto', quiet: false, register: true, keepUnit: false, linkJournal: 'auto', notifyReady: false, properties: [], killSignal: 'SIGRTMIN+3',
});
const machine = (name: string, leader?: number): NewMachine => {
  const m: NewMachine = { name, rootDirectory: `/srv/${name}`, spec: summarizeSpec({ ...spec(), machine: name }) };
  if (leader !== undefined) m.leader = leader;
  return m;
};
function registry(selfPid = 100, selfStart = 5000): MachineRegistry {
  return new MachineRegistry({ dir, proc: new ProcFs(proc), self: { pid: selfPid, startTime: String(selfStart) } });
}

beforeEach(() => {
  root = mkdtempSync(join(tmpdir(), 'nspawn-registry-'));
  proc = join(root, 'proc');
  dir = join(root, 'run', 'machines');
  fakeProcess(100, 5000); // the launcher of most tests
});
afterEach(() => rmSync(root, { recursive: true, force: true }));

describe('/proc/PID/stat', () => {
  test('state and start time, also when comm holds spaces and parentheses', () => {
    expect(parseProcStat(stat(42, 123456))).toEqual({ state: 'S', startTime: '123456' });
    expect(parseProcStat(stat(42, 7, 'Z', 'a) (b) c'))).toEqual({ state: 'Z', startTime: '7' });
    expect(parseProcStat('garbage')).toBeUndefined();
    expect(parseProcStat('1 (x) S 1 2')).toBeUndefined();
  });

  test('a zombie is not alive; a reused PID (other start time) is not the same process', () => {
    const p = new ProcFs(proc);
    fakeProcess(200, 10);
    expect(p.alive({ pid: 200, startTime: '10' })).toBe(true);
    expect(p.alive({ pid: 200, startTime: '11' })).toBe(false);
    writeFileSync(join(proc, '200', 'stat'), stat(200, 10, 'Z'));
    expect(p.alive({ pid: 200, startTime: '10' })).toBe(false);
    expect(p.process(999)).toBeUndefined();
  });
});

describe('register / get / update / unregister / list', () => {
  test('register writes NAME.json atomically with everything machinectl needs', async () => {
    fakeProcess(300, 6000);
    const reg = registry();
    const r = await reg.register(machine('web', 300));
    expect(r).toMatchObject({
      version: 1, name: 'web', class: 'container', leader: { pid: 300, startTime: '6000' }, launcher: { pid: 100, startTime: '5000' },
      rootDirectory: '/srv/web',
    });
    expect(r.namespaces.net).toEqual({ path: join(proc, '300', 'ns', 'net'), id: 'net:[4026532301]' });
    expect(Object.keys(r.namespaces).sort()).toEqual(['mnt', 'net', 'pid', 'uts']);
    expect(new Date(r.startedAt).getTime()).toBeGreaterThan(Date.now() - 60_000);
    expect(r.spec).toMatchObject({ mode: 'boot', killSignal: 'SIGRTMIN+3', privateUsers: { mode: 'pick' } });
    expect((r.spec as unknown as Record<string, unknown>).environment).toBeUndefined(); // not kept: may hold secrets
    const onDisk = JSON.parse(readFileSync(join(dir, 'web.json'), 'utf8')) as MachineRecord;
    expect(onDisk).toEqual(r);
    expect(readdirSync(dir).filter((f) => f.endsWith('.tmp'))).toEqual([]);
    expect(reg.get('web')).toEqual(r);
  });

  test('one machine per name: a live record refuses a second registration', async () => {
    const reg = registry();
    await reg.register(machine('web'));
    fakeProcess(101, 5001);
    const other = registry(101, 5001);
    await expect(other.register(machine('web'))).rejects.toThrow(RegistryError);
    try {
      await other.register(machine('web'));
    } catch (e) {
      expect((e as RegistryError).code).toBe('REG_EXISTS');
      expect((e as RegistryError).message).toBe("Machine 'web' already exists (launcher PID 100, root /srv/web); pick another name with -M or stop it first");
    }
    await other.register(machine('db'));
    expect(reg.list().map((m) => m.name)).toEqual(['db', 'web']);
  });

  test('a dead machine (leader and launcher gone) is pruned and its name is free again', async () => {
    fakeProcess(101, 5001);
    fakeProcess(300, 6000);
    const pruned: string[] = [];
    const first = new MachineRegistry({ dir, proc: new ProcFs(proc), self: { pid: 101, startTime: '5001' }, onPrune: (n) => pruned.push(n) });
    await first.register(machine('web', 300));
    endProcess(300);
    // the launcher still runs: still live (it is tearing the machine down)
    expect(first.get('web')?.name).toBe('web');
    endProcess(101);
    expect(first.get('web')).toBeUndefined();
    expect(pruned).toEqual(['web']);
    expect(existsSync(join(dir, 'web.json'))).toBe(false);
    expect((await registry().register(machine('web'))).launcher.pid).toBe(100);
  });

  test('the leader alone keeps a machine live; a reused leader PID does not', async () => {
    fakeProcess(101, 5001);
    fakeProcess(300, 6000);
    await new MachineRegistry({ dir, proc: new ProcFs(proc), self: { pid: 101, startTime: '5001' } }).register(machine('web', 300));
    endProcess(101);
    const reg = registry();
    expect(reg.list().map((m) => m.name)).toEqual(['web']);
    endProcess(300);
    fakeProcess(300, 9999); // same PID, another process
    expect(reg.list()).toEqual([]);
    expect(existsSync(join(dir, 'web.json'))).toBe(false);
  });

  test('update sets the leader (start time, namespaces) and the network', async () => {
    const reg = registry();
    await reg.register(machine('web'));
    expect(reg.get('web')?.leader).toBeUndefined();
    fakeProcess(300, 6000);
    const r = await reg.update('web', { leader: 300, network: { links: [{ name: 've-web', side: 'host', kind: 'veth', ifindex: 7 }], subnets: ['10.0.0.16/28'] } });
    expect(r.leader).toEqual({ pid: 300, startTime: '6000' });
    expect(r.namespaces.net?.id).toBe('net:[4026532301]');
    expect(reg.get('web')?.network).toEqual({ links: [{ name: 've-web', side: 'host', kind: 'veth', ifindex: 7 }], subnets: ['10.0.0.16/28'] });
    await expect(reg.update('nope', {})).rejects.toThrow("No machine 'nope' is registered");
    await expect(reg.update('web', { leader: 999 })).rejects.toThrow('the leader PID 999 does not exist (any more)');
  });

  test('unregister: the launcher may, another live launcher may not (unless forced), a dead record may go', async () => {
    const reg = registry();
    await reg.register(machine('web'));
    fakeProcess(101, 5001);
    const other = registry(101, 5001);
    await expect(other.unregister('web')).rejects.toThrow("Machine 'web' belongs to launcher PID 100, which is still running");
    expect(await reg.unregister('web')).toBe(true);
    expect(await reg.unregister('web')).toBe(false);
    await reg.register(machine('web'));
    expect(await other.unregister('web', { force: true })).toBe(true);
    await reg.register(machine('web'));
    endProcess(100);
    expect(await other.unregister('web')).toBe(true);
  });

  test('unreadable records are pruned; stray files are ignored', async () => {
    const reg = registry();
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'broken.json'), '{ not json');
    writeFileSync(join(dir, 'wrong.json'), JSON.stringify({ version: 1, name: 'other', launcher: { pid: 100, startTime: '5000' } }));
    writeFileSync(join(dir, '.web.json.1.abcd.tmp'), '{}');
    writeFileSync(join(dir, 'notes.txt'), 'hi');
    await reg.register(machine('web'));
    expect(reg.list().map((m) => m.name)).toEqual(['web']);
    expect(existsSync(join(dir, 'broken.json'))).toBe(false);
    expect(existsSync(join(dir, 'wrong.json'))).toBe(false);
    expect(existsSync(join(dir, 'notes.txt'))).toBe(true);
  });

  test('names: invalid ones refused; long ephemeral names accepted; list of a missing dir is empty', async () => {
    const reg = registry();
    expect(reg.list()).toEqual([]);
    await expect(reg.register(machine('../etc/passwd'))).rejects.toThrow('Invalid machine name: ../etc/passwd');
    await expect(reg.register(machine('.hidden'))).rejects.toThrow('Invalid machine name: .hidden');
    expect(reg.get('../x')).toBeUndefined();
    const long = `${'a'.repeat(60)}-0123456789abcdef`;
    expect((await reg.register(machine(long))).name).toBe(long);
  });

  test('changes wait for the lock without stopping the event loop, and a lock held elsewhere times out clearly', async () => {
    const reg = registry();
    await reg.register(machine('web')); // makes the directory
    // flock excludes another open file description of this process as it excludes another process
    const held = tryLock(join(dir, '.lock'));
    expect(held).toBeDefined();
    let ticks = 0;
    const timer = setInterval(() => { ticks++; }, 5);
    try {
      const busy = new MachineRegistry({ dir, proc: new ProcFs(proc), self: { pid: 100, startTime: '5000' }, lockTimeoutMs: 300 });
      await expect(busy.register(machine('db'))).rejects.toThrow(/stayed locked by another process for 300 ms/);
      expect(ticks).toBeGreaterThan(5); // the loop ran while it waited
      // a waiting change goes through once the holder lets go
      const waiting = busy.update('web', { network: { subnets: ['10.0.0.16/28'] } });
      setTimeout(() => held?.release(), 50);
      expect((await waiting).network).toEqual({ subnets: ['10.0.0.16/28'] });
      // reads never wait: with the lock taken, a dead record is not returned (and pruned later)
      const again = tryLock(join(dir, '.lock'));
      endProcess(100);
      expect(reg.get('web')).toBeUndefined();
      expect(reg.list()).toEqual([]);
      expect(existsSync(join(dir, 'web.json'))).toBe(true);
      again?.release();
      expect(reg.list()).toEqual([]);
      expect(existsSync(join(dir, 'web.json'))).toBe(false);
    } finally {
      clearInterval(timer);
      held?.release();
    }
  });

  test('default directory comes from NSPAWN_TS_RUN_DIR', async () => {
    expect(defaultRunDir({ NSPAWN_TS_RUN_DIR: '/tmp/x' })).toBe('/tmp/x');
    expect(defaultRunDir({})).toBe('/run/nspawn-ts');
  });
});
