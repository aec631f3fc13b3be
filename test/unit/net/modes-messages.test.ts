// The rtnetlink requests the modes send, byte for byte, annotated field by field. The ipvlan ones
// matter most: this machine's kernel has no ipvlan, so its kernel test can only see the refusal —
// these bytes are what a kernel with ipvlan receives. (The codec itself is pinned against iproute2
// captures in test/unit/netlink/requests.test.ts; this pins what the modes ask it for.)
import { describe, expect, test } from 'vitest';
import * as C from '../../../src/net/netlink/constants.js';
import { encodeMessage, type RtnlMessage } from '../../../src/net/netlink/codec.js';
import { newLinkRequest, setLinkRequest, type LinkSpec } from '../../../src/net/netlink/requests.js';
import { defaultNetworkSpec, type NetworkSpec } from '../../../src/runtime/spec.js';
import { planNetwork, setupContainerNetwork, type LinkClient } from '../../../src/net/network-plan.js';
import { FakeKernel, fakeZoneLock } from './modes-fake-kernel.js';

const MACHINE_ID = Uint8Array.from(Buffer.from('0123456789abcdef0123456789abcdef', 'hex'));
const HOST = 100;
const CT = 200;

/** Every call the modes make on the host client, with its arguments. */
async function callsOf(network: Partial<NetworkSpec>, prepare: (k: FakeKernel) => void): Promise<Array<{ method: string; args: unknown[] }>> {
  const k = new FakeKernel([HOST, CT]);
  prepare(k);
  const calls: Array<{ method: string; args: unknown[] }> = [];
  const inner = k.client(HOST);
  const host = new Proxy(inner, {
    get(target, prop: keyof LinkClient) {
      const fn = target[prop] as (...a: unknown[]) => unknown;
      return (...args: unknown[]) => {
        calls.push({ method: prop, args });
        return fn.apply(target, args);
      };
    },
  });
  await setupContainerNetwork(planNetwork({ machine: 'mycontainer', network: { ...defaultNetworkSpec(), ...network, private: true }, machineId: MACHINE_ID, longHash: true }), {
    containerNetns: CT, hostNetnsFd: HOST, zoneLock: fakeZoneLock(), clients: { host, container: k.client(CT) },
  });
  return calls;
}

/** As NetlinkSocket.request() sends it (NLM_F_REQUEST|NLM_F_ACK added; seq and pid 0). */
function wire(msg: RtnlMessage): string {
  msg.nl.flags |= C.NLM_F_REQUEST | C.NLM_F_ACK;
  return Buffer.from(encodeMessage(msg)).toString('hex');
}

