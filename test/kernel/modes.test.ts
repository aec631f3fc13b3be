// Each network mode against the real kernel: the test's namespace stands for the host, a second
// namespace for the container. Every result is read back from both sides with `ip -j -d link`
// (not our own decoder), and every test is leak-checked after teardown.
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect } from 'vitest';
import { ktest } from '../helpers/kernel.js';
import { TestNetns } from '../helpers/netns.js';
import { defaultNetworkSpec, type NetworkSpec } from '../../src/runtime/spec.js';
import {
  ContainerNetwork, NetworkSetupError, cleanupStaleZoneBridges, planNetwork, setupContainerNetwork, zoneLock,
} from '../../src/net/network-plan.js';
import { Rtnl } from '../../src/net/rtnl.js';
import { TeardownError } from '../../src/errors.js';

/** The reference's worked example (nspawn-networking.md §2). */
const MACHINE_ID = Uint8Array.from(Buffer.from('0123456789abcdef0123456789abcdef', 'hex'));
const LOCK_PATH = '/run/nspawn-ts/test-network-zone.lock';
const LOCK = zoneLock({ path: LOCK_PATH, systemdPath: null });
// the file's own zone lock: made for all its tests, removed after them (a flock file stays while in use)
beforeAll(() => {
  mkdirSync('/run/nspawn-ts', { recursive: true });
  writeFileSync(LOCK_PATH, '', { flag: 'a' });
});
afterAll(() => rmSync(LOCK_PATH, { force: true }));

interface IpLink {
  ifindex: number;
  ifname: string;
  flags: string[];
  address: string;
  master?: string;
  link?: string | null;
  link_index?: number;
  link_netnsid?: number;
  altnames?: string[];
  operstate: string;
  linkinfo?: { info_kind?: string; info_data?: { mode?: string } };
}

async function links(ns: TestNetns): Promise<IpLink[]> {
  return ns.ipJson<IpLink[]>(['-d', 'link', 'show']);
}

async function link(ns: TestNetns, name: string): Promise<IpLink | undefined> {
  return (await links(ns)).find((l) => l.ifname === name);
}

async function names(ns: TestNetns): Promise<string[]> {
  return (await links(ns)).map((l) => l.ifname).sort();
}

function spec(over: Partial<NetworkSpec>): NetworkSpec {
  return { ...defaultNetworkSpec(), private: true, ...over };
}

function setup(host: TestNetns, container: TestNetns, machine: string, network: NetworkSpec): Promise<ContainerNetwork> {
  return setupContainerNetwork(planNetwork({ machine, network, machineId: MACHINE_ID }), {
    containerNetns: container.fd, hostNetnsFd: host.fd, zoneLock: LOCK,
  });
}

async function failure(p: Promise<unknown>): Promise<NetworkSetupError> {
  const err = await p.then(() => undefined, (e: unknown) => e);
  expect(err).toBeInstanceOf(NetworkSetupError);
  return err as NetworkSetupError;
}

/** Runs fn with a container namespace that is destroyed before the leak check. */
async function withContainer<T>(fn: (ct: TestNetns) => Promise<T>, label = 'ct'): Promise<T> {
  const ct = await TestNetns.create(label);
  try {
    return await fn(ct);
  } finally {
    await ct.destroy();
  }
}

