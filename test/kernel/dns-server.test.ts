// The DNS server on a real link against a real upstream (dnsmasq in the "internet" namespace): a
// client namespace behind a veth asks the server on the host-side address for machine names,
// forwarded names (cached with their TTL: still answered when the upstream is gone), a TXT answer
// too big for UDP (TC, then TCP both ways), with a dead first upstream (failover), and gets SERVFAIL
// when no upstream answers; a query arriving from the uplink is not answered. Per-source rate limits
// over IPv4 and IPv6 (a client cycling through addresses of its /64 shares one bucket).
import { expect } from 'vitest';
import { ktest } from '../helpers/kernel.js';
import { run, runOk } from '../helpers/exec.js';
import { TestNetns } from '../helpers/netns.js';
import { DnsServer } from '../../src/net/dns/index.js';
import { ResolvedRegistrar } from '../../src/net/dns/resolved.js';
import { logger } from '../../src/log.js';
import { World, HOST_UPLINK } from './e2e-world.js';
import { BIG_NAME, BIG_STRINGS, FWD_ADDR, FWD_NAME, Upstream, UPSTREAM, resolveIn } from './dns-world.js';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const HOST = '192.168.99.1';
const CLIENT = '192.168.99.10';

async function clientLink(ns: TestNetns): Promise<void> {
  await runOk('ip', ['link', 'add', 'dnsh0', 'type', 'veth', 'peer', 'name', 'dnsc0', 'netns', ns.name]);
  await runOk('ip', ['addr', 'add', `${HOST}/24`, 'dev', 'dnsh0']);
  await runOk('ip', ['link', 'set', 'dnsh0', 'up']);
  await ns.exec('ip', ['addr', 'add', `${CLIENT}/24`, 'dev', 'dnsc0']);
  await ns.exec('ip', ['link', 'set', 'dnsc0', 'up']);
}

