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
import { sys } from '../../native.js';
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

const LOCK_EX = 2;
const LOCK_NB = 4;
const LOCK_UN = 8;

function parseState(text: string, file: string): NetdState {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new StateError(`${file} is not JSON (${(err as Error).message}); move it away to start with empty state`, { cause: err });
  }
  const r = raw as Partial<NetdState> | null;
  if (typeof r !== 'object' || r === null || r.version !== STATE_VERSION || typeof r.links !== 'object' || r.links === null) {
    throw new StateError(`${file} is not a version ${STATE_VERSION} network state file; move it away to start with empty state`);
  }
  const links: Record<string, LinkRecord> = {};
  for (const [ifname, l] of Object.entries(r.links)) {
    if (typeof l !== 'object' || l === null || (l.kind !== 'veth' && l.kind !== 'zone') || typeof l.key !== 'string' ||
      typeof l.subnet !== 'string' || !Array.isArray(l.reservations) || !Array.isArray(l.holders)) {
      throw new StateError(`${file}: the record of link "${ifname}" is malformed; move the file away to start with empty state`);
    }
    links[ifname] = {
      kind: l.kind, key: l.key, ifname, ifindex: typeof l.ifindex === 'number' ? l.ifindex : 0, subnet: l.subnet,
      reservations: l.reservations.filter((x): x is ReservationRecord =>
        typeof x === 'object' && x !== null && typeof x.machine === 'string' && typeof x.mac === 'string' && typeof x.address === 'string'),
      holders: l.holders.filter((h): h is Holder => typeof h === 'string'),
      ...(typeof l.prefix6 === 'string' ? { prefix6: l.prefix6 } : {}),
    };
  }
  const out: NetdState = { version: STATE_VERSION, pool: r.pool, links };
  if (typeof r.ipForwardBefore === 'string') out.ipForwardBefore = r.ipForwardBefore;
  if (typeof r.ip6ForwardBefore === 'string') out.ip6ForwardBefore = r.ip6ForwardBefore;
  if (typeof r.portWatchers === 'object' && r.portWatchers !== null) {
    const w = Object.entries(r.portWatchers).filter((e): e is [string, Holder] => typeof e[1] === 'string');
    if (w.length) out.portWatchers = Object.fromEntries(w);
  }
  return out;
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

  /** Reads the state without the lock (a snapshot for status output). */
  peek(): NetdState {
    try {
      return parseState(readFileSync(this.file, 'utf8'), this.file);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return emptyState();
      throw err;
    }
  }

  /**
   * Runs `fn` on the current state with the lock held (in this process and across processes) and
   * writes back what it leaves in the object, unless it throws (then nothing is written).
   */
  update<T>(fn: (state: NetdState) => T | Promise<T>): Promise<T> {
    const run = async (): Promise<T> => {
      mkdirSync(this.dir, { recursive: true, mode: 0o700 });
      const fd = openSync(this.lockFile, 'a', 0o600);
      try {
        // never block the event loop on another process's lock: poll (holders keep it for ms)
        for (let waited = 0; !sys().flock(fd, LOCK_EX | LOCK_NB); waited += 2) {
          if (waited > 30_000) throw new StateError(`${this.lockFile} has been locked by another process for 30 s`);
          await new Promise((r) => setTimeout(r, 2));
        }
        let state: NetdState;
        try {
          state = this.peek();
        } catch (err) {
          if (!(err instanceof StateError)) throw err;
          // unreadable (a write cut short by a power loss): links and firewall are re-read from the
          // kernel, so starting over loses only remembered subnets; keep the file for inspection
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
        try {
          sys().flock(fd, LOCK_UN);
        } finally {
          closeSync(fd);
        }
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
