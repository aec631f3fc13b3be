// bench/dhcp: perfdhcp (Kea's load generator, as a relay: unicast to the server, replies to its
// giaddr) against three DHCPv4 servers in one run, each serving the same pool (198.18.0.0/15, the
// benchmarking range) on a veth between two private network namespaces, each with a lease file on
// disk: ours (nspawn-netd dhcp-serve as shipped: an ACK waits for write() of its lease, the file is
// synced within a second; and again with --durability fsync: an ACK waits for fdatasync), kea-dhcp4
// (memfile, persist true: a write per lease, no fsync) and dnsmasq (rewrites its lease file per change).
//
// The servers run side by side, each on a veth pair of its own, and are measured in turns at each
// offered rate (the order rotating from rate to rate), so that each step of ours and the same step
// of Kea see the same load of a shared machine. For each server the offered rate climbs a fixed
// ladder (5 s per step, 50 000 distinct clients) until more than 1% of DORA exchanges fail (a
// failing step is tried twice), then the gap to the first failure is bisected once. Reported: the completed DORA/s at the highest passing step; median and
// p99 DORA latency (DISCOVER→OFFER plus REQUEST→ACK, perfdhcp's own turnaround excluded) at each
// server's peak and at a common rate (the highest step both ours and Kea passed); the server's peak
// RSS (VmHWM). Run through bench/dhcp, which puts the whole run in a private network and mount
// namespace. Last line: one JSON object.
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/** Namespaces of server i and of its perfdhcp. */
const srvNs = (i: number): string => `dhcpbench-srv${i}`;
const cliNs = (i: number): string => `dhcpbench-cli${i}`;
const SERVER_IP = '198.18.0.1';
const STEP_SECONDS = Number(process.env.DHCP_BENCH_STEP ?? 5);
const CLIENTS = 50_000;
const LADDER = process.env.DHCP_BENCH_LADDER?.split(',').map(Number)
  ?? [500, 1000, 2000, 3000, 4000, 5000, 6000, 7000, 8000, 9000, 10000, 11000, 12000, 13000, 14000, 16000, 18000, 20000, 24000, 28000];
/** Tried, going down, when the first step of the ladder fails already (dnsmasq). */
const LOW_LADDER = [300, 200, 100, 50];
/** Extra arguments for our server (e.g. "--durability write"), and which servers to run. */
const OURS_ARGS = (process.env.DHCP_BENCH_OURS_ARGS ?? '').split(' ').filter(Boolean);
const SERVERS = (process.env.DHCP_BENCH_SERVERS ?? 'ours,ours-fsync,kea,dnsmasq').split(',');
const MAX_LOSS = 0.01;

interface Step {
  rate: number;
  /** Completed DORA exchanges per second. */
  lps: number;
  loss: number;
  p50: number;
  p99: number;
}

interface ServerResult {
  name: string;
  steps: Step[];
  best: Step | undefined;
  rssMb: number;
}

function sh(cmd: string, args: string[], opts: { timeoutMs?: number; allowFail?: boolean } = {}): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: opts.timeoutMs ?? 30_000, maxBuffer: 512 * 1024 * 1024 });
  if (!opts.allowFail && (r.status !== 0 || r.error)) {
    throw new Error(`${cmd} ${args.join(' ')} failed: ${r.error?.message ?? r.stderr}`);
  }
  return r.stdout ?? '';
}

function say(line: string): void {
  process.stderr.write(line + '\n');
}

/** Namespaces made so far (teardown removes them). */
const made: string[] = [];

function setupMount(): void {
  // a private /run/netns (we are in a private mount namespace)
  sh('mkdir', ['-p', '/run/netns']);
  sh('mount', ['-t', 'tmpfs', 'tmpfs', '/run/netns']);
  sh('ip', ['link', 'set', 'lo', 'up']);
}

