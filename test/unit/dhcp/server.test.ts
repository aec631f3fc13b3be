// The server glue with an in-memory transport and lease store and a fake clock: frames in, frames
// out, ACKs held until durable, interfaces added and removed at run time, reservations, restore,
// and resilience to handler failures.
import { describe, expect, test } from 'vitest';
import { decodePacket, encodePacket } from '../../../src/dhcp/codec.js';
import { parseDhcpServeArgs, planInterfaces } from '../../../src/dhcp/cli.js';
import type { InterfaceConfig } from '../../../src/dhcp/config.js';
import { ipv4ToString, macToString, parseIpv4Cidr } from '../../../src/dhcp/ipv4.js';
import { type JournalEntry, type LeaseStore, MemoryLeaseStore, replay } from '../../../src/dhcp/journal.js';
import { MessageType as T } from '../../../src/dhcp/options.js';
import { DhcpServer, type DhcpEvent } from '../../../src/dhcp/server.js';
import type { DhcpTransport, InboundFrame, OutboundFrame } from '../../../src/dhcp/transport.js';
import { buildIpUdp, parseIpUdp } from '../../../src/dhcp/wire.js';
import type { Logger } from '../../../src/log.js';
import { ConfigError } from '../../../src/errors.js';
import { type ClientPacket, clientPacket, ip, ManualStore } from './helpers.js';

class FakeTransport implements DhcpTransport {
  sent: OutboundFrame[] = [];
  handler: ((f: InboundFrame) => void) | undefined;
  batchEnd: (() => void) | undefined;
  failSend = false;
  start(onFrame: (f: InboundFrame) => void, _dropped?: unknown, _failed?: unknown, onBatchEnd?: () => void): void {
    this.handler = onFrame;
    this.batchEnd = onBatchEnd;
  }
  send(f: OutboundFrame): boolean {
    if (this.failSend) throw new Error('boom');
    if (this.closed) throw new Error('send after close');
    this.sent.push(f);
    return true;
  }
  stopReceiving(): void {
    this.handler = undefined;
  }
  close(): void {
    this.handler = undefined;
    this.closed = true;
  }
  closed = false;
  /** Delivers a client packet as the kernel would: on `ifindex`, from the client's MAC. */
  deliver(ifindex: number, c: ClientPacket, dstIp = 0xffffffff, pkttype = 1): void {
    const payload = encodePacket(clientPacket(c));
    const d = parseIpUdp(buildIpUdp(c.ciaddr ? ip(c.ciaddr) : 0, dstIp, 68, 67, payload));
    if (typeof d === 'string') throw new Error(d);
    this.handler?.({ ifindex, pkttype, srcMac: Uint8Array.of(2, 0, 0, 0, 0, 0x42), datagram: d });
  }
  last(): { frame: OutboundFrame; packet: ReturnType<typeof decodePacket> } {
    const frame = this.sent[this.sent.length - 1];
    if (!frame) throw new Error('nothing sent');
    return { frame, packet: decodePacket(frame.payload) };
  }
}

const quiet: Logger & { lines: string[] } = {
  lines: [],
  debug: () => undefined,
  info: () => undefined,
  warn(m) { this.lines.push(m); },
  error(m) { this.lines.push(m); },
};

function setup(store: LeaseStore = new MemoryLeaseStore(), iface: Partial<InterfaceConfig> = {}) {
  const transport = new FakeTransport();
  const events: DhcpEvent[] = [];
  let now = 1_700_000_000_000;
  const server = new DhcpServer({ transport, store, clock: () => now, log: quiet, onEvent: (e) => events.push(e) });
  server.addInterface({ ifindex: 5, ifname: 've-a', address: '192.0.2.1/24', ...iface });
  server.start();
  return { server, transport, events, advance: (ms: number) => { now += ms; server.sweep(); }, now: () => now };
}

