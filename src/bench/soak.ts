// bench/soak: the standing reliability suite (issue 12). Each cycle starts two networked
// containers at once — one on a veth (-n), one on a zone — with -p and udhcpc inside, served by
// nspawn-netd, waits for both leases, and stops them.
//
//   fault phase (SOAK_FAULT_CYCLES, 100): in most cycles the sidecar is killed with SIGKILL at a
//     random point (before the starts, during them, while both run, during the stops) and started
//     again. Whenever both containers run across a kill, the leases the sidecar had ACKed (bound
//     in its `leases` answer just before the kill) must be bound again after the restart: the
//     ones missing are `leases_lost`.
//   quiet phase (SOAK_CYCLES, 500): no faults; the sidecar's RSS and open fds are read every 20
//     cycles from cycle 100 on (after SOAK_SETTLE_MS idle); the growth is the least-squares trend of
//     those samples over cycles 100..500 (must stay within 10%). Two single samples are not: the RSS
//     of an idle sidecar swings ±5–10% between reads as V8 resizes its heap (heapTotal 10–19 MB for
//     ~8.5 MB live) and JIT code accumulates, while the live JS objects do not grow (docs/reliability.md).
//
// After each phase: links (ve-/vb-/vz-), elements of our nft table, machine records and the
// sidecar's link records, machine cgroups, mounts (against the start) and notify sockets left —
// all must be 0. Run through bench/soak (private namespaces, fresh /run). Last line: JSON.
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { NetdClient } from '../net/netd/client.js';
import { mulberry32 as rng } from './rng.js';

const REPO = fileURLToPath(new URL('../..', import.meta.url));
const NSPAWN_TS = `${REPO}bin/nspawn-ts`;
const NETD = `${REPO}bin/nspawn-netd`;
const ROOT = `${process.env.NSPAWN_TS_TEST_ROOTS ?? '/var/cache/nspawn-ts/roots'}/busybox`;
const DNS = '192.0.2.53';
const SOCKET = '/run/nspawn-ts/netd.sock';
const FAULT_CYCLES = Number(process.env.SOAK_FAULT_CYCLES ?? 100);
const CYCLES = Number(process.env.SOAK_CYCLES ?? 500);
const SEED = Number(process.env.SOAK_SEED ?? Date.now() % 1_000_000);
const ZONE = 'soak';
const SETTLE_MS = Number(process.env.SOAK_SETTLE_MS ?? 3_000);
/** quiet cycles between RSS samples (from cycle 100, or the first cycle of a shorter run) */
const SAMPLE_EVERY = 20;

const UDHCPC = 'udhcpc -i host0 -f -q -n -t 10 -T 1 >/dev/null 2>&1 && echo "lease=$(ip -4 -o addr show host0 | awk \'{print $4}\' | cut -d/ -f1)" || echo lease-failed; read x';

const random = rng(SEED);
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const say = (s: string): void => { process.stderr.write(`soak: ${s}\n`); };

function exited(child: ChildProcess): Promise<void> {
  return child.exitCode !== null || child.signalCode !== null ? Promise.resolve() : new Promise((r) => child.once('exit', () => r()));
}

async function within<T>(p: Promise<T>, ms: number): Promise<T | 'timeout'> {
  let t: NodeJS.Timeout | undefined;
  const timeout = new Promise<'timeout'>((r) => { t = setTimeout(() => r('timeout'), ms); });
  try {
    return await Promise.race([p, timeout]);
  } finally {
    clearTimeout(t);
  }
}

class Sidecar {
  child: ChildProcess | undefined;
  restarts = 0;

  async start(): Promise<void> {
    const child = spawn(process.execPath, [NETD, `--dns=${DNS}`], { stdio: ['ignore', 'ignore', 'pipe'] });
    child.stderr?.resume();
    this.child = child;
    for (let i = 0; i < 400; i++) {
      const c = await NetdClient.connect(SOCKET).catch(() => undefined);
      if (c) {
        c.close();
        return;
      }
      if (child.exitCode !== null) throw new Error(`nspawn-netd exited with ${child.exitCode} at its start`);
      await sleep(25);
    }
    throw new Error('nspawn-netd did not answer within 10 s');
  }

  async kill9(): Promise<void> {
    const c = this.child;
    if (!c) return;
    c.kill('SIGKILL');
    await exited(c);
    this.restarts++;
  }

