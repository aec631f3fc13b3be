// One link shared by several containers (a zone bridge): what a client may do to another's lease.
// The frame's Ethernet source is what the packet socket saw; chaddr, client id and ciaddr are
// whatever the sender wrote. A MAC reservation belongs to frames from that MAC, a RELEASE or DECLINE
// counts only from the source that won the lease, the reservation's owner always gets its address,
// dynamic holds are capped per source, and a conflict in the table is a NAK, never an internal error.
import { afterEach, describe, expect, test, vi } from 'vitest';
import { applyDecision } from '../../../src/dhcp/apply.js';
import { decodePacket, encodePacket } from '../../../src/dhcp/codec.js';
import type { InterfaceConfig } from '../../../src/dhcp/config.js';
import { type Decision, decide } from '../../../src/dhcp/decide.js';
import { ipv4ToString, parseMac } from '../../../src/dhcp/ipv4.js';
import { MemoryLeaseStore } from '../../../src/dhcp/journal.js';
import { LeaseTable } from '../../../src/dhcp/leases.js';
import { MessageType as T } from '../../../src/dhcp/options.js';
import { AllocationError } from '../../../src/dhcp/pool.js';
import { DhcpServer } from '../../../src/dhcp/server.js';
import type { DhcpTransport, InboundFrame, OutboundFrame } from '../../../src/dhcp/transport.js';
import { buildIpUdp, parseIpUdp } from '../../../src/dhcp/wire.js';
import type { Logger } from '../../../src/log.js';
import { type ClientPacket, clientPacket, ip, subnet } from './helpers.js';

const SERVER = '192.0.2.1';
const VICTIM = '02:00:00:00:00:aa';
const ATTACKER = '02:00:00:00:00:bb';
/** udhcpc's client id: 01 ‖ MAC. */
const VICTIM_ID = Uint8Array.of(1, 2, 0, 0, 0, 0, 0xaa);

function mac(m: string): Uint8Array {
  const b = parseMac(m);
  if (!b) throw new Error(m);
  return b;
}

class Link {
  table: LeaseTable;
  now = 1_700_000_000_000;
  constructor(over: Partial<InterfaceConfig> = {}) {
    this.table = new LeaseTable(subnet({ address: `${SERVER}/24`, ...over }));
  }
  /** A packet from the Ethernet source `src` (that came in on bridge port `port`, if given). */
  send(src: string, c: ClientPacket, port?: number): Decision {
    const packet = decodePacket(encodePacket(clientPacket(c)));
    const d = decide(port === undefined ? { packet, unicast: false, srcMac: mac(src) } : { packet, unicast: false, srcMac: mac(src), ingressPort: port }, this.table, this.now);
    applyDecision(this.table, d, this.now);
    return d;
  }
  dora(src: string, c: Partial<ClientPacket>, port?: number): Decision {
    const offer = this.send(src, { ...c, type: T.DISCOVER }, port);
    if (offer.kind !== 'offer') return offer;
    return this.send(src, { ...c, type: T.REQUEST, serverId: SERVER, requested: ipv4ToString(offer.address) }, port);
  }
}