describe('DhcpServer', () => {
  test('at the end of each receive batch the lease store commits, so the batch\'s ACKs go out with it', () => {
    const transport = new FakeTransport();
    const store = new ManualStore();
    let commits = 0;
    store.commitNow = () => {
      commits++;
      store.commit();
    };
    const server = new DhcpServer({ transport, store, clock: () => 1_700_000_000_000, log: quiet });
    server.addInterface({ ifindex: 5, ifname: 've-a', address: '192.0.2.1/24' });
    server.start();
    transport.deliver(5, { type: T.DISCOVER });
    const offered = ipv4ToString(transport.last().packet.yiaddr);
    transport.deliver(5, { type: T.REQUEST, requested: offered, serverId: '192.0.2.1' });
    expect(transport.sent).toHaveLength(1); // the ACK waits for the lease file
    transport.batchEnd?.();
    expect(commits).toBe(1);
    expect(transport.sent).toHaveLength(2);
    expect(transport.last().packet.options.messageType()).toBe(T.ACK);
  });

  test('a compaction reads its records later, a chunk at a time: they are the state when it began', () => {
    // a store that keeps what compact() was given, unread, as the file store does between its turns
    let given: Iterable<JournalEntry> | undefined;
    const store = new MemoryLeaseStore();
    store.compact = (entries) => { given = entries; };
    const { server, transport } = setup(store, { address: '192.0.2.1/24' });
    const dora = (mac: string, requested: string): void => {
      transport.deliver(5, { type: T.REQUEST, requested, mac });
    };
    for (let i = 0; i < 3; i++) dora(`02:00:00:00:00:1${i}`, `192.0.2.${50 + i}`);
    store.appendedSinceCompaction = 1_000_000;
    server.sweep();
    expect(given).toBeDefined();
    // changed after the compaction began: a new client, a release, a renewal elsewhere
    dora('02:00:00:00:00:20', '192.0.2.60');
    transport.deliver(5, { type: T.RELEASE, mac: '02:00:00:00:00:10', ciaddr: '192.0.2.50', serverId: '192.0.2.1' });
    const records = [...(given as Iterable<JournalEntry>)];
    expect(records.map((r) => (r.op === 'bind' ? `${r.op} ${r.ip} ${r.mac}` : r.op))).toEqual([
      'bind 192.0.2.50 02:00:00:00:00:10', 'bind 192.0.2.51 02:00:00:00:00:11', 'bind 192.0.2.52 02:00:00:00:00:12',
    ]);
  });

  test('DISCOVER → OFFER unicast to chaddr; REQUEST → ACK once durable', () => {
    const store = new ManualStore();
    const { transport, events } = setup(store);
    transport.deliver(5, { type: T.DISCOVER });
    const offer = transport.last();
    expect(offer.packet.options.messageType()).toBe(T.OFFER);
    expect(offer.frame).toMatchObject({ ifindex: 5, srcIp: ip('192.0.2.1'), dstIp: offer.packet.yiaddr, srcPort: 67, dstPort: 68 });
    expect(macToString(offer.frame.dstMac)).toBe('02:00:00:00:00:42');

    transport.deliver(5, { type: T.REQUEST, serverId: '192.0.2.1', requested: ipv4ToString(offer.packet.yiaddr) });
    expect(transport.sent).toHaveLength(1); // the ACK waits for the journal
    expect(events).toEqual([]); // and so does the event
    expect(store.entries).toEqual([expect.objectContaining({ op: 'bind', if: 've-a', ip: ipv4ToString(offer.packet.yiaddr) })]);
    store.commit();
    expect(transport.sent).toHaveLength(2);
    expect(transport.last().packet.options.messageType()).toBe(T.ACK);
    expect(events).toEqual([expect.objectContaining({ type: 'bound', ifname: 've-a', renewed: false })]);
  });

  test('stop() lets ACKs waiting for the journal go out before the sockets close', async () => {
    const store = new ManualStore();
    const { server, transport } = setup(store);
    transport.deliver(5, { type: T.REQUEST, requested: '192.0.2.50' });
    const stopping = server.stop();
    transport.deliver(5, { type: T.REQUEST, requested: '192.0.2.51', mac: '02:00:00:00:00:43' }); // not received any more
    store.commit();
    await stopping;
    expect(transport.sent.map((f) => decodePacket(f.payload).yiaddr)).toEqual([ip('192.0.2.50')]);
    expect(transport.closed).toBe(true);
  });

  test('an ACK whose lease could not be written is never sent', () => {
    const store = new ManualStore();
    const { server, transport } = setup(store);
    transport.deliver(5, { type: T.REQUEST, requested: '192.0.2.50' });
    store.commit(new Error('disk full'));
    expect(transport.sent).toHaveLength(0);
    expect(server.stats.journalFailures).toBe(1);
  });

  test('answers only on served interfaces; interfaces come and go at run time', () => {
    const { server, transport } = setup();
    transport.deliver(6, { type: T.DISCOVER });
    expect(transport.sent).toHaveLength(0);
    expect(server.stats.notServed).toBe(1);
    server.addInterface({ ifindex: 6, ifname: 've-b', address: '198.51.100.1/28' });
    transport.deliver(6, { type: T.DISCOVER });
    expect(transport.last().frame.srcIp).toBe(ip('198.51.100.1'));
    expect(() => server.addInterface({ ifindex: 6, ifname: 've-c', address: '203.0.113.1/24' })).toThrow(/index 6 is already served/);
    expect(() => server.addInterface({ ifindex: 7, ifname: 've-b', address: '203.0.113.1/24' })).toThrow(ConfigError);
    expect(server.interfaces().sort()).toEqual(['ve-a', 've-b']);
    server.removeInterface('ve-b');
    transport.deliver(6, { type: T.DISCOVER });
    expect(transport.sent).toHaveLength(1);
  });

  test('removing an interface forgets its leases and says so in the journal', () => {
    const store = new MemoryLeaseStore();
    const { server, transport } = setup(store);
    transport.deliver(5, { type: T.REQUEST, requested: '192.0.2.50' });
    expect(server.leases('ve-a')).toEqual([expect.objectContaining({ address: '192.0.2.50', state: 'bound' })]);
    expect(server.removeInterface('ve-a')).toEqual([expect.objectContaining({ address: '192.0.2.50' })]);
    expect(store.entries.at(-1)).toEqual({ op: 'drop', if: 've-a' });
    expect(() => server.leases('ve-a')).toThrow(/not served/);
  });

  test('a reservation made before the client asks is what it gets', () => {
    const { server, transport } = setup();
    server.reserve('ve-a', { mac: '02:00:00:00:00:42', address: '192.0.2.77' });
    transport.deliver(5, { type: T.DISCOVER });
    expect(ipv4ToString(transport.last().packet.yiaddr)).toBe('192.0.2.77');
    expect(() => server.reserve('ve-a', { mac: 'zz', address: '192.0.2.78' })).toThrow(/not a MAC/);
    expect(() => server.reserve('ve-a', { mac: '02:00:00:00:00:43', address: '198.51.100.1' })).toThrow(/outside the subnet/);
    expect(server.unreserve('ve-a', { mac: '02:00:00:00:00:42' })).toBe(true);
    expect(server.unreserve('ve-a', { mac: '02:00:00:00:00:42' })).toBe(false);
  });

  test('a reservation takes the address from another client, who is told NAK on renewal', () => {
    const store = new MemoryLeaseStore();
    const { server, transport } = setup(store);
    transport.deliver(5, { type: T.REQUEST, requested: '192.0.2.77' });
    server.reserve('ve-a', { mac: '02:00:00:00:00:99', address: '192.0.2.77' });
    expect(quiet.lines.at(-1)).toMatch(/takes it from 02:00:00:00:00:42/);
    expect(store.entries.at(-1)).toMatchObject({ op: 'release', ip: '192.0.2.77' });
    transport.deliver(5, { type: T.REQUEST, ciaddr: '192.0.2.77' }, ip('192.0.2.1'), 0);
    expect(transport.last().packet.options.messageType()).toBe(T.NAK);
  });

  test('leases come back from the store when their interface is added, and stay stored while it is not', () => {
    const first = new MemoryLeaseStore();
    const a = setup(first);
    a.transport.deliver(5, { type: T.REQUEST, requested: '192.0.2.50' });
    const restored = new MemoryLeaseStore();
    replay(first.entries, restored.loaded);
    replay([{ op: 'bind', if: 've-later', c: 'id:0102', mac: '02:00:00:00:00:02', ip: '203.0.113.9', exp: a.now() + 1000 }], restored.loaded);
    const b = setup(restored);
    expect(b.server.leases('ve-a')).toEqual([expect.objectContaining({ address: '192.0.2.50', state: 'bound', mac: '02:00:00:00:00:42' })]);
    expect(restored.loaded.has('ve-later')).toBe(true);
    // renewing after the restart is a renewal of a known lease
    b.transport.deliver(5, { type: T.REQUEST, ciaddr: '192.0.2.50' }, ip('192.0.2.1'), 0);
    expect(b.events).toEqual([expect.objectContaining({ type: 'bound', renewed: true, address: '192.0.2.50' })]);
    b.server.addInterface({ ifindex: 9, ifname: 've-later', address: '203.0.113.1/24' });
    expect(b.server.leases('ve-later')).toEqual([expect.objectContaining({ address: '203.0.113.9' })]);
  });

  test('expiry, release and decline reach the journal and the events', () => {
    const store = new MemoryLeaseStore();
    const { transport, events, advance } = setup(store, { leaseTime: 60 });
    transport.deliver(5, { type: T.REQUEST, requested: '192.0.2.50' });
    transport.deliver(5, { type: T.RELEASE, ciaddr: '192.0.2.50' });
    transport.deliver(5, { type: T.REQUEST, requested: '192.0.2.51', mac: '02:00:00:00:00:43' });
    transport.deliver(5, { type: T.DECLINE, requested: '192.0.2.51', mac: '02:00:00:00:00:43' });
    transport.deliver(5, { type: T.REQUEST, requested: '192.0.2.52', mac: '02:00:00:00:00:44' });
    advance(61_000);
    expect(events.map((e) => e.type)).toEqual(['bound', 'released', 'bound', 'declined', 'bound', 'expired']);
    expect(store.entries.map((e) => e.op)).toEqual(['bind', 'release', 'bind', 'decline', 'bind']);
  });

  test('a failure while handling one frame is logged and the server goes on', () => {
    const { server, transport } = setup();
    transport.failSend = true;
    transport.deliver(5, { type: T.DISCOVER });
    expect(server.stats.internalErrors).toBe(1);
    expect(quiet.lines.at(-1)).toMatch(/internal error handling a DHCP DISCOVER on ve-a/);
    transport.failSend = false;
    transport.deliver(5, { type: T.DISCOVER, mac: '02:00:00:00:00:45' });
    expect(transport.sent).toHaveLength(1);
  });

  test('undecodable payloads are counted and dropped', () => {
    const { server, transport } = setup();
    const d = parseIpUdp(buildIpUdp(0, 0xffffffff, 68, 67, new Uint8Array(100)));
    if (typeof d === 'string') throw new Error(d);
    transport.handler?.({ ifindex: 5, pkttype: 1, srcMac: new Uint8Array(6), datagram: d });
    expect(server.stats.malformed).toBe(1);
    expect(transport.sent).toHaveLength(0);
  });
});

