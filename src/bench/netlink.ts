// bench/netlink: N veth pairs added, listed and deleted three ways in one run — our rtnetlink client
// (pipelined requests, one group delete), one `ip link add` process per pair, and one `ip -batch`
// process — each in a fresh network namespace. Run through bench/netlink, which puts the whole run in
// a private network and mount namespace. Prints a table, then one JSON line.
//
// Deleting veths one by one costs an RCU grace period per link (~17 ms), so `ip -batch` deleting is
// measured on at most IP_DEL_MAX pairs (NETLINK_BENCH_IP_DEL env) and says so.
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sys } from '../native.js';
import { Rtnl } from '../net/rtnl.js';

const GROUP = 4242;
const ROUNDS = 5;

interface Times {
  add: number;
  dump: number;
  del: number;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] as number;
}

function parseN(): number {
  const raw = process.argv[2] ?? process.env.N ?? '1000';
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1 || n > 100_000) {
    process.stderr.write(`bench/netlink: N must be an integer 1..100000, got "${raw}"\n`);
    process.exit(2);
  }
  return n;
}

/** Our client in a fresh namespace: pipelined creates, one dump, one group delete. */
async function ours(n: number): Promise<Times> {
  const s = sys();
  const fd = s.createNetns();
  const r = Rtnl.open({ netnsFd: fd });
  try {
    const t0 = performance.now();
    await Promise.all(Array.from({ length: n }, (_, i) => r.createVeth({ name: `v${i}`, group: GROUP, peer: { name: `p${i}` } })));
    const t1 = performance.now();
    const links = await r.listLinks();
    const t2 = performance.now();
    await r.deleteLinkGroup(GROUP);
    const t3 = performance.now();
    if (links.length !== 2 * n + 1) throw new Error(`expected ${2 * n + 1} links after adding, listed ${links.length}`);
    const left = await r.listLinks();
    if (left.length !== 1) throw new Error(`expected only lo after the group delete, found ${left.length} links`);
    return { add: (t1 - t0) / 1000, dump: (t2 - t1) / 1000, del: (t3 - t2) / 1000 };
  } finally {
    r.close();
    s.close(fd);
  }
}

/**
 * Runs a shell script in a fresh network namespace; it prints "name nanoseconds" lines. Scripts delete
 * what they made before exiting: a namespace torn down with links in it is cleaned up by the kernel in
 * the background, under the global rtnl lock, and would slow down whatever is measured next.
 */
function timedScript(script: string): Record<string, number> {
  const res = spawnSync('unshare', ['--net', '--', 'sh', '-ec', script], { encoding: 'utf8', maxBuffer: 64 << 20 });
  if (res.status !== 0) throw new Error(`benchmark script failed (${res.status ?? res.signal}): ${res.stderr.trim()}`);
  const out: Record<string, number> = {};
  for (const line of res.stdout.split('\n')) {
    const m = /^(\w+) (\d+)$/.exec(line.trim());
    if (m) out[m[1] as string] = Number(m[2]) / 1e9;
  }
  return out;
}

const now = 'date +%s%N';

/** One `ip link add` process per pair (a shell loop, as a script would do it). */
function ipPerProcess(n: number): number {
  const t = timedScript(`
    i=0; s=$(${now})
    while [ $i -lt ${n} ]; do ip link add v$i group ${GROUP} type veth peer name p$i; i=$((i+1)); done
    e=$(${now}); echo "add $((e-s))"
    [ "$(ip -o link show | wc -l)" -eq ${2 * n + 1} ]
    ip link del group ${GROUP}`);
  return t.add as number;
}

/** The same links as ours: one TX and one RX queue per end (see VethOptions.queues). */
function ipBatchOneQueue(n: number, dir: string): number {
  const add = join(dir, 'add1q.batch');
  writeFileSync(add, Array.from({ length: n }, (_, i) => `link add v${i} group ${GROUP} numtxqueues 1 numrxqueues 1 type veth peer name p${i} numtxqueues 1 numrxqueues 1\n`).join(''));
  const t = timedScript(`
    s=$(${now}); ip -batch ${add}; e=$(${now}); echo "add $((e-s))"
    [ "$(ip -o link show | wc -l)" -eq ${2 * n + 1} ]
    ip link del group ${GROUP}`);
  return t.add as number;
}

/** One `ip -batch` process adding, `ip link show` listing, one `ip -batch` deleting `del` pairs one by one. */
function ipBatch(n: number, del: number, dir: string): Times {
  const add = join(dir, 'add.batch');
  const rm = join(dir, 'del.batch');
  writeFileSync(add, Array.from({ length: n }, (_, i) => `link add v${i} group ${GROUP} type veth peer name p${i}\n`).join(''));
  writeFileSync(rm, Array.from({ length: del }, (_, i) => `link del v${i}\n`).join(''));
  const t = timedScript(`
    s=$(${now}); ip -batch ${add}; e=$(${now}); echo "add $((e-s))"
    s=$(${now}); ip link show > /dev/null; e=$(${now}); echo "dump $((e-s))"
    [ "$(ip -o link show | wc -l)" -eq ${2 * n + 1} ]
    s=$(${now}); ip -batch ${rm}; e=$(${now}); echo "del $((e-s))"
    [ "$(ip -o link show | wc -l)" -eq ${2 * (n - del) + 1} ]
    ip link del group ${GROUP}`);
  return { add: t.add as number, dump: t.dump as number, del: t.del as number };
}

