// The lease journal: record format, replay, recovery from torn and corrupt files, compaction, lock.
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { spawn } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import {
  decodeLine, encodeLine, FileLeaseStore, JOURNAL_HEADER, type JournalEntry, LeaseFileError, pruneExpired, replay, stateEntries,
} from '../../../src/dhcp/journal.js';
import type { Logger } from '../../../src/log.js';

const NOW = 1_700_000_000_000;
const bind = (c: string, ip: string, exp = NOW + 3_600_000, ifname = 've-a'): Extract<JournalEntry, { op: 'bind' }> => ({ op: 'bind', if: ifname, c, mac: '02:00:00:00:00:01', ip, exp });

function captureLog(): Logger & { warnings: string[] } {
  const warnings: string[] = [];
  return { warnings, debug: () => undefined, info: () => undefined, warn: (m) => warnings.push(m), error: (m) => warnings.push(m) };
}

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'nspawn-journal-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

function open(path = join(dir, 'leases'), log = captureLog()): { store: FileLeaseStore; log: ReturnType<typeof captureLog> } {
  return { store: new FileLeaseStore(path, { log, now: NOW }), log };
}

describe('records', () => {
  test('a line is the CRC-32 of the JSON, a space, the JSON', () => {
    const line = encodeLine(bind('id:01', '192.0.2.5'));
    expect(line).toMatch(/^[0-9a-f]{8} \{"op":"bind","if":"ve-a","c":"id:01","mac":"02:00:00:00:00:01","ip":"192.0.2.5","exp":1700003600000\}\n$/);
    expect(decodeLine(line.trimEnd())).toEqual(bind('id:01', '192.0.2.5'));
  });
  test('a flipped byte, bad JSON or a bad field is refused', () => {
    const line = encodeLine(bind('id:01', '192.0.2.5')).trimEnd();
    expect(decodeLine(line.replace('192.0.2.5', '192.0.2.6'))).toBeUndefined();
    expect(decodeLine(line.slice(0, -1))).toBeUndefined();
    const badIp = encodeLine({ ...bind('id:01', '192.0.2.5'), ip: '300.1.1.1' }).trimEnd();
    expect(decodeLine(badIp)).toBeUndefined();
    const badOp = encodeLine({ op: 'frob', if: 'x' } as unknown as JournalEntry).trimEnd();
    expect(decodeLine(badOp)).toBeUndefined();
  });
});

describe('replay', () => {
  test('the later record wins, for a client and for an address', () => {
    const s = replay([
      bind('id:01', '192.0.2.5'),
      bind('id:01', '192.0.2.6'), // the client moved
      bind('id:02', '192.0.2.6'), // the address went to another client: id:01 lost it
      bind('id:03', '192.0.2.7'),
      { op: 'release', if: 've-a', c: 'id:03', mac: 'm', ip: '192.0.2.7', exp: NOW + 10 },
      bind('id:04', '192.0.2.8'),
      { op: 'decline', if: 've-a', ip: '192.0.2.8', until: NOW + 600_000 },
      bind('id:09', '192.0.2.9', NOW + 1, 've-gone'),
      { op: 'drop', if: 've-gone' },
    ]);
    const a = s.get('ve-a')!;
    expect([...a.clients.keys()].sort()).toEqual(['id:02', 'id:03']);
    expect(a.clients.get('id:02')).toMatchObject({ op: 'bind', ip: '192.0.2.6' });
    expect(a.clients.get('id:03')).toMatchObject({ op: 'release' });
    expect([...a.declined]).toEqual([['192.0.2.8', NOW + 600_000]]);
    expect(s.has('ve-gone')).toBe(false);
  });
  test('expired bindings become memories, expired memories and quarantines go', () => {
    const s = replay([bind('id:01', '192.0.2.5', NOW - 1000), bind('id:02', '192.0.2.6', NOW - 7_200_000), { op: 'decline', if: 've-a', ip: '192.0.2.9', until: NOW - 1 }]);
    pruneExpired(s, NOW, 3_600_000);
    expect([...stateEntries(s)]).toEqual([{ op: 'release', if: 've-a', c: 'id:01', mac: '02:00:00:00:00:01', ip: '192.0.2.5', exp: NOW - 1000 + 3_600_000 }]);
  });
});

