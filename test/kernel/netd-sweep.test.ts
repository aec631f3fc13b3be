// What a launcher killed with SIGKILL leaves behind (it never runs its afterExit): its port
// mappings, masquerade entry and state record. The next launcher start (the embedded subsystem)
// sweeps exactly what belongs to dead holders — a running launcher's mappings, masquerade and
// record stay, and so do systemd-nspawn's (its own table). bin/nspawn-ts on the busybox root,
// the test run's namespace as the host, no sidecar.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { describe, expect } from 'vitest';
import { ktest } from '../helpers/kernel.js';
import { run, runOk, waitFor } from '../helpers/exec.js';
import { leftoverCgroups, nspawn } from '../helpers/nspawn.js';
import { busyboxRoot } from '../helpers/rootfs.js';
import { exitOf, nspawnTs, startSidecar, stopByLine, untilReady, type Proc } from './e2e-world.js';

const P = String(process.pid);
const STATE = '/var/lib/nspawn-ts/netd/state.json';

async function table(): Promise<string> {
  const r = await run('nft', ['list', 'table', 'inet', 'nspawn-ts']);
  return r.code === 0 ? r.stdout : '';
}

function stateLinks(): string[] {
  try {
    return Object.keys((JSON.parse(readFileSync(STATE, 'utf8')) as { links: object }).links).sort();
  } catch {
    return [];
  }
}

/** A container that says "ready" and waits for a line on stdin. */
async function running(machine: string, args: string[]): Promise<Proc> {
  return untilReady(nspawnTs(['-D', await busyboxRoot(), '-M', machine, ...args, '/bin/sh', '-c', 'echo ready && read x']), machine);
}

const stop = stopByLine;

