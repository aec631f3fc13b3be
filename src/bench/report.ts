// `npm run bench`: runs every benchmark in bench/ (or those named on the command line) one after
// the other, keeps each one's JSON line, and writes docs/benchmarks.md with, per benchmark, our
// figures against the anchor measured in the same run and their ratio, the machine and its load
// before and after, and SVG charts (docs/benchmarks/*.svg, made here by src/bench/svg.ts). The
// machine is shared and its load moves the figures: the load is part of every result.
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { join } from 'node:path';
import { barChart, lineChart, type Series, timelineChart, type TimelineRow } from './svg.js';

const ROOT = new URL('../..', import.meta.url).pathname;
const DOCS = join(ROOT, 'docs');
const CHARTS = join(DOCS, 'benchmarks');
/** The order of the page; benchmarks not named here follow in name order. */
const ORDER = ['dhcp', 'container-start', 'startup', 'netlink', 'ports', 'firewall-ops'];
/** Run only when named: not a comparison with an anchor (bench/soak is a reliability run of an hour). */
const ONLY_WHEN_NAMED = ['soak'];

type Json = Record<string, unknown>;

interface Run {
  name: string;
  command: string;
  /** when it started (ISO) */
  date: string;
  loadBefore: string;
  loadAfter: string;
  seconds: number;
  json: Json | undefined;
  /** the last lines of stderr when it failed */
  failure?: string;
}

/** One figure of ours against its anchor, measured in the same run. */
interface Comparison {
  what: string;
  ours: number | undefined;
  anchor: number | undefined;
  anchorName: string;
  /** true when a higher figure is better (throughput), false for times and sizes */
  higherIsBetter: boolean;
  unit: string;
}

function loadavg(): string {
  return readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
}

function benches(names: string[]): string[] {
  const all = readdirSync(join(ROOT, 'bench')).filter((f) => {
    const st = statSync(join(ROOT, 'bench', f));
    return st.isFile() && (st.mode & 0o111) !== 0;
  });
  const chosen = names.length ? names.filter((n) => all.includes(n)) : all.filter((n) => !ONLY_WHEN_NAMED.includes(n));
  for (const n of names) if (!all.includes(n)) throw new Error(`no benchmark bench/${n} (there are: ${all.join(', ')})`);
  return chosen.sort((a, b) => rank(a) - rank(b) || a.localeCompare(b));
}

function rank(name: string): number {
  const i = ORDER.indexOf(name);
  return i < 0 ? ORDER.length : i;
}

function runOne(name: string): Promise<Run> {
  const loadBefore = loadavg();
  const t0 = Date.now();
  const date = new Date(t0).toISOString().replace(/\.\d+Z$/, 'Z');
  process.stderr.write(`\n=== bench/${name} (load ${loadBefore}) ===\n`);
  return new Promise((resolve) => {
    const child = spawn(join(ROOT, 'bench', name), [], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      process.stderr.write(d);
    });
    child.stderr.on('data', (d: Buffer) => {
      err += d.toString();
      process.stderr.write(d);
    });
    child.on('close', (code) => {
      const last = out.trim().split('\n').at(-1) ?? '';
      let json: Json | undefined;
      try {
        const v: unknown = JSON.parse(last);
        if (v && typeof v === 'object') json = v as Json;
      } catch {
        json = undefined;
      }
      const run: Run = { name, command: `bench/${name}`, date, loadBefore, loadAfter: loadavg(), seconds: Math.round((Date.now() - t0) / 1000), json };
      if (code !== 0 || !json) run.failure = `exit ${code}; ${err.trim().split('\n').slice(-5).join(' | ')}`;
      resolve(run);
    });
  });
}

function num(v: unknown): number | undefined {
  return typeof v === 'number' && Number.isFinite(v) ? v : undefined;
}

function get(j: Json | undefined, path: string): number | undefined {
  let v: unknown = j;
  for (const k of path.split('.')) v = v && typeof v === 'object' ? (v as Json)[k] : undefined;
  return num(v);
}

