// The server's decisions, as a pure function of a request, a read-only view of one interface's lease
// table and the time (in the manner of systemd's dhcp_server_handle_message, without its side
// effects): decide() says what to answer and what should change; the server applies it. Each branch
// cites the part of RFC 2131 it follows. A malformed option in a request never throws out of here: it
// becomes an `ignore` decision with the reason.
import {
  BOOTREQUEST, blankReply, type DhcpPacket, FLAG_BROADCAST,
} from './codec.js';
import type { ResolvedReservation, SubnetConfig } from './config.js';
import { type Ipv4, inSubnet, ipv4ToString, macToString, toHex } from './ipv4.js';
import type { ClientIdentity, Lease } from './leases.js';
import { DhcpOptionError, DhcpOptions, MessageType, Opt } from './options.js';
import { mod64, siphash24Halves, type U64 } from '../net/siphash.js';

/** What decide() reads: one interface's configuration and lease table, never changed by it. */
export interface LeaseView {
  readonly config: SubnetConfig;
  lease(clientKey: string): Lease | undefined;
  reservationFor(client: ClientIdentity): ResolvedReservation | undefined;
  availableFor(a: Ipv4, client: ClientIdentity, now: number): boolean;
  firstFree(): Ipv4 | undefined;
  /** Addresses held by entries won from this Ethernet source (lowercase hex), reserved ones not counted. */
  heldFrom(src: string): number;
  /** The offer to withdraw when nothing is free: the oldest one of another client, on an unreserved address. */
  oldestOffer(exceptKey: string): Lease | undefined;
}

export interface DhcpRequest {
  packet: DhcpPacket;
  /** Sent to one of our unicast addresses (a RENEWING client) rather than broadcast. */
  unicast: boolean;
  /**
   * The Ethernet source address of the frame (what the packet socket saw). Where it is given, a MAC
   * reservation matches only a client whose chaddr is that address, a RELEASE or DECLINE counts only
   * from the source that won the lease, and dynamic holds are counted (and capped) per source.
   */
  srcMac?: Uint8Array;
  /**
   * The bridge port the frame came in on (its ifindex), where the transport saw it (ingress.ts):
   * then the port, not the Ethernet source a container can change at will, is the source that
   * holds are counted (and capped) per and that a RELEASE or DECLINE must come from.
   */
  ingressPort?: number;
}

/** Which RFC 2131 §4.3.2 client state a REQUEST came from. */
export type RequestState = 'selecting' | 'init-reboot' | 'renewing' | 'rebinding';

export type Decision =
  | { kind: 'offer'; reply: DhcpPacket; client: ClientIdentity; address: Ipv4; leaseTime: number; src?: string }
  | {
    kind: 'ack'; reply: DhcpPacket; client: ClientIdentity; address: Ipv4; leaseTime: number;
    expiresAt: number; hostname?: string; state: RequestState; src?: string;
  }
  | { kind: 'inform'; reply: DhcpPacket }
  | { kind: 'nak'; reply: DhcpPacket; client: ClientIdentity; reason: string }
  | { kind: 'release'; client: ClientIdentity; address: Ipv4 }
  | { kind: 'decline'; client: ClientIdentity; address: Ipv4 }
  | { kind: 'ignore'; reason: string; forgetOffer?: ClientIdentity };

/** Identity of the client that sent `p` (RFC 2131 §4.2: option 61, else chaddr). */
export function clientIdentity(p: DhcpPacket): ClientIdentity {
  const hw = p.chaddr.subarray(0, p.hlen);
  const id = p.options.clientId();
  const macHex = p.htype === 1 && p.hlen === 6 ? toHex(hw) : undefined;
  return {
    key: id ? toHex(id, 'id:') : toHex(hw, `hw:${p.htype}:`),
    macHex,
    mac: macToString(hw),
  };
}