  async stop(): Promise<void> {
    const c = this.child;
    if (!c) return;
    c.kill('SIGTERM');
    if (await within(exited(c), 20_000) === 'timeout') {
      c.kill('SIGKILL');
      await exited(c);
    }
    this.child = undefined;
  }

  async request<T>(req: Parameters<NetdClient['request']>[0]): Promise<T> {
    const c = await NetdClient.connect(SOCKET);
    if (!c) throw new Error('no sidecar');
    try {
      return await c.request<T>(req);
    } finally {
      c.close();
    }
  }

  usage(): { rssKb: number; fds: number } {
    const pid = this.child?.pid as number;
    const rss = /^VmRSS:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return { rssKb: Number(rss?.[1] ?? 0), fds: readdirSync(`/proc/${pid}/fd`).length };
  }
}

interface Lease { ifname: string; address: string; mac: string; state: string }

class Container {
  readonly child: ChildProcess;
  private out = '';
  stopping = false;

  constructor(readonly name: string, args: readonly string[]) {
    this.child = spawn(process.execPath, [NSPAWN_TS, '-q', '--pipe', '-D', ROOT, '-M', name, '--network-config=dhcp', ...args, '/bin/sh', '-c', UDHCPC],
      { stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, NSPAWN_NETD_DNS: DNS } });
    this.child.stdout?.on('data', (d: Buffer) => { this.out += d.toString(); });
    this.child.stderr?.on('data', (d: Buffer) => { this.out += d.toString(); });
    this.child.stdin?.on('error', () => undefined);
  }

  get lease(): string | undefined {
    return /^lease=(\d+\.\d+\.\d+\.\d+)$/m.exec(this.out)?.[1];
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null && !this.stopping;
  }

  output(): string {
    return this.out;
  }

  /** Until it has its lease, or failed to get one, or exited. */
  async settled(): Promise<void> {
    for (let i = 0; i < 1200; i++) {
      if (this.lease || this.out.includes('lease-failed') || !this.running) return;
      await sleep(25);
    }
  }

  async stop(): Promise<number | null> {
    this.stopping = true;
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.stdin?.end('\n');
    if (await within(exited(this.child), 20_000) === 'timeout') {
      this.child.kill('SIGTERM');
      if (await within(exited(this.child), 10_000) === 'timeout') this.child.kill('SIGKILL');
      await exited(this.child);
    }
    return this.child.exitCode;
  }
}

interface Leftovers { links: number; nft_elements: number; records: number; cgroups: number; mounts: number; notify_sockets: number }

function json(cmd: string, args: string[]): unknown {
  try {
    return JSON.parse(execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }));
  } catch {
    return undefined;
  }
}

