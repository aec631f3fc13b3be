import { describe, expect, test } from 'vitest';
import fc from 'fast-check';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  bridgeVethHostIfname, formatMac, generateMac, hostnameCleanup, ifnameProblem, ifnameValid,
  ipvlanIfname, machineNameValid, macvlanIfname, namingSchemeHasLongHash, parseMac, parseMachineId, readMachineId,
  shortenIfname, SHORTEN_IFNAME_HASH_KEY, vethHostIfname, vethMacs, zoneBridgeIfname, zoneNameValid, type MacKind,
} from '../../../src/net/naming.js';
import { siphash24 } from '../../../src/net/siphash.js';
import { ConfigError } from '../../../src/errors.js';

const MACHINE_ID = parseMachineId('0123456789abcdef0123456789abcdef\n');

describe('ifnameValid (systemd ifname_valid_full)', () => {
  test.each([
    ['eth0', true], ['ve-foo', true], ['a', true], ['x'.repeat(15), true], ['x'.repeat(16), false],
    ['', false], ['.', false], ['..', false], ['all', false], ['default', false], ['alls', true],
    ['123', false], ['0', false], ['007', false], ['0x10', false], ['+5', false], ['-5', true], ['1a', true],
    ['a b', false], ['a:b', false], ['a/b', false], ['a%b', false], ['tab\t', false], ['ümlaut', false],
    ['a\x7f', false], ['~!@#$^&*()', true], ['99999999999', false],
  ])('%j → %s', (name, valid) => {
    expect(ifnameValid(name)).toBe(valid);
  });

  test('alternative names: up to 127 bytes, all/default allowed, numbers still refused', () => {
    expect(ifnameValid('ve-' + 'x'.repeat(124), { alternative: true })).toBe(true);
    expect(ifnameValid('ve-' + 'x'.repeat(125), { alternative: true })).toBe(false);
    expect(ifnameValid('all', { alternative: true })).toBe(true);
    expect(ifnameValid('42', { alternative: true })).toBe(false);
    expect(ifnameValid('42', { numeric: true })).toBe(true);
  });

  test('problems are described', () => {
    expect(ifnameProblem('eth0')).toBeUndefined();
    expect(ifnameProblem('x'.repeat(16))).toMatch(/longer than 15 bytes/);
    expect(ifnameProblem('12')).toMatch(/number/);
    expect(ifnameProblem('all')).toMatch(/reserved/);
    expect(ifnameProblem('a:b')).toMatch(/printable ASCII/);
  });
});