describe('launchers killed with SIGKILL', () => {
  ktest('the next launcher start removes the dead one\'s port mappings, masquerade and record; a live one\'s and systemd-nspawn\'s stay', async () => {
    const [live, dead, next] = [`sl${P}`, `sd${P}`, `sn${P}`];
    const procs: Proc[] = [];
    try {
      // systemd-nspawn's own port map (it is never ours to sweep)
      await runOk('nft', ['-f', '-'], {
        input: 'table ip io.systemd.nat {\n map map_port_ipport { type inet_proto . inet_service : ipv4_addr . inet_service; elements = { tcp . 8003 : 10.0.0.24 . 80 } }\n}\n',
      });
      const a = await running(live, ['-n', '-p', 'tcp:8001:80']);
      procs.push(a);
      const b = await running(dead, ['-n', '-p', 'tcp:8002:80', '-p', 'udp:8002:53']);
      let t = await table();
      expect(t).toContain(`tcp . 8001 comment "${live}"`);
      expect(t).toContain(`tcp . 8002 comment "${dead}"`);
      expect(t).toContain(`comment "ve:${dead}"`);
      expect(stateLinks()).toEqual([`ve-${live}`, `ve-${dead}`].sort());

      b.child.kill('SIGKILL');
      await exitOf(b);
      // its container dies with it (parent-death signal), and ve-DEAD with the container's namespace
      await waitFor(async () => (await run('ip', ['link', 'show', `ve-${dead}`])).code !== 0, 'the dead launcher\'s veth to go', 15_000);
      // nothing removed them: this is what the sweep is for
      t = await table();
      expect(t).toContain(`tcp . 8002 comment "${dead}"`);
      expect(t).toContain(`comment "ve:${dead}"`);
      expect(stateLinks()).toContain(`ve-${dead}`);

      // the next launcher (another machine, embedded) sweeps while it starts
      const c = await running(next, ['-n']);
      procs.push(c);
      t = await table();
      expect(t).not.toContain(`"${dead}"`);
      expect(t).not.toContain(`ve:${dead}`);
      expect(t).toContain(`tcp . 8001 comment "${live}"`);
      expect(t).toContain(`comment "ve:${live}"`);
      expect(t).toContain(`comment "ve:${next}"`);
      expect(stateLinks()).toEqual([`ve-${live}`, `ve-${next}`].sort());
      expect((await runOk('nft', ['list', 'map', 'ip', 'io.systemd.nat', 'map_port_ipport']))).toContain('tcp . 8003 : 10.0.0.24 . 80');

      expect(await stop(procs.pop() as Proc)).toBe(0);
      expect(await stop(procs.pop() as Proc)).toBe(0);
      expect((await run('nft', ['list', 'table', 'inet', 'nspawn-ts'])).code).not.toBe(0);
      expect(stateLinks()).toEqual([]);
      // the dead machine's record and cgroups go at the next start of its name
      expect((await nspawn(['-q', '-D', await busyboxRoot(), '-M', dead, '/bin/true'])).code).toBe(0);
    } finally {
      for (const p of procs) await stop(p).catch(() => p.child.kill('SIGKILL'));
      await run('nft', ['delete', 'table', 'ip', 'io.systemd.nat']);
    }
  });

  ktest('a new start wanting a killed launcher\'s port gets it; the killed one\'s cgroups, notify socket and record go at any start', async () => {
    const [dead, next, other] = [`kd${P}`, `kn${P}`, `ko${P}`];
    const procs: Proc[] = [];
    try {
      const b = await running(dead, ['-n', '-p', 'tcp:8042:80']);
      const launcherPid = b.child.pid as number;
      const notify = `/run/nspawn-ts/notify/${dead}.${launcherPid}`;
      expect(existsSync(notify)).toBe(true);
      const cgroups = leftoverCgroups().filter((d) => d.endsWith(`/machine-${dead}`));
      expect(cgroups.length).toBeGreaterThan(0);
      expect(existsSync(`/run/nspawn-ts/machines/${dead}.json`)).toBe(true);
      b.child.kill('SIGKILL');
      await exitOf(b);
      await waitFor(async () => (await run('ip', ['link', 'show', `ve-${dead}`])).code !== 0, 'the dead launcher\'s veth to go', 15_000);
      expect(await table()).toContain(`tcp . 8042 comment "${dead}"`);

      // another machine wanting the same host port: the dead holder is swept before the port check
      const c = await running(next, ['-n', '-p', 'tcp:8042:80']);
      procs.push(c);
      const t = await table();
      expect(t).toContain(`tcp . 8042 comment "${next}"`);
      expect(t).not.toContain(`"${dead}"`);
      // and what the killed launcher left outside the network: gone with this start, not the next one of its name
      expect(existsSync(notify)).toBe(false);
      expect(leftoverCgroups().filter((d) => d.endsWith(`/machine-${dead}`))).toEqual([]);
      expect(existsSync(`/run/nspawn-ts/machines/${dead}.json`)).toBe(false);
      // a live launcher's are never taken: the next start (no network at all) leaves them
      const live = leftoverCgroups().filter((d) => d.endsWith(`/machine-${next}`));
      expect(live.length).toBeGreaterThan(0);
      expect((await nspawn(['-q', '-D', await busyboxRoot(), '-M', other, '/bin/true'])).code).toBe(0);
      expect(leftoverCgroups().filter((d) => d.endsWith(`/machine-${next}`))).toEqual(live);
      expect(existsSync(`/run/nspawn-ts/notify/${next}.${c.child.pid as number}`)).toBe(true);
      expect(existsSync(`/run/nspawn-ts/machines/${next}.json`)).toBe(true);

      expect(await stop(procs.pop() as Proc)).toBe(0);
      expect((await run('nft', ['list', 'table', 'inet', 'nspawn-ts'])).code).not.toBe(0);
      expect(readdirSync('/run/nspawn-ts/notify')).toEqual([]);
    } finally {
      for (const p of procs) await stop(p).catch(() => p.child.kill('SIGKILL'));
    }
  });

  ktest('a zone member killed with SIGKILL: its reservation and ports go at the next start, the zone and its live member stay', async () => {
    const [live, dead, next] = [`zl${P}`, `zd${P}`, `zn${P}`];
    const zone = `sw${P}`.slice(0, 12);
    const procs: Proc[] = [];
    try {
      procs.push(await running(live, [`--network-zone=${zone}`, '-p', 'tcp:8011:80']));
      const b = await running(dead, [`--network-zone=${zone}`, '-p', 'tcp:8012:80']);
      expect(await table()).toContain(`tcp . 8012 comment "${dead}"`);
      b.child.kill('SIGKILL');
      await exitOf(b);
      await waitFor(async () => (await run('ip', ['link', 'show', `vb-${dead}`])).code !== 0, 'the dead member\'s veth to go', 15_000);
      expect(await table()).toContain(`tcp . 8012 comment "${dead}"`);

      procs.push(await running(next, ['-n']));
      const t = await table();
      expect(t).not.toContain(`"${dead}"`);
      expect(t).toContain(`tcp . 8011 comment "${live}"`);
      expect(t).toContain(`comment "vz:${zone}"`);
      const st = JSON.parse(readFileSync(STATE, 'utf8')) as { links: Record<string, { reservations: Array<{ machine: string }> }> };
      expect(st.links[`vz-${zone}`]?.reservations.map((r) => r.machine)).toEqual([live]);

      for (const p of procs.splice(0).reverse()) expect(await stop(p)).toBe(0);
      expect((await run('nft', ['list', 'table', 'inet', 'nspawn-ts'])).code).not.toBe(0);
      expect((await run('ip', ['link', 'show', `vz-${zone}`])).code).not.toBe(0);
      expect((await nspawn(['-q', '-D', await busyboxRoot(), '-M', dead, '/bin/true'])).code).toBe(0);
    } finally {
      for (const p of procs) await stop(p).catch(() => p.child.kill('SIGKILL'));
      await run('ip', ['link', 'del', `vz-${zone}`]);
    }
  });
  ktest('nspawn-netd: at its start it removes what a killed embedded launcher left, leaves a live one\'s; when that one is killed too, it removes its leftovers', async () => {
    const [live, dead] = [`ql${P}`, `qd${P}`];
    const procs: Proc[] = [];
    let sidecar: Awaited<ReturnType<typeof startSidecar>> | undefined;
    try {
      const a = await running(live, ['-n', '-p', 'tcp:8021:80']);
      procs.push(a);
      const b = await running(dead, ['-n', '-p', 'tcp:8022:80']);
      b.child.kill('SIGKILL');
      await exitOf(b);
      await waitFor(async () => (await run('ip', ['link', 'show', `ve-${dead}`])).code !== 0, 'the dead launcher\'s veth to go', 15_000);
      expect(await table()).toContain(`tcp . 8022 comment "${dead}"`);

      sidecar = await startSidecar();
      const t = await table();
      expect(t).not.toContain(`"${dead}"`);
      expect(t).not.toContain(`ve:${dead}`);
      expect(t).toContain(`tcp . 8021 comment "${live}"`);
      expect(t).toContain(`comment "ve:${live}"`);
      expect(stateLinks()).toEqual([`ve-${live}`]);

      // the embedded launcher the sidecar leaves its link to is killed: the sidecar clears up after it
      a.child.kill('SIGKILL');
      await exitOf(a);
      procs.pop();
      const sc = sidecar;
      await waitFor(async () => !(await table()).includes(`"${live}"`) && !(await table()).includes(`ve:${live}`), 'the sidecar to remove the killed launcher\'s mappings', 15_000)
        .catch((err: Error) => { throw new Error(`${err.message}; sidecar log:\n${sc.proc.output()}\ntable:\n${readFileSync(STATE, 'utf8')}`); });
      expect(stateLinks()).toEqual([]);
      // the link going while the sidecar tried to serve it is no error of the sidecar's
      expect(sc.proc.output()).not.toMatch(/"level":"error"/);
      await sidecar.stop();
      sidecar = undefined;
      expect((await run('nft', ['list', 'table', 'inet', 'nspawn-ts'])).code).not.toBe(0);
      for (const m of [live, dead]) expect((await nspawn(['-q', '-D', await busyboxRoot(), '-M', m, '/bin/true'])).code).toBe(0);
    } finally {
      for (const p of procs) await stop(p).catch(() => p.child.kill('SIGKILL'));
      await sidecar?.stop();
    }
  });
  ktest('--network-bridge= -p (the launcher maps its ports itself): a killed one\'s mappings go at the next start; a running one\'s stay, also unregistered and through a sidecar start', async () => {
    const [live, dead, next] = [`wl${P}`, `wd${P}`, `wn${P}`];
    const procs: Proc[] = [];
    let sidecar: Awaited<ReturnType<typeof startSidecar>> | undefined;
    const addressed = (address: string): string[] => ['/bin/sh', '-c', `ip link set host0 up && ip addr add ${address}/24 dev host0 && echo ready && read x`];
    try {
      await runOk('ip', ['link', 'add', 'br-sweep', 'type', 'bridge']);
      await runOk('ip', ['addr', 'add', '10.78.0.1/24', 'dev', 'br-sweep']);
      await runOk('ip', ['link', 'set', 'br-sweep', 'up']);
      const root = await busyboxRoot();
      procs.push(await untilReady(nspawnTs(['-D', root, '-M', live, '--register=no', '--network-bridge=br-sweep', '-p', 'tcp:8031:80', ...addressed('10.78.0.2')]), live));
      const b = await untilReady(nspawnTs(['-D', root, '-M', dead, '--network-bridge=br-sweep', '-p', 'tcp:8032:80', ...addressed('10.78.0.3')]), dead);
      await waitFor(async () => (await table()).includes(`tcp . 8032 comment "${dead}" : 10.78.0.3 . 80`) && (await table()).includes(`tcp . 8031 comment "${live}" : 10.78.0.2 . 80`), 'both mappings');
      b.child.kill('SIGKILL');
      await exitOf(b);
      await waitFor(async () => (await run('ip', ['link', 'show', `vb-${dead}`])).code !== 0, 'the dead launcher\'s veth to go', 15_000);
      expect(await table()).toContain(`tcp . 8032 comment "${dead}"`);

      procs.push(await running(next, ['-n']));
      expect(await table()).not.toContain(`"${dead}"`);
      expect(await table()).toContain(`tcp . 8031 comment "${live}" : 10.78.0.2 . 80`);
      // a sidecar starting now keeps the running, unregistered launcher's mappings too
      sidecar = await startSidecar();
      expect(await table()).toContain(`tcp . 8031 comment "${live}" : 10.78.0.2 . 80`);
      await sidecar.stop();
      sidecar = undefined;

      for (const p of procs.splice(0).reverse()) expect(await stop(p)).toBe(0);
      expect((await run('nft', ['list', 'table', 'inet', 'nspawn-ts'])).code).not.toBe(0);
      expect((JSON.parse(readFileSync(STATE, 'utf8')) as { portWatchers?: object }).portWatchers).toBeUndefined();
      expect((await nspawn(['-q', '-D', root, '-M', dead, '/bin/true'])).code).toBe(0);
    } finally {
      for (const p of procs) await stop(p).catch(() => p.child.kill('SIGKILL'));
      await sidecar?.stop();
      await run('ip', ['link', 'del', 'br-sweep']);
    }
  });
});
