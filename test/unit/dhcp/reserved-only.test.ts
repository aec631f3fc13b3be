// reservedOnly: several servers on one link with the same server address (embedded launchers on a
// shared zone bridge), each answering only its own container and never NAKing the others'.
import { describe, expect, test } from 'vitest';
import { applyDecision } from '../../../src/dhcp/apply.js';
import { decodePacket, encodePacket } from '../../../src/dhcp/codec.js';
import { decide } from '../../../src/dhcp/decide.js';
import { ipv4ToString } from '../../../src/dhcp/ipv4.js';
import { LeaseTable } from '../../../src/dhcp/leases.js';
import { MessageType as T } from '../../../src/dhcp/options.js';
import { type ClientPacket, clientPacket, subnet } from './helpers.js';

const NOW = 1_700_000_000_000;

function server(mac: string, address: string): (c: ClientPacket) => ReturnType<typeof decide> {
  const table = new LeaseTable(subnet({ reservedOnly: true, authoritative: false, pool: `${address}-${address}`, reservations: [{ mac, address }] }));
  return (c) => {
    const d = decide({ packet: decodePacket(encodePacket(clientPacket(c))), unicast: false }, table, NOW);
    applyDecision(table, d, NOW);
    return d;
  };
}

describe('reservedOnly', () => {
  test('each server answers its own client through DISCOVER, SELECTING, INIT-REBOOT and REBINDING, and ignores the other', () => {
    const a = server('02:00:00:00:00:0a', '192.0.2.10');
    const b = server('02:00:00:00:00:0b', '192.0.2.11');
    const ca = { mac: '02:00:00:00:00:0a' };
    const offerA = a({ ...ca, type: T.DISCOVER });
    expect(offerA.kind).toBe('offer');
    expect(b({ ...ca, type: T.DISCOVER }).kind).toBe('ignore');
    const select = { ...ca, type: T.REQUEST, serverId: '192.0.2.1', requested: '192.0.2.10' };
    expect(b(select)).toMatchObject({ kind: 'ignore', reason: expect.stringMatching(/no reservation/) });
    const ack = a(select);
    expect(ack.kind).toBe('ack');
    expect('address' in ack && ipv4ToString(ack.address)).toBe('192.0.2.10');
    for (const c of [{ ...ca, type: T.REQUEST, requested: '192.0.2.10' }, { ...ca, type: T.REQUEST, ciaddr: '192.0.2.10' }]) {
      expect(b(c).kind).toBe('ignore');
      expect(a(c).kind).toBe('ack');
    }
    // a stranger gets nothing from either
    const stranger = { mac: '02:00:00:00:00:99', type: T.DISCOVER };
    expect(a(stranger).kind).toBe('ignore');
    expect(b(stranger).kind).toBe('ignore');
  });

  test('is off by default', () => {
    expect(subnet().reservedOnly).toBe(false);
  });
});
