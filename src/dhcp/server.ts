// The DHCP server: the one stateful piece. It receives frames from the transport, finds the served
// interface by index, decodes, asks decide(), applies the decision to that interface's lease table,
// journals what must survive a crash and sends the reply where RFC 2131 §4.1 says. An ACK is sent
// only once its lease is in the journal (group commit, see journal.ts); offers, NAKs and INFORM
// answers go out at once.
//
// Nothing a client sends can stop it: undecodable bytes are counted and dropped, a malformed option
// makes decide() ignore the request, and any other exception while handling one frame is logged and
// that frame dropped. Interfaces are added and removed at run time (the sidecar adds a container's
// link when it appears); leases of an interface not (yet) served stay in the lease file, so a sidecar
// that restarts and re-adds its links finds them again.
import type { Logger } from '../log.js';
import { logger } from '../log.js';
import { ConfigError } from '../errors.js';
import { applyDecision, DEFAULT_DECLINE_MS, DEFAULT_OFFER_HOLD_MS } from './apply.js';
import { decodePacket, DhcpDecodeError, type DhcpPacket, encodePacket, maxPayloadFor } from './codec.js';
import { type InterfaceConfig, type Reservation, resolveInterfaceConfig, type SubnetConfig } from './config.js';
import { type Decision, decide, nak } from './decide.js';
import { fromHex, inSubnet, ipv4ToString, parseIpv4, parseMac, toHex } from './ipv4.js';
import {
  bindEntry, type Durability, FileLeaseStore, type JournalEntry, type LeaseStore, MemoryLeaseStore, stateEntries,
} from './journal.js';
import { type ClientIdentity, type Lease, LeaseTable } from './leases.js';
import { AllocationError } from './pool.js';
import { MessageType, messageTypeName } from './options.js';
import { releaseReply } from './reply-slabs.js';
import { replyRoute, SERVER_PORT } from './route.js';
import { BROADCAST_MAC, type DhcpTransport, type InboundFrame, PacketTransport } from './transport.js';
import { IP_UDP_HEADERS } from './wire.js';

export interface DhcpServerOptions {
  /** Network namespace (fd) to make the sockets in; default: the caller's. */
  netnsFd?: number;
  /** Replaces the packet-socket transport (tests). */
  transport?: DhcpTransport;
  /** Lease file (journal); without it, and without `store`, leases live in memory only. */
  leaseFile?: string;
  /** Replaces the lease store (tests). */
  store?: LeaseStore;
  /** 'write' (default): an ACK waits for write() of its lease (kill -9 safe), the file is synced within a second; 'fsync': the ACK waits for fdatasync. */
  durability?: Durability;
  /** Wall clock, ms since the epoch; default Date.now. */
  clock?: () => number;
  /** How long an offered address is held for the client; default 30 s. */
  offerHoldMs?: number;
  /** How long a DECLINEd address stays out of use; default 10 min. */
  declineMs?: number;
  /** Compact the lease file once this many records were appended (and outnumber the live ones twice); default 20,000. */
  compactMinRecords?: number;
  log?: Logger;
  /** Called for every lease change (the CLI logs them, the sidecar may publish them). */
  onEvent?: (event: DhcpEvent) => void;
}

export type DhcpEvent =
  | { type: 'bound'; ifname: string; address: string; mac: string; client: string; hostname?: string; leaseTime: number; expiresAt: number; renewed: boolean }
  | { type: 'released' | 'declined' | 'expired'; ifname: string; address: string; mac: string; client: string }
  | { type: 'nak'; ifname: string; mac: string; client: string; reason: string };

export interface LeaseInfo {
  ifname: string;
  address: string;
  mac: string;
  /** "id:<hex of option 61>" or "hw:<htype>:<hex of chaddr>". */
  client: string;
  hostname?: string;
  state: 'offered' | 'bound' | 'released';
  /** ms since the epoch: end of the binding, of the offer hold, or of the memory of a released address. */
  expiresAt: number;
}

