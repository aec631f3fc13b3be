// bench/ports: port forwarding, in one run, in namespaces of its own (bench/ports puts the whole run
// in a private network and mount namespace: this process's namespace is the "host").
//
// 1. Changes: 1,000 mappings added one by one, then removed one by one —
//      ours      Firewall.addPortMapping / removePortMappings, in-process (one long-lived
//                libnftables context, one transaction per change, removal without a listing)
//      nft       one `nft add|delete element` process per change
//      iptables  one `iptables -t nat -A|-D PREROUTING … -j DNAT` process per change
// 2. The data path: a client namespace (198.51.100.2) reaches a container namespace (10.0.0.18)
//    through the host, directly (routed, no NAT) and through a mapping on the host's address with
//    1, 1,000 and 10,000 mappings installed (our map: one lookup whatever the count), and through
//    the 1,000th of 1,000 iptables DNAT rules (a linear chain). iperf3 throughput (one TCP stream)
//    and new connections per second (bench/connrate.c). The configurations take turns, ROUNDS
//    times; each figure is its best round (the machine is shared: the least disturbed one).
//
// Prints a table, then one JSON line. Environment: PORTS_SECONDS (per run, default 3),
// PORTS_ROUNDS (default 3), PORTS_OPS (default 1000).
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Firewall, type PortMapping } from '../net/firewall/index.js';

const SECONDS = Number(process.env.PORTS_SECONDS ?? 3);
const ROUNDS = Number(process.env.PORTS_ROUNDS ?? 3);
const OPS = Number(process.env.PORTS_OPS ?? 1000);
const CLIENT = 'pbench-client';
const CT = 'pbench-ct';
const CT_ADDR = '10.0.0.18';
const HOST_ADDR = '198.51.100.1';
const IPERF_PORT = 5201;
const CONN_PORT = 6000;
const NAT_IPERF = 15201;
const NAT_CONN = 16000;
const PARALLEL = 64;

const log = (s: string): void => { process.stderr.write(`${s}\n`); };
const sh = (cmd: string, args: string[]): string => execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
const inNs = (ns: string, cmd: string, args: string[]): string => sh('ip', ['netns', 'exec', ns, cmd, ...args]);

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] as number;
}

const round = (x: number, d = 2): number => Math.round(x * 10 ** d) / 10 ** d;

/** Filler targets: 10.1.0.0/16, never the container. */
function fillerAddress(i: number): string {
  return `10.1.${(i >> 8) & 255}.${(i & 255) || 1}`;
}

interface OpTimes { addMs: number; removeMs: number; addMedianUs: number; removeMedianUs: number }

function timeEach(n: number, fn: (i: number) => void): { totalMs: number; medianUs: number } {
  const each: number[] = [];
  const t0 = performance.now();
  for (let i = 0; i < n; i++) {
    const t = performance.now();
    fn(i);
    each.push((performance.now() - t) * 1000);
  }
  return { totalMs: performance.now() - t0, medianUs: median(each) };
}

function oursOps(fw: Firewall): OpTimes {
  const add = timeEach(OPS, (i) => fw.addPortMapping({ protocol: 'tcp', hostPort: 20000 + i, containerAddress: fillerAddress(i), containerPort: 80, owner: `b${i}` }));
  const rm = timeEach(OPS, (i) => {
    if (fw.removePortMappings(`b${i}`).length !== 1) throw new Error(`mapping b${i} was not removed`);
  });
  if (fw.state().ports.length !== 0) throw new Error('mappings left after removing them all');
  return { addMs: add.totalMs, removeMs: rm.totalMs, addMedianUs: add.medianUs, removeMedianUs: rm.medianUs };
}

function nftOps(): OpTimes {
  const add = timeEach(OPS, (i) => sh('nft', [`add element inet nspawn-ts ports4 { tcp . ${20000 + i} comment "n${i}" : ${fillerAddress(i)} . 80 }`]));
  const rm = timeEach(OPS, (i) => sh('nft', [`delete element inet nspawn-ts ports4 { tcp . ${20000 + i} }`]));
  return { addMs: add.totalMs, removeMs: rm.totalMs, addMedianUs: add.medianUs, removeMedianUs: rm.medianUs };
}

const iptRule = (port: number, to: string): string[] =>
  ['PREROUTING', '-p', 'tcp', '--dport', String(port), '-m', 'addrtype', '--dst-type', 'LOCAL', '-j', 'DNAT', '--to-destination', to];

