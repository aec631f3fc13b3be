// Pure parts of the network sidecar: which links it serves, the machines' stable addresses, the
// API's request checks, DNS selection, the command line and sd_notify's address.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import fc from 'fast-check';
import { describe, expect, test } from 'vitest';
import { classifyLink, isMasqueradeOwner, machineFromIfname, masqueradeOwner } from '../../../src/net/netd/links.js';
import { addressHash, isClientAddress, pickAddress } from '../../../src/net/netd/addresses.js';
import { decodeRequestLine, parseRequest } from '../../../src/net/netd/api.js';
import { hostDns, parseDnsList } from '../../../src/net/netd/dns.js';
import { addressHooks } from '../../../src/runtime/net/addresses.js';
import { configMode } from '../../../src/runtime/net/request.js';
import { parseSidecarArgs, sidecarHelp } from '../../../src/net/netd/daemon.js';
import { sockaddrUn } from '../../../src/net/netd/notify.js';
import { enableForwarding, forwardingOffIfUnused, forwardingOn, IP_FORWARD, IPV6_FORWARD, restoreForwarding, type SysctlIo } from '../../../src/net/netd/sysctl.js';
import { emptyState, parseState } from '../../../src/net/netd/state.js';
import { describeSubnet } from '../../../src/net/pool.js';
import { shortenIfname } from '../../../src/net/naming.js';
import { placeReservation } from '../../../src/net/netd/subsystem.js';

describe('classifyLink', () => {
  test('ve- veths and vz- bridges are served, vb- veths are ports, the rest is left alone', () => {
    expect(classifyLink({ name: 've-web', kind: 'veth' })).toEqual({ role: 'veth', ifname: 've-web', machine: 'web' });
    expect(classifyLink({ name: 'vz-lab', kind: 'bridge' })).toEqual({ role: 'zone', ifname: 'vz-lab', zone: 'lab' });
    expect(classifyLink({ name: 'vb-web', kind: 'veth' })).toEqual({ role: 'port', ifname: 'vb-web', machine: 'web' });
    for (const l of [
      { name: 'eth0', kind: undefined }, { name: 've-web', kind: 'bridge' }, { name: 'vz-lab', kind: 'veth' },
      { name: 've-', kind: 'veth' }, { name: 'vz-', kind: 'bridge' }, { name: 'veth0', kind: 'veth' }, { name: 'br0', kind: 'bridge' },
      { name: 'vb-x', kind: 'bridge' }, { name: 'mv-eth0', kind: 'macvlan' },
    ]) expect(classifyLink(l)).toBeUndefined();
  });

  test('a shortened name is keyed by the full machine name of its altname (both naming schemes)', () => {
    for (const longHash of [true, false]) {
      const n = shortenIfname('ve-a-rather-long-machine-name', { longHash });
      expect(n.shortened).toBe(true);
      const role = classifyLink({ name: n.name, kind: 'veth', altnames: ['unrelated-altname', n.full] });
      expect(role).toEqual({ role: 'veth', ifname: n.name, machine: 'a-rather-long-machine-name' });
    }
    // without the altname, the visible part is the key
    const n = shortenIfname('ve-a-rather-long-machine-name');
    expect(machineFromIfname('ve-', n.name, [])).toBe(n.name.slice(3));
    // an altname that does not shorten to the name is not taken
    expect(machineFromIfname('ve-', n.name, ['ve-something-else-entirely'])).toBe(n.name.slice(3));
  });

  test('masquerade owners', () => {
    expect(masqueradeOwner('veth', 'web')).toBe('ve:web');
    expect(masqueradeOwner('zone', 'lab')).toBe('vz:lab');
    expect(isMasqueradeOwner('ve:web')).toBe(true);
    expect(isMasqueradeOwner('web')).toBe(false);
    expect(isMasqueradeOwner(undefined)).toBe(false);
  });
});