/** The bytes networkd hashes for a client: option 61, else htype ‖ chaddr (systemd's synthesised id). */
function hashInput(p: DhcpPacket): Uint8Array {
  const id = p.options.clientId();
  if (id) return id;
  const b = new Uint8Array(1 + p.hlen);
  b[0] = p.htype;
  b.set(p.chaddr.subarray(0, p.hlen), 1);
  return b;
}

/** systemd-networkd's key for the DHCP server's address hash (sd-dhcp-server.c, HASH_KEY). */
const NETWORKD_HASH_KEY = Uint8Array.of(0x0d, 0x1d, 0xfe, 0xbd, 0xf1, 0x24, 0xbd, 0xb3, 0x47, 0xf1, 0xdd, 0x6e, 0x73, 0x21, 0x93, 0x30);

/** The hash networkd uses to place a client: SipHash-2-4 over u64_LE(len(id)) ‖ id. */
export function clientIdHash(clientId: Uint8Array): U64 {
  const msg = new Uint8Array(8 + clientId.length);
  let len = clientId.length;
  for (let i = 0; i < 8; i++) {
    msg[i] = len & 0xff;
    len = Math.floor(len / 256);
  }
  msg.set(clientId, 8);
  return siphash24Halves(msg, NETWORKD_HASH_KEY);
}

/** The stable address of a client: networkd's SipHash slot within the pool. */
export function stableAddress(config: SubnetConfig, p: DhcpPacket): Ipv4 {
  const size = config.poolLast - config.poolFirst + 1;
  return (config.poolFirst + mod64(clientIdHash(hashInput(p)), size)) >>> 0;
}

/**
 * The client of a request, as far as its frame vouches for it: a chaddr that is not the frame's
 * Ethernet source is only a name (another container on a shared bridge can write any chaddr), so it
 * matches no MAC reservation. Relayed frames are no exception: giaddr is as easy to forge.
 */
function requestClient(req: DhcpRequest): ClientIdentity {
  const client = clientIdentity(req.packet);
  if (client.macHex !== undefined && !fromOwnMac(req)) delete client.macHex;
  return client;
}

/** The frame came from the client's own hardware address (or its source was not seen). */
function fromOwnMac(req: DhcpRequest): boolean {
  const src = req.srcMac;
  if (src === undefined) return true;
  const p = req.packet;
  if (src.length !== p.hlen) return false;
  for (let i = 0; i < src.length; i++) if (src[i] !== p.chaddr[i]) return false;
  return true;
}

/**
 * The frame's source as leases record it: undefined when it is the client's own MAC (the usual
 * case, and what an entry without `src` means), else its hex.
 */
function sourceOf(req: DhcpRequest): string | undefined {
  if (req.ingressPort !== undefined) return portSource(req.ingressPort);
  return fromOwnMac(req) || req.srcMac === undefined ? undefined : toHex(req.srcMac);
}

/** A bridge port as a source (never a MAC's hex). */
function portSource(ifindex: number): string {
  return `port${ifindex}`;
}



export function decide(req: DhcpRequest, view: LeaseView, now: number): Decision {
  const p = req.packet;
  if (p.op !== BOOTREQUEST) return ignore('not a BOOTREQUEST');
  if (p.hops > 16) return ignore(`relayed through ${p.hops} hops (more than 16)`);
  try {
    const type = p.options.messageType();
    if (type === undefined) return ignore('BOOTP request without a DHCP message type (BOOTP is not served)');
    if (p.hlen === 0 && !p.options.has(Opt.CLIENT_ID)) return ignore('neither a hardware address nor a client identifier');
    const client = requestClient(req);
    if (view.config.reservedOnly && !view.reservationFor(client)) return ignore('no reservation for the client (this server answers only its reservations)');
    switch (type) {
      case MessageType.DISCOVER: return discover(req, client, view, now);
      case MessageType.REQUEST: return request(req, client, view, now);
      case MessageType.DECLINE: return decline(req, client, view, now);
      case MessageType.RELEASE: return release(req, client, view);
      case MessageType.INFORM: return inform(req, client, view);
      default: return ignore(`message type ${type} is not one a client sends`);
    }
  } catch (err) {
    if (err instanceof DhcpOptionError) return ignore(`malformed option: ${err.message}`);
    throw err;
  }
}

