// The lease file on a disk that fills up and gets room again: the ACKs are withheld while appends
// fail, the record a full disk cut short is cut off the file again, and after the disk has room,
// kill -9 and a restart, every lease that was ACKed is in the file (none glued onto a torn line).
import { closeSync, mkdirSync, openSync, readFileSync, rmSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect } from 'vitest';
import { BOOTREPLY, decodePacket, encodePacket } from '../../src/dhcp/codec.js';
import { clientPacket } from '../unit/dhcp/helpers.js';
import { decodeLine, JOURNAL_HEADER, type JournalEntry, replay } from '../../src/dhcp/journal.js';
import { ipv4ToString } from '../../src/dhcp/ipv4.js';
import { MessageType as T } from '../../src/dhcp/options.js';
import { runOk } from '../helpers/exec.js';
import { ktest } from '../helpers/kernel.js';
import { DhcpEnv, ServerProcess, UdpClient } from './dhcp-env.js';

/** Fills the file system of `path` until write() answers ENOSPC. */
function fillUp(path: string): void {
  const fd = openSync(path, 'w');
  try {
    const page = Buffer.alloc(4096, 0x78);
    for (;;) {
      try {
        writeSync(fd, page);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOSPC') break;
        throw err;
      }
    }
    // the last bytes too (a partial page), so the lease file's own last page is the only room left
    for (;;) {
      try {
        if (writeSync(fd, page, 0, 1) === 0) break;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOSPC') break;
        throw err;
      }
    }
  } finally {
    closeSync(fd);
  }
}

describe('lease file on a full disk', () => {
  ktest('disk full → room again → kill -9: every ACKed lease is in the file, nothing damaged', async ({ netns, onTestFailed }) => {
    const env = await DhcpEnv.create(netns, { serverAddress: '198.18.0.1/16', onTestFailed });
    const stateDir = join(env.dir, 'state');
    mkdirSync(stateDir);
    await runOk('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', stateDir]);
    const leaseFile = join(stateDir, 'leases');
    const filler = join(stateDir, 'filler');
    let client: UdpClient | undefined;
    let server: ServerProcess | undefined;
    try {
      client = new UdpClient(env.cli.fd, 'dc0');
      const acked = new Map<string, string>(); // client key → address
      const waiting = new Map<number, (ip: string | undefined) => void>();
      client.onReply((bytes) => {
        const p = decodePacket(bytes);
        if (p.op !== BOOTREPLY || p.options.messageType() !== T.ACK) return;
        waiting.get(p.xid)?.(ipv4ToString(p.yiaddr));
      });
      let n = 0;
      /** One REQUEST of a new client; the address it was ACKed, or undefined after `ms` without an ACK. */
      const request = (ms = 500): Promise<string | undefined> => {
        const i = ++n;
        const mac = `02:ab:00:00:${((i >> 8) & 0xff).toString(16).padStart(2, '0')}:${(i & 0xff).toString(16).padStart(2, '0')}`;
        const p = clientPacket({ type: T.REQUEST, mac, xid: i, requested: `198.18.1.${i % 250 + 1}`, broadcast: true });
        return new Promise((resolve) => {
          const timer = setTimeout(() => {
            waiting.delete(i);
            resolve(undefined);
          }, ms);
          waiting.set(i, (ip) => {
            clearTimeout(timer);
            waiting.delete(i);
            if (ip) acked.set(`hw:1:${mac.replace(/:/g, '')}`, ip);
            resolve(ip);
          });
          client!.send(encodePacket(p));
        });
      };

      server = new ServerProcess(env.srv, ['--interface', 'ds0', '--pool', '198.18.0.0/16', '--lease-file', leaseFile]);
      await server.waitOutput(/serving DHCP/, 'the server to start');
      for (let i = 0; i < 10; i++) expect(await request(5000)).toBeDefined();

      // The disk fills up: appends fill the lease file's last page, one is cut short, ACKs stop.
      fillUp(filler);
      let withheld = 0;
      for (let i = 0; i < 200 && withheld < 5; i++) if (!(await request())) withheld++;
      expect(withheld).toBe(5);
      await server.waitOutput(/withheld: .*ENOSPC/, 'an ACK withheld for ENOSPC');

      // Room again: ACKs resume, each record on a line of its own.
      rmSync(filler);
      for (let i = 0; i < 20; i++) expect(await request(5000)).toBeDefined();
      await server.stop('SIGKILL');

      const lines = readFileSync(leaseFile, 'utf8').split('\n');
      expect(lines[0]).toBe(JOURNAL_HEADER);
      const records = lines.slice(1, -1);
      const entries = records.map((l) => decodeLine(l));
      expect(entries.filter((e) => e === undefined)).toEqual([]); // no torn or glued line
      const stored = replay(entries as JournalEntry[]).get('ds0');
      const missing = [...acked].filter(([key, ip]) => {
        const r = stored?.clients.get(key);
        return r?.op !== 'bind' || r.ip !== ip;
      });
      expect(missing).toEqual([]);
      expect(acked.size).toBeGreaterThanOrEqual(30);

      // A restarted server reads them all back, and finds nothing damaged.
      server = new ServerProcess(env.srv, ['--interface', 'ds0', '--pool', '198.18.0.0/16', '--lease-file', leaseFile]);
      const m = await server.waitOutput(/(\d+) lease\(s\) restored/, 'the restored leases', 30_000);
      expect(Number(m[1])).toBe(acked.size);
      expect(server.output).not.toMatch(/damaged|cut short/);
      expect(await server.stop()).toBe(0);
    } finally {
      await server?.stop('SIGKILL');
      client?.close();
      await runOk('umount', [stateDir]).catch(() => undefined);
      await env.destroy();
    }
  }, 120_000);
});
