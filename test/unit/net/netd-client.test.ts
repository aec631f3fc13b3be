// requestRetrying: a request is sent again while the sidecar dies before answering, a bounded
// number of times and with a message that says so; the sidecar's own refusals are not retried.
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { afterEach, describe, expect, test } from 'vitest';
import { requestRetrying } from '../../../src/net/netd/client.js';

let dir: string | undefined;
let server: Server | undefined;

afterEach(async () => {
  await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
  server = undefined;
  if (dir) rmSync(dir, { recursive: true, force: true });
  dir = undefined;
});

/** A socket whose n-th connection (from 1) gets `answer(n)` to its first line: a line, or undefined to hang up. */
async function stub(answer: (n: number) => string | undefined): Promise<{ path: string; connections: () => number }> {
  dir = mkdtempSync(`${tmpdir()}/netd-client-`);
  const path = `${dir}/netd.sock`;
  let n = 0;
  server = createServer((conn: Socket) => {
    const mine = ++n;
    conn.once('data', () => {
      const line = answer(mine);
      if (line === undefined) conn.destroy();
      else conn.write(line + '\n');
    });
  });
  await new Promise<void>((resolve) => server?.listen(path, resolve));
  return { path, connections: () => n };
}

const REQ = { op: 'status' as const };

describe('requestRetrying', () => {
  test('a sidecar that hangs up before answering is asked again, on a new connection', async () => {
    const s = await stub((n) => (n < 3 ? undefined : '{"ok":true,"result":{"fine":1}}'));
    const retries: number[] = [];
    expect(await requestRetrying(s.path, REQ, { backoffMs: 1, onRetry: (_err, attempt) => retries.push(attempt) })).toEqual({ result: { fine: 1 } });
    expect(s.connections()).toBe(3);
    expect(retries).toEqual([2, 3]);
  });

  test('bounded: after the last attempt, an error that says how often it failed', async () => {
    const s = await stub(() => undefined);
    await expect(requestRetrying(s.path, REQ, { attempts: 4, backoffMs: 1 })).rejects.toMatchObject({
      code: 'NETD_CONNECTION',
      message: expect.stringMatching(/failed 4 times before answering "status".*closed the connection/),
    });
    expect(s.connections()).toBe(4);
  });

  test('the sidecar\'s refusal is thrown at once', async () => {
    const s = await stub(() => '{"ok":false,"error":{"code":"NETD_PORT_IN_USE","message":"taken"}}');
    await expect(requestRetrying(s.path, REQ, { backoffMs: 1 })).rejects.toMatchObject({ code: 'NETD_PORT_IN_USE' });
    expect(s.connections()).toBe(1);
  });

  test('no sidecar (no socket, or nobody accepts on it any more): undefined', async () => {
    const s = await stub(() => undefined);
    await new Promise<void>((resolve) => server?.close(() => resolve()));
    server = undefined;
    expect(await requestRetrying(s.path, REQ)).toBeUndefined();
    expect(await requestRetrying(`${s.path}.none`, REQ)).toBeUndefined();
  });
});