function ignore(reason: string, forgetOffer?: ClientIdentity): Decision {
  return forgetOffer ? { kind: 'ignore', reason, forgetOffer } : { kind: 'ignore', reason };
}

/** RFC 2131 §3.3 / §4.3.1: the lease time the client asked for, within the configured bounds. */
function leaseTimeFor(p: DhcpPacket, c: SubnetConfig): number {
  const asked = p.options.leaseTime();
  if (asked === undefined) return c.leaseTime;
  return Math.min(c.maxLeaseTime, Math.max(c.minLeaseTime, asked));
}

/**
 * RFC 2131 §4.3.1 address choice: the client's reservation, its current or previous binding, the
 * address it asks for, its stable slot, the lowest free address. Undefined: nothing to offer.
 */
function chooseAddress(p: DhcpPacket, client: ClientIdentity, view: LeaseView, now: number): Ipv4 | undefined {
  const reserved = view.reservationFor(client);
  // the reservation's owner wins over whoever holds the address (the table displaces them)
  if (reserved) return view.availableFor(reserved.address, client, now) ? reserved.address : undefined;
  const prev = view.lease(client.key);
  if (prev && view.availableFor(prev.address, client, now)) return prev.address;
  const asked = p.options.requestedIp();
  if (asked !== undefined && view.availableFor(asked, client, now)) return asked;
  const slot = stableAddress(view.config, p);
  if (view.availableFor(slot, client, now)) return slot;
  const free = view.firstFree();
  if (free !== undefined && view.availableFor(free, client, now)) return free;
  // nothing free: an offer nobody answered does not keep the address from this client
  return view.oldestOffer(client.key)?.address;
}

/**
 * A client without a reservation that holds nothing yet, from a source whose clients hold
 * `maxLeasesPerSource` addresses already: the reason to refuse it, else undefined.
 */
function overSourceCap(req: DhcpRequest, client: ClientIdentity, view: LeaseView, now: number): string | undefined {
  const cap = view.config.maxLeasesPerSource;
  if (!cap || req.srcMac === undefined || view.reservationFor(client)) return undefined;
  const src = sourceOf(req) ?? toHex(req.srcMac); // what the table counts: an entry's src, else its own MAC
  const cur = view.lease(client.key);
  if (cur && cur.state !== 'released' && cur.expiresAt > now) return undefined; // renewing what it holds
  const held = view.heldFrom(src);
  const what = req.ingressPort !== undefined ? `its bridge port (ifindex ${req.ingressPort})` : `its source ${src}`;
  return held >= cap ? `${what} holds ${held} address(es) already (at most ${cap} per source)` : undefined;
}

function discover(req: DhcpRequest, client: ClientIdentity, view: LeaseView, now: number): Decision {
  const p = req.packet;
  const capped = overSourceCap(req, client, view, now);
  if (capped) return ignore(capped);
  const address = chooseAddress(p, client, view, now);
  if (address === undefined) {
    const reserved = view.reservationFor(client);
    return ignore(reserved
      ? `reserved address ${ipv4ToString(reserved.address)} is in use by another client`
      : 'no free address in the pool');
  }
  const leaseTime = leaseTimeFor(p, view.config);
  const reply = buildReply(p, view.config, MessageType.OFFER, address, leaseTime, view.reservationFor(client));
  const d: Decision = { kind: 'offer', reply, client, address, leaseTime };
  const src = sourceOf(req);
  if (src !== undefined) d.src = src;
  return d;
}

