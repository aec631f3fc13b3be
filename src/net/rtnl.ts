// The rtnetlink client: links, addresses and routes of ONE network namespace, through one netlink
// socket opened inside it (Rtnl.open({ netnsFd })). Callers never switch namespace: links are created
// in or moved to other namespaces with IFLA_NET_NS_FD.
//
// Verbs are contracts (as in containernetworking/plugins and systemd-nspawn):
//   create*  fails with EEXIST when the object exists;
//   ensure*  accepts EEXIST, re-reads the object and checks it is what was asked for;
//   delete*  treats "already gone" (ENODEV, ENOENT, EADDRNOTAVAIL, ESRCH) as success, returning false;
//   get*     returns undefined when the object does not exist.
// Failures are NetlinkError (a SysError: `code` 'EEXIST', `errno` 17) whose message names the
// operation and object: `RTNETLINK: cannot create veth link "ve-foo" (peer "host0"): File exists (EEXIST)`.
//
// Requests issued without awaiting each other (Promise.all) are pipelined into shared datagrams.
import { NspawnError } from '../errors.js';
import * as C from './netlink/constants.js';
import type { RtnlMessage } from './netlink/codec.js';
import { NetlinkError } from './netlink/errors.js';
import {
  type AddressOptions, type BridgeOptions, type IpvlanOptions, type LinkChanges, type LinkRef, type LinkSpec,
  type MacvlanOptions, type RouteSpec, type VethOptions,
  addrRequest, altnameRequest, delLinkGroupRequest, delLinkRequest, delNeighRequest, dumpAddrsRequest, dumpLinksRequest,
  dumpRoutesRequest, getLinkRequest, newLinkRequest, parseCidr, routeRequest, setLinkRequest,
} from './netlink/requests.js';
import { NetlinkSocket } from './netlink/socket.js';
import { type Address, type Link, type Route, toAddress, toLink, toRoute } from './netlink/views.js';
import { type MonitorOptions, RtnlMonitor } from './monitor.js';

export type { Address, Link, Route } from './netlink/views.js';
export type {
  AddressOptions, BridgeOptions, IpvlanFlag, IpvlanMode, IpvlanOptions, LinkChanges, LinkRef, LinkSpec,
  MacvlanMode, MacvlanOptions, RouteSpec, VethOptions, VethPeerOptions,
} from './netlink/requests.js';
export { NetlinkError, NetlinkDecodeError, NetlinkEncodeError } from './netlink/errors.js';
export { RtnlMonitor, type RtnlEvent, type MonitorGroup, type MonitorOptions } from './monitor.js';

/** A parent/master given by ifindex or by name. */
type WithRef<T, K extends keyof T> = Omit<T, K> & { [P in K]: LinkRef };

export type MacvlanSpec = WithRef<MacvlanOptions, 'parent'>;
export type IpvlanSpec = WithRef<IpvlanOptions, 'parent'>;
/** Changes to a link; `master` by ifindex or name, or null to leave the master. */
export type LinkChangeSpec = Omit<LinkChanges, 'master'> & { master?: LinkRef | null };

/** Any link to create: parents of macvlan/ipvlan by ifindex or name. */
export type RtnlLinkSpec =
  | ({ kind: 'macvlan' } & MacvlanSpec)
  | ({ kind: 'ipvlan' } & IpvlanSpec)
  | Exclude<LinkSpec, { kind: 'macvlan' } | { kind: 'ipvlan' }>;

export interface RouteInput extends Omit<RouteSpec, 'oif'> {
  /** Output device, by ifindex or name. */
  dev?: LinkRef;
}

/** A link exists under the asked name but is not what ensure* was asked for. */
export class LinkMismatchError extends NspawnError {
  constructor(message: string) {
    super('NL_LINK_MISMATCH', message);
  }
}

const GONE = new Set(['ENODEV', 'ENOENT', 'EADDRNOTAVAIL', 'ESRCH']);

function isCode(err: unknown, ...codes: string[]): err is NetlinkError {
  return err instanceof NetlinkError && codes.includes(err.code);
}

function show(ref: LinkRef): string {
  return typeof ref === 'number' ? `ifindex ${ref}` : `"${ref}"`;
}

function linkMessages(replies: RtnlMessage[]): Link[] {
  const out: Link[] = [];
  for (const m of replies) if (m.kind === 'link') out.push(toLink(m));
  return out;
}