/** Adds OPS DNAT rules, the last one forwarding NAT_CONN to the container (for the data path). */
function iptablesAdd(): { totalMs: number; medianUs: number } {
  return timeEach(OPS, (i) => sh('iptables', ['-t', 'nat', '-A', ...iptRule(i === OPS - 1 ? NAT_CONN : 20000 + i, i === OPS - 1 ? `${CT_ADDR}:${CONN_PORT}` : `${fillerAddress(i)}:80`)]));
}

function iptablesRemove(): { totalMs: number; medianUs: number } {
  return timeEach(OPS, (i) => sh('iptables', ['-t', 'nat', '-D', ...iptRule(i === OPS - 1 ? NAT_CONN : 20000 + i, i === OPS - 1 ? `${CT_ADDR}:${CONN_PORT}` : `${fillerAddress(i)}:80`)]));
}

function topology(): void {
  sh('ip', ['netns', 'add', CLIENT]);
  sh('ip', ['netns', 'add', CT]);
  sh('ip', ['link', 'set', 'lo', 'up']);
  sh('ip', ['link', 'add', 'c-host', 'type', 'veth', 'peer', 'name', 'c0', 'netns', CLIENT]);
  sh('ip', ['link', 'add', 've-bench', 'type', 'veth', 'peer', 'name', 'host0', 'netns', CT]);
  sh('ip', ['addr', 'add', `${HOST_ADDR}/24`, 'dev', 'c-host']);
  sh('ip', ['addr', 'add', '10.0.0.17/28', 'dev', 've-bench']);
  sh('ip', ['link', 'set', 'c-host', 'up']);
  sh('ip', ['link', 'set', 've-bench', 'up']);
  for (const [ns, dev, addr, gw] of [[CLIENT, 'c0', '198.51.100.2/24', HOST_ADDR], [CT, 'host0', `${CT_ADDR}/28`, '10.0.0.17']] as const) {
    inNs(ns, 'ip', ['link', 'set', 'lo', 'up']);
    inNs(ns, 'ip', ['addr', 'add', addr, 'dev', dev]);
    inNs(ns, 'ip', ['link', 'set', dev, 'up']);
    inNs(ns, 'ip', ['route', 'add', 'default', 'via', gw]);
  }
  inNs(CLIENT, 'sysctl', ['-qw', 'net.ipv4.ip_local_port_range=1024 65535']);
  sh('sysctl', ['-qw', 'net.ipv4.ip_forward=1']);
  // reset connections leave conntrack entries in CLOSE for 10 s: at thousands per second the table
  // would fill; this namespace's own timeouts (per namespace since Linux 4.x) keep it small
  sh('sysctl', ['-qw', 'net.netfilter.nf_conntrack_tcp_timeout_close=1', 'net.netfilter.nf_conntrack_tcp_timeout_time_wait=1']);
}