describe('pickAddress', () => {
  const veth = describeSubnet('veth', 'x', '192.168.37.16/28');
  const zone = describeSubnet('zone', 'z', '10.4.5.0/24');

  test('golden: the hash and the address it gives', () => {
    expect(addressHash('web')).toBe(addressHash('web'));
    const a = pickAddress(veth, 'web', new Set());
    expect(isClientAddress(veth, a)).toBe(true);
    const off = Number(addressHash('web') % 13n);
    expect(a).toBe(`192.168.37.${18 + off}`);
  });

  test('stable, always a client address, and moves on only past taken ones', () => {
    fc.assert(fc.property(fc.string({ minLength: 1, maxLength: 30 }), fc.array(fc.integer({ min: 2, max: 254 }), { maxLength: 200 }), (m, takenN) => {
      const taken = new Set(takenN.map((n) => `10.4.5.${n}`));
      if (taken.size >= 253) return;
      const a = pickAddress(zone, m, taken);
      expect(isClientAddress(zone, a)).toBe(true);
      expect(taken.has(a)).toBe(false);
      expect(pickAddress(zone, m, taken)).toBe(a);
      if (!taken.has(pickAddress(zone, m, new Set()))) expect(a).toBe(pickAddress(zone, m, new Set()));
    }));
  });

  test('a full subnet is a clear error', () => {
    const all = new Set(Array.from({ length: 13 }, (_, i) => `192.168.37.${18 + i}`));
    expect(() => pickAddress(veth, 'web', all)).toThrow(/no free address for machine 'web' in 192.168.37.16\/28/);
  });

  test("a machine's reservation takes an address from dynamic leases when they hold all that is left, never from another reservation", () => {
    const clients = Array.from({ length: 253 }, (_, i) => `10.4.5.${i + 2}`);
    const others = clients.slice(0, 3).map((address, i) => ({ machine: `m${i}`, mac: `02:00:00:00:00:0${i}`, address }));
    const bound = clients.slice(3); // a flood of dynamic leases took every other address
    const placed = placeReservation(zone, others, 'newcomer', '02:00:00:00:01:00', bound);
    const mine = placed.find((r) => r.machine === 'newcomer');
    expect(mine?.address).toBe(pickAddress(zone, 'newcomer', new Set(others.map((r) => r.address))));
    expect(others.map((r) => r.address)).not.toContain(mine?.address);
    expect(placed.filter((r) => r.machine !== 'newcomer')).toEqual(others);
    // a free address still goes first
    const oneFree = bound.filter((a) => a !== '10.4.5.200');
    expect(placeReservation(zone, others, 'newcomer', '02:00:00:00:01:00', oneFree).find((r) => r.machine === 'newcomer')?.address).toBe('10.4.5.200');
    // reservations alone filling the subnet: still a clear error
    const full = clients.map((address, i) => ({ machine: `r${i}`, mac: `02:00:00:00:02:${(i & 0xff).toString(16).padStart(2, '0')}`, address }));
    expect(() => placeReservation(zone, full, 'newcomer', '02:00:00:00:01:00', [])).toThrow(/all 253 client addresses are taken/);
  });

  test('isClientAddress excludes network, host and broadcast', () => {
    expect(isClientAddress(veth, '192.168.37.16')).toBe(false);
    expect(isClientAddress(veth, '192.168.37.17')).toBe(false);
    expect(isClientAddress(veth, '192.168.37.18')).toBe(true);
    expect(isClientAddress(veth, '192.168.37.30')).toBe(true);
    expect(isClientAddress(veth, '192.168.37.31')).toBe(false);
    expect(isClientAddress(veth, 'garbage')).toBe(false);
  });
});

