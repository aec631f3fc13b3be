// Port forwarding in the network subsystem, pure parts: the API's port lists, the records, clashes
// with other machines and with systemd-nspawn's own table.
import { describe, expect, test } from 'vitest';
import { decodeRequestLine, encodeRequest, parseRequest } from '../../../src/net/netd/api.js';
import {
  findPortClashes, formatPortList, hostPortsOf, parsePortList, PortInUseError, recordedMappings, reservationMappings,
} from '../../../src/net/netd/ports.js';
import type { NetdState } from '../../../src/net/netd/state.js';
import { parsePortSpec } from '../../../src/net/port-spec.js';
import { pickForwardAddress, portsServedBySubsystem } from '../../../src/runtime/net/ports-watch.js';
import { defaultNetworkSpec } from '../../../src/runtime/spec.js';

const p = parsePortSpec;

function state(reservations: Record<string, Array<{ machine: string; address: string; ports?: string[]; portLoopback?: boolean }>>): NetdState {
  const links: NetdState['links'] = {};
  for (const [ifname, rs] of Object.entries(reservations)) {
    links[ifname] = {
      kind: 'veth', key: ifname.slice(3), ifname, ifindex: 1, subnet: '10.0.0.16/28', holders: ['sidecar'],
      reservations: rs.map((r) => ({
        machine: r.machine, mac: '02:00:00:00:00:01', address: r.address,
        ...(r.ports ? { ports: r.ports.map(p) } : {}), ...(r.portLoopback ? { portLoopback: true } : {}),
      })),
    };
  }
  return { version: 1, pool: undefined, links };
}

describe('port lists on the API', () => {
  test('-p syntax in, PortForward out, and back', () => {
    const ports = parsePortList('ports', ['tcp:8000:80', 'udp:5353:53', '9090']);
    expect(ports).toEqual([
      { protocol: 'tcp', hostPort: 8000, hostPortEnd: 8000, containerPort: 80, containerPortEnd: 80 },
      { protocol: 'udp', hostPort: 5353, hostPortEnd: 5353, containerPort: 53, containerPortEnd: 53 },
      { protocol: 'tcp', hostPort: 9090, hostPortEnd: 9090, containerPort: 9090, containerPortEnd: 9090 },
    ]);
    expect(formatPortList(ports)).toEqual(['tcp:8000:80', 'udp:5353:53', 'tcp:9090:9090']);
  });

  test('bad entries are refused with the index and systemd\'s message', () => {
    expect(() => parsePortList('ports', 'tcp:80')).toThrow('"ports" must be a list of port specs like "tcp:8080:80"');
    expect(() => parsePortList('ports', [80])).toThrow('"ports"[0] must be a string like "tcp:8080:80", got number');
    expect(() => parsePortList('ports', ['8080', '0'])).toThrow('"ports"[1]: Failed to parse host port 0: Invalid argument');
    expect(() => parsePortList('ports', ['70000'])).toThrow('Failed to parse host port 70000');
    expect(() => parsePortList('ports', ['sctp:80'])).toThrow('Failed to parse host port sctp:80');
    expect(() => parsePortList('ports', ['8080', 'tcp:8080:81'])).toThrow('"ports"[1]: Duplicate port specification: tcp:8080:81');
    // the same port number over tcp and udp is two mappings
    expect(parsePortList('ports', ['53', 'udp:53'])).toHaveLength(2);
  });

  test('reserve carries ports and portLoopback; check-ports needs both fields; the client encodes what the server decodes', () => {
    const req = parseRequest({ op: 'reserve', machine: 'web', mac: '02:00:00:00:00:01', kind: 'veth', ports: ['tcp:8000:80'], portLoopback: true });
    expect(req).toEqual({ op: 'reserve', machine: 'web', mac: '02:00:00:00:00:01', kind: 'veth', ports: [p('tcp:8000:80')], portLoopback: true });
    expect(decodeRequestLine(JSON.stringify(encodeRequest(req))).request).toEqual(req);
    const check = parseRequest({ op: 'check-ports', machine: 'web', ports: ['udp:53'] });
    expect(decodeRequestLine(JSON.stringify(encodeRequest(check))).request).toEqual(check);
    expect(() => parseRequest({ op: 'check-ports', machine: 'web' })).toThrow('check-ports: "ports" is missing');
    expect(() => parseRequest({ op: 'check-ports', machine: 'a_b', ports: [] })).toThrow('is not a valid machine name');
    expect(() => parseRequest({ op: 'reserve', machine: 'web', mac: '02:00:00:00:00:01', kind: 'veth', ports: ['x'] }))
      .toThrow('reserve: "ports"[0]: Failed to parse host port x');
    expect(() => parseRequest({ op: 'reserve', machine: 'web', mac: '02:00:00:00:00:01', kind: 'veth', portLoopback: 'yes' }))
      .toThrow('reserve: "portLoopback" must be true or false');
    expect(() => parseRequest({ op: 'check-ports', machine: 'web', ports: [], extra: 1 })).toThrow('check-ports: unknown field "extra"');
  });
});

