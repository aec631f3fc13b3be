// The sidecar's JSON API: one JSON object per line over a Unix stream socket
// (/run/nspawn-ts/netd.sock, root only), answered in order, one line each:
//
//   → {"op":"reserve","machine":"web1","mac":"02:…","kind":"veth"}            (optional "id": echoed)
//   ← {"ok":true,"result":{"machine":"web1","ifname":"ve-web1","address":"192.168.37.20",…}}
//   ← {"ok":false,"error":{"code":"NETD_BAD_REQUEST","message":"reserve: \"mac\" …"}}
//
// Requests (see parseRequest for exact fields):
//   reserve  {machine, mac, kind: "veth"|"zone", zone?, ports?, portLoopback?}  → MachineLease: serve
//            the machine's link, reserve its stable address for that MAC (the DHCP server hands the
//            same one out); with ports (["tcp:8080:80", "udp:53"], -p syntax) forward them to it
//   check-ports {machine, ports}                         → {checked}: or NETD_PORT_IN_USE naming each
//            host port another machine forwards (asked before the launcher makes anything)
//   release  {machine, kind, zone?}                      → {released}: the machine is done
//   status   {}                                          → the sidecar's state (and "requests": answered, per op)
//   list     {}                                          → served links with subnets and reservations
//   leases   {ifname?}                                   → DHCP leases
//   ports    {}                                          → port mappings in the firewall (port forwarding)
//   cni      {command: "ADD"|"DEL"|"CHECK", containerId, netns, ifname, args, config}
//            → {result?} or {error: {code, msg, details?}}: one call of the CNI plugin (nspawn-cni's
//            CNI_* environment and its configuration text) done by the sidecar; a CNI error is an
//            answer, not a refusal. Served only by a sidecar given a handler for it (SidecarDeps.cni).
//
// Every request is checked completely before anything is done: a bad one gets an error naming the
// field and what is allowed, and changes nothing.
import { errorMessage, NspawnError } from '../../errors.js';
import { ifnameValid, machineNameValid, parseMac, zoneNameValid } from '../naming.js';
import type { ServedKind } from './links.js';
import { formatPortList, parsePortList } from './ports.js';
import { MAX_REQUEST_BYTES } from './socket-path.js';
import type { PortForward } from '../model.js';

export type NetdRequest =
  | { op: 'reserve'; machine: string; mac: string; kind: ServedKind; zone?: string; ports?: PortForward[]; portLoopback?: boolean }
  | { op: 'check-ports'; machine: string; ports: PortForward[] }
  | { op: 'release'; machine: string; kind: ServedKind; zone?: string }
  | { op: 'status' }
  | { op: 'list' }
  | { op: 'leases'; ifname?: string }
  | { op: 'ports' }
  | CniRequest;

/** A CNI plugin call (CNI_COMMAND, CNI_CONTAINERID, CNI_NETNS, CNI_IFNAME, CNI_ARGS and stdin), for the sidecar to do. */
export interface CniRequest {
  op: 'cni';
  command: 'ADD' | 'DEL' | 'CHECK';
  containerId: string;
  /** the container's network namespace (a path); '' only for DEL (it is gone) */
  netns: string;
  ifname: string;
  /** CNI_ARGS as the runtime gave it: KEY=VALUE;… */
  args: string;
  /** the network configuration, as the runtime wrote it on stdin */
  config: string;
}

export const OPS = ['reserve', 'release', 'status', 'list', 'leases', 'ports', 'check-ports', 'cni'] as const;

/** Longest request line accepted (in socket-path.ts, which the thin clients load). */
export { MAX_REQUEST_BYTES };

export class BadRequestError extends NspawnError {
  constructor(message: string) {
    super('NETD_BAD_REQUEST', message);
  }
}

export type NetdResponse =
  | { ok: true; id?: string | number; result: unknown }
  | { ok: false; id?: string | number; error: { code: string; message: string } };

