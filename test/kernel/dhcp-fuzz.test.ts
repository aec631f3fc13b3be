// Fuzzing the running server (the dhcp-serve command) from inside the client's namespace while a real
// client (busybox udhcpc) keeps renewing: random bytes, mutated real packets and well-formed DHCP with
// wild options, as UDP to port 67 (broadcast and unicast) and as raw IPv4 frames with broken headers,
// thousands per second for a bounded time. The server must not die or report an internal error, and
// the client must never lose its lease.
import { readFileSync } from 'node:fs';
import { describe, expect } from 'vitest';
import { BOOTREQUEST, emptyPacket, encodePacket } from '../../src/dhcp/codec.js';
import { sys } from '../../src/native.js';
import { buildIpUdp } from '../../src/dhcp/wire.js';
import { ktest } from '../helpers/kernel.js';
import { DhcpEnv, ServerProcess, UdpClient } from './dhcp-env.js';
import { mulberry32 as rng } from '../../src/bench/rng.js';

const REAL_MAC = '02:00:00:00:00:99';

const FUZZ_MS = 15_000;
const PER_TICK = 60; // every 10 ms: ~6000 datagrams a second when the machine keeps up


function goldenPackets(): Uint8Array[] {
  return ['udhcpc', 'dhcpcd', 'dhclient'].flatMap((c) => readFileSync(new URL(`../golden/dhcp/${c}.txt`, import.meta.url), 'utf8')
    .trim().split('\n').map((l) => Uint8Array.from(Buffer.from(l.split(' ')[1] as string, 'hex'))));
}

function randomBytes(r: () => number, n: number): Uint8Array {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i++) b[i] = (r() * 256) | 0;
  return b;
}

/** A random MAC that is never the real client's (so the fuzzer cannot speak for it). */
function randomMac(r: () => number): Uint8Array {
  const m = randomBytes(r, 6);
  m[0] = 0x06;
  return m;
}

function generate(r: () => number, golden: Uint8Array[]): Uint8Array {
  const kind = r();
  if (kind < 0.2) return randomBytes(r, (r() * 700) | 0);
  if (kind < 0.55) {
    // a real packet, mutated: flips, truncation, splices of random bytes; its MAC replaced
    const src = golden[(r() * golden.length) | 0] as Uint8Array;
    let b: Uint8Array = src.slice();
    b.set(randomMac(r), 28);
    const flips = (r() * 8) | 0;
    for (let i = 0; i < flips; i++) b[(r() * b.length) | 0] = (r() * 256) | 0;
    if (r() < 0.3) b = b.subarray(0, (r() * b.length) | 0);
    if (r() < 0.3) {
      const at = 236 + ((r() * (b.length - 236)) | 0);
      const splice = randomBytes(r, (r() * 64) | 0);
      const out = new Uint8Array(at + splice.length);
      out.set(b.subarray(0, at));
      out.set(splice, at);
      b = out;
    }
    return b;
  }
  // well-formed DHCP with wild content: any message type, random options, odd fields
  const p = emptyPacket(BOOTREQUEST);
  p.xid = (r() * 0xffffffff) >>> 0;
  p.chaddr.set(randomMac(r));
  p.hlen = r() < 0.9 ? 6 : (r() * 17) | 0;
  p.htype = r() < 0.9 ? 1 : (r() * 256) | 0;
  p.hops = r() < 0.9 ? 0 : (r() * 256) | 0;
  p.flags = r() < 0.5 ? 0x8000 : 0;
  if (r() < 0.3) p.ciaddr = (0xc0000200 | ((r() * 256) | 0)) >>> 0;
  if (r() < 0.1) p.giaddr = (r() * 0xffffffff) >>> 0;
  p.options.setU8(53, 1 + ((r() * 9) | 0));
  const n = (r() * 12) | 0;
  for (let i = 0; i < n; i++) {
    const code = 1 + ((r() * 254) | 0);
    if (code === 52) continue;
    const favoured = [50, 51, 54, 55, 57, 61, 81, 82, 119, 121, 12][(r() * 11) | 0] as number;
    const len = r() < 0.8 ? (r() * 12) | 0 : (r() * 300) | 0;
    let value = randomBytes(r, len);
    if (code % 3 === 0 && (favoured === 50 || favoured === 54) && r() < 0.7) value = Uint8Array.of(192, 0, 2, (r() * 256) | 0);
    p.options.set(r() < 0.5 ? favoured : code, value);
  }
  try {
    return encodePacket(p, { maxSize: 1400 });
  } catch {
    return randomBytes(r, 300);
  }
}