describe('records and clashes', () => {
  test('a reservation\'s mappings: its address, the machine as owner, loopback when asked', () => {
    expect(reservationMappings({ machine: 'web', address: '10.0.0.18', mac: '02:aa:bb:cc:dd:ee', ports: [p('8000:80'), p('udp:53')], portLoopback: true })).toEqual([
      { protocol: 'tcp', hostPort: 8000, containerAddress: '10.0.0.18', containerPort: 80, owner: 'web', loopback: true },
      { protocol: 'udp', hostPort: 53, containerAddress: '10.0.0.18', containerPort: 53, owner: 'web', loopback: true },
    ]);
    expect(reservationMappings({ machine: 'web', address: '10.0.0.18', mac: '02:aa:bb:cc:dd:ee' })).toEqual([]);
  });

  test('with the link\'s IPv6 /64, also to the machine\'s SLAAC address there (never loopback)', () => {
    expect(reservationMappings({ machine: 'web', address: '10.0.0.18', mac: '02:aa:bb:cc:dd:ee', ports: [p('8000:80')], portLoopback: true }, '2001:db8:1:2::/64')).toEqual([
      { protocol: 'tcp', hostPort: 8000, containerAddress: '10.0.0.18', containerPort: 80, owner: 'web', loopback: true },
      { protocol: 'tcp', hostPort: 8000, containerAddress: '2001:db8:1:2:aa:bbff:fecc:ddee', containerPort: 80, owner: 'web' },
    ]);
  });

  test('recorded mappings of every link; a second claim on a port (hand-edited file) loses', () => {
    const st = state({
      've-a': [{ machine: 'a', address: '10.0.0.18', ports: ['8000:80'] }],
      've-b': [{ machine: 'b', address: '10.0.0.34', ports: ['8000:80', 'udp:8000'] }, { machine: 'c', address: '10.0.0.35' }],
    });
    expect(recordedMappings(st).map((m) => `${m.owner} ${m.protocol}/${m.hostPort}`)).toEqual(['a tcp/8000', 'b udp/8000']);
  });

  test('clashes: other machines in the firewall and in the records, systemd-nspawn; never the machine itself', () => {
    const current = [
      { protocol: 'tcp' as const, hostPort: 8000, containerAddress: '10.0.0.34', containerPort: 80, owner: 'db' },
      { protocol: 'tcp' as const, hostPort: 9000, containerAddress: '10.0.0.18', containerPort: 90, owner: 'web' },
      { protocol: 'tcp' as const, hostPort: 7000, containerAddress: 'fd00::2', containerPort: 70, owner: 'v6' },
    ];
    const st = state({ 've-cache': [{ machine: 'cache', address: '10.0.0.50', ports: ['udp:5353:53'] }] });
    const foreign = [{ protocol: 'tcp' as const, hostPort: 443, target: '10.0.0.99:443', holder: 'a systemd-nspawn container (table ip io.systemd.nat)' }];
    const clashes = findPortClashes('web', [p('8000:80'), p('9000'), p('udp:5353:53'), p('443'), p('7000'), p('udp:8000')], { current, state: st, foreign });
    expect(clashes).toEqual([
      { protocol: 'tcp', hostPort: 443, target: '10.0.0.99:443', holder: 'a systemd-nspawn container (table ip io.systemd.nat)' },
      { protocol: 'udp', hostPort: 5353, target: '10.0.0.50:53', holder: 'cache' },
      { protocol: 'tcp', hostPort: 7000, target: '[fd00::2]:70', holder: 'v6' },
      { protocol: 'tcp', hostPort: 8000, target: '10.0.0.34:80', holder: 'db' },
    ]);
    const err = new PortInUseError('web', clashes.slice(3));
    expect(err.code).toBe('NETD_PORT_IN_USE');
    expect(err.message).toBe('cannot forward tcp port 8000 to web: tcp port 8000 is already forwarded to 10.0.0.34:80 for db (stop that machine or pick another host port)');
  });

  test('the host ports of port specs (what a removal and a check look up): each port of a range', () => {
    expect(hostPortsOf([{ protocol: 'tcp', hostPort: 8000, hostPortEnd: 8002, containerPort: 80, containerPortEnd: 82 }, p('udp:53:53')])).toEqual([
      { protocol: 'tcp', hostPort: 8000 }, { protocol: 'tcp', hostPort: 8001 }, { protocol: 'tcp', hostPort: 8002 }, { protocol: 'udp', hostPort: 53 },
    ]);
  });
});