ktest('machine names, forwarding with cache, TC→TCP, failover, SERVFAIL; nothing answered from the uplink', async ({ netns }) => {
  const world = await World.create();
  const dir = mkdtempSync(join(tmpdir(), 'dns-srv-'));
  const resolv = join(dir, 'resolv.conf');
  // the first upstream does not exist (203.0.113.99: no answer, ever): failover to dnsmasq
  writeFileSync(resolv, `nameserver 203.0.113.99\nnameserver ${UPSTREAM}\n`);
  let upstream: Upstream | undefined = await Upstream.start(world);
  // systemd-resolved does not run here: its D-Bus calls are recorded (their arguments are unit-tested)
  const busCalls: string[][] = [];
  const resolved = new ResolvedRegistrar(logger('dns'), { running: () => true, run: async (a) => { busCalls.push(a); } });
  const server = new DnsServer({ forwarder: { source: { host: resolv, uplink: join(dir, 'none') }, timeoutMs: 700 }, resolved });
  try {
    await clientLink(netns);
    const ifindex = (JSON.parse(await runOk('ip', ['-j', 'link', 'show', 'dnsh0'])) as Array<{ ifindex: number }>)[0]?.ifindex;
    server.setLinks([{ ifname: 'dnsh0', ifindex, hostAddress: HOST, subnet: '192.168.99.0/24', machines: [{ name: 'alpha', address: '192.168.99.20' }, { name: 'beta', address: CLIENT }] }]);
    await server.ready();
    expect(server.bound()).toEqual([HOST]);
    await new Promise((r) => setTimeout(r, 50));
    expect(busCalls.map((c) => `${c[4]} ${c.slice(5).join(' ')}`)).toEqual([
      `SetLinkDNS ia(iay) ${ifindex} 1 2 4 192 168 99 1`, `SetLinkDomains ia(sb) ${ifindex} 1 machine true`, `SetLinkDefaultRoute ib ${ifindex} false`,
    ]);
    const ask = (name: string, type = 'A') => resolveIn(netns.name, HOST, name, type);

    expect(await ask('alpha')).toEqual({ ok: ['192.168.99.20'] });
    expect(await ask('BETA.machine')).toEqual({ ok: [CLIENT] });
    expect(await ask('20.99.168.192.in-addr.arpa', 'PTR')).toEqual({ ok: ['alpha.machine'] });
    expect(await ask('gamma.machine')).toEqual({ err: 'ENOTFOUND' });
    expect(await ask('alpha', 'AAAA')).toEqual({ err: 'ENODATA' });

    // forwarded, past the dead first upstream; then the live one is asked first
    expect(await ask(FWD_NAME)).toEqual({ ok: [FWD_ADDR] });
    const timeoutsAfterFirst = server.forwarder.stats.timeouts;
    expect(timeoutsAfterFirst).toBe(1);
    expect(await ask(BIG_NAME, 'TXT')).toEqual({ ok: [BIG_STRINGS] });
    expect(server.forwarder.stats.timeouts).toBe(timeoutsAfterFirst);
    expect(server.forwarder.stats.tcp).toBeGreaterThanOrEqual(1); // dnsmasq truncated it: asked over TCP

    // the upstream goes: the cached name is still answered (TTL 60), a new one gets SERVFAIL
    await upstream.stop();
    upstream = undefined;
    expect(await ask(FWD_NAME)).toEqual({ ok: [FWD_ADDR] });
    expect(await ask('new.example')).toEqual({ err: 'ESERVFAIL' });
    expect(server.stats.servfail).toBe(1);

    // from the uplink, the host-side address is reachable (weak host model) but never answers
    await world.uplink.exec('ip', ['route', 'add', '192.168.99.0/24', 'via', HOST_UPLINK]);
    const before = server.stats.dropped;
    expect(await resolveIn(world.uplink.name, HOST, 'alpha', 'A', 1000)).toEqual({ err: 'ETIMEOUT' });
    expect(server.stats.dropped).toBeGreaterThan(before);

    // names change at once; the listener closes with its link
    server.setLinks([{ ifname: 'dnsh0', ifindex, hostAddress: HOST, subnet: '192.168.99.0/24', machines: [{ name: 'beta', address: CLIENT }] }]);
    expect(await ask('alpha')).toEqual({ err: 'ENOTFOUND' });
    server.setLinks([]);
    expect(server.bound()).toEqual([]);
    expect(busCalls.at(-1)?.slice(4)).toEqual(['RevertLink', 'i', String(ifindex)]);
    expect((await run('ss', ['-Hlun', 'sport = :53'])).stdout.trim()).toBe('');
  } finally {
    await server.close();
    await upstream?.stop();
    await run('ip', ['link', 'del', 'dnsh0']);
    rmSync(dir, { recursive: true, force: true });
    await world.destroy();
  }
});

ktest('per-source rate limit: a flooding client is dropped, another on the link is still answered', async ({ netns }) => {
  const server = new DnsServer({ rate: 50, forwarder: { servers: [] }, resolved: false });
  try {
    await clientLink(netns);
    await netns.exec('ip', ['addr', 'add', '192.168.99.11/24', 'dev', 'dnsc0']);
    server.setLinks([{ ifname: 'dnsh0', hostAddress: HOST, subnet: '192.168.99.0/24', machines: [{ name: 'alpha', address: '192.168.99.20' }] }]);
    await server.ready();
    // 2000 queries for alpha from 192.168.99.10 as fast as a socket sends them; the flooder counts
    // the answers it gets (some queries may be lost in the kernel before the server reads them, so
    // the server's drop count alone is not a bound)
    const flood = `const s = require('dgram').createSocket('udp4'); let answers = 0; const t0 = Date.now();
      s.on('message', () => { answers++; });
      s.bind({ address: '${CLIENT}' }, () => {
      const q = Buffer.from('00000100000100000000000005616c7068610000010001', 'hex'); let n = 0;
      const send = () => { if (n++ >= 2000) { const ms = Date.now() - t0; return setTimeout(() => { console.log(JSON.stringify({ answers, ms })); s.close(); }, 300); }
        q.writeUInt16BE(n & 0xffff, 0); s.send(q, 53, '${HOST}', send); }; send(); });`;
    const { answers, ms } = JSON.parse(await netns.exec(process.execPath, ['-e', flood])) as { answers: number; ms: number };
    // at most the burst (2 × 50) and 50 a second of the flood's duration, with a little slack for timing
    // (without the limit, hundreds more are answered)
    expect(answers).toBeLessThanOrEqual(100 + Math.ceil((50 * (ms + 300)) / 1000) + 5);
    expect(answers).toBeGreaterThan(0);
    expect(server.limiter.dropped).toBeGreaterThan(100);
    // the other source has its own bucket
    const other = `const r = new (require('dns').promises.Resolver)({ timeout: 2000, tries: 1 }); r.setLocalAddress('192.168.99.11'); r.setServers(['${HOST}']);
      r.resolve4('alpha').then((a) => console.log(a.join(',')), (e) => console.log(e.code));`;
    expect((await netns.exec(process.execPath, ['-e', other])).trim()).toBe('192.168.99.20');
  } finally {
    await server.close();
    await run('ip', ['link', 'del', 'dnsh0']);
  }
});