describe('API requests', () => {
  test('valid requests', () => {
    expect(parseRequest({ op: 'reserve', machine: 'web', mac: '02:AA:bb:cc:dd:ee', kind: 'veth' }))
      .toEqual({ op: 'reserve', machine: 'web', mac: '02:aa:bb:cc:dd:ee', kind: 'veth' });
    expect(parseRequest({ op: 'reserve', machine: 'web', mac: '02-00-00-00-00-01', kind: 'zone', zone: 'lab' }))
      .toEqual({ op: 'reserve', machine: 'web', mac: '02:00:00:00:00:01', kind: 'zone', zone: 'lab' });
    expect(parseRequest({ op: 'release', machine: 'web', kind: 'veth' })).toEqual({ op: 'release', machine: 'web', kind: 'veth' });
    expect(parseRequest({ op: 'status' })).toEqual({ op: 'status' });
    expect(parseRequest({ op: 'list', id: 7 })).toEqual({ op: 'list' });
    expect(parseRequest({ op: 'leases', ifname: 've-web' })).toEqual({ op: 'leases', ifname: 've-web' });
    expect(decodeRequestLine('{"op":"ports","id":"a"}')).toEqual({ request: { op: 'ports' }, id: 'a' });
  });

  test.each([
    ['[]', /a request is a JSON object/],
    ['{"op":"nope"}', /"op" must be one of reserve, release, status, list, leases, ports, check-ports, cni; got "nope"/],
    ['{}', /"op" must be one of .*got nothing/],
    ['{"op":"status","extra":1}', /status: unknown field "extra" \(allowed: id\)/],
    ['{"op":"reserve","machine":"web","kind":"veth"}', /reserve: "mac" is missing/],
    ['{"op":"reserve","machine":"-bad","mac":"02:00:00:00:00:01","kind":"veth"}', /reserve: "machine" "-bad" is not a valid machine name/],
    ['{"op":"reserve","machine":"web","mac":"zz","kind":"veth"}', /reserve: "mac" "zz" is not a MAC address/],
    ['{"op":"reserve","machine":"web","mac":"01:00:00:00:00:01","kind":"veth"}', /multicast/],
    ['{"op":"reserve","machine":"web","mac":"00:00:00:00:00:00","kind":"veth"}', /not a usable address/],
    ['{"op":"reserve","machine":"web","mac":"02:00:00:00:00:01","kind":"bridge"}', /"kind" must be "veth" or "zone", got "bridge"/],
    ['{"op":"reserve","machine":"web","mac":"02:00:00:00:00:01","kind":"zone"}', /"zone" is missing/],
    ['{"op":"reserve","machine":"web","mac":"02:00:00:00:00:01","kind":"zone","zone":"much-too-long-zone"}', /not a valid zone name/],
    ['{"op":"reserve","machine":"web","mac":"02:00:00:00:00:01","kind":"veth","zone":"x"}', /"zone" is only allowed with kind "zone"/],
    ['{"op":"release","machine":5,"kind":"veth"}', /release: "machine" must be a string, got number/],
    ['{"op":"leases","ifname":"a/b"}', /not an interface name/],
    ['{"op":"list","id":{}}', /"id" must be a string or number/],
    ['not json', /one JSON object per line/],
  ])('%s is refused', (line, message) => {
    expect(() => decodeRequestLine(line)).toThrow(message);
    try {
      decodeRequestLine(line);
    } catch (err) {
      expect((err as { code: string }).code).toBe('NETD_BAD_REQUEST');
    }
  });

  test('random input never gets past the checks unless it is a valid request', () => {
    fc.assert(fc.property(fc.jsonValue(), (v) => {
      try {
        const r = parseRequest(v);
        expect(['reserve', 'release', 'status', 'list', 'leases', 'ports']).toContain(r.op);
      } catch (err) {
        expect((err as { code: string }).code).toBe('NETD_BAD_REQUEST');
      }
    }));
  });

  test('oversized lines are refused', () => {
    expect(() => decodeRequestLine(`{"op":"status","id":"${'x'.repeat(20000)}"}`)).toThrow(/at most 16384 bytes/);
  });
});

