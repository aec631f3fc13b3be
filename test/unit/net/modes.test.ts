// The network plan without a kernel: names and MACs as systemd-nspawn makes them, options that
// collide refused before anything, and — on an in-memory kernel that fails the n-th change — every
// start that fails halfway leaves both namespaces exactly as they were.
import { describe, expect, test } from 'vitest';
import { defaultNetworkSpec, type NetworkSpec } from '../../../src/runtime/spec.js';
import {
  NetworkSetupError, cleanupStaleZoneBridges, planNetwork, setupContainerNetwork, type ContainerNetwork,
} from '../../../src/net/network-plan.js';
import { TeardownError } from '../../../src/errors.js';
import { containerNetworkHooks } from '../../../src/runtime/net/links.js';
import { FakeKernel, fakeZoneLock } from './modes-fake-kernel.js';

const MACHINE_ID = Uint8Array.from(Buffer.from('0123456789abcdef0123456789abcdef', 'hex'));
const HOST = 100;
const CT = 200;

function spec(over: Partial<NetworkSpec>): NetworkSpec {
  return { ...defaultNetworkSpec(), private: true, ...over };
}

function plan(machine: string, network: NetworkSpec) {
  return planNetwork({ machine, network, machineId: MACHINE_ID, longHash: true });
}

function setupOn(k: FakeKernel, machine: string, network: NetworkSpec, lock = fakeZoneLock()): Promise<ContainerNetwork> {
  return setupContainerNetwork(plan(machine, network), {
    containerNetns: CT, hostNetnsFd: HOST, zoneLock: lock, clients: { host: k.client(HOST), container: k.client(CT) },
  });
}

function conflict(f: () => unknown): NetworkSetupError {
  try {
    f();
  } catch (err) {
    expect(err).toBeInstanceOf(NetworkSetupError);
    expect((err as NetworkSetupError).code).toBe('NET_NAME_CONFLICT');
    return err as NetworkSetupError;
  }
  throw new Error('expected a conflict');
}

describe('planNetwork', () => {
  test('modes in systemd-nspawn\'s order: moved interfaces, main veth, extras, macvlans, ipvlans, loopback', () => {
    const p = plan('web', spec({
      veth: true, zone: 'lab', interfaces: ['eth1'], vethExtra: [{ hostIfname: 'xh', containerIfname: 'xc' }],
      macvlan: ['eth2'], ipvlan: ['eth3'],
    }));
    expect(p.modes.map((m) => m.option)).toEqual([
      '--network-interface=eth1', '--network-zone=lab', '--network-veth-extra=xh:xc', '--network-macvlan=eth2',
      '--network-ipvlan=eth3', '--private-network',
    ]);
    expect(p.warnings).toEqual([]);
  });

  test('--private-network alone: only loopback; no network option: nothing', () => {
    expect(plan('web', spec({})).modes.map((m) => m.option)).toEqual(['--private-network']);
    expect(plan('web', defaultNetworkSpec()).modes).toEqual([]);
  });

  test('the machine ID is read only when a MAC is needed', () => {
    const unreadable = () => { throw new Error('no machine id'); };
    expect(() => planNetwork({ machine: 'web', network: spec({ interfaces: ['eth1'], ipvlan: ['eth2'] }), machineId: unreadable })).not.toThrow();
    expect(() => planNetwork({ machine: 'web', network: spec({ veth: true }), machineId: unreadable })).toThrow('no machine id');
  });

  test('shortened names are warned about in systemd-nspawn\'s words', () => {
    const p = plan('long-container-name', spec({ veth: true, macvlan: ['enp0s31f6abcdef'] }));
    expect(p.warnings).toEqual([
      "Network interface name 've-long-container-name' has been changed to 've-long-conJZbp' to fit length constraints.",
      expect.stringMatching(/^Network interface name 'mv-enp0s31f6abcdef' has been changed to 'mv-enp0s31f[A-Za-z0-9_-]{4}' to fit length constraints\.$/),
    ]);
  });

  test('options that would make links of the same name are refused, naming both', () => {
    expect(conflict(() => plan('web', spec({ interfaces: ['eth1', 'eth1'] }))).message)
      .toBe('--network-interface=eth1: interface "eth1" is given twice');
    expect(conflict(() => plan('web', spec({ interfaces: ['eth1'], macvlan: ['eth1'] }))).message)
      .toBe('--network-macvlan=eth1: interface "eth1" cannot be the parent of a link on the host and be moved into the container by --network-interface=eth1');
    expect(conflict(() => plan('web', spec({ veth: true, vethExtra: [{ hostIfname: 'x', containerIfname: 'host0' }] }))).message)
      .toBe('--network-veth-extra=x:host0: interface name "host0" in the container is also used by --network-veth');
    expect(conflict(() => plan('web', spec({ veth: true, zone: 'lab', vethExtra: [{ hostIfname: 'vz-lab', containerIfname: 'x' }] }))).message)
      .toBe('--network-veth-extra=vz-lab:x: interface name "vz-lab" in the host is also used by --network-zone=lab');
    expect(conflict(() => plan('web', spec({ macvlan: ['eth1', 'eth1'] }))).message)
      .toBe('--network-macvlan=eth1: interface name "mv-eth1" in the container is also used by another use of the same option');
    expect(conflict(() => plan('web', spec({ interfaces: ['lo'] }))).message)
      .toBe('--network-interface=lo: interface name "lo" in the container is also used by the loopback interface');
    expect(conflict(() => plan('web', spec({ interfaces: ['mv-eth2'], macvlan: ['eth2'] }))).message)
      .toBe('--network-macvlan=eth2: interface name "mv-eth2" in the container is also used by --network-interface=mv-eth2');
    expect(conflict(() => plan('web', spec({ veth: true, bridge: 'br0', interfaces: ['br0'] }))).message)
      .toBe('--network-bridge=br0: bridge "br0" is moved into the container by --network-interface=br0');
  });

  test('a long zone name is a configuration error from naming', () => {
    expect(() => plan('web', spec({ veth: true, zone: 'thirteen-char' }))).toThrow(/Invalid network zone name "thirteen-char"/);
  });
});