describe('a reserved address on a shared link', () => {
  test("the attack of issue 12: another container's RELEASE and REQUEST in the victim's name change nothing", () => {
    const link = new Link({ reservations: [{ mac: VICTIM, address: '192.0.2.50' }] });
    expect(link.dora(VICTIM, { mac: VICTIM, clientId: VICTIM_ID })).toMatchObject({ kind: 'ack', address: ip('192.0.2.50') });
    // RELEASE with the victim's client id, chaddr and address, from the attacker's port
    expect(link.send(ATTACKER, { type: T.RELEASE, mac: VICTIM, clientId: VICTIM_ID, ciaddr: '192.0.2.50', serverId: SERVER }))
      .toMatchObject({ kind: 'ignore', reason: expect.stringMatching(/another Ethernet source/) });
    expect(link.table.lease(`id:010200000000aa`)?.state).toBe('bound');
    // REQUEST with the victim's MAC as chaddr and no client id: not the reservation's owner
    expect(link.send(ATTACKER, { type: T.REQUEST, mac: VICTIM, requested: '192.0.2.50' })).toMatchObject({ kind: 'nak' });
    expect(link.send(ATTACKER, { type: T.REQUEST, mac: VICTIM, serverId: SERVER, requested: '192.0.2.50' })).toMatchObject({ kind: 'nak' });
    expect(link.send(ATTACKER, { type: T.DISCOVER, mac: VICTIM })).not.toMatchObject({ address: ip('192.0.2.50') });
    // DECLINE in the victim's name: ignored, the address is not quarantined
    expect(link.send(ATTACKER, { type: T.DECLINE, mac: VICTIM, clientId: VICTIM_ID, requested: '192.0.2.50', serverId: SERVER })).toMatchObject({ kind: 'ignore' });
    expect([...link.table.quarantined()]).toEqual([]);
    // the victim renews and rebinds as before
    expect(link.send(VICTIM, { type: T.REQUEST, mac: VICTIM, clientId: VICTIM_ID, ciaddr: '192.0.2.50' })).toMatchObject({ kind: 'ack', address: ip('192.0.2.50') });
    expect(link.dora(VICTIM, { mac: VICTIM, clientId: VICTIM_ID })).toMatchObject({ kind: 'ack', address: ip('192.0.2.50') });
    // its own RELEASE counts
    expect(link.send(VICTIM, { type: T.RELEASE, mac: VICTIM, clientId: VICTIM_ID, ciaddr: '192.0.2.50', serverId: SERVER })).toMatchObject({ kind: 'release' });
  });

  test('the owner always wins: a second client of the same MAC takes the address over, no conflict', () => {
    const link = new Link({ reservations: [{ mac: VICTIM, address: '192.0.2.50' }] });
    expect(link.dora(VICTIM, { mac: VICTIM, clientId: VICTIM_ID })).toMatchObject({ kind: 'ack' });
    // dhclient after udhcpc in the same container: no client id, the same MAC and port
    expect(link.dora(VICTIM, { mac: VICTIM })).toMatchObject({ kind: 'ack', address: ip('192.0.2.50') });
    expect(link.table.holderOf(ip('192.0.2.50'))?.clientKey).toBe('hw:1:0200000000aa');
    expect(link.table.lease('id:010200000000aa')?.state).toBe('released');
  });

  test('a dynamic holder of an address reserved later loses it to the owner', () => {
    const link = new Link();
    const got = link.dora(ATTACKER, { mac: ATTACKER, requested: '192.0.2.50' });
    expect(got).toMatchObject({ kind: 'ack', address: ip('192.0.2.50') });
    link.table.addReservation({ macHex: '0200000000aa', address: ip('192.0.2.50') });
    expect(link.dora(VICTIM, { mac: VICTIM, clientId: VICTIM_ID })).toMatchObject({ kind: 'ack', address: ip('192.0.2.50') });
    expect(link.send(ATTACKER, { type: T.REQUEST, mac: ATTACKER, ciaddr: '192.0.2.50' })).toMatchObject({ kind: 'nak' });
  });
});