/** An rtnetlink client bound to one network namespace. */
export class Rtnl {
  private constructor(
    private readonly sock: NetlinkSocket,
    /** The namespace fd this client was opened with (undefined: the caller's namespace). */
    readonly netnsFd: number | undefined,
  ) {}

  /**
   * Opens a client for the namespace of `netnsFd` (default: the caller's). The fd may be closed
   * afterwards unless monitor() will be called, which opens a second socket there.
   */
  static open(opts: { netnsFd?: number } = {}): Rtnl {
    return new Rtnl(NetlinkSocket.open(opts.netnsFd === undefined ? {} : { netnsFd: opts.netnsFd }), opts.netnsFd);
  }

  /** Closes the socket; outstanding requests fail. Idempotent. */
  close(): void {
    this.sock.close();
  }

  // ---------------------------------------------------------------------------------------------
  // Links

  /** Every link of the namespace, optionally only one kind or the ports of one master (filtered by the kernel). */
  async listLinks(filter: { kind?: string; master?: LinkRef; stats?: boolean } = {}): Promise<Link[]> {
    const opts: { kind?: string; master?: number; stats?: boolean } = {};
    if (filter.kind !== undefined) opts.kind = filter.kind;
    if (filter.stats !== undefined) opts.stats = filter.stats;
    if (filter.master !== undefined) opts.master = await this.indexOf(filter.master);
    return linkMessages(await this.sock.dump(dumpLinksRequest(opts), 'list links'));
  }

  /** A link by ifindex, name or alternative name; undefined when there is none. */
  async getLink(ref: LinkRef): Promise<Link | undefined> {
    try {
      return linkMessages(await this.sock.request(getLinkRequest(ref), `get link ${show(ref)}`))[0];
    } catch (err) {
      if (isCode(err, 'ENODEV')) return undefined;
      throw err;
    }
  }

  /** Like getLink, but a missing link is an error (ENODEV). */
  async requireLink(ref: LinkRef): Promise<Link> {
    const link = await this.getLink(ref);
    if (!link) throw new NetlinkError(19 /* ENODEV */, `find link ${show(ref)}`);
    return link;
  }

  /** The ifindex of a link (numbers pass through unchecked). */
  async indexOf(ref: LinkRef): Promise<number> {
    return typeof ref === 'number' ? ref : (await this.requireLink(ref)).index;
  }

  /**
   * Creates a link of any kind; fails with EEXIST if the name is taken. Veths get the defaults of
   * createVeth, macvlan/ipvlan parents may be names.
   */
  async createLink(spec: RtnlLinkSpec): Promise<void> {
    if (spec.kind === 'macvlan') return this.createMacvlan(spec as MacvlanSpec);
    if (spec.kind === 'ipvlan') return this.createIpvlan(spec as IpvlanSpec);
    const full = spec.kind === 'veth' ? withVethDefaults(spec as VethOptions) : (spec as LinkSpec);
    await this.sock.request(newLinkRequest(full), describeCreate(full));
  }

  /**
   * Creates a veth pair; the peer may be created directly in another namespace (`peer.netnsFd`).
   * Both ends get one TX and one RX queue unless `queues` / `peer.queues` say otherwise: that is the
   * active queue count the kernel would leave them with anyway, at half the cost (see VethOptions).
   */
  createVeth(opts: VethOptions): Promise<void> {
    return this.createLink({ kind: 'veth', ...opts });
  }

  createBridge(opts: BridgeOptions): Promise<void> {
    return this.createLink({ kind: 'bridge', ...opts });
  }

  /** Creates a macvlan on `parent` (in this client's namespace), optionally directly inside `netnsFd`'s namespace. */
  async createMacvlan(opts: MacvlanSpec): Promise<void> {
    const parent = await this.parentIndex(opts.parent, `create macvlan link "${opts.name}"`);
    await this.sock.request(newLinkRequest({ kind: 'macvlan', ...opts, parent }),
      `create macvlan link "${opts.name}" on parent ${show(opts.parent)}`);
  }

  /** Creates an ipvlan on `parent`; mode l2, l3 or l3s. */
  async createIpvlan(opts: IpvlanSpec): Promise<void> {
    const parent = await this.parentIndex(opts.parent, `create ipvlan link "${opts.name}"`);
    await this.sock.request(newLinkRequest({ kind: 'ipvlan', ...opts, parent }),
      `create ipvlan link "${opts.name}" on parent ${show(opts.parent)}`);
  }

