import { describe, expect, test } from 'vitest';
import fc from 'fast-check';
import {
  addMasqueradeDocument, addPortMappingDocument, changeDocument, deleteTableDocument, desiredElements, elementsFromListing,
  layoutDocument, layoutMapsScript, mappingElements, portForwardMappings, normaliseMapping, normaliseSubnet, ownerRemoval, reconcilePlan,
  removeMasqueradeDocument, renderAddMap, mapObjects, replacementPlan, stateFromElements, describeState,
  type FirewallState, type FwElement, type PortMapping,
} from '../../../src/net/firewall/rules.js';
import type { NftListing } from '../../../src/net/firewall/nft-json.js';
import { expectGolden, readGolden } from './golden.js';

const web: PortMapping = { protocol: 'tcp', hostPort: 8080, containerAddress: '10.0.0.18', containerPort: 80, owner: 'alpha', loopback: true };
const dns: PortMapping = { protocol: 'udp', hostPort: 5353, containerAddress: '10.0.0.18', containerPort: 53, owner: 'alpha' };
const web6: PortMapping = { protocol: 'tcp', hostPort: 8080, containerAddress: 'FD00:1:0::2', containerPort: 80, owner: 'alpha', loopback: true };
const ssh: PortMapping = { protocol: 'tcp', hostPort: 2222, containerAddress: '10.0.0.34', containerPort: 22, owner: 'beta' };

describe('layout (golden)', () => {
  test('ensure-tables: maps as nft statements, the rest as one JSON transaction', () => {
    expectGolden('layout-maps.nft', layoutMapsScript());
    expectGolden('layout.json', layoutDocument());
    expect(renderAddMap(mapObjects()[0]!)).toBe('add map inet nspawn-ts ports4 { type inet_proto . inet_service : ipv4_addr . inet_service; }');
    expectGolden('delete-table.json', deleteTableDocument());
  });

  test('the layout flushes only chains, never sets or maps, and adds no element', () => {
    const cmds = layoutDocument().nftables;
    const flushed = cmds.flatMap((c) => ('flush' in c ? [Object.keys(c.flush)[0]] : []));
    expect(flushed).toEqual(['chain', 'chain', 'chain', 'chain', 'chain']);
    expect(cmds.some((c) => 'add' in c && 'element' in c.add)).toBe(false);
    // the flush of each chain comes before its rules
    const firstRule = cmds.findIndex((c) => 'add' in c && 'rule' in c.add);
    const lastFlush = cmds.map((c) => 'flush' in c).lastIndexOf(true);
    expect(lastFlush).toBeLessThan(firstRule);
  });

  test('table names are validated before they reach nft syntax', () => {
    expect(() => layoutMapsScript('x; flush ruleset')).toThrow(/invalid nft table name/);
    expect(layoutMapsScript('test-1.x')).toContain('add table inet test-1.x');
  });
});

describe('operations (golden)', () => {
  test('masquerade', () => {
    expectGolden('add-masquerade-v4.json', addMasqueradeDocument('10.0.0.17/28', 'alpha'));
    expectGolden('add-masquerade-v6.json', addMasqueradeDocument('fd00:1::5/64', 'zone:public'));
    expectGolden('remove-masquerade.json', removeMasqueradeDocument('10.0.0.16/28'));
  });

  test('port mappings: create for the map entries (never overwrite), add for the shared ones', () => {
    expectGolden('add-port-mapping-v4-loopback.json', addPortMappingDocument(web));
    expectGolden('add-port-mapping-v6.json', addPortMappingDocument(web6));
    expectGolden('add-port-mapping-udp.json', addPortMappingDocument(dns));
    const doc = addPortMappingDocument(web);
    expect(doc.nftables.map((c) => Object.keys(c)[0])).toEqual(['create', 'create', 'add']);
  });

  test('loopback is IPv4 only; IPv6 mappings ignore it', () => {
    expect(mappingElements(web6).map((e) => e.set)).toEqual(['ports6', 'hairpin6']);
    expect(mappingElements(web).map((e) => e.set)).toEqual(['ports4', 'ports_lo4', 'hairpin4']);
    expect(normaliseMapping(web6).containerAddress).toBe('fd00:1::2');
  });
});