const FIELDS: Record<(typeof OPS)[number], { required: string[]; optional: string[] }> = {
  reserve: { required: ['machine', 'mac', 'kind'], optional: ['zone', 'ports', 'portLoopback'] },
  'check-ports': { required: ['machine', 'ports'], optional: [] },
  release: { required: ['machine', 'kind'], optional: ['zone'] },
  status: { required: [], optional: [] },
  list: { required: [], optional: [] },
  leases: { required: [], optional: ['ifname'] },
  ports: { required: [], optional: [] },
  cni: { required: ['command', 'containerId', 'netns', 'ifname', 'args', 'config'], optional: [] },
};

function str(op: string, o: Record<string, unknown>, field: string): string {
  const v = o[field];
  if (typeof v !== 'string') throw new BadRequestError(`${op}: "${field}" must be a string, got ${v === null ? 'null' : typeof v}`);
  return v;
}

/** A list of -p specs ("tcp:8080:80"): port forwarding (ports.ts). */
function portList(op: string, value: unknown): PortForward[] {
  try {
    return parsePortList('ports', value);
  } catch (err) {
    throw new BadRequestError(`${op}: ${errorMessage(err)}`);
  }
}

/** Checks a decoded request; throws BadRequestError saying what is wrong. */
export function parseRequest(raw: unknown): NetdRequest {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new BadRequestError('a request is a JSON object like {"op":"status"}');
  const o = raw as Record<string, unknown>;
  const op = o.op;
  if (typeof op !== 'string' || !(OPS as readonly string[]).includes(op)) {
    throw new BadRequestError(`"op" must be one of ${OPS.join(', ')}; got ${JSON.stringify(op) ?? 'nothing'}`);
  }
  const spec = FIELDS[op as (typeof OPS)[number]];
  for (const k of Object.keys(o)) {
    if (k !== 'op' && k !== 'id' && !spec.required.includes(k) && !spec.optional.includes(k)) {
      throw new BadRequestError(`${op}: unknown field "${k}" (allowed: ${[...spec.required, ...spec.optional, 'id'].join(', ')})`);
    }
  }
  for (const k of spec.required) if (!(k in o)) throw new BadRequestError(`${op}: "${k}" is missing`);
  if (o.id !== undefined && typeof o.id !== 'string' && typeof o.id !== 'number') throw new BadRequestError(`${op}: "id" must be a string or number`);

  const machineKind = (): { machine: string; kind: ServedKind; zone?: string } => {
    const machine = str(op, o, 'machine');
    if (!machineNameValid(machine)) {
      throw new BadRequestError(`${op}: "machine" ${JSON.stringify(machine)} is not a valid machine name (1-64 of A-Z a-z 0-9 '-' '.', in labels not starting or ending with '-')`);
    }
    const kind = str(op, o, 'kind');
    if (kind !== 'veth' && kind !== 'zone') throw new BadRequestError(`${op}: "kind" must be "veth" or "zone", got ${JSON.stringify(kind)}`);
    const out: { machine: string; kind: ServedKind; zone?: string } = { machine, kind };
    if (kind === 'zone') {
      if (!('zone' in o)) throw new BadRequestError(`${op}: "zone" is missing (kind "zone" needs the zone name)`);
      const zone = str(op, o, 'zone');
      if (!zoneNameValid(zone)) throw new BadRequestError(`${op}: "zone" ${JSON.stringify(zone)} is not a valid zone name (1-12 characters; "vz-" + zone must be an interface name)`);
      out.zone = zone;
    } else if ('zone' in o) {
      throw new BadRequestError(`${op}: "zone" is only allowed with kind "zone"`);
    }
    return out;
  };

  switch (op) {
    case 'reserve': {
      const mk = machineKind();
      const mac = str(op, o, 'mac');
      let bytes: Uint8Array;
      try {
        bytes = parseMac(mac);
      } catch {
        throw new BadRequestError(`reserve: "mac" ${JSON.stringify(mac)} is not a MAC address like 02:00:5e:10:00:01`);
      }
      if (((bytes[0] as number) & 1) !== 0) throw new BadRequestError(`reserve: "mac" ${mac} is a multicast address; a container's link has a unicast MAC`);
      if (bytes.every((b) => b === 0)) throw new BadRequestError('reserve: "mac" 00:00:00:00:00:00 is not a usable address');
      const out: NetdRequest & { op: 'reserve' } = { op: 'reserve', ...mk, mac: mac.toLowerCase().replace(/-/g, ':') };
      if ('ports' in o) out.ports = portList(op, o.ports);
      if ('portLoopback' in o) {
        if (typeof o.portLoopback !== 'boolean') throw new BadRequestError('reserve: "portLoopback" must be true or false');
        out.portLoopback = o.portLoopback;
      }
      return out;
    }
    case 'check-ports': {
      const machine = str(op, o, 'machine');
      if (!machineNameValid(machine)) throw new BadRequestError(`check-ports: "machine" ${JSON.stringify(machine)} is not a valid machine name`);
      return { op: 'check-ports', machine, ports: portList(op, o.ports) };
    }
    case 'release':
      return { op: 'release', ...machineKind() };
    case 'leases': {
      if (!('ifname' in o)) return { op: 'leases' };
      const ifname = str(op, o, 'ifname');
      if (!ifnameValid(ifname)) throw new BadRequestError(`leases: "ifname" ${JSON.stringify(ifname)} is not an interface name`);
      return { op: 'leases', ifname };
    }
    case 'cni':
      return cniRequest(o);
    default:
      return { op } as NetdRequest;
  }
}

