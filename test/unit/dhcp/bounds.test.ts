// Memory stays bounded whatever clients send: a flood of DISCOVERs from invented hardware addresses
// and client identifiers (the longest allowed), a flood of REQUESTs, and REQUESTs while the lease file
// does not answer. Counts are asserted, and for the DISCOVER flood the heap itself: it would grow by
// tens of MB if offers were held per client without a cap.
import { randomFillSync } from 'node:crypto';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import fc from 'fast-check';
import { describe, expect, test } from 'vitest';
import { encodePacket } from '../../../src/dhcp/codec.js';
import { MemoryLeaseStore } from '../../../src/dhcp/journal.js';
import { DEFAULT_OFFERS_MAX, LeaseTable } from '../../../src/dhcp/leases.js';
import { MessageType as T } from '../../../src/dhcp/options.js';
import { DhcpServer, MAX_ACK_BACKLOG } from '../../../src/dhcp/server.js';
import type { DhcpTransport, InboundFrame, OutboundFrame } from '../../../src/dhcp/transport.js';
import { buildIpUdp, parseIpUdp } from '../../../src/dhcp/wire.js';
import type { Logger } from '../../../src/log.js';
import { clientPacket, ip, ManualStore, subnet } from './helpers.js';

const T0 = 1_700_000_000_000;
const quiet: Logger = { debug: () => undefined, info: () => undefined, warn: () => undefined, error: () => undefined };

/** Counts what the server sends and keeps nothing (the flood must not fill the test's own memory). */
class CountingTransport implements DhcpTransport {
  sent = 0;
  lastYiaddr = 0;
  handler: ((f: InboundFrame) => void) | undefined;
  start(onFrame: (f: InboundFrame) => void): void {
    this.handler = onFrame;
  }
  send(f: OutboundFrame): boolean {
    this.sent++;
    const p = f.payload;
    this.lastYiaddr = ((p[16] as number) << 24 | (p[17] as number) << 16 | (p[18] as number) << 8 | (p[19] as number)) >>> 0;
    return true;
  }
  stopReceiving(): void {
    this.handler = undefined;
  }
  close(): void {
    this.handler = undefined;
  }
}

/**
 * One datagram, rewritten in place for each invented client: a random chaddr and, when `clientIdLength`
 * is given, a random option 61 of that length (255 is the most an option can hold).
 */
function floodFrames(type: number, clientIdLength?: number, extra: { requested?: string; serverId?: string } = {}) {
  const marker = new Uint8Array(clientIdLength ?? 0).fill(0xab);
  const payload = encodePacket(clientPacket({ type, ...(clientIdLength ? { clientId: marker } : {}), ...extra }));
  const datagram = buildIpUdp(0, 0xffffffff, 68, 67, payload);
  const chaddr = datagram.subarray(28 + 28, 28 + 34);
  let id: Uint8Array | undefined;
  if (clientIdLength) {
    const at = Buffer.from(datagram).indexOf(Buffer.from(marker));
    id = datagram.subarray(at, at + clientIdLength);
  }
  return (): InboundFrame => {
    randomFillSync(chaddr);
    chaddr[0] = ((chaddr[0] as number) & 0xfe) | 0x02; // unicast, locally administered
    if (id) randomFillSync(id);
    const d = parseIpUdp(datagram);
    if (typeof d === 'string') throw new Error(d);
    return { ifindex: 5, pkttype: 1, srcMac: chaddr, datagram: d };
  };
}

function heapAfterGc(): number {
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as () => void;
  gc();
  gc();
  // the lease table keeps its entries in typed arrays, outside the heap: they count too
  const m = process.memoryUsage();
  return m.heapUsed + m.arrayBuffers;
}

function serve(address: string, store = new MemoryLeaseStore()) {
  const transport = new CountingTransport();
  let now = T0;
  const server = new DhcpServer({ transport, store, clock: () => now, log: quiet });
  server.addInterface({ ifindex: 5, ifname: 've-flood', address });
  server.start();
  const deliver = (f: InboundFrame): void => transport.handler?.(f);
  return { server, transport, deliver, advance: (ms: number) => { now += ms; server.sweep(); } };
}