/** RFC 2131 §4.3.2. */
function request(req: DhcpRequest, client: ClientIdentity, view: LeaseView, now: number): Decision {
  const p = req.packet;
  const c = view.config;
  const serverId = p.options.serverId();
  const asked = p.options.requestedIp();
  const known = view.lease(client.key);
  const reserved = view.reservationFor(client);

  let state: RequestState;
  let address: Ipv4;
  if (serverId !== undefined) {
    // SELECTING: 'server identifier' MUST be set; a client that chose another server's offer tells
    // us so with that server's identifier.
    if (serverId !== c.serverAddress) return ignore(`client chose server ${ipv4ToString(serverId)}`, client);
    state = 'selecting';
    const a = asked ?? p.ciaddr; // 'requested IP address' MUST be set; some old clients use ciaddr
    if (!a) return ignore('REQUEST (SELECTING) without a requested address');
    address = a;
  } else if (asked !== undefined && !p.ciaddr) {
    // INIT-REBOOT: the client verifies a previously allocated address. "If the requested address is
    // not on this network, the server SHOULD send DHCPNAK" — and if it has no record of the client it
    // MUST stay silent, unless (authoritative) it can simply give the address back.
    state = 'init-reboot';
    address = asked;
    if (!inSubnet(address, c.network, c.prefixLength)) return nak(p, c, client, `${ipv4ToString(address)} is not on this network`);
    if (!known && !c.authoritative) return ignore(`INIT-REBOOT for ${ipv4ToString(address)} from an unknown client (not authoritative)`);
  } else if (p.ciaddr) {
    // RENEWING (unicast to us) or REBINDING (broadcast): 'ciaddr' MUST be filled in with the
    // client's address, 'server identifier' and 'requested IP address' MUST NOT be.
    state = req.unicast ? 'renewing' : 'rebinding';
    address = p.ciaddr;
    if (!inSubnet(address, c.network, c.prefixLength)) {
      return c.authoritative ? nak(p, c, client, `${ipv4ToString(address)} is not on this network`) : ignore('renewal for another network');
    }
  } else {
    return ignore('REQUEST with neither server identifier, requested address nor ciaddr');
  }

  if (reserved && reserved.address !== address) {
    return nak(p, c, client, `client has the reservation ${ipv4ToString(reserved.address)}`);
  }
  if (!view.availableFor(address, client, now)) {
    if (state === 'rebinding' && !c.authoritative) return ignore(`${ipv4ToString(address)} is not available`);
    return nak(p, c, client, `${ipv4ToString(address)} is not available to this client`);
  }
  if (!known && !reserved && !c.authoritative && state !== 'selecting') {
    return ignore(`no record of the client (not authoritative)`);
  }
  const capped = known?.state === 'offered' && known.address === address ? undefined : overSourceCap(req, client, view, now);
  if (capped) return nak(p, c, client, capped);
  const leaseTime = leaseTimeFor(p, c);
  const hostname = replyHostname(p, reserved) ?? known?.hostname;
  const reply = buildReply(p, c, MessageType.ACK, address, leaseTime, reserved);
  // RFC 2131 table 3: ciaddr of the ACK is the request's ciaddr.
  reply.ciaddr = p.ciaddr;
  const d: Decision = { kind: 'ack', reply, client, address, leaseTime, expiresAt: now + leaseTime * 1000, state };
  if (hostname !== undefined) d.hostname = hostname;
  const src = sourceOf(req);
  if (src !== undefined) d.src = src;
  return d;
}

/**
 * A RELEASE or DECLINE speaks for a lease only when its frame comes from the Ethernet source that
 * won the lease: anyone on a shared bridge can copy a client id, chaddr and ciaddr.
 */
function fromHolder(req: DhcpRequest, held: Lease): boolean {
  if (req.srcMac === undefined) return true;
  // a lease won through a bridge port: from that port (or, its copy not seen, from the client's own MAC)
  if (held.src?.startsWith('port') && req.ingressPort !== undefined) return held.src === portSource(req.ingressPort);
  const mine = held.src === undefined || held.src.startsWith('port') ? held.mac.replace(/:/g, '').toLowerCase() : held.src;
  return toHex(req.srcMac) === mine;
}

