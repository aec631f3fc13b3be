// A launcher whose sidecar dies under its request (issue 12: 10 of 200 starts failed in bench/soak
// while the sidecar was SIGKILLed). The launcher asks again on a new connection: a restarted
// sidecar hands out the reservation its predecessor made before dying (the request is safe to
// repeat); when no sidecar listens any more (a stale socket), the launcher serves its container
// itself, as it does without a sidecar. bin/nspawn-ts on the busybox root, the run's namespace as
// the host.
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { rmSync } from 'node:fs';
import { describe, expect } from 'vitest';
import { ktest } from '../helpers/kernel.js';
import { run, waitFor } from '../helpers/exec.js';
import { busyboxRoot } from '../helpers/rootfs.js';
import { NetdClient } from '../../src/net/netd/client.js';
import { exitOf, NETD, netdState, nspawnTs, startProc, stopByLine, TEST_DNS, untilReady, type Proc } from './e2e-world.js';

const P = String(process.pid);
const FRONT = '/run/nspawn-ts/retry-front.sock';
const BACK = '/run/nspawn-ts/retry-back.sock';
const SHOW = 'ip -4 -o addr show host0; echo ready; read x';

async function sidecarOn(socket: string): Promise<Proc> {
  const proc = startProc(process.execPath, [NETD, `--dns=${TEST_DNS}`, `--socket=${socket}`]);
  await waitFor(async () => {
    if (proc.child.exitCode !== null) throw new Error(`the sidecar exited: ${proc.output()}`);
    const c = await NetdClient.connect(socket).catch(() => undefined);
    c?.close();
    return c;
  }, 'the sidecar socket', 15_000, 20);
  return proc;
}

async function stopSidecar(p: Proc | undefined): Promise<void> {
  if (p && p.child.exitCode === null && p.child.signalCode === null) {
    p.child.kill('SIGTERM');
    await exitOf(p);
  }
}

/** Reads one line from a socket. */
function firstLine(sock: Socket): Promise<string> {
  return new Promise((resolve, reject) => {
    let buf = '';
    const onData = (d: Buffer): void => {
      buf += d.toString();
      const nl = buf.indexOf('\n');
      if (nl < 0) return;
      sock.off('data', onData);
      resolve(buf.slice(0, nl + 1));
    };
    sock.on('data', onData);
    sock.once('error', reject);
  });
}

function closeServer(s: Server | undefined): Promise<void> {
  return new Promise((resolve) => (s ? s.close(() => resolve()) : resolve()));
}

describe('the sidecar dies while a launcher asks it', () => {
  ktest('killed after reserving, before answering: the launcher asks the restarted sidecar and gets the same reservation', async () => {
    const machine = `rr${P}`;
    let first: Proc | undefined;
    let second: Promise<Proc> | undefined;
    let front: Server | undefined;
    let launcher: Proc | undefined;
    const sockets: Socket[] = [];
    try {
      first = await sidecarOn(BACK);
      const dying = first;
      let connections = 0;
      let firstAnswer = '';
      // in front of the sidecar: the first request goes through, then the sidecar is SIGKILLed and
      // the launcher's connection reset before it sees the answer; later connections are passed
      // to the restarted sidecar
      front = createServer((conn) => {
        sockets.push(conn);
        conn.on('error', () => undefined);
        if (++connections === 1) {
          void firstLine(conn).then(async (line) => {
            const back = createConnection(BACK);
            sockets.push(back);
            back.write(line);
            firstAnswer = await firstLine(back);
            dying.child.kill('SIGKILL');
            conn.destroy();
            back.destroy();
            await exitOf(dying);
            second = sidecarOn(BACK);
          });
          return;
        }
        conn.pause();
        void waitFor(() => second, 'the sidecar to be restarted', 30_000).then((p) => p).then(() => {
          const back = createConnection(BACK);
          sockets.push(back);
          back.on('error', () => conn.destroy());
          conn.pipe(back);
          back.pipe(conn);
          conn.resume();
        });
      });
      await new Promise<void>((resolve) => front?.listen(FRONT, resolve));

      launcher = await untilReady(nspawnTs(['-D', await busyboxRoot(), '-M', machine, '-n', '/bin/sh', '-c', SHOW], { NSPAWN_NETD_SOCKET: FRONT }), machine);
      const reserved = (JSON.parse(firstAnswer) as { ok: boolean; result: { address: string } });
      expect(reserved.ok).toBe(true);
      // the launcher came back on a new connection, and got what the dead sidecar had reserved
      expect(connections).toBeGreaterThanOrEqual(2);
      expect(launcher.output()).toContain(`inet ${reserved.result.address}/`);
      const rec = netdState().links[`ve-${machine}`] as unknown as { holders: string[]; reservations: Array<{ machine: string; address: string }> };
      expect(rec.reservations).toEqual([expect.objectContaining({ machine, address: reserved.result.address })]);
      expect(rec.holders).toEqual(['sidecar']);

      expect(await stopByLine(launcher)).toBe(0);
      launcher = undefined;
      await waitFor(() => netdState().links[`ve-${machine}`] === undefined, 'the restarted sidecar to release the link', 15_000);
      const restarted = await (second as Promise<Proc>);
      expect(restarted.output()).not.toMatch(/"level":"error"/);
    } finally {
      if (launcher) launcher.child.kill('SIGKILL');
      for (const s of sockets) s.destroy();
      await closeServer(front);
      first?.child.kill('SIGKILL');
      if (first) await exitOf(first);
      await stopSidecar(await second?.catch(() => undefined));
      rmSync(BACK, { force: true });
      rmSync(FRONT, { force: true });
    }
  });

  ktest('killed at the reserve and not restarted (a stale socket): the launcher serves its container itself', async () => {
    const machine = `rs${P}`;
    // a "sidecar" that accepts and is SIGKILLed when the request arrives; its socket file stays
    const stub = startProc(process.execPath, ['-e',
      `require('net').createServer((s) => s.on('data', () => process.kill(process.pid, 'SIGKILL'))).listen(${JSON.stringify(FRONT)}, () => console.log('listening'))`]);
    let launcher: Proc | undefined;
    try {
      await waitFor(() => stub.output().includes('listening'), 'the stub socket', 10_000);
      launcher = await untilReady(nspawnTs(['-D', await busyboxRoot(), '-M', machine, '-n', '-p', 'tcp:8061:80', '/bin/sh', '-c', SHOW], { NSPAWN_NETD_SOCKET: FRONT }), machine);
      expect(stub.child.signalCode).toBe('SIGKILL');
      const rec = netdState().links[`ve-${machine}`] as unknown as { holders: string[]; reservations: Array<{ machine: string; address: string }> };
      // served in-process: this launcher is the link's only holder
      expect(rec.holders).toHaveLength(1);
      expect(rec.holders[0]).not.toBe('sidecar');
      expect(launcher.output()).toContain(`inet ${rec.reservations[0]?.address}/`);
      expect((await run('nft', ['list', 'table', 'inet', 'nspawn-ts'])).stdout).toContain(`tcp . 8061 comment "${machine}"`);
      expect(await stopByLine(launcher)).toBe(0);
      launcher = undefined;
      expect(netdState().links[`ve-${machine}`]).toBeUndefined();
      expect((await run('nft', ['list', 'table', 'inet', 'nspawn-ts'])).code).not.toBe(0);
    } finally {
      if (launcher) launcher.child.kill('SIGKILL');
      stub.child.kill('SIGKILL');
      await stub.exited;
      rmSync(FRONT, { force: true });
    }
  });
});
