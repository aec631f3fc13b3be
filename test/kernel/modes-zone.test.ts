// Zone bridges across separate processes: launchers starting and stopping in one zone at once
// never lose or leak the bridge, a launcher killed with SIGKILL leaves a bridge that the next start
// or cleanupStaleZoneBridges() removes, and the lock excludes a systemd-nspawn holding its own.
import { spawn } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect } from 'vitest';
import { ktest } from '../helpers/kernel.js';
import { waitFor } from '../helpers/exec.js';
import type { TestNetns } from '../helpers/netns.js';
import { sys } from '../../src/native.js';
import { cleanupStaleZoneBridges, zoneLock } from '../../src/net/network-plan.js';
import { Rtnl } from '../../src/net/rtnl.js';

// child processes run the compiled modules (scripts/build.sh keeps dist/ current before the tests)
const planModule = new URL('../../dist/net/network-plan.js', import.meta.url).href;
const specModule = new URL('../../dist/runtime/spec.js', import.meta.url).href;
const nativeModule = new URL('../../dist/native.js', import.meta.url).href;
const rtnlModule = new URL('../../dist/net/rtnl.js', import.meta.url).href;
const LOCK_PATH = '/run/nspawn-ts/test-network-zone.lock';
// the file's own zone lock: made for all its tests, removed after them (a flock file stays while in use)
beforeAll(() => {
  mkdirSync('/run/nspawn-ts', { recursive: true });
  writeFileSync(LOCK_PATH, '', { flag: 'a' });
});
afterAll(() => rmSync(LOCK_PATH, { force: true }));

/** A launcher stand-in: its own container namespace, `rounds` starts and stops in zone `zone`. */
function launcherScript(hostPath: string, zone: string, machine: string, rounds: number, hold: boolean): string {
  return `
    import { planNetwork, setupContainerNetwork, zoneLock } from ${JSON.stringify(planModule)};
    import { defaultNetworkSpec } from ${JSON.stringify(specModule)};
    import { sys } from ${JSON.stringify(nativeModule)};
    import { Rtnl } from ${JSON.stringify(rtnlModule)};
    const host = sys().openNamespace(${JSON.stringify(hostPath)});
    const lock = zoneLock({ path: ${JSON.stringify(LOCK_PATH)}, systemdPath: null });
    const machineId = new Uint8Array(16).fill(7);
    for (let i = 0; i < ${rounds}; i++) {
      const ct = sys().createNetns();
      const network = { ...defaultNetworkSpec(), private: true, veth: true, zone: ${JSON.stringify(zone)} };
      const net = await setupContainerNetwork(planNetwork({ machine: ${JSON.stringify(machine)} + '-' + i, network, machineId }),
        { containerNetns: ct, hostNetnsFd: host, zoneLock: lock });
      if (${hold}) { process.stdout.write('ready\\n'); setInterval(() => {}, 1 << 30); await new Promise(() => {}); } // the timer keeps the loop alive: a bare unsettled await exits with code 13
      // still on the zone's bridge a moment later: nobody removed the bridge under us
      await new Promise((r) => setTimeout(r, Math.random() * 4));
      const rtnl = Rtnl.open({ netnsFd: host });
      const mine = await rtnl.getLink(net.veth.hostIfindex);
      const bridge = mine?.master === undefined ? undefined : await rtnl.getLink(mine.master);
      rtnl.close();
      if (bridge?.name !== 'vz-' + ${JSON.stringify(zone)}) { process.stdout.write('lost the bridge in round ' + i + '\\n'); process.exit(3); }
      await net.teardown();
      sys().close(ct);
    }
    process.stdout.write('done\\n');
  `;
}

/** The sidecar's sweeper, removing empty zone bridges in a tight loop until told to stop (stdin closed). */
function sweeperScript(hostPath: string): string {
  return `
    import { cleanupStaleZoneBridges, zoneLock } from ${JSON.stringify(planModule)};
    import { sys } from ${JSON.stringify(nativeModule)};
    import { Rtnl } from ${JSON.stringify(rtnlModule)};
    const host = Rtnl.open({ netnsFd: sys().openNamespace(${JSON.stringify(hostPath)}) });
    const lock = zoneLock({ path: ${JSON.stringify(LOCK_PATH)}, systemdPath: null });
    let stop = false;
    process.stdin.on('end', () => { stop = true; });
    process.stdin.resume();
    let sweeps = 0;
    while (!stop) { await cleanupStaleZoneBridges({ host, lock }); sweeps++; await new Promise((r) => setImmediate(r)); }
    host.close();
    process.stdout.write(sweeps > 0 ? 'swept\\n' : 'never swept\\n');
  `;
}

function runLauncher(script: string): { done: Promise<{ code: number | null; out: string }>; child: ReturnType<typeof spawn> } {
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (d: Buffer) => { out += d.toString(); });
  child.stderr.on('data', (d: Buffer) => { out += d.toString(); });
  const done = new Promise<{ code: number | null; out: string }>((resolve) => child.on('exit', (code) => resolve({ code, out })));
  return { done, child };
}