export interface DhcpStats {
  received: number;
  notServed: number;
  malformed: number;
  ignored: number;
  offers: number;
  acks: number;
  naks: number;
  informs: number;
  releases: number;
  declines: number;
  sendFailures: number;
  journalFailures: number;
  /** REQUESTs dropped unanswered because too many ACKs were waiting for the lease file already. */
  backlogDrops: number;
  internalErrors: number;
}

interface Served {
  input: InterfaceConfig;
  config: SubnetConfig;
  table: LeaseTable;
}

/** Compact when this many records were appended and they outnumber the live ones twice over. */
const COMPACT_MIN_RECORDS = 20_000;
/** How often offers, leases and quarantines are expired. */
const SWEEP_MS = 1000;
/**
 * At most this many ACKs wait for the lease file (each holds its encoded reply): while the disk is
 * slower than the requests (a stalled fdatasync), further REQUESTs are dropped before anything
 * changes, and their clients ask again. Group commit keeps the real backlog far below this.
 */
export const MAX_ACK_BACKLOG = 4096;

export class DhcpServer {
  private readonly byIndex = new Map<number, Served>();
  private readonly byName = new Map<string, Served>();
  private readonly transport: DhcpTransport;
  private readonly store: LeaseStore;
  private readonly clock: () => number;
  private readonly log: Logger;
  private readonly onEvent: ((e: DhcpEvent) => void) | undefined;
  private readonly offerHoldMs: number;
  private readonly declineMs: number;
  private readonly compactMinRecords: number;
  private sweepTimer: NodeJS.Timeout | undefined;
  private running = false;
  private lastInternalError = 0;
  readonly stats: DhcpStats = {
    received: 0, notServed: 0, malformed: 0, ignored: 0, offers: 0, acks: 0, naks: 0, informs: 0,
    releases: 0, declines: 0, sendFailures: 0, journalFailures: 0, backlogDrops: 0, internalErrors: 0,
  };

  /** Opens the lease file (replaying it) and the sockets; start() begins serving. */
  constructor(opts: DhcpServerOptions = {}) {
    this.clock = opts.clock ?? Date.now;
    this.log = opts.log ?? logger('dhcp');
    this.onEvent = opts.onEvent;
    this.offerHoldMs = opts.offerHoldMs ?? DEFAULT_OFFER_HOLD_MS;
    this.declineMs = opts.declineMs ?? DEFAULT_DECLINE_MS;
    this.compactMinRecords = opts.compactMinRecords ?? COMPACT_MIN_RECORDS;
    this.store = opts.store ?? (opts.leaseFile
      ? new FileLeaseStore(opts.leaseFile, { log: this.log, durability: opts.durability, now: this.clock() })
      : new MemoryLeaseStore());
    try {
      this.transport = opts.transport ?? new PacketTransport({ netnsFd: opts.netnsFd, log: this.log });
    } catch (err) {
      void this.store.close();
      throw err;
    }
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    this.transport.start((f) => this.onFrame(f), (reason) => {
      this.stats.malformed++;
      this.log.debug('dropped a datagram', { reason });
    }, (count) => {
      this.stats.sendFailures += count;
    }, () => {
      // the batch's ACKs are written now and leave with its offers in one sendmmsg
      this.store.commitNow();
    }, {
      served: (ifindex) => this.byIndex.has(ifindex),
      notServed: (delta) => {
        this.stats.received += delta;
        this.stats.notServed += delta;
      },
    });
    this.sweepTimer = setInterval(() => this.sweep(), SWEEP_MS);
    this.sweepTimer.unref();
  }

  /** Stops receiving, lets ACKs waiting for the journal go out, closes the lease file and the sockets. */
  async stop(): Promise<void> {
    if (this.sweepTimer) clearInterval(this.sweepTimer);
    this.sweepTimer = undefined;
    this.running = false;
    this.transport.stopReceiving();
    try {
      await this.store.close();
    } finally {
      this.transport.close();
    }
  }