/** Server i's two namespaces joined by a veth (the same addresses for every server). */
function setup(i: number): void {
  const [srv, cli] = [srvNs(i), cliNs(i)];
  sh('ip', ['netns', 'add', srv]);
  made.push(srv);
  sh('ip', ['netns', 'add', cli]);
  made.push(cli);
  sh('ip', ['link', 'add', 'bs0', 'netns', srv, 'type', 'veth', 'peer', 'name', 'bc0', 'netns', cli]);
  sh('ip', ['-n', srv, 'addr', 'add', `${SERVER_IP}/15`, 'dev', 'bs0']);
  sh('ip', ['-n', cli, 'addr', 'add', '198.18.0.2/15', 'dev', 'bc0']);
  for (const [ns, dev] of [[srv, 'bs0'], [cli, 'bc0']] as const) {
    sh('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
    sh('ip', ['-n', ns, 'link', 'set', dev, 'up']);
  }
}

function teardown(): void {
  for (const ns of made.splice(0)) sh('ip', ['netns', 'del', ns], { allowFail: true });
}

function percentile(sorted: number[], q: number): number {
  if (!sorted.length) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] as number;
}

/** One perfdhcp run at `rate` for STEP_SECONDS against server i. */
function perfdhcp(i: number, rate: number): Step {
  const out = sh('ip', ['netns', 'exec', cliNs(i), 'perfdhcp', '-4', '-l', 'bc0', '-r', String(rate), '-p', String(STEP_SECONDS),
    '-R', String(CLIENTS), '-x', 't', SERVER_IP], { timeoutMs: (STEP_SECONDS + 30) * 1000, allowFail: true });
  const sections = out.split('***Statistics for: ');
  const stat = (name: string, field: string): number => {
    const sec = sections.find((s) => s.startsWith(name)) ?? '';
    const m = sec.match(new RegExp(`${field}: ([\\d.]+)`));
    return m ? Number(m[1]) : NaN;
  };
  const doSent = stat('DISCOVER-OFFER', 'sent packets');
  const raRecv = stat('REQUEST-ACK', 'received packets');
  const loss = doSent > 0 ? Math.max(0, 1 - raRecv / doSent) : 1;
  // Latency: pair the i-th answered DISCOVER (by answer time) with the i-th REQUEST (by send time).
  const stamps = (name: string): Array<[number, number]> => {
    const at = out.indexOf(`***Timestamps for packets: ${name}***`);
    if (at < 0) return [];
    const rest = out.slice(at).split('\n').slice(1);
    const pairs: Array<[number, number]> = [];
    for (const l of rest) {
      const m = l.match(/^sent \/ received: ([\d.]+) \/ ([\d.]+)/);
      if (!m) {
        if (l.startsWith('***')) break;
        continue;
      }
      pairs.push([Number(m[1]), Number(m[2])]);
    }
    return pairs;
  };
  const dor = stamps('DISCOVER-OFFER').sort((a, b) => a[1] - b[1]);
  const ra = stamps('REQUEST-ACK').sort((a, b) => a[0] - b[0]);
  const lat: number[] = [];
  for (let i = 0; i < Math.min(dor.length, ra.length); i++) {
    const d = dor[i] as [number, number];
    const r = ra[i] as [number, number];
    lat.push(((d[1] - d[0]) + (r[1] - r[0])) * 1000);
  }
  lat.sort((a, b) => a - b);
  return { rate, lps: Number.isFinite(raRecv) ? raRecv / STEP_SECONDS : 0, loss, p50: percentile(lat, 0.5), p99: percentile(lat, 0.99) };
}

function passes(s: Step): boolean {
  return s.loss < MAX_LOSS;
}

