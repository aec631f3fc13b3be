// DHCP options (RFC 2132 and later): an ordered map from code to raw bytes, so every option decodes
// generically and unknown ones survive a round trip, plus typed getters and setters for the ones the
// server uses. A getter returns undefined when the option is absent and throws DhcpOptionError when
// it is present but malformed (wrong length, bad name encoding): a packet from a container is input,
// and input is checked where it is read.
import { NspawnError } from '../errors.js';
import { type Ipv4, readIpv4, writeIpv4 } from './ipv4.js';

export const Opt = {
  PAD: 0,
  SUBNET_MASK: 1,
  ROUTER: 3,
  DNS_SERVERS: 6,
  HOSTNAME: 12,
  DOMAIN_NAME: 15,
  INTERFACE_MTU: 26,
  BROADCAST_ADDRESS: 28,
  REQUESTED_IP: 50,
  LEASE_TIME: 51,
  OVERLOAD: 52,
  MESSAGE_TYPE: 53,
  SERVER_ID: 54,
  PARAMETER_REQUEST_LIST: 55,
  MESSAGE: 56,
  MAX_MESSAGE_SIZE: 57,
  RENEWAL_TIME: 58,
  REBINDING_TIME: 59,
  VENDOR_CLASS_ID: 60,
  CLIENT_ID: 61,
  CLIENT_FQDN: 81,
  RELAY_AGENT_INFO: 82,
  DOMAIN_SEARCH: 119,
  CLASSLESS_ROUTES: 121,
  END: 255,
} as const;

export const MessageType = {
  DISCOVER: 1,
  OFFER: 2,
  REQUEST: 3,
  DECLINE: 4,
  ACK: 5,
  NAK: 6,
  RELEASE: 7,
  INFORM: 8,
} as const;
export type MessageTypeValue = (typeof MessageType)[keyof typeof MessageType];

const TYPE_NAMES: Record<number, string> = {
  1: 'DISCOVER', 2: 'OFFER', 3: 'REQUEST', 4: 'DECLINE', 5: 'ACK', 6: 'NAK', 7: 'RELEASE', 8: 'INFORM',
};
export function messageTypeName(t: number | undefined): string {
  return t === undefined ? 'BOOTP' : (TYPE_NAMES[t] ?? `type ${t}`);
}

/** An option is present but its value is not what its RFC allows. */
export class DhcpOptionError extends NspawnError {
  readonly option: number;
  constructor(option: number, message: string) {
    super('DHCP_BAD_OPTION', `option ${option}: ${message}`);
    this.option = option;
  }
}

export interface ClasslessRoute {
  /** Destination network (host bits zero). */
  destination: Ipv4;
  prefixLength: number;
  router: Ipv4;
}

export interface ClientFqdn {
  /** Flags octet (RFC 4702 §2.1: S=1, O=2, E=4, N=8). */
  flags: number;
  rcode1: number;
  rcode2: number;
  /** The name as text (dots between labels, no trailing dot). */
  name: string;
}

export interface RelayAgentSubOption {
  code: number;
  value: Uint8Array;
}

export class DhcpOptions {
  private readonly map = new Map<number, Uint8Array>();

  get size(): number {
    return this.map.size;
  }
  has(code: number): boolean {
    return this.map.has(code);
  }
  get(code: number): Uint8Array | undefined {
    return this.map.get(code);
  }
  /** Sets (replaces) an option. Values longer than 255 bytes are split on encode (RFC 3396). */
  set(code: number, value: Uint8Array): this {
    if (!Number.isInteger(code) || code <= Opt.PAD || code >= Opt.END) throw new RangeError(`option code ${code} is not 1..254`);
    this.map.set(code, value);
    return this;
  }
  /** Appends to an option (repeated options are concatenated, RFC 3396). */
  append(code: number, value: Uint8Array): this {
    const prev = this.map.get(code);
    if (!prev) return this.set(code, value);
    const joined = new Uint8Array(prev.length + value.length);
    joined.set(prev, 0);
    joined.set(value, prev.length);
    this.map.set(code, joined);
    return this;
  }
  delete(code: number): boolean {
    return this.map.delete(code);
  }
  /** Codes in insertion order (the order they are encoded in). */
  codes(): number[] {
    return [...this.map.keys()];
  }
  entries(): IterableIterator<[number, Uint8Array]> {
    return this.map.entries();
  }

  // --- generic typed access ---------------------------------------------------------------

