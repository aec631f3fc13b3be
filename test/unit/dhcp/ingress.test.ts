// IngressPorts: the bridge port's copy of a request, taken by the bridge's copy that follows it.
import { describe, expect, test } from 'vitest';
import { IngressPorts } from '../../../src/dhcp/ingress.js';

const MAC_A = Uint8Array.of(2, 0, 0, 0, 0, 0xa);
const MAC_B = Uint8Array.of(2, 0, 0, 0, 0, 0xb);
/** The first bytes of a DHCP message with this xid. */
function msg(xid: number): Uint8Array {
  const b = new Uint8Array(240);
  new DataView(b.buffer).setUint32(4, xid);
  b[0] = 1;
  return b;
}

describe('IngressPorts', () => {
  test('the port copy is taken once by the frame with the same xid and source', () => {
    const ports = new IngressPorts();
    expect(ports.take(MAC_A, msg(1))).toBeUndefined();
    ports.note(7, MAC_A, msg(1));
    ports.note(9, MAC_B, msg(1));
    expect(ports.take(MAC_A, msg(2))).toBeUndefined();
    expect(ports.take(MAC_A, msg(1))).toBe(7);
    expect(ports.take(MAC_A, msg(1))).toBeUndefined();
    expect(ports.take(MAC_B, msg(1))).toBe(9);
  });

  test('the newest copy wins; copies nobody takes are forgotten oldest first; runts are ignored', () => {
    const ports = new IngressPorts();
    ports.note(7, MAC_A, msg(5));
    ports.note(8, MAC_A, msg(5));
    expect(ports.take(MAC_A, msg(5))).toBe(8);
    for (let i = 0; i < 64; i++) ports.note(100 + i, MAC_B, msg(1000 + i));
    expect(ports.take(MAC_A, msg(5))).toBeUndefined(); // overwritten
    expect(ports.take(MAC_B, msg(1063))).toBe(163);
    ports.note(3, MAC_A, new Uint8Array(4));
    expect(ports.take(MAC_A, new Uint8Array(4))).toBeUndefined();
  });
});
