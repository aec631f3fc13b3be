// The RFC 2131 state machine, one transition per test: decide() on a lease table with a fake clock,
// the decision applied the way the server applies it (applyDecision).
import fc from 'fast-check';
import { describe, expect, test } from 'vitest';
import { applyDecision } from '../../../src/dhcp/apply.js';
import { BOOTREPLY, decodePacket, encodePacket, FLAG_BROADCAST } from '../../../src/dhcp/codec.js';
import type { InterfaceConfig } from '../../../src/dhcp/config.js';
import { clientIdentity, type Decision, decide, stableAddress } from '../../../src/dhcp/decide.js';
import { ipv4ToString } from '../../../src/dhcp/ipv4.js';
import { LeaseTable } from '../../../src/dhcp/leases.js';
import { MessageType as T, Opt } from '../../../src/dhcp/options.js';
import { replyRoute } from '../../../src/dhcp/route.js';
import { type ClientPacket, clientPacket, ip, subnet } from './helpers.js';

const T0 = 1_700_000_000_000;
const SERVER = '192.0.2.1';

class Harness {
  table: LeaseTable;
  now = T0;
  constructor(over: Partial<InterfaceConfig> = {}) {
    this.table = new LeaseTable(subnet(over));
  }
  send(c: ClientPacket, unicast = false): Decision {
    // Through the codec, as on the wire.
    const packet = decodePacket(encodePacket(clientPacket(c)));
    const d = decide({ packet, unicast }, this.table, this.now);
    applyDecision(this.table, d, this.now);
    if ('reply' in d) {
      const back = decodePacket(encodePacket(d.reply));
      expect(back.op).toBe(BOOTREPLY);
      expect(back.xid).toBe(c.xid ?? 0x1234);
    }
    return d;
  }
  /** DISCOVER, REQUEST (SELECTING); returns the bound address. */
  dora(c: Partial<ClientPacket> = {}): string {
    const offer = this.send({ ...c, type: T.DISCOVER });
    if (offer.kind !== 'offer') throw new Error(`expected offer, got ${offer.kind}: ${'reason' in offer ? offer.reason : ''}`);
    const ack = this.send({ ...c, type: T.REQUEST, serverId: SERVER, requested: ipv4ToString(offer.address) });
    if (ack.kind !== 'ack') throw new Error(`expected ack, got ${ack.kind}: ${'reason' in ack ? ack.reason : ''}`);
    return ipv4ToString(ack.address);
  }
  advance(ms: number): void {
    this.now += ms;
    this.table.expire(this.now);
  }
}

function kind(d: Decision): string {
  return d.kind;
}