  u8(code: number): number | undefined {
    const v = this.fixed(code, 1);
    return v && (v[0] as number);
  }
  u16(code: number): number | undefined {
    const v = this.fixed(code, 2);
    return v && (((v[0] as number) << 8) | (v[1] as number));
  }
  u32(code: number): number | undefined {
    const v = this.fixed(code, 4);
    return v && readIpv4(v, 0);
  }
  ipv4(code: number): Ipv4 | undefined {
    const v = this.fixed(code, 4);
    return v && readIpv4(v, 0);
  }
  /** A list of one or more addresses (length a positive multiple of 4). */
  ipv4List(code: number): Ipv4[] | undefined {
    const v = this.map.get(code);
    if (!v) return undefined;
    if (v.length === 0 || v.length % 4 !== 0) throw new DhcpOptionError(code, `length ${v.length} is not a positive multiple of 4`);
    const out: Ipv4[] = [];
    for (let i = 0; i < v.length; i += 4) out.push(readIpv4(v, i));
    return out;
  }
  /** Text (NVT ASCII per RFC 2132; decoded as UTF-8, trailing NULs dropped as clients send them). */
  string(code: number): string | undefined {
    const v = this.map.get(code);
    if (!v) return undefined;
    let end = v.length;
    while (end > 0 && v[end - 1] === 0) end--;
    return Buffer.from(v.buffer, v.byteOffset, end).toString('utf8');
  }
  setU8(code: number, n: number): this {
    return this.set(code, Uint8Array.of(n & 0xff));
  }
  setU16(code: number, n: number): this {
    return this.set(code, Uint8Array.of((n >>> 8) & 0xff, n & 0xff));
  }
  setU32(code: number, n: number): this {
    const b = new Uint8Array(4);
    writeIpv4(b, 0, n >>> 0);
    return this.set(code, b);
  }
  setIpv4(code: number, a: Ipv4): this {
    return this.setU32(code, a);
  }
  setIpv4List(code: number, list: readonly Ipv4[]): this {
    const b = new Uint8Array(list.length * 4);
    list.forEach((a, i) => writeIpv4(b, i * 4, a));
    return this.set(code, b);
  }
  setString(code: number, s: string): this {
    const b = new Uint8Array(Buffer.byteLength(s, 'utf8'));
    Buffer.from(b.buffer, b.byteOffset, b.length).write(s, 'utf8');
    return this.set(code, b);
  }

  // --- the options the server reads and writes ------------------------------------------------