/** What each benchmark compares (unknown ones show their JSON line only). */
function comparisons(r: Run): Comparison[] {
  const j = r.json;
  const c = (what: string, ours: string, anchor: string, anchorName: string, higherIsBetter: boolean, unit: string): Comparison =>
    ({ what, ours: get(j, ours), anchor: get(j, anchor), anchorName, higherIsBetter, unit });
  switch (r.name) {
    case 'dhcp': return [
      c('DORA/s at < 1% loss', 'ours_lps', 'kea_lps', 'Kea 2.2', true, '/s'),
      c('DORA/s at < 1% loss, --durability fsync', 'ours_fsync_lps', 'kea_lps', 'Kea 2.2', true, '/s'),
      c('p99 DORA latency at the common rate', 'ours_p99_ms', 'kea_p99_ms', 'Kea 2.2', false, 'ms'),
      c('median DORA latency at the common rate', 'ours_p50_ms', 'kea_p50_ms', 'Kea 2.2', false, 'ms'),
      c('peak RSS', 'ours_rss_mb', 'kea_rss_mb', 'Kea 2.2', false, 'MB'),
      c('DORA/s against dnsmasq', 'ours_lps', 'dnsmasq_lps', 'dnsmasq', true, '/s'),
    ];
    case 'container-start': return [
      c('`-D busybox /bin/true`, launch to exit (median)', 'true_median_ms.nspawn_ts', 'true_median_ms.systemd_nspawn', 'systemd-nspawn', false, 'ms'),
      c('`-D debian -b` to "running" (median)', 'boot_to_running_median_ms.nspawn_ts', 'boot_to_running_median_ms.systemd_nspawn', 'systemd-nspawn', false, 'ms'),
    ];
    case 'startup': return [
      c('launch to address with udhcpc inside (median)', 'ours_udhcpc_ms', 'systemd_nspawn_udhcpc_ms', 'systemd-nspawn + our sidecar', false, 'ms'),
      c('launch to address, configured at start (median)', 'ours_embedded_ms', 'node_startup_ms', '`node -e 0`', false, 'ms'),
      c('launch to dual stack (IPv4 + IPv6), configured at start (median)', 'ours_dualstack_ms', 'ours_ipv4only_ms', 'IPv4 alone (goal: < 5 ms more)', false, 'ms'),
      c('launch to IPv6 by SLAAC from our RA, past DAD (median)', 'ours_slaac_ms', 'systemd_nspawn_slaac_ms', 'systemd-nspawn + our sidecar', false, 'ms'),
    ];
    case 'netlink': return [
      c('add links/addresses', 'ours_add_s', 'ip_per_process_add_s', '`ip` per change', false, 's'),
      c('add, against one `ip -batch`', 'ours_add_s', 'ip_batch_add_s', '`ip -batch`', false, 's'),
      c('dump', 'ours_dump_s', 'ip_dump_s', '`ip`', false, 's'),
      c('delete', 'ours_del_s', 'ip_batch_del_s', '`ip -batch`', false, 's'),
    ];
    case 'ports': return [
      c('add a port mapping (median)', 'ours_add_median_us', 'nft_add_median_us', '`nft` per change', false, 'µs'),
      c('remove a port mapping (median)', 'ours_remove_median_us', 'nft_remove_median_us', '`nft` per change', false, 'µs'),
      c('TCP Gbit/s through 10,000 mappings', 'nat_10000_gbps', 'nat_1_gbps', 'through 1 mapping', true, 'Gbit/s'),
      c('connections/s through 10,000 mappings', 'nat_10000_conns', 'nat_1_conns', 'through 1 mapping', true, '/s'),
      c('connections/s through 1,000 mappings', 'nat_1000_conns', 'iptables_1000_conns', '1,000 iptables DNAT rules', true, '/s'),
    ];
    case 'firewall-ops': return [
      c('add a mapping (median)', 'add_mapping_median_us', 'nft_cli_add_median_us', '`nft` per change', false, 'µs'),
      c('remove an owner\'s mappings (median)', 'remove_owner_median_us', 'nft_cli_delete_median_us', '`nft` per change', false, 'µs'),
    ];
    case 'cni': {
      const ref = 'bridge + host-local + portmap';
      return [
        c('ADD, in-process (median)', 'ours_add_ms', 'reference_add_ms', ref, false, 'ms'),
        c('DEL, in-process (median)', 'ours_del_ms', 'reference_del_ms', ref, false, 'ms'),
        c('ADD, nspawn-netd running (median)', 'ours_sidecar_add_ms', 'reference_add_ms', ref, false, 'ms'),
        c('DEL, nspawn-netd running (median)', 'ours_sidecar_del_ms', 'reference_del_ms', ref, false, 'ms'),
        c('`podman run -d -p` to the first byte served, in-process (median)', 'ours_podman_first_byte_ms', 'reference_podman_first_byte_ms', ref, false, 'ms'),
        c('`podman run -d -p` to the first byte served, nspawn-netd running (median)', 'ours_sidecar_podman_first_byte_ms', 'reference_podman_first_byte_ms', ref, false, 'ms'),
        c('VERSION', 'ours_version_ms', 'reference_version_ms', 'the bridge plugin', false, 'ms'),
      ];
    }
    default: return [];
  }
}

