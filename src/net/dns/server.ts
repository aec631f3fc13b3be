// The DNS server: UDP and TCP on port 53 of each served link's host-side addresses (IPv4, and the
// /64's ::1 where the link has IPv6), and nowhere else.
// A query is answered only for sources on that link (its subnet or /64): the kernel would deliver a packet
// for the host-side address arriving on the uplink too (weak host model), and the server must never
// become an open resolver there. Names come from the NameTable (setLinks(), fed by the network
// subsystem's record); the rest is forwarded (upstream.ts) through the cache (cache.ts), with
// concurrent identical questions sharing one upstream query.
//
// Several launchers serving one zone bridge without a sidecar all run a server for its address; one
// binds, the others stand by and retry every 250 ms (they answer the same names: all read the same
// record), so when the one holding it stops another takes over.
import { createSocket, type Socket } from 'node:dgram';
import { createServer, isIPv6, type Server, type Socket as TcpSocket } from 'node:net';
import { errorMessage } from '../../errors.js';
import { logger, type Logger } from '../../log.js';
import { AnswerCache, cacheKey, type CachedAnswer } from './cache.js';
import { decide, DEFAULT_LOCAL_TTL } from './decide.js';
import { BADVERS, encodeAnswer, encodeHeaderOnly, parseQuery, RCODE, udpLimit, type Query } from './message.js';
import { type DnsLink, NameTable } from './names.js';
import { DEFAULT_RATE, RateLimiter } from './ratelimit.js';
import { Forwarder, type ForwarderOptions, type ForwardQuestion } from './upstream.js';
import { WireCache } from './wire-cache.js';
import { ResolvedRegistrar } from './resolved.js';

export interface DnsServerOptions {
  /** the machine domain (default "machine") */
  domain?: string;
  /** default 53 */
  port?: number;
  forwarder?: Forwarder | ForwarderOptions;
  /** queries per second per source (0: unlimited); default DEFAULT_RATE */
  rate?: number;
  localTtl?: number;
  cacheEntries?: number;
  /** TCP connections per address */
  maxTcp?: number;
  /** registers each link with systemd-resolved where it runs (default); false: never */
  resolved?: ResolvedRegistrar | false;
  log?: Logger;
}

interface Listener {
  address: string;
  link: DnsLink;
  /** registered with systemd-resolved (reverted when the listener closes) */
  registered?: boolean;
  udp?: Socket;
  tcp?: Server;
  tcpConnections: Set<TcpSocket>;
  retry?: NodeJS.Timeout;
  /** the bind attempt under way */
  pending?: Promise<void>;
  closed: boolean;
}

const STANDBY_RETRY_MS = 250;
const TCP_IDLE_MS = 10_000;

export class DnsServer {
  readonly table: NameTable;
  readonly port: number;
  readonly forwarder: Forwarder;
  readonly cache: AnswerCache;
  readonly limiter: RateLimiter;
  readonly wire = new WireCache();
  private readonly localTtl: number;
  private readonly maxTcp: number;
  private readonly log: Logger;
  private readonly resolved: ResolvedRegistrar | undefined;
  private readonly listeners = new Map<string, Listener>();
  private readonly inflight = new Map<string, Promise<CachedAnswer>>();
  private closed = false;
  readonly stats = { queries: 0, repeated: 0, local: 0, forwarded: 0, cached: 0, servfail: 0, formerr: 0, dropped: 0, refused: 0 };

  constructor(opts: DnsServerOptions = {}) {
    this.table = new NameTable(opts.domain);
    this.port = opts.port ?? 53;
    const exclude = (): ReadonlySet<string> => new Set(this.table.addresses());
    this.forwarder = opts.forwarder instanceof Forwarder ? opts.forwarder : new Forwarder({ exclude, ...opts.forwarder });
    this.cache = new AnswerCache(opts.cacheEntries !== undefined ? { maxEntries: opts.cacheEntries } : {});
    this.limiter = new RateLimiter({ rate: opts.rate ?? DEFAULT_RATE });
    this.localTtl = opts.localTtl ?? DEFAULT_LOCAL_TTL;
    this.maxTcp = opts.maxTcp ?? 64;
    this.log = opts.log ?? logger('dns');
    this.resolved = opts.resolved === false ? undefined : opts.resolved ?? new ResolvedRegistrar(this.log);
  }