/**
 * The shapes of a cni request: what would reach the file system or the kernel as a name or path is
 * checked here (container ID and interface name without '/', the namespace an absolute path); the
 * configuration's own checks are the CNI plugin's (CNI error 4), and whether the path is a network
 * namespace is the handler's to find out (CNI error 7).
 */
function cniRequest(o: Record<string, unknown>): CniRequest {
  const command = str('cni', o, 'command');
  if (command !== 'ADD' && command !== 'DEL' && command !== 'CHECK') throw new BadRequestError(`cni: "command" must be "ADD", "DEL" or "CHECK", got ${JSON.stringify(command)}`);
  const containerId = str('cni', o, 'containerId');
  if (!/^[A-Za-z0-9][A-Za-z0-9_.-]{0,254}$/.test(containerId)) throw new BadRequestError(`cni: "containerId" ${JSON.stringify(containerId.slice(0, 80))} is not 1-255 letters, digits, _ . - (starting with a letter or digit)`);
  const ifname = str('cni', o, 'ifname');
  if (!ifnameValid(ifname)) throw new BadRequestError(`cni: "ifname" ${JSON.stringify(ifname.slice(0, 80))} is not an interface name`);
  const netns = str('cni', o, 'netns');
  if (netns === '' ? command !== 'DEL' : !netns.startsWith('/') || netns.length > 4096 || netns.includes('\0')) {
    throw new BadRequestError(`cni: "netns" ${JSON.stringify(netns.slice(0, 80))} is not the absolute path of a network namespace${command === 'DEL' ? ' (or "" once it is gone)' : ''}`);
  }
  const args = str('cni', o, 'args');
  if (args.length > 4096) throw new BadRequestError('cni: "args" is longer than 4096 characters');
  return { op: 'cni', command, containerId, netns, ifname, args, config: str('cni', o, 'config') };
}

/** A request as it goes on the wire: ports in -p syntax ("tcp:8080:80"), as parseRequest reads them. */
export function encodeRequest(req: NetdRequest): Record<string, unknown> {
  if ((req.op === 'reserve' || req.op === 'check-ports') && req.ports !== undefined) return { ...req, ports: formatPortList(req.ports) };
  return { ...req };
}

/** Decodes one request line (JSON) and checks it. */
export function decodeRequestLine(line: string): { request: NetdRequest; id?: string | number } {
  if (Buffer.byteLength(line) > MAX_REQUEST_BYTES) throw new BadRequestError(`a request is at most ${MAX_REQUEST_BYTES} bytes`);
  let raw: unknown;
  try {
    raw = JSON.parse(line);
  } catch (err) {
    throw new BadRequestError(`a request is one JSON object per line: ${errorMessage(err)}`);
  }
  const request = parseRequest(raw);
  const id = (raw as { id?: unknown }).id;
  return typeof id === 'string' || typeof id === 'number' ? { request, id } : { request };
}

/** The error object of a response. */
export function errorBody(err: unknown): { code: string; message: string } {
  if (err instanceof NspawnError) return { code: err.code, message: err.message };
  return { code: 'NETD_INTERNAL', message: errorMessage(err) };
}