function show(v: number | undefined, unit: string): string {
  if (v === undefined) return 'n/a';
  const s = Math.abs(v) >= 100 ? Math.round(v).toLocaleString('en-US') : String(Math.round(v * 100) / 100);
  return `${s} ${unit}`;
}

/** Ours divided by the anchor, and whether that is ahead. */
function ratio(cmp: Comparison): string {
  if (cmp.ours === undefined || cmp.anchor === undefined || cmp.anchor === 0) return 'n/a';
  const r = cmp.ours / cmp.anchor;
  if (Math.abs(r - 1) < 0.02) return `${r.toFixed(2)}× (even)`;
  const ahead = cmp.higherIsBetter ? r > 1 : r < 1;
  return `${r.toFixed(2)}× (${ahead ? 'ahead' : 'behind'})`;
}

type Steps = Record<string, Array<[number, number, number, number, number]>>;

/** SVG charts of a run, as [file name, title, svg]. */
function charts(r: Run): Array<[string, string]> {
  const j = r.json;
  if (!j) return [];
  const out: Array<[string, string]> = [];
  if (r.name === 'dhcp' && j.steps && typeof j.steps === 'object') {
    const steps = j.steps as Steps;
    const names: Record<string, string> = { ours: 'ours', ours_fsync: 'ours, fsync', kea: 'Kea', dnsmasq: 'dnsmasq' };
    // the last measurement of each offered rate (a failed step is measured twice)
    const series = (col: number, passedOnly: boolean): Series[] => Object.entries(steps).map(([k, rows]) => {
      const byRate = new Map<number, number>();
      for (const row of rows) if (!passedOnly || row[2] < 0.01) byRate.set(row[0], row[col] as number);
      return { name: names[k] ?? k, points: [...byRate].sort((a, b) => a[0] - b[0]) };
    });
    out.push(['dhcp-throughput.svg', lineChart({ title: 'DHCP: completed DORA/s against offered rate', xLabel: 'offered DORA/s (perfdhcp)', yLabel: 'completed DORA/s', series: series(1, false) })]);
    out.push(['dhcp-p99.svg', lineChart({ title: 'DHCP: p99 DORA latency (steps under 1% loss)', xLabel: 'offered DORA/s (perfdhcp)', yLabel: 'p99 latency, ms (log)', series: series(4, true), logY: true })]);
  }
  if (r.name === 'container-start' && Array.isArray(j.timeline_ms)) {
    const marks = (j.timeline_ms as Array<[number, string]>).filter((m) => Array.isArray(m) && typeof m[0] === 'number');
    // each span is the work that ends with a debug line, labelled by that line
    const segs = [];
    let from = 0;
    for (const [at, what] of marks) {
      segs.push({ label: `→ ${what.replace(/ machine=.*$/, '').replace(/ \(\d+\)/, '').slice(0, 38)}`, from, to: at });
      from = at;
    }
    const wall = get(j, 'timeline_wall_ms');
    if (wall !== undefined && wall > from) segs.push({ label: '→ teardown done, process exited', from, to: wall });
    const ref = get(j, 'true_median_ms.systemd_nspawn');
    const rows: TimelineRow[] = [{ label: 'nspawn-ts (one -v launch)', segments: segs }];
    if (ref !== undefined) rows.push({ label: 'systemd-nspawn (median)', segments: [{ label: 'systemd-nspawn, launch to exit', from: 0, to: ref }] });
    out.push(['container-start-timeline.svg', timelineChart('`-D busybox /bin/true`: where a launch spends its time', rows)]);
  }
  if (r.name === 'ports') {
    out.push(['ports-gbps.svg', barChart('TCP throughput through our port map, by mapping count', 'Gbit/s', [
      { label: 'direct', value: get(j, 'direct_gbps') ?? NaN },
      { label: '1', value: get(j, 'nat_1_gbps') ?? NaN },
      { label: '1,000', value: get(j, 'nat_1000_gbps') ?? NaN },
      { label: '10,000', value: get(j, 'nat_10000_gbps') ?? NaN },
    ])]);
    out.push(['ports-conns.svg', barChart('New connections/s by mapping count (ours; iptables with 1,000 rules)', 'connections/s', [
      { label: 'direct', value: get(j, 'direct_conns') ?? NaN },
      { label: '1', value: get(j, 'nat_1_conns') ?? NaN },
      { label: '1,000', value: get(j, 'nat_1000_conns') ?? NaN },
      { label: '10,000', value: get(j, 'nat_10000_conns') ?? NaN },
      { label: 'iptables 1,000', value: get(j, 'iptables_1000_conns') ?? NaN },
    ])]);
  }
  return out;
}