  /**
   * The served links, all of them (replaces the previous set): names change at once; listeners
   * open on new host-side addresses and close on addresses no longer served.
   */
  setLinks(links: readonly DnsLink[]): void {
    if (this.closed) return;
    this.table.set(links);
    const want = new Map<string, DnsLink>();
    for (const l of links) {
      want.set(l.hostAddress, l);
      if (l.hostAddress6 !== undefined) want.set(l.hostAddress6, l);
    }
    for (const [addr, l] of this.listeners) {
      if (!want.has(addr)) {
        this.closeListener(l);
        this.listeners.delete(addr);
      }
    }
    for (const [addr, link] of want) {
      const cur = this.listeners.get(addr);
      if (cur) {
        cur.link = link;
        continue;
      }
      const l: Listener = { address: addr, link, tcpConnections: new Set(), closed: false };
      this.listeners.set(addr, l);
      this.bind(l);
    }
  }

  /** The machine domain it answers (DNSSL in router advertisements). */
  get domain(): string {
    return this.table.domain;
  }

  /** Addresses this server holds port 53 on (the others stand by). */
  bound(): string[] {
    return [...this.listeners.values()].filter((l) => l.udp && l.tcp).map((l) => l.address);
  }

  /** Resolves when every listener is bound (or standing by after its first try). */
  async ready(): Promise<void> {
    await Promise.all([...this.listeners.values()].map((l) => l.pending ?? Promise.resolve()));
  }

  private bind(l: Listener): void {
    l.pending = this.tryBind(l).then((ok) => {
      if (ok || l.closed || this.closed) return;
      l.retry = setTimeout(() => this.bind(l), STANDBY_RETRY_MS);
      l.retry.unref();
    });
  }

  private async tryBind(l: Listener): Promise<boolean> {
    const udp = createSocket({ type: isIPv6(l.address) ? 'udp6' : 'udp4' });
    const tcp = createServer({ pauseOnConnect: false });
    try {
      await new Promise<void>((resolve, reject) => {
        udp.once('error', reject);
        udp.bind({ address: l.address, port: this.port, exclusive: true }, () => {
          udp.off('error', reject);
          resolve();
        });
      });
      await new Promise<void>((resolve, reject) => {
        tcp.once('error', reject);
        tcp.listen({ host: l.address, port: this.port, exclusive: true }, () => {
          tcp.off('error', reject);
          resolve();
        });
      });
    } catch (err) {
      udp.close();
      tcp.close();
      const code = (err as NodeJS.ErrnoException).code;
      // EADDRINUSE: another launcher on the zone answers (we stand by); EADDRNOTAVAIL: the address is not there yet
      if (code !== 'EADDRINUSE' && code !== 'EADDRNOTAVAIL') this.log.warn(`cannot listen on ${l.address}:${this.port}: ${errorMessage(err)}`);
      return false;
    }
    if (l.closed || this.closed) {
      udp.close();
      tcp.close();
      return true;
    }
    udp.on('error', (err) => this.log.warn(`DNS socket on ${l.address}: ${errorMessage(err)}`));
    udp.on('message', (msg, rinfo) => this.onUdp(l, udp, msg, rinfo.address, rinfo.port));
    tcp.on('connection', (sock) => this.onTcp(l, sock));
    tcp.on('error', (err) => this.log.warn(`DNS TCP listener on ${l.address}: ${errorMessage(err)}`));
    l.udp = udp;
    l.tcp = tcp;
    this.log.debug(`answering DNS on ${l.address}:${this.port}`);
    const ifindex = l.link.ifindex;
    // once per link (from its IPv4 listener), with both of its addresses
    if (this.resolved && ifindex !== undefined && this.port === 53 && l.address === l.link.hostAddress) {
      const reg = { ifindex, ifname: l.link.ifname, address: l.address, domain: this.table.domain };
      void this.resolved.register(l.link.hostAddress6 === undefined ? reg : { ...reg, address6: l.link.hostAddress6 }).then((ok) => {
        l.registered = ok;
      });
    }
    return true;
  }

  private closeListener(l: Listener): void {
    l.closed = true;
    if (l.retry) clearTimeout(l.retry);
    l.udp?.close();
    l.tcp?.close();
    for (const c of l.tcpConnections) c.destroy();
    if (l.registered && l.link.ifindex !== undefined) void this.resolved?.revert(l.link.ifindex, l.link.ifname);
    delete l.udp;
    delete l.tcp;
  }

  private onUdp(l: Listener, udp: Socket, msg: Buffer, address: string, port: number): void {
    const out = this.handle(msg, address, l.address, 'udp');
    const send = (buf: Buffer | undefined): void => {
      if (buf && !l.closed) udp.send(buf, port, address);
    };
    if (out instanceof Promise) out.then(send, (err: unknown) => this.log.warn(`answering a query failed: ${errorMessage(err)}`));
    else send(out);
  }