  /** 53: DHCP message type (1..8); undefined for plain BOOTP. */
  messageType(): number | undefined {
    return this.u8(Opt.MESSAGE_TYPE);
  }
  subnetMask(): Ipv4 | undefined {
    return this.ipv4(Opt.SUBNET_MASK);
  }
  routers(): Ipv4[] | undefined {
    return this.ipv4List(Opt.ROUTER);
  }
  dnsServers(): Ipv4[] | undefined {
    return this.ipv4List(Opt.DNS_SERVERS);
  }
  hostname(): string | undefined {
    const v = this.map.get(Opt.HOSTNAME);
    if (v && v.length === 0) throw new DhcpOptionError(Opt.HOSTNAME, 'empty host name');
    return this.string(Opt.HOSTNAME);
  }
  domainName(): string | undefined {
    return this.string(Opt.DOMAIN_NAME);
  }
  interfaceMtu(): number | undefined {
    const mtu = this.u16(Opt.INTERFACE_MTU);
    if (mtu !== undefined && mtu < 68) throw new DhcpOptionError(Opt.INTERFACE_MTU, `MTU ${mtu} is below the minimum 68`);
    return mtu;
  }
  broadcastAddress(): Ipv4 | undefined {
    return this.ipv4(Opt.BROADCAST_ADDRESS);
  }
  requestedIp(): Ipv4 | undefined {
    return this.ipv4(Opt.REQUESTED_IP);
  }
  /** 51: lease time in seconds (0xffffffff = infinite). */
  leaseTime(): number | undefined {
    return this.u32(Opt.LEASE_TIME);
  }
  /** 52: 1 = file holds options, 2 = sname does, 3 = both. */
  overload(): number | undefined {
    const v = this.u8(Opt.OVERLOAD);
    if (v !== undefined && (v < 1 || v > 3)) throw new DhcpOptionError(Opt.OVERLOAD, `value ${v} is not 1, 2 or 3`);
    return v;
  }
  serverId(): Ipv4 | undefined {
    return this.ipv4(Opt.SERVER_ID);
  }
  parameterRequestList(): number[] | undefined {
    const v = this.map.get(Opt.PARAMETER_REQUEST_LIST);
    return v && Array.from(v);
  }
  /** Whether option 55 asks for `code` (without making its list). */
  requests(code: number): boolean {
    const v = this.map.get(Opt.PARAMETER_REQUEST_LIST);
    return v !== undefined && v.includes(code);
  }
  message(): string | undefined {
    return this.string(Opt.MESSAGE);
  }
  /** 57: the largest DHCP message (as an IP datagram) the client accepts; at least 576. */
  maxMessageSize(): number | undefined {
    const v = this.u16(Opt.MAX_MESSAGE_SIZE);
    if (v !== undefined && v < 576) throw new DhcpOptionError(Opt.MAX_MESSAGE_SIZE, `${v} is below the minimum 576`);
    return v;
  }
  renewalTime(): number | undefined {
    return this.u32(Opt.RENEWAL_TIME);
  }
  rebindingTime(): number | undefined {
    return this.u32(Opt.REBINDING_TIME);
  }
  vendorClassId(): string | undefined {
    return this.string(Opt.VENDOR_CLASS_ID);
  }
  /** 61: type octet and identifier; RFC 2132 §9.14 requires at least 2 octets. */
  clientId(): Uint8Array | undefined {
    const v = this.map.get(Opt.CLIENT_ID);
    if (v && v.length < 2) throw new DhcpOptionError(Opt.CLIENT_ID, `length ${v.length} is below the minimum 2`);
    return v;
  }
  /** 81 (RFC 4702). */
  clientFqdn(): ClientFqdn | undefined {
    const v = this.map.get(Opt.CLIENT_FQDN);
    if (!v) return undefined;
    if (v.length < 3) throw new DhcpOptionError(Opt.CLIENT_FQDN, `length ${v.length} is below the minimum 3`);
    const flags = v[0] as number;
    const data = v.subarray(3);
    let name: string;
    if (flags & 0x04) {
      // E flag: canonical wire format, no compression (RFC 4702 §2.3.1); may be a partial name.
      const names = decodeDomainNames(data, Opt.CLIENT_FQDN, false, true);
      if (names.length > 1) throw new DhcpOptionError(Opt.CLIENT_FQDN, 'more than one name');
      name = names[0] ?? '';
    } else {
      name = Buffer.from(data).toString('latin1');
    }
    return { flags, rcode1: v[1] as number, rcode2: v[2] as number, name };
  }
  setClientFqdn(f: ClientFqdn): this {
    const name = f.flags & 0x04 ? encodeDomainNames(f.name ? [f.name] : [], Opt.CLIENT_FQDN) : new Uint8Array(Buffer.from(f.name, 'latin1'));
    const b = new Uint8Array(3 + name.length);
    b[0] = f.flags;
    b[1] = f.rcode1;
    b[2] = f.rcode2;
    b.set(name, 3);
    return this.set(Opt.CLIENT_FQDN, b);
  }
  /** 82 (RFC 3046): sub-options, in order. */
  relayAgentInfo(): RelayAgentSubOption[] | undefined {
    const v = this.map.get(Opt.RELAY_AGENT_INFO);
    if (!v) return undefined;
    const out: RelayAgentSubOption[] = [];
    for (let i = 0; i < v.length;) {
      if (i + 2 > v.length) throw new DhcpOptionError(Opt.RELAY_AGENT_INFO, `sub-option at ${i} is truncated`);
      const len = v[i + 1] as number;
      if (i + 2 + len > v.length) throw new DhcpOptionError(Opt.RELAY_AGENT_INFO, `sub-option ${v[i]} at ${i} overruns the option`);
      out.push({ code: v[i] as number, value: v.subarray(i + 2, i + 2 + len) });
      i += 2 + len;
    }
    return out;
  }
  setRelayAgentInfo(subs: readonly RelayAgentSubOption[]): this {
    const parts: number[] = [];
    for (const s of subs) {
      if (s.value.length > 255) throw new RangeError(`relay agent sub-option ${s.code} is longer than 255 bytes`);
      parts.push(s.code, s.value.length, ...s.value);
    }
    return this.set(Opt.RELAY_AGENT_INFO, Uint8Array.from(parts));
  }
  /** 119 (RFC 3397): the search list, compression pointers resolved. */
  domainSearch(): string[] | undefined {
    const v = this.map.get(Opt.DOMAIN_SEARCH);
    return v && decodeDomainNames(v, Opt.DOMAIN_SEARCH, true, false);
  }
  setDomainSearch(names: readonly string[]): this {
    return this.set(Opt.DOMAIN_SEARCH, encodeDomainNames(names, Opt.DOMAIN_SEARCH));
  }
  /** 121 (RFC 3442). */
  classlessRoutes(): ClasslessRoute[] | undefined {
    const v = this.map.get(Opt.CLASSLESS_ROUTES);
    if (!v) return undefined;
    if (v.length < 5) throw new DhcpOptionError(Opt.CLASSLESS_ROUTES, `length ${v.length} is below the minimum 5`);
    const out: ClasslessRoute[] = [];
    for (let i = 0; i < v.length;) {
      const width = v[i] as number;
      if (width > 32) throw new DhcpOptionError(Opt.CLASSLESS_ROUTES, `prefix length ${width} at ${i} is above 32`);
      const sig = (width + 7) >> 3;
      if (i + 1 + sig + 4 > v.length) throw new DhcpOptionError(Opt.CLASSLESS_ROUTES, `route at ${i} is truncated`);
      let dest = 0;
      for (let k = 0; k < 4; k++) dest = (dest << 8) | (k < sig ? (v[i + 1 + k] as number) : 0);
      const mask = width === 0 ? 0 : (0xffffffff << (32 - width)) >>> 0;
      out.push({ destination: (dest & mask) >>> 0, prefixLength: width, router: readIpv4(v, i + 1 + sig) });
      i += 1 + sig + 4;
    }
    return out;
  }
  setClasslessRoutes(routes: readonly ClasslessRoute[]): this {
    const parts: number[] = [];
    for (const r of routes) {
      const sig = (r.prefixLength + 7) >> 3;
      parts.push(r.prefixLength);
      for (let k = 0; k < sig; k++) parts.push((r.destination >>> (24 - 8 * k)) & 0xff);
      parts.push(r.router >>> 24, (r.router >>> 16) & 0xff, (r.router >>> 8) & 0xff, r.router & 0xff);
    }
    return this.set(Opt.CLASSLESS_ROUTES, Uint8Array.from(parts));
  }