async function linkNames(ns: TestNetns): Promise<string[]> {
  return (await ns.ipJson<Array<{ ifname: string }>>(['link', 'show'])).map((l) => l.ifname).sort();
}

describe('zone bridges across processes', () => {
  ktest('three launchers starting and stopping in one zone at once, and a sweeper: nobody loses the bridge, nothing is left', async ({ netns }) => {
    const sweeper = runLauncher(sweeperScript(netns.path));
    const runs = ['a', 'b', 'c'].map((m) => runLauncher(launcherScript(netns.path, 'race', m, 10, false)));
    const results = await Promise.all(runs.map((r) => r.done));
    sweeper.child.stdin?.end();
    expect(await sweeper.done).toEqual({ code: 0, out: 'swept\n' });
    for (const r of results) expect(r).toEqual({ code: 0, out: 'done\n' });
    expect(await linkNames(netns)).toEqual(['lo']);
  });

  ktest('a launcher killed with SIGKILL leaves vz-ZONE without ports; cleanupStaleZoneBridges removes it', async ({ netns, onTestFinished }) => {
    const { child, done } = runLauncher(launcherScript(netns.path, 'kill', 'victim', 1, true));
    let exited: { code: number | null; out: string } | undefined;
    void done.then((r) => { exited = r; });
    // a victim that died before joining says why, instead of leaving us to time out
    await waitFor(async () => {
      if (exited) throw new Error(`the victim exited early (${exited.code}): ${exited.out}`);
      // joined, not only made: the veth exists before the zone lock is taken and the bridge made
      const port = (await netns.ipJson<Array<{ master?: string }>>(['link', 'show', 'dev', 'vb-victim-0']).catch(() => []))[0];
      return port?.master === 'vz-kill';
    }, 'the victim to join its zone', 30_000);
    child.kill('SIGKILL');
    await done;
    // its container namespace died with it, and the veth with the namespace; the bridge stays
    await waitFor(async () => !(await linkNames(netns)).includes('vb-victim-0'), 'the veth to go with the namespace', 10_000);
    expect(await linkNames(netns)).toEqual(['lo', 'vz-kill']);
    const host = Rtnl.open({ netnsFd: netns.fd });
    onTestFinished(() => host.close());
    expect(await cleanupStaleZoneBridges({ host, lock: zoneLock({ path: LOCK_PATH, systemdPath: null }) })).toEqual(['vz-kill']);
    expect(await linkNames(netns)).toEqual(['lo']);
  });
});

describe('the zone lock', () => {
  ktest("waits for systemd-nspawn's lock (an OFD lock), and releases it as systemd does (unlinking the file)", async () => {
    const dir = mkdtempSync(join(tmpdir(), 'nspawn-ts-zone-lock-'));
    try {
      const systemdPath = join(dir, 'nspawn-network-zone');
      // "systemd-nspawn" holds its lock
      const held = openSync(systemdPath, 'a', 0o600);
      expect(sys().ofdLock(held, 1)).toBe(true);
      const lock = zoneLock({ path: join(dir, 'ours.lock'), systemdPath, timeoutMs: 10_000 });
      let acquired = false;
      const pending = lock.acquire().then((release) => { acquired = true; return release; });
      await new Promise((r) => setTimeout(r, 150));
      expect(acquired).toBe(false);
      // systemd's release_lock_file(): unlink, then close
      unlinkSync(systemdPath);
      closeSync(held);
      const release = await pending;
      expect(acquired).toBe(true);
      // it locked a fresh file, not the unlinked one
      expect(existsSync(systemdPath)).toBe(true);
      const probe = openSync(systemdPath, 'r+');
      expect(sys().ofdLock(probe, 1)).toBe(false);
      closeSync(probe);
      release();
      expect(existsSync(systemdPath)).toBe(false);
      release(); // idempotent
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  ktest("systemd-nspawn's lock file cannot be made (no such directory): ours alone is taken", async () => {
    const dir = mkdtempSync(join(tmpdir(), 'nspawn-ts-zone-lock-'));
    try {
      const lock = zoneLock({ path: join(dir, 'zone.lock'), systemdPath: join(dir, 'missing', 'nspawn-network-zone') });
      const release = await lock.acquire();
      const other = zoneLock({ path: join(dir, 'zone.lock'), systemdPath: null, timeoutMs: 100 });
      await expect(other.acquire()).rejects.toMatchObject({ code: 'NET_ZONE_LOCK_TIMEOUT' });
      release();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  ktest('our own lock excludes a second holder until released, and times out with a clear error', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'nspawn-ts-zone-lock-'));
    try {
      const a = zoneLock({ path: join(dir, 'zone.lock'), systemdPath: null });
      const b = zoneLock({ path: join(dir, 'zone.lock'), systemdPath: null, timeoutMs: 200 });
      const release = await a.acquire();
      await expect(b.acquire()).rejects.toMatchObject({ code: 'NET_ZONE_LOCK_TIMEOUT' });
      release();
      (await b.acquire())();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