describe('memory under hostile input', () => {
  test('a DISCOVER flood from invented clients holds a bounded number of offers and bounded memory; the offers lapse', () => {
    // A /15: 131 070 addresses, far more than the offers the flood can make us hold.
    const { server, transport, deliver, advance } = serve('198.18.0.1/15');
    const withId = floodFrames(T.DISCOVER, 255);
    const withoutId = floodFrames(T.DISCOVER);
    const flood = (n: number): void => {
      for (let i = 0; i < n; i++) deliver(i & 1 ? withId() : withoutId());
    };
    const empty = heapAfterGc();
    flood(2 * DEFAULT_OFFERS_MAX); // the cap is reached: this is the most the flood can hold
    const held = server.leases().length;
    expect(held).toBe(DEFAULT_OFFERS_MAX);
    const before = heapAfterGc();
    // An offer costs its slot, and its key as a flat string when it is too long for the slot: well
    // under 1.5 KiB even with the longest client id (a key built piecewise would keep 8 KiB of pieces).
    expect((before - empty) / held).toBeLessThan(1536);
    flood(60_000);
    const grown = heapAfterGc() - before;
    expect(server.stats.offers).toBe(2 * DEFAULT_OFFERS_MAX + 60_000);
    expect(transport.sent).toBe(server.stats.offers);
    expect(server.leases().length).toBe(DEFAULT_OFFERS_MAX);
    expect(server.leases().every((l) => l.state === 'offered')).toBe(true);
    // 60 000 more offers held would take ~40 MB (a 255-octet client id is a 513-character key)
    expect(grown).toBeLessThan(8 << 20);
    // Unanswered offers lapse; a real client is served at once.
    advance(31_000);
    expect(server.leases()).toEqual([]);
    deliver(withoutId());
    expect(server.leases()).toHaveLength(1);
    expect(transport.lastYiaddr).not.toBe(0);
  }, 60_000); // a count and heap test, not a timed one: 62 000 frames take ~1 s on a quiet machine, ~9 s at load 20

  test('a REQUEST flood binds at most the pool, and memories of expired bindings are capped', () => {
    const { server, deliver, advance } = serve('192.0.2.1/24');
    // INIT-REBOOT for an address of the subnet: the authoritative server binds it when it is free.
    for (let round = 0; round < 6; round++) {
      for (let host = 2; host < 255; host++) {
        const frame = floodFrames(T.REQUEST, round % 2 ? 64 : undefined, { requested: `192.0.2.${host}` });
        for (let k = 0; k < 4; k++) deliver(frame());
      }
      const all = server.leases();
      expect(all.filter((l) => l.state === 'bound').length).toBeLessThanOrEqual(253);
      expect(all.length).toBeLessThanOrEqual(253 + 1024); // bindings + remembered (rememberMax)
      advance(3_601_000); // the bindings expire and become memories
    }
    expect(server.stats.acks).toBeGreaterThanOrEqual(6 * 253);
    expect(server.leases().length).toBeLessThanOrEqual(1024);
  });

  test('ACKs waiting for a lease file that does not answer are capped; REQUESTs past the cap change nothing', () => {
    const store = new ManualStore();
    const { server, transport, deliver } = serve('198.18.0.1/15', store);
    const frame = floodFrames(T.REQUEST, undefined, { requested: '198.18.7.7' });
    // distinct clients, each asking for an address of its own
    for (let i = 0; i < MAX_ACK_BACKLOG + 500; i++) {
      const f = frame();
      const payload = f.datagram.payload;
      const a = ip('198.18.0.0') + 2 + i;
      const at = Buffer.from(payload).indexOf(Buffer.from([50, 4]), 240) + 2; // option 50's value
      payload[at] = a >>> 24;
      payload[at + 1] = (a >>> 16) & 0xff;
      payload[at + 2] = (a >>> 8) & 0xff;
      payload[at + 3] = a & 0xff;
      deliver(f);
    }
    expect(store.waiting).toHaveLength(MAX_ACK_BACKLOG);
    expect(server.stats.backlogDrops).toBe(500);
    expect(server.leases()).toHaveLength(MAX_ACK_BACKLOG); // the dropped ones bound nothing
    expect(transport.sent).toBe(0);
    store.commit();
    expect(transport.sent).toBe(MAX_ACK_BACKLOG);
    deliver(frame());
    expect(store.waiting).toHaveLength(1); // served again
    expect(server.leases().at(-1)?.address).toMatch(/^198\.1[89]\./);
  });
});