  private fixed(code: number, len: number): Uint8Array | undefined {
    const v = this.map.get(code);
    if (v && v.length !== len) throw new DhcpOptionError(code, `length ${v.length}, expected ${len}`);
    return v;
  }
}

/**
 * Decodes a sequence of RFC 1035 names. Compression pointers (when allowed) must point strictly
 * backwards, which bounds the work and rules out loops; a name is at most 255 octets.
 */
function decodeDomainNames(data: Uint8Array, code: number, allowPointers: boolean, allowPartial: boolean): string[] {
  const names: string[] = [];
  let i = 0;
  while (i < data.length) {
    const labels: string[] = [];
    let pos = i;
    let jumped = false;
    let total = 0;
    let limit = i; // pointers must go below the start of the label they replace
    for (;;) {
      if (pos >= data.length) {
        if (allowPartial && !jumped) {
          i = pos;
          break;
        }
        throw new DhcpOptionError(code, `name at ${i} is not terminated`);
      }
      const len = data[pos] as number;
      if (len === 0) {
        if (!jumped) i = pos + 1;
        break;
      }
      if ((len & 0xc0) === 0xc0) {
        if (!allowPointers) throw new DhcpOptionError(code, `compression pointer at ${pos} is not allowed here`);
        if (pos + 1 >= data.length) throw new DhcpOptionError(code, `compression pointer at ${pos} is truncated`);
        const target = ((len & 0x3f) << 8) | (data[pos + 1] as number);
        if (target >= limit) throw new DhcpOptionError(code, `compression pointer at ${pos} does not point backwards`);
        if (!jumped) i = pos + 2;
        jumped = true;
        limit = target;
        pos = target;
        continue;
      }
      if (len & 0xc0) throw new DhcpOptionError(code, `label type 0x${len.toString(16)} at ${pos} is not supported`);
      if (pos + 1 + len > data.length) throw new DhcpOptionError(code, `label at ${pos} overruns the option`);
      total += len + 1;
      if (total > 255) throw new DhcpOptionError(code, `name at ${i} is longer than 255 octets`);
      labels.push(Buffer.from(data.subarray(pos + 1, pos + 1 + len)).toString('latin1'));
      pos += 1 + len;
      if (!jumped) limit = pos;
    }
    names.push(labels.join('.'));
    if (allowPartial && i >= data.length) break;
  }
  return names;
}

/** Encodes names in RFC 1035 wire format, without compression. */
export function encodeDomainNames(names: readonly string[], code: number): Uint8Array {
  const parts: number[] = [];
  for (const name of names) {
    const trimmed = name.endsWith('.') ? name.slice(0, -1) : name;
    let total = 1;
    if (trimmed) {
      for (const label of trimmed.split('.')) {
        const bytes = Buffer.from(label, 'latin1');
        if (bytes.length === 0 || bytes.length > 63) throw new DhcpOptionError(code, `label "${label}" of "${name}" must be 1..63 octets`);
        total += bytes.length + 1;
        parts.push(bytes.length, ...bytes);
      }
    }
    if (total > 255) throw new DhcpOptionError(code, `name "${name}" is longer than 255 octets`);
    parts.push(0);
  }
  return Uint8Array.from(parts);
}