function startIn(ns: string, cmd: string, args: string[]): ChildProcess {
  return spawn('ip', ['netns', 'exec', ns, cmd, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
}

function waitListening(ns: string, port: number): void {
  for (let i = 0; i < 100; i++) {
    if (inNs(ns, 'ss', ['-Hltn', `sport = :${port}`]).trim()) return;
    spawnSync('sleep', ['0.05']);
  }
  throw new Error(`nothing listens on port ${port} in ${ns}`);
}

function iperf(host: string, port: number): number {
  const out = spawnSync('ip', ['netns', 'exec', CLIENT, 'iperf3', '-c', host, '-p', String(port), '-t', String(SECONDS), '-J'], { encoding: 'utf8', timeout: (SECONDS + 20) * 1000 });
  const j = JSON.parse(out.stdout || '{}') as { end?: { sum_received?: { bits_per_second?: number } }; error?: string };
  if (!j.end?.sum_received?.bits_per_second) throw new Error(`iperf3 to ${host}:${port} failed: ${j.error ?? out.stderr}`);
  return j.end.sum_received.bits_per_second / 1e9;
}

function conns(connrate: string, host: string, port: number, rounds = 1): number {
  let best = 0;
  for (let r = 0; r < rounds; r++) {
    const out = inNs(CLIENT, connrate, ['connect', host, String(port), String(SECONDS), String(PARALLEL)]).trim();
    const [rate = 0, errors = 0] = out.split(' ').map(Number);
    if (rate === 0) throw new Error(`no connection to ${host}:${port} completed (${errors} errors)`);
    best = Math.max(best, rate);
    spawnSync('sleep', ['1.2']); // let the conntrack entries of this run expire
  }
  return best;
}

/** Our mappings: the two measured ones plus filler up to `total`. */
function installMappings(fw: Firewall, total: number): void {
  fw.ensureTables();
  fw.removePortMappings('fill');
  fw.removePortMappings('bench');
  fw.addPortMappings([
    { protocol: 'tcp', hostPort: NAT_IPERF, containerAddress: CT_ADDR, containerPort: IPERF_PORT, owner: 'bench' },
    { protocol: 'tcp', hostPort: NAT_CONN, containerAddress: CT_ADDR, containerPort: CONN_PORT, owner: 'bench' },
  ]);
  const filler: PortMapping[] = [];
  for (let i = 0; i < total - 2; i++) filler.push({ protocol: i % 2 ? 'udp' : 'tcp', hostPort: 30000 + (i >> 1), containerAddress: fillerAddress(i), containerPort: 80, owner: 'fill' });
  for (let i = 0; i < filler.length; i += 500) fw.addPortMappings(filler.slice(i, i + 500));
  const n = fw.state().ports.length;
  if (n !== Math.max(total, 2)) throw new Error(`expected ${Math.max(total, 2)} mappings, the table has ${n}`);
}

async function main(): Promise<void> {
  const work = mkdtempSync(join(tmpdir(), 'nspawn-ts-bench-ports-'));
  const children: ChildProcess[] = [];
  const fw = new Firewall();
  try {
    const connrate = join(work, 'connrate');
    sh('cc', ['-O2', '-Wall', '-o', connrate, join(process.cwd(), 'bench/connrate.c')]);
    topology();
    fw.ensureTables();

    log(`1. ${OPS} mappings added one by one, then removed one by one`);
    const ours = oursOps(fw);
    log(`   ours (in-process)     add ${round(ours.addMs, 0)} ms (median ${round(ours.addMedianUs, 0)} µs), remove ${round(ours.removeMs, 0)} ms (median ${round(ours.removeMedianUs, 0)} µs)`);
    const nft = nftOps();
    log(`   nft (process/change)  add ${round(nft.addMs, 0)} ms (median ${round(nft.addMedianUs, 0)} µs), remove ${round(nft.removeMs, 0)} ms (median ${round(nft.removeMedianUs, 0)} µs)`);

    children.push(startIn(CT, 'iperf3', ['-s', '-p', String(IPERF_PORT)]));
    children.push(startIn(CT, connrate, ['serve', String(CONN_PORT)]));
    waitListening(CT, IPERF_PORT);
    waitListening(CT, CONN_PORT);

    log(`2. data path, client 198.51.100.2 → container ${CT_ADDR} (best of ${ROUNDS} interleaved rounds × ${SECONDS} s)`);
    // warm-up (discarded): conntrack and NAT start working in this namespace with the first flows
    installMappings(fw, 2);
    inNs(CLIENT, connrate, ['connect', HOST_ADDR, String(NAT_CONN), '1', String(PARALLEL)]);
    spawnSync('sleep', ['1.2']);
    // the configurations take turns in every round, so a burst of load elsewhere on the machine
    // hits them alike; each keeps its best round
    const configs = ['direct', 1, 1000, 10000] as const;
    type Measured = { gbps: number; conns: number };
    const rounds: Array<Record<(typeof configs)[number], Measured>> = [];
    for (let r = 0; r < ROUNDS; r++) {
      const thisRound: Partial<Record<(typeof configs)[number], Measured>> = {};
      for (const c of configs) {
        if (c === 'direct') fw.removeTables(); // the direct path: no NAT table at all
        else installMappings(fw, c);
        const [host, ip, cp] = c === 'direct' ? [CT_ADDR, IPERF_PORT, CONN_PORT] : [HOST_ADDR, NAT_IPERF, NAT_CONN];
        thisRound[c] = { gbps: iperf(host, ip), conns: conns(connrate, host, cp) };
      }
      rounds.push(thisRound as Record<(typeof configs)[number], Measured>);
    }
    const best = new Map(configs.map((c) => [c, {
      gbps: Math.max(...rounds.map((r) => r[c].gbps)),
      conns: Math.max(...rounds.map((r) => r[c].conns)),
    }]));
    // Within a round, 1 and 10,000 mappings run back to back: the ratio of that pair sees the same
    // background load, and the median of those per-round ratios is what the 5% goal is judged by
    // (a best-of figure per configuration can come from different moments of a busy machine).
    const pairRatios = {
      gbps: rounds.map((r) => r[10000].gbps / r[1].gbps),
      conns: rounds.map((r) => r[10000].conns / r[1].conns),
    };
    const direct = best.get('direct') as { gbps: number; conns: number };
    log(`   10,000 vs 1 mappings, per-round pairs: Gbit/s ${pairRatios.gbps.map((x) => round(x, 3)).join(' ')}; conn/s ${pairRatios.conns.map((x) => round(x, 3)).join(' ')}`);
    log(`   direct (routed)       ${round(direct.gbps)} Gbit/s, ${round(direct.conns, 0)} conn/s`);
    const nat: Record<number, { gbps: number; conns: number }> = {};
    for (const total of [1, 1000, 10000] as const) {
      nat[total] = best.get(total) as { gbps: number; conns: number };
      log(`   DNAT, ${String(total).padStart(5)} mappings   ${round(nat[total]!.gbps)} Gbit/s (${round(nat[total]!.gbps / direct.gbps)}×), ${round(nat[total]!.conns, 0)} conn/s (${round(nat[total]!.conns / direct.conns)}×)`);
    }
    fw.removeTables();

    const iptAdd = iptablesAdd();
    const iptConns = conns(connrate, HOST_ADDR, NAT_CONN, ROUNDS);
    log(`   iptables, ${OPS} DNAT rules (one process each), through the last: ${round(iptConns, 0)} conn/s (${round(iptConns / direct.conns)}×)`);
    const iptRm = iptablesRemove();
    log(`   (1.) iptables (process/change) add ${round(iptAdd.totalMs, 0)} ms (median ${round(iptAdd.medianUs, 0)} µs), remove ${round(iptRm.totalMs, 0)} ms (median ${round(iptRm.medianUs, 0)} µs)`);

    const ratio = (a: number, b: number): number => round(a / b, 3);
    console.log(JSON.stringify({
      bench: 'ports',
      ours_add_ms: round(ours.addMs, 1), nft_add_ms: round(nft.addMs, 1), iptables_add_ms: round(iptAdd.totalMs, 1),
      direct_gbps: round(direct.gbps), nat_1_gbps: round(nat[1]!.gbps), nat_1000_gbps: round(nat[1000]!.gbps), nat_10000_gbps: round(nat[10000]!.gbps),
      nat_1_conns: round(nat[1]!.conns, 0), nat_10000_conns: round(nat[10000]!.conns, 0),
      ops: OPS,
      ours_remove_ms: round(ours.removeMs, 1), nft_remove_ms: round(nft.removeMs, 1), iptables_remove_ms: round(iptRm.totalMs, 1),
      ours_add_median_us: round(ours.addMedianUs, 0), ours_remove_median_us: round(ours.removeMedianUs, 0),
      nft_add_median_us: round(nft.addMedianUs, 0), nft_remove_median_us: round(nft.removeMedianUs, 0),
      iptables_add_median_us: round(iptAdd.medianUs, 0), iptables_remove_median_us: round(iptRm.medianUs, 0),
      direct_conns: round(direct.conns, 0), nat_1000_conns: round(nat[1000]!.conns, 0), iptables_1000_conns: round(iptConns, 0),
      nat_10000_vs_1_gbps: ratio(nat[10000]!.gbps, nat[1]!.gbps), nat_10000_vs_1_conns: ratio(nat[10000]!.conns, nat[1]!.conns),
      nat_10000_vs_1_gbps_median_pair: round(median(pairRatios.gbps), 3), nat_10000_vs_1_conns_median_pair: round(median(pairRatios.conns), 3),
      nat_1_vs_direct_conns: ratio(nat[1]!.conns, direct.conns), iptables_1000_vs_direct_conns: ratio(iptConns, direct.conns),
      seconds: SECONDS, rounds: ROUNDS,
    }));
  } finally {
    for (const c of children) c.kill('SIGKILL');
    try { fw.removeTables(); } catch { /* gone */ }
    fw.close();
    for (const ns of [CLIENT, CT]) spawnSync('ip', ['netns', 'del', ns]);
    rmSync(work, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`bench/ports: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