describe('--network-veth', () => {
  ktest('ve-NAME on the host, host0 in the container, MACs as systemd-nspawn derives them; host0 and lo up', async ({ netns }) => {
    await withContainer(async (ct) => {
      await ct.exec('ip', ['link', 'set', 'lo', 'down']);
      const net = await setup(netns, ct, 'mycontainer', spec({ veth: true }));
      const host = await link(netns, 've-mycontainer');
      const peer = await link(ct, 'host0');
      expect(host).toMatchObject({ address: '76:84:85:cd:d8:e2', linkinfo: { info_kind: 'veth' } });
      expect(host?.altnames).toBeUndefined();
      expect(host?.flags).not.toContain('UP'); // left to whoever configures it, as systemd-nspawn does
      expect(peer).toMatchObject({ address: '06:74:3f:97:db:5a', linkinfo: { info_kind: 'veth' } });
      expect(peer?.flags).toContain('UP');
      expect(host?.link_index).toBe(peer?.ifindex);
      expect(peer?.link_index).toBe(host?.ifindex);
      expect((await link(ct, 'lo'))?.flags).toContain('UP');
      expect(await names(ct)).toEqual(['host0', 'lo']);
      expect(net.veth).toEqual({
        hostIfname: 've-mycontainer', hostIfindex: host?.ifindex, hostMac: '76:84:85:cd:d8:e2',
        containerIfname: 'host0', containerIfindex: peer?.ifindex, containerMac: '06:74:3f:97:db:5a',
      });
      expect(net.hostIfnames).toEqual(['ve-mycontainer']);

      await net.teardown();
      expect(await link(netns, 've-mycontainer')).toBeUndefined();
      expect(await names(ct)).toEqual(['lo']);
      await net.teardown(); // idempotent
    });
  });

  ktest('a long machine name: the shortened name systemd-nspawn makes, the full name as altname', async ({ netns }) => {
    await withContainer(async (ct) => {
      const net = await setup(netns, ct, 'long-container-name', spec({ veth: true }));
      const host = await link(netns, 've-long-conJZbp');
      expect(host?.altnames).toEqual(['ve-long-container-name']);
      expect(net.veth).toMatchObject({ hostIfname: 've-long-conJZbp', hostAltname: 've-long-container-name' });
      // the altname resolves like a name
      expect((await netns.ipJson<IpLink[]>(['link', 'show', 've-long-container-name']))[0]?.ifname).toBe('ve-long-conJZbp');
      await net.teardown();
      expect(await link(netns, 've-long-conJZbp')).toBeUndefined();
    });
  });

  ktest('a name clash with an existing link: exit before anything is made, naming the link', async ({ netns }) => {
    await netns.exec('ip', ['link', 'add', 've-web', 'type', 'veth', 'peer', 'name', 'other0']);
    await withContainer(async (ct) => {
      const before = { host: await names(netns), ct: await names(ct) };
      const err = await failure(setup(netns, ct, 'web', spec({ veth: true, macvlan: ['other0'] })));
      expect(err.code).toBe('NET_NAME_EXISTS');
      expect(err.message).toBe('--network-veth: interface "ve-web" already exists in the host\'s network namespace');
      expect({ host: await names(netns), ct: await names(ct) }).toEqual(before);
    });
    // the altname of another link counts as taken too
    await netns.exec('ip', ['link', 'property', 'add', 'dev', 've-web', 'altname', 've-long-container-name']);
    await withContainer(async (ct) => {
      const err = await failure(setup(netns, ct, 'long-container-name', spec({ veth: true })));
      expect(err.message).toBe('--network-veth: interface "ve-long-container-name" already exists in the host\'s network namespace (an alternative name of "ve-web")');
      expect(await link(netns, 've-long-conJZbp')).toBeUndefined();
    });
    await netns.exec('ip', ['link', 'del', 've-web']);
  });
});