  /**
   * Creates the link, or accepts an existing link of that name if it has the same kind; returns it
   * as read back. (Only the kind is compared: other settings of an existing link are left alone.)
   */
  async ensureLink(spec: RtnlLinkSpec): Promise<Link> {
    for (let attempt = 0; ; attempt++) {
      try {
        await this.createLink(spec);
      } catch (err) {
        if (!isCode(err, 'EEXIST')) throw err;
      }
      // A link created inside another namespace is read back there.
      const link = spec.netnsFd === undefined ? await this.getLink(spec.name) : await Rtnl.readIn(spec.netnsFd, spec.name);
      if (!link) {
        if (attempt < 2) continue; // deleted between our create and our read: try again
        throw new NetlinkError(19 /* ENODEV */, `read back link "${spec.name}" after creating it`);
      }
      if (link.kind !== spec.kind) {
        throw new LinkMismatchError(`link "${spec.name}" exists but is ${link.kind ? `a ${link.kind}` : 'not a virtual link'}, not a ${spec.kind}`);
      }
      return link;
    }
  }

  /** Creates a bridge or accepts an existing one (systemd-nspawn's zone bridges). */
  ensureBridge(opts: BridgeOptions): Promise<Link> {
    return this.ensureLink({ kind: 'bridge', ...opts });
  }

  /** Creates a veth pair or accepts an existing veth of that name. */
  ensureVeth(opts: VethOptions): Promise<Link> {
    return this.ensureLink({ kind: 'veth', ...opts });
  }

  /** Changes several properties in one request. A rename with a name `ref` first resolves the ifindex. */
  async setLink(ref: LinkRef, changes: LinkChangeSpec, what?: string): Promise<void> {
    const { master, ...rest } = changes;
    const c: LinkChanges = rest;
    if (master !== undefined) c.master = master === null ? 0 : await this.indexOf(master);
    const target = changes.name !== undefined ? await this.indexOf(ref) : ref;
    await this.sock.request(setLinkRequest(target, c), what ?? `change link ${show(ref)}`);
  }

  setUp(ref: LinkRef): Promise<void> {
    return this.setLink(ref, { up: true }, `bring up link ${show(ref)}`);
  }

  setDown(ref: LinkRef): Promise<void> {
    return this.setLink(ref, { up: false }, `bring down link ${show(ref)}`);
  }

  setMaster(ref: LinkRef, master: LinkRef): Promise<void> {
    return this.setLink(ref, { master }, `enslave link ${show(ref)} to ${show(master)}`);
  }

  unsetMaster(ref: LinkRef): Promise<void> {
    return this.setLink(ref, { master: null }, `release link ${show(ref)} from its master`);
  }

  rename(ref: LinkRef, name: string): Promise<void> {
    return this.setLink(ref, { name }, `rename link ${show(ref)} to "${name}"`);
  }

  setMtu(ref: LinkRef, mtu: number): Promise<void> {
    return this.setLink(ref, { mtu }, `set MTU ${mtu} on link ${show(ref)}`);
  }

  setGroup(ref: LinkRef, group: number): Promise<void> {
    return this.setLink(ref, { group }, `set group ${group} on link ${show(ref)}`);
  }

  setMac(ref: LinkRef, mac: string): Promise<void> {
    return this.setLink(ref, { mac }, `set MAC address ${mac} on link ${show(ref)}`);
  }

  /** Moves a link into the namespace of `netnsFd`, optionally renaming it on the way. */
  moveToNetns(ref: LinkRef, netnsFd: number, opts: { name?: string } = {}): Promise<void> {
    const changes: LinkChangeSpec = { netnsFd };
    if (opts.name !== undefined) changes.name = opts.name;
    return this.setLink(ref, changes, `move link ${show(ref)} to network namespace fd ${netnsFd}${opts.name ? ` as "${opts.name}"` : ''}`);
  }

  /** Adds alternative names (RTM_NEWLINKPROP); fails with EEXIST if one is taken. */
  async addAltnames(ref: LinkRef, names: string | readonly string[]): Promise<void> {
    const list = typeof names === 'string' ? [names] : names;
    await this.sock.request(altnameRequest('add', ref, list), `add alternative name ${list.map((n) => `"${n}"`).join(', ')} to link ${show(ref)}`);
  }

