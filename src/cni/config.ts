// The CNI side of nspawn-cni, pure: what the runtime hands the plugin (CNI_* environment, the network
// configuration on stdin) parsed into the network library's terms, and the plugin's answers (results
// and errors) in the shape each cniVersion wants. Specification: CNI 1.0.0 (SPEC.md), with the
// versions podman's libcni converts from (0.3.1, 0.4.0). No I/O here (unit-tested byte for byte).
import { createRequire } from 'node:module';
import type { PortForward } from '../net/model.js';
import { ifnameValid, machineNameValid, zoneNameValid } from '../net/naming.js';

/** The versions we answer; a 1.1.0 config is refused (libcni 1.1.2 cannot convert its results back: cni-podman.md). */
export const SUPPORTED_VERSIONS = ['0.3.0', '0.3.1', '0.4.0', '1.0.0'] as const;
export type CniVersion = (typeof SUPPORTED_VERSIONS)[number];

/** The spec's well-known error codes (SPEC.md "Error"); 100+ are the plugin's own. */
export const CNI_ERR = {
  INCOMPATIBLE_VERSION: 1,
  UNSUPPORTED_FIELD: 2,
  UNKNOWN_CONTAINER: 3,
  INVALID_CONFIG: 4,
  IO_FAILURE: 5,
  DECODE_FAILURE: 6,
  INVALID_ENVIRONMENT: 7,
  TRY_AGAIN_LATER: 11,
  /** ours: CHECK found the container's network not as ADD left it */
  CHECK_FAILED: 100,
  /** ours: setting up the network failed (the message says where) */
  SETUP_FAILED: 101,
} as const;

const CNI_ERROR = Symbol.for('nspawn-ts.CniError');

export class CniError extends Error {
  readonly [CNI_ERROR] = true;

  constructor(readonly code: number, message: string, readonly details = '') {
    super(message);
  }

  /** `instanceof` across bin/nspawn-cni's two bundles, each with a copy of this class (a marker, not the prototype). */
  static override [Symbol.hasInstance](v: unknown): boolean {
    return typeof v === 'object' && v !== null && (v as { [CNI_ERROR]?: unknown })[CNI_ERROR] === true;
  }
}

export type CniCommand = 'ADD' | 'DEL' | 'CHECK' | 'VERSION';

/** CNI_* environment of one call. */
export interface CniEnv {
  command: CniCommand;
  containerId: string;
  netns: string;
  ifname: string;
  /** CNI_ARGS, KEY=VALUE;… */
  args: Record<string, string>;
}

/** Our plugin's configuration, from the network config (plugin entry) on stdin. */
export interface CniConfig {
  cniVersion: CniVersion;
  /** the network's name */
  name: string;
  /** the zone (bridge vz-ZONE) of this network: "zone" in the config, else the network name (or a hash of it when too long) */
  zone: string;
  /** where the network library keeps its state (the sidecar's state directory) */
  stateDir: string;
  /** the sidecar's socket, asked first */
  netdSocket: string;
  /** "auto": the sidecar when it answers, else in-process; "never": always in-process */
  sidecar: 'auto' | 'never';
  /** runtimeConfig.portMappings */
  ports: PortForward[];
  /** the result of the ADD (DEL, CHECK) */
  prevResult?: unknown;
}

export const DEFAULT_STATE_DIR = '/var/lib/nspawn-ts';
export const DEFAULT_NETD_SOCKET = '/run/nspawn-ts/netd.sock';

function str(v: unknown, what: string, code: number = CNI_ERR.INVALID_CONFIG): string {
  if (typeof v !== 'string' || v.length === 0) throw new CniError(code, `${what} is missing or not a string`);
  return v;
}