describe('setup and teardown on an in-memory kernel', () => {
  test('the handle says what was made; teardown takes it all away', async () => {
    const k = new FakeKernel([HOST, CT]);
    k.add(HOST, { name: 'eth1' });
    k.add(HOST, { name: 'eth2' });
    const before = { host: k.state(HOST), ct: k.state(CT) };
    const net = await setupOn(k, 'long-container-name', spec({
      veth: true, zone: 'lab', interfaces: ['eth1'], macvlan: ['eth2'], vethExtra: [{ hostIfname: 'xh', containerIfname: 'xc' }],
    }));
    expect(k.state(HOST)).toEqual({
      lo: 'dev', eth2: 'dev', 'vb-long-concJYg': 'veth@vz-lab,up,alt=vb-long-container-name', 'vz-lab': 'bridge', xh: 'veth',
    });
    expect(k.state(CT)).toEqual({ lo: 'dev,up', eth1: 'dev', host0: 'veth,up', xc: 'veth', 'mv-eth2': 'macvlan' });
    expect(net.veth).toMatchObject({
      hostIfname: 'vb-long-concJYg', hostAltname: 'vb-long-container-name', hostMac: '92:ea:96:2e:71:bc', // generate_mac (pinned in naming tests, and against systemd-nspawn in nspawn-compat)
      containerIfname: 'host0', bridge: 'vz-lab', zone: 'lab',
    });
    expect(net.hostIfnames).toEqual(['vb-long-concJYg', 'xh']);
    expect(net.vethExtras).toMatchObject([{ hostIfname: 'xh', containerIfname: 'xc' }]);
    expect(net.macvlans).toMatchObject([{ parent: 'eth2', ifname: 'mv-eth2' }]);
    expect(net.movedInterfaces).toMatchObject([{ hostIfname: 'eth1' }]);
    await net.teardown();
    expect({ host: k.state(HOST), ct: { lo: k.state(CT).lo } }).toEqual({ host: before.host, ct: { lo: 'dev,up' } });
    expect(Object.keys(k.state(CT))).toEqual(['lo']);
  });

  test('a failure at every single step leaves both namespaces as they were', async () => {
    const network = spec({
      veth: true, zone: 'lab', interfaces: ['eth1'], macvlan: ['eth2', 'eth3'], ipvlan: ['eth3'],
      vethExtra: [{ hostIfname: 'xh0', containerIfname: 'xc0' }, { hostIfname: 'xh1', containerIfname: 'xc1' }],
    });
    const fresh = (): FakeKernel => {
      const k = new FakeKernel([HOST, CT]);
      for (const n of ['eth1', 'eth2', 'eth3']) k.add(HOST, { name: n });
      return k;
    };
    // how many changes a successful start makes
    const ok = fresh();
    await setupOn(ok, 'web', network);
    const steps = ok.changes;
    expect(ok.log.map((l) => l.replace(/ \{.*/, ''))).toEqual([
      'move eth1 to 200', 'create veth vb-web/host0', 'up host0', 'create bridge vz-lab', 'set vb-web',
      'create veth xh0/xc0', 'create veth xh1/xc1', 'create macvlan mv-eth2', 'create macvlan mv-eth3', 'create ipvlan iv-eth3', 'up lo',
    ]);

    for (let n = 1; n <= steps; n++) {
      const k = fresh();
      const before = { host: k.state(HOST), ct: k.state(CT) };
      k.failAt = n;
      const lock = fakeZoneLock();
      const err = await setupOn(k, 'web', network, lock).then(() => undefined, (e: unknown) => e);
      expect(err, `step ${n}: ${k.log[n - 1]}`).toBeInstanceOf(NetworkSetupError);
      expect((err as NetworkSetupError).rollbackErrors, `step ${n}`).toEqual([]);
      // loopback may have been brought up: it is not ours to take down
      const ct = k.state(CT);
      delete ct.lo;
      expect({ host: k.state(HOST), ct }, `failure at step ${n} (${k.log[n - 1]})`).toEqual({ host: before.host, ct: {} });
      expect(lock.held).toBe(false);
    }
  });

  test('a failing teardown step is reported and the other steps still run', async () => {
    const k = new FakeKernel([HOST, CT]);
    k.add(HOST, { name: 'eth1' });
    const net = await setupOn(k, 'web', spec({ veth: true, interfaces: ['eth1'], vethExtra: [{ hostIfname: 'xh', containerIfname: 'xc' }] }));
    // the next change fails: the extra veth (removed first) stays, the rest goes
    k.failAt = k.changes + 1;
    const err = await net.teardown().then(() => undefined, (e: unknown) => e);
    expect(err).toBeInstanceOf(TeardownError);
    expect((err as TeardownError).errors).toHaveLength(1);
    expect((err as TeardownError).message).toMatch(/^failed to remove the network of machine "web": 1 step\(s\) failed; first: --network-veth-extra=xh:xc: /);
    expect(Object.keys(k.state(HOST)).sort()).toEqual(['eth1', 'lo', 'xh']);
    expect(Object.keys(k.state(CT)).sort()).toEqual(['lo', 'xc']);
  });

  test('validation failures change nothing at all', async () => {
    const k = new FakeKernel([HOST, CT]);
    k.add(HOST, { name: 'eth1' });
    const err = await setupOn(k, 'web', spec({ veth: true, interfaces: ['eth1'], macvlan: ['eth9'] })).then(() => undefined, (e: unknown) => e);
    expect(err).toMatchObject({ code: 'NET_NO_SUCH_INTERFACE', message: '--network-macvlan=eth9: no such interface "eth9" on the host' });
    expect(k.changes).toBe(0);
  });

  test('zone: created by the first, joined by the second, removed with the last; the lock is always released', async () => {
    const k = new FakeKernel([HOST, CT, 300]);
    const lock = fakeZoneLock();
    const a = await setupOn(k, 'a', spec({ veth: true, zone: 'z' }), lock);
    const b = await setupContainerNetwork(plan('b', spec({ veth: true, zone: 'z' })), {
      containerNetns: 300, hostNetnsFd: HOST, zoneLock: lock, clients: { host: k.client(HOST), container: k.client(300) },
    });
    expect(k.state(HOST)).toMatchObject({ 'vb-a': 'veth@vz-z,up', 'vb-b': 'veth@vz-z,up', 'vz-z': 'bridge' });
    await a.teardown();
    expect(k.state(HOST)['vz-z']).toBe('bridge');
    await b.teardown();
    expect(k.state(HOST)).toEqual({ lo: 'dev' });
    expect(lock.held).toBe(false);
    expect(lock.acquisitions).toBe(4);
  });

  test('cleanupStaleZoneBridges: only vz- bridges without ports', async () => {
    const k = new FakeKernel([HOST]);
    const used = k.add(HOST, { name: 'vz-used', kind: 'bridge' });
    k.add(HOST, { name: 'vz-stale', kind: 'bridge' });
    k.add(HOST, { name: 'br0', kind: 'bridge' });
    k.add(HOST, { name: 'vz-veth', kind: 'veth' });
    k.add(HOST, { name: 'port', kind: 'veth', master: used.index });
    expect(await cleanupStaleZoneBridges({ host: k.client(HOST), lock: fakeZoneLock() })).toEqual(['vz-stale']);
    expect(Object.keys(k.state(HOST)).sort()).toEqual(['br0', 'lo', 'port', 'vz-used', 'vz-veth']);
  });
});

describe('the launcher hook', () => {
  test('does nothing without a private network, and its afterExit is safe when setup never ran', async () => {
    const hooks = containerNetworkHooks();
    await hooks.afterClone({ machine: 'web', request: { network: defaultNetworkSpec() }, netnsPath: '/nonexistent' });
    expect(hooks.network()).toBeUndefined();
    await hooks.afterExit();
  });
});
