// The network subsystem's persistent state, `<state dir>/netd/state.json`: the subnet pool (which
// machine and zone has which subnet, also remembered while they are away), the links being served
// with their reservations (machine → MAC → address), who holds each link (the sidecar, or the PID of
// an embedded launcher), and what we changed in sysctls, to put back.
//
// Several processes may use it at once — a sidecar, or, without one, every launcher that runs its
// container's network in-process — so each change is a read-modify-write under an exclusive flock
// of `<state dir>/netd/lock`, and the file is replaced atomically (temporary file + rename), so a
// kill -9 at any point leaves the old or the new state, never a torn one.
import { closeSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, writeSync } from 'node:fs';
import { NspawnError } from '../../errors.js';
import { logger } from '../../log.js';
import { type FileLock, lock, LockTimeoutError } from '../../common/lock.js';
import type { PoolState } from '../pool.js';
import type { ServedKind } from './links.js';
import type { PortForward } from '../model.js';
import { processStartTime } from '../../common/proc.js';

export const STATE_VERSION = 1;

const log = logger('netd');

export interface ReservationRecord {
  machine: string;
  /** the container side's MAC ("02:…"), lower case */
  mac: string;
  address: string;
  /** -p/Port= of the machine, forwarded to `address` (ports.ts) */
  ports?: PortForward[];
  /** --port-loopback: 127.0.0.1:HOSTPORT too */
  portLoopback?: boolean;
  /**
   * The embedded launcher that made it (a sidecar's reservations have none: the sidecar follows
   * their links): when that process is gone, so is the reservation (subsystem sweepDeadHolders).
   */
  holder?: Holder;
}

/** A holder of a served link: the sidecar, or an embedded launcher (PID and start time). */
export type Holder = 'sidecar' | `pid:${number}:${string}`;

/** A process as a holder: PID and start time (a reused PID is not the same holder); `tag` tells instances apart. */
export function processHolder(tag = ''): Holder {
  return `pid:${process.pid}:${processStartTime(process.pid) ?? '0'}${tag}`;
}

/** Whether a holder is still there (the sidecar always counts as alive to an embedded instance). */
export function holderAlive(h: Holder): boolean {
  if (h === 'sidecar') return true;
  const m = /^pid:(\d+):(\d+)(?:#\d+)?$/.exec(h);
  if (!m) return false;
  return processStartTime(Number(m[1])) === m[2];
}

export interface LinkRecord {
  kind: ServedKind;
  /** machine (veth) or zone name */
  key: string;
  ifname: string;
  ifindex: number;
  /** "192.168.37.16/28" */
  subnet: string;
  /** the link's IPv6 /64, "fd12:3456:789a:2b4::/64" (netd/ipv6.ts), when it has IPv6 */
  prefix6?: string;
  reservations: ReservationRecord[];
  holders: Holder[];
}

export interface NetdState {
  version: typeof STATE_VERSION;
  pool: PoolState | undefined;
  /** by ifname */
  links: Record<string, LinkRecord>;
  /** net.ipv4.ip_forward before we set it to 1 (put back when the last served link goes) */
  ipForwardBefore?: string;
  /** net.ipv6.conf.all.forwarding before we set it to 1, likewise */
  ip6ForwardBefore?: string;
  /**
   * Who else needs forwarding on besides the served links: nspawn-cni's ipam networks ("cni:NAME"),
   * each while it has a container. The values above are put back only when both are gone (sysctl.ts).
   */
  forwardingUsers?: string[];
  /**
   * Port owners (machine names) whose launcher maps their ports itself, following the container's
   * address (ports-watch.ts: --network-bridge=, --network-macvlan=, …), with that launcher: their
   * mappings are kept while it runs (registered or not) and swept once it is gone.
   */
  portWatchers?: Record<string, Holder>;
}

export class StateError extends NspawnError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('NETD_STATE', message, options);
  }
}

export function emptyState(): NetdState {
  return { version: STATE_VERSION, pool: undefined, links: {} };
}

/** A schema error at `where` (a JSON path) in the state file. */
class Malformed extends Error {}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const isPort = (v: unknown): boolean => Number.isInteger(v) && (v as number) >= 1 && (v as number) <= 65535;

function need(ok: boolean, where: string, what: string): void {
  if (!ok) throw new Malformed(`${where} is not ${what}`);
}

