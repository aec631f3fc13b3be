// "ipam" delegation (CNI spec, "Delegated plugins"): the plugin named by the config's ipam.type is
// looked up in CNI_PATH and run with this call's CNI_* environment (CNI_COMMAND set to the step
// wanted) and the network configuration as it came on stdin; its ADD result gives the addresses,
// routes and DNS, its DEL gives them back.
import { accessSync, constants } from 'node:fs';
import { spawn } from 'node:child_process';
import { CNI_ERR, CniError, type CniConfig, type CniEnv, versionAtLeast } from './config.js';

export interface IpamResult {
  ips: Array<{ address: string; gateway?: string }>;
  routes: Array<{ dst: string; gw?: string }>;
  dns: { nameservers?: string[]; domain?: string; search?: string[]; options?: string[] };
}

/** The plugin `type` in the CNI_PATH directories `path` (the first executable one), or undefined. */
export function lookupPlugin(type: string, path: readonly string[]): string | undefined {
  for (const dir of path) {
    try {
      accessSync(`${dir}/${type}`, constants.X_OK);
      return `${dir}/${type}`;
    } catch { /* next */ }
  }
  return undefined;
}

function findPlugin(type: string, path: readonly string[]): string {
  const bin = lookupPlugin(type, path);
  if (bin === undefined) throw new CniError(CNI_ERR.INVALID_CONFIG, `"ipam.type" ${JSON.stringify(type)}: no such plugin in CNI_PATH (${path.join(':') || 'empty'})`);
  return bin;
}

/** The ipam plugin's answer to `command`, or its CNI error as ours (its code, its message named). */
async function run(cfg: CniConfig, env: CniEnv, command: 'ADD' | 'DEL' | 'CHECK', stdin: string): Promise<string> {
  const type = cfg.ipam?.type ?? '';
  const bin = findPlugin(type, env.path);
  const childEnv: NodeJS.ProcessEnv = {
    ...process.env, CNI_COMMAND: command, CNI_CONTAINERID: env.containerId, CNI_NETNS: env.netns, CNI_IFNAME: env.ifname,
    CNI_PATH: env.path.join(':'), CNI_ARGS: Object.entries(env.args).map(([k, v]) => `${k}=${v}`).join(';'),
  };
  const { code, stdout, stderr } = await new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve, reject) => {
    const child = spawn(bin, [], { env: childEnv, stdio: ['pipe', 'pipe', 'pipe'], timeout: 60_000 });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => { out += d.toString(); });
    child.stderr.on('data', (d: Buffer) => { err += d.toString(); });
    child.on('error', (e) => reject(new CniError(CNI_ERR.SETUP_FAILED, `ipam plugin ${type} could not be run: ${e.message}`)));
    child.on('close', (c) => resolve({ code: c, stdout: out, stderr: err }));
    child.stdin.on('error', () => { /* it exited before reading: its answer says why */ });
    child.stdin.end(stdin);
  });
  if (code === 0) return stdout;
  let e: { code?: unknown; msg?: unknown; details?: unknown } = {};
  try {
    e = JSON.parse(stdout) as typeof e;
  } catch { /* not a CNI error */ }
  const msg = typeof e.msg === 'string' ? e.msg : (stderr.trim() || stdout.trim() || `exit status ${code}`);
  throw new CniError(typeof e.code === 'number' ? e.code : CNI_ERR.SETUP_FAILED, `ipam plugin ${type} failed (${command.toLowerCase()}): ${msg}`,
    typeof e.details === 'string' ? e.details : '');
}

function parseResult(type: string, text: string): IpamResult {
  let o: Record<string, unknown>;
  try {
    o = JSON.parse(text) as Record<string, unknown>;
  } catch {
    throw new CniError(CNI_ERR.DECODE_FAILURE, `ipam plugin ${type} answered ADD with something not JSON`);
  }
  const bad = (what: string): never => {
    throw new CniError(CNI_ERR.DECODE_FAILURE, `ipam plugin ${type}'s result: ${what}`);
  };
  if (!Array.isArray(o.ips) || o.ips.length === 0) bad('no "ips" (results before CNI 0.3.0 are not supported)');
  const ips = (o.ips as unknown[]).map((ip, i) => {
    const r = (ip ?? {}) as Record<string, unknown>;
    if (typeof r.address !== 'string' || !r.address.includes('/')) bad(`ips[${i}].address is not an address/prefix`);
    if (r.gateway !== undefined && typeof r.gateway !== 'string') bad(`ips[${i}].gateway is not an address`);
    return { address: r.address as string, ...(typeof r.gateway === 'string' ? { gateway: r.gateway } : {}) };
  });
  const routes = (Array.isArray(o.routes) ? o.routes : []).map((rt: unknown, i) => {
    const r = (rt ?? {}) as Record<string, unknown>;
    if (typeof r.dst !== 'string') bad(`routes[${i}].dst is not a prefix`);
    return { dst: r.dst as string, ...(typeof r.gw === 'string' ? { gw: r.gw } : {}) };
  });
  const dns = (typeof o.dns === 'object' && o.dns !== null ? o.dns : {}) as IpamResult['dns'];
  return { ips, routes, dns };
}

/** A configuration (parsed) as CNI 1.0.0: the version, without 1.1.0's GC list, prevResult's version too. */
function asV100(o: Record<string, unknown>): string {
  o.cniVersion = '1.0.0';
  delete o['cni.dev/valid-attachments'];
  if (o.prevResult && typeof o.prevResult === 'object') o.prevResult = { ...(o.prevResult as object), cniVersion: '1.0.0' };
  return JSON.stringify(o);
}

/** The configuration handed to the ipam plugin for a DEL outside an ADD/DEL call (GC): the network's, at 1.0.0, without GC's keys. */
export function delConfigFor(cfg: CniConfig): string {
  const o = JSON.parse(cfg.raw) as Record<string, unknown>;
  delete o.prevResult;
  return asV100(o);
}

/**
 * Runs the ipam plugin; a 1.1.0 configuration it refuses as a version it does not speak (code 1:
 * the reference plugins before 1.5 stop at 1.0.0) goes again as 1.0.0, whose ADD result is the same.
 */
async function runCompat(cfg: CniConfig, env: CniEnv, command: 'ADD' | 'DEL' | 'CHECK', stdin: string): Promise<string> {
  try {
    return await run(cfg, env, command, stdin);
  } catch (err) {
    if (!(err instanceof CniError && err.code === CNI_ERR.INCOMPATIBLE_VERSION) || !versionAtLeast(cfg.cniVersion, '1.1.0')) throw err;
    return run(cfg, env, command, asV100(JSON.parse(stdin) as Record<string, unknown>));
  }
}

export async function ipamAdd(cfg: CniConfig, env: CniEnv): Promise<IpamResult> {
  return parseResult(cfg.ipam?.type ?? '', await runCompat(cfg, env, 'ADD', cfg.raw));
}

export async function ipamDel(cfg: CniConfig, env: CniEnv, stdin = cfg.raw): Promise<void> {
  await runCompat(cfg, env, 'DEL', stdin);
}

export async function ipamCheck(cfg: CniConfig, env: CniEnv): Promise<void> {
  await runCompat(cfg, env, 'CHECK', cfg.raw);
}
