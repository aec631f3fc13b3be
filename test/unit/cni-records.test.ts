// nspawn-cni's attachment records (src/cni/records.ts): the host ports an ipam ADD records are read
// back for its DEL, which removes the mappings there by key; a list with one bad entry is not
// trusted (the DEL then finds the mappings by listing the table).
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { afterAll, describe, expect, test } from 'vitest';
import { readRecord, writeRecord, type ContainerRecord } from '../../src/cni/records.js';

const dir = mkdtempSync('/tmp/cni-records-');
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const base: ContainerRecord = { containerId: 'c1', ifname: 'eth0', machine: 'c1', mode: 'zone', zone: 'net', hostIfname: 'nc01234567', ipam: 'host-local' };

describe('attachment records', () => {
  test('the recorded host ports round-trip; an empty list stays empty (no mappings: nothing to remove)', () => {
    const path = `${dir}/a.json`;
    writeRecord(path, { ...base, ports: [{ protocol: 'tcp', hostPort: 8080 }, { protocol: 'udp', hostPort: 53 }] });
    expect(readRecord(path)?.ports).toEqual([{ protocol: 'tcp', hostPort: 8080 }, { protocol: 'udp', hostPort: 53 }]);
    writeRecord(path, { ...base, ports: [] });
    expect(readRecord(path)?.ports).toEqual([]);
  });

  test('no list (an older record) or a bad entry: no ports, so the DEL lists the table', () => {
    const path = `${dir}/b.json`;
    writeRecord(path, base);
    expect(readRecord(path)).toEqual(base);
    for (const bad of [[{ protocol: 'sctp', hostPort: 80 }], [{ protocol: 'tcp', hostPort: 0 }], [{ protocol: 'tcp', hostPort: 8080 }, 'udp:53'], 'tcp:80']) {
      writeFileSync(path, JSON.stringify({ ...base, ports: bad }));
      expect(readRecord(path)).toEqual(base);
    }
  });
});
