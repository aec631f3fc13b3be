// The sidecar's API socket with a scripted handler: framing, checks, errors, ownership of the path.
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { afterEach, describe, expect, test } from 'vitest';
import { NspawnError } from '../../../src/errors.js';
import { logger } from '../../../src/log.js';
import type { NetdRequest } from '../../../src/net/netd/api.js';
import { NetdClient } from '../../../src/net/netd/client.js';
import { ApiServer, socketAnswers } from '../../../src/net/netd/server.js';

const cleanup: Array<() => void | Promise<void>> = [];
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f();
});

function tmp(): string {
  const dir = mkdtempSync(`${tmpdir()}/netd-api-`);
  cleanup.push(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

async function serve(path: string, handler: (r: NetdRequest) => Promise<unknown>): Promise<ApiServer> {
  const api = await ApiServer.listen(path, handler, logger('test'));
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
