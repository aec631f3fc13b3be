// bench/startup: time from launching a container to "it has an IPv4 address and a default route"
// (and, for the IPv6 variants, a global IPv6 address and an IPv6 default route),
// for our launcher and for the real systemd-nspawn, in one run (median of ROUNDS, default 20):
//
//   ours_embedded_ms          nspawn-ts -n, no sidecar: the launcher serves the link in-process and
//                             configures host0 before the command starts
//   ours_sidecar_ms           the same with nspawn-netd running (the launcher asks it)
//   ours_udhcpc_ms            nspawn-ts -n --network-config=dhcp, udhcpc inside (embedded server)
//   ours_sidecar_udhcpc_ms    the same with the sidecar's server
//   systemd_nspawn_udhcpc_ms  systemd-nspawn --network-veth with our sidecar, udhcpc inside
//   ours_ipv4only_ms          IPv6 off ($NSPAWN_TS_IPV6=no): IPv4 alone, checked with the same
//                             shell built-ins as the IPv6 variants (CHECKS), not ip(8)
//   ours_dualstack_ms         embedded, "ready" = the IPv4 default route, a global IPv6 address past
//                             DAD and an IPv6 default route, all configured at start
//   ours_slaac_ms             embedded, --network-config=dhcp: host0's IPv6 address and default
//                             route formed by the container's kernel from our router advertisement
//   systemd_nspawn_slaac_ms   ours_slaac_ms for systemd-nspawn --network-veth with our sidecar
//   dualstack_cost_ms, slaac_cost_ms, kernel_dad_ms: the goals' differences of medians, and the
//                             kernel's DAD time for one address (dad_transmits × retrans_time_ms)
//
// "Ready" is seen from inside: every container runs the same busybox shell line, which waits until
// `ip -4 route show default` answers (after running udhcpc, for the DHCP variants) and prints a
// marker; the clock stops when the marker reaches our end of the pipe. Rounds interleave the
// variants (see rounds()). Run through bench/startup, which puts everything in a private network and
// mount namespace.
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import {
  chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, rmdirSync, statSync, symlinkSync, writeFileSync,
} from 'node:fs';
import { createConnection } from 'node:net';
import { fileURLToPath } from 'node:url';

const ROUNDS = Number(process.env.ROUNDS ?? process.argv[2] ?? 20);
const REPO = fileURLToPath(new URL('../..', import.meta.url));
const NSPAWN_TS = `${REPO}bin/nspawn-ts`;
const NETD = `${REPO}bin/nspawn-netd`;
const DNS = '192.0.2.53';

const UDHCPC = 'udhcpc -i host0 -f -q -n -t 10 -T 1 -s /etc/udhcpc/default.script >/dev/null 2>&1';
const WAIT_READY = 'until [ -n "$(ip -4 route show default)" ]; do usleep 500; done; echo NETWORK-READY';
/**
 * Readiness checks for the IPv6 variants and their IPv4-alone reference, in shell built-ins only
 * (no process per check, so a check of three things costs what a check of one does): r4, host0's
 * IPv4 default route (/proc/net/route); a6, a global IPv6 address on host0 past DAD (scope 00, no
 * IFA_F_TENTATIVE 0x40 in /proc/net/if_inet6); r6, an IPv6 default route via host0 (/proc/net/ipv6_route).
 */
const CHECKS = [
  'r4() { while read i d rest; do [ "$i" = host0 ] && [ "$d" = 00000000 ] && return 0; done < /proc/net/route; return 1; }',
  'a6() { while read a x l s f n; do [ "$n" = host0 ] && [ "$s" = 00 ] && [ $((0x$f & 0x40)) = 0 ] && return 0; done < /proc/net/if_inet6; return 1; }',
  'r6() { while read d l s sl h m r u f n; do [ "$n" = host0 ] && [ "$d$l" = 0000000000000000000000000000000000 ] && return 0; done < /proc/net/ipv6_route; return 1; }',
].join('\n');
const waitFor = (cond: string): string => `${CHECKS}\nuntil ${cond}; do usleep 500; done; echo NETWORK-READY`;
/** IPv4 alone (the reference of the dual-stack goal), checked as the IPv6 variants are. */
const WAIT_IPV4 = waitFor('r4');
/** Dual stack: IPv4 and IPv6 default routes and a usable global IPv6 address. */
const WAIT_DUAL = waitFor('r4 && a6 && r6');
/**
 * Nothing configured at start: the container's kernel forms its address from our RA (host0 is up
 * already with our launcher; systemd-nspawn leaves it down).
 */