describe('interface-name shortening (golden, reference §1.2)', () => {
  test.each([
    ['ve-long-container-name', 0x848920ab9b2596e9n, 've-long-conJZbp'],
    ['ve-verylongcontainername', 0xa959bc4616d7e419n, 've-verylong1-QZ'],
    ['vb-my-test-container', 0xd357f37e24fe767an, 'vb-my-test-_nZ6'],
    ['ve-abcdefghijklm', 0x50dfb480a4ca17b9n, 've-abcdefghyhe5'],
  ])('%s', (full, hash, short) => {
    expect(siphash24(Buffer.from(full), SHORTEN_IFNAME_HASH_KEY)).toBe(hash);
    expect(shortenIfname(full)).toEqual({ name: short, altname: full, full, shortened: true });
  });

  test('prefix helpers', () => {
    expect(vethHostIfname('long-container-name').name).toBe('ve-long-conJZbp');
    expect(vethHostIfname('verylongcontainername')).toMatchObject({ name: 've-verylong1-QZ', altname: 've-verylongcontainername' });
    expect(bridgeVethHostIfname('my-test-container').name).toBe('vb-my-test-_nZ6');
    expect(vethHostIfname('abcdefghijklm').name).toBe('ve-abcdefghyhe5');
    // 12 characters never get shortened
    expect(vethHostIfname('abcdefghijkl')).toEqual({ name: 've-abcdefghijkl', full: 've-abcdefghijkl', shortened: false });
    expect(macvlanIfname('eth0')).toEqual({ name: 'mv-eth0', full: 'mv-eth0', shortened: false });
    expect(ipvlanIfname('enp0s31f6abcdef').name).toHaveLength(15);
    expect(ipvlanIfname('enp0s31f6abcdef').name.startsWith('iv-enp0s31f')).toBe(true);
  });

  test('old naming schemes truncate', () => {
    expect(shortenIfname('ve-long-container-name', { longHash: false })).toMatchObject({ name: 've-long-contain', shortened: true });
    expect(namingSchemeHasLongHash({}, '')).toBe(true);
    expect(namingSchemeHasLongHash({ NET_NAMING_SCHEME: 'v243' }, '')).toBe(false);
    expect(namingSchemeHasLongHash({ NET_NAMING_SCHEME: 'v245' }, '')).toBe(true);
    expect(namingSchemeHasLongHash({ NET_NAMING_SCHEME: 'v245' }, 'quiet net.naming-scheme=v241 ro')).toBe(false);
    expect(namingSchemeHasLongHash({ NET_NAMING_SCHEME: 'latest' }, '')).toBe(true);
  });

  test('an unshortened name longer than an altname may be gets no altname', () => {
    const r = vethHostIfname('a'.repeat(130));
    expect(r.shortened).toBe(true);
    expect(r.altname).toBeUndefined();
    expect(r.name).toHaveLength(15);
  });

  test('property: results are valid names of at most 15 bytes, deterministic, prefix kept', () => {
    const machine = fc.stringMatching(/^[A-Za-z0-9][A-Za-z0-9.-]{0,62}[A-Za-z0-9]$/);
    fc.assert(fc.property(machine, fc.constantFrom(vethHostIfname, bridgeVethHostIfname, macvlanIfname), (m, f) => {
      const r = f(m);
      expect(Buffer.byteLength(r.name)).toBeLessThanOrEqual(15);
      expect(ifnameValid(r.name)).toBe(true);
      expect(r.name.slice(0, 3)).toBe(r.full.slice(0, 3));
      expect(f(m)).toEqual(r);
      expect(r.shortened).toBe(r.full.length >= 16);
      if (r.shortened) expect(r.altname).toBe(r.full);
    }), { numRuns: 2000 });
  });

  test('property: shortened names of valid machine names are valid interface names', () => {
    fc.assert(fc.property(fc.stringMatching(/^[a-z0-9]{13,64}$/), (m) => {
      expect(ifnameValid(vethHostIfname(m).name)).toBe(true);
    }));
  });
});

describe('zones', () => {
  test('vz-ZONE with zone ≤ 12 characters', () => {
    expect(zoneBridgeIfname('public')).toBe('vz-public');
    expect(zoneBridgeIfname('abcdefghijkl')).toBe('vz-abcdefghijkl');
    expect(zoneNameValid('abcdefghijklm')).toBe(false);
    expect(() => zoneBridgeIfname('abcdefghijklm')).toThrow(ConfigError);
    expect(() => zoneBridgeIfname('abcdefghijklm')).toThrow(/Invalid network zone name "abcdefghijklm": it is longer than 12 characters/);
    expect(() => zoneBridgeIfname('')).toThrow(/it is empty/);
    expect(() => zoneBridgeIfname('a/b')).toThrow(/printable ASCII/);
    // "vz-" makes an all-digit zone acceptable, as in systemd
    expect(zoneBridgeIfname('42')).toBe('vz-42');
  });
});