/** Annotated hex: everything after '#' on a line is a comment. */
function bytes(annotated: string): string {
  return annotated.split('\n').map((l) => l.replace(/#.*/, '').replace(/\s+/g, '')).join('');
}

/** The creation request of `method`, with the parent name resolved to `parentIndex` as Rtnl does. */
function creation(calls: Array<{ method: string; args: unknown[] }>, method: string, kind: string, parentIndex?: number): string {
  const call = calls.find((c) => c.method === method);
  expect(call, `${method} was called`).toBeDefined();
  const opts = { ...(call?.args[0] as Record<string, unknown>) };
  if (parentIndex !== undefined) opts.parent = parentIndex;
  return wire(newLinkRequest({ kind, ...opts } as LinkSpec));
}

describe('requests of the modes, byte for byte', () => {
  test('--network-ipvlan=eth0: iv-eth0, mode L2, no MAC, created inside the container', async () => {
    const calls = await callsOf({ ipvlan: ['eth0'] }, (k) => { k.add(HOST, { name: 'eth0' }); });
    expect(calls.find((c) => c.method === 'createIpvlan')?.args[0]).toEqual({ name: 'iv-eth0', parent: 'eth0', mode: 'l2', netnsFd: CT });
    expect(creation(calls, 'createIpvlan', 'ipvlan', 2)).toBe(bytes(`
      60000000  # nlmsg_len 96
      1000      # RTM_NEWLINK
      0506      # NLM_F_REQUEST|NLM_F_ACK|NLM_F_EXCL|NLM_F_CREATE
      00000000 00000000  # seq, pid
      00 00 0000 00000000 00000000 00000000  # ifinfomsg: AF_UNSPEC, type 0, index 0, flags 0, change 0
      0800 1c00 c8000000  # IFLA_NET_NS_FD 200 (the container)
      0800 0500 02000000  # IFLA_LINK 2 (eth0)
      0c00 0300 69762d6574683000  # IFLA_IFNAME "iv-eth0"
      2400 1200  # IFLA_LINKINFO (36)
        0a00 0100 6970766c616e 0000  # IFLA_INFO_KIND "ipvlan" (unterminated, as iproute2 sends it)
        1400 0200  # IFLA_INFO_DATA (20)
          0600 0100 0000 0000  # IFLA_IPVLAN_MODE IPVLAN_MODE_L2
          0600 0200 0000 0000  # IFLA_IPVLAN_FLAGS 0 (bridge)
    `));
  });

  test('--network-ipvlan= with a long parent: the shortened name systemd-nspawn makes', async () => {
    const calls = await callsOf({ ipvlan: ['enp0s31f6abcdef'] }, (k) => { k.add(HOST, { name: 'enp0s31f6abcdef' }); });
    const name = (calls.find((c) => c.method === 'createIpvlan')?.args[0] as { name: string }).name;
    expect(name).toHaveLength(15);
    expect(name.startsWith('iv-enp0s31f')).toBe(true);
  });

  test('--network-macvlan=eth0: mv-eth0, mode bridge, the macvlan MAC #0, created inside the container', async () => {
    const calls = await callsOf({ macvlan: ['eth0'] }, (k) => { k.add(HOST, { name: 'eth0' }); });
    expect(creation(calls, 'createMacvlan', 'macvlan', 2)).toBe(bytes(`
      64000000 1000 0506 00000000 00000000  # RTM_NEWLINK, len 100, REQUEST|ACK|EXCL|CREATE
      00 00 0000 00000000 00000000 00000000  # ifinfomsg
      0a00 0100 ee4573e95949 0000  # IFLA_ADDRESS ee:45:73:e9:59:49 (generate_mac, macvlan key, idx 0)
      0800 1c00 c8000000  # IFLA_NET_NS_FD 200
      0800 0500 02000000  # IFLA_LINK 2
      0c00 0300 6d762d6574683000  # IFLA_IFNAME "mv-eth0"
      1c00 1200  # IFLA_LINKINFO
        0b00 0100 6d6163766c616e 00  # IFLA_INFO_KIND "macvlan"
        0c00 0200  # IFLA_INFO_DATA
          0800 0100 04000000  # IFLA_MACVLAN_MODE MACVLAN_MODE_BRIDGE
    `));
  });

  test('-n: ve-mycontainer with the host MAC, host0 with the container MAC inside the container', async () => {
    const calls = await callsOf({ veth: true }, () => undefined);
    expect(creation(calls, 'createVeth', 'veth')).toBe(bytes(`
      84000000 1000 0506 00000000 00000000  # RTM_NEWLINK, len 132
      00 00 0000 00000000 00000000 00000000  # ifinfomsg
      0a00 0100 768485cdd8e2 0000  # IFLA_ADDRESS 76:84:85:cd:d8:e2 (host key)
      1300 0300 76652d6d79636f6e7461696e657200 00  # IFLA_IFNAME "ve-mycontainer"
      4400 1200  # IFLA_LINKINFO (68)
        0800 0100 76657468  # IFLA_INFO_KIND "veth"
        3800 0200  # IFLA_INFO_DATA (56)
          3400 0100  # VETH_INFO_PEER (52)
            00 00 0000 00000000 00000000 00000000  # the peer's ifinfomsg
            0a00 0100 06743f97db5a 0000  # IFLA_ADDRESS 06:74:3f:97:db:5a (container key)
            0800 1c00 c8000000  # IFLA_NET_NS_FD 200
            0a00 0300 686f737430 000000  # IFLA_IFNAME "host0"
    `));
  });

  test('--network-zone=: vb- up and enslaved to vz-ZONE in one request, as join_bridge() does', async () => {
    const calls = await callsOf({ veth: true, zone: 'lab' }, () => undefined);
    const join = calls.find((c) => c.method === 'setLink');
    expect(join?.args.slice(0, 2)).toEqual([2, { up: true, master: 4 }]);
    expect(wire(setLinkRequest(2, { up: true, master: 4 }))).toBe(bytes(`
      28000000 1000 0500 00000000 00000000  # RTM_NEWLINK, len 40, REQUEST|ACK
      00 00 0000 02000000 01000000 01000000  # ifinfomsg: index 2, flags IFF_UP, change IFF_UP
      0800 0a00 04000000  # IFLA_MASTER 4 (vz-lab)
    `));
  });
});