describe('DNS for containers', () => {
  const dir = mkdtempSync(`${tmpdir()}/netd-dns-`);
  const file = (name: string, text: string): string => {
    writeFileSync(`${dir}/${name}`, text);
    return `${dir}/${name}`;
  };

  test('the host resolvers, without loopback ones; resolved\'s upstream list when the host uses its stub', () => {
    expect(hostDns({ host: file('a', 'nameserver 127.0.0.53\nnameserver 192.0.2.1\nnameserver 2001:db8::1\n') }))
      .toEqual({ servers: ['192.0.2.1'], servers6: ['2001:db8::1'], source: `${dir}/a` });
    expect(hostDns({ host: file('b', 'nameserver 127.0.0.53\n'), uplink: file('c', 'nameserver 198.51.100.7\nnameserver 2001:DB8:0::53\n') }))
      .toEqual({ servers: ['198.51.100.7'], servers6: ['2001:db8::53'], source: `${dir}/c` });
    // IPv6 resolvers a container cannot reach are not handed out (RDNSS): loopback, scoped link-local, multicast, v4-mapped
    expect(hostDns({ host: file('e', 'nameserver ::1\nnameserver fe80::1%eth0\nnameserver fe80::1\nnameserver ff02::fb\nnameserver ::ffff:192.0.2.1\nnameserver fd00:5::53\n') }))
      .toEqual({ servers: [], servers6: ['fd00:5::53'], source: `${dir}/e` });
    const only = hostDns({ host: file('d', 'nameserver 127.0.0.1\n'), uplink: `${dir}/missing` });
    expect(only.servers).toEqual([]);
    expect(only.source).toMatch(/only loopback resolvers \(127.0.0.1\).*NSPAWN_NETD_DNS/);
    expect(hostDns({ host: `${dir}/missing` }).source).toMatch(/is missing/);
    rmSync(dir, { recursive: true, force: true });
  });

  test('configured lists', () => {
    expect(parseDnsList('192.0.2.1, 198.51.100.2 203.0.113.3', 'x')).toEqual(['192.0.2.1', '198.51.100.2', '203.0.113.3']);
    expect(() => parseDnsList('192.0.2.1,example.com', '--dns')).toThrow('--dns: "example.com" is not an IP address');
    // IPv6 servers are taken (for RDNSS), scoped ones are not: a container is not on the host's links
    expect(parseDnsList('192.0.2.1 2001:DB8:0::53', 'x')).toEqual(['192.0.2.1', '2001:db8::53']);
    expect(() => parseDnsList('fe80::1%eth0', 'x')).toThrow(expect.objectContaining({ code: 'CFG_DNS' }));
    expect(() => parseDnsList('192.0.2.0/24', '$NSPAWN_NETD_DNS')).toThrow(expect.objectContaining({ code: 'CFG_DNS' }));
    // the launcher checks it before it makes anything (LaunchHooks.preflight)
    expect(() => addressHooks({ link: () => undefined, env: { NSPAWN_NETD_DNS: 'nope' } }).preflight())
      .toThrow(expect.objectContaining({ code: 'CFG_DNS', message: '$NSPAWN_NETD_DNS: "nope" is not an IP address (IPv4 DNS servers are handed out by DHCP, IPv6 ones in router advertisements)' }));
    expect(() => addressHooks({ link: () => undefined, env: { NSPAWN_NETD_DNS: '192.0.2.53' } }).preflight()).not.toThrow();
  });
});

describe('forwarding sysctl', () => {
  const fake = (v: string): SysctlIo & { v: string } => {
    const io = { v, read: () => io.v, write: (_p: string, x: string) => { io.v = x; } };
    return io;
  };
  test('turned on and put back, unless someone else changed it', () => {
    const io = fake('0');
    expect(enableForwarding(io)).toBe('0');
    expect(io.v).toBe('1');
    expect(enableForwarding(io)).toBeUndefined();
    expect(restoreForwarding('0', io)).toBe(true);
    expect(io.v).toBe('0');
    io.v = '0';
    expect(restoreForwarding('0', io)).toBe(false);
    expect(IP_FORWARD).toBe('/proc/sys/net/ipv4/ip_forward');
  });
  test('served links and other users (nspawn-cni ipam networks) share one record: put back when neither is left', () => {
    const vals: Record<string, string> = { [IP_FORWARD]: '0', [IPV6_FORWARD]: '0' };
    const io: SysctlIo = { read: (p) => vals[p] ?? '', write: (p, x) => { vals[p] = x; } };
    const st = emptyState();
    forwardingOn(st, false, io);
    st.forwardingUsers = ['cni:a'];
    expect([vals[IP_FORWARD], vals[IPV6_FORWARD], st.ipForwardBefore, st.ip6ForwardBefore]).toEqual(['1', '0', '0', undefined]);
    forwardingOn(st, true, io); // a served link with IPv6: IPv4's record stays the first one
    st.links.x = { kind: 'zone', key: 'x', ifname: 'vz-x', ifindex: 1, subnet: '192.168.0.0/24', reservations: [], holders: ['sidecar'] };
    expect([vals[IPV6_FORWARD], st.ipForwardBefore, st.ip6ForwardBefore]).toEqual(['1', '0', '0']);
    delete st.links.x;
    expect(forwardingOffIfUnused(st, io)).toEqual([]); // the ipam network still has a container
    expect(vals[IP_FORWARD]).toBe('1');
    st.links.x = { kind: 'zone', key: 'x', ifname: 'vz-x', ifindex: 1, subnet: '192.168.0.0/24', reservations: [], holders: ['sidecar'] };
    delete st.forwardingUsers;
    expect(forwardingOffIfUnused(st, io)).toEqual([]); // a served link still needs it
    delete st.links.x;
    expect(forwardingOffIfUnused(st, io)).toEqual(['net.ipv4.ip_forward set back to 0', 'net.ipv6.conf.all.forwarding set back to 0']);
    expect([vals[IP_FORWARD], vals[IPV6_FORWARD], st.ipForwardBefore, st.ip6ForwardBefore]).toEqual(['0', '0', undefined, undefined]);
  });
  test('the state file keeps the other users; a wrong value is refused', () => {
    const text = (users: unknown): string => JSON.stringify({ version: 1, links: {}, ipForwardBefore: '0', forwardingUsers: users });
    expect(parseState(text(['cni:a', 'cni:b']), 'f').forwardingUsers).toEqual(['cni:a', 'cni:b']);
    expect(parseState(text([]), 'f').forwardingUsers).toBeUndefined();
    for (const bad of ['cni:a', [''], [1], {}]) expect(() => parseState(text(bad), 'f')).toThrow(/forwardingUsers is not a list of names/);
  });
});