describe('--network-bridge', () => {
  ktest('vb-NAME up and enslaved to the existing bridge; the bridge stays after the container', async ({ netns }) => {
    await netns.exec('ip', ['link', 'add', 'br0', 'type', 'bridge']);
    await withContainer(async (ct) => {
      const net = await setup(netns, ct, 'mycontainer', spec({ veth: true, bridge: 'br0' }));
      const host = await link(netns, 'vb-mycontainer');
      expect(host).toMatchObject({ master: 'br0', address: '76:84:85:cd:d8:e2' });
      expect(host?.flags).toContain('UP');
      expect(await link(ct, 'host0')).toMatchObject({ address: '06:74:3f:97:db:5a' });
      expect(net.veth).toMatchObject({ hostIfname: 'vb-mycontainer', bridge: 'br0' });
      expect(net.veth?.zone).toBeUndefined();
      await net.teardown();
      expect(await link(netns, 'vb-mycontainer')).toBeUndefined();
      expect(await link(netns, 'br0')).toBeDefined();
    });
    await netns.exec('ip', ['link', 'del', 'br0']);
  });

  ktest('a bridge that does not exist, or is not a bridge: a clear error and nothing made', async ({ netns }) => {
    await netns.exec('ip', ['link', 'add', 'eth5', 'type', 'veth', 'peer', 'name', 'eth5p']);
    await withContainer(async (ct) => {
      const before = { host: await names(netns), ct: await names(ct) };
      const missing = await failure(setup(netns, ct, 'web', spec({ veth: true, bridge: 'br9' })));
      expect(missing.code).toBe('NET_NO_SUCH_INTERFACE');
      expect(missing.message).toBe('--network-bridge=br9: no such interface "br9" on the host');
      const notBridge = await failure(setup(netns, ct, 'web', spec({ veth: true, bridge: 'eth5' })));
      expect(notBridge.code).toBe('NET_NOT_A_BRIDGE');
      expect(notBridge.message).toBe('--network-bridge=eth5: interface "eth5" is not a bridge (it is a veth)');
      expect({ host: await names(netns), ct: await names(ct) }).toEqual(before);
    });
    await netns.exec('ip', ['link', 'del', 'eth5']);
  });
});

describe('--network-zone', () => {
  ktest('the first container creates vz-ZONE, the last one to leave removes it', async ({ netns }) => {
    await withContainer(async (ct1) => withContainer(async (ct2) => {
      const a = await setup(netns, ct1, 'alpha', spec({ veth: true, zone: 'lab' }));
      const bridge = await link(netns, 'vz-lab');
      expect(bridge?.linkinfo?.info_kind).toBe('bridge');
      expect(bridge?.flags).not.toContain('UP'); // as systemd-nspawn: whoever addresses it brings it up
      expect(await link(netns, 'vb-alpha')).toMatchObject({ master: 'vz-lab' });
      expect(a.veth).toMatchObject({ hostIfname: 'vb-alpha', bridge: 'vz-lab', bridgeIfindex: bridge?.ifindex, zone: 'lab' });

      const b = await setup(netns, ct2, 'beta', spec({ veth: true, zone: 'lab' }));
      expect((await link(netns, 'vz-lab'))?.ifindex).toBe(bridge?.ifindex); // joined, not re-made
      expect(await link(netns, 'vb-beta')).toMatchObject({ master: 'vz-lab' });

      await a.teardown();
      expect(await link(netns, 'vb-alpha')).toBeUndefined();
      expect(await link(netns, 'vz-lab')).toBeDefined();
      await b.teardown();
      expect(await link(netns, 'vb-beta')).toBeUndefined();
      expect(await link(netns, 'vz-lab')).toBeUndefined();
    }, 'ct2'));
  });

  ktest('a bridge left by a killed launcher is joined by the next start of the zone and removed when it leaves', async ({ netns }) => {
    await netns.exec('ip', ['link', 'add', 'vz-lab', 'type', 'bridge']);
    await withContainer(async (ct) => {
      const net = await setup(netns, ct, 'gamma', spec({ veth: true, zone: 'lab' }));
      expect(await link(netns, 'vb-gamma')).toMatchObject({ master: 'vz-lab' });
      await net.teardown();
      expect(await link(netns, 'vz-lab')).toBeUndefined();
    });
  });

  ktest('a failed start in the zone removes a stale bridge too', async ({ netns }) => {
    await netns.exec('ip', ['link', 'add', 'vz-lab', 'type', 'bridge']);
    await netns.exec('ip', ['tuntap', 'add', 'mode', 'tun', 'name', 'tun0']);
    await withContainer(async (ct) => {
      // macvlan on an L3 tun device: the kernel refuses at apply time, after the zone was joined
      const err = await failure(setup(netns, ct, 'gamma', spec({ veth: true, zone: 'lab', macvlan: ['tun0'] })));
      expect(err.code).toBe('NET_SETUP_FAILED');
      expect(err.message).toMatch(/^--network-macvlan=tun0: RTNETLINK: cannot create macvlan link "mv-tun0" on parent "tun0": Invalid argument \(EINVAL\)/);
      expect(await names(netns)).toEqual(['lo', 'tun0']);
      expect(await names(ct)).toEqual(['lo']);
    });
    await netns.exec('ip', ['tuntap', 'del', 'mode', 'tun', 'name', 'tun0']);
  });

  ktest('cleanupStaleZoneBridges removes vz- bridges without ports and nothing else', async ({ netns, onTestFinished }) => {
    for (const b of ['vz-stale', 'vz-used', 'br-admin']) await netns.exec('ip', ['link', 'add', b, 'type', 'bridge']);
    await netns.exec('ip', ['link', 'add', 'vz-veth', 'type', 'veth', 'peer', 'name', 'port0']);
    await netns.exec('ip', ['link', 'set', 'port0', 'master', 'vz-used']);
    const host = Rtnl.open({ netnsFd: netns.fd });
    onTestFinished(() => host.close());
    expect(await cleanupStaleZoneBridges({ host, lock: LOCK })).toEqual(['vz-stale']);
    expect(await names(netns)).toEqual(['br-admin', 'lo', 'port0', 'vz-used', 'vz-veth']);
    await netns.exec('ip', ['link', 'del', 'vz-veth']);
    expect(await cleanupStaleZoneBridges({ host, lock: LOCK })).toEqual(['vz-used']);
    await netns.exec('ip', ['link', 'del', 'br-admin']);
  });

  ktest('vz-ZONE taken by a link that is not a bridge: refused before anything is made', async ({ netns }) => {
    await netns.exec('ip', ['link', 'add', 'vz-lab', 'type', 'veth', 'peer', 'name', 'vz-lab-p']);
    await withContainer(async (ct) => {
      const err = await failure(setup(netns, ct, 'delta', spec({ veth: true, zone: 'lab' })));
      expect(err.code).toBe('NET_NOT_A_BRIDGE');
      expect(err.message).toBe('--network-zone=lab: interface "vz-lab" exists and is not a bridge (it is a veth), so the zone cannot use it');
      expect(await link(netns, 'vb-delta')).toBeUndefined();
    });
    await netns.exec('ip', ['link', 'del', 'vz-lab']);
  });
});