function machineCgroups(): number {
  let n = 0;
  const walk = (dir: string, depth: number): void => {
    let entries;
    try {
      entries = readdirSync(dir, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries) {
      if (!e.isDirectory()) continue;
      if (e.name === 'nspawn-ts') n += readdirSync(`${dir}/${e.name}`).filter((m) => m.startsWith('machine-soak')).length;
      else if (depth < 4) walk(`${dir}/${e.name}`, depth + 1);
    }
  };
  walk('/sys/fs/cgroup', 0);
  return n;
}

function mountCount(): number {
  return readFileSync('/proc/self/mountinfo', 'utf8').split('\n').filter(Boolean).length;
}

function leftovers(mountsAtStart: number): Leftovers {
  const links = ((json('ip', ['-j', 'link', 'show']) ?? []) as Array<{ ifname: string }>).filter((l) => /^(ve|vb|vz)-/.test(l.ifname)).length;
  const table = json('nft', ['-j', 'list', 'table', 'inet', 'nspawn-ts']) as { nftables: Array<Record<string, { elem?: unknown[] }>> } | undefined;
  const nft = (table?.nftables ?? []).reduce((n, o) => n + (o.set?.elem?.length ?? 0) + (o.map?.elem?.length ?? 0), 0);
  const dir = (d: string, f: (n: string) => boolean = () => true): number => (existsSync(d) ? readdirSync(d).filter(f).length : 0);
  let stateLinks = 0;
  try {
    stateLinks = Object.keys((JSON.parse(readFileSync('/var/lib/nspawn-ts/netd/state.json', 'utf8')) as { links: object }).links).length;
  } catch { /* no state file: no records */ }
  return {
    links,
    nft_elements: nft,
    records: dir('/run/nspawn-ts/machines', (n) => n.endsWith('.json') && !n.startsWith('.')) + stateLinks,
    cgroups: machineCgroups(),
    mounts: Math.max(0, mountCount() - mountsAtStart),
    notify_sockets: dir('/run/nspawn-ts/notify'),
  };
}

const sum = (l: Leftovers): number => Object.values(l).reduce((a, b) => a + b, 0);

/** The least-squares line through (cycle, value) points, read at cycles `from` and `to`. */
function trend(points: Array<[number, number]>, from: number, to: number): { from: number; to: number } {
  const n = points.length;
  if (n === 0) return { from: 0, to: 0 };
  const mx = points.reduce((s, [x]) => s + x, 0) / n;
  const my = points.reduce((s, [, y]) => s + y, 0) / n;
  const sxx = points.reduce((s, [x]) => s + (x - mx) ** 2, 0);
  const slope = sxx === 0 ? 0 : points.reduce((s, [x, y]) => s + (x - mx) * (y - my), 0) / sxx;
  return { from: my + slope * (from - mx), to: my + slope * (to - mx) };
}

async function main(): Promise<void> {
  const sidecar = new Sidecar();
  const mountsAtStart = mountCount();
  await sidecar.start();
  let acked = 0;
  let checked = 0;
  let lost = 0;
  let failedStarts = 0;
  let badExits = 0;
  const lostDetail: string[] = [];

  const boundLeases = async (): Promise<Lease[]> => (await sidecar.request<Lease[]>({ op: 'leases' }).catch(() => [] as Lease[])).filter((l) => l.state === 'bound');

  /** SIGKILL and restart; the ACKed leases of containers running across it must survive. */
  const killRestart = async (pair: Container[]): Promise<void> => {
    const running = (): Container[] => pair.filter((c) => c.running && c.lease !== undefined);
    const wanted = new Set(running().map((c) => c.lease));
    const before = (await boundLeases()).filter((l) => wanted.has(l.address));
    await sidecar.kill9();
    await sidecar.start();
    const after = await boundLeases();
    const still = new Set(running().map((c) => c.lease));
    for (const l of before) {
      if (!still.has(l.address)) continue; // its container ended meanwhile: released
      checked++;
      if (!after.some((a) => a.ifname === l.ifname && a.address === l.address && a.mac === l.mac)) {
        lost++;
        lostDetail.push(`${l.ifname} ${l.address} ${l.mac}`);
      }
    }
  };

  const cycle = async (i: number, faults: boolean): Promise<void> => {
    const point = faults && random() < 0.8 ? (['idle', 'starting', 'running', 'stopping'] as const)[Math.floor(random() * 4)] : undefined;
    const pair: Container[] = [];
    if (point === 'idle') await killRestart(pair);
    pair.push(new Container('soakv', ['-n', '-p', 'tcp:18080:80']), new Container('soakz', [`--network-zone=${ZONE}`, '-p', 'tcp:18081:80']));
    if (point === 'starting') {
      await sleep(random() * 1500);
      await killRestart(pair);
    }
    await Promise.all(pair.map((c) => c.settled()));
    for (const c of pair) {
      if (c.lease) acked++;
      else failedStarts++;
    }
    if (point === 'running') await killRestart(pair);
    const stops = pair.map((c) => c.stop());
    if (point === 'stopping') {
      await sleep(random() * 500);
      await killRestart(pair);
    }
    const codes = await Promise.all(stops);
    // a start that failed (the sidecar died under it) exits non-zero; a container that ran, 0
    pair.forEach((c, k) => {
      if (c.lease && codes[k] !== 0) {
        badExits++;
        say(`cycle ${i}: ${c.name} exited ${String(codes[k])}: ${c.output().slice(-400)}`);
      }
    });
    if (!faults && pair.some((c) => !c.lease)) say(`cycle ${i}: no lease: ${pair.map((c) => c.output().slice(-300)).join(' | ')}`);
  };

  const t0 = Date.now();
  for (let i = 1; i <= FAULT_CYCLES; i++) {
    await cycle(i, true);
    if (i % 10 === 0) say(`fault phase: ${i}/${FAULT_CYCLES} cycles, ${sidecar.restarts} kills, ${lost} of ${checked} leases lost (${Math.round((Date.now() - t0) / 1000)} s)`);
  }
  await sleep(1_000);
  const afterFaults = leftovers(mountsAtStart);
  const faultSeconds = (Date.now() - t0) / 1000;
  const faultFailedStarts = failedStarts;
  say(`fault phase done: leftovers ${JSON.stringify(afterFaults)}`);

  const t1 = Date.now();
  failedStarts = 0;
  const samples: Record<number, { rssKb: number; fds: number }> = {};
  // from cycle 100 on, every SAMPLE_EVERY cycles: the trend over them is the growth
  const firstSample = Math.min(100, CYCLES);
  const sampleAt = new Set([firstSample, CYCLES, ...Array.from({ length: CYCLES }, (_, k) => k + 1).filter((c) => c > firstSample && (c - firstSample) % SAMPLE_EVERY === 0)]);
  for (let i = 1; i <= CYCLES; i++) {
    await cycle(i, false);
    if (sampleAt.has(i)) {
      // idle for a while first: V8's memory reducer collects then, so what is read is what the
      // sidecar keeps, not garbage a collection had not yet reached
      await sleep(SETTLE_MS);
      samples[i] = sidecar.usage();
      say(`quiet phase cycle ${i}: sidecar ${JSON.stringify(samples[i])}`);
    }
    if (i % 50 === 0) say(`quiet phase: ${i}/${CYCLES} cycles (${Math.round((Date.now() - t1) / 1000)} s)`);
  }
  await sleep(1_000);
  const afterQuiet = leftovers(mountsAtStart);
  await sidecar.stop();
  const afterStop = leftovers(mountsAtStart);
  const a = samples[firstSample] ?? { rssKb: 0, fds: 0 };
  const b = samples[CYCLES] ?? { rssKb: 0, fds: 0 };
  const pct = (x: number, y: number): number => (x === 0 ? 0 : Math.round(((y - x) / x) * 1000) / 10);
  const rssTrend = trend(Object.entries(samples).map(([c, v]) => [Number(c), v.rssKb]), firstSample, CYCLES);
  const fdTrend = trend(Object.entries(samples).map(([c, v]) => [Number(c), v.fds]), firstSample, CYCLES);
  const result = {
    bench: 'soak',
    seed: SEED,
    fault_cycles: FAULT_CYCLES,
    sidecar_kills: sidecar.restarts,
    containers_started: 2 * (FAULT_CYCLES + CYCLES),
    leases_acked: acked,
    leases_checked_across_kills: checked,
    leases_lost: lost,
    ...(lostDetail.length ? { lost: lostDetail.slice(0, 10) } : {}),
    failed_starts_under_faults: faultFailedStarts,
    failed_starts_quiet: failedStarts,
    bad_exits: badExits,
    left_after_faults: afterFaults,
    quiet_cycles: CYCLES,
    left_after_quiet: afterQuiet,
    left_after_sidecar_stop: afterStop,
    // growth_pct: the trend's rise from cycle 100 to the last, of its value at 100; the two samples as read
    sidecar_rss_kb: { trend_from: Math.round(rssTrend.from), trend_to: Math.round(rssTrend.to), growth_pct: pct(rssTrend.from, rssTrend.to), [`sample_${firstSample}`]: a.rssKb, [`sample_${CYCLES}`]: b.rssKb },
    sidecar_rss_kb_samples: Object.fromEntries(Object.entries(samples).map(([k, v]) => [k, v.rssKb])),
    sidecar_fds: { [`cycle_${firstSample}`]: a.fds, [`cycle_${CYCLES}`]: b.fds, growth_pct: pct(fdTrend.from, fdTrend.to) },
    fault_phase_s: Math.round(faultSeconds),
    quiet_phase_s: Math.round((Date.now() - t1) / 1000),
    ok: lost === 0 && sum(afterFaults) === 0 && sum(afterQuiet) === 0 && sum(afterStop) === 0 && failedStarts === 0 && badExits === 0
      && pct(rssTrend.from, rssTrend.to) <= 10 && pct(fdTrend.from, fdTrend.to) <= 10,
  };
  process.stdout.write(`${JSON.stringify(result)}\n`);
  process.exit(result.ok ? 0 : 1);
}

main().catch((err: unknown) => {
  process.stderr.write(`soak: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`);
  process.exit(2);
});