describe('DISCOVER → OFFER (RFC 2131 §4.3.1)', () => {
  test('offers the stable slot with the configured options', () => {
    const h = new Harness({ dns: ['198.51.100.53'], domain: 'example.org', searchDomains: ['example.org'], mtu: 1400 });
    const d = h.send({ type: T.DISCOVER, xid: 77, prl: [1, 3, 6, 12, 15, 26, 119] });
    expect(d.kind).toBe('offer');
    if (d.kind !== 'offer') return;
    const packet = clientPacket({ type: T.DISCOVER });
    expect(d.address).toBe(stableAddress(h.table.config, packet));
    const o = d.reply.options;
    expect(o.messageType()).toBe(T.OFFER);
    expect(o.serverId()).toBe(ip(SERVER));
    expect(o.leaseTime()).toBe(3600);
    expect(o.renewalTime()).toBe(1800);
    expect(o.rebindingTime()).toBe(3150);
    expect(o.subnetMask()).toBe(ip('255.255.255.0'));
    expect(o.broadcastAddress()).toBe(ip('192.0.2.255'));
    expect(o.routers()).toEqual([ip(SERVER)]);
    expect(o.dnsServers()).toEqual([ip('198.51.100.53')]);
    expect(o.domainName()).toBe('example.org');
    expect(o.domainSearch()).toEqual(['example.org']);
    expect(o.interfaceMtu()).toBe(1400);
    expect(d.reply.yiaddr).toBe(d.address);
    expect(d.reply.ciaddr).toBe(0);
    // the hold: the address is the client's for 30 s
    expect(h.table.lease(d.client.key)).toMatchObject({ state: 'offered', address: d.address, expiresAt: T0 + 30_000 });
  });

  test('a second DISCOVER gets the same offer; another client does not get it', () => {
    const h = new Harness();
    const a = h.send({ type: T.DISCOVER });
    const again = h.send({ type: T.DISCOVER });
    expect(again.kind === 'offer' && a.kind === 'offer' && again.address === a.address).toBe(true);
    const other = h.send({ type: T.DISCOVER, mac: '02:00:00:00:00:43', requested: a.kind === 'offer' ? ipv4ToString(a.address) : '' });
    expect(other.kind).toBe('offer');
    expect(other.kind === 'offer' && a.kind === 'offer' && other.address !== a.address).toBe(true);
  });

  test('the requested address is offered when free', () => {
    const h = new Harness();
    const d = h.send({ type: T.DISCOVER, requested: '192.0.2.77' });
    expect(d.kind === 'offer' && ipv4ToString(d.address)).toBe('192.0.2.77');
  });

  test('an offer not taken lapses and its address goes back to the pool', () => {
    const h = new Harness({ address: '192.0.2.1/30' }); // one client address: .2
    expect(kind(h.send({ type: T.DISCOVER }))).toBe('offer');
    expect(h.table.pool.free).toBe(0);
    h.advance(30_001);
    expect(h.table.pool.free).toBe(1);
    expect(h.send({ type: T.DISCOVER, mac: '02:00:00:00:00:43' })).toMatchObject({ kind: 'offer', address: ip('192.0.2.2') });
  });

  test('an unanswered offer never keeps an address from another client: with none free, the oldest offer is withdrawn', () => {
    const h = new Harness({ address: '192.0.2.1/29' }); // five client addresses, .2-.6
    for (let i = 0; i < 5; i++) expect(kind(h.send({ type: T.DISCOVER, mac: `02:00:00:00:01:0${i}` }))).toBe('offer');
    const first = h.table.lease('hw:1:020000000100');
    expect(first?.state).toBe('offered');
    const late = h.send({ type: T.DISCOVER, mac: '02:00:00:00:00:43' });
    expect(late).toMatchObject({ kind: 'offer', address: first?.address });
    expect(h.table.lease('hw:1:020000000100')).toBeUndefined(); // withdrawn
    // the late client takes it; the first client's REQUEST for its withdrawn offer is refused
    expect(kind(h.send({ type: T.REQUEST, mac: '02:00:00:00:00:43', serverId: SERVER, requested: ipv4ToString(first!.address) }))).toBe('ack');
    expect(kind(h.send({ type: T.REQUEST, mac: '02:00:00:00:01:00', serverId: SERVER, requested: ipv4ToString(first!.address) }))).toBe('nak');
    // bindings are never withdrawn: with all five bound, a newcomer gets nothing
    for (let i = 1; i < 5; i++) h.dora({ mac: `02:00:00:00:01:0${i}` });
    expect(h.send({ type: T.DISCOVER, mac: '02:00:00:00:00:44' })).toMatchObject({ kind: 'ignore', reason: 'no free address in the pool' });
  });

  test('never offers the network, broadcast, server or an excluded address', () => {
    const h = new Harness({ address: '192.0.2.1/29', exclude: ['192.0.2.3'] });
    const got = new Set<string>();
    for (let i = 0; i < 10; i++) {
      const d = h.send({ type: T.DISCOVER, mac: `02:00:00:00:01:${i.toString(16).padStart(2, '0')}` });
      if (d.kind === 'offer') got.add(ipv4ToString(d.address));
    }
    expect([...got].sort()).toEqual(['192.0.2.2', '192.0.2.4', '192.0.2.5', '192.0.2.6']);
  });

  test('the requested lease time is kept within the configured bounds', () => {
    const h = new Harness({ leaseTime: 600, maxLeaseTime: 7200, minLeaseTime: 120 });
    expect(h.send({ type: T.DISCOVER, leaseTime: 10 })).toMatchObject({ leaseTime: 120 });
    expect(h.send({ type: T.DISCOVER, leaseTime: 1_000_000 })).toMatchObject({ leaseTime: 7200 });
    expect(h.send({ type: T.DISCOVER, leaseTime: 1000 })).toMatchObject({ leaseTime: 1000 });
    expect(h.send({ type: T.DISCOVER })).toMatchObject({ leaseTime: 600 });
  });
});