describe('--network-veth-extra', () => {
  ktest('names verbatim, MACs from the extra keys by index, both ends left down', async ({ netns }) => {
    await withContainer(async (ct) => {
      const net = await setup(netns, ct, 'mycontainer', spec({
        vethExtra: [{ hostIfname: 'xhost0', containerIfname: 'xct0' }, { hostIfname: 'xhost1', containerIfname: 'xhost1' }],
      }));
      expect(await link(netns, 'xhost0')).toMatchObject({ address: '96:59:7d:b4:03:b9' });
      expect(await link(ct, 'xct0')).toMatchObject({ address: '6a:78:96:88:ae:c1' });
      expect((await link(ct, 'xct0'))?.flags).not.toContain('UP');
      expect(await link(ct, 'xhost1')).toBeDefined();
      expect(await link(netns, 'xhost1')).toBeDefined();
      expect(net.vethExtras.map((e) => [e.hostIfname, e.containerIfname])).toEqual([['xhost0', 'xct0'], ['xhost1', 'xhost1']]);
      expect(net.veth).toBeUndefined();
      await net.teardown();
      expect(await names(netns)).toEqual(['lo']);
      expect(await names(ct)).toEqual(['lo']);
    });
  });
});

describe('--network-macvlan', () => {
  ktest('mv-IF inside the container, mode bridge, on the host parent, with the macvlan MAC #idx', async ({ netns }) => {
    await netns.exec('ip', ['link', 'add', 'uplink0', 'type', 'veth', 'peer', 'name', 'uplink1']);
    await withContainer(async (ct) => {
      const net = await setup(netns, ct, 'mycontainer', spec({ macvlan: ['uplink0', 'uplink1'] }));
      const mv0 = await link(ct, 'mv-uplink0');
      expect(mv0).toMatchObject({ address: 'ee:45:73:e9:59:49', linkinfo: { info_kind: 'macvlan', info_data: { mode: 'bridge' } } });
      expect(await link(ct, 'mv-uplink1')).toMatchObject({ address: '96:6e:ff:cd:11:57' });
      expect(mv0?.link_netnsid).toBeTypeOf('number'); // its parent is in another namespace
      expect(mv0?.flags).not.toContain('UP');
      expect(await names(netns)).toEqual(['lo', 'uplink0', 'uplink1']);
      expect(net.macvlans.map((m) => [m.parent, m.ifname, m.ifindex, m.mac])).toEqual([
        ['uplink0', 'mv-uplink0', mv0?.ifindex, 'ee:45:73:e9:59:49'],
        ['uplink1', 'mv-uplink1', (await link(ct, 'mv-uplink1'))?.ifindex, '96:6e:ff:cd:11:57'],
      ]);
      await net.teardown();
      expect(await names(ct)).toEqual(['lo']);
    });
    await netns.exec('ip', ['link', 'del', 'uplink0']);
  });

  ktest('a long parent name: shortened mv- name, the full name as altname inside', async ({ netns }) => {
    await netns.exec('ip', ['link', 'add', 'enp0s31f6abcd', 'type', 'veth', 'peer', 'name', 'p0']);
    await withContainer(async (ct) => {
      const net = await setup(netns, ct, 'mycontainer', spec({ macvlan: ['enp0s31f6abcd'] }));
      const [mv] = net.macvlans;
      expect(mv?.ifname).toHaveLength(15);
      expect(mv?.ifname.startsWith('mv-enp0s31f')).toBe(true);
      expect((await link(ct, mv?.ifname ?? ''))?.altnames).toEqual(['mv-enp0s31f6abcd']);
      await net.teardown();
    });
    await netns.exec('ip', ['link', 'del', 'enp0s31f6abcd']);
  });

  ktest('a missing parent, a parent that is a bridge port: clear errors, nothing made', async ({ netns }) => {
    await netns.exec('ip', ['link', 'add', 'br0', 'type', 'bridge']);
    await netns.exec('ip', ['link', 'add', 'eth7', 'type', 'veth', 'peer', 'name', 'eth7p']);
    await netns.exec('ip', ['link', 'set', 'eth7', 'master', 'br0']);
    await withContainer(async (ct) => {
      const before = await names(netns);
      const missing = await failure(setup(netns, ct, 'web', spec({ veth: true, macvlan: ['eth9'] })));
      expect(missing.message).toBe('--network-macvlan=eth9: no such interface "eth9" on the host');
      expect(missing.code).toBe('NET_NO_SUCH_INTERFACE');
      const busy = await failure(setup(netns, ct, 'web', spec({ veth: true, macvlan: ['eth7'] })));
      expect(busy.code).toBe('NET_INTERFACE_BUSY');
      expect(busy.message).toBe('--network-macvlan=eth7: interface "eth7" is already in use: it is a port of bridge "br0"');
      expect(await names(netns)).toEqual(before);
      expect(await names(ct)).toEqual(['lo']);
    });
    await netns.exec('ip', ['link', 'del', 'eth7']);
    await netns.exec('ip', ['link', 'del', 'br0']);
  });
});