function fmt(s: number): string {
  return `${s.toFixed(3)} s`;
}

function rate(count: number, s: number): string {
  return `${Math.round(count / s)}/s`;
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) {
    process.stderr.write('bench/netlink: run as root (it creates network namespaces and links)\n');
    process.exit(1);
  }
  const n = parseN();
  const delMax = Number(process.env.NETLINK_BENCH_IP_DEL ?? 100);
  const ipDel = Math.min(n, Number.isInteger(delMax) && delMax > 0 ? delMax : 100);
  const ip = execFileSync('ip', ['-V'], { encoding: 'utf8' }).trim();
  process.stdout.write(`bench/netlink: ${n} veth pairs, add / list / delete; median of ${ROUNDS} runs, each in a fresh network namespace\n`);
  process.stdout.write(`  ${ip}; kernel ${execFileSync('uname', ['-r'], { encoding: 'utf8' }).trim()}; node ${process.version}\n`);

  const dir = mkdtempSync(join(tmpdir(), 'bench-netlink-'));
  const runsOurs: Times[] = [];
  const runsBatch: Times[] = [];
  const runsBatch1q: number[] = [];
  try {
    // warm up the JIT and the kernel's slab caches, then interleave so load changes hit both alike
    await ours(Math.min(n, 100));
    for (let k = 0; k < ROUNDS; k++) {
      runsOurs.push(await ours(n));
      runsBatch.push(ipBatch(n, ipDel, dir));
      runsBatch1q.push(ipBatchOneQueue(n, dir));
    }
    const perProcess = ipPerProcess(n);

    const o: Times = { add: median(runsOurs.map((r) => r.add)), dump: median(runsOurs.map((r) => r.dump)), del: median(runsOurs.map((r) => r.del)) };
    const b: Times = { add: median(runsBatch.map((r) => r.add)), dump: median(runsBatch.map((r) => r.dump)), del: median(runsBatch.map((r) => r.del)) };
    const b1q = median(runsBatch1q);

    const rows = [
      ['', 'add', '', 'list all links', 'delete'],
      ['ours (pipelined)', fmt(o.add), rate(n, o.add), fmt(o.dump), `${fmt(o.del)} (one group delete of ${n} pairs)`],
      ['ip, a process per pair', fmt(perProcess), rate(n, perProcess), '', ''],
      ['ip -batch', fmt(b.add), rate(n, b.add), `${fmt(b.dump)} (ip link show)`, `${fmt(b.del)} for ${ipDel} pairs one by one (${rate(ipDel, b.del)})${ipDel < n ? `, bounded: all ${n} would take ~${(b.del * n / ipDel).toFixed(1)} s` : ''}`],
      ['ip -batch, 1 queue/end', fmt(b1q), rate(n, b1q), '(the same links as ours: numtxqueues 1 numrxqueues 1)', ''],
    ];
    const widths = rows[0]?.map((_, c) => Math.max(...rows.map((r) => (r[c] ?? '').length))) ?? [];
    for (const r of rows) process.stdout.write(`  ${r.map((cell, c) => cell.padEnd(widths[c] ?? 0)).join('  ').trimEnd()}\n`);
    const x = (a: number, bb: number): string => `${(a / bb).toFixed(1)}×`;
    process.stdout.write(`  add: ours is ${x(perProcess, o.add)} faster than a process per pair (goal ≥10×) and ${x(b.add, o.add)} the speed of ip -batch (goal ≥1×)\n`);
    process.stdout.write(`  ours creates veths with one TX/RX queue per end, the active count the kernel would cut them to anyway; against ip -batch making the very same links ours is ${x(b1q, o.add)} the speed\n`);
    process.stdout.write(`  list: ours takes ${x(o.dump, b.dump)} the time of ip link show; delete: ours ${rate(n, o.del)} vs ip -batch ${rate(ipDel, b.del)} (${x(b.del / ipDel, o.del / n)} per pair)\n`);
    process.stdout.write(JSON.stringify({
      bench: 'netlink', n,
      ours_add_s: round(o.add), ip_per_process_add_s: round(perProcess), ip_batch_add_s: round(b.add),
      ours_dump_s: round(o.dump), ip_dump_s: round(b.dump),
      ours_del_s: round(o.del), ip_batch_del_s: round(b.del), ip_batch_del_n: ipDel,
    }) + '\n');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function round(s: number): number {
  return Math.round(s * 10000) / 10000;
}

main().catch((err: unknown) => {
  process.stderr.write(`bench/netlink: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
