// Forwarding to the host's resolvers. The upstreams are the host's own: /etc/resolv.conf's name
// servers — or, when that points at systemd-resolved's stub (127.0.0.53/127.0.0.54), the real
// upstreams resolved uses (/run/systemd/resolve/resolv.conf): going through the stub would loop
// back to us for the machine domain once it is registered with resolved. The list is re-read when
// the file changes (a DHCP client on the host rewrites it).
//
// Each query goes out from a fresh socket (a random source port, connected to the upstream so only
// its datagrams arrive) with a random ID; the answer must match ID and question. A truncated answer
// is asked again over TCP. An upstream that times out or answers SERVFAIL/REFUSED is skipped for the
// next one, and the last one that answered is tried first (failover); when all fail the caller gets
// an UpstreamError, and answers SERVFAIL.
import { createSocket } from 'node:dgram';
import { connect } from 'node:net';
import { randomInt } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { isIP } from 'node:net';
import dnsPacket from 'dns-packet';
import type { DecodedPacket, Packet, Question } from 'dns-packet';
import { NspawnError } from '../../errors.js';
import { nameservers } from '../resolv.js';
import type { CachedAnswer } from './cache.js';
import { EDNS_UDP_SIZE, RCODE } from './message.js';

export interface Upstream {
  address: string;
  port: number;
}

export class UpstreamError extends NspawnError {}

const RESOLVED_STUBS = new Set(['127.0.0.53', '127.0.0.54']);

export interface UpstreamSource {
  host: string;
  uplink: string;
}

export const DEFAULT_UPSTREAM_SOURCE: UpstreamSource = { host: '/etc/resolv.conf', uplink: '/run/systemd/resolve/resolv.conf' };

function readText(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
}

/** "192.0.2.53", "2001:db8::53" and, for tests, "192.0.2.53:5353" / "[2001:db8::53]:5353". */
export function parseUpstream(text: string): Upstream | undefined {
  const bracket = /^\[([^\]]+)\](?::(\d+))?$/.exec(text);
  const plain = /^([^:]+):(\d+)$/.exec(text);
  const [address, port] = bracket ? [bracket[1] ?? '', bracket[2]] : plain ? [plain[1] ?? '', plain[2]] : [text, undefined];
  if (isIP(address) === 0 || address.includes('%')) return undefined; // also refuses scoped link-local addresses ("fe80::1%eth0")
  const p = port === undefined ? 53 : Number(port);
  return p >= 1 && p <= 65535 ? { address, port: p } : undefined;
}

/** The upstreams the host uses, without `exclude` (our own listening addresses: no loops). */
export function hostUpstreams(source: UpstreamSource = DEFAULT_UPSTREAM_SOURCE, exclude: ReadonlySet<string> = new Set()): Upstream[] {
  const fromText = (text: string | undefined): Upstream[] =>
    (text === undefined ? [] : nameservers(text)).map(parseUpstream).filter((u): u is Upstream => u !== undefined && !exclude.has(u.address));
  const host = fromText(readText(source.host));
  const real = host.filter((u) => !RESOLVED_STUBS.has(u.address));
  if (real.length > 0) return real;
  // only resolved's stub (or nothing): its upstreams
  const uplink = fromText(readText(source.uplink)).filter((u) => !RESOLVED_STUBS.has(u.address));
  return uplink.length > 0 ? uplink : host;
}

export interface ForwarderOptions {
  /** fixed upstreams; default: the host's, re-read when its resolv.conf changes */
  servers?: Upstream[];
  source?: UpstreamSource;
  /** never forward to these (our listening addresses) */
  exclude?: () => ReadonlySet<string>;
  /** per upstream and attempt, ms */
  timeoutMs?: number;
}

export interface ForwardQuestion {
  name: string;
  type: Question['type'];
  class: NonNullable<Question['class']>;
  dnssecOk: boolean;
  checkingDisabled: boolean;
}

function sameQuestion(a: Question | undefined, q: ForwardQuestion): boolean {
  return a !== undefined && a.name.toLowerCase() === q.name.toLowerCase() && a.type === q.type && (a.class ?? 'IN') === q.class;
}

function toAnswer(p: DecodedPacket): CachedAnswer {
  const rcode = (p.flags ?? 0) & 0xf;
  return {
    rcode, authenticData: p.flag_ad,
    answers: p.answers ?? [], authorities: p.authorities ?? [], additionals: (p.additionals ?? []).filter((r) => r.type !== 'OPT'),
  };
}

export class Forwarder {
  private readonly fixed: Upstream[] | undefined;
  private readonly source: UpstreamSource;
  private readonly exclude: () => ReadonlySet<string>;
  private readonly timeoutMs: number;
  private list: Upstream[] = [];
  private listStamp = '';
  private checkedAt = 0;
  /** index of the upstream that answered last: tried first */
  private preferred = 0;
  readonly stats = { udp: 0, tcp: 0, timeouts: 0, failures: 0 };

  constructor(opts: ForwarderOptions = {}) {
    this.fixed = opts.servers;
    this.source = opts.source ?? DEFAULT_UPSTREAM_SOURCE;
    this.exclude = opts.exclude ?? (() => new Set());
    this.timeoutMs = opts.timeoutMs ?? 2000;
  }