describe('REQUEST (RFC 2131 §4.3.2)', () => {
  test('SELECTING with our server identifier → ACK, bound until now + lease time', () => {
    const h = new Harness();
    const addr = h.dora();
    const l = h.table.lease(clientIdentity(clientPacket({ type: 1 })).key);
    expect(l).toMatchObject({ state: 'bound', address: ip(addr), expiresAt: T0 + 3_600_000 });
  });

  test("SELECTING another server's offer → silence, and our offer is withdrawn", () => {
    const h = new Harness({ address: '192.0.2.1/30' });
    const offer = h.send({ type: T.DISCOVER });
    expect(offer.kind).toBe('offer');
    const d = h.send({ type: T.REQUEST, serverId: '192.0.2.254', requested: '192.0.2.2' });
    expect(d).toMatchObject({ kind: 'ignore', reason: 'client chose server 192.0.2.254' });
    expect(h.table.lease(clientIdentity(clientPacket({ type: 1 })).key)).toBeUndefined();
    expect(kind(h.send({ type: T.DISCOVER, mac: '02:00:00:00:00:43' }))).toBe('offer');
  });

  test('SELECTING an address another client holds → NAK, broadcast', () => {
    const h = new Harness();
    const taken = h.dora({ mac: '02:00:00:00:00:43' });
    const d = h.send({ type: T.REQUEST, serverId: SERVER, requested: taken });
    expect(d.kind).toBe('nak');
    if (d.kind !== 'nak') return;
    expect(d.reply.options.messageType()).toBe(T.NAK);
    expect(d.reply.options.serverId()).toBe(ip(SERVER));
    expect(d.reply.options.message()).toMatch(/not available/);
    expect(d.reply.yiaddr).toBe(0);
    expect(d.reply.options.has(Opt.LEASE_TIME)).toBe(false);
    expect(replyRoute(clientPacket({ type: 3 }), d.reply, true)).toMatchObject({ kind: 'broadcast', ip: 0xffffffff, port: 68 });
  });

  test('INIT-REBOOT with its own address → ACK', () => {
    const h = new Harness();
    const addr = h.dora();
    expect(h.send({ type: T.REQUEST, requested: addr })).toMatchObject({ kind: 'ack', state: 'init-reboot', address: ip(addr) });
  });

  test('INIT-REBOOT with an address on another network → NAK', () => {
    const h = new Harness();
    h.dora();
    expect(h.send({ type: T.REQUEST, requested: '198.51.100.7' })).toMatchObject({ kind: 'nak', reason: '198.51.100.7 is not on this network' });
  });

  test("INIT-REBOOT with another client's address → NAK", () => {
    const h = new Harness();
    const other = h.dora({ mac: '02:00:00:00:00:43' });
    h.dora();
    expect(kind(h.send({ type: T.REQUEST, requested: other }))).toBe('nak');
  });

  test('INIT-REBOOT from a client the server forgot (lease file lost): authoritative gives the address back', () => {
    const h = new Harness();
    expect(h.send({ type: T.REQUEST, requested: '192.0.2.99' })).toMatchObject({ kind: 'ack', address: ip('192.0.2.99') });
  });

  test('INIT-REBOOT from an unknown client, not authoritative → silence (RFC 2131 §4.3.2 MUST)', () => {
    const h = new Harness({ authoritative: false });
    expect(kind(h.send({ type: T.REQUEST, requested: '192.0.2.99' }))).toBe('ignore');
  });

  test('RENEWING (unicast, ciaddr) → ACK to ciaddr, lease extended', () => {
    const h = new Harness();
    const addr = h.dora();
    h.advance(1_800_000);
    const d = h.send({ type: T.REQUEST, ciaddr: addr }, true);
    expect(d).toMatchObject({ kind: 'ack', state: 'renewing', address: ip(addr), expiresAt: h.now + 3_600_000 });
    if (d.kind !== 'ack') return;
    expect(d.reply.ciaddr).toBe(ip(addr));
    expect(replyRoute(clientPacket({ type: 3, ciaddr: addr }), d.reply, false)).toEqual({ kind: 'back', ip: ip(addr), port: 68 });
  });

  test('REBINDING (broadcast, ciaddr) → ACK', () => {
    const h = new Harness();
    const addr = h.dora();
    h.advance(3_200_000);
    expect(h.send({ type: T.REQUEST, ciaddr: addr }, false)).toMatchObject({ kind: 'ack', state: 'rebinding' });
  });

  test('RENEWING an address bound to another client → NAK', () => {
    const h = new Harness();
    const other = h.dora({ mac: '02:00:00:00:00:43' });
    expect(kind(h.send({ type: T.REQUEST, ciaddr: other }, true))).toBe('nak');
  });

  test('RENEWING after the lease expired and the address went to nobody → ACK again', () => {
    const h = new Harness();
    const addr = h.dora();
    h.advance(3_600_001);
    expect(h.table.lease(clientIdentity(clientPacket({ type: 1 })).key)?.state).toBe('released');
    expect(h.send({ type: T.REQUEST, ciaddr: addr }, true)).toMatchObject({ kind: 'ack', address: ip(addr) });
  });

  test('a REQUEST with neither server id, requested address nor ciaddr is ignored', () => {
    expect(kind(new Harness().send({ type: T.REQUEST }))).toBe('ignore');
  });
});