function machine(): string {
  const cpu = cpus();
  const mem = Math.round(totalmem() / 2 ** 30);
  const kernel = readFileSync('/proc/sys/kernel/osrelease', 'utf8').trim();
  return `${cpu.length} × ${cpu[0]?.model ?? 'unknown CPU'}, ${mem} GiB, Linux ${kernel}, Node ${process.version}`;
}

function page(runs: Run[]): string {
  const lines: string[] = [
    '# Benchmarks',
    '',
    'Written by `npm run bench` (src/bench/report.ts; `npm run bench -- NAME…` reruns some and keeps the others). Each benchmark',
    'measures ours and its anchor in the same run, on the same machine (bench/dhcp in turns, step by step); the',
    'load average (1, 5, 15 min) before and after each is part of its result: this machine is shared,',
    'and a loaded machine moves every figure. Ratios are ours ÷ anchor.',
    '',
    `Machine: ${machine()}.`,
    '',
  ];
  for (const r of runs) {
    lines.push(`## ${r.command}`, '');
    lines.push(`Run ${r.date}; load ${r.loadBefore} → ${r.loadAfter}; ${r.seconds} s.${r.failure ? ` **Failed**: ${r.failure}` : ''}`, '');
    const busiest = Math.max(...[r.loadBefore, r.loadAfter].map((l) => Number(l.split(' ')[0])));
    if (busiest > 2 * cpus().length) {
      lines.push(`*Overloaded*: a load of ${busiest} on ${cpus().length} CPUs — each process got a fraction of a core, so these figures say more about CPU per operation and scheduling than about what either side does on a machine with room.`, '');
    }
    const cmp = comparisons(r).filter((c) => c.ours !== undefined || c.anchor !== undefined);
    if (cmp.length) {
      lines.push('| figure | ours | anchor | ratio |', '|---|---|---|---|');
      for (const c of cmp) lines.push(`| ${c.what} | ${show(c.ours, c.unit)} | ${c.anchorName}: ${show(c.anchor, c.unit)} | ${ratio(c)} |`);
      lines.push('');
    }
    for (const [file] of charts(r)) lines.push(`![${file}](benchmarks/${file})`, '');
    if (r.json) {
      const { steps: _steps, timeline_ms: _tl, ...rest } = r.json;
      lines.push('JSON line (per-step data and the timeline left out here):', '', '```json', JSON.stringify(rest), '```', '');
    }
  }
  return lines.join('\n');
}

/** The runs of the last report, to keep those not run again. */
function previousRuns(): Run[] {
  try {
    const v: unknown = JSON.parse(readFileSync(join(CHARTS, 'runs.json'), 'utf8'));
    return Array.isArray(v) ? (v as Run[]).filter((r) => typeof r?.name === 'string' && typeof r.date === 'string').map((r) => ({ ...r, command: `bench/${r.name}` })) : [];
  } catch {
    return [];
  }
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0 && !process.argv.includes('--page')) throw new Error('npm run bench: run as root (the benchmarks make namespaces, links and cgroups)');
  // --page: write the page and charts again from the last runs, running nothing
  const args = process.argv.slice(2);
  const names = args.includes('--page') ? [] : benches(args);
  const fresh: Run[] = [];
  for (const n of names) fresh.push(await runOne(n));
  const all = [...previousRuns().filter((p) => !names.includes(p.name) && existsSync(join(ROOT, 'bench', p.name))), ...fresh]
    .sort((a, b) => rank(a.name) - rank(b.name) || a.name.localeCompare(b.name));
  mkdirSync(CHARTS, { recursive: true });
  for (const r of all) for (const [file, svg] of charts(r)) writeFileSync(join(CHARTS, file), svg);
  const out = join(DOCS, 'benchmarks.md');
  writeFileSync(out, page(all));
  writeFileSync(join(CHARTS, 'runs.json'), JSON.stringify(all.map(({ name, date, loadBefore, loadAfter, seconds, json, failure }) => ({ name, date, loadBefore, loadAfter, seconds, json, failure })), null, 1) + '\n');
  process.stderr.write(`\nwrote ${out} and ${CHARTS}/\n`);
  if (fresh.some((r) => r.failure)) process.exitCode = 1;
}

main().catch((err: unknown) => {
  process.stderr.write(`npm run bench: ${(err as Error).message}\n`);
  process.exit(1);
});
