// When the server compacts its lease file: also under a flood that never leaves the store idle (with
// durability 'fsync' some group is always being synced), so the file stays bounded while every ACK
// still waits for the sync of the file that holds its record.
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import { decodePacket, encodePacket } from '../../../src/dhcp/codec.js';
import { ipv4ToString } from '../../../src/dhcp/ipv4.js';
import { decodeLine, FileLeaseStore, type JournalEntry, replay } from '../../../src/dhcp/journal.js';
import { MessageType as T } from '../../../src/dhcp/options.js';
import { DhcpServer } from '../../../src/dhcp/server.js';
import type { DhcpTransport, InboundFrame, OutboundFrame } from '../../../src/dhcp/transport.js';
import { buildIpUdp, parseIpUdp } from '../../../src/dhcp/wire.js';
import type { Logger } from '../../../src/log.js';
import { clientPacket } from './helpers.js';

const T0 = 1_700_000_000_000;
const quiet: Logger = { debug: () => undefined, info: () => undefined, warn: () => undefined, error: () => undefined };
const bind = (c: string, ip: string): JournalEntry => ({ op: 'bind', if: 've-a', c, mac: '02:00:00:00:00:01', ip, exp: T0 + 3_600_000 });

/** Keeps the ACKs it is handed: client MAC → address. */
class AckTransport implements DhcpTransport {
  readonly acked = new Map<string, string>();
  acks = 0;
  handler: ((f: InboundFrame) => void) | undefined;
  batchEnd: (() => void) | undefined;
  start(onFrame: (f: InboundFrame) => void, _dropped?: unknown, _failed?: unknown, onBatchEnd?: () => void): void {
    this.handler = onFrame;
    this.batchEnd = onBatchEnd;
  }
  send(f: OutboundFrame): boolean {
    const p = decodePacket(f.payload);
    if (p.options.messageType() === T.ACK) {
      this.acks++;
      this.acked.set(Buffer.from(p.chaddr.subarray(0, 6)).toString('hex'), ipv4ToString(p.yiaddr));
    }
    return true;
  }
  stopReceiving(): void {
    this.handler = undefined;
  }
  close(): void {
    this.handler = undefined;
  }
}

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'nspawn-compaction-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

describe('lease file compaction', () => {
  test("a compaction may begin while a group's fdatasync runs: its ACKs wait for that sync, the rename for the ACKs", async () => {
    const path = join(dir, 'leases');
    const store = new FileLeaseStore(path, { log: quiet, now: T0, durability: 'fsync' });
    const order: string[] = [];
    try {
      store.append(bind('id:1', '192.0.2.5'), (err) => order.push(err ? `error ${err.message}` : 'acked'));
      store.commitNow(); // written; its fdatasync runs on the thread pool
      expect(store.idle).toBe(false);
      expect(store.compacting).toBe(false);
      store.compact([bind('id:1', '192.0.2.5'), bind('id:2', '192.0.2.6')]);
      expect(store.compacting).toBe(true);
      store.append(bind('id:3', '192.0.2.7'), (err) => order.push(err ? `error ${err.message}` : 'acked late'));
      while (store.compacting) await new Promise((r) => setTimeout(r, 1));
      order.push('renamed');
      await store.whenIdle();
      // the late one went to the old file and the new one's tail, or (renamed first) to the new file
      expect(order.filter((o) => o !== 'acked late')).toEqual(['acked', 'renamed']);
      expect(order).toContain('acked late');
    } finally {
      await store.close();
    }
    expect(existsSync(`${path}.tmp`)).toBe(false);
    const lines = readFileSync(path, 'utf8').split('\n').slice(1).map((l) => decodeLine(l)).filter((e): e is JournalEntry => e !== undefined);
    expect([...(replay(lines).get('ve-a')?.clients.keys() ?? [])].sort()).toEqual(['id:1', 'id:2', 'id:3']);
  });

  test("under a steady flood of renewals with durability 'fsync' the file stays below 4× the live leases, and every ACK is in it", async () => {
    const CLIENTS = 300;
    const path = join(dir, 'leases');
    let compacted = 0;
    const log: Logger = {
      debug: (m) => { if (m === 'lease file compacted') compacted++; }, info: () => undefined, warn: () => undefined, error: () => undefined,
    };
    const store = new FileLeaseStore(path, { log, now: T0, durability: 'fsync' });
    compacted = 0; // opening rewrote it
    const transport = new AckTransport();
    const server = new DhcpServer({ transport, store, clock: () => T0, log, compactMinRecords: 2 * CLIENTS });
    server.addInterface({ ifindex: 5, ifname: 've-a', address: '198.18.0.1/16' });
    server.start();
    const request = (n: number): void => {
      const mac = `02:cc:00:00:${((n >> 8) & 0xff).toString(16).padStart(2, '0')}:${(n & 0xff).toString(16).padStart(2, '0')}`;
      const payload = encodePacket(clientPacket({ type: T.REQUEST, mac, xid: n, requested: `198.18.${2 + Math.floor(n / 200)}.${(n % 200) + 1}` }));
      const d = parseIpUdp(buildIpUdp(0, 0xffffffff, 68, 67, payload));
      if (typeof d === 'string') throw new Error(d);
      transport.handler?.({ ifindex: 5, pkttype: 1, srcMac: Uint8Array.of(2, 0xcc, 0, 0, 0, 1), datagram: d });
    };
    const records = (): number => readFileSync(path, 'utf8').split('\n').length - 2; // header, final newline
    let most = 0;
    let sent = 0;
    try {
      while (sent < 4000) {
        // clients that wait for their answer, as real ones do: 32 requests in flight
        while (sent - transport.acks < 32) request(sent++ % CLIENTS);
        transport.batchEnd?.(); // the batch's group is written; its fdatasync runs on the thread pool
        // the flood: whenever the sweep looks, a group is being synced (or waits for the one that is)
        expect(store.idle).toBe(false);
        server.sweep();
        most = Math.max(most, records());
        await new Promise((r) => setImmediate(r));
      }
      await server.stop();
    } finally {
      await store.close();
    }
    expect(compacted).toBeGreaterThanOrEqual(3); // about every 2 × 300 renewals
    expect(most).toBeLessThan(4 * CLIENTS); // 2 × live appended + the snapshot + what came while it ran (without: 4,300)
    // every request got its ACK (nothing stalled), and each ACKed lease is in the file
    expect(transport.acks).toBe(sent);
    const lines = readFileSync(path, 'utf8').split('\n').slice(1).map((l) => decodeLine(l)).filter((e): e is JournalEntry => e !== undefined);
    const inFile = new Map<string, string>();
    for (const [, r] of replay(lines).get('ve-a')?.clients ?? []) if (r.op === 'bind') inFile.set(r.mac.replace(/:/g, ''), r.ip);
    expect(inFile.size).toBe(CLIENTS);
    expect(transport.acked.size).toBe(CLIENTS);
    for (const [mac, ip] of transport.acked) expect(inFile.get(mac), mac).toBe(ip);
  });
});