describe('FileLeaseStore', () => {
  test('appended records are durable when the callback runs, and come back on reopen', async () => {
    const { store } = open();
    const done: string[] = [];
    store.append(bind('id:01', '192.0.2.5'), (err) => done.push(err ? `error ${err.message}` : 'a'));
    store.append(bind('id:02', '192.0.2.6'), (err) => done.push(err ? `error ${err.message}` : 'b'));
    expect(done).toEqual([]); // group commit: nothing before the write and sync
    const text = () => readFileSync(join(dir, 'leases'), 'utf8');
    await new Promise<void>((resolve) => {
      const check = (): void => { if (done.length === 2) resolve(); else setTimeout(check, 1); };
      check();
    });
    expect(done).toEqual(['a', 'b']);
    expect(text().split('\n').filter(Boolean)).toHaveLength(3);
    await store.close();
    const again = open().store;
    expect([...again.loaded.get('ve-a')!.clients.keys()]).toEqual(['id:01', 'id:02']);
    await again.close();
  });

  test('commitNow writes the records appended so far at once, one group, and their callbacks run before it returns', async () => {
    const { store } = open();
    const done: string[] = [];
    store.append(bind('id:01', '192.0.2.5'), () => done.push('a'));
    store.append(bind('id:02', '192.0.2.6'), () => done.push('b'));
    store.commitNow();
    expect(done).toEqual(['a', 'b']);
    expect(readFileSync(join(dir, 'leases'), 'utf8').split('\n').filter(Boolean)).toHaveLength(3);
    store.commitNow(); // nothing pending: nothing happens
    expect(done).toEqual(['a', 'b']);
    await store.close();
  });

  test('a torn last record and a damaged one are skipped with a warning; the rest is recovered', async () => {
    const path = join(dir, 'leases');
    writeFileSync(path, JOURNAL_HEADER + '\n' + encodeLine(bind('id:01', '192.0.2.5'))
      + encodeLine(bind('id:02', '192.0.2.6')).replace('192.0.2.6', '192.0.2.66')
      + encodeLine(bind('id:03', '192.0.2.7'))
      + encodeLine(bind('id:04', '192.0.2.8')).slice(0, 30));
    const { store, log } = open(path);
    expect([...store.loaded.get('ve-a')!.clients.keys()]).toEqual(['id:01', 'id:03']);
    expect(log.warnings.join('\n')).toMatch(/cut short/);
    expect(log.warnings.join('\n')).toMatch(/1 damaged record\(s\) ignored \(line 3\); 2 recovered/);
    // rewritten clean
    expect(readFileSync(path, 'utf8').split('\n').filter(Boolean).map((l, i) => (i === 0 ? l : decodeLine(l)?.op))).toEqual([JOURNAL_HEADER, 'bind', 'bind']);
    await store.close();
  });

  test('a long journal is read in pieces: records across chunk boundaries, multi-byte names, an overlong damaged line', async () => {
    const path = join(dir, 'leases');
    const records: string[] = [];
    for (let i = 0; i < 3000; i++) {
      const e = bind(`id:${i.toString(16).padStart(4, '0')}`, `198.18.${i >> 8}.${i & 255}`, NOW + 3_600_000, 've-a');
      if (i % 7 === 0) e.host = `hôte-${'é'.repeat(i % 50)}`; // UTF-8 split anywhere
      records.push(encodeLine(e));
    }
    // 200 KiB of garbage without a newline in the middle (line 1502): skipped, never buffered whole
    const junk = 'x'.repeat(200 * 1024) + '\n';
    writeFileSync(path, JOURNAL_HEADER + '\n' + records.slice(0, 1500).join('') + junk + records.slice(1500).join(''));
    const { store, log } = open(path);
    const clients = store.loaded.get('ve-a')!.clients;
    expect(clients.size).toBe(3000);
    expect((clients.get('id:0007') as { host?: string }).host).toBe(`hôte-${'é'.repeat(7)}`);
    expect(log.warnings).toEqual([expect.stringMatching(/1 damaged record\(s\) ignored \(line 1502\); 3000 recovered/)]);
    await store.close();
  });

  test('a file that is not a lease file is set aside, and the server starts empty', async () => {
    const path = join(dir, 'leases');
    writeFileSync(path, 'hello\nworld\n');
    const { store, log } = open(path);
    expect(store.loaded.size).toBe(0);
    expect(log.warnings[0]).toMatch(/not an nspawn-ts lease file.*moved it to/);
    expect(readdirSync(dir).some((f) => f.startsWith('leases.corrupt-'))).toBe(true);
    await store.close();
  });

  test('any bytes at all: recovered as far as valid, never a refusal', async () => {
    await fc.assert(fc.asyncProperty(fc.uint8Array({ maxLength: 400 }), fc.boolean(), async (junk, withHeader) => {
      const path = join(dir, `f${Math.random()}`);
      writeFileSync(path, Buffer.concat([Buffer.from(withHeader ? JOURNAL_HEADER + '\n' + encodeLine(bind('id:01', '192.0.2.5')) : ''), Buffer.from(junk)]));
      const { store } = open(path);
      if (withHeader) expect(store.loaded.get('ve-a')?.clients.has('id:01')).toBe(true);
      await store.close();
    }), { numRuns: 200 });
  });

  test('compaction keeps exactly the given records', async () => {
    const { store } = open();
    for (let i = 0; i < 50; i++) store.append(bind('id:01', `192.0.2.${10 + (i % 5)}`));
    await store.whenIdle();
    expect(store.appendedSinceCompaction).toBe(50);
    store.compact([bind('id:01', '192.0.2.14')]);
    expect(store.idle).toBe(false); // written in the background
    await store.whenIdle();
    expect(store.appendedSinceCompaction).toBe(0);
    store.append(bind('id:02', '192.0.2.20'));
    await store.close();
    const lines = readFileSync(join(dir, 'leases'), 'utf8').split('\n').filter(Boolean);
    expect(lines.slice(1).map((l) => decodeLine(l))).toEqual([bind('id:01', '192.0.2.14'), bind('id:02', '192.0.2.20')]);
    expect(existsSync(join(dir, 'leases.tmp'))).toBe(false);
  });

  for (const durability of ['write', 'fsync'] as const) {
    test(`durability '${durability}': records appended while a compaction runs in the background are in the compacted file`, async () => {
      const path = join(dir, `leases-${durability}`);
      const store = new FileLeaseStore(path, { log: captureLog(), now: NOW, durability });
      // a table large enough that the compaction takes several event-loop turns (COMPACT_CHUNK each)
      const table = Array.from({ length: 20_000 }, (_, i) => bind(`id:${i}`, `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`));
      for (const r of table) store.append(r);
      await store.whenIdle();
      store.compact(table);
      // appended during the compaction, each acknowledged before it ends: a new client, a changed one
      const acked: string[] = [];
      let turns = 0;
      while (!store.idle) {
        const i = turns++;
        store.append(bind(`late:${i}`, `172.16.${(i >> 8) & 255}.${i & 255}`), (err) => { if (!err) acked.push(`late:${i}`); });
        if (i === 0) store.append(bind('id:7', '198.51.100.7'));
        await new Promise((r) => setImmediate(r));
        if (turns > 100_000) throw new Error('the compaction never ended');
      }
      expect(turns).toBeGreaterThan(2); // it really ran across turns, with appends in between
      expect(store.appendedSinceCompaction).toBe(turns + 1); // what the compaction policy counts next
      await store.close();
      expect(existsSync(`${path}.tmp`)).toBe(false);
      const reopened = new FileLeaseStore(path, { log: captureLog(), now: NOW, durability });
      const clients = reopened.loaded.get('ve-a')?.clients;
      expect(clients?.size).toBe(20_000 + turns);
      for (const c of acked) expect(clients?.has(c)).toBe(true);
      expect(clients?.get('id:7')).toMatchObject({ ip: '198.51.100.7' });
      expect(clients?.get('id:8')).toMatchObject({ ip: '10.0.0.8' });
      await reopened.close();
    });
  }

  test('a compaction that cannot write leaves the old file and every record in it', async () => {
    const path = join(dir, 'leases');
    const { store, log } = open(path);
    store.append(bind('id:01', '192.0.2.5'));
    await store.whenIdle();
    mkdirSync(`${path}.tmp`); // PATH.tmp cannot be opened as a file
    expect(() => store.compact([bind('id:01', '192.0.2.5')])).toThrow(LeaseFileError);
    expect(store.idle).toBe(true);
    store.append(bind('id:02', '192.0.2.6'));
    await store.close();
    rmSync(`${path}.tmp`, { recursive: true });
    const { store: again } = open(path);
    expect([...(again.loaded.get('ve-a')?.clients.keys() ?? [])].sort()).toEqual(['id:01', 'id:02']);
    expect(log.warnings).toEqual([]);
    await again.close();
  });

  test('a lease file open in another server is refused until that one closes', async () => {
    const path = join(dir, 'leases');
    const { store: first } = open(path);
    expect(() => open(path)).toThrow(LeaseFileError);
    expect(() => open(path)).toThrow(/in use by another DHCP server \(it holds the lock .*leases\.lock\)/);
    await first.close();
    const { store } = open(path);
    await store.close();
  });

  test('a lock file naming a live PID (a PID reused after a reboot, /var/lib persists) does not refuse a start', async () => {
    const path = join(dir, 'leases');
    writeFileSync(`${path}.lock`, `${process.ppid}\n`);
    const { store } = open(path);
    await store.close();
    writeFileSync(`${path}.lock`, `${process.pid}\n`);
    const { store: again } = open(path);
    await again.close();
  });

  test('a server killed with SIGKILL that is still a zombie (nobody reaped it) does not refuse a start', async () => {
    const path = join(dir, 'leases');
    const journal = new URL('../../../dist/dhcp/journal.js', import.meta.url).href;
    const script = `import(${JSON.stringify(journal)}).then(({ FileLeaseStore }) => {
      new FileLeaseStore(${JSON.stringify(path)}, { log: console, now: Date.now() });
      process.stdout.write('ready ' + process.pid + '\\n');
      setInterval(() => {}, 1 << 30);
    });`;
    // the server's parent is a shell that becomes sleep(1): nobody waits for the server once it dies
    const parent = spawn('sh', ['-c', `${JSON.stringify(process.execPath)} -e "$0" & exec sleep 30`, script], { stdio: ['ignore', 'pipe', 'inherit'] });
    try {
      let out = '';
      parent.stdout.on('data', (d: Buffer) => { out += d.toString(); });
      const deadline = Date.now() + 15_000;
      while (!/ready (\d+)/.test(out)) {
        if (Date.now() > deadline) throw new Error(`the server did not start: ${out}`);
        await new Promise((r) => setTimeout(r, 20));
      }
      const pid = Number(/ready (\d+)/.exec(out)?.[1]);
      expect(() => open(path)).toThrow(/in use by another DHCP server/);
      process.kill(pid, 'SIGKILL');
      const state = (): string | undefined => /\) (\S)/.exec(readFileSync(`/proc/${pid}/stat`, 'utf8'))?.[1];
      // a zombie once its last thread is gone (the leader shows Z while node's other threads still exit)
      while (state() !== 'Z' || readdirSync(`/proc/${pid}/task`).length > 1) await new Promise((r) => setTimeout(r, 10));
      const { store } = open(path); // kill(pid, 0) still succeeds on the zombie; its lock is gone
      await store.close();
      expect(state()).toBe('Z');
    } finally {
      parent.kill('SIGKILL');
    }
  });

  test("durability 'write' answers after the write, and syncs in the background soon after", async () => {
    const store = new FileLeaseStore(join(dir, 'leases'), { log: captureLog(), now: NOW, durability: 'write', syncIntervalMs: 20 });
    let done = false;
    store.append(bind('id:01', '192.0.2.5'), () => { done = true; });
    await new Promise((r) => setImmediate(r));
    expect(done).toBe(true);
    expect(readFileSync(join(dir, 'leases'), 'utf8')).toContain('"id:01"');
    await new Promise((r) => setTimeout(r, 30));
    await store.whenIdle(); // waits for the background sync too
    expect(store.idle).toBe(true);
    await store.close();
  });

  test("durability 'fsync' answers only after the group's fdatasync", async () => {
    const store = new FileLeaseStore(join(dir, 'leases'), { log: captureLog(), now: NOW, durability: 'fsync' });
    let done = false;
    store.append(bind('id:01', '192.0.2.5'), () => { done = true; });
    await new Promise((r) => setImmediate(r)); // the write happened; the sync is on the thread pool
    expect(store.idle).toBe(false);
    await store.whenIdle();
    expect(done).toBe(true);
    await store.close();
  });

  test('an append after the file broke reports the error to the waiter', async () => {
    const { store } = open();
    await store.close();
    let error: Error | undefined;
    store.append(bind('id:01', '192.0.2.5'), (e) => { error = e; });
    expect(error).toBeInstanceOf(LeaseFileError);
  });
});