describe('--network-ipvlan', () => {
  ktest('iv-IF in L2 mode inside the container (skips, naming the kernel\'s error, where the kernel has no ipvlan)', async ({ netns, skip }) => {
    await netns.exec('ip', ['link', 'add', 'uplink0', 'type', 'veth', 'peer', 'name', 'uplink1']);
    try {
      await withContainer(async (ct) => {
        const result = await setup(netns, ct, 'mycontainer', spec({ veth: true, ipvlan: ['uplink0'] })).then((n) => n, (e: unknown) => e);
        if (result instanceof NetworkSetupError && (result.cause as { code?: string } | undefined)?.code === 'EOPNOTSUPP') {
          expect(result.message).toMatch(/^--network-ipvlan=uplink0: RTNETLINK: cannot create ipvlan link "iv-uplink0" on parent "uplink0": Operation not supported \(EOPNOTSUPP\)/);
          // rolled back: the veth made before it is gone
          expect(await names(netns)).toEqual(['lo', 'uplink0', 'uplink1']);
          expect(await names(ct)).toEqual(['lo']);
          skip(`this kernel has no ipvlan: it answered ${result.message.replace(/^.*?: RTNETLINK: cannot [^:]+: /, '')}`);
        }
        expect(result).toBeInstanceOf(ContainerNetwork);
        const net = result as ContainerNetwork;
        const iv = await link(ct, 'iv-uplink0');
        expect(iv?.linkinfo).toMatchObject({ info_kind: 'ipvlan', info_data: { mode: 'l2' } });
        expect(iv?.address).toBe((await link(netns, 'uplink0'))?.address);
        await net.teardown();
        expect(await names(ct)).toEqual(['lo']);
      });
    } finally {
      await netns.exec('ip', ['link', 'del', 'uplink0']);
    }
  });

  ktest('a missing parent: a clear error whatever the kernel has', async ({ netns }) => {
    await withContainer(async (ct) => {
      const err = await failure(setup(netns, ct, 'web', spec({ ipvlan: ['eth9'] })));
      expect(err.message).toBe('--network-ipvlan=eth9: no such interface "eth9" on the host');
    });
  });
});