export function parseEnv(env: NodeJS.ProcessEnv): CniEnv {
  const command = env.CNI_COMMAND;
  if (command !== 'ADD' && command !== 'DEL' && command !== 'CHECK' && command !== 'VERSION') {
    throw new CniError(CNI_ERR.INVALID_ENVIRONMENT, `CNI_COMMAND ${JSON.stringify(command ?? '')} is not ADD, DEL, CHECK or VERSION`);
  }
  const args: Record<string, string> = {};
  for (const part of (env.CNI_ARGS ?? '').split(';')) {
    if (part === '') continue;
    const eq = part.indexOf('=');
    if (eq <= 0) throw new CniError(CNI_ERR.INVALID_ENVIRONMENT, `CNI_ARGS part ${JSON.stringify(part)} is not KEY=VALUE`);
    args[part.slice(0, eq)] = part.slice(eq + 1);
  }
  if (command === 'VERSION') return { command, containerId: '', netns: '', ifname: '', args };
  const containerId = str(env.CNI_CONTAINERID, 'CNI_CONTAINERID', CNI_ERR.INVALID_ENVIRONMENT);
  if (!/^[A-Za-z0-9][A-Za-z0-9_.-]*$/.test(containerId)) {
    throw new CniError(CNI_ERR.INVALID_ENVIRONMENT, `CNI_CONTAINERID ${JSON.stringify(containerId)} has characters other than letters, digits, _ . -`);
  }
  const ifname = str(env.CNI_IFNAME, 'CNI_IFNAME', CNI_ERR.INVALID_ENVIRONMENT);
  if (!ifnameValid(ifname)) throw new CniError(CNI_ERR.INVALID_ENVIRONMENT, `CNI_IFNAME ${JSON.stringify(ifname)} is not a valid interface name`);
  // DEL may come without a namespace (it is gone): then only the host side is cleaned up
  const netns = env.CNI_NETNS ?? '';
  if (command !== 'DEL' && netns === '') throw new CniError(CNI_ERR.INVALID_ENVIRONMENT, 'CNI_NETNS is missing');
  return { command, containerId, netns, ifname, args };
}

// node:crypto is loaded when a name is hashed, not at start-up: it costs VERSION a third of its time
const requireLazily = createRequire(import.meta.url);

function hash8(s: string): string {
  const { createHash } = requireLazily('node:crypto') as typeof import('node:crypto');
  return createHash('sha256').update(s).digest('hex').slice(0, 8);
}

/** The version the config asks for, refused with code 1 unless we speak it. */
export function parseVersion(raw: unknown): CniVersion {
  const v = raw === undefined ? '0.1.0' : raw;
  if (typeof v !== 'string' || !(SUPPORTED_VERSIONS as readonly string[]).includes(v)) {
    throw new CniError(CNI_ERR.INCOMPATIBLE_VERSION, `cniVersion ${JSON.stringify(v)} is not supported`, `supported: ${SUPPORTED_VERSIONS.join(', ')}`);
  }
  return v as CniVersion;
}

function parsePorts(raw: unknown): PortForward[] {
  if (raw === undefined || raw === null) return [];
  if (!Array.isArray(raw)) throw new CniError(CNI_ERR.INVALID_CONFIG, 'runtimeConfig.portMappings is not a list');
  return raw.map((m: unknown, i) => {
    const o = (m ?? {}) as Record<string, unknown>;
    const port = (v: unknown, what: string): number => {
      if (typeof v !== 'number' || !Number.isInteger(v) || v < 1 || v > 65535) {
        throw new CniError(CNI_ERR.INVALID_CONFIG, `runtimeConfig.portMappings[${i}].${what} ${JSON.stringify(v)} is not a port 1-65535`);
      }
      return v;
    };
    const hostPort = port(o.hostPort, 'hostPort');
    const containerPort = port(o.containerPort, 'containerPort');
    const protocol = o.protocol === undefined || o.protocol === '' ? 'tcp' : o.protocol;
    if (protocol !== 'tcp' && protocol !== 'udp') {
      throw new CniError(CNI_ERR.INVALID_CONFIG, `runtimeConfig.portMappings[${i}].protocol ${JSON.stringify(protocol)} is not tcp or udp`);
    }
    if (o.hostIP !== undefined && o.hostIP !== '' && o.hostIP !== '0.0.0.0') {
      throw new CniError(CNI_ERR.UNSUPPORTED_FIELD, `runtimeConfig.portMappings[${i}].hostIP ${JSON.stringify(o.hostIP)}: only all host addresses are supported (leave hostIP out)`);
    }
    return { protocol, hostPort, hostPortEnd: hostPort, containerPort, containerPortEnd: containerPort };
  });
}