ktest('per-source rate limit over IPv6: a client cycling through 200 addresses of the /64 shares one bucket; the machine\'s own address is still answered', async ({ netns }) => {
  const server = new DnsServer({ rate: 50, forwarder: { servers: [] }, resolved: false });
  try {
    await clientLink(netns);
    await runOk('ip', ['addr', 'add', '2001:db8:99::1/64', 'dev', 'dnsh0', 'nodad']);
    // the machine's address, and 200 others a hostile container could take in its /64
    const batch = ['addr add 2001:db8:99::20/64 dev dnsc0 nodad', ...Array.from({ length: 200 }, (_, i) => `addr add 2001:db8:99::f:${(i + 1).toString(16)}/64 dev dnsc0 nodad`)];
    await netns.exec('ip', ['-batch', '-'], { input: batch.join('\n') + '\n' });
    server.setLinks([{
      ifname: 'dnsh0', hostAddress: HOST, subnet: '192.168.99.0/24', hostAddress6: '2001:db8:99::1', prefix6: '2001:db8:99::/64',
      machines: [{ name: 'alpha', address: '192.168.99.20', address6: '2001:db8:99::20' }],
    }]);
    await server.ready();
    expect(server.bound()).toEqual([HOST, '2001:db8:99::1']);
    // 2000 AAAA queries for alpha, each from the next of the 200 addresses; without the shared
    // bucket each address would have a burst of its own (200 × 100) and every query be answered
    const flood = `const dgram = require('dgram'); let answers = 0; const t0 = Date.now();
      const socks = Array.from({ length: 200 }, (_, i) => { const s = dgram.createSocket('udp6'); s.on('message', () => { answers++; }); s.bind({ address: '2001:db8:99::f:' + (i + 1).toString(16) }); return s; });
      const q = Buffer.from('00000100000100000000000005616c70686100001c0001', 'hex'); let n = 0;
      const send = () => { if (n++ >= 2000) { const ms = Date.now() - t0; return setTimeout(() => { console.log(JSON.stringify({ answers, ms })); socks.forEach((s) => s.close()); }, 300); }
        q.writeUInt16BE(n & 0xffff, 0); socks[n % 200].send(q, 53, '2001:db8:99::1', send); };
      setTimeout(send, 200);`;
    const { answers, ms } = JSON.parse(await netns.exec(process.execPath, ['-e', flood])) as { answers: number; ms: number };
    expect(answers).toBeLessThanOrEqual(100 + Math.ceil((50 * (ms + 500)) / 1000) + 5);
    expect(answers).toBeGreaterThan(0);
    expect(server.limiter.sources).toBeLessThanOrEqual(2);
    // the machine's own address has its own bucket
    const own = `const r = new (require('dns').promises.Resolver)({ timeout: 2000, tries: 1 }); r.setLocalAddress('192.168.99.10', '2001:db8:99::20'); r.setServers(['2001:db8:99::1']);
      r.resolve6('alpha').then((a) => console.log(a.join(',')), (e) => console.log(e.code));`;
    expect((await netns.exec(process.execPath, ['-e', own])).trim()).toBe('2001:db8:99::20');
  } finally {
    await server.close();
    await run('ip', ['link', 'del', 'dnsh0']);
  }
});
