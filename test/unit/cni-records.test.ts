// nspawn-cni's per-attachment records (src/cni/records.ts): a network's directory goes with its last
// record, so DEL of every container leaves nothing in the state directory but what is kept on purpose.
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { describe, expect, test } from 'vitest';
import { type ContainerRecord, listRecords, readRecord, recordPath, removeRecord, writeRecord } from '../../src/cni/records.js';

const rec = (containerId: string): ContainerRecord => ({ containerId, ifname: 'eth0', machine: `m-${containerId}`, mode: 'zone', zone: 'podnet', hostIfname: `cn-${containerId}` });

describe('cni records', () => {
  test('the network\'s directory stays while it has records and goes with the last; a later ADD makes it again', ({ onTestFinished }) => {
    const stateDir = mkdtempSync(`${tmpdir()}/cni-records-`);
    onTestFinished(() => rmSync(stateDir, { recursive: true, force: true }));
    const cfg = { stateDir, name: 'podnet' };
    const a = recordPath(cfg, 'a', 'eth0');
    const b = recordPath(cfg, 'b', 'eth0');
    writeRecord(a, rec('a'));
    writeRecord(b, rec('b'));
    expect(listRecords(cfg).map((r) => r.rec.containerId).sort()).toEqual(['a', 'b']);
    removeRecord(a);
    expect(readRecord(b)).toEqual(rec('b'));
    removeRecord(b);
    expect(existsSync(`${stateDir}/cni/podnet`)).toBe(false);
    expect(existsSync(`${stateDir}/cni`)).toBe(true);
    removeRecord(b); // a DEL repeated: nothing to do
    writeRecord(a, rec('a'));
    expect(readRecord(a)).toEqual(rec('a'));
  });
});