describe('nspawn-netd command line', () => {
  const env = { NSPAWN_TS_STATE_DIR: '/srv/state' };
  test('defaults and options', () => {
    expect(parseSidecarArgs([], {})).toEqual({ stateDir: '/var/lib/nspawn-ts', socket: '/run/nspawn-ts/netd.sock', ipv6: { enabled: true }, verbose: false });
    expect(parseSidecarArgs([], { ...env, NSPAWN_NETD_SOCKET: '/run/x.sock', NSPAWN_NETD_DNS: '192.0.2.9' }))
      .toEqual({ stateDir: '/srv/state', socket: '/run/x.sock', dns: ['192.0.2.9'], ipv6: { enabled: true }, verbose: false });
    expect(parseSidecarArgs(['--state-dir', '/a', '--socket=/b.sock', '--dns=192.0.2.1', '--dns', '192.0.2.2', '--pool=10.0.0.0/8', '-v'], { NSPAWN_NETD_DNS: '192.0.2.9' }))
      .toEqual({ stateDir: '/a', socket: '/b.sock', dns: ['192.0.2.1', '192.0.2.2'], pools: ['10.0.0.0/8'], ipv6: { enabled: true }, verbose: true });
    expect(parseSidecarArgs(['--help'], {})).toBe('help');
    expect(parseSidecarArgs(['--zone-leases-per-source=0'], {})).toMatchObject({ zoneLeasesPerSource: 0 });
    expect(parseSidecarArgs(['--zone-leases-per-source', '32'], {})).toMatchObject({ zoneLeasesPerSource: 32 });
    expect(() => parseSidecarArgs(['--zone-leases-per-source=-1'], {})).toThrow(/--zone-leases-per-source: "-1" is not a number of leases \(0: no cap\)/);
  });
  test('--help lists every option the parser takes, from one table (nspawn-netd --help, its man page, too)', () => {
    const help = sidecarHelp('Subcommands:\n  dhcp-serve  x');
    const names = [...help.matchAll(/^ {2}(?:-\w, )?(--[a-z0-9-]+)/gm)].map((m) => m[1] as string);
    expect(names).toEqual(['--state-dir', '--socket', '--dns', '--pool', '--ipv6', '--zone-leases-per-source', '--verbose', '--help']);
    const values: Record<string, string> = { '--state-dir': '/s', '--socket': '/s.sock', '--dns': '192.0.2.1', '--pool': '10.0.0.0/8', '--ipv6': 'no', '--zone-leases-per-source': '1' };
    for (const name of names) {
      const argv = values[name] === undefined ? [name] : [`${name}=${values[name]}`];
      expect(() => parseSidecarArgs(argv, {}), name).not.toThrow();
    }
    expect(help).toMatch(/^Usage: nspawn-netd \[OPTIONS\]\n {7}nspawn-netd SUBCOMMAND/);
    expect(help).toMatch(/\n\nSubcommands:\n {2}dhcp-serve/);
  });
  test.each([
    [['--bogus'], /unknown argument "--bogus"/],
    [['dhcp'], /unknown argument "dhcp"/],
    [['--state-dir'], /--state-dir needs a value/],
    [['--socket=relative.sock'], /--socket takes an absolute path, got "relative.sock"/],
    [['--dns=nope'], /--dns: "nope" is not an IP address/],
    [['--pool=banana'], /--pool: address pool 'banana' is not an IPv4 prefix \(e\.g\. 10\.0\.0\.0\/8\)/],
    [['--pool=10.0.0.0/8', '--pool=2001:db8::/64'], /--pool: address pool '2001:db8::\/64' is not an IPv4 prefix/],
    [['--pool=10.0.0.1/8'], /--pool: address pool '10\.0\.0\.1\/8' has host bits set; did you mean 10\.0\.0\.0\/8\?/],
    [['--pool', '10.0.0.0'], /--pool: address pool '10\.0\.0\.0' has no prefix length/],
  ])('%j is refused', (argv, message) => {
    expect(() => parseSidecarArgs(argv, {})).toThrow(message);
  });
});