describe('following the container\'s address (links the subsystem does not serve)', () => {
  const a = (address: string, index: number, scope = 0, flags = 0) => ({ family: (address.includes(':') ? 6 : 4) as 4 | 6, index, address, scope, flags });

  test('systemd\'s order: scope, then interface index, then address; deprecated, host and nowhere scopes skipped', () => {
    expect(pickForwardAddress([a('10.0.0.9', 3), a('10.0.0.2', 3), a('192.0.2.1', 2)], 4)).toBe('192.0.2.1');
    expect(pickForwardAddress([a('10.0.0.9', 3), a('10.0.0.10', 3)], 4)).toBe('10.0.0.9');
    expect(pickForwardAddress([a('127.0.0.1', 1, 254), a('10.0.0.9', 3)], 4)).toBe('10.0.0.9');
    expect(pickForwardAddress([a('10.0.0.1', 2, 0, 0x20), a('10.0.0.9', 3)], 4)).toBe('10.0.0.9');
    // site scope (200) comes after global (0) but qualifies
    expect(pickForwardAddress([a('fec0::1', 2, 200)], 6)).toBe('fec0::1');
    expect(pickForwardAddress([a('fd00::9', 2), a('fd00::10', 2)], 6)).toBe('fd00::9');
    expect(pickForwardAddress([a('fd00::1:0', 2), a('fd00::ff', 2)], 6)).toBe('fd00::ff');
  });

  test('link-local never qualifies (systemd#30475): no global address, no mapping', () => {
    expect(pickForwardAddress([a('fe80::1', 2, 253)], 6)).toBeUndefined();
    expect(pickForwardAddress([a('169.254.1.1', 2, 253), a('fd00::1', 2)], 4)).toBeUndefined();
    expect(pickForwardAddress([], 4)).toBeUndefined();
  });

  test('served links (-n, zones) get their ports with the reservation; others are watched', () => {
    const { veth, bridge, zone } = defaultNetworkSpec();
    const n = { veth, ...(bridge ? { bridge } : {}), ...(zone ? { zone } : {}) };
    expect(portsServedBySubsystem({ ...n, veth: true })).toBe(true);
    expect(portsServedBySubsystem({ ...n, veth: true, zone: 'z' })).toBe(true);
    expect(portsServedBySubsystem({ ...n, veth: true, bridge: 'br0' })).toBe(false);
    expect(portsServedBySubsystem({ ...n, veth: false })).toBe(false);
  });
});