describe('MAC generation (golden, reference §2)', () => {
  test('worked example: machine-id 0123…cdef, name mycontainer', () => {
    expect(formatMac(generateMac(MACHINE_ID, 'mycontainer', 'host'))).toBe('76:84:85:cd:d8:e2');
    expect(formatMac(generateMac(MACHINE_ID, 'mycontainer', 'container'))).toBe('06:74:3f:97:db:5a');
    expect(formatMac(generateMac(MACHINE_ID, 'mycontainer', 'macvlan', 0))).toBe('ee:45:73:e9:59:49');
    expect(formatMac(generateMac(MACHINE_ID, 'mycontainer', 'macvlan', 1))).toBe('96:6e:ff:cd:11:57');
    expect(formatMac(generateMac(MACHINE_ID, 'mycontainer', 'extraHost', 0))).toBe('96:59:7d:b4:03:b9');
    expect(formatMac(generateMac(MACHINE_ID, 'mycontainer', 'extraContainer', 0))).toBe('6a:78:96:88:ae:c1');
    const both = vethMacs(MACHINE_ID, 'mycontainer');
    expect([formatMac(both.host), formatMac(both.container)]).toEqual(['76:84:85:cd:d8:e2', '06:74:3f:97:db:5a']);
  });

  test('raw hash bytes before the bit fix-up (host: 75 84 85 cd d8 e2)', () => {
    const input = Buffer.concat([MACHINE_ID, Buffer.from('mycontainer')]);
    const h = siphash24(input, Uint8Array.from(Buffer.from('1a376fc746ec450bada3d53106605db1', 'hex')));
    expect(h & 0xffffffffffffn).toBe(0xe2d8cd858475n);
  });

  test('property: unicast, locally administered, deterministic, index-sensitive', () => {
    const kinds: MacKind[] = ['host', 'container', 'extraHost', 'extraContainer', 'macvlan'];
    fc.assert(fc.property(
      fc.uint8Array({ minLength: 16, maxLength: 16 }), fc.string({ minLength: 1, maxLength: 64 }),
      fc.constantFrom(...kinds), fc.nat(1000),
      (id, name, kind, idx) => {
        const mac = generateMac(id, name, kind, idx);
        expect(mac).toHaveLength(6);
        expect((mac[0] as number) & 1).toBe(0);
        expect((mac[0] as number) & 2).toBe(2);
        expect(generateMac(id, name, kind, idx)).toEqual(mac);
      }), { numRuns: 500 });
  });

  test('idx 0 adds no bytes (so extra#0 differs from extra#1 only by the suffix)', () => {
    expect(generateMac(MACHINE_ID, 'x', 'macvlan', 0)).not.toEqual(generateMac(MACHINE_ID, 'x', 'macvlan', 1));
    expect(() => generateMac(MACHINE_ID, 'x', 'host', -1)).toThrow(RangeError);
    expect(() => generateMac(new Uint8Array(8), 'x', 'host')).toThrow(/16 bytes/);
  });

  test('parse/format MAC', () => {
    expect(formatMac(parseMac('02:AB:cd:00:01:ff'))).toBe('02:ab:cd:00:01:ff');
    expect(formatMac(parseMac('02-ab-cd-00-01-ff'))).toBe('02:ab:cd:00:01:ff');
    expect(() => parseMac('02:ab:cd:00:01')).toThrow(/not a MAC address/);
  });
});

describe('machine ID', () => {
  test('parses /etc/machine-id text, refuses junk and the null ID', () => {
    expect(Buffer.from(MACHINE_ID).toString('hex')).toBe('0123456789abcdef0123456789abcdef');
    expect(() => parseMachineId('xyz')).toThrow(/32 hexadecimal digits/);
    expect(() => parseMachineId('0'.repeat(32))).toThrow(/all zeros/);
  });

  test('reads the first valid file of the list and names every problem otherwise', ({ onTestFinished }) => {
    const dir = mkdtempSync(join(tmpdir(), 'naming-'));
    onTestFinished(() => rmSync(dir, { recursive: true, force: true }));
    const bad = join(dir, 'bad');
    const good = join(dir, 'good');
    writeFileSync(bad, 'not an id\n');
    writeFileSync(good, 'ffeeddccbbaa99887766554433221100\n');
    expect(Buffer.from(readMachineId([join(dir, 'missing'), bad, good])).toString('hex')).toBe('ffeeddccbbaa99887766554433221100');
    expect(() => readMachineId([join(dir, 'missing'), bad])).toThrow(
      expect.objectContaining({ code: 'NET_NO_MACHINE_ID', message: expect.stringMatching(/missing: ENOENT.*bad: a machine ID is 32/) }));
  });
});

describe('machine names (systemd hostname_is_valid)', () => {
  test.each([
    ['mycontainer', true], ['my-container', true], ['a.b.c', true], ['A9', true], ['x'.repeat(64), true],
    ['x'.repeat(65), false], ['', false], ['.host', false], ['-a', false], ['a-', false], ['a.-b', false],
    ['a-.b', false], ['.a', false], ['a.', false], ['a..b', false], ['a_b', false], ['a b', false],
    ['a--b', true], ['host', true], ['ümlaut', false], ['123', true],
  ])('%j → %s', (name, valid) => {
    expect(machineNameValid(name)).toBe(valid);
  });

  test('hostnameCleanup makes directory names into valid machine names', () => {
    expect(hostnameCleanup('my_container')).toBe('mycontainer');
    expect(hostnameCleanup('-a..b-')).toBe('a.b');
    expect(hostnameCleanup('debian-12.raw')).toBe('debian-12.raw');
    expect(hostnameCleanup('___')).toBe('');
    expect(hostnameCleanup('x'.repeat(100))).toHaveLength(64);
    fc.assert(fc.property(fc.string({ maxLength: 100 }), (s) => {
      const c = hostnameCleanup(s);
      expect(c === '' || machineNameValid(c)).toBe(true);
    }), { numRuns: 2000 });
  });
});
