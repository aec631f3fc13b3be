// The CNI side of nspawn-cni, pure: what the runtime hands the plugin (CNI_* environment, the network
// configuration on stdin) parsed into the network library's terms, and the plugin's answers (results
// and errors) in the shape each cniVersion wants. Specification: CNI 1.0.0 (SPEC.md), with the
// versions podman's libcni converts from (0.3.1, 0.4.0), and CNI 1.1.0's STATUS and GC. No I/O here
// (unit-tested byte for byte).
import { DEFAULT_STATE_DIR } from '../common/paths.js';
import { sha256 } from '../common/sha256.js';
import type { PortForward } from '../net/model.js';
import { ifnameValid, machineNameValid, zoneNameValid } from '../net/naming.js';
import { DEFAULT_SOCKET } from '../net/netd/socket-path.js';

/**
 * The versions we answer. VERSION lists 1.1.0 only to a runtime that speaks it (versionResult).
 * bin/nspawn-cni's native front answers the runtime's VERSION with these too (native/front/nspawn-cni.c;
 * test/unit/cni-front.test.ts compares its answers with versionResult's).
 */
export const SUPPORTED_VERSIONS = ['0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0'] as const;
export type CniVersion = (typeof SUPPORTED_VERSIONS)[number];

/** a.b.c ≥ x.y.z (cniVersion strings; anything unparsable is 0) */
export function versionAtLeast(v: string, min: string): boolean {
  const parts = (s: string): number[] => s.split('.').map((x) => (/^\d+$/.test(x) ? Number(x) : 0));
  const a = parts(v);
  const b = parts(min);
  for (let i = 0; i < 3; i++) {
    const d = (a[i] ?? 0) - (b[i] ?? 0);
    if (d !== 0) return d > 0;
  }
  return true;
}