const WAIT_SLAAC = `ip link set host0 up\n${waitFor('a6 && r6')}`;

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
}

const round1 = (x: number): number => Math.round(x * 10) / 10;

function buildRoot(): string {
  const dir = mkdtempSync('/var/tmp/nspawn-ts-bench-root-');
  for (const d of ['bin', 'sbin', 'usr/bin', 'usr/sbin', 'etc/udhcpc', 'proc', 'sys', 'dev', 'run', 'tmp', 'root']) mkdirSync(`${dir}/${d}`, { recursive: true });
  writeFileSync(`${dir}/bin/busybox`, readFileSync('/bin/busybox'), { mode: 0o755 });
  const applets = execFileSync('/bin/busybox', ['--list-full'], { encoding: 'utf8' }).split('\n').filter(Boolean);
  for (const a of applets) if (a !== 'bin/busybox' && !existsSync(`${dir}/${a}`)) symlinkSync('/bin/busybox', `${dir}/${a}`);
  writeFileSync(`${dir}/etc/passwd`, 'root:x:0:0:root:/root:/bin/sh\n');
  writeFileSync(`${dir}/etc/group`, 'root:x:0:\n');
  writeFileSync(`${dir}/etc/os-release`, 'ID=busybox\n');
  writeFileSync(`${dir}/etc/udhcpc/default.script`, `#!/bin/sh
case "$1" in
  deconfig) ip link set "$interface" up ;;
  bound|renew) ip addr add "$ip/$mask" dev "$interface"; [ -n "$router" ] && ip route replace default via "\${router%% *}" dev "$interface" ;;
esac
exit 0
`);
  chmodSync(`${dir}/etc/udhcpc/default.script`, 0o755);
  return dir;
}

interface Run {
  ms: number;
  exit: Promise<void>;
}

/** Starts a launch; resolves with the time to the marker, and a promise of the process's end. */
function timed(cmd: string, args: readonly string[], env: NodeJS.ProcessEnv = {}): Promise<Run> {
  return new Promise((resolve, reject) => {
    const t0 = process.hrtime.bigint();
    const child: ChildProcess = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
    let out = '';
    let done = false;
    const exit = new Promise<void>((r) => child.once('exit', () => r()));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      if (!done) reject(new Error(`${cmd} ${args.join(' ')}: no NETWORK-READY within 30 s; output:\n${out}`));
    }, 30_000);
    const onData = (d: Buffer): void => {
      out += d.toString();
      if (!done && out.includes('NETWORK-READY')) {
        done = true;
        const ms = Number(process.hrtime.bigint() - t0) / 1e6;
        clearTimeout(timer);
        resolve({ ms, exit });
      }
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', onData);
    void exit.then(() => {
      clearTimeout(timer);
      if (!done) reject(new Error(`${cmd} ${args.join(' ')} ended without NETWORK-READY (exit ${child.exitCode}); output:\n${out}`));
    });
  });
}

interface Variant {
  key: string;
  label: string;
  sidecar: boolean;
  launch: (i: number) => Promise<Run>;
}

/**
 * Rounds interleave the variants (each round runs every variant once: first those without the
 * sidecar, then, with a sidecar started for the round, those with it), so a machine whose load
 * changes during the run weighs on all of them alike. Round 0 is a warm-up (page cache, the
 * launcher's code cache), not counted.
 */
