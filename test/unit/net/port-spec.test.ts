import { describe, expect, test } from 'vitest';
import fc from 'fast-check';
import { addPortSpec, formatPortSpec, parsePortSpec, PortSpecError } from '../../../src/net/port-spec.js';
import type { PortForward } from '../../../src/runtime/spec.js';

const fwd = (protocol: 'tcp' | 'udp', h: number, c: number): PortForward =>
  ({ protocol, hostPort: h, hostPortEnd: h, containerPort: c, containerPortEnd: c });

describe('port specs (systemd expose_port_parse)', () => {
  test('the table of the reference', () => {
    expect(parsePortSpec('8080')).toEqual(fwd('tcp', 8080, 8080));
    expect(parsePortSpec('8080:80')).toEqual(fwd('tcp', 8080, 80));
    expect(parsePortSpec('udp:53:5353')).toEqual(fwd('udp', 53, 5353));
    expect(parsePortSpec('tcp:1')).toEqual(fwd('tcp', 1, 1));
    expect(parsePortSpec('65535:65535')).toEqual(fwd('tcp', 65535, 65535));
  });

  test('rejects what systemd rejects, with its message', () => {
    for (const bad of ['sctp:80', '0', '70000', '1-5', ' 80', '80 ', '', 'tcp:', 'udp:0', '80:', ':80', '80:90:100', 'TCP:80',
      '+80', '-80', '0x50', '80:0', '80:65536', 'tcp:udp:80', '1.5']) {
      let err: unknown;
      try {
        parsePortSpec(bad);
      } catch (e) {
        err = e;
      }
      expect(err, JSON.stringify(bad)).toBeInstanceOf(PortSpecError);
      expect((err as PortSpecError).message.startsWith(`Failed to parse host port ${bad}: Invalid argument (expected `)).toBe(true);
      expect((err as PortSpecError).reason).toBe('EINVAL');
      expect((err as PortSpecError).code).toBe('CFG_PORT_INVALID');
    }
  });

  test('duplicates are same protocol and host port', () => {
    const list: PortForward[] = [];
    addPortSpec(list, '80');
    addPortSpec(list, 'udp:80');
    addPortSpec(list, '81:80');
    expect(() => addPortSpec(list, 'tcp:80:8080')).toThrow('Duplicate port specification: tcp:80:8080 (tcp port 80 is already forwarded)');
    try {
      addPortSpec(list, 'udp:80:1');
    } catch (e) {
      expect((e as PortSpecError).reason).toBe('EEXIST');
      expect((e as PortSpecError).code).toBe('CFG_PORT_DUPLICATE');
    }
    expect(list).toHaveLength(3);
  });

  test('round trip: format then parse gives the same forward', () => {
    const port = fc.integer({ min: 1, max: 65535 });
    fc.assert(fc.property(fc.constantFrom('tcp' as const, 'udp' as const), port, port, (p, h, c) => {
      const f = fwd(p, h, c);
      expect(parsePortSpec(formatPortSpec(f))).toEqual(f);
    }));
  });

  test('any decimal outside 1..65535 is refused; leading zeros are decimal', () => {
    fc.assert(fc.property(fc.integer({ min: 65536, max: 10_000_000 }), (n) => {
      expect(() => parsePortSpec(String(n))).toThrow(PortSpecError);
    }));
    expect(parsePortSpec('0080')).toEqual(fwd('tcp', 80, 80));
  });
});