  /** Removes alternative names (RTM_DELLINKPROP); returns false when the link or a name was not there. */
  async deleteAltnames(ref: LinkRef, names: string | readonly string[]): Promise<boolean> {
    const list = typeof names === 'string' ? [names] : names;
    try {
      await this.sock.request(altnameRequest('delete', ref, list), `delete alternative name ${list.map((n) => `"${n}"`).join(', ')} from link ${show(ref)}`);
      return true;
    } catch (err) {
      if (isCode(err, ...GONE)) return false;
      throw err;
    }
  }

  /** Deletes a link (a veth's peer goes with it). Returns false if it was already gone. */
  async deleteLink(ref: LinkRef): Promise<boolean> {
    try {
      await this.sock.request(delLinkRequest(ref), `delete link ${show(ref)}`);
      return true;
    } catch (err) {
      if (isCode(err, ...GONE)) return false;
      throw err;
    }
  }

  /**
   * Deletes every link of a group in one request (the kernel unregisters them as one batch: one RCU
   * grace period instead of one per link). Succeeds when the group is empty.
   */
  async deleteLinkGroup(group: number): Promise<void> {
    try {
      await this.sock.request(delLinkGroupRequest(group), `delete the links of group ${group}`);
    } catch (err) {
      if (!isCode(err, ...GONE)) throw err;
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Addresses

  /** Addresses of the namespace, optionally of one link and/or one family. */
  async listAddresses(filter: { link?: LinkRef; family?: 4 | 6 } = {}): Promise<Address[]> {
    const opts: { family?: 4 | 6; index?: number } = {};
    if (filter.family !== undefined) opts.family = filter.family;
    if (filter.link !== undefined) opts.index = await this.indexOf(filter.link);
    const replies = await this.sock.dump(dumpAddrsRequest(opts), 'list addresses');
    const out: Address[] = [];
    for (const m of replies) {
      // The kernel filters by ifindex only when strict checking is on; check again.
      if (m.kind === 'addr' && (opts.index === undefined || m.header.index === opts.index)) out.push(toAddress(m));
    }
    return out;
  }

  /** Adds "192.0.2.1/24" or "2001:db8::1/64" to a link; fails with EEXIST if it is there. */
  async addAddress(link: LinkRef, cidr: string, opts: AddressOptions = {}): Promise<void> {
    const index = await this.indexOf(link);
    await this.sock.request(addrRequest('add', index, cidr, opts), `add address ${cidr} to link ${show(link)}`);
  }

  /** Adds an address or accepts it being there already; returns it as read back. */
  async ensureAddress(link: LinkRef, cidr: string, opts: AddressOptions = {}): Promise<Address> {
    const index = await this.indexOf(link);
    try {
      await this.sock.request(addrRequest('add', index, cidr, opts), `add address ${cidr} to link ${show(link)}`);
    } catch (err) {
      if (!isCode(err, 'EEXIST')) throw err;
    }
    const want = parseCidr(cidr);
    const found = (await this.listAddresses({ link: index, family: want.family }))
      .find((a) => a.address === want.address && a.prefixlen === want.prefixlen);
    if (!found) {
      throw new NspawnError('NL_ADDRESS_MISMATCH', `address ${cidr} on link ${show(link)} exists with another prefix length, or vanished after it was added`);
    }
    return found;
  }

  /** Removes an address; returns false if it (or the link) was not there. */
  async deleteAddress(link: LinkRef, cidr: string): Promise<boolean> {
    return this.deleteOnLink(link, (index) => addrRequest('delete', index, cidr), `delete address ${cidr} from link ${show(link)}`);
  }

  /**
   * Forgets the neighbour entry of `address` on a link (the MAC last learnt for it), so that the
   * next packet asks again; false when there was none. For an address that moved to another MAC: a
   * container started anew on a bridge with the address of one just gone.
   */
  async deleteNeighbour(link: LinkRef, address: string): Promise<boolean> {
    return this.deleteOnLink(link, (index) => delNeighRequest(index, address), `forget the neighbour ${address} on link ${show(link)}`);
  }

  /** Sends a delete request for something on a link; false when the link or the thing was already gone. */
  private async deleteOnLink(link: LinkRef, request: (index: number) => RtnlMessage, what: string): Promise<boolean> {
    let index: number;
    try {
      index = await this.indexOf(link);
    } catch (err) {
      if (isCode(err, 'ENODEV')) return false;
      throw err;
    }
    try {
      await this.sock.request(request(index), what);
      return true;
    } catch (err) {
      if (isCode(err, ...GONE)) return false;
      throw err;
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Routes

  /** Routes of one table (default main), both families unless one is given. */
  async listRoutes(filter: { family?: 4 | 6; table?: number } = {}): Promise<Route[]> {
    const table = filter.table ?? C.RT_TABLE_MAIN;
    const opts: { family?: 4 | 6; table?: number } = { table };
    if (filter.family !== undefined) opts.family = filter.family;
    const replies = await this.sock.dump(dumpRoutesRequest(opts), 'list routes');
    const out: Route[] = [];
    for (const m of replies) if (m.kind === 'route') {
      const r = toRoute(m);
      if (r.table === table) out.push(r);
    }
    return out;
  }

  /** Adds a route ("default" or a prefix); fails with EEXIST if the same route exists. */
  async addRoute(spec: RouteInput): Promise<void> {
    await this.sock.request(routeRequest('add', await this.routeSpec(spec)), `add route ${describeRoute(spec)}`);
  }

  /** Adds a route or replaces the one with the same destination, table and metric. */
  async replaceRoute(spec: RouteInput): Promise<void> {
    await this.sock.request(routeRequest('replace', await this.routeSpec(spec)), `replace route ${describeRoute(spec)}`);
  }

  /** Deletes a route; returns false if there was no such route. */
  async deleteRoute(spec: RouteInput): Promise<boolean> {
    let resolved: RouteSpec;
    try {
      resolved = await this.routeSpec(spec);
    } catch (err) {
      if (isCode(err, 'ENODEV')) return false;
      throw err;
    }
    try {
      await this.sock.request(routeRequest('delete', resolved), `delete route ${describeRoute(spec)}`);
      return true;
    } catch (err) {
      if (isCode(err, ...GONE)) return false;
      throw err;
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Monitor

  /** Starts streaming link and address events of this namespace. close() the monitor when done. */
  monitor(opts: Omit<MonitorOptions, 'netnsFd'> = {}): RtnlMonitor {
    return new RtnlMonitor(this.netnsFd === undefined ? opts : { ...opts, netnsFd: this.netnsFd });
  }

  // ---------------------------------------------------------------------------------------------

  private async parentIndex(parent: LinkRef, what: string): Promise<number> {
    if (typeof parent === 'number') return parent;
    const link = await this.getLink(parent);
    if (!link) throw new NetlinkError(19 /* ENODEV */, `${what} on parent "${parent}"`);
    return link.index;
  }

  private static async readIn(netnsFd: number, name: string): Promise<Link | undefined> {
    const other = Rtnl.open({ netnsFd });
    try {
      return await other.getLink(name);
    } finally {
      other.close();
    }
  }

  private async routeSpec(spec: RouteInput): Promise<RouteSpec> {
    const { dev, ...rest } = spec;
    const out: RouteSpec = rest;
    if (dev !== undefined) out.oif = await this.indexOf(dev);
    return out;
  }
}

function withVethDefaults(opts: VethOptions): LinkSpec {
  return { kind: 'veth', ...opts, queues: opts.queues ?? 1, peer: { ...opts.peer, queues: opts.peer?.queues ?? 1 } };
}

function describeCreate(spec: LinkSpec): string {
  if (spec.kind === 'veth') {
    const peer = (spec as VethOptions).peer;
    return `create veth link "${spec.name}"${peer?.name ? ` (peer "${peer.name}")` : ''}`;
  }
  if (spec.kind === 'bridge') return `create bridge "${spec.name}"`;
  return `create ${spec.kind} link "${spec.name}"`;
}

function describeRoute(spec: RouteInput): string {
  return [spec.dst, spec.gateway && `via ${spec.gateway}`, spec.dev !== undefined && `dev ${show(spec.dev)}`,
    spec.metric !== undefined && `metric ${spec.metric}`, spec.table !== undefined && `table ${spec.table}`]
    .filter(Boolean).join(' ');
}
