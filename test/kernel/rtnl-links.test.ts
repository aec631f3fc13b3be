// The rtnetlink client's link operations against the real kernel, each inside a fresh namespace, each
// checked with an independent observer (`ip -j -d link show`), not only our own reader.
import { describe, expect } from 'vitest';
import { ktest } from '../helpers/kernel.js';
import { TestNetns } from '../helpers/netns.js';
import { SysError } from '../../src/native.js';
import { LinkMismatchError, NetlinkError, Rtnl } from '../../src/net/rtnl.js';

interface IpLink {
  ifindex: number;
  ifname: string;
  flags: string[];
  mtu: number;
  address: string;
  group: string;
  master?: string;
  link?: string;
  link_index?: number;
  altnames?: string[];
  operstate: string;
  linkinfo?: { info_kind?: string; info_data?: { mode?: string; flags?: string } };
}

async function ipLinks(ns: TestNetns): Promise<IpLink[]> {
  return ns.ipJson<IpLink[]>(['-d', 'link', 'show']);
}

async function ipLink(ns: TestNetns, name: string): Promise<IpLink | undefined> {
  return (await ipLinks(ns)).find((l) => l.ifname === name);
}

async function failure(p: Promise<unknown>): Promise<NetlinkError> {
  const err = await p.then(() => undefined, (e: unknown) => e);
  expect(err).toBeInstanceOf(NetlinkError);
  return err as NetlinkError;
}

/** A client for the test's namespace that is closed when the test ends. */
function client(netns: TestNetns, onTestFinished: (fn: () => void) => void): Rtnl {
  const r = Rtnl.open({ netnsFd: netns.fd });
  onTestFinished(() => r.close());
  return r;
}

/** Runs fn with a second namespace, destroyed before the test's leak check. */
async function withOtherNetns(fn: (other: TestNetns) => Promise<void>): Promise<void> {
  const ns = await TestNetns.create('other');
  try {
    await fn(ns);
  } finally {
    await ns.destroy();
  }
}