describe('RELEASE, DECLINE, INFORM (RFC 2131 §4.3.3-4.3.5)', () => {
  test('RELEASE frees the address; the client gets it back on its next DISCOVER', () => {
    const h = new Harness({ address: '192.0.2.1/29' });
    const addr = h.dora();
    expect(h.send({ type: T.RELEASE, ciaddr: addr, serverId: SERVER })).toMatchObject({ kind: 'release', address: ip(addr) });
    expect(h.table.holderOf(ip(addr))).toBeUndefined();
    expect(h.table.pool.isFree(ip(addr))).toBe(true);
    expect(h.dora()).toBe(addr);
  });

  test("RELEASE of an address the client does not hold, or for another server, is ignored", () => {
    const h = new Harness();
    const other = h.dora({ mac: '02:00:00:00:00:43' });
    expect(kind(h.send({ type: T.RELEASE, ciaddr: other }))).toBe('ignore');
    expect(h.table.holderOf(ip(other))).toBeDefined();
    const mine = h.dora();
    expect(kind(h.send({ type: T.RELEASE, ciaddr: mine, serverId: '192.0.2.9' }))).toBe('ignore');
  });

  test('DECLINE quarantines the address; the client gets another; it comes back later', () => {
    const h = new Harness({ address: '192.0.2.1/29' });
    const addr = h.dora();
    expect(h.send({ type: T.DECLINE, requested: addr, serverId: SERVER })).toMatchObject({ kind: 'decline', address: ip(addr) });
    expect(h.table.isQuarantined(ip(addr), h.now)).toBe(true);
    const next = h.dora();
    expect(next).not.toBe(addr);
    h.advance(600_001);
    expect(h.table.isQuarantined(ip(addr), h.now)).toBe(false);
    expect(h.table.pool.isFree(ip(addr))).toBe(true);
  });

  test("DECLINE of an address the client does not hold is ignored (a container cannot drain the pool)", () => {
    const h = new Harness();
    const other = h.dora({ mac: '02:00:00:00:00:43' });
    expect(kind(h.send({ type: T.DECLINE, requested: other }))).toBe('ignore');
    expect(kind(h.send({ type: T.DECLINE, requested: '192.0.2.200' }))).toBe('ignore');
    expect(h.table.isQuarantined(ip('192.0.2.200'), h.now)).toBe(false);
  });

  test('INFORM → ACK with configuration, no address and no lease time, to ciaddr', () => {
    const h = new Harness({ dns: ['198.51.100.53'] });
    const d = h.send({ type: T.INFORM, ciaddr: '192.0.2.200' });
    expect(d.kind).toBe('inform');
    if (d.kind !== 'inform') return;
    expect(d.reply.options.messageType()).toBe(T.ACK);
    expect(d.reply.yiaddr).toBe(0);
    expect(d.reply.ciaddr).toBe(ip('192.0.2.200'));
    expect(d.reply.options.has(Opt.LEASE_TIME)).toBe(false);
    expect(d.reply.options.dnsServers()).toEqual([ip('198.51.100.53')]);
    expect(replyRoute(clientPacket({ type: 8, ciaddr: '192.0.2.200' }), d.reply, false)).toMatchObject({ kind: 'back', ip: ip('192.0.2.200') });
  });
});

