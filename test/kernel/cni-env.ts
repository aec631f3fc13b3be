// The libcni side of nspawn-cni's kernel tests: a small driver (test/helpers/cni-driver/main.go)
// built from Debian's golang-github-appc-cni-dev runs ADD, CHECK and DEL of a conflist against
// `ip netns add` namespaces, as a runtime does (result cache, prevResult, capability args).
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll } from 'vitest';
import { run, runOk } from '../helpers/exec.js';
import type { TestNetns } from '../helpers/netns.js';
import { masqueraded, netdState } from './e2e-world.js';

export const PLUGIN = fileURLToPath(new URL('../../bin/nspawn-cni', import.meta.url));
export const PODMAN_SCRIPT = fileURLToPath(new URL('../helpers/podman-cni.sh', import.meta.url));
const DRIVER_SRC = fileURLToPath(new URL('../helpers/cni-driver/main.go', import.meta.url));

/** the suite's scratch directory (networks, state, caches) */
export let work: string;
let driver: string;
let pluginDir: string;

/** Builds the libcni driver and a plugin directory for the suite (beforeAll), removes both after. */
export function cniSuite(): void {
beforeAll(async () => {
  work = mkdtempSync('/tmp/nspawn-cni-test-');
  mkdirSync(`${work}/drv`);
  writeFileSync(`${work}/drv/main.go`, readFileSync(DRIVER_SRC));
  driver = `${work}/drv/cni-driver`;
  await runOk('go', ['build', '-o', driver, 'main.go'], {
    cwd: `${work}/drv`, timeoutMs: 300_000,
    env: { ...process.env, GO111MODULE: 'off', GOPATH: '/usr/share/gocode', GOCACHE: `${work}/gocache` },
  });
  pluginDir = `${work}/plugins`;
  mkdirSync(pluginDir);
  symlinkSync(PLUGIN, `${pluginDir}/nspawn-cni`);
}, 320_000);

afterAll(() => {
  if (work) rmSync(work, { recursive: true, force: true });
});
}

/** CNI_PATH for the driver: ours, then the reference plugins (ipam delegation finds host-local there). */
export function cniPath(): string {
  return `${pluginDir}:/usr/lib/cni`;
}

export interface Net {
  conflist: string;
  stateDir: string;
  cache: string;
}

let nets = 0;
export function network(cniVersion: string, extra: Record<string, unknown> = {}, name = 'podnet'): Net {
  const dir = `${work}/net${++nets}`;
  mkdirSync(dir);
  const stateDir = `${dir}/state`;
  const conflist = `${dir}/net.conflist`;
  writeFileSync(conflist, JSON.stringify({
    cniVersion, name,
    plugins: [{ type: 'nspawn-cni', stateDir, netdSocket: `${dir}/no-sidecar.sock`, capabilities: { portMappings: true }, ...extra }],
  }));
  return { conflist, stateDir, cache: `${dir}/cache` };
}

export interface Call { code: number | null; stdout: string; stderr: string }

export function cni(net: Net, cmd: 'add' | 'check' | 'del', ns: TestNetns | string, id: string, opts: { caps?: unknown; args?: string; env?: Record<string, string> } = {}): Promise<Call> {
  const path = typeof ns === 'string' ? ns : ns.path;
  return run(driver, [cmd, net.conflist, path, id, 'eth0', opts.caps ? JSON.stringify(opts.caps) : '', opts.args ?? ''], {
    env: { ...process.env, ...opts.env, CNI_PATH: cniPath(), CNI_CACHE_DIR: net.cache }, timeoutMs: 60_000,
  });
}

export async function ok(p: Promise<Call>): Promise<string> {
  const r = await p;
  if (r.code !== 0) throw new Error(`cni-driver failed (${r.code}): ${r.stderr}${r.stdout}`);
  return r.stdout;
}

export interface Result { cniVersion: string; ips: Array<{ address: string; gateway: string; version?: string; interface: number }>; interfaces: Array<{ name: string; mac?: string; sandbox?: string }>; dns?: unknown }

/** Links, records and firewall entries of ours on the host (there must be none after the last DEL). */
export async function leftovers(net: Net): Promise<string[]> {
  const out: string[] = [];
  const links = JSON.parse(await runOk('ip', ['-j', 'link'])) as Array<{ ifname: string }>;
  for (const l of links) if (/^(nc[0-9a-f]{8}|vz-|ve-|cn-)/.test(l.ifname)) out.push(`link ${l.ifname}`);
  const st = netdState(net.stateDir);
  for (const [ifname, rec] of Object.entries(st.links)) out.push(`state record ${ifname} (${rec.reservations.map((r) => r.machine).join(', ')})`);
  if (st.pool?.entries.some((e) => e.active)) out.push('an active pool entry');
  for (const m of await masqueraded()) out.push(`masquerade ${m}`);
  for (const t of ['nspawn-ts', 'nspawn-cni']) if ((await run('nft', ['list', 'table', 'inet', t])).code === 0) out.push(`table inet ${t}`);
  try {
    for (const d of readdirSync(`${net.stateDir}/cni`)) for (const f of readdirSync(`${net.stateDir}/cni/${d}`)) out.push(`record ${d}/${f}`);
  } catch { /* none */ }
  return out;
}

