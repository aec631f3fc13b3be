// The lease file under kill -9: a client of our own sends REQUESTs as fast as the server answers,
// the server (the dhcp-serve command) is SIGKILLed at a random moment, again and again; every lease
// the client saw ACKed must be in the lease file, and the restarted server must know it.
import { readFileSync } from 'node:fs';
import { describe, expect } from 'vitest';
import { BOOTREPLY, decodePacket, encodePacket } from '../../src/dhcp/codec.js';
import { clientPacket } from '../unit/dhcp/helpers.js';
import { decodeLine, JOURNAL_HEADER, type JournalEntry, replay } from '../../src/dhcp/journal.js';
import { ipv4ToString, macToString } from '../../src/dhcp/ipv4.js';
import { MessageType as T } from '../../src/dhcp/options.js';
import { ktest } from '../helpers/kernel.js';
import { DhcpEnv, ServerProcess, UdpClient } from './dhcp-env.js';

function leaseFileState(path: string): Map<string, string> {
  const lines = readFileSync(path, 'utf8').split('\n');
  expect(lines[0]).toBe(JOURNAL_HEADER);
  const entries = lines.slice(1).map((l) => decodeLine(l)).filter((e): e is JournalEntry => e !== undefined);
  const state = replay(entries).get('ds0');
  const out = new Map<string, string>();
  for (const [c, r] of state?.clients ?? []) if (r.op === 'bind') out.set(c, r.ip);
  return out;
}

describe('lease file durability', () => {
  ktest('every ACKed lease survives kill -9 of the server at random moments', async ({ netns, onTestFailed }) => {
    // The RFC 2544 benchmarking range: room for thousands of leases.
    const env = await DhcpEnv.create(netns, { serverAddress: '198.18.0.1/16', onTestFailed });
    const acked = new Map<string, string>(); // client key → address
    let client: UdpClient | undefined;
    try {
      client = new UdpClient(env.cli.fd, 'dc0');
      let counter = 0;
      let renewing = false;
      let ackCount = 0;
      let compactions = 0;
      let naks = 0;
      let lastAckAt = Date.now();
      // xid → client key and when it was sent. A request is done when it is answered (ACK or NAK: two
      // clients may ask for the same address) or, lost in flight, after a second — never by counting
      // later requests, which stop when every request in flight goes unanswered.
      const pending = new Map<number, { key: string; sentAt: number }>();
      client.onReply((bytes) => {
        const p = decodePacket(bytes);
        if (p.op !== BOOTREPLY) return;
        const sent = pending.get(p.xid);
        if (sent === undefined) return;
        pending.delete(p.xid);
        if (p.options.messageType() === T.NAK) naks++;
        if (p.options.messageType() !== T.ACK) return;
        ackCount++;
        lastAckAt = Date.now();
        acked.set(sent.key, ipv4ToString(p.yiaddr));
      });
      const request = (): void => {
        const n = ++counter;
        if (renewing) return requestFor(n, 100_000 + (n % 300)); // 300 clients over and over: records outnumber leases
        requestFor(n, n);
      };
      const requestFor = (xid: number, n: number): void => {
        const mac = `02:aa:${((n >> 16) & 0xff).toString(16).padStart(2, '0')}:${((n >> 8) & 0xff).toString(16).padStart(2, '0')}:${(n & 0xff).toString(16).padStart(2, '0')}:01`;
        const requested = `198.18.${(n >> 8) & 0xff}.${(n & 0xff) || 1}`;
        const p = clientPacket({ type: T.REQUEST, mac, xid, requested, broadcast: true });
        pending.set(xid, { key: `hw:1:${macToString(p.chaddr, 6).replace(/:/g, '')}`, sentAt: Date.now() });
        client!.send(encodePacket(p));
      };
      for (let cycle = 0; cycle < 6; cycle++) {
        // Both durability modes keep every ACKed lease through kill -9 (write() precedes the ACK). The
        // last two cycles renew the same clients with compaction every 500 records, so the kill lands
        // while the lease file is being rewritten in the background, or between such rewrites.
        const durability = cycle % 2 ? 'fsync' : 'write';
        renewing = cycle >= 4;
        const server = new ServerProcess(env.srv, ['--interface', 'ds0', '--pool', '198.18.0.0/16', '--lease-file', env.leaseFile, renewing ? '--verbose' : '--quiet', '--durability', durability],
          renewing ? { NSPAWN_TS_DHCP_COMPACT_MIN_RECORDS: '500' } : undefined);
        try {
          await waitUntilServing(request, () => ackCount);
          // Keep 64 requests in flight; kill after a random number of further ACKs — when renewing,
          // counted from the first compaction (the sweep that starts one runs once a second, and a
          // fast machine could otherwise kill before any compaction began).
          const further = (): number => ackCount + (renewing ? Math.floor(Math.random() * 6000) : 50 + Math.floor(Math.random() * 600));
          let killAt = renewing ? Infinity : further();
          const onOutput = (d: Buffer): void => {
            if (killAt === Infinity && d.toString().includes('lease file compacted')) killAt = further();
          };
          if (renewing) {
            server.child.stdout?.on('data', onOutput);
            server.child.stderr?.on('data', onOutput);
          }
          await new Promise<void>((resolve, reject) => {
            const tick = (): void => {
              if (!server.alive) return reject(new Error(`server died: ${server.output}`));
              if (ackCount >= killAt) return resolve();
              const now = Date.now();
              if (now - lastAckAt > 15_000) {
                return reject(new Error(`the server stopped answering: no ACK for 15 s (${ackCount} ACKs, ${naks} NAKs, ${pending.size} in flight, cycle ${cycle}); its output:\n${server.output}`));
              }
              for (const [xid, sent] of pending) if (now - sent.sentAt > 1_000) pending.delete(xid); // lost in flight
              while (pending.size < 64) request();
              setImmediate(tick);
            };
            tick();
          });
          await server.stop('SIGKILL');
          compactions += server.output.split('lease file compacted').length - 1;
        } finally {
          await server.stop('SIGKILL');
        }
        // Replies already in flight when the kill landed may arrive still; they were durable too.
        await new Promise((r) => setTimeout(r, 50));
        const stored = leaseFileState(env.leaseFile);
        const missing = [...acked].filter(([key, ip]) => stored.get(key) !== ip);
        expect(missing).toEqual([]);
      }
      expect(acked.size).toBeGreaterThan(200);
      expect(compactions).toBeGreaterThan(0); // the renewing cycles did compact while being killed
      // A restarted server reads them all back.
      const server = new ServerProcess(env.srv, ['--interface', 'ds0', '--pool', '198.18.0.0/16', '--lease-file', env.leaseFile]);
      const m = await server.waitOutput(/(\d+) lease\(s\) restored/, 'the restored leases', 30_000);
      expect(Number(m[1])).toBeGreaterThanOrEqual(acked.size);
      expect(await server.stop()).toBe(0);
    } finally {
      client?.close();
      await env.destroy();
    }
  }, 180_000); // alone 8-14 s at load 10 (the renewing cycles compact under the flood, no longer wait for a quiet moment)
});

/** Sends a few requests until the (re)started server answers one. */
async function waitUntilServing(request: () => void, acks: () => number): Promise<void> {
  const start = acks();
  const end = Date.now() + 30_000; // a node start on a loaded machine
  while (acks() === start) {
    if (Date.now() > end) throw new Error('the server did not start answering');
    request();
    await new Promise((r) => setTimeout(r, 50));
  }
}