describe('client identity and reservations', () => {
  test('option 61 identifies the client when present, else the hardware address', () => {
    const h = new Harness();
    const a = h.dora({ clientId: Uint8Array.of(0xff, 1, 2, 3) });
    const b = h.dora({ clientId: Uint8Array.of(0xff, 9, 9, 9) }); // same MAC, another client id
    const c = h.dora(); // same MAC, no client id
    expect(new Set([a, b, c]).size).toBe(3);
  });

  test('a MAC reservation is offered to its client only, and a REQUEST for anything else is NAKed', () => {
    const h = new Harness({ reservations: [{ mac: '02:00:00:00:00:42', address: '192.0.2.50', hostname: 'box' }] });
    const d = h.send({ type: T.DISCOVER, prl: [1, 3, 12] });
    expect(d).toMatchObject({ kind: 'offer', address: ip('192.0.2.50') });
    if (d.kind === 'offer') expect(d.reply.options.hostname()).toBe('box');
    expect(h.send({ type: T.DISCOVER, mac: '02:00:00:00:00:43', requested: '192.0.2.50' })).not.toMatchObject({ address: ip('192.0.2.50') });
    expect(kind(h.send({ type: T.REQUEST, requested: '192.0.2.51' }))).toBe('nak');
    expect(kind(h.send({ type: T.REQUEST, mac: '02:00:00:00:00:43', requested: '192.0.2.50' }))).toBe('nak');
    expect(h.dora()).toBe('192.0.2.50');
  });

  test('a client-id reservation matches option 61', () => {
    const h = new Harness({ reservations: [{ clientId: 'ff00112233', address: '192.0.2.60' }] });
    expect(h.dora({ clientId: Uint8Array.of(0xff, 0, 0x11, 0x22, 0x33) })).toBe('192.0.2.60');
  });

  test('the host name is echoed only when the client asks for option 12', () => {
    const h = new Harness();
    const asked = h.send({ type: T.DISCOVER, hostname: 'web', prl: [1, 3, 12] });
    expect(asked.kind === 'offer' && asked.reply.options.hostname()).toBe('web');
    const notAsked = h.send({ type: T.DISCOVER, hostname: 'web', prl: [1, 3] });
    expect(notAsked.kind === 'offer' && notAsked.reply.options.has(Opt.HOSTNAME)).toBe(false);
  });
});

