// The sidecar's API socket with a scripted handler: framing, checks, errors, ownership of the path.
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createConnection, createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { afterEach, describe, expect, test } from 'vitest';
import { NspawnError } from '../../../src/errors.js';
import { logger } from '../../../src/log.js';
import type { NetdRequest } from '../../../src/net/netd/api.js';
import { NetdClient } from '../../../src/net/netd/client.js';
import { ApiServer, type ApiServerOptions, socketAnswers } from '../../../src/net/netd/server.js';

const cleanup: Array<() => void | Promise<void>> = [];
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f();
});

function tmp(): string {
  const dir = mkdtempSync(`${tmpdir()}/netd-api-`);
  cleanup.push(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

async function serve(path: string, handler: (r: NetdRequest) => Promise<unknown>, opts: ApiServerOptions = {}): Promise<ApiServer> {
  const api = await ApiServer.listen(path, handler, logger('test'), opts);
  cleanup.push(() => api.close());
  return api;
}

describe('ApiServer', () => {
  test('answers requests in order, with the handler\'s result or its error code', async () => {
    const path = `${tmp()}/netd.sock`;
    const seen: NetdRequest[] = [];
    await serve(path, async (r) => {
      seen.push(r);
      if (r.op === 'release') throw new NspawnError('NETD_NOT_SERVED', 'link ve-x is not served');
      if (r.op === 'list') await new Promise((res) => setTimeout(res, 20));
      return { op: r.op };
    });
    expect(statSync(path).mode & 0o777).toBe(0o600);
    const c = await NetdClient.connect(path);
    expect(c).toBeDefined();
    cleanup.push(() => c?.close());
    const [a, b] = await Promise.all([c!.request({ op: 'list' }), c!.request({ op: 'status' })]);
    expect(a).toEqual({ op: 'list' });
    expect(b).toEqual({ op: 'status' });
    await expect(c!.request({ op: 'release', machine: 'x', kind: 'veth' })).rejects.toMatchObject({ code: 'NETD_NOT_SERVED', message: 'link ve-x is not served' });
    // bad requests never reach the handler
    expect(await c!.raw('{"op":"reserve","machine":"x"}')).toEqual({ ok: false, error: { code: 'NETD_BAD_REQUEST', message: 'reserve: "mac" is missing' } });
    expect(await c!.raw('{"op":"status","id":42}')).toEqual({ ok: true, id: 42, result: { op: 'status' } });
    expect((await c!.raw('garbage')).ok).toBe(false);
    expect(seen.map((r) => r.op)).toEqual(['list', 'status', 'release', 'status']);
  });

  test('an overlong line gets an error and the connection is closed', async () => {
    const path = `${tmp()}/netd.sock`;
    await serve(path, async () => 'x');
    const c = (await NetdClient.connect(path))!;
    cleanup.push(() => c.close());
    const r = await c.raw('{"op":"status","id":"' + 'y'.repeat(40_000));
    expect(r).toMatchObject({ ok: false, error: { code: 'NETD_BAD_REQUEST' } });
  });

  test('replaces a stale socket file; refuses when another sidecar answers', async () => {
    const dir = tmp();
    const path = `${dir}/netd.sock`;
    // a socket file nobody listens on (a killed sidecar's)
    const dead = createServer();
    await new Promise<void>((r) => dead.listen(path, r));
    await new Promise<void>((r) => dead.close(() => r()));
    writeFileSync(path, ''); // close() unlinked it; leave a plain stale file in its place
    expect(await socketAnswers(path)).toBe(false);
    await serve(path, async () => 'first');
    await expect(ApiServer.listen(path, async () => 'second', logger('test'))).rejects.toMatchObject({ code: 'NETD_RUNNING' });
    const c = (await NetdClient.connect(path))!;
    cleanup.push(() => c.close());
    expect(await c.request({ op: 'status' })).toBe('first');
  });

  test('connect() says undefined when no sidecar is there', async () => {
    expect(await NetdClient.connect(`${tmp()}/none.sock`)).toBeUndefined();
  });
});

/** A raw connection collecting lines, and whether the server closed it. */
async function rawConnect(path: string): Promise<{ sock: Socket; lines: string[]; closed: () => boolean }> {
  const sock = createConnection(path);
  cleanup.push(() => { sock.destroy(); });
  const lines: string[] = [];
  let buf = '';
  let closed = false;
  sock.setEncoding('utf8');
  sock.on('data', (d: string) => {
    buf += d;
    for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
      lines.push(buf.slice(0, nl));
      buf = buf.slice(nl + 1);
    }
  });
  sock.on('error', () => undefined);
  sock.on('close', () => { closed = true; });
  await new Promise<void>((resolve, reject) => { sock.once('connect', resolve); sock.once('error', reject); });
  return { sock, lines, closed: () => closed };
}

async function until(cond: () => boolean, ms = 3000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 5));
  }
}