test('sockaddr_un (sd_notify, the launcher\'s notify sockets, the thin client): a path NUL-terminated, "@name" abstract (a leading NUL, no terminator)', () => {
  expect(Buffer.from(sockaddrUn('/run/x')).toString('hex')).toBe('0100' + Buffer.from('/run/x\0').toString('hex'));
  expect(Buffer.from(sockaddrUn('@abs')).toString('hex')).toBe('0100' + '00' + Buffer.from('abs').toString('hex'));
  expect(sockaddrUn(`/${'x'.repeat(106)}`).length).toBe(2 + 108);
  expect(sockaddrUn(`@${'x'.repeat(107)}`).length).toBe(2 + 108);
});

test('sockaddr_un: empty and over-long addresses are refused with what is allowed', () => {
  expect(() => sockaddrUn('')).toThrow(expect.objectContaining({ code: 'NOTIFY_ADDRESS', message: 'not a usable AF_UNIX socket address: "" (a path or @name of at most 107 bytes)' }));
  expect(() => sockaddrUn(`/${'x'.repeat(107)}`)).toThrow(/not a usable AF_UNIX socket address/);
  expect(() => sockaddrUn(`@${'x'.repeat(108)}`)).toThrow(/a path or @name of at most 107 bytes/);
});

describe('resolv.conf of a container configured at start', () => {
  test("written to the container's /run (bound over /etc/resolv.conf), the image's file left alone, a symlink left to the container, nothing outside the root touched", async () => {
    const { writeLeaseResolvConf, renderLeaseResolvConf, leaseResolvConfBindOps, LEASE_RESOLV_CONF } = await import('../../../src/runtime/net/addresses.js');
    const { mkdirSync, readFileSync, symlinkSync, readdirSync, existsSync, writeFileSync } = await import('node:fs');
    const root = mkdtempSync(`${tmpdir()}/netd-root-`);
    try {
      mkdirSync(`${root}/etc`);
      mkdirSync(`${root}/run`);
      writeFileSync(`${root}/etc/resolv.conf`, 'nameserver 203.0.113.1\n');
      expect(writeLeaseResolvConf(root, ['192.0.2.53', '198.51.100.53'])).toBe(true);
      expect(readFileSync(`${root}${LEASE_RESOLV_CONF}`, 'utf8')).toBe(renderLeaseResolvConf(['192.0.2.53', '198.51.100.53']));
      expect(readFileSync(`${root}${LEASE_RESOLV_CONF}`, 'utf8')).toMatch(/^nameserver 192\.0\.2\.53\nnameserver 198\.51\.100\.53\n$/m);
      expect(readFileSync(`${root}/etc/resolv.conf`, 'utf8')).toBe('nameserver 203.0.113.1\n');
      expect(leaseResolvConfBindOps()).toEqual([{ op: 'mount', source: LEASE_RESOLV_CONF, target: '/etc/resolv.conf', flags: 0x1000, optional: true }]);
      // written again (a second start), shorter: no tail of the first left
      expect(writeLeaseResolvConf(root, ['203.0.113.53'])).toBe(true);
      expect(readFileSync(`${root}${LEASE_RESOLV_CONF}`, 'utf8')).toBe(renderLeaseResolvConf(['203.0.113.53']));
      expect(readdirSync(`${root}/etc`)).toEqual(['resolv.conf']);
      // none in the image: an empty one to mount on
      rmSync(`${root}/etc/resolv.conf`);
      expect(writeLeaseResolvConf(root, ['192.0.2.53'])).toBe(true);
      expect(readFileSync(`${root}/etc/resolv.conf`, 'utf8')).toBe('');
      // a symlink (resolved's stub inside) stays, and nothing is written to bind
      rmSync(`${root}/etc/resolv.conf`);
      rmSync(`${root}/run`, { recursive: true });
      mkdirSync(`${root}/run`);
      symlinkSync('../run/systemd/resolve/stub-resolv.conf', `${root}/etc/resolv.conf`);
      expect(writeLeaseResolvConf(root, ['192.0.2.53'])).toBe(false);
      expect(existsSync(`${root}${LEASE_RESOLV_CONF}`)).toBe(false);
      // /etc a symlink pointing out of the root: resolved inside it, the host's file untouched
      rmSync(`${root}/etc`, { recursive: true });
      mkdirSync(`${root}/real-etc`);
      symlinkSync('/real-etc', `${root}/etc`);
      expect(writeLeaseResolvConf(root, ['192.0.2.53'])).toBe(true);
      expect(existsSync(`${root}/real-etc/resolv.conf`)).toBe(true);
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
    expect(configMode({ mode: 'command', network: { config: 'auto' } as never })).toBe('static');
    expect(configMode({ mode: 'boot', network: { config: 'auto' } as never })).toBe('dhcp');
    expect(configMode({ mode: 'boot', network: { config: 'static' } as never })).toBe('static');
    expect(configMode({ mode: 'command', network: { config: 'dhcp' } as never })).toBe('dhcp');
  });

  test('lists the IPv4 servers (DHCP option 6), then the IPv6 ones (RDNSS); -b only when they are our server on the gateway', async () => {
    const { leaseNameservers, renderLeaseResolvConf } = await import('../../../src/runtime/net/addresses.js');
    const ipv6 = { address: 'fd00:1:2:3:5054:ff:fe00:1', prefixLength: 64 as const, gateway: 'fe80::1', dns: ['fd00:1:2:3::1'] };
    const ours = { dns: ['192.168.40.1'], gateway: '192.168.40.1', ipv6 };
    expect(leaseNameservers(ours, 'static')).toEqual(['192.168.40.1', 'fd00:1:2:3::1']);
    expect(leaseNameservers(ours, 'dhcp')).toEqual(['192.168.40.1', 'fd00:1:2:3::1']);
    expect(renderLeaseResolvConf(leaseNameservers(ours, 'static') ?? [])).toBe(
      "# Generated by nspawn-ts from the container's network lease\nnameserver 192.168.40.1\nnameserver fd00:1:2:3::1\n",
    );
    // fixed servers: written for a container configured at start, left to the DHCP client with -b
    const fixed = { dns: ['192.0.2.53'], gateway: '192.168.40.1', ipv6: { ...ipv6, dns: ['2001:db8::53'] } };
    expect(leaseNameservers(fixed, 'static')).toEqual(['192.0.2.53', '2001:db8::53']);
    expect(leaseNameservers(fixed, 'dhcp')).toBeUndefined();
    // no IPv6, no servers at all
    expect(leaseNameservers({ dns: ['192.0.2.53'], gateway: '192.168.40.1' }, 'static')).toEqual(['192.0.2.53']);
    expect(leaseNameservers({ dns: [], gateway: '192.168.40.1', ipv6: { ...ipv6, dns: ['2001:db8::53'] } }, 'static')).toEqual(['2001:db8::53']);
    expect(leaseNameservers({ dns: [], gateway: '192.168.40.1' }, 'static')).toBeUndefined();
  });
});

test('the firewall runs a command again when a signal interrupted libnftables (EINTR), and gives up after a few', async () => {
  const { Firewall } = await import('../../../src/net/firewall/index.js');
  const calls: string[] = [];
  let fail = 2;
  const fw = new Firewall({
    runner: (cmd) => {
      calls.push(cmd);
      if (fail-- > 0) return { rc: 1, output: '', error: 'netlink: Error: Could not process rule: Interrupted system call' };
      return { rc: 0, output: '', error: '' };
    },
  });
  fw.removeMasquerade('10.0.0.16/28');
  expect(calls).toHaveLength(3);
  fail = 10;
  expect(() => fw.removeMasquerade('10.0.0.16/28')).toThrow(/Interrupted system call/);
});
