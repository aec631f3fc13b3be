// The native addon against the real kernel, inside disposable namespaces.
import { describe, expect } from 'vitest';
import { ktest } from '../helpers/kernel.js';
import { POLL_READABLE, SysError, sys } from '../../src/native.js';

const AF_INET = 2;
const SOCK_DGRAM = 2;

function sockaddrIn(ip: string, port: number): Uint8Array {
  const b = new Uint8Array(16);
  new DataView(b.buffer).setUint16(0, AF_INET, true);
  new DataView(b.buffer).setUint16(2, port, false);
  b.set(ip.split('.').map(Number), 4);
  return b;
}

describe('native sockets', () => {
  ktest('a UDP socket made inside a namespace receives through the event loop', async ({ netns }) => {
    const s = sys();
    const rx = s.socket(AF_INET, SOCK_DGRAM, 0, netns.fd);
    const tx = s.socket(AF_INET, SOCK_DGRAM, 0, netns.fd);
    try {
      s.bind(rx, sockaddrIn('127.0.0.1', 4567));
      const got = new Promise<{ data: string; fromPort: number }>((resolve) => {
        const w = new s.FdWatcher(rx, POLL_READABLE, () => {
          const buf = new Uint8Array(1500);
          const from = new Uint8Array(16);
          const n = s.recv(rx, buf, 0, from);
          if (n < 0) return;
          w.stop();
          resolve({ data: Buffer.from(buf.subarray(0, n)).toString(), fromPort: new DataView(from.buffer).getUint16(2, false) });
        });
      });
      s.bind(tx, sockaddrIn('127.0.0.1', 4568));
      expect(s.sendto(tx, Buffer.from('hello'), sockaddrIn('127.0.0.1', 4567))).toBe(5);
      expect(await got).toEqual({ data: 'hello', fromPort: 4568 });
      // nothing more is waiting: recv says so without blocking
      expect(s.recv(rx, new Uint8Array(10))).toBe(-1);
    } finally {
      s.close(rx);
      s.close(tx);
    }
  });

  ktest('failures carry errno and its name', ({ netns }) => {
    const s = sys();
    const fd = s.socket(AF_INET, SOCK_DGRAM, 0, netns.fd);
    try {
      // 192.0.2.1 is not an address of this namespace
      const err = (() => { try { s.bind(fd, sockaddrIn('192.0.2.1', 1)); } catch (e) { return e; } return undefined; })();
      expect(err).toBeInstanceOf(SysError);
      expect(err).toMatchObject({ code: 'EADDRNOTAVAIL', errno: 99, syscall: 'bind' });
    } finally {
      s.close(fd);
    }
    expect(() => s.openNamespace('/run/netns/does-not-exist')).toThrow(expect.objectContaining({ code: 'ENOENT', errno: 2 }));
  });
});

describe('native namespaces', () => {
  ktest('createNetns makes a namespace different from the current one', ({ netns }) => {
    const s = sys();
    const fd = s.createNetns();
    try {
      const self = s.openNamespace('/proc/self/ns/net');
      try {
        expect(s.namespaceId(fd)).not.toBe(s.namespaceId(self));
        expect(s.namespaceId(netns.fd)).not.toBe(s.namespaceId(self));
        // two fds of one namespace compare equal
        const again = s.openNamespace(netns.path);
        expect(s.namespaceId(again)).toBe(s.namespaceId(netns.fd));
        s.close(again);
      } finally {
        s.close(self);
      }
    } finally {
      s.close(fd);
    }
  });
});

describe('native libnftables', () => {
  ktest('runs JSON commands inside a namespace and reports errors', async ({ netns }) => {
    const s = sys();
    const add = s.nftRun(JSON.stringify({ nftables: [{ add: { table: { family: 'inet', name: 'nspawn_ts_test' } } }] }), { netnsFd: netns.fd });
    expect(add).toMatchObject({ rc: 0, error: '' });
    const list = s.nftRun('list tables', { netnsFd: netns.fd });
    const tables = (JSON.parse(list.output) as { nftables: Array<{ table?: { name: string } }> }).nftables.flatMap((o) => (o.table ? [o.table.name] : []));
    expect(tables).toEqual(['nspawn_ts_test']);
    // an independent observer agrees
    expect(await netns.exec('nft', ['list', 'tables'])).toContain('table inet nspawn_ts_test');
    // the caller's namespace is untouched
    const here = JSON.parse(s.nftRun('list tables').output) as { nftables: Array<{ table?: { name: string } }> };
    expect(here.nftables.some((o) => o.table?.name === 'nspawn_ts_test')).toBe(false);
    const bad = s.nftRun('add rule inet nspawn_ts_test nochain drop', { netnsFd: netns.fd });
    expect(bad.rc).not.toBe(0);
    expect(bad.error).toMatch(/No such file or directory|does not exist/);
  });
});