/** RFC 2131 §4.3.3: the client found the address in use. Only its own address can be declined. */
function decline(req: DhcpRequest, client: ClientIdentity, view: LeaseView, now: number): Decision {
  const p = req.packet;
  const serverId = p.options.serverId();
  if (serverId !== undefined && serverId !== view.config.serverAddress) return ignore('DECLINE for another server');
  const a = p.options.requestedIp();
  if (a === undefined) return ignore('DECLINE without a requested address');
  const held = view.lease(client.key);
  if (!held || held.address !== a || held.state === 'released' || held.expiresAt <= now) {
    return ignore(`DECLINE of ${ipv4ToString(a)}, which the client does not hold`);
  }
  if (!fromHolder(req, held)) return ignore(`DECLINE of ${ipv4ToString(a)} from another Ethernet source than its holder's`);
  return { kind: 'decline', client, address: a };
}

/** RFC 2131 §4.3.4: the client gives its address back. */
function release(req: DhcpRequest, client: ClientIdentity, view: LeaseView): Decision {
  const p = req.packet;
  const serverId = p.options.serverId();
  if (serverId !== undefined && serverId !== view.config.serverAddress) return ignore('RELEASE for another server');
  const held = view.lease(client.key);
  if (!held || held.state !== 'bound' || held.address !== p.ciaddr) {
    return ignore(`RELEASE of ${ipv4ToString(p.ciaddr)}, which the client does not hold`);
  }
  if (!fromHolder(req, held)) return ignore(`RELEASE of ${ipv4ToString(p.ciaddr)} from another Ethernet source than its holder's`);
  return { kind: 'release', client, address: p.ciaddr };
}

/** RFC 2131 §4.3.5: configuration only; no lease, no yiaddr. */
function inform(req: DhcpRequest, client: ClientIdentity, view: LeaseView): Decision {
  const p = req.packet;
  const reply = buildReply(p, view.config, MessageType.ACK, 0, undefined, view.reservationFor(client));
  reply.ciaddr = p.ciaddr;
  return { kind: 'inform', reply };
}

/** A NAK for `p` (also the server's answer to an allocation it could not make after all). */
export function nak(p: DhcpPacket, c: SubnetConfig, client: ClientIdentity, reason: string): Extract<Decision, { kind: 'nak' }> {
  const reply = replyHeader(p);
  const o = reply.options;
  o.setU8(Opt.MESSAGE_TYPE, MessageType.NAK);
  o.setIpv4(Opt.SERVER_ID, c.serverAddress);
  o.setString(Opt.MESSAGE, reason);
  echoOptions(p, reply);
  // RFC 2131 §4.3.2: through a relay the NAK has the broadcast bit, so the relay broadcasts it.
  if (p.giaddr) reply.flags |= FLAG_BROADCAST;
  return { kind: 'nak', reply, client, reason };
}

/** RFC 2131 table 3: fields of every reply. */
function replyHeader(p: DhcpPacket): DhcpPacket {
  const r = blankReply();
  r.htype = p.htype;
  r.hlen = p.hlen;
  r.xid = p.xid;
  r.flags = p.flags & FLAG_BROADCAST;
  r.giaddr = p.giaddr;
  r.chaddr = p.chaddr;
  return r;
}

/** Option 12 for the reply: the reservation's name, else the client's own, when it asks for 12. */
function replyHostname(p: DhcpPacket, reserved: ResolvedReservation | undefined): string | undefined {
  if (reserved?.hostname) return reserved.hostname;
  let own: string | undefined;
  try {
    own = p.options.hostname();
  } catch {
    own = undefined;
  }
  return own && /^[A-Za-z0-9._-]{1,253}$/.test(own) ? own : undefined;
}