async function rounds(variants: readonly Variant[]): Promise<Record<string, number[]>> {
  const times: Record<string, number[]> = Object.fromEntries(variants.map((v) => [v.key, []]));
  for (let i = -1; i < ROUNDS; i++) {
    for (const group of [false, true]) {
      const vs = variants.filter((v) => v.sidecar === group);
      if (vs.length === 0) continue;
      const run = async (): Promise<void> => {
        for (const v of vs) {
          const r = await v.launch(i);
          await r.exit;
          if (i >= 0) times[v.key]?.push(r.ms);
        }
      };
      if (group) await withSidecar(run);
      else await run();
    }
  }
  for (const v of variants) {
    const t = times[v.key] as number[];
    process.stderr.write(`${v.label.padEnd(34)} median ${round1(median(t))} ms  (min ${round1(Math.min(...t))}, max ${round1(Math.max(...t))})\n`);
  }
  return times;
}

function socketAnswers(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createConnection(path);
    s.once('connect', () => { s.destroy(); resolve(true); });
    s.once('error', () => resolve(false));
  });
}

async function withSidecar<T>(fn: () => Promise<T>): Promise<T> {
  const child = spawn(process.execPath, [NETD, `--dns=${DNS}`], { stdio: ['ignore', 'ignore', 'ignore'] });
  const sock = '/run/nspawn-ts/netd.sock';
  for (let i = 0; !(await socketAnswers(sock)); i++) {
    if (i > 500) throw new Error('the sidecar did not come up');
    await new Promise((r) => setTimeout(r, 10));
  }
  try {
    return await fn();
  } finally {
    child.kill('SIGTERM');
    await new Promise((r) => child.once('exit', r));
  }
}

/**
 * How long the kernel's duplicate address detection holds a new address tentative in a fresh
 * namespace: dad_transmits neighbour solicitations, retrans_time_ms apart (1 × 1000 ms by default).
 */
function kernelDadMs(): number {
  const read = (p: string): number => Number(readFileSync(p, 'utf8').trim());
  return read('/proc/sys/net/ipv6/conf/default/dad_transmits') * read('/proc/sys/net/ipv6/neigh/lo/retrans_time_ms');
}

const CGROUP_ROOTS = ['/sys/fs/cgroup/systemd', '/sys/fs/cgroup/unified'];

function removeCgroup(dir: string): void {
  if (!existsSync(dir)) return;
  for (const e of readdirSync(dir)) if (statSync(`${dir}/${e}`).isDirectory()) removeCgroup(`${dir}/${e}`);
  rmdirSync(dir);
}