  // --- served interfaces -------------------------------------------------------------------

  /**
   * Serves an interface. Leases the lease file holds for its name come back. Throws ConfigError
   * (nothing changed) for a bad configuration or an interface already served.
   */
  addInterface(cfg: InterfaceConfig): void {
    const config = resolveInterfaceConfig(cfg);
    if (this.byName.has(config.ifname)) throw new ConfigError(`DHCP interface "${config.ifname}" is already served`, { code: 'CFG_DHCP' });
    if (this.byIndex.has(config.ifindex)) {
      throw new ConfigError(`DHCP interface index ${config.ifindex} is already served (as "${this.byIndex.get(config.ifindex)?.config.ifname}")`, { code: 'CFG_DHCP' });
    }
    const table = new LeaseTable(config);
    const served: Served = { input: { ...cfg, reservations: [...(cfg.reservations ?? [])] }, config, table };
    this.restore(served);
    this.byIndex.set(config.ifindex, served);
    this.byName.set(config.ifname, served);
    this.log.debug('serving DHCP', {
      ifname: config.ifname, ifindex: config.ifindex, server: ipv4ToString(config.serverAddress),
      pool: `${ipv4ToString(config.poolFirst)}-${ipv4ToString(config.poolLast)}`, leases: table.size,
    });
  }

  /** Stops serving an interface and forgets its leases (its link is gone). Returns what it held. */
  removeInterface(ifname: string): LeaseInfo[] {
    const served = this.byName.get(ifname);
    if (!served) {
      if (this.store.loaded.delete(ifname)) this.store.append({ op: 'drop', if: ifname });
      return [];
    }
    const held = [...served.table.entries()].map((l) => leaseInfo(ifname, l));
    served.table.clear();
    this.byName.delete(ifname);
    this.byIndex.delete(served.config.ifindex);
    this.store.append({ op: 'drop', if: ifname });
    return held;
  }

  interfaces(): string[] {
    return [...this.byName.keys()];
  }

  /**
   * Reserves an address for a MAC or client id on a served interface (before the client asks). A
   * different client holding the address loses it. Throws ConfigError for a bad reservation.
   */
  reserve(ifname: string, r: Reservation): void {
    const served = this.served(ifname);
    const others = (served.input.reservations ?? []).filter((x) => !sameClient(x, r) && x.address !== r.address);
    const input = { ...served.input, reservations: [...others, r] };
    const resolved = resolveInterfaceConfig(input);
    const res = resolved.reservations[resolved.reservations.length - 1];
    if (!res) throw new ConfigError(`DHCP interface "${ifname}": reservation was not accepted`, { code: 'CFG_DHCP' });
    served.input = input;
    const displaced = served.table.addReservation(res);
    if (displaced && displaced.state === 'bound') {
      this.log.warn(`reservation of ${r.address} on ${ifname} takes it from ${displaced.mac}`);
      this.store.append({ op: 'release', if: ifname, c: displaced.clientKey, mac: displaced.mac, ip: ipv4ToString(displaced.address), exp: this.clock() });
    }
  }

  /** Removes the reservation of a MAC, client id or address. Returns whether there was one. */
  unreserve(ifname: string, which: { mac?: string; clientId?: string; address?: string }): boolean {
    const served = this.served(ifname);
    const macHex = which.mac !== undefined ? parseMac(which.mac) : undefined;
    const idBytes = which.clientId !== undefined ? fromHex(which.clientId) : undefined;
    const addr = which.address !== undefined ? parseIpv4(which.address) : undefined;
    const target = served.table.reservations().find((r) =>
      (macHex && r.macHex === toHex(macHex)) || (idBytes && r.clientKey === `id:${toHex(idBytes)}`) || (addr !== undefined && r.address === addr));
    if (!target) return false;
    served.table.removeReservation(target);
    served.input.reservations = (served.input.reservations ?? []).filter((x) => parseIpv4(x.address) !== target.address);
    return true;
  }