describe('reading the table back (golden listing from libnftables 1.0.6)', () => {
  const listing = readGolden<NftListing>('listing.json');
  const els = elementsFromListing(listing);

  test('elements with owners, /32 listed bare, foreign shapes kept for deletion', () => {
    expectGolden('listing-elements.json', els);
    expect(els.find((e) => e.key === '192.168.7.9/32')).toMatchObject({ set: 'masq4', owner: 'beta' });
    expect(els.find((e) => e.key === '172.16.0.1-172.16.0.5')).toMatchObject({ keyExpr: { range: ['172.16.0.1', '172.16.0.5'] } });
  });

  test('state: mappings with their loopback flag, masquerade entries; foreign elements left out', () => {
    const state = stateFromElements(els);
    expect(state.ports).toContainEqual({ ...web, loopback: true });
    expect(state.ports).toContainEqual(dns);
    expect(state.ports).toContainEqual({ ...web6, containerAddress: 'fd00:1::2', loopback: undefined } as unknown as PortMapping);
    expect(state.masquerade.map((m) => m.subnet)).toEqual(['10.0.0.16/28', '192.168.7.9/32', 'fd00:1::/64']);
    expect(describeState(state)).toContain('tcp port 8080 → 10.0.0.18:80 +127.0.0.1 (alpha)');
  });

  test('removing an owner takes its map, loopback and hairpin entries, nothing of others', () => {
    const { remove, add } = ownerRemoval(els, 'alpha');
    expect(add).toEqual([]);
    expectGolden('remove-owner-alpha.json', changeDocument(remove, add));
    expect(remove.every((e) => e.owner === 'alpha')).toBe(true);
    expect(remove.map((e) => e.set).sort()).toEqual(['hairpin4', 'hairpin6', 'ports4', 'ports4', 'ports6', 'ports_lo4']);
    expect(ownerRemoval(els, 'beta').remove.map((e) => `${e.set} ${e.key}`)).toEqual(['ports4 tcp . 2222', 'hairpin4 10.0.0.34 . 10.0.0.34']);
    expect(ownerRemoval(els, 'nobody')).toEqual({ remove: [], add: [] });
  });

  test('a hairpin entry stays while another owner still targets its address, and passes to it', () => {
    const shared: FwElement[] = [
      { set: 'ports4', key: 'tcp . 1', data: '10.0.0.5 . 1', owner: 'a' },
      { set: 'ports4', key: 'tcp . 2', data: '10.0.0.5 . 2', owner: 'b' },
      { set: 'hairpin4', key: '10.0.0.5 . 10.0.0.5', owner: 'a' },
    ];
    // b still targets 10.0.0.5: the hairpin entry passes to b
    expect(ownerRemoval(shared, 'a')).toEqual({
      remove: [shared[0], shared[2]], add: [{ set: 'hairpin4', key: '10.0.0.5 . 10.0.0.5', owner: 'b' }],
    });
    expect(ownerRemoval(shared, 'b')).toEqual({ remove: [shared[1]], add: [] });
    expect(ownerRemoval(shared.slice(0, 1).concat(shared[2]!), 'a').remove.map((e) => e.set)).toEqual(['ports4', 'hairpin4']);
  });

  test('reconcile: no duplicates, no leftovers, other owners spared when asked', () => {
    const desired: FirewallState = {
      masquerade: [{ subnet: '10.0.0.16/28', owner: 'alpha' }, { subnet: '10.0.1.0/24', owner: 'zone:public' }],
      ports: [{ ...web, loopback: false }, { ...dns, containerPort: 5353 }, ssh],
    };
    const plan = reconcilePlan(els, desired);
    expectGolden('reconcile.json', changeDocument(plan.remove, plan.add));
    const ids = (l: FwElement[]) => l.map((e) => `${e.set} ${e.key}${e.data ? ` : ${e.data}` : ''}`).sort();
    expect(ids(plan.remove)).toEqual([
      'hairpin6 fd00:1::2 . fd00:1::2', 'masq4 172.16.0.1-172.16.0.5', 'masq4 192.168.7.9/32', 'masq6 fd00:1::/64',
      'ports4 udp . 5353 : 10.0.0.18 . 53', 'ports6 tcp . 8080 : fd00:1::2 . 80', 'ports_lo4 tcp . 8080 : 10.0.0.18 . 80',
    ]);
    expect(ids(plan.add)).toEqual(['masq4 10.0.1.0/24', 'ports4 udp . 5353 : 10.0.0.18 . 5353']);
    // applying the plan to the listing gives exactly the desired state
    const after = [...els.filter((e) => !plan.remove.includes(e)), ...plan.add];
    expect(reconcilePlan(after, desired)).toEqual({ remove: [], add: [] });
    // a caller speaking only for alpha leaves beta's and unowned entries
    const alphaOnly = reconcilePlan(els, { masquerade: [], ports: [] }, (o) => o === 'alpha');
    expect(alphaOnly.remove.every((e) => e.owner === 'alpha')).toBe(true);
    expect(alphaOnly.add).toEqual([]);
  });

  test('replacing a mapping whose target changed', () => {
    const plan = replacementPlan(els, { ...web, containerAddress: '10.0.0.19', loopback: false });
    const ids = (l: FwElement[]) => l.map((e) => `${e.set} ${e.key}${e.data ? ` : ${e.data}` : ''}`);
    // 10.0.0.18 stays targeted by udp 5353: its hairpin entry stays
    expect(ids(plan.remove)).toEqual(['ports4 tcp . 8080 : 10.0.0.18 . 80', 'ports_lo4 tcp . 8080 : 10.0.0.18 . 80']);
    expect(ids(plan.add)).toEqual(['ports4 tcp . 8080 : 10.0.0.19 . 80', 'hairpin4 10.0.0.19 . 10.0.0.19']);
    expect(replacementPlan(els, web)).toEqual({ remove: [], add: [] });
  });
});