function checkHolder(v: unknown, where: string): Holder {
  need(typeof v === 'string' && (v === 'sidecar' || /^pid:\d+:\d+(#\d+)?$/.test(v)), where, 'a holder ("sidecar" or "pid:PID:START")');
  return v as Holder;
}

function checkPorts(v: unknown, where: string): PortForward[] {
  need(Array.isArray(v), where, 'a list');
  return (v as unknown[]).map((p, i) => {
    const at = `${where}[${i}]`;
    need(isObject(p), at, 'an object');
    const o = p as Record<string, unknown>;
    need(o.protocol === 'tcp' || o.protocol === 'udp', `${at}.protocol`, '"tcp" or "udp"');
    for (const k of ['hostPort', 'hostPortEnd', 'containerPort', 'containerPortEnd']) need(isPort(o[k]), `${at}.${k}`, 'a port number');
    return { protocol: o.protocol as 'tcp' | 'udp', hostPort: o.hostPort as number, hostPortEnd: o.hostPortEnd as number,
      containerPort: o.containerPort as number, containerPortEnd: o.containerPortEnd as number };
  });
}

function checkReservation(v: unknown, where: string): ReservationRecord {
  need(isObject(v), where, 'an object');
  const o = v as Record<string, unknown>;
  for (const k of ['machine', 'mac', 'address']) need(typeof o[k] === 'string' && (o[k] as string).length > 0, `${where}.${k}`, 'a string');
  const r: ReservationRecord = { machine: o.machine as string, mac: o.mac as string, address: o.address as string };
  if (o.ports !== undefined) r.ports = checkPorts(o.ports, `${where}.ports`);
  if (o.portLoopback !== undefined) {
    need(typeof o.portLoopback === 'boolean', `${where}.portLoopback`, 'true or false');
    r.portLoopback = o.portLoopback as boolean;
  }
  if (o.holder !== undefined) r.holder = checkHolder(o.holder, `${where}.holder`);
  return r;
}

function checkLink(ifname: string, v: unknown): LinkRecord {
  const where = `links["${ifname}"]`;
  need(isObject(v), where, 'an object');
  const l = v as Record<string, unknown>;
  need(l.kind === 'veth' || l.kind === 'zone', `${where}.kind`, '"veth" or "zone"');
  need(typeof l.key === 'string' && l.key.length > 0, `${where}.key`, 'a string');
  need(typeof l.subnet === 'string' && /^\d+\.\d+\.\d+\.\d+\/\d+$/.test(l.subnet), `${where}.subnet`, 'a subnet like 192.168.37.16/28');
  need(l.ifindex === undefined || (Number.isInteger(l.ifindex) && (l.ifindex as number) >= 0), `${where}.ifindex`, 'an interface index');
  need(Array.isArray(l.reservations), `${where}.reservations`, 'a list');
  need(Array.isArray(l.holders), `${where}.holders`, 'a list');
  const prefix6 = l.prefix6;
  need(prefix6 === undefined || (typeof prefix6 === 'string' && /^[0-9a-f:]+\/64$/.test(prefix6)), `${where}.prefix6`, 'an IPv6 /64 like fd12:3456:789a:1::/64');
  return {
    kind: l.kind as ServedKind, key: l.key as string, ifname, ifindex: (l.ifindex as number | undefined) ?? 0, subnet: l.subnet as string,
    reservations: (l.reservations as unknown[]).map((r, i) => checkReservation(r, `${where}.reservations[${i}]`)),
    holders: (l.holders as unknown[]).map((h, i) => checkHolder(h, `${where}.holders[${i}]`)),
    ...(typeof prefix6 === 'string' ? { prefix6 } : {}),
  };
}

function checkPool(v: unknown): PoolState | undefined {
  if (v === undefined || v === null) return undefined;
  need(isObject(v), 'pool', 'an object');
  const p = v as Record<string, unknown>;
  need(p.version === 1, 'pool.version', '1');
  need(Array.isArray(p.entries), 'pool.entries', 'a list');
  const entries = (p.entries as unknown[]).map((e, i) => {
    const at = `pool.entries[${i}]`;
    need(isObject(e), at, 'an object');
    const o = e as Record<string, unknown>;
    need(o.kind === 'veth' || o.kind === 'zone', `${at}.kind`, '"veth" or "zone"');
    need(typeof o.key === 'string' && o.key.length > 0, `${at}.key`, 'a string');
    need(typeof o.subnet === 'string' && /^\d+\.\d+\.\d+\.\d+\/\d+$/.test(o.subnet), `${at}.subnet`, 'a subnet');
    need(typeof o.active === 'boolean', `${at}.active`, 'true or false');
    need(Number.isFinite(o.used) && (o.used as number) >= 0, `${at}.used`, 'a number');
    return { kind: o.kind as PoolState['entries'][number]['kind'], key: o.key as string, subnet: o.subnet as string, active: o.active as boolean, used: o.used as number };
  });
  return { version: 1, entries };
}

/**
 * Parses and checks the whole file: any value of a wrong type anywhere is a StateError (the caller
 * sets the file aside and starts empty), never a TypeError later in whatever reads the field.
 */
export function parseState(text: string, file: string): NetdState {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new StateError(`${file} is not JSON (${(err as Error).message})`, { cause: err });
  }
  try {
    need(isObject(raw), 'the file', 'a JSON object');
    const r = raw as Record<string, unknown>;
    need(r.version === STATE_VERSION, 'version', String(STATE_VERSION));
    need(isObject(r.links), 'links', 'an object');
    const links: Record<string, LinkRecord> = {};
    for (const [ifname, l] of Object.entries(r.links as Record<string, unknown>)) links[ifname] = checkLink(ifname, l);
    const out: NetdState = { version: STATE_VERSION, pool: checkPool(r.pool), links };
    if (r.ipForwardBefore !== undefined) {
      need(typeof r.ipForwardBefore === 'string', 'ipForwardBefore', 'a string');
      out.ipForwardBefore = r.ipForwardBefore as string;
    }
    if (r.ip6ForwardBefore !== undefined) {
      need(typeof r.ip6ForwardBefore === 'string', 'ip6ForwardBefore', 'a string');
      out.ip6ForwardBefore = r.ip6ForwardBefore as string;
    }
    if (r.forwardingUsers !== undefined) {
      need(Array.isArray(r.forwardingUsers) && (r.forwardingUsers as unknown[]).every((u) => typeof u === 'string' && u.length > 0), 'forwardingUsers', 'a list of names');
      if ((r.forwardingUsers as string[]).length) out.forwardingUsers = r.forwardingUsers as string[];
    }
    if (r.portWatchers !== undefined) {
      need(isObject(r.portWatchers), 'portWatchers', 'an object');
      const w = Object.entries(r.portWatchers as Record<string, unknown>).map(([k, h]) => [k, checkHolder(h, `portWatchers["${k}"]`)] as const);
      if (w.length) out.portWatchers = Object.fromEntries(w);
    }
    return out;
  } catch (err) {
    if (!(err instanceof Malformed)) throw err;
    throw new StateError(`${file} is not a version ${STATE_VERSION} network state file: ${err.message}`, { cause: err });
  }
}

/** The state file and its lock. */
export class StateStore {
  readonly dir: string;
  readonly file: string;
  private readonly lockFile: string;
  /** in-process queue: flock does not exclude two async operations of one process */
  private queue: Promise<unknown> = Promise.resolve();

  private readonly durable: boolean;

  /** `durable`: fsync each write (default true). */
  constructor(stateDir: string, opts: { durable?: boolean } = {}) {
    this.durable = opts.durable ?? true;
    this.dir = `${stateDir.replace(/\/+$/, '')}/netd`;
    this.file = `${this.dir}/state.json`;
    this.lockFile = `${this.dir}/lock`;
  }

  /**
   * Reads the state without the lock (a snapshot). A file that is not a valid state reads as the
   * empty state: the next update() sets it aside under the lock and starts from there.
   */
  peek(): NetdState {
    try {
      return this.read();
    } catch (err) {
      if (err instanceof StateError) return emptyState();
      throw err;
    }
  }

  private read(): NetdState {
    let text: string;
    try {
      text = readFileSync(this.file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return emptyState();
      throw err;
    }
    return parseState(text, this.file);
  }

  /**
   * Runs `fn` on the current state with the lock held (in this process and across processes) and
   * writes back what it leaves in the object, unless it throws (then nothing is written).
   */
  update<T>(fn: (state: NetdState) => T | Promise<T>): Promise<T> {
    const run = async (): Promise<T> => {
      mkdirSync(this.dir, { recursive: true, mode: 0o700 });
      let held: FileLock;
      try {
        // waits on timers: the loop that waits may be serving DHCP (holders keep it for ms)
        held = await lock(this.lockFile, { timeoutMs: 30_000, createDir: false });
      } catch (err) {
        if (err instanceof LockTimeoutError) throw new StateError(`${this.lockFile} has been locked by another process for 30 s`, { cause: err });
        throw err;
      }
      try {
        let state: NetdState;
        try {
          state = this.read();
        } catch (err) {
          if (!(err instanceof StateError)) throw err;
          // unreadable (a write cut short by a power loss, an edit by hand): links and firewall are
          // re-read from the kernel, so starting over loses only remembered subnets; the file is
          // kept for inspection
          const aside = `${this.file}.corrupt-${Date.now()}`;
          renameSync(this.file, aside);
          log.warn(`${err.message}; moved it to ${aside} and started with empty state`);
          state = emptyState();
        }
        const before = JSON.stringify(state);
        const result = await fn(state);
        const after = JSON.stringify(state);
        if (after !== before) this.write(after);
        return result;
      } finally {
        held.release();
      }
    };
    const p = this.queue.then(run, run);
    this.queue = p.catch(() => undefined);
    return p;
  }

  private write(text: string): void {
    const tmp = `${this.file}.${process.pid}.tmp`;
    const fd = openSync(tmp, 'w', 0o600);
    try {
      writeSync(fd, text + '\n');
      if (this.durable) fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, this.file);
  }
}