describe('--network-interface', () => {
  ktest('moved into the container, and back to the host under its name when the container ends', async ({ netns }) => {
    await netns.exec('ip', ['link', 'add', 'eth7', 'type', 'veth', 'peer', 'name', 'eth7p']);
    const index = (await link(netns, 'eth7'))?.ifindex;
    await withContainer(async (ct) => {
      const net = await setup(netns, ct, 'mycontainer', spec({ interfaces: ['eth7'] }));
      expect(await link(netns, 'eth7')).toBeUndefined();
      expect(await link(ct, 'eth7')).toBeDefined();
      expect(net.movedInterfaces).toEqual([{ hostIfname: 'eth7', hostIfindex: index, containerIfindex: (await link(ct, 'eth7'))?.ifindex }]);
      // the container renames it; it still goes back as eth7
      await ct.exec('ip', ['link', 'set', 'eth7', 'name', 'lan0']);
      await net.teardown();
      expect(await link(ct, 'lan0')).toBeUndefined();
      expect(await link(netns, 'eth7')).toMatchObject({ link: 'eth7p' });
    });
    await netns.exec('ip', ['link', 'del', 'eth7']);
  });

  ktest('an interface in use, missing, or not movable: a clear error, nothing moved', async ({ netns }) => {
    await netns.exec('ip', ['link', 'add', 'br0', 'type', 'bridge']);
    await netns.exec('ip', ['link', 'add', 'eth7', 'type', 'veth', 'peer', 'name', 'eth7p']);
    await netns.exec('ip', ['link', 'set', 'eth7', 'master', 'br0']);
    await netns.exec('ip', ['link', 'add', 'eth8', 'type', 'veth', 'peer', 'name', 'eth8p']);
    await netns.exec('ip', ['link', 'add', 'link', 'eth8', 'name', 'mv0', 'type', 'macvlan']);
    await withContainer(async (ct) => {
      const before = await names(netns);
      const bridgePort = await failure(setup(netns, ct, 'web', spec({ interfaces: ['eth7'] })));
      expect(bridgePort.code).toBe('NET_INTERFACE_BUSY');
      expect(bridgePort.message).toBe('--network-interface=eth7: interface is already in use: "eth7" is a port of bridge "br0"');
      const parent = await failure(setup(netns, ct, 'web', spec({ interfaces: ['eth8'] })));
      expect(parent.message).toBe('--network-interface=eth8: interface is already in use: macvlan "mv0" sits on "eth8"');
      const missing = await failure(setup(netns, ct, 'web', spec({ interfaces: ['eth9'] })));
      expect(missing.message).toBe('--network-interface=eth9: no such interface "eth9" on the host');
      const bridge = await failure(setup(netns, ct, 'web', spec({ interfaces: ['br0'] })));
      expect(bridge.message).toBe('--network-interface=br0: interface "br0" is a bridge, which cannot be moved to another network namespace');
      // validation runs before anything: a good interface given first is not moved either
      const mixed = await failure(setup(netns, ct, 'web', spec({ interfaces: ['eth8p', 'eth9'] })));
      expect(mixed.option).toBe('--network-interface=eth9');
      expect(await names(netns)).toEqual(before);
      expect(await names(ct)).toEqual(['lo']);
    });
    await netns.exec('ip', ['link', 'del', 'eth7']);
    await netns.exec('ip', ['link', 'del', 'eth8']);
    await netns.exec('ip', ['link', 'del', 'br0']);
  });
});