describe('dynamic leases per source', () => {
  test('one source inventing clients holds at most maxLeasesPerSource addresses; others and renewals are served', () => {
    const link = new Link({ maxLeasesPerSource: 4, reservations: [{ mac: VICTIM, address: '192.0.2.50' }] });
    const acks: string[] = [];
    for (let i = 0; i < 20; i++) {
      const m = `02:66:00:00:00:${i.toString(16).padStart(2, '0')}`;
      const d = link.dora(ATTACKER, { mac: m });
      if (d.kind === 'ack') acks.push(m);
      else expect(d).toMatchObject({ reason: expect.stringMatching(/holds 4 address\(es\) already \(at most 4 per source\)/) });
    }
    expect(acks).toHaveLength(4);
    expect(link.table.heldFrom('0200000000bb')).toBe(4);
    // an INIT-REBOOT for a new client from the same source: NAK
    expect(link.send(ATTACKER, { type: T.REQUEST, mac: '02:66:00:00:01:00', requested: '192.0.2.99' })).toMatchObject({ kind: 'nak' });
    // renewals of what it holds go on
    for (const m of acks) {
      const held = link.table.lease(`hw:1:${m.replace(/:/g, '')}`);
      expect(link.send(ATTACKER, { type: T.REQUEST, mac: m, ciaddr: ipv4ToString(held!.address) })).toMatchObject({ kind: 'ack' });
    }
    // another source, and a reservation's owner, are served
    expect(link.dora('02:00:00:00:00:cc', { mac: '02:00:00:00:00:cc' })).toMatchObject({ kind: 'ack' });
    expect(link.dora(VICTIM, { mac: VICTIM })).toMatchObject({ kind: 'ack', address: ip('192.0.2.50') });
    // a released lease makes room again
    const first = link.table.lease(`hw:1:${(acks[0] as string).replace(/:/g, '')}`)!;
    expect(link.send(ATTACKER, { type: T.RELEASE, mac: acks[0], ciaddr: ipv4ToString(first.address), serverId: SERVER })).toMatchObject({ kind: 'release' });
    expect(link.table.heldFrom('0200000000bb')).toBe(3);
    expect(link.dora(ATTACKER, { mac: '02:66:00:00:02:00' })).toMatchObject({ kind: 'ack' });
  });

  test('behind a bridge port, the port is the source: invented Ethernet sources do not escape the cap, a RELEASE from another port counts not', () => {
    const link = new Link({ maxLeasesPerSource: 4 });
    const acks: string[] = [];
    for (let i = 0; i < 20; i++) {
      const m = `02:66:00:00:00:${i.toString(16).padStart(2, '0')}`;
      const d = link.dora(m, { mac: m }, 7); // each request from its own invented MAC, all through port 7
      if (d.kind === 'ack') acks.push(m);
      else expect(d).toMatchObject({ reason: expect.stringMatching(/its bridge port \(ifindex 7\) holds 4 address\(es\) already/) });
    }
    expect(acks).toHaveLength(4);
    expect(link.table.heldFrom('port7')).toBe(4);
    // another port is served; renewals through port 7 go on
    expect(link.dora(VICTIM, { mac: VICTIM }, 8)).toMatchObject({ kind: 'ack' });
    const held = link.table.lease(`hw:1:${(acks[0] as string).replace(/:/g, '')}`)!;
    expect(link.send(acks[0] as string, { type: T.REQUEST, mac: acks[0], ciaddr: ipv4ToString(held.address) }, 7)).toMatchObject({ kind: 'ack' });
    // the same MAC and client through another port does not release it; through its port it does
    const release = { type: T.RELEASE, mac: acks[0], ciaddr: ipv4ToString(held.address), serverId: SERVER };
    expect(link.send(acks[0] as string, release, 8)).toMatchObject({ kind: 'ignore' });
    expect(link.table.heldFrom('port7')).toBe(4);
    expect(link.send(acks[0] as string, release, 7)).toMatchObject({ kind: 'release' });
    expect(link.table.heldFrom('port7')).toBe(3);
  });

  test('offers count too: a DISCOVER flood from one source holds at most the cap', () => {
    const link = new Link({ maxLeasesPerSource: 8 });
    for (let i = 0; i < 300; i++) link.send(ATTACKER, { type: T.DISCOVER, mac: `02:66:00:00:${(i >> 8).toString(16).padStart(2, '0')}:${(i & 0xff).toString(16).padStart(2, '0')}` });
    expect(link.table.offerCount).toBe(8);
    expect(link.dora(VICTIM, { mac: VICTIM })).toMatchObject({ kind: 'ack' });
  });

  test('a reservation added over a dynamic hold, and removed again, keeps the counts right', () => {
    const link = new Link({ maxLeasesPerSource: 2 });
    expect(link.dora(VICTIM, { mac: VICTIM, requested: '192.0.2.50' })).toMatchObject({ kind: 'ack', address: ip('192.0.2.50') });
    expect(link.table.heldFrom('0200000000aa')).toBe(1);
    const r = { macHex: '0200000000aa', address: ip('192.0.2.50') };
    link.table.addReservation(r);
    expect(link.table.heldFrom('0200000000aa')).toBe(0);
    link.table.removeReservation(r);
    expect(link.table.heldFrom('0200000000aa')).toBe(1);
    link.now += 3_600_001;
    link.table.expire(link.now);
    expect(link.table.heldFrom('0200000000aa')).toBe(0);
  });
});

describe('the server on a conflict in the lease table', () => {
  afterEach(() => {
    vi.restoreAllMocks();
  });

  test('an AllocationError while binding is answered with a NAK, not an internal error', () => {
    const sent: OutboundFrame[] = [];
    let onFrame: ((f: InboundFrame) => void) | undefined;
    const transport: DhcpTransport = {
      start: (h) => { onFrame = h; },
      send: (f) => { sent.push(f); return true; },
      stopReceiving: () => undefined,
      close: () => undefined,
    };
    const errors: string[] = [];
    const log: Logger = { debug: () => undefined, info: () => undefined, warn: (m) => errors.push(m), error: (m) => errors.push(m) };
    const server = new DhcpServer({ transport, store: new MemoryLeaseStore(), log });
    server.addInterface({ ifindex: 5, ifname: 'vz-a', address: `${SERVER}/24` });
    server.start();
    const deliver = (c: ClientPacket): ReturnType<typeof decodePacket> => {
      const d = parseIpUdp(buildIpUdp(0, 0xffffffff, 68, 67, encodePacket(clientPacket(c))));
      if (typeof d === 'string') throw new Error(d);
      onFrame?.({ ifindex: 5, pkttype: 1, srcMac: mac(VICTIM), datagram: d });
      return decodePacket((sent[sent.length - 1] as OutboundFrame).payload);
    };
    vi.spyOn(LeaseTable.prototype, 'bind').mockImplementationOnce(() => {
      throw new AllocationError('address held by id:0102');
    });
    const reply = deliver({ type: T.REQUEST, mac: VICTIM, requested: '192.0.2.77' });
    expect(reply.options.messageType()).toBe(T.NAK);
    expect(server.stats).toMatchObject({ internalErrors: 0, naks: 1, acks: 0 });
    expect(server.leases()).toEqual([]);
    expect(errors).toEqual([]);
    // and the next try goes through
    expect(deliver({ type: T.REQUEST, mac: VICTIM, requested: '192.0.2.77' }).options.messageType()).toBe(T.ACK);
    void server.stop();
  });
});
