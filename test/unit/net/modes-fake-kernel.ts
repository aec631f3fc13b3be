// An in-memory stand-in for the kernel's links in a few network namespaces, behind the LinkClient
// interface the network modes use: enough of rtnetlink's semantics (EEXIST, ENODEV, veth peers in
// other namespaces, bridge ports, moves, altnames) to run the modes without a kernel, and a way to
// make the n-th change fail, so that rollback can be checked after every step.
import type { Link } from '../../../src/net/rtnl.js';
import { NetlinkError } from '../../../src/net/rtnl.js';
import type { LinkClient, ZoneLock } from '../../../src/net/network-plan.js';

interface FakeLink {
  index: number;
  name: string;
  kind: string | undefined;
  type: number;
  up: boolean;
  mac: string;
  master: number | undefined;
  altnames: string[];
  /** veth: peer {ns, index}; macvlan/ipvlan: parent {ns, index} */
  link?: { ns: number; index: number };
  mode?: string;
}

const ERRNO: Record<string, number> = { EEXIST: 17, ENODEV: 19, EINVAL: 22, EBUSY: 16, EIO: 5 };

function fail(code: keyof typeof ERRNO, what: string): never {
  throw new NetlinkError(ERRNO[code] as number, what);
}

export class FakeKernel {
  /** namespace id → its links */
  readonly namespaces = new Map<number, Map<number, FakeLink>>();
  private nextIndex = 2;
  private macCounter = 0;
  /** counts changes; the change numbered `failAt` throws EIO */
  changes = 0;
  failAt = 0;
  readonly log: string[] = [];

  constructor(ids: number[]) {
    for (const id of ids) {
      this.namespaces.set(id, new Map([[1, { index: 1, name: 'lo', kind: undefined, type: 772, up: false, mac: '00:00:00:00:00:00', master: undefined, altnames: [] }]]));
    }
  }

  ns(id: number): Map<number, FakeLink> {
    const ns = this.namespaces.get(id);
    if (!ns) fail('EINVAL', `namespace fd ${id}`);
    return ns;
  }

  /** Adds a link as a test fixture (not counted as a change). */
  add(nsId: number, l: Partial<FakeLink> & { name: string }): FakeLink {
    const link: FakeLink = {
      index: this.nextIndex++, kind: undefined, type: 1, up: false, mac: this.mac(), master: undefined, altnames: [], ...l,
    };
    this.ns(nsId).set(link.index, link);
    return link;
  }

  /** name → "kind[@master][,up]" for every link of a namespace, for comparing states. */
  state(nsId: number): Record<string, string> {
    const ns = this.ns(nsId);
    const out: Record<string, string> = {};
    for (const l of ns.values()) {
      const master = l.master !== undefined ? ns.get(l.master)?.name : undefined;
      out[l.name] = `${l.kind ?? 'dev'}${master ? `@${master}` : ''}${l.up ? ',up' : ''}${l.altnames.length ? `,alt=${l.altnames.join('+')}` : ''}`;
    }
    return out;
  }

  private mac(): string {
    this.macCounter++;
    return `02:00:00:00:00:${this.macCounter.toString(16).padStart(2, '0')}`;
  }

  private change(what: string): void {
    this.changes++;
    this.log.push(what);
    if (this.changes === this.failAt) fail('EIO', what);
  }

  find(nsId: number, ref: number | string): FakeLink | undefined {
    const ns = this.ns(nsId);
    if (typeof ref === 'number') return ns.get(ref);
    for (const l of ns.values()) if (l.name === ref || l.altnames.includes(ref)) return l;
    return undefined;
  }

  private taken(nsId: number, name: string): boolean {
    return this.find(nsId, name) !== undefined;
  }

  private view(nsId: number, l: FakeLink): Link {
    return {
      index: l.index, name: l.name, kind: l.kind, type: l.type, flags: l.up ? 1 : 0, up: l.up, lowerUp: l.up,
      operstate: l.up ? 'up' : 'down', mtu: 1500, mac: l.mac, master: l.master, group: 0, altnames: [...l.altnames],
      parent: l.link?.index, linkNetnsid: l.link && l.link.ns !== nsId ? 0 : undefined,
      message: undefined as unknown as Link['message'],
    };
  }

  private remove(nsId: number, l: FakeLink): void {
    const ns = this.ns(nsId);
    ns.delete(l.index);
    if (l.kind === 'veth' && l.link) this.namespaces.get(l.link.ns)?.delete(l.link.index);
    if (l.kind === 'bridge') for (const p of ns.values()) if (p.master === l.index) p.master = undefined;
    for (const [id, other] of this.namespaces) {
      for (const o of other.values()) {
        if ((o.kind === 'macvlan' || o.kind === 'ipvlan') && o.link?.ns === nsId && o.link.index === l.index) other.delete(o.index);
      }
      void id;
    }
  }