describe('all modes together', () => {
  ktest('every option at once, then teardown leaves both sides as they were', async ({ netns }) => {
    await netns.exec('ip', ['link', 'add', 'br0', 'type', 'bridge']);
    await netns.exec('ip', ['link', 'add', 'uplink0', 'type', 'veth', 'peer', 'name', 'eth7']);
    await withContainer(async (ct) => {
      const before = { host: await names(netns), ct: await names(ct) };
      const net = await setup(netns, ct, 'long-container-name', spec({
        veth: true, bridge: 'br0', interfaces: ['eth7'], macvlan: ['uplink0'],
        vethExtra: [{ hostIfname: 've-extra', containerIfname: 'extra0' }],
      }));
      expect(await names(netns)).toEqual(['br0', 'lo', 'uplink0', 'vb-long-concJYg', 've-extra']);
      expect(await names(ct)).toEqual(['eth7', 'extra0', 'host0', 'lo', 'mv-uplink0']);
      expect((await link(netns, 'vb-long-concJYg'))?.altnames).toEqual(['vb-long-container-name']);
      expect(net.hostIfnames).toEqual(['vb-long-concJYg', 've-extra']);
      await net.teardown();
      expect({ host: await names(netns), ct: await names(ct) }).toEqual(before);
    });
    await netns.exec('ip', ['link', 'del', 'br0']);
    await netns.exec('ip', ['link', 'del', 'uplink0']);
  });

  ktest('a failure at the last step undoes every earlier one, the moved interface included', async ({ netns }) => {
    await netns.exec('ip', ['link', 'add', 'eth7', 'type', 'veth', 'peer', 'name', 'uplink0']);
    await netns.exec('ip', ['tuntap', 'add', 'mode', 'tun', 'name', 'tun0']);
    await withContainer(async (ct) => {
      const before = { host: await names(netns), ct: await names(ct) };
      const err = await failure(setup(netns, ct, 'web', spec({
        veth: true, zone: 'lab', interfaces: ['eth7'], vethExtra: [{ hostIfname: 'xh', containerIfname: 'xc' }],
        macvlan: ['uplink0', 'tun0'],
      })));
      expect(err.option).toBe('--network-macvlan=tun0');
      expect(err.rollbackErrors).toEqual([]);
      expect({ host: await names(netns), ct: await names(ct) }).toEqual(before);
    });
    await netns.exec('ip', ['link', 'del', 'eth7']);
    await netns.exec('ip', ['tuntap', 'del', 'mode', 'tun', 'name', 'tun0']);
  });

  ktest('teardown reports every failure and still does every step', async ({ netns }) => {
    await netns.exec('ip', ['link', 'add', 'eth7', 'type', 'veth', 'peer', 'name', 'eth7p']);
    await withContainer(async (ct) => {
      const net = await setup(netns, ct, 'web', spec({ veth: true, interfaces: ['eth7'] }));
      // something takes the name eth7 on the host and the moved link's current name too
      await netns.exec('ip', ['link', 'add', 'eth7', 'type', 'veth', 'peer', 'name', 'x']);
      const err = await net.teardown().then(() => undefined, (e: unknown) => e);
      expect(err).toBeInstanceOf(TeardownError);
      expect((err as TeardownError).errors).toHaveLength(1);
      expect((err as TeardownError).message).toMatch(/^failed to remove the network of machine "web": 1 step\(s\) failed; first: --network-interface=eth7: RTNETLINK: cannot move link .*File exists \(EEXIST\)/);
      // the veth was removed all the same
      expect(await link(netns, 've-web')).toBeUndefined();
      await netns.exec('ip', ['link', 'del', 'eth7']);
    });
    await netns.exec('ip', ['link', 'del', 'eth7p']).catch(() => undefined);
  });
});