describe('dhcp-serve command line', () => {
  test('flags in both spellings, repeated ones, defaults', () => {
    const a = parseDhcpServeArgs(['--interface', 've-a', '--interface=ve-b', '--pool', '192.0.2.0/24', '--pool=198.51.100.10-198.51.100.20',
      '--dns', '198.51.100.53,198.51.100.54', '--lease-time=600', '--static', '02:00:00:00:00:42=192.0.2.42', '--router', 'none']);
    expect(a).toMatchObject({
      interfaces: ['ve-a', 've-b'], pools: ['192.0.2.0/24', '198.51.100.10-198.51.100.20'], dns: ['198.51.100.53', '198.51.100.54'],
      leaseTime: 600, statics: [{ mac: '02:00:00:00:00:42', address: '192.0.2.42' }], routers: [], leaseFile: '/var/lib/nspawn-ts/dhcp/leases',
      durability: 'write',
    });
  });

  test.each([
    [['--pool', '192.0.2.0/24'], /--interface is required/],
    [['--interface', 've-a'], /--pool is required/],
    [['--interface', 've-a', '--pool', '192.0.2.0/33'], /--pool: "192.0.2.0\/33" is neither a CIDR/],
    [['--interface', 've-a', '--pool', '192.0.2.0/24', '--lease-time', '0'], /--lease-time: "0" is not a number of seconds/],
    [['--interface', 've-a', '--pool', '192.0.2.0/24', '--static', '02:00=192.0.2.4'], /--static: "02:00=192.0.2.4" is not MAC=IP/],
    [['--interface', 've-a', '--pool', '192.0.2.0/24', '--dns', '1.2.3'], /--dns: "1.2.3" is not an IPv4 address/],
    [['--interface', 've-a', '--pool', '192.0.2.0/24', '--frob'], /unknown option --frob/],
    [['--interface', 've-a', '--pool', '192.0.2.0/24', 'extra'], /unexpected argument "extra"/],
    [['--interface', 've-a', '--pool'], /--pool needs a value/],
    [['--interface', 've-a', '--interface', 've-a', '--pool', '192.0.2.0/24'], /given twice/],
    [['--interface', 'a/b', '--pool', '192.0.2.0/24'], /not an interface name/],
    [['--interface', 've-a', '--pool', '192.0.2.0/24', '--durability', 'maybe'], /not fsync or write/],
  ])('%j → %s', (argv, re) => {
    expect(() => parseDhcpServeArgs(argv)).toThrow(ConfigError);
    expect(() => parseDhcpServeArgs(argv)).toThrow(re);
  });

  test('--max-leases-per-source caps the dynamic leases of one Ethernet source on every interface (default: no cap)', () => {
    const link = { ifindex: 3, ifname: 've-a', addresses: [parseIpv4Cidr('192.0.2.1/24')!] };
    const base = ['--interface', 've-a', '--pool', '192.0.2.0/24'];
    expect(planInterfaces(parseDhcpServeArgs(base), [link])[0]?.maxLeasesPerSource).toBeUndefined();
    expect(planInterfaces(parseDhcpServeArgs([...base, '--max-leases-per-source', '4']), [link])[0]).toMatchObject({ maxLeasesPerSource: 4 });
    expect(() => parseDhcpServeArgs([...base, '--max-leases-per-source=lots'])).toThrow(/--max-leases-per-source: "lots" is not a number of leases/);
  });

  test('each interface takes the pool in its own subnet; statics go where their address is', () => {
    const args = parseDhcpServeArgs(['--interface', 've-a', '--interface', 've-b', '--pool', '198.51.100.0/24', '--pool', '192.0.2.100-192.0.2.150',
      '--static', '02:00:00:00:00:42=192.0.2.120']);
    const link = (ifindex: number, ifname: string, cidr: string) => ({ ifindex, ifname, addresses: [parseIpv4Cidr(cidr)!] });
    const plan = planInterfaces(args, [link(3, 've-a', '192.0.2.1/24'), link(4, 've-b', '198.51.100.1/24')]);
    expect(plan).toEqual([
      expect.objectContaining({ ifname: 've-a', address: '192.0.2.1/24', pool: '192.0.2.100-192.0.2.150', reservations: [{ mac: '02:00:00:00:00:42', address: '192.0.2.120' }] }),
      expect.objectContaining({ ifname: 've-b', address: '198.51.100.1/24', pool: '198.51.100.0/24', reservations: [] }),
    ]);
    expect(() => planInterfaces(args, [link(3, 've-a', '192.0.2.1/24'), { ifindex: 4, ifname: 've-b', addresses: [] }])).toThrow(/ve-b has no IPv4 address/);
    expect(() => planInterfaces(args, [link(3, 've-a', '192.0.2.1/24'), link(4, 've-b', '203.0.113.1/24')])).toThrow(/no --pool lies in a subnet of ve-b \(its addresses: 203.0.113.1\/24\)/);
  });
});