describe('veth', () => {
  ktest('a veth pair with both MACs, the peer created directly in another namespace', async ({ netns, onTestFinished }) => {
    await withOtherNetns(async (container) => {
      const r = client(netns, onTestFinished);
      await r.createVeth({ name: 've-web', mac: '02:00:00:00:00:01', mtu: 1400, peer: { name: 'host0', mac: '02:00:00:00:00:02', netnsFd: container.fd } });

      const host = await ipLink(netns, 've-web');
      expect(host).toMatchObject({ ifname: 've-web', address: '02:00:00:00:00:01', mtu: 1400, linkinfo: { info_kind: 'veth' } });
      const peer = await ipLink(container, 'host0');
      expect(peer).toMatchObject({ ifname: 'host0', address: '02:00:00:00:00:02', linkinfo: { info_kind: 'veth' } });
      expect(await ipLink(netns, 'host0')).toBeUndefined();

      // our reader agrees, and sees the peer in another namespace
      const ours = await r.getLink('ve-web');
      expect(ours).toMatchObject({ name: 've-web', kind: 'veth', mac: '02:00:00:00:00:01', mtu: 1400, index: host?.ifindex, parent: peer?.ifindex });
      expect(ours?.linkNetnsid).toBeTypeOf('number');
    });
  });

  ktest('creating an existing link fails with EEXIST and a message naming it', async ({ netns, onTestFinished }) => {
    const r = client(netns, onTestFinished);
    await r.createVeth({ name: 've-foo', peer: { name: 'host0' } });
    const err = await failure(r.createVeth({ name: 've-foo', peer: { name: 'host1' } }));
    expect(err).toBeInstanceOf(SysError);
    expect(err).toMatchObject({ code: 'EEXIST', errno: 17 });
    expect(err.message).toBe('RTNETLINK: cannot create veth link "ve-foo" (peer "host1"): File exists (EEXIST)');
    // nothing was half-made
    expect(await ipLink(netns, 'host1')).toBeUndefined();
  });

  ktest('ensureVeth accepts an existing veth; ensureBridge refuses a veth of that name', async ({ netns, onTestFinished }) => {
    const r = client(netns, onTestFinished);
    const made = await r.ensureVeth({ name: 've-foo', peer: { name: 'host0' } });
    const again = await r.ensureVeth({ name: 've-foo', peer: { name: 'host0' } });
    expect(again.index).toBe(made.index);
    expect((await ipLinks(netns)).filter((l) => l.ifname === 've-foo')).toHaveLength(1);
    const err = await r.ensureBridge({ name: 've-foo' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(LinkMismatchError);
    expect((err as Error).message).toBe('link "ve-foo" exists but is a veth, not a bridge');
  });

  ktest('ensureVeth with the peer in another namespace reads the link back there', async ({ netns, onTestFinished }) => {
    await withOtherNetns(async (other) => {
      const r = client(netns, onTestFinished);
      const link = await r.ensureVeth({ name: 'host0', netnsFd: other.fd, peer: { name: 've-x' } });
      expect(link).toMatchObject({ name: 'host0', kind: 'veth' });
      expect(await ipLink(other, 'host0')).toMatchObject({ ifindex: link.index });
      expect(await ipLink(netns, 've-x')).toBeDefined();
    });
  });
});

describe('bridge and link settings', () => {
  ktest('bridge, master, nomaster, up, down, MTU, group, MAC, rename', async ({ netns, onTestFinished }) => {
    const r = client(netns, onTestFinished);
    const br = await r.ensureBridge({ name: 'vz-zone' });
    expect(br.kind).toBe('bridge');
    expect((await r.ensureBridge({ name: 'vz-zone' })).index).toBe(br.index);
    await r.createVeth({ name: 'vb-a', peer: { name: 'vb-a-p' } });

    await r.setMaster('vb-a', 'vz-zone');
    expect((await ipLink(netns, 'vb-a'))?.master).toBe('vz-zone');
    expect((await r.listLinks({ master: 'vz-zone' })).map((l) => l.name)).toEqual(['vb-a']);
    await r.unsetMaster('vb-a');
    expect((await ipLink(netns, 'vb-a'))?.master).toBeUndefined();

    await r.setUp('vb-a');
    expect((await ipLink(netns, 'vb-a'))?.flags).toContain('UP');
    expect((await r.getLink('vb-a'))?.up).toBe(true);
    await r.setDown('vb-a');
    expect((await ipLink(netns, 'vb-a'))?.flags).not.toContain('UP');

    await r.setMtu('vb-a', 1280);
    await r.setGroup('vb-a', 42);
    await r.setMac('vb-a', '02:aa:bb:cc:dd:ee');
    expect(await ipLink(netns, 'vb-a')).toMatchObject({ mtu: 1280, group: '42', address: '02:aa:bb:cc:dd:ee' });

    await r.rename('vb-a', 'vb-renamed');
    expect(await ipLink(netns, 'vb-a')).toBeUndefined();
    expect(await ipLink(netns, 'vb-renamed')).toMatchObject({ mtu: 1280 });
    expect(await r.getLink('vb-a')).toBeUndefined();
  });

  ktest('a link created up and enslaved in the same request', async ({ netns, onTestFinished }) => {
    const r = client(netns, onTestFinished);
    const br = await r.ensureBridge({ name: 'br0', up: true });
    await r.createVeth({ name: 'vb-b', master: br.index, up: true, peer: { name: 'vb-b-p' } });
    expect(await ipLink(netns, 'vb-b')).toMatchObject({ master: 'br0', flags: expect.arrayContaining(['UP']) });
    expect(await ipLink(netns, 'br0')).toMatchObject({ flags: expect.arrayContaining(['UP']) });
  });

  ktest('changing a missing link fails with ENODEV', async ({ netns, onTestFinished }) => {
    const r = client(netns, onTestFinished);
    const err = await failure(r.setUp('nope'));
    expect(err).toMatchObject({ code: 'ENODEV', errno: 19 });
    expect(err.message).toBe('RTNETLINK: cannot bring up link "nope": No such device (ENODEV)');
    expect((await failure(r.setMaster('lo', 'nope'))).message).toBe('RTNETLINK: cannot find link "nope": No such device (ENODEV)');
  });
});

describe('lookups, listing, namespaces', () => {
  ktest('getLink by name, index and alternative name; undefined when missing', async ({ netns, onTestFinished }) => {
    const r = client(netns, onTestFinished);
    await r.createVeth({ name: 've-a', peer: { name: 've-b' } });
    const byName = await r.getLink('ve-a');
    expect(byName?.name).toBe('ve-a');
    expect((await r.getLink(byName?.index ?? 0))?.name).toBe('ve-a');
    expect(await r.getLink('missing')).toBeUndefined();
    expect(await r.getLink(999_999)).toBeUndefined();
    const lo = await r.getLink('lo');
    expect(lo).toMatchObject({ index: 1, up: true, kind: undefined });
  });

  ktest('listLinks agrees with ip, also filtered by kind in the kernel', async ({ netns, onTestFinished }) => {
    const r = client(netns, onTestFinished);
    await r.createVeth({ name: 've-a', peer: { name: 've-b' } });
    await r.createBridge({ name: 'br0' });
    const ours = await r.listLinks();
    const theirs = await ipLinks(netns);
    expect(ours.map((l) => [l.index, l.name, l.mac, l.mtu])).toEqual(theirs.map((l) => [l.ifindex, l.ifname, l.address, l.mtu]));
    expect((await r.listLinks({ kind: 'veth' })).map((l) => l.name).sort()).toEqual(['ve-a', 've-b']);
    expect((await r.listLinks({ kind: 'bridge' })).map((l) => l.name)).toEqual(['br0']);
  });

  ktest('a dump of hundreds of links spans many datagrams and is complete', async ({ netns, onTestFinished }) => {
    const r = client(netns, onTestFinished);
    await Promise.all(Array.from({ length: 300 }, (_, i) => r.createVeth({ name: `d${i}`, group: 5, peer: { name: `dp${i}` } })));
    const links = await r.listLinks();
    expect(links).toHaveLength(601);
    expect(new Set(links.map((l) => l.index)).size).toBe(601);
    expect((await ipLinks(netns)).length).toBe(601);
    await r.deleteLinkGroup(5);
  });

  ktest('moveToNetns moves (and renames) a link into another namespace', async ({ netns, onTestFinished }) => {
    await withOtherNetns(async (other) => {
      const r = client(netns, onTestFinished);
      await r.createVeth({ name: 've-m', peer: { name: 've-m-p' } });
      await r.moveToNetns('ve-m-p', other.fd, { name: 'host0' });
      expect(await ipLink(netns, 've-m-p')).toBeUndefined();
      expect(await ipLink(other, 'host0')).toMatchObject({ linkinfo: { info_kind: 'veth' } });
      // a client bound to the other namespace sees it; nobody switched namespace
      const there = Rtnl.open({ netnsFd: other.fd });
      try {
        expect((await there.getLink('host0'))?.kind).toBe('veth');
      } finally {
        there.close();
      }
    });
  });

  ktest('alternative names: add, look up, delete (RTM_NEWLINKPROP / RTM_DELLINKPROP)', async ({ netns, onTestFinished }) => {
    const r = client(netns, onTestFinished);
    await r.createVeth({ name: 've-a', peer: { name: 've-b' } });
    await r.addAltnames('ve-a', ['ve-a-alt', 'a-name-much-longer-than-fifteen-bytes']);
    expect((await ipLink(netns, 've-a'))?.altnames).toEqual(['ve-a-alt', 'a-name-much-longer-than-fifteen-bytes']);
    expect((await r.getLink('a-name-much-longer-than-fifteen-bytes'))?.name).toBe('ve-a');
    expect((await r.getLink('ve-a'))?.altnames).toEqual(['ve-a-alt', 'a-name-much-longer-than-fifteen-bytes']);
    expect((await failure(r.addAltnames('ve-b', 've-a-alt'))).code).toBe('EEXIST');
    expect(await r.deleteAltnames('ve-a', 've-a-alt')).toBe(true);
    expect((await ipLink(netns, 've-a'))?.altnames).toEqual(['a-name-much-longer-than-fifteen-bytes']);
    expect(await r.deleteAltnames('ve-a', 've-a-alt')).toBe(false);
  });
});

describe('delete', () => {
  ktest('deleteLink removes the pair and treats "already gone" as success', async ({ netns, onTestFinished }) => {
    const r = client(netns, onTestFinished);
    await r.createVeth({ name: 've-a', peer: { name: 've-b' } });
    expect(await r.deleteLink('ve-a')).toBe(true);
    expect((await ipLinks(netns)).map((l) => l.ifname)).toEqual(['lo']);
    expect(await r.deleteLink('ve-a')).toBe(false);
    expect(await r.deleteLink(424242)).toBe(false);
  });

  ktest('deleteLinkGroup removes every link of the group in one request, and nothing else', async ({ netns, onTestFinished }) => {
    const r = client(netns, onTestFinished);
    await Promise.all(Array.from({ length: 20 }, (_, i) => r.createVeth({ name: `g${i}`, group: 77, peer: { name: `gp${i}`, group: 77 } })));
    await r.createVeth({ name: 'keep', group: 78, peer: { name: 'keep-p' } });
    expect((await ipLinks(netns)).filter((l) => l.group === '77')).toHaveLength(40);
    await r.deleteLinkGroup(77);
    expect((await ipLinks(netns)).map((l) => l.ifname).sort()).toEqual(['keep', 'keep-p', 'lo']);
    await r.deleteLinkGroup(77); // empty group: fine
  });
});

describe('macvlan and ipvlan', () => {
  for (const mode of ['private', 'vepa', 'bridge', 'passthru', 'source'] as const) {
    ktest(`macvlan mode ${mode} on a parent`, async ({ netns, onTestFinished }) => {
      const r = client(netns, onTestFinished);
      await r.createVeth({ name: 'parent0', peer: { name: 'parent0-p' } });
      await r.createMacvlan({ name: 'mv-x', parent: 'parent0', mode });
      const ip = await ipLink(netns, 'mv-x');
      expect(ip?.linkinfo).toMatchObject({ info_kind: 'macvlan', info_data: { mode } });
      expect(ip?.link).toBe('parent0');
      expect((await r.getLink('mv-x'))?.macvlan).toEqual({ mode, flags: 0 });
    });
  }

  ktest('a macvlan created directly inside another namespace', async ({ netns, onTestFinished }) => {
    await withOtherNetns(async (container) => {
      const r = client(netns, onTestFinished);
      await r.createVeth({ name: 'parent0', peer: { name: 'parent0-p' } });
      await r.createMacvlan({ name: 'mv-web', parent: 'parent0', mode: 'bridge', netnsFd: container.fd });
      expect(await ipLink(netns, 'mv-web')).toBeUndefined();
      expect((await ipLink(container, 'mv-web'))?.linkinfo).toMatchObject({ info_kind: 'macvlan', info_data: { mode: 'bridge' } });
    });
  });

  ktest('ensureLink creates a macvlan on a parent given by name, then accepts it', async ({ netns, onTestFinished }) => {
    const r = client(netns, onTestFinished);
    await r.createVeth({ name: 'parent0', peer: { name: 'parent0-p' } });
    const first = await r.ensureLink({ kind: 'macvlan', name: 'mv-e', parent: 'parent0', mode: 'private' });
    const again = await r.ensureLink({ kind: 'macvlan', name: 'mv-e', parent: 'parent0', mode: 'private' });
    expect(again.index).toBe(first.index);
    expect(first.macvlan?.mode).toBe('private');
    expect((await ipLinks(netns)).filter((l) => l.ifname === 'mv-e')).toHaveLength(1);
  });

  ktest('a macvlan on a missing parent fails with ENODEV, by name or by index', async ({ netns, onTestFinished }) => {
    const r = client(netns, onTestFinished);
    const byName = await failure(r.createMacvlan({ name: 'mv-x', parent: 'eth9', mode: 'bridge' }));
    expect(byName).toMatchObject({ code: 'ENODEV', errno: 19 });
    expect(byName.message).toBe('RTNETLINK: cannot create macvlan link "mv-x" on parent "eth9": No such device (ENODEV)');
    // the kernel's own answer for an unknown ifindex
    const byIndex = await failure(r.createMacvlan({ name: 'mv-x', parent: 4242, mode: 'bridge' }));
    expect(byIndex.code).toBe('ENODEV');
    expect(byIndex.message).toMatch(/^RTNETLINK: cannot create macvlan link "mv-x" on parent ifindex 4242: No such device \(ENODEV\)/);
  });

  for (const mode of ['l2', 'l3', 'l3s'] as const) {
    ktest(`ipvlan mode ${mode} (skips, naming the kernel's error, where the kernel has no ipvlan)`, async ({ netns, onTestFinished, skip }) => {
      const r = client(netns, onTestFinished);
      await r.createVeth({ name: 'parent0', peer: { name: 'parent0-p' } });
      const err = await r.createIpvlan({ name: 'iv-x', parent: 'parent0', mode }).then(() => undefined, (e: unknown) => e);
      if (err instanceof NetlinkError && err.code === 'EOPNOTSUPP') {
        // The request itself is pinned by golden bytes (test/unit/netlink/requests.test.ts).
        expect(err.message).toMatch(/^RTNETLINK: cannot create ipvlan link "iv-x" on parent "parent0": Operation not supported \(EOPNOTSUPP\)/);
        skip(`this kernel has no ipvlan: it answered ${err.message.replace(/^RTNETLINK: cannot [^:]+: /, '')}`);
      }
      expect(err).toBeUndefined();
      expect((await ipLink(netns, 'iv-x'))?.linkinfo).toMatchObject({ info_kind: 'ipvlan', info_data: { mode } });
      expect((await r.getLink('iv-x'))?.ipvlan?.mode).toBe(mode);
    });
  }
});