  /** Leases (and offers, and remembered releases) of one interface or of all. */
  leases(ifname?: string): LeaseInfo[] {
    const list = ifname === undefined ? [...this.byName.values()] : [this.served(ifname)];
    return list.flatMap((s) => [...s.table.entries()].map((l) => leaseInfo(s.config.ifname, l)));
  }

  private served(ifname: string): Served {
    const s = this.byName.get(ifname);
    if (!s) throw new ConfigError(`DHCP interface "${ifname}" is not served (served: ${this.interfaces().join(', ') || 'none'})`, { code: 'CFG_DHCP' });
    return s;
  }

  /** Brings back what the lease file holds for this interface. */
  private restore(served: Served): void {
    const stored = this.store.loaded.get(served.config.ifname);
    if (!stored) return;
    this.store.loaded.delete(served.config.ifname);
    const now = this.clock();
    const c = served.config;
    let skipped = 0;
    for (const r of stored.clients.values()) {
      const a = parseIpv4(r.ip);
      if (a === undefined || !inSubnet(a, c.network, c.prefixLength) || c.excluded.has(a)) {
        skipped++;
        continue;
      }
      const mac = parseMac(r.mac);
      const client: ClientIdentity = { key: r.c, mac: r.mac, macHex: mac ? toHex(mac) : undefined };
      if (r.op === 'bind' && r.exp > now) {
        const reserved = served.table.reservationAt(a);
        if (reserved && !(reserved.clientKey === client.key || (reserved.macHex !== undefined && reserved.macHex === client.macHex))) {
          skipped++;
          continue;
        }
        served.table.bind(client, a, r.exp, r.op === 'bind' ? r.host : undefined, now, true);
      } else if (r.exp > now) {
        served.table.recall(client, a, r.exp);
      }
    }
    for (const [ip, until] of stored.declined) {
      const a = parseIpv4(ip);
      if (a !== undefined && until > now && inSubnet(a, c.network, c.prefixLength)) served.table.quarantineAddress(a, until);
    }
    if (skipped) this.log.warn(`${skipped} stored lease(s) of ${c.ifname} no longer fit its configuration and were dropped`);
  }

  // --- packets -----------------------------------------------------------------------------

  private onFrame(f: InboundFrame): void {
    this.stats.received++;
    const served = this.byIndex.get(f.ifindex);
    if (!served) {
      this.stats.notServed++; // a transport that pairs bridge ports' copies (ingress.ts) counts these itself
      return;
    }
    let packet: DhcpPacket;
    try {
      packet = decodePacket(f.datagram.payload);
    } catch (err) {
      if (!(err instanceof DhcpDecodeError)) throw err;
      this.stats.malformed++;
      this.log.debug('undecodable DHCP message', { ifname: served.config.ifname, error: err.message });
      return;
    }
    if (this.store.backlog >= MAX_ACK_BACKLOG && safeType(packet) === MessageType.REQUEST) {
      this.stats.backlogDrops++;
      return;
    }
    try {
      const now = this.clock();
      const unicast = f.pkttype === 0 && f.datagram.dstIp === served.config.serverAddress;
      const d = decide({ packet, unicast, srcMac: f.srcMac, ingressPort: f.ingressPort }, served.table, now);
      this.apply(served, f, packet, d, now);
    } catch (err) {
      // A bug, not input: keep serving, but say so (at most once a second).
      this.stats.internalErrors++;
      const t = Date.now();
      if (t - this.lastInternalError > 1000) {
        this.lastInternalError = t;
        this.log.error(`internal error handling a DHCP ${messageTypeName(safeType(packet))} on ${served.config.ifname}: ${(err as Error)?.stack ?? String(err)}`);
      }
    }
  }