/**
 * The option values an interface's replies share, encoded once per configuration rather than per
 * reply (replies only hold them; encodePacket copies them out). In buildReply's order.
 */
interface FixedOptions {
  readonly values: ReadonlyArray<readonly [number, Uint8Array]>;
  readonly serverId: Uint8Array;
  /** 51, 58 and 59 for the configured lease time (what a client gets unless it asks for another). */
  readonly leaseTime: number;
  readonly lease: ReadonlyArray<readonly [number, Uint8Array]>;
}
const fixedOptions = new WeakMap<SubnetConfig, FixedOptions>();
const MESSAGE_TYPES: readonly Uint8Array[] = Array.from({ length: 9 }, (_, t) => Uint8Array.of(t));

function leaseOptions(leaseTime: number): Array<readonly [number, Uint8Array]> {
  const o = new DhcpOptions();
  o.setU32(Opt.LEASE_TIME, leaseTime);
  o.setU32(Opt.RENEWAL_TIME, Math.floor(leaseTime / 2));
  o.setU32(Opt.REBINDING_TIME, Math.floor((leaseTime * 7) / 8));
  return [...o.entries()];
}

function fixedOptionsOf(c: SubnetConfig): FixedOptions {
  let f = fixedOptions.get(c);
  if (f) return f;
  const o = new DhcpOptions();
  o.setIpv4(Opt.SUBNET_MASK, c.netmask);
  o.setIpv4(Opt.BROADCAST_ADDRESS, c.broadcast);
  if (c.routers.length) o.setIpv4List(Opt.ROUTER, c.routers);
  if (c.dns.length) o.setIpv4List(Opt.DNS_SERVERS, c.dns);
  if (c.domain) o.setString(Opt.DOMAIN_NAME, c.domain);
  if (c.searchDomains.length) o.setDomainSearch(c.searchDomains);
  if (c.mtu !== undefined) o.setU16(Opt.INTERFACE_MTU, c.mtu);
  if (c.classlessRoutes.length) o.setClasslessRoutes(c.classlessRoutes);
  const serverId = new DhcpOptions().setIpv4(Opt.SERVER_ID, c.serverAddress).get(Opt.SERVER_ID) as Uint8Array;
  f = { values: [...o.entries()], serverId, leaseTime: c.leaseTime, lease: leaseOptions(c.leaseTime) };
  fixedOptions.set(c, f);
  return f;
}

function buildReply(p: DhcpPacket, c: SubnetConfig, type: number, yiaddr: Ipv4, leaseTime: number | undefined, reserved: ResolvedReservation | undefined): DhcpPacket {
  const r = replyHeader(p);
  r.yiaddr = yiaddr;
  const o = r.options;
  const fixed = fixedOptionsOf(c);
  o.set(Opt.MESSAGE_TYPE, MESSAGE_TYPES[type] ?? Uint8Array.of(type));
  o.set(Opt.SERVER_ID, fixed.serverId);
  if (leaseTime !== undefined) {
    for (const [code, v] of leaseTime === fixed.leaseTime ? fixed.lease : leaseOptions(leaseTime)) o.set(code, v);
  }
  for (const [code, v] of fixed.values) o.set(code, v);
  if (p.options.requests(Opt.HOSTNAME)) {
    const name = replyHostname(p, reserved);
    if (name) o.setString(Opt.HOSTNAME, name);
  }
  echoOptions(p, r);
  return r;
}

/** RFC 6842: echo the client identifier. RFC 3046 §2.2: echo relay agent information, last. */
function echoOptions(p: DhcpPacket, r: DhcpPacket): void {
  const id = p.options.get(Opt.CLIENT_ID);
  if (id) r.options.set(Opt.CLIENT_ID, id);
  const relay = p.options.get(Opt.RELAY_AGENT_INFO);
  if (relay) r.options.set(Opt.RELAY_AGENT_INFO, relay);
}