/** The plugin's config from stdin (a conflist's plugin entry, as libcni hands it over). */
export function parseConfig(text: string): CniConfig {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new CniError(CNI_ERR.DECODE_FAILURE, `the network configuration on stdin is not JSON: ${(err as Error).message}`);
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new CniError(CNI_ERR.DECODE_FAILURE, 'the network configuration on stdin is not a JSON object');
  const o = raw as Record<string, unknown>;
  const cniVersion = parseVersion(o.cniVersion);
  const name = str(o.name, 'the network "name"');
  if (o.ipam !== undefined) throw new CniError(CNI_ERR.UNSUPPORTED_FIELD, '"ipam": delegating addresses to another plugin is not supported yet; leave "ipam" out (addresses come from our subnet pool)');
  if (o.mode !== undefined && o.mode !== 'zone') throw new CniError(CNI_ERR.UNSUPPORTED_FIELD, `"mode" ${JSON.stringify(o.mode)}: only "zone" (one bridge per network) is supported yet`);
  let zone: string;
  if (o.zone !== undefined) {
    zone = str(o.zone, '"zone"');
    if (!zoneNameValid(zone)) throw new CniError(CNI_ERR.INVALID_CONFIG, `"zone" ${JSON.stringify(zone)} is not a valid zone name (at most 12 letters, digits, - _)`);
  } else {
    zone = zoneNameValid(name) ? name : `cni-${hash8(name)}`;
  }
  const stateDir = o.stateDir === undefined ? DEFAULT_STATE_DIR : str(o.stateDir, '"stateDir"');
  const netdSocket = o.netdSocket === undefined ? DEFAULT_NETD_SOCKET : str(o.netdSocket, '"netdSocket"');
  for (const [k, v] of [['stateDir', stateDir], ['netdSocket', netdSocket]] as const) {
    if (!v.startsWith('/')) throw new CniError(CNI_ERR.INVALID_CONFIG, `"${k}" ${JSON.stringify(v)} is not an absolute path`);
  }
  const sidecar = o.sidecar === undefined ? 'auto' : o.sidecar;
  if (sidecar !== 'auto' && sidecar !== 'never') throw new CniError(CNI_ERR.INVALID_CONFIG, `"sidecar" ${JSON.stringify(sidecar)} is not "auto" or "never"`);
  const rc = (o.runtimeConfig ?? {}) as Record<string, unknown>;
  const cfg: CniConfig = { cniVersion, name, zone, stateDir, netdSocket, sidecar, ports: parsePorts(rc.portMappings) };
  if (o.prevResult !== undefined) cfg.prevResult = o.prevResult;
  return cfg;
}

/** The name our reservation (and port mappings) go by: the pod/container name when the runtime gives one, else the container ID. */
export function machineFor(env: CniEnv): string {
  const pod = env.args.K8S_POD_NAME;
  const ns = env.args.K8S_POD_NAMESPACE;
  if (pod) {
    const name = ns ? `${pod}.${ns}` : pod;
    if (machineNameValid(name)) return name;
  }
  const id = env.containerId.toLowerCase().replace(/[^a-z0-9-]/g, '-').slice(0, 63);
  return machineNameValid(id) ? id : `c-${hash8(env.containerId)}`;
}

/** The host side of a container's veth: unique per (container, ifname), not a ve-/vb- name (those the sidecar classifies). */
export function hostIfnameFor(containerId: string, ifname: string): string {
  return `nc${hash8(`${containerId}/${ifname}`)}`;
}

/** What ADD set up, in the library's terms: enough to write any version's result. */
export interface AddOutcome {
  bridge: { name: string; mac: string };
  host: { name: string; mac: string };
  container: { name: string; mac: string; sandbox: string };
  address: string;
  prefixLength: number;
  gateway: string;
  dns: string[];
}

/** The ADD result in `version`'s shape (0.3.x/0.4.0: ips carry "version"; 1.0.0 dropped it). */
export function addResult(version: CniVersion, out: AddOutcome): Record<string, unknown> {
  const ip: Record<string, unknown> = { address: `${out.address}/${out.prefixLength}`, gateway: out.gateway, interface: 2 };
  if (version !== '1.0.0') ip.version = '4';
  const result: Record<string, unknown> = {
    cniVersion: version,
    interfaces: [
      { name: out.bridge.name, mac: out.bridge.mac },
      { name: out.host.name, mac: out.host.mac },
      { name: out.container.name, mac: out.container.mac, sandbox: out.container.sandbox },
    ],
    ips: [ip],
    routes: [{ dst: '0.0.0.0/0', gw: out.gateway }],
    dns: out.dns.length ? { nameservers: out.dns } : {},
  };
  return result;
}

/** The container address (and its interface) ADD reported, from a prevResult of any version we write. */
export function prevAddress(prev: unknown): string | undefined {
  const ips = (prev as { ips?: Array<{ address?: unknown }> } | undefined)?.ips;
  const a = Array.isArray(ips) ? ips[0]?.address : undefined;
  return typeof a === 'string' ? a : undefined;
}

export function versionResult(version: string): Record<string, unknown> {
  return { cniVersion: version, supportedVersions: [...SUPPORTED_VERSIONS] };
}

export function errorResult(version: string, err: CniError): Record<string, unknown> {
  const out: Record<string, unknown> = { cniVersion: version, code: err.code, msg: err.message };
  if (err.details) out.details = err.details;
  return out;
}