  private apply(served: Served, f: InboundFrame, packet: DhcpPacket, d: Decision, now: number): void {
    const ifname = served.config.ifname;
    switch (d.kind) {
      case 'ignore':
        this.stats.ignored++;
        applyDecision(served.table, d, now);
        this.log.debug('ignored', { ifname, reason: d.reason, type: messageTypeName(safeType(packet)) });
        return;
      case 'offer':
        try {
          applyDecision(served.table, d, now, { offerHoldMs: this.offerHoldMs });
        } catch (err) {
          if (!(err instanceof AllocationError)) throw err;
          this.stats.ignored++; // the table would not give the address after all: no offer
          this.log.debug('ignored', { ifname, reason: err.message, type: 'DISCOVER' });
          return;
        }
        this.stats.offers++;
        this.send(served, f, packet, d.reply, false);
        return;
      case 'inform':
        this.stats.informs++;
        this.send(served, f, packet, d.reply, false);
        return;
      case 'nak':
        this.stats.naks++;
        applyDecision(served.table, d, now);
        this.send(served, f, packet, d.reply, true);
        this.emit({ type: 'nak', ifname, mac: d.client.mac, client: d.client.key, reason: d.reason });
        return;
      case 'ack': {
        const before = served.table.lease(d.client.key);
        const renewed = before !== undefined && before.state === 'bound' && before.address === d.address && before.expiresAt > now;
        let lease: Lease;
        try {
          lease = applyDecision(served.table, d, now) as Lease;
        } catch (err) {
          // the table refused the binding (another live holder): the client hears NAK, nothing changed
          if (!(err instanceof AllocationError)) throw err;
          this.apply(served, f, packet, nak(packet, served.config, d.client, `${ipv4ToString(d.address)} is not available to this client`), now);
          return;
        }
        this.stats.acks++;
        // Encoded now: nothing of the request is needed once the lease is durable.
        const frame = this.frameFor(served, f, packet, d.reply, false);
        const e: DhcpEvent = {
          type: 'bound', ifname, address: ipv4ToString(d.address), mac: d.client.mac, client: d.client.key,
          leaseTime: d.leaseTime, expiresAt: d.expiresAt, renewed,
        };
        if (lease.hostname) e.hostname = lease.hostname;
        this.store.append(bindEntry(ifname, lease), (err) => {
          if (err) {
            this.stats.journalFailures++;
            this.log.error(`ACK of ${ipv4ToString(d.address)} to ${d.client.mac} on ${ifname} withheld: ${err.message}`);
            releaseReply(frame.payload);
            return;
          }
          if (!this.transport.send(frame)) this.stats.sendFailures++;
          this.emit(e); // the lease is durable and its ACK on the wire
        });
        return;
      }
      case 'release': {
        this.stats.releases++;
        const l = applyDecision(served.table, d, now);
        if (l) this.store.append({ op: 'release', if: ifname, c: l.clientKey, mac: l.mac, ip: ipv4ToString(l.address), exp: l.expiresAt });
        this.emit({ type: 'released', ifname, address: ipv4ToString(d.address), mac: d.client.mac, client: d.client.key });
        return;
      }
      case 'decline':
        this.stats.declines++;
        applyDecision(served.table, d, now, { declineMs: this.declineMs });
        this.store.append({ op: 'decline', if: ifname, ip: ipv4ToString(d.address), until: now + this.declineMs });
        this.emit({ type: 'declined', ifname, address: ipv4ToString(d.address), mac: d.client.mac, client: d.client.key });
        return;
    }
  }

  private frameFor(served: Served, f: InboundFrame, request: DhcpPacket, reply: DhcpPacket, isNak: boolean) {
    const route = replyRoute(request, reply, isNak);
    // Copies: the request's bytes are reused once this handler returns, and an ACK waits for the journal.
    const dstMac = route.kind === 'broadcast' || (route.kind === 'back' && f.srcMac.length !== 6)
      ? BROADCAST_MAC
      : route.kind === 'back' ? f.srcMac.slice(0, 6) : reply.chaddr.slice(0, 6);
    return {
      ifindex: served.config.ifindex,
      dstMac,
      srcIp: served.config.serverAddress,
      dstIp: route.ip,
      srcPort: SERVER_PORT,
      dstPort: route.port,
      payload: encodePacket(reply, { maxSize: maxPayloadFor(request), headroom: IP_UDP_HEADERS }),
      headroom: true,
    };
  }