  /** Moves a link between namespaces (what a dying namespace does to physical devices is not modelled). */
  private move(from: number, l: FakeLink, to: number, name?: string): void {
    const newName = name ?? l.name;
    if (this.taken(to, newName)) fail('EEXIST', `move link ${l.name}`);
    this.ns(from).delete(l.index);
    l.name = newName;
    l.master = undefined;
    l.up = false;
    if (this.ns(to).has(l.index)) l.index = this.nextIndex++;
    this.ns(to).set(l.index, l);
  }

  client(nsId: number): LinkClient {
    // eslint-disable-next-line @typescript-eslint/no-this-alias -- the client's methods are plain functions of an object literal
    const k = this;
    const need = (ref: number | string, what: string): FakeLink => k.find(nsId, ref) ?? fail('ENODEV', what);
    return {
      async getLink(ref) {
        const l = k.find(nsId, ref);
        return l ? k.view(nsId, l) : undefined;
      },
      async listLinks(filter = {}) {
        return [...k.ns(nsId).values()]
          .filter((l) => (filter.kind === undefined || l.kind === filter.kind) && (filter.master === undefined || l.master === filter.master))
          .map((l) => k.view(nsId, l));
      },
      async createVeth(o) {
        const peerNs = o.peer.netnsFd ?? nsId;
        k.change(`create veth ${o.name}/${o.peer.name}`);
        if (k.taken(nsId, o.name) || k.taken(peerNs, o.peer.name)) fail('EEXIST', `create veth ${o.name}`);
        const a = k.add(nsId, { name: o.name, kind: 'veth', mac: o.mac ?? k.mac() });
        const b = k.add(peerNs, { name: o.peer.name, kind: 'veth', mac: o.peer.mac ?? k.mac() });
        a.link = { ns: peerNs, index: b.index };
        b.link = { ns: nsId, index: a.index };
      },
      async createBridge(o) {
        k.change(`create bridge ${o.name}`);
        if (k.taken(nsId, o.name)) fail('EEXIST', `create bridge ${o.name}`);
        k.add(nsId, { name: o.name, kind: 'bridge' });
      },
      async createMacvlan(o) {
        const parent = need(o.parent, `create macvlan ${o.name}`);
        const target = o.netnsFd ?? nsId;
        k.change(`create macvlan ${o.name}`);
        if (parent.master !== undefined) fail('EBUSY', `create macvlan ${o.name}`);
        if (k.taken(target, o.name)) fail('EEXIST', `create macvlan ${o.name}`);
        k.add(target, { name: o.name, kind: 'macvlan', mac: o.mac ?? k.mac(), link: { ns: nsId, index: parent.index }, mode: o.mode });
      },
      async createIpvlan(o) {
        const parent = need(o.parent, `create ipvlan ${o.name}`);
        const target = o.netnsFd ?? nsId;
        k.change(`create ipvlan ${o.name}`);
        if (k.taken(target, o.name)) fail('EEXIST', `create ipvlan ${o.name}`);
        k.add(target, { name: o.name, kind: 'ipvlan', mac: parent.mac, link: { ns: nsId, index: parent.index }, mode: o.mode });
      },
      async setLink(ref, c) {
        const l = need(ref, `change link ${ref}`);
        k.change(`set ${l.name} ${JSON.stringify(c)}`);
        if (c.master !== undefined && c.master !== null) {
          const m = k.find(nsId, c.master);
          if (!m || m.kind !== 'bridge') fail('EINVAL', `enslave ${l.name}`);
          l.master = m.index;
        } else if (c.master === null) {
          l.master = undefined;
        }
        if (c.up !== undefined) l.up = c.up;
        if (c.name !== undefined) l.name = c.name;
      },
      async setUp(ref) {
        const l = need(ref, `bring up ${ref}`);
        k.change(`up ${l.name}`);
        l.up = true;
      },
      async moveToNetns(ref, fd, opts = {}) {
        const l = need(ref, `move ${ref}`);
        k.change(`move ${l.name} to ${fd}`);
        k.move(nsId, l, fd, opts.name);
      },
      async addAltnames(ref, names) {
        const l = need(ref, `altname ${ref}`);
        k.change(`altname ${l.name}`);
        const list = typeof names === 'string' ? [names] : [...names];
        for (const n of list) if (k.taken(nsId, n)) fail('EEXIST', `altname ${n}`);
        l.altnames.push(...list);
      },
      async deleteLink(ref) {
        const l = k.find(nsId, ref);
        k.change(`delete ${l?.name ?? ref}`);
        if (!l) return false;
        k.remove(nsId, l);
        return true;
      },
    };
  }
}

/** A lock for one process that fails the test if it is taken twice at once. */
export function fakeZoneLock(): ZoneLock & { held: boolean; acquisitions: number } {
  const lock = {
    held: false,
    acquisitions: 0,
    async acquire(): Promise<() => void> {
      if (lock.held) throw new Error('zone lock taken twice');
      lock.held = true;
      lock.acquisitions++;
      return () => { lock.held = false; };
    },
  };
  return lock;
}