  private onTcp(l: Listener, sock: TcpSocket): void {
    if (l.tcpConnections.size >= this.maxTcp) {
      sock.destroy();
      return;
    }
    l.tcpConnections.add(sock);
    sock.setTimeout(TCP_IDLE_MS, () => sock.destroy());
    sock.on('close', () => l.tcpConnections.delete(sock));
    sock.on('error', () => sock.destroy());
    let buf: Buffer = Buffer.alloc(0);
    sock.on('data', (chunk: Buffer) => {
      buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk]);
      while (buf.length >= 2) {
        const len = buf.readUInt16BE(0);
        if (buf.length < 2 + len) break;
        const msg = buf.subarray(2, 2 + len);
        buf = buf.subarray(2 + len);
        const out = this.handle(Buffer.from(msg), sock.remoteAddress ?? '', l.address, 'tcp');
        const write = (ans: Buffer | undefined): void => {
          if (!ans || sock.destroyed) return;
          const head = Buffer.alloc(2);
          head.writeUInt16BE(ans.length, 0);
          sock.write(Buffer.concat([head, ans]));
        };
        if (out instanceof Promise) out.then(write, () => sock.destroy());
        else write(out);
      }
    });
  }

  /**
   * The answer to one message from `source` that arrived on `hostAddress`, or undefined (dropped).
   * Synchronous for what is answered locally or from the cache; a Promise when forwarded.
   */
  handle(msg: Buffer, source: string, hostAddress: string, transport: 'udp' | 'tcp'): Buffer | undefined | Promise<Buffer | undefined> {
    this.stats.queries++;
    const link = this.table.forLink(hostAddress);
    if (!link?.onLink(source)) {
      this.stats.dropped++;
      if (this.stats.dropped <= 10) this.log.debug(`dropped a query from ${source} to ${hostAddress}: not from that link`);
      return undefined;
    }
    if (transport === 'udp' && !this.limiter.allow(link.limitKey(source))) {
      this.stats.dropped++;
      return undefined;
    }
    // a query seen before (same bytes but the ID, same link): its encoded answer
    const wkey = transport === 'udp' && msg.length >= 12 ? WireCache.key(hostAddress, msg) : undefined;
    if (wkey !== undefined) {
      const again = this.wire.get(wkey, msg, this.table.generation);
      if (again) {
        this.stats.repeated++;
        return again;
      }
    }
    const parsed = parseQuery(msg);
    if (!parsed.ok) {
      if (parsed.id === undefined) {
        this.stats.dropped++;
        return undefined;
      }
      this.stats.formerr++;
      return encodeHeaderOnly(parsed.id, parsed.flags, parsed.rcode);
    }
    const q = parsed.query;
    const limit = transport === 'udp' ? udpLimit(q.edns) : 65535;
    if (q.edns && q.edns.version > 0) return encodeAnswer(q, { rcode: BADVERS }, limit);
    const d = decide(q, link, this.table, this.localTtl);
    if (d.kind === 'answer') {
      if (d.parts.rcode === RCODE.REFUSED) this.stats.refused++;
      else this.stats.local++;
      const out = encodeAnswer(q, d.parts, limit);
      if (wkey !== undefined) this.wire.putLocal(wkey, out, this.table.generation);
      return out;
    }
    const fq: ForwardQuestion = {
      name: q.name, type: q.question.type, class: q.question.class, dnssecOk: q.edns?.do ?? false, checkingDisabled: (q.flags & 0x0010) !== 0,
    };
    const key = cacheKey(fq.name, fq.type, fq.class, fq.dnssecOk);
    const hit = this.cache.get(key);
    if (hit) {
      this.stats.cached++;
      const out = encodeAnswer(q, hit.value, limit);
      if (wkey !== undefined) this.wire.putTimed(wkey, out, hit.exactForMs);
      return out;
    }
    return this.forward(q, fq, key, limit);
  }

  private async forward(q: Query, fq: ForwardQuestion, key: string, limit: number): Promise<Buffer> {
    this.stats.forwarded++;
    let pending = this.inflight.get(key);
    if (!pending) {
      pending = this.forwarder.resolve(fq);
      this.inflight.set(key, pending);
      void pending.then((a) => this.cache.put(key, a), () => undefined).finally(() => this.inflight.delete(key));
    }
    try {
      const a = await pending;
      return encodeAnswer(q, a, limit);
    } catch (err) {
      this.stats.servfail++;
      this.log.debug(`SERVFAIL for ${q.name}: ${errorMessage(err)}`);
      return encodeAnswer(q, { rcode: RCODE.SERVFAIL }, limit);
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const l of this.listeners.values()) this.closeListener(l);
    this.listeners.clear();
  }
}