describe('ApiServer bounds and peers', () => {
  test('a peer allowPeer refuses is answered NETD_PERMISSION_DENIED naming its uid; the handler never runs; the client reports it', async () => {
    const path = `${tmp()}/netd.sock`;
    let called = 0;
    await serve(path, async () => { called++; return 'x'; }, { allowPeer: (p) => p.uid === 4242 });
    const c = (await NetdClient.connect(path))!;
    cleanup.push(() => c.close());
    await expect(c.request({ op: 'status' })).rejects.toMatchObject({
      code: 'NETD_PERMISSION_DENIED', message: expect.stringMatching(new RegExp(`only for root \\(uid 0\\); this connection comes from uid ${process.getuid?.() ?? 0} \\(pid ${process.pid}\\)`)),
    });
    expect(called).toBe(0);
  });

  test('half a line that stalls gets an error after requestTimeoutMs and the connection is closed', async () => {
    const path = `${tmp()}/netd.sock`;
    await serve(path, async () => 'x', { limits: { requestTimeoutMs: 100 } });
    const r = await rawConnect(path);
    r.sock.write('{"op":"sta');
    await until(() => r.closed());
    expect(r.lines.map((l) => JSON.parse(l) as unknown)).toEqual([{ ok: false, error: { code: 'NETD_BAD_REQUEST', message: 'a request line must end (newline) within 100 ms of its start' } }]);
  });

  test('an idle connection is closed after idleTimeoutMs, not while its request is being answered', async () => {
    const path = `${tmp()}/netd.sock`;
    await serve(path, async () => { await new Promise((res) => setTimeout(res, 150)); return 'slow'; }, { limits: { idleTimeoutMs: 50 } });
    const r = await rawConnect(path);
    r.sock.write('{"op":"status"}\n');
    await until(() => r.closed());
    expect(r.lines).toEqual(['{"ok":true,"result":"slow"}']);
  });

  test('connections beyond maxConnections are told NETD_BUSY; when one goes, a new one is served', async () => {
    const path = `${tmp()}/netd.sock`;
    await serve(path, async () => 'ok', { limits: { maxConnections: 2 } });
    const a = await rawConnect(path);
    const b = await rawConnect(path);
    const c = await rawConnect(path);
    await until(() => c.closed());
    expect(JSON.parse(c.lines[0] ?? '')).toMatchObject({ ok: false, error: { code: 'NETD_BUSY' } });
    a.sock.destroy();
    await until(() => a.closed());
    await new Promise((r) => setTimeout(r, 20));
    const d = (await NetdClient.connect(path))!;
    cleanup.push(() => d.close());
    expect(await d.request({ op: 'status' })).toBe('ok');
    expect(b.closed()).toBe(false);
  });

  test('a client that never reads: at most maxPipelined requests are taken ahead of its answers; others are served meanwhile', async () => {
    const path = `${tmp()}/netd.sock`;
    let calls = 0;
    await serve(path, async () => { calls++; return 'r'.repeat(4096); }, { limits: { maxPipelined: 4 } });
    const hog = await rawConnect(path);
    hog.sock.pause();
    hog.sock.write('{"op":"list"}\n'.repeat(20_000));
    await new Promise((r) => setTimeout(r, 300));
    // the kernel's socket buffers hold some answers; then the daemon stops taking lines
    const taken = calls;
    expect(taken).toBeLessThan(20_000);
    await new Promise((r) => setTimeout(r, 200));
    expect(calls).toBe(taken);
    const other = (await NetdClient.connect(path))!;
    cleanup.push(() => other.close());
    expect(await other.request({ op: 'status' })).toBe('r'.repeat(4096));
  });
});