/** A step, tried again once when it fails (other load on the machine comes and goes). */
function measure(r: Running, rate: number): Step {
  let s = perfdhcp(r.index, rate);
  if (!passes(s)) s = perfdhcp(r.index, rate);
  r.steps.push(s);
  say(`  ${r.short.padEnd(10)} ${String(rate).padStart(6)}/s offered: ${s.lps.toFixed(0).padStart(6)} DORA/s, loss ${(s.loss * 100).toFixed(2)}%, median ${s.p50.toFixed(2)} ms, p99 ${s.p99.toFixed(2)} ms`);
  return s;
}

function waitReady(what: string, proc: ChildProcess, i: number): void {
  const deadline = Date.now() + 20_000;
  for (;;) {
    if (proc.exitCode !== null || proc.signalCode !== null) throw new Error(`${what} exited before serving`);
    const out = sh('ip', ['netns', 'exec', cliNs(i), 'perfdhcp', '-4', '-l', 'bc0', '-n', '3', '-r', '10', '-R', '1', SERVER_IP], { allowFail: true, timeoutMs: 15_000 });
    const m = out.split('REQUEST-ACK')[1]?.match(/received packets: (\d+)/);
    if (m && Number(m[1]) > 0) return;
    if (Date.now() > deadline) throw new Error(`${what} does not answer`);
  }
}

function peakRssMb(pid: number | undefined): number {
  if (pid === undefined) return NaN;
  try {
    const m = readFileSync(`/proc/${pid}/status`, 'utf8').match(/VmHWM:\s+(\d+) kB/);
    return m ? Number(m[1]) / 1024 : NaN;
  } catch {
    return NaN;
  }
}

async function stopProc(p: ChildProcess): Promise<void> {
  if (p.exitCode !== null || p.signalCode !== null) return;
  await new Promise<void>((resolve) => {
    const t = setTimeout(() => p.kill('SIGKILL'), 10_000);
    p.once('exit', () => {
      clearTimeout(t);
      resolve();
    });
    p.kill('SIGTERM');
  });
}

/** Where a server's output goes: a file, since perfdhcp runs block this process (a pipe would fill). */
let logDir = '/tmp';
function serverLog(name: string): number {
  return openSync(join(logDir, `${name.split(' ')[0]}.log`), 'a');
}

/** A server being measured. */
interface Running {
  index: number;
  name: string;
  short: string;
  proc: ChildProcess;
  steps: Step[];
  best?: Step;
  failedAt?: number;
  /** its ladder is over (or it failed to run) */
  done: boolean;
}

function startServer(index: number, name: string, short: string, start: (srvNs: string, log: number) => ChildProcess): Running {
  setup(index);
  const log = serverLog(short);
  const proc = start(srvNs(index), log);
  closeSync(log);
  return { index, name, short, proc, steps: [], done: false };
}

function stderrTail(short: string): string {
  try {
    return readFileSync(join(logDir, `${short}.log`), 'utf8').slice(-3000);
  } catch {
    return '';
  }
}

/** One step for each server still climbing, in turns; a server that fails a step stops climbing. */
function ladder(servers: Running[]): void {
  const step = (r: Running, rate: number, low: boolean): void => {
    try {
      const s = measure(r, rate);
      if (passes(s)) {
        r.best = s;
        if (low) r.done = true;
      } else {
        r.failedAt = rate;
        if (!low) r.done = true;
      }
    } catch (err) {
      say(`  ${r.name} failed: ${(err as Error).message}\n${stderrTail(r.short)}`);
      r.done = true;
    }
  };
  LADDER.forEach((rate, k) => {
    const turn = servers.filter((r) => !r.done);
    for (let j = 0; j < turn.length; j++) step(turn[(j + k) % turn.length] as Running, rate, false);
  });
  // servers that failed the first step already (dnsmasq) go down another ladder
  for (const r of servers) if (!r.best) r.done = false;
  for (const rate of LOW_LADDER) for (const r of servers.filter((x) => !x.done && !x.best)) step(r, rate, true);
  for (const r of servers) {
    if (r.failedAt === undefined || !r.best) continue;
    const mid = Math.round((r.best.rate + r.failedAt) / 2 / 100) * 100;
    if (mid > r.best.rate && mid < r.failedAt) step(r, mid, true);
  }
}

