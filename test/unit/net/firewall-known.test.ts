// Removal of an owner's mappings from what the Firewall instance added (no listing of the table),
// and several mappings added in one transaction: the same elements as the listing-based plans.
import { describe, expect, test } from 'vitest';
import fc from 'fast-check';
import {
  addPortMappingDocument, addPortMappingsDocument, desiredElements, knownOwnerRemoval, mappingElements, normaliseMapping, ownerRemoval,
  type PortMapping,
} from '../../../src/net/firewall/rules.js';
import { expectGolden } from './golden.js';

const web: PortMapping = { protocol: 'tcp', hostPort: 8080, containerAddress: '10.0.0.18', containerPort: 80, owner: 'alpha', loopback: true };
const dns: PortMapping = { protocol: 'udp', hostPort: 5353, containerAddress: '10.0.0.18', containerPort: 53, owner: 'alpha' };
const web6: PortMapping = { protocol: 'tcp', hostPort: 8080, containerAddress: 'fd00:1::2', containerPort: 80, owner: 'alpha' };
const ssh: PortMapping = { protocol: 'tcp', hostPort: 2222, containerAddress: '10.0.0.34', containerPort: 22, owner: 'beta' };

const ids = (els: Array<{ set: string; key: string }>): string[] => els.map((e) => `${e.set} ${e.key}`).sort();

describe('known removal', () => {
  test('the owner\'s map, loopback and hairpin entries, each once', () => {
    const mine = [web, dns, web6].map(normaliseMapping);
    const remove = knownOwnerRemoval(mine, () => false);
    expect(remove && ids(remove)).toEqual([
      'hairpin4 10.0.0.18 . 10.0.0.18', 'hairpin6 fd00:1::2 . fd00:1::2', 'ports4 tcp . 8080', 'ports4 udp . 5353', 'ports6 tcp . 8080',
      'ports_lo4 tcp . 8080',
    ]);
  });

  test('undefined when nothing is known or an address is shared with another owner', () => {
    expect(knownOwnerRemoval([], () => false)).toBeUndefined();
    expect(knownOwnerRemoval([normaliseMapping(web)], (a) => a === '10.0.0.18')).toBeUndefined();
    expect(knownOwnerRemoval([normaliseMapping(ssh)], (a) => a === '10.0.0.18')).toBeDefined();
  });

  test('property: equals the listing-based removal when each address has one owner', () => {
    const mapping = fc.record({
      protocol: fc.constantFrom<'tcp' | 'udp'>('tcp', 'udp'),
      hostPort: fc.integer({ min: 1, max: 40 }),
      containerPort: fc.integer({ min: 1, max: 65535 }),
      owner: fc.constantFrom('a', 'b', 'c'),
      host: fc.integer({ min: 1, max: 3 }),
      loopback: fc.boolean(),
      v6: fc.boolean(),
    });
    fc.assert(fc.property(fc.array(mapping, { maxLength: 30 }), fc.constantFrom('a', 'b', 'c'), (raw, owner) => {
      // one (protocol, port) per family; addresses derived from the owner so none is shared
      const seen = new Set<string>();
      const all: PortMapping[] = [];
      for (const r of raw) {
        const o = r.owner.charCodeAt(0) - 96;
        const containerAddress = r.v6 ? `fd00:${o}::${r.host}` : `10.0.${o}.${r.host}`;
        const key = `${r.v6} ${r.protocol} ${r.hostPort}`;
        if (seen.has(key)) continue;
        seen.add(key);
        all.push({ protocol: r.protocol, hostPort: r.hostPort, containerAddress, containerPort: r.containerPort, owner: r.owner, loopback: r.loopback });
      }
      const elements = desiredElements({ masquerade: [], ports: all });
      const mine = all.filter((m) => m.owner === owner).map(normaliseMapping);
      const known = knownOwnerRemoval(mine, () => false);
      const listed = ownerRemoval(elements, owner);
      if (mine.length === 0) return known === undefined && listed.remove.length === 0;
      expect(listed.add).toEqual([]);
      expect(ids(known ?? [])).toEqual(ids(listed.remove));
      return true;
    }), { numRuns: 300 });
  });
});

describe('several mappings in one transaction', () => {
  test('one create per map with every entry, hairpins once (golden)', () => {
    const doc = addPortMappingsDocument([web, dns, web6]);
    expectGolden('add-port-mappings-batch.json', doc);
    const creates = doc.nftables.filter((c) => 'create' in c);
    const adds = doc.nftables.filter((c) => 'add' in c);
    expect(creates.length).toBe(3); // ports4, ports6, ports_lo4
    expect(adds.length).toBe(2); // hairpin4, hairpin6 (10.0.0.18 once)
    const elems = JSON.stringify(doc).match(/10\.0\.0\.18/g) ?? [];
    // ports4 ×2, ports_lo4 ×1, hairpin4 ×2 (C . C)
    expect(elems.length).toBe(5);
  });

  test('a single mapping is the same document as addPortMappingDocument', () => {
    expect(addPortMappingsDocument([dns])).toEqual(addPortMappingDocument(dns));
    expect(mappingElements(dns).length).toBe(2);
  });
});