async function main(): Promise<void> {
  // the test run's layout: private /run/nspawn-ts and state, sysfs of this namespace (cgroups kept)
  execFileSync('sh', ['-c', `
    set -e
    ip link set lo up
    mkdir -p /run/nspawn-ts /var/lib/nspawn-ts
    mount -t tmpfs tmpfs /run/nspawn-ts
    mount -t tmpfs tmpfs /var/lib/nspawn-ts
    if mountpoint -q /sys/fs/cgroup; then t=$(mktemp -d /run/nspawn-ts/cg.XXXXXX); mount --rbind /sys/fs/cgroup "$t"; mount -t sysfs sysfs /sys; mount --move "$t" /sys/fs/cgroup; rmdir "$t"; else mount -t sysfs sysfs /sys; fi
  `]);
  const root = buildRoot();
  const cgroups: string[] = [];
  for (const r of CGROUP_ROOTS) {
    if (!existsSync(`${r}/cgroup.procs`)) continue;
    const d = `${r}/nspawn-ts-bench-${process.pid}`;
    mkdirSync(d, { recursive: true });
    cgroups.push(d);
  }
  const env = { NSPAWN_NETD_DNS: DNS };
  // bin/nspawn-ts run as a user runs it: its #! line and node's options are part of the start-up
  const ours = (extra: string[], inner: string, moreEnv: NodeJS.ProcessEnv = {}) => (i: number) =>
    timed(NSPAWN_TS, ['-q', '-n', '-M', `bench${i + 1}`, '-D', root, ...extra, '/bin/sh', '-c', inner], { ...env, ...moreEnv });
  try {
    const script = `for d in ${cgroups.join(' ')}; do echo $$ > "$d/cgroup.procs"; done\nexec systemd-nspawn --register=no --keep-unit -q "$@"`;
    const variants: Variant[] = [
      { key: 'ours_embedded_ms', label: 'ours, embedded', sidecar: false, launch: ours([], WAIT_READY) },
      { key: 'ours_udhcpc_ms', label: 'ours, embedded, udhcpc', sidecar: false, launch: ours(['--network-config=dhcp'], `${UDHCPC}; ${WAIT_READY}`) },
      { key: 'ours_ipv4only_ms', label: 'ours, embedded, IPv6 off', sidecar: false, launch: ours([], WAIT_IPV4, { NSPAWN_TS_IPV6: 'no' }) },
      { key: 'ours_dualstack_ms', label: 'ours, embedded, IPv4 + IPv6', sidecar: false, launch: ours([], WAIT_DUAL) },
      { key: 'ours_slaac_ms', label: 'ours, embedded, IPv6 by SLAAC', sidecar: false, launch: ours(['--network-config=dhcp'], WAIT_SLAAC) },
      { key: 'node_startup_ms', label: 'node -e 0 (reference)', sidecar: false, launch: () => timed(process.execPath, ['-e', 'console.log("NETWORK-READY")']) },
      { key: 'ours_sidecar_ms', label: 'ours, sidecar', sidecar: true, launch: ours([], WAIT_READY) },
      { key: 'ours_sidecar_udhcpc_ms', label: 'ours, sidecar, udhcpc', sidecar: true, launch: ours(['--network-config=dhcp'], `${UDHCPC}; ${WAIT_READY}`) },
    ];
    if (cgroups.length > 0) {
      variants.push({
        key: 'systemd_nspawn_udhcpc_ms', label: 'systemd-nspawn + sidecar, udhcpc', sidecar: true,
        launch: (i) => timed('sh', ['-c', script, 'sh', '-P', '-D', root, '-M', `sbench${i + 1}`, '--network-veth', '/bin/sh', '-c', `${UDHCPC}; ${WAIT_READY}`]),
      }, {
        key: 'systemd_nspawn_slaac_ms', label: 'systemd-nspawn + sidecar, SLAAC', sidecar: true,
        launch: (i) => timed('sh', ['-c', script, 'sh', '-P', '-D', root, '-M', `sbench${i + 1}`, '--network-veth', '/bin/sh', '-c', WAIT_SLAAC]),
      });
    }
    const times = await rounds(variants);
    const results: Record<string, number> = {};
    for (const [k, t] of Object.entries(times)) results[k] = median(t);
    const out: Record<string, unknown> = { bench: 'startup', rounds: ROUNDS };
    for (const k of [
      'ours_embedded_ms', 'ours_sidecar_ms', 'ours_udhcpc_ms', 'ours_sidecar_udhcpc_ms', 'systemd_nspawn_udhcpc_ms', 'node_startup_ms',
      'ours_ipv4only_ms', 'ours_dualstack_ms', 'ours_slaac_ms', 'systemd_nspawn_slaac_ms',
    ]) {
      if (results[k] !== undefined) out[k] = round1(results[k] as number);
    }
    // the goals: dual stack at start within 5 ms of IPv4 alone (medians); SLAAC within the kernel's
    // own DAD time of the launch (a link-local and then a global address each wait it out)
    const dad = kernelDadMs();
    out.dualstack_cost_ms = round1((results.ours_dualstack_ms as number) - (results.ours_ipv4only_ms as number));
    out.slaac_cost_ms = round1((results.ours_slaac_ms as number) - (results.ours_dualstack_ms as number));
    out.kernel_dad_ms = dad;
    process.stderr.write(`dual stack costs ${out.dualstack_cost_ms} ms over IPv4 alone (goal < 5); SLAAC ${out.slaac_cost_ms} ms over configured at start (the kernel's DAD: ${dad} ms an address)\n`);
    console.log(JSON.stringify(out));
  } finally {
    for (const d of cgroups) {
      try {
        removeCgroup(d);
      } catch { /* a payload still there */ }
    }
    rmSync(root, { recursive: true, force: true });
  }
}

await main();