  /** The current upstreams (re-reads the host's files at most once a second, when they changed). */
  upstreams(): Upstream[] {
    if (this.fixed) return this.fixed.filter((u) => !this.exclude().has(u.address));
    const now = Date.now();
    if (now - this.checkedAt >= 1000 || this.checkedAt === 0) {
      this.checkedAt = now;
      const stamp = [this.source.host, this.source.uplink].map((p) => {
        try {
          const s = statSync(p);
          return `${s.ino}:${s.mtimeMs}:${s.size}`;
        } catch {
          return '-';
        }
      }).join('|');
      if (stamp !== this.listStamp) {
        this.listStamp = stamp;
        this.list = hostUpstreams(this.source, this.exclude());
        this.preferred = 0;
      }
    }
    return this.list;
  }

  /** Asks the upstreams in turn; resolves with the first usable answer, or throws UpstreamError. */
  async resolve(q: ForwardQuestion): Promise<CachedAnswer> {
    const ups = this.upstreams();
    if (ups.length === 0) throw new UpstreamError('DNS_NO_UPSTREAM', 'no upstream DNS server (the host\'s resolv.conf lists none usable)');
    const problems: string[] = [];
    for (let i = 0; i < ups.length; i++) {
      const idx = (this.preferred + i) % ups.length;
      const up = ups[idx] as Upstream;
      try {
        let p = await this.askUdp(up, q);
        if (p.flag_tc) p = await this.askTcp(up, q);
        const a = toAnswer(p);
        if (a.rcode === RCODE.SERVFAIL || a.rcode === RCODE.REFUSED || a.rcode === RCODE.NOTIMP) {
          problems.push(`${up.address}: rcode ${a.rcode}`);
          continue;
        }
        this.preferred = idx;
        return a;
      } catch (err) {
        problems.push(`${up.address}: ${(err as Error).message}`);
      }
    }
    this.stats.failures++;
    throw new UpstreamError('DNS_UPSTREAM_FAILED', `every upstream failed for ${q.name} ${q.type}: ${problems.join('; ')}`);
  }

  private packet(q: ForwardQuestion, id: number): Packet {
    return {
      type: 'query', id, flags: dnsPacket.RECURSION_DESIRED | (q.checkingDisabled ? dnsPacket.CHECKING_DISABLED : 0),
      questions: [{ name: q.name, type: q.type, class: q.class }],
      additionals: [{ type: 'OPT', name: '.', udpPayloadSize: EDNS_UDP_SIZE, extendedRcode: 0, ednsVersion: 0, flags: q.dnssecOk ? dnsPacket.DNSSEC_OK : 0, flag_do: q.dnssecOk, options: [] }],
    };
  }

  private askUdp(up: Upstream, q: ForwardQuestion): Promise<DecodedPacket> {
    this.stats.udp++;
    const id = randomInt(0, 65536);
    const msg = dnsPacket.encode(this.packet(q, id));
    return new Promise((resolve, reject) => {
      const sock = createSocket(isIP(up.address) === 6 ? 'udp6' : 'udp4');
      let done = false;
      const finish = (err: Error | undefined, p?: DecodedPacket): void => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        sock.close();
        if (err) reject(err);
        else resolve(p as DecodedPacket);
      };
      const timer = setTimeout(() => {
        this.stats.timeouts++;
        finish(new Error(`no answer within ${this.timeoutMs} ms`));
      }, this.timeoutMs);
      sock.on('error', (err) => finish(err));
      sock.on('message', (buf) => {
        let p: DecodedPacket;
        try {
          p = dnsPacket.decode(buf);
        } catch {
          return; // junk: keep waiting for the real answer
        }
        if (p.id !== id || p.type !== 'response' || !sameQuestion(p.questions?.[0], q)) return;
        finish(undefined, p);
      });
      sock.connect(up.port, up.address, () => sock.send(msg, (err) => { if (err) finish(err); }));
    });
  }

  private askTcp(up: Upstream, q: ForwardQuestion): Promise<DecodedPacket> {
    this.stats.tcp++;
    const id = randomInt(0, 65536);
    const msg = dnsPacket.encode(this.packet(q, id));
    const framed = Buffer.alloc(msg.length + 2);
    framed.writeUInt16BE(msg.length, 0);
    msg.copy(framed, 2);
    return new Promise((resolve, reject) => {
      const sock = connect({ host: up.address, port: up.port });
      let got = Buffer.alloc(0);
      const timer = setTimeout(() => {
        this.stats.timeouts++;
        sock.destroy(new Error(`no TCP answer within ${this.timeoutMs} ms`));
      }, this.timeoutMs);
      sock.on('connect', () => sock.write(framed));
      sock.on('data', (chunk: Buffer) => {
        got = Buffer.concat([got, chunk]);
        if (got.length < 2 || got.length < 2 + got.readUInt16BE(0)) return;
        clearTimeout(timer);
        sock.destroy();
        try {
          const p = dnsPacket.decode(got.subarray(2, 2 + got.readUInt16BE(0)));
          if (p.id !== id || !sameQuestion(p.questions?.[0], q)) reject(new Error('TCP answer does not match the question'));
          else resolve(p);
        } catch (err) {
          reject(err as Error);
        }
      });
      sock.on('error', (err) => {
        clearTimeout(timer);
        reject(err);
      });
      sock.on('close', () => {
        clearTimeout(timer);
        reject(new Error('TCP connection closed before the answer'));
      });
    });
  }
}