describe('relays and odd requests', () => {
  test('through a relay: replies go back to giaddr:67, a NAK carries the broadcast bit, option 82 is echoed last', () => {
    const h = new Harness();
    const info = Uint8Array.of(1, 3, 0x61, 0x62, 0x63);
    const d = h.send({ type: T.DISCOVER, giaddr: '192.0.2.254', relayInfo: info });
    expect(d.kind).toBe('offer');
    if (d.kind !== 'offer') return;
    expect(d.reply.giaddr).toBe(ip('192.0.2.254'));
    expect(d.reply.options.get(Opt.RELAY_AGENT_INFO)).toEqual(info);
    expect(d.reply.options.codes().at(-1)).toBe(Opt.RELAY_AGENT_INFO);
    expect(replyRoute(clientPacket({ type: 1, giaddr: '192.0.2.254' }), d.reply, false)).toEqual({ kind: 'back', ip: ip('192.0.2.254'), port: 67 });
    const n = h.send({ type: T.REQUEST, requested: '198.51.100.1', giaddr: '192.0.2.254' });
    expect(n.kind === 'nak' && n.reply.flags & FLAG_BROADCAST).toBeTruthy();
  });

  test('reply routes: broadcast bit, else unicast to yiaddr at chaddr', () => {
    const h = new Harness();
    const b = h.send({ type: T.DISCOVER, broadcast: true });
    if (b.kind === 'offer') expect(replyRoute(clientPacket({ type: 1, broadcast: true }), b.reply, false).kind).toBe('broadcast');
    const u = h.send({ type: T.DISCOVER, mac: '02:00:00:00:00:55' });
    if (u.kind === 'offer') expect(replyRoute(clientPacket({ type: 1 }), u.reply, false)).toEqual({ kind: 'chaddr', ip: u.address, port: 68 });
  });

  test('malformed options, BOOTP and server messages are ignored with a reason', () => {
    const table = new LeaseTable(subnet());
    const bad = clientPacket({ type: T.DISCOVER });
    bad.options.set(Opt.REQUESTED_IP, Uint8Array.of(1, 2, 3));
    expect(decide({ packet: bad, unicast: false }, table, T0)).toMatchObject({ kind: 'ignore', reason: expect.stringMatching(/^malformed option: option 50/) });
    const bootp = clientPacket({ type: T.DISCOVER });
    bootp.options.delete(Opt.MESSAGE_TYPE);
    expect(decide({ packet: bootp, unicast: false }, table, T0)).toMatchObject({ kind: 'ignore', reason: expect.stringMatching(/BOOTP/) });
    const offer = clientPacket({ type: T.OFFER });
    expect(kind(decide({ packet: offer, unicast: false }, table, T0))).toBe('ignore');
    const reply = clientPacket({ type: T.DISCOVER });
    reply.op = BOOTREPLY;
    expect(kind(decide({ packet: reply, unicast: false }, table, T0))).toBe('ignore');
  });
});

describe('invariants under arbitrary client behaviour', () => {
  test('no two clients ever hold one address; nothing excluded is handed out; decide never throws', () => {
    const macs = ['02:00:00:00:00:01', '02:00:00:00:00:02', '02:00:00:00:00:03', '02:00:00:00:00:04', '02:00:00:00:00:05'];
    const addrs = ['192.0.2.0', '192.0.2.1', '192.0.2.2', '192.0.2.3', '192.0.2.4', '192.0.2.5', '192.0.2.6', '192.0.2.7', '198.51.100.1'];
    const step = fc.record({
      type: fc.constantFrom(T.DISCOVER, T.REQUEST, T.DECLINE, T.RELEASE, T.INFORM),
      mac: fc.constantFrom(...macs),
      requested: fc.option(fc.constantFrom(...addrs), { nil: undefined }),
      ciaddr: fc.option(fc.constantFrom(...addrs), { nil: undefined }),
      serverId: fc.option(fc.constantFrom('192.0.2.1', '192.0.2.9'), { nil: undefined }),
      unicast: fc.boolean(),
      wait: fc.constantFrom(0, 0, 0, 20_000, 700_000),
    });
    fc.assert(fc.property(fc.array(step, { maxLength: 60 }), (steps) => {
      const h = new Harness({ address: '192.0.2.1/29', exclude: ['192.0.2.6'] });
      for (const s of steps) {
        h.advance(s.wait);
        const d = h.send({ type: s.type, mac: s.mac, requested: s.requested, ciaddr: s.ciaddr, serverId: s.serverId }, s.unicast);
        if (d.kind === 'offer' || d.kind === 'ack') {
          expect(['192.0.2.0', '192.0.2.1', '192.0.2.6', '192.0.2.7']).not.toContain(ipv4ToString(d.address));
        }
        const holders = new Map<number, string>();
        for (const l of h.table.entries()) {
          if (l.state === 'released' || l.expiresAt <= h.now) continue;
          expect(holders.get(l.address)).toBeUndefined();
          holders.set(l.address, l.clientKey);
          expect(h.table.pool.isFree(l.address)).toBe(false);
        }
      }
    }), { numRuns: 400 });
  });
});