async function main(): Promise<void> {
  for (const tool of ['perfdhcp', 'kea-dhcp4', 'dnsmasq']) {
    if (spawnSync('sh', ['-c', `command -v ${tool}`]).status !== 0) throw new Error(`${tool} is not installed (scripts/setup.sh installs it)`);
  }
  const work = mkdtempSync('/var/tmp/nspawn-bench-dhcp-');
  logDir = work;
  setupMount();
  const bin = new URL('../../bin/nspawn-netd', import.meta.url).pathname;
  const results: ServerResult[] = [];
  const running: Running[] = [];
  try {
    // bin/nspawn-netd run as a user runs it (its #! line carries node's flags)
    const oursRun = (name: string, extra: string[]) => (ns: string, log: number): ChildProcess => spawn('ip', ['netns', 'exec', ns, bin, 'dhcp-serve',
      '--interface', 'bs0', '--pool', '198.18.0.0/15', '--lease-time', '3600', '--lease-file', join(work, `${name}.leases`), '--quiet', ...extra, ...OURS_ARGS],
    { stdio: ['ignore', log, log] });
    const keaConf = join(work, 'kea.json');
    writeFileSync(keaConf, JSON.stringify({
      Dhcp4: {
        'interfaces-config': { interfaces: ['bs0'], 'dhcp-socket-type': 'raw' },
        'lease-database': { type: 'memfile', persist: true, name: join(work, 'kea-leases.csv'), 'lfc-interval': 0 },
        'valid-lifetime': 3600,
        subnet4: [{ id: 1, subnet: '198.18.0.0/15', pools: [{ pool: '198.18.0.2 - 198.19.255.254' }], interface: 'bs0' }],
        loggers: [{ name: 'kea-dhcp4', output_options: [{ output: join(work, 'kea.log') }], severity: 'WARN' }],
      },
    }));
    const all: Array<[string, string, (ns: string, log: number) => ChildProcess]> = [
      ['ours (nspawn-netd dhcp-serve, as shipped: ACK after write, sync within 1 s)', 'ours', oursRun('ours', [])],
      ['ours with --durability fsync (ACK after fdatasync)', 'ours-fsync', oursRun('ours-fsync', ['--durability', 'fsync'])],
      ['kea-dhcp4 2.2 (memfile, persist)', 'kea', (ns, log) => spawn('ip', ['netns', 'exec', ns, 'env', `KEA_PIDFILE_DIR=${work}`, `KEA_LOCKFILE_DIR=${work}`,
        'kea-dhcp4', '-c', keaConf], { stdio: ['ignore', log, log] })],
      ['dnsmasq', 'dnsmasq', (ns, log) => spawn('ip', ['netns', 'exec', ns, 'dnsmasq', '--keep-in-foreground', '--no-daemon', '--port=0',
        '--interface=bs0', '--bind-interfaces', '--no-ping', '--dhcp-authoritative', '--quiet-dhcp', '--dhcp-lease-max=1000000',
        '--dhcp-range=198.18.0.2,198.19.255.254,255.254.0.0,3600', `--dhcp-leasefile=${join(work, 'dnsmasq.leases')}`,
        `--pid-file=${join(work, `dnsmasq.pid`)}`, '--log-facility=-'], { stdio: ['ignore', log, log] })],
    ];
    all.forEach(([name, short, start], i) => {
      if (SERVERS.includes(short)) running.push(startServer(i, name, short, start));
    });
    for (const r of running) {
      try {
        waitReady(r.name, r.proc, r.index);
      } catch (err) {
        say(`  ${r.name} failed: ${(err as Error).message}\n${stderrTail(r.short)}`);
        r.done = true;
      }
    }
    say(`measuring ${running.map((r) => r.short).join(', ')} in turns at each offered rate`);
    ladder(running.filter((r) => !r.done));
    for (const [name, short] of all) {
      const r = running.find((x) => x.short === short);
      results.push(r ? { name, steps: r.steps, best: r.best, rssMb: peakRssMb(r.proc.pid) } : { name, steps: [], best: undefined, rssMb: NaN });
    }
  } finally {
    await Promise.all(running.map((r) => stopProc(r.proc)));
    teardown();
    rmSync(work, { recursive: true, force: true });
  }

  const [ours, oursFsync, kea, dnsmasq] = results as [ServerResult, ServerResult, ServerResult, ServerResult];
  // Latency is compared at one offered rate: the highest both ours and Kea passed.
  const passed = (r: ServerResult): Set<number> => new Set(r.steps.filter(passes).map((s) => s.rate));
  const keaPassed = passed(kea);
  const common = Math.max(0, ...[...passed(ours)].filter((r) => keaPassed.has(r)));
  const at = (r: ServerResult): Step | undefined => r.steps.filter((s) => s.rate === common && passes(s)).at(-1);
  say('');
  for (const r of results) {
    const b = r.best;
    say(`${r.name}: ${b ? `${b.lps.toFixed(0)} DORA/s (offered ${b.rate}/s, loss ${(b.loss * 100).toFixed(2)}%), median ${b.p50.toFixed(2)} ms, p99 ${b.p99.toFixed(2)} ms at peak` : 'no passing step'}; peak RSS ${r.rssMb.toFixed(1)} MB`);
  }
  const oa = at(ours);
  const ka = at(kea);
  const fa = at(oursFsync);
  const lat = (x: Step | undefined): string => (x ? `median ${x.p50.toFixed(2)} ms p99 ${x.p99.toFixed(2)} ms` : 'no passing step at that rate');
  say(`at a common ${common} DORA/s offered: ours ${lat(oa)}; kea ${lat(ka)}; ours with fsync ${lat(fa)}`);
  const oursLps = ours.best?.lps ?? 0;
  const keaLps = kea.best?.lps ?? 0;
  say(`ratios to Kea: DORA/s ${(oursLps / keaLps).toFixed(2)}, p99 ${((oa?.p99 ?? NaN) / (ka?.p99 ?? NaN)).toFixed(2)}, RSS ${(ours.rssMb / kea.rssMb).toFixed(2)}`);
  const round = (x: number | undefined, d = 2): number | null => (x === undefined || !Number.isFinite(x) ? null : Number(x.toFixed(d)));
  process.stdout.write(JSON.stringify({
    bench: 'dhcp',
    ours_lps: round(oursLps, 0),
    kea_lps: round(keaLps, 0),
    dnsmasq_lps: round(dnsmasq.best?.lps ?? 0, 0),
    ours_p99_ms: round(oa?.p99),
    kea_p99_ms: round(ka?.p99),
    ours_rss_mb: round(ours.rssMb, 1),
    kea_rss_mb: round(kea.rssMb, 1),
    ours_p50_ms: round(oa?.p50),
    kea_p50_ms: round(ka?.p50),
    common_rate: common,
    ours_fsync_lps: round(oursFsync.best?.lps ?? 0, 0),
    ours_fsync_p99_ms: round(fa?.p99),
    lps_ratio_to_kea: round(oursLps / keaLps),
    // every measured step (rate offered, DORA/s, loss, median and p99 ms), for the charts of `npm run bench`
    steps: Object.fromEntries(results.map((r, i) => [['ours', 'ours_fsync', 'kea', 'dnsmasq'][i], r.steps.map((s) => [s.rate, round(s.lps, 0), round(s.loss, 4), round(s.p50), round(s.p99)])])),
  }) + '\n');
}

main().catch((err: unknown) => {
  teardown();
  say(`bench/dhcp: ${(err as Error).stack ?? String(err)}`);
  process.exit(1);
});