  private send(served: Served, f: InboundFrame, request: DhcpPacket, reply: DhcpPacket, isNak: boolean): void {
    if (!this.transport.send(this.frameFor(served, f, request, reply, isNak))) this.stats.sendFailures++;
  }

  private emit(e: DhcpEvent): void {
    if (!this.onEvent) return;
    try {
      this.onEvent(e);
    } catch (err) {
      this.log.warn(`DHCP event handler failed: ${(err as Error).message}`);
    }
  }

  // --- time --------------------------------------------------------------------------------

  /** Expires offers, leases and quarantines; compacts the lease file when it has grown. */
  sweep(now = this.clock()): void {
    for (const s of this.byName.values()) {
      for (const ev of s.table.expire(now)) {
        if (ev.what !== 'lease') continue;
        this.emit({ type: 'expired', ifname: s.config.ifname, address: ipv4ToString(ev.lease.address), mac: ev.lease.mac, client: ev.lease.clientKey });
      }
    }
    this.maybeCompact();
  }

  private maybeCompact(): void {
    // not only when the store is idle: under a steady fsync flood it never is, and the file would grow without bound
    if (this.store.compacting || this.store.appendedSinceCompaction < this.compactMinRecords) return;
    let live = 0;
    for (const s of this.byName.values()) live += s.table.size;
    if (this.store.appendedSinceCompaction < 2 * live) return;
    try {
      this.store.compact(this.snapshot());
    } catch (err) {
      this.log.warn(`lease file compaction failed (the journal goes on growing): ${(err as Error).message}`);
    }
  }

  /**
   * Every record that restates the current state: served tables, and interfaces not served now. Taken
   * now (copies of the tables' slots), made into records as the compaction reads them: 50,000 leases
   * are never 50,000 record objects at once.
   */
  private snapshot(): Iterable<JournalEntry> {
    const now = this.clock();
    const tables = [...this.byName.values()].map((s) => ({ ifname: s.config.ifname, entries: s.table.frozenEntries(), quarantined: [...s.table.quarantined()] }));
    const unserved = [...stateEntries(this.store.loaded)];
    return (function* records(): Generator<JournalEntry> {
      for (const { ifname, entries, quarantined } of tables) {
        for (const l of entries) {
          if (l.state === 'bound' && l.expiresAt > now) yield bindEntry(ifname, l);
          else if (l.state === 'released' && l.expiresAt > now) {
            yield { op: 'release', if: ifname, c: l.clientKey, mac: l.mac, ip: ipv4ToString(l.address), exp: l.expiresAt };
          }
        }
        for (const [a, until] of quarantined) if (until > now) yield { op: 'decline', if: ifname, ip: ipv4ToString(a), until };
      }
      yield* unserved;
    })();
  }
}

function leaseInfo(ifname: string, l: Lease): LeaseInfo {
  const info: LeaseInfo = { ifname, address: ipv4ToString(l.address), mac: l.mac, client: l.clientKey, state: l.state, expiresAt: l.expiresAt };
  if (l.hostname) info.hostname = l.hostname;
  return info;
}

function sameClient(a: Reservation, b: Reservation): boolean {
  return (a.mac !== undefined && b.mac !== undefined && a.mac.toLowerCase() === b.mac.toLowerCase())
    || (a.clientId !== undefined && b.clientId !== undefined && a.clientId.toLowerCase() === b.clientId.toLowerCase());
}

function safeType(p: DhcpPacket): number | undefined {
  try {
    return p.options.messageType();
  } catch {
    return undefined;
  }
}

