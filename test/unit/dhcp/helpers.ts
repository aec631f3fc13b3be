// Builders for DHCP test packets and a served subnet, shared by the unit suites.
import { BOOTREQUEST, type DhcpPacket, emptyPacket } from '../../../src/dhcp/codec.js';
import { type InterfaceConfig, resolveInterfaceConfig, type SubnetConfig } from '../../../src/dhcp/config.js';
import { parseIpv4, parseMac } from '../../../src/dhcp/ipv4.js';
import { type JournalEntry, MemoryLeaseStore } from '../../../src/dhcp/journal.js';
import { Opt } from '../../../src/dhcp/options.js';

export function ip(text: string): number {
  const a = parseIpv4(text);
  if (a === undefined) throw new Error(`bad test address ${text}`);
  return a;
}

export interface ClientPacket {
  type: number;
  mac?: string;
  xid?: number;
  ciaddr?: string;
  giaddr?: string;
  requested?: string;
  serverId?: string;
  clientId?: Uint8Array;
  broadcast?: boolean;
  prl?: number[];
  hostname?: string;
  leaseTime?: number;
  relayInfo?: Uint8Array;
}

export function clientPacket(c: ClientPacket): DhcpPacket {
  const p = emptyPacket(BOOTREQUEST);
  p.xid = c.xid ?? 0x1234;
  const mac = parseMac(c.mac ?? '02:00:00:00:00:42');
  if (!mac) throw new Error('bad test mac');
  p.chaddr.set(mac, 0);
  if (c.ciaddr) p.ciaddr = ip(c.ciaddr);
  if (c.giaddr) p.giaddr = ip(c.giaddr);
  if (c.broadcast) p.flags = 0x8000;
  p.options.setU8(Opt.MESSAGE_TYPE, c.type);
  if (c.clientId) p.options.set(Opt.CLIENT_ID, c.clientId);
  if (c.requested) p.options.setIpv4(Opt.REQUESTED_IP, ip(c.requested));
  if (c.serverId) p.options.setIpv4(Opt.SERVER_ID, ip(c.serverId));
  if (c.leaseTime !== undefined) p.options.setU32(Opt.LEASE_TIME, c.leaseTime);
  if (c.hostname) p.options.setString(Opt.HOSTNAME, c.hostname);
  p.options.set(Opt.PARAMETER_REQUEST_LIST, Uint8Array.from(c.prl ?? [1, 3, 6, 12, 15, 28, 51, 58, 59]));
  if (c.relayInfo) p.options.set(Opt.RELAY_AGENT_INFO, c.relayInfo);
  return p;
}

export function subnet(over: Partial<InterfaceConfig> = {}): SubnetConfig {
  return resolveInterfaceConfig({ ifindex: 7, ifname: 've-test', address: '192.0.2.1/24', ...over });
}

/** Hex bytes written one field per line; `#` starts a comment. */
export function hex(strings: TemplateStringsArray, ...values: unknown[]): Uint8Array {
  const text = String.raw({ raw: strings.raw }, ...values).replace(/#.*$/gm, '').replace(/\s+/g, '');
  return Uint8Array.from(Buffer.from(text, 'hex'));
}

/** A lease store whose commits the test releases by hand (or never: a hung disk). */
export class ManualStore extends MemoryLeaseStore {
  waiting: Array<(err?: Error) => void> = [];
  override get backlog(): number {
    return this.waiting.length;
  }
  override append(entry: JournalEntry, onDurable?: (err?: Error) => void): void {
    this.entries.push(entry);
    if (onDurable) this.waiting.push(onDurable);
  }
  commit(err?: Error): void {
    const w = this.waiting;
    this.waiting = [];
    for (const f of w) f(err);
  }
}