describe('lease table bookkeeping', () => {
  test('at most offersMax offers are held; the oldest is withdrawn and its address is free again', () => {
    const table = new LeaseTable(subnet(), { offersMax: 3 });
    const client = (n: number) => ({ key: `hw:1:02000000000${n}`, mac: `02:00:00:00:00:0${n}`, macHex: `02000000000${n}` });
    for (let n = 1; n <= 5; n++) table.hold(client(n), ip(`192.0.2.${10 + n}`), T0 + 30_000 + n, T0);
    expect(table.offerCount).toBe(3);
    expect([...table.entries()].map((l) => l.clientKey)).toEqual([3, 4, 5].map((n) => client(n).key));
    expect(table.pool.isFree(ip('192.0.2.11'))).toBe(true);
    expect(table.pool.isFree(ip('192.0.2.13'))).toBe(false);
    // a client offered again is not a new offer, and goes to the end of the line
    table.hold(client(3), ip('192.0.2.13'), T0 + 40_000, T0 + 1000);
    table.hold(client(6), ip('192.0.2.16'), T0 + 40_000, T0 + 1000);
    expect([...table.entries()].map((l) => l.clientKey).sort()).toEqual([3, 5, 6].map((n) => client(n).key));
    // bound entries do not count against the offers
    table.bind(client(5), ip('192.0.2.15'), T0 + 3_600_000, undefined, T0 + 1000);
    expect(table.offerCount).toBe(2);
  });

  test('expiry: after expire(now) nothing has ended, nextExpiry is the earliest end, the table never outgrows its bounds', () => {
    const op = fc.record({
      kind: fc.constantFrom('hold', 'bind', 'release', 'forget', 'quarantine', 'expire'),
      client: fc.integer({ min: 0, max: 40 }),
      host: fc.integer({ min: 2, max: 30 }),
      ttl: fc.integer({ min: 1, max: 100_000 }),
      wait: fc.constantFrom(0, 0, 10, 1000, 50_000),
    });
    fc.assert(fc.property(fc.array(op, { maxLength: 200 }), (ops) => {
      const table = new LeaseTable(subnet({ address: '192.0.2.1/27' }), { offersMax: 8, rememberMax: 12, rememberMs: 20_000 });
      let now = T0;
      for (const o of ops) {
        now += o.wait;
        const c = { key: `hw:1:0200000000${o.client.toString(16).padStart(2, '0')}`, mac: 'x', macHex: undefined };
        const a = ip(`192.0.2.${o.host}`);
        switch (o.kind) {
          case 'hold':
            if (table.availableFor(a, c, now)) table.hold(c, a, now + o.ttl, now);
            break;
          case 'bind':
            if (table.availableFor(a, c, now)) table.bind(c, a, now + o.ttl, undefined, now);
            break;
          case 'release':
            table.release(c.key, now + o.ttl);
            break;
          case 'forget':
            table.forgetOffer(c.key);
            break;
          case 'quarantine':
            table.quarantineAddress(a, now + o.ttl);
            break;
          case 'expire': {
            table.expire(now);
            const all = [...table.entries()];
            for (const l of all) expect(l.expiresAt).toBeGreaterThan(now);
            expect(table.nextExpiry()).toBe(all.length ? Math.min(...all.map((l) => l.expiresAt)) : undefined);
            break;
          }
        }
        const all = [...table.entries()];
        expect(table.offerCount).toBeLessThanOrEqual(8);
        expect(all.filter((l) => l.state === 'released').length).toBeLessThanOrEqual(12);
        expect(all.filter((l) => l.state !== 'released').length).toBeLessThanOrEqual(29);
      }
    }), { numRuns: 300 });
  });
});