describe('fuzzing the running server', () => {
  ktest('thousands of hostile datagrams a second: the server lives, a renewing client keeps its lease', async ({ netns, onTestFailed }) => {
    // Not the MAC of the golden captures: a replayed capture carries that client's identity (option
    // 61), and DHCP has no way to tell an impostor from the client itself.
    const env = await DhcpEnv.create(netns, { onTestFailed, clientMac: REAL_MAC });
    const seed = (Date.now() ^ process.pid) >>> 0;
    const r = rng(seed);
    const golden = goldenPackets();
    let fuzzer: UdpClient | undefined;
    let raw: number | undefined;
    const server = new ServerProcess(env.srv, ['--interface', 'ds0', '--pool', '192.0.2.0/24', '--lease-time', '30', '--lease-file', env.leaseFile, '--verbose']);
    onTestFailed(() => {
      const about = server.output.split('\n').filter((l) => l.includes(REAL_MAC) || /NAK to|released|declined|renewed|leased/.test(l) && !/^debug: \[dhcp\] ignored/.test(l));
      process.stderr.write(`fuzz seed ${seed}\n--- server output about leases (first 60)\n${about.slice(0, 60).join('\n')}\n--- server output (tail)\n${server.output.slice(-3000)}\n`);
    });
    try {
      await server.waitOutput(/serving DHCP on ds0/, 'the server to start');
      const client = env.startClient(['busybox', 'udhcpc', '-f', '-i', 'dc0', '-s', env.script, '-t', '5', '-T', '1']);
      const bound = await env.waitClient(/^bound (\S+)$/, 'the client lease');
      const address = bound[1] as string;

      fuzzer = new UdpClient(env.cli.fd, 'dc0', 6767);
      raw = sys().socket(17, 2, 0, env.cli.fd); // AF_PACKET, SOCK_DGRAM: IPv4 frames we build and break
      const ll = new Uint8Array(20);
      const dv = new DataView(ll.buffer);
      dv.setUint16(0, 17, true);
      dv.setUint16(2, 0x0800, false);
      dv.setInt32(4, (await env.cli.ipJson<Array<{ ifindex: number }>>(['link', 'show', 'dev', 'dc0']))[0]!.ifindex, true);
      ll[11] = 6;
      ll.set([0xff, 0xff, 0xff, 0xff, 0xff, 0xff], 12);

      let sent = 0;
      const end = Date.now() + FUZZ_MS;
      let nextRenew = Date.now() + 1000;
      while (Date.now() < end) {
        for (let i = 0; i < PER_TICK; i++) {
          const payload = generate(r, golden);
          const how = r();
          if (how < 0.6) fuzzer.send(payload);
          else if (how < 0.85) fuzzer.send(payload, '192.0.2.1');
          else {
            const frame = buildIpUdp(0, 0xffffffff, 68, 67, payload);
            const breaks = (r() * 4) | 0;
            for (let k = 0; k < breaks; k++) frame[(r() * Math.min(28, frame.length)) | 0] = (r() * 256) | 0;
            try {
              sys().sendto(raw, frame, ll);
            } catch {
              // EAGAIN or a frame the kernel refuses: fine
            }
          }
          sent++;
        }
        if (Date.now() > nextRenew) {
          client.kill('SIGUSR1'); // udhcpc: renew now
          nextRenew = Date.now() + 1000;
        }
        if (!server.alive) break;
        await new Promise((res) => setTimeout(res, 10));
      }
      expect(server.alive).toBe(true);
      expect(sent).toBeGreaterThan((FUZZ_MS / 1000) * 1000); // over a thousand a second

      // The client renewed all along and never lost its address.
      const log = env.clientLog();
      const renewals = log.filter((l) => l === `renew ${address}`).length;
      expect(renewals).toBeGreaterThanOrEqual(FUZZ_MS / 1000 / 2);
      expect(log.filter((l) => /^(deconfig|leasefail|nak)/.test(l))).toEqual(['deconfig ']); // only udhcpc's start
      expect(await env.clientAddresses()).toContain(address);
      expect(server.output).not.toMatch(new RegExp(`NAK to ${REAL_MAC}`));

      expect(await server.stop()).toBe(0);
      const stats = server.output.match(/(\d+) datagrams received \((\d+) on other interfaces, (\d+) malformed, (\d+) ignored\).*?(\d+) internal errors/);
      expect(stats).not.toBeNull();
      const [, received, , malformed, ignored, internal] = (stats as RegExpMatchArray).map(Number);
      expect(received).toBeGreaterThan(sent / 4); // the fuzz reached the server (the kernel filter drops the broken IP headers)
      expect(malformed).toBeGreaterThan(0);
      expect(ignored).toBeGreaterThan(0);
      expect(internal).toBe(0);
      expect(server.output).not.toMatch(/internal error handling/);
    } finally {
      fuzzer?.close();
      if (raw !== undefined) sys().close(raw);
      await server.stop('SIGKILL');
      await env.destroy();
    }
  }, 90_000);
});