/** The spec's well-known error codes (SPEC.md "Error", libcni's types.Err*); 100+ are the plugin's own. */
export const CNI_ERR = {
  INCOMPATIBLE_VERSION: 1,
  UNSUPPORTED_FIELD: 2,
  UNKNOWN_CONTAINER: 3,
  /** invalid necessary environment variables (CNI_COMMAND, CNI_NETNS …) */
  INVALID_ENVIRONMENT: 4,
  IO_FAILURE: 5,
  DECODE_FAILURE: 6,
  /** invalid network configuration (also runtimeConfig: a host port that is taken) */
  INVALID_CONFIG: 7,
  TRY_AGAIN_LATER: 11,
  /** STATUS: the plugin cannot serve ADDs now (CNI 1.1.0) */
  NOT_AVAILABLE: 50,
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

export type CniCommand = 'ADD' | 'DEL' | 'CHECK' | 'VERSION' | 'STATUS' | 'GC';
const COMMANDS: readonly string[] = ['ADD', 'DEL', 'CHECK', 'VERSION', 'STATUS', 'GC'];

/** CNI_* environment of one call. */
export interface CniEnv {
  command: CniCommand;
  containerId: string;
  netns: string;
  ifname: string;
  /** CNI_ARGS, KEY=VALUE;… */
  args: Record<string, string>;
  /** CNI_PATH: where delegated (ipam) plugins are looked up */
  path: string[];
}

/** How containers of a network are linked to the host. */
export type CniMode = 'zone' | 'veth';

/** A container interface of the runtime's, as GC's cni.dev/valid-attachments lists them. */
export interface Attachment {
  containerID: string;
  ifname: string;
}

/** Our plugin's configuration, from the network config (plugin entry) on stdin. */
export interface CniConfig {
  cniVersion: CniVersion;
  /** the network's name */
  name: string;
  /** "zone": one bridge for the network's containers (--network-zone=); "veth": a point-to-point link and /28 each (--network-veth) */
  mode: CniMode;
  /** the zone (bridge vz-ZONE) of this network: "zone" in the config, else the network name (or a hash of it when too long) */
  zone: string;
  /** the "ipam" section when addresses are delegated to another plugin (its "type" checked) */
  ipam?: { type: string };
  /** the configuration as it came on stdin (handed to the ipam plugin as it is) */
  raw: string;
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
  /** GC: the attachments the runtime still has (everything else of this network's goes) */
  validAttachments?: Attachment[];
}

function str(v: unknown, what: string, code: number = CNI_ERR.INVALID_CONFIG): string {
  if (typeof v !== 'string' || v.length === 0) throw new CniError(code, `${what} is missing or not a string`);
  return v;
}

export function parseEnv(env: NodeJS.ProcessEnv): CniEnv {
  const command = env.CNI_COMMAND ?? '';
  if (!COMMANDS.includes(command)) {
    throw new CniError(CNI_ERR.INVALID_ENVIRONMENT, `CNI_COMMAND ${JSON.stringify(command)} is not ${COMMANDS.slice(0, -1).join(', ')} or GC`);
  }
  const args: Record<string, string> = {};
  for (const part of (env.CNI_ARGS ?? '').split(';')) {
    if (part === '') continue;
    const eq = part.indexOf('=');
    if (eq <= 0) throw new CniError(CNI_ERR.INVALID_ENVIRONMENT, `CNI_ARGS part ${JSON.stringify(part)} is not KEY=VALUE`);
    args[part.slice(0, eq)] = part.slice(eq + 1);
  }
  const path = (env.CNI_PATH ?? '').split(':').filter((d) => d !== '');
  // STATUS and GC are about the network, VERSION about the plugin: no container
  if (command === 'VERSION' || command === 'STATUS' || command === 'GC') return { command: command as CniCommand, containerId: '', netns: '', ifname: '', args, path };
  const containerId = str(env.CNI_CONTAINERID, 'CNI_CONTAINERID', CNI_ERR.INVALID_ENVIRONMENT);
  if (!/^[A-Za-z0-9][A-Za-z0-9_.-]*$/.test(containerId)) {
    throw new CniError(CNI_ERR.INVALID_ENVIRONMENT, `CNI_CONTAINERID ${JSON.stringify(containerId)} has characters other than letters, digits, _ . -`);
  }
  const ifname = str(env.CNI_IFNAME, 'CNI_IFNAME', CNI_ERR.INVALID_ENVIRONMENT);
  if (!ifnameValid(ifname)) throw new CniError(CNI_ERR.INVALID_ENVIRONMENT, `CNI_IFNAME ${JSON.stringify(ifname)} is not a valid interface name`);
  // DEL may come without a namespace (it is gone): then only the host side is cleaned up
  const netns = env.CNI_NETNS ?? '';
  if (command !== 'DEL' && netns === '') throw new CniError(CNI_ERR.INVALID_ENVIRONMENT, 'CNI_NETNS is missing');
  return { command: command as CniCommand, containerId, netns, ifname, args, path };
}

function hash8(s: string): string {
  return sha256(s).toString('hex').slice(0, 8);
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
  let ipam: { type: string } | undefined;
  if (o.ipam !== undefined && o.ipam !== null) {
    const i = o.ipam as Record<string, unknown>;
    if (typeof i !== 'object' || Array.isArray(i)) throw new CniError(CNI_ERR.INVALID_CONFIG, '"ipam" is not an object');
    // an empty section (some generators write "ipam": {}) means no delegation
    if (Object.keys(i).length > 0) {
      const type = str(i.type, '"ipam.type"');
      if (!/^[A-Za-z0-9][A-Za-z0-9_.-]*$/.test(type)) throw new CniError(CNI_ERR.INVALID_CONFIG, `"ipam.type" ${JSON.stringify(type)} is not a plugin name`);
      ipam = { type };
    }
  }
  const mode = o.mode === undefined || o.mode === 'bridge' ? 'zone' : o.mode;
  if (mode !== 'zone' && mode !== 'veth') throw new CniError(CNI_ERR.INVALID_CONFIG, `"mode" ${JSON.stringify(o.mode)} is not "zone" (one bridge for the network) or "veth" (a point-to-point link per container)`);
  let zone: string;
  if (o.zone !== undefined) {
    zone = str(o.zone, '"zone"');
    if (!zoneNameValid(zone)) throw new CniError(CNI_ERR.INVALID_CONFIG, `"zone" ${JSON.stringify(zone)} is not a valid zone name (at most 12 letters, digits, - _)`);
  } else {
    zone = zoneNameValid(name) ? name : `cni-${hash8(name)}`;
  }
  const stateDir = o.stateDir === undefined ? DEFAULT_STATE_DIR : str(o.stateDir, '"stateDir"');
  const netdSocket = o.netdSocket === undefined ? DEFAULT_SOCKET : str(o.netdSocket, '"netdSocket"');
  for (const [k, v] of [['stateDir', stateDir], ['netdSocket', netdSocket]] as const) {
    if (!v.startsWith('/')) throw new CniError(CNI_ERR.INVALID_CONFIG, `"${k}" ${JSON.stringify(v)} is not an absolute path`);
  }
  const sidecar = o.sidecar === undefined ? 'auto' : o.sidecar;
  if (sidecar !== 'auto' && sidecar !== 'never') throw new CniError(CNI_ERR.INVALID_CONFIG, `"sidecar" ${JSON.stringify(sidecar)} is not "auto" or "never"`);
  const rc = (o.runtimeConfig ?? {}) as Record<string, unknown>;
  const cfg: CniConfig = { cniVersion, name, mode, zone, raw: text, stateDir, netdSocket, sidecar, ports: parsePorts(rc.portMappings) };
  if (ipam) cfg.ipam = ipam;
  if (o.prevResult !== undefined) cfg.prevResult = o.prevResult;
  const valid = o['cni.dev/valid-attachments'];
  if (valid !== undefined) {
    if (!Array.isArray(valid)) throw new CniError(CNI_ERR.INVALID_CONFIG, '"cni.dev/valid-attachments" is not a list');
    cfg.validAttachments = valid.map((a: unknown, i) => {
      const r = (a ?? {}) as Record<string, unknown>;
      return { containerID: str(r.containerID, `"cni.dev/valid-attachments"[${i}].containerID`), ifname: str(r.ifname, `"cni.dev/valid-attachments"[${i}].ifname`) };
    });
  }
  return cfg;
}

/**
 * The name our reservation (and port mappings) go by: the pod/container name when the runtime gives
 * one, else the container ID. In veth mode it also names the container's /28 and host link
 * ve-NAME: a second interface of one container (eth1 on another network) gets its own, NAME.eth1.
 */
export function machineFor(env: CniEnv, mode: CniMode = 'zone'): string {
  const pod = env.args.K8S_POD_NAME;
  const ns = env.args.K8S_POD_NAMESPACE;
  let name: string | undefined;
  if (pod) {
    const n = ns ? `${pod}.${ns}` : pod;
    if (machineNameValid(n)) name = n;
  }
  if (name === undefined) {
    const id = env.containerId.toLowerCase().replace(/[^a-z0-9-]/g, '-').slice(0, 63);
    name = machineNameValid(id) ? id : `c-${hash8(env.containerId)}`;
  }
  if (mode === 'veth' && env.ifname !== 'eth0') {
    const n = `${name.slice(0, 63 - env.ifname.length - 1)}.${env.ifname}`;
    name = machineNameValid(n) ? n : `c-${hash8(`${env.containerId}/${env.ifname}`)}`;
  }
  return name;
}

/** The host side of a container's veth: unique per (container, ifname), not a ve-/vb- name (those the sidecar classifies). */
export function hostIfnameFor(containerId: string, ifname: string): string {
  return `nc${hash8(`${containerId}/${ifname}`)}`;
}

/** What ADD set up, in CNI 1.0.0's terms (addResult writes it in each version's shape). */
export interface AddOutcome {
  /** host-side links first, the container's last (ips[].interface indexes this list) */
  interfaces: Array<{ name: string; mac: string; sandbox?: string }>;
  /** addresses as CIDR; IPv4 and IPv6 */
  ips: Array<{ address: string; gateway?: string; interface?: number }>;
  routes: Array<{ dst: string; gw?: string }>;
  dns: { nameservers?: string[]; domain?: string; search?: string[]; options?: string[] };
}

/** The ADD result in `version`'s shape (0.3.x/0.4.0: ips carry "version" 4 or 6; 1.0.0 dropped it). */
export function addResult(version: CniVersion, out: AddOutcome): Record<string, unknown> {
  const old = !versionAtLeast(version, '1.0.0');
  return {
    cniVersion: version,
    interfaces: out.interfaces.map((i) => ({ ...i })),
    ips: out.ips.map((ip) => {
      const o: Record<string, unknown> = { address: ip.address };
      if (ip.gateway !== undefined) o.gateway = ip.gateway;
      if (ip.interface !== undefined) o.interface = ip.interface;
      if (old) o.version = ip.address.includes(':') ? '6' : '4';
      return o;
    }),
    routes: out.routes.map((r) => ({ ...r })),
    dns: { ...out.dns },
  };
}

/** The container addresses (CIDR) ADD reported, from a prevResult of any version. */
export function prevAddresses(prev: unknown): string[] {
  const ips = (prev as { ips?: Array<{ address?: unknown }> } | undefined)?.ips;
  return Array.isArray(ips) ? ips.map((i) => i?.address).filter((a): a is string => typeof a === 'string') : [];
}

/**
 * The version VERSION's stdin asks with: its "cniVersion" when that is a string, else 1.0.0 (VERSION
 * reads nothing else; the runtime sends {"cniVersion":"1.0.0"} and nothing else).
 */
export function versionAsked(text: string): string {
  let asked: unknown;
  try {
    asked = (JSON.parse(text) as { cniVersion?: unknown } | null)?.cniVersion;
  } catch {
    asked = undefined;
  }
  return typeof asked === 'string' ? asked : '1.0.0';
}

/**
 * VERSION's answer. libcni asks with its own newest version; 1.1.0 is listed only when that is
 * 1.1.0 or later: podman 4.3's libcni 1.1.2 (asks with 1.0.0) cannot convert a 1.1.0 result back
 * and would leak on DEL, so it is told we do not speak 1.1.0 and leaves such a network out.
 */
export function versionResult(asked: string): Record<string, unknown> {
  const supported = SUPPORTED_VERSIONS.filter((v) => v !== '1.1.0' || versionAtLeast(asked, '1.1.0'));
  return { cniVersion: asked, supportedVersions: supported };
}

export function errorResult(version: string, err: CniError): Record<string, unknown> {
  const out: Record<string, unknown> = { cniVersion: version, code: err.code, msg: err.message };
  if (err.details) out.details = err.details;
  return out;
}