describe('validation', () => {
  test('mappings: protocol, ports, address, owner', () => {
    expect(() => normaliseMapping({ ...web, protocol: 'sctp' as 'tcp' })).toThrow(/only tcp and udp/);
    expect(() => normaliseMapping({ ...web, hostPort: 0 })).toThrow(/invalid host port 0: ports are 1–65535/);
    expect(() => normaliseMapping({ ...web, containerPort: 70000 })).toThrow(/invalid container port 70000/);
    expect(() => normaliseMapping({ ...web, hostPort: 80.5 })).toThrow(/invalid host port/);
    expect(() => normaliseMapping({ ...web, containerAddress: '10.0.0.0/24' })).toThrow(/invalid container address "10.0.0.0\/24"/);
    expect(() => normaliseMapping({ ...web, containerAddress: 'host' })).toThrow(/invalid container address/);
    expect(() => normaliseMapping({ ...web, owner: '' })).toThrow(/invalid firewall owner/);
    expect(() => normaliseMapping({ ...web, owner: 'a"b' })).toThrow(/invalid firewall owner/);
    expect(() => normaliseMapping({ ...web, owner: 'x'.repeat(101) })).toThrow(/invalid firewall owner/);
    expect(normaliseMapping({ ...web, owner: 'zone:public' }).owner).toBe('zone:public');
  });

  test('port-forward specs (also ranges) become mappings', () => {
    expect(portForwardMappings({ protocol: 'tcp', hostPort: 8080, hostPortEnd: 8080, containerPort: 80, containerPortEnd: 80 }, '10.0.0.2', 'web'))
      .toEqual([{ protocol: 'tcp', hostPort: 8080, containerAddress: '10.0.0.2', containerPort: 80, owner: 'web' }]);
    expect(portForwardMappings({ protocol: 'udp', hostPort: 6000, hostPortEnd: 6002, containerPort: 7000, containerPortEnd: 7002 }, 'FD00::2', 'w', true)
      .map((m) => `${m.hostPort}>${m.containerAddress}:${m.containerPort}`)).toEqual(['6000>fd00::2:7000', '6001>fd00::2:7001', '6002>fd00::2:7002']);
    expect(() => portForwardMappings({ protocol: 'tcp', hostPort: 10, hostPortEnd: 12, containerPort: 1, containerPortEnd: 2 }, '10.0.0.2', 'w'))
      .toThrow(/must be non-empty and of equal length/);
    expect(() => portForwardMappings({ protocol: 'tcp', hostPort: 1, hostPortEnd: 5000, containerPort: 1 }, '10.0.0.2', 'w')).toThrow(/at most 4096 ports/);
  });

  test('subnets are normalised to their network address', () => {
    expect(normaliseSubnet('10.0.0.17/28')).toEqual({ family: 4, subnet: '10.0.0.16/28', network: '10.0.0.16', len: 28 });
    expect(normaliseSubnet('10.0.0.5').subnet).toBe('10.0.0.5/32');
    expect(normaliseSubnet('FD00:1::5/64').subnet).toBe('fd00:1::/64');
    for (const bad of ['10.0.0.0/33', '10.0.0.0/', 'x/8', '10.0.0.0/8/8', 'fd00::/129', '10.0.0.0/-1']) {
      expect(() => normaliseSubnet(bad), bad).toThrow(/is not a subnet/);
    }
  });

  test('two mappings of one port in one family are a conflict', () => {
    expect(() => desiredElements({ masquerade: [], ports: [web, { ...ssh, hostPort: 8080 }] })).toThrow(/tcp port 8080 is forwarded twice/);
    // the same port in both families is fine
    expect(desiredElements({ masquerade: [], ports: [web, web6] })).toHaveLength(5);
  });

  test('property: elements of any valid state round-trip through the listing format', () => {
    const mapping = fc.record({
      protocol: fc.constantFrom('tcp' as const, 'udp' as const),
      hostPort: fc.integer({ min: 1, max: 65535 }),
      containerAddress: fc.oneof(fc.ipV4(), fc.ipV6()),
      containerPort: fc.integer({ min: 1, max: 65535 }),
      owner: fc.constantFrom('a', 'b', 'zone:x'),
      loopback: fc.boolean(),
    });
    fc.assert(fc.property(fc.uniqueArray(mapping, { selector: (m) => `${m.protocol}${m.hostPort}${m.containerAddress.includes(':')}` , maxLength: 20 }), (ports) => {
      const state: FirewallState = { masquerade: [], ports };
      const els = desiredElements(state);
      // simulate a listing: what we add, as libnftables lists it
      const doc = changeDocument([], els);
      const listing: NftListing = { nftables: doc.nftables.map((c) => {
        const e = (c as { add: { element: { name: string; elem: unknown[] } } }).add.element;
        const isMap = e.name.startsWith('ports');
        return isMap
          ? { map: { family: 'inet', table: 'nspawn-ts', name: e.name, type: [], map: '', elem: e.elem as [never, never][] } }
          : { set: { family: 'inet', table: 'nspawn-ts', name: e.name, type: [], elem: e.elem as never[] } };
      }) };
      const back = elementsFromListing(listing);
      expect(reconcilePlan(back, state)).toEqual({ remove: [], add: [] });
      expect(stateFromElements(back).ports).toHaveLength(ports.length);
    }), { numRuns: 200 });
  });
});
