// A hostile neighbour on a zone (issue 12): containers from a busybox root with real udhcpc as the
// victims, bin/nspawn-ts embedded and with the sidecar, and an "attacker" that is what a container is
// on a zone — a port of the zone's bridge with a namespace behind it — sending DHCP in other
// clients' names and inventing clients. The victims keep their addresses, the next container starts,
// a plain DHCP client arriving after a flood is served, and the server logs no internal error.
import { describe, expect } from 'vitest';
import { BOOTREPLY, decodePacket, encodePacket } from '../../src/dhcp/codec.js';
import { ipv4ToString, parseMac } from '../../src/dhcp/ipv4.js';
import { sockaddrLl } from '../../src/dhcp/transport.js';
import { buildIpUdp } from '../../src/dhcp/wire.js';
import { sys } from '../../src/native.js';
import { MessageType as T } from '../../src/dhcp/options.js';
import { NetdClient } from '../../src/net/netd/client.js';
import type { DhcpLeaseInfo } from '../../src/net/netd/subsystem.js';
import { runOk, waitFor } from '../helpers/exec.js';
import { ktest } from '../helpers/kernel.js';
import { TestNetns } from '../helpers/netns.js';
import { busyboxRoot, copyRoot } from '../helpers/rootfs.js';
import { clientPacket, type ClientPacket } from '../unit/dhcp/helpers.js';
import { UdpClient } from './dhcp-env.js';
import { exitOf, NETD, nspawnTs, type Proc, startProc, TEST_DNS } from './e2e-world.js';

const UDHCPC = 'udhcpc -i host0 -f -q -n -t 5 -T 1 >/tmp/udhcpc.log 2>&1 || { echo udhcpc-failed; cat /tmp/udhcpc.log; }';
const SHOW = 'echo "addr=$(ip -4 -o addr show host0 | awk \'{print $4}\') mac=$(cat /sys/class/net/host0/address)"';
const ATTACKER_MAC = '02:00:00:00:0a:0b';

function seen(out: string): { addr: string; mac: string }[] {
  return [...out.matchAll(/^addr=(\S+) mac=(\S+)$/gm)].map((m) => ({ addr: m[1] as string, mac: m[2] as string }));
}

async function sidecar(args: string[]): Promise<{ proc: Proc; stop: () => Promise<void> }> {
  const proc = startProc(process.execPath, [NETD, `--dns=${TEST_DNS}`, ...args]);
  (await waitFor(() => NetdClient.connect(), 'the sidecar socket', 10_000, 20)).close();
  return {
    proc,
    stop: async () => {
      if (proc.child.exitCode === null && proc.child.signalCode === null) {
        proc.child.kill('SIGTERM');
        await proc.exited;
      }
    },
  };
}

/** The zone's first container, kept running (until its stdin ends) while the attack goes on. */
function keptContainer(zone: string, machine: string, rootDir: string): Proc {
  return nspawnTs([`--network-zone=${zone}`, '-M', machine, '-D', rootDir, 'sh', '-c', `${UDHCPC}; ${SHOW}; echo ready; read x`]);
}

/** Waits until the kept container has its lease; the zone's gateway (the .1 of its /24). */
async function gatewayOf(first: Proc): Promise<string> {
  await waitFor(() => first.output().includes('ready\n') || first.child.exitCode !== null, 'the first container', 30_000);
  expect(first.output()).not.toMatch(/udhcpc-failed/);
  return `${(seen(first.output())[0]?.addr ?? '').split('.').slice(0, 3).join('.')}.1`;
}

/** A container started after the attack still gets an address of the zone from its real udhcpc. */
async function nextContainerLeases(zone: string, machine: string, rootDir: string): Promise<void> {
  const second = nspawnTs([`--network-zone=${zone}`, '-M', machine, '-D', rootDir, 'sh', '-c', `${UDHCPC}; ${SHOW}`]);
  expect(await exitOf(second)).toBe(0);
  expect(second.output()).not.toMatch(/udhcpc-failed|no free address/);
  expect(seen(second.output())[0]?.addr).toMatch(/\/24$/);
}

/** A client without a reservation on a port of its own gets a lease (udhcpc); its port, to leave. */
async function plainClientLeases(zone: string, name: string, mac: string): Promise<Port> {
  const plain = await Port.join(`vz-${zone}`, name, mac);
  try {
    const r = await plain.ns.tryExec('udhcpc', ['-i', `${name}0`, '-f', '-q', '-n', '-t', '5', '-T', '1', '-s', '/bin/true'], { timeoutMs: 30_000 });
    expect(r.code, r.stderr).toBe(0);
    return plain;
  } catch (err) {
    await plain.leave();
    throw err;
  }
}

/** A namespace behind a port of the zone's bridge: the attacker's (or a plain client's) position. */
class Port {
  private constructor(readonly ns: TestNetns, readonly hostIf: string) {}
  static async join(bridge: string, name: string, mac: string): Promise<Port> {
    const ns = await TestNetns.create(name);
    const hostIf = `${name}h`;
    await runOk('ip', ['link', 'add', hostIf, 'type', 'veth', 'peer', 'name', `${name}0`, 'netns', ns.name]);
    await ns.exec('ip', ['link', 'set', `${name}0`, 'address', mac]);
    await ns.exec('ip', ['link', 'set', `${name}0`, 'up']);
    await runOk('ip', ['link', 'set', hostIf, 'master', bridge, 'up']);
    return new Port(ns, hostIf);
  }
  async leave(): Promise<void> {
    await runOk('ip', ['link', 'del', this.hostIf]).catch(() => undefined);
    await this.ns.destroy();
  }
}

/** DHCP from the attacker's namespace; replies are broadcast (flag set) so it hears them. */
class Attacker {
  readonly client: UdpClient;
  readonly acks: string[] = [];
  readonly offers = new Map<number, number>(); // xid → offered address
  constructor(readonly port: Port, ifname: string) {
    this.client = new UdpClient(port.ns.fd, ifname);
    this.client.onReply((bytes) => {
      const p = decodePacket(bytes);
      if (p.op !== BOOTREPLY) return;
      const t = p.options.messageType();
      if (t === T.ACK && p.yiaddr) this.acks.push(ipv4ToString(p.yiaddr));
      if (t === T.OFFER) this.offers.set(p.xid, p.yiaddr);
    });
  }
  /** raw Ethernet frames whose source is each client's invented MAC (inventSources()) */
  private raw: { fd: number; to: Uint8Array } | undefined;
  /** From now on every client's frames come from its own (invented) Ethernet source. */
  async inventSources(ifname: string): Promise<void> {
    const [link] = await this.port.ns.ipJson<Array<{ ifindex: number }>>(['link', 'show', 'dev', ifname]);
    this.raw = { fd: sys().socket(17 /* AF_PACKET */, 3 /* SOCK_RAW */, 0, this.port.ns.fd), to: sockaddrLl(link?.ifindex ?? 0) };
  }
  send(c: ClientPacket): void {
    const payload = encodePacket(clientPacket({ broadcast: true, ...c }));
    if (!this.raw) {
      this.client.send(payload);
      return;
    }
    const ip = buildIpUdp(0, 0xffffffff, 68, 67, payload);
    const frame = new Uint8Array(14 + ip.length);
    frame.fill(0xff, 0, 6);
    frame.set(parseMac(c.mac ?? '') ?? new Uint8Array(6), 6);
    frame.set([0x08, 0x00], 12);
    frame.set(ip, 14);
    sys().sendto(this.raw.fd, frame, this.raw.to);
  }
  /** DORA (or DISCOVERs only) for `n` invented clients, 32 at a time. */
  async invent(n: number, opts: { request: boolean; prefix: string }): Promise<void> {
    for (let base = 0; base < n; base += 32) {
      const batch: Array<{ xid: number; mac: string }> = [];
      for (let i = base; i < Math.min(n, base + 32); i++) {
        const xid = 0x5000_0000 + (parseInt(opts.prefix, 16) << 16) + i;
        const mac = `02:${opts.prefix}:00:00:${((i >> 8) & 0xff).toString(16).padStart(2, '0')}:${(i & 0xff).toString(16).padStart(2, '0')}`;
        this.send({ type: T.DISCOVER, mac, xid });
        batch.push({ xid, mac });
      }
      await new Promise((r) => setTimeout(r, 60));
      if (!opts.request) continue;
      for (const { xid, mac } of batch) {
        const offered = this.offers.get(xid);
        if (offered !== undefined) this.send({ type: T.REQUEST, mac, xid, serverId: this.server, requested: ipv4ToString(offered) });
      }
      await new Promise((r) => setTimeout(r, 60));
    }
    await new Promise((r) => setTimeout(r, 300));
  }
  server = '';
  close(): void {
    this.client.close();
    if (this.raw) sys().close(this.raw.fd);
  }
}

for (const mode of ['embedded', 'sidecar'] as const) {
  describe(`a hostile neighbour on a zone (${mode})`, () => {
    ktest(`${mode}: a RELEASE and a REQUEST in the victim's name neither take its reserved address nor break its udhcpc`, async () => {
      const root = await copyRoot(await busyboxRoot());
      const netd = mode === 'sidecar' ? await sidecar([]) : undefined;
      const zone = `atk${mode.slice(0, 1)}`;
      let victim: Proc | undefined;
      let port: Port | undefined;
      let attacker: Attacker | undefined;
      try {
        victim = nspawnTs([`--network-zone=${zone}`, '-M', `victim-${mode.slice(0, 1)}-${process.pid}`, '-D', root.dir, 'sh', '-c',
          `${UDHCPC}; ${SHOW}; echo ready; read x; ${UDHCPC}; ${SHOW}; echo again; read x`]);
        await waitFor(() => victim!.output().includes('ready\n') || victim!.child.exitCode !== null, 'the victim', 30_000);
        const [first] = seen(victim.output());
        expect(victim.output()).not.toMatch(/udhcpc-failed/);
        expect(first?.addr).toMatch(/\/24$/);
        const addr = (first as { addr: string }).addr.split('/')[0] as string;
        const gateway = `${addr.split('.').slice(0, 3).join('.')}.1`;

        port = await Port.join(`vz-${zone}`, `atk${mode.slice(0, 1)}`, ATTACKER_MAC);
        attacker = new Attacker(port, `atk${mode.slice(0, 1)}0`);
        attacker.server = gateway;
        const victimMac = (first as { mac: string }).mac;
        const clientId = Uint8Array.of(1, ...(parseMac(victimMac) as Uint8Array));
        for (let round = 0; round < 3; round++) {
          attacker.send({ type: T.RELEASE, mac: victimMac, clientId, ciaddr: addr, serverId: gateway, xid: 0x100 + round });
          await new Promise((r) => setTimeout(r, 50));
          attacker.send({ type: T.REQUEST, mac: victimMac, requested: addr, xid: 0x200 + round }); // INIT-REBOOT
          attacker.send({ type: T.REQUEST, mac: victimMac, requested: addr, serverId: gateway, xid: 0x300 + round }); // SELECTING
          attacker.send({ type: T.DISCOVER, mac: victimMac, xid: 0x400 + round });
          attacker.send({ type: T.DECLINE, mac: victimMac, clientId, requested: addr, serverId: gateway, xid: 0x500 + round });
          await new Promise((r) => setTimeout(r, 100));
        }
        expect(attacker.acks).not.toContain(addr);
        expect([...attacker.offers.values()].map(ipv4ToString)).not.toContain(addr);

        // the victim's udhcpc asks again (DISCOVER, REQUEST): its address, at once
        victim.child.stdin?.write('go\n');
        await waitFor(() => victim!.output().includes('again\n') || victim!.child.exitCode !== null, 'the victim asking again', 30_000);
        expect(victim.output()).not.toMatch(/udhcpc-failed/);
        expect(seen(victim.output())[1]?.addr).toBe(first?.addr);
        const logs = `${victim.output()}\n${netd?.proc.output() ?? ''}`;
        expect(logs).not.toMatch(/internal error|AllocationError/);
      } finally {
        attacker?.close();
        await port?.leave();
        victim?.child.stdin?.end();
        if (victim) await exitOf(victim);
        await netd?.stop();
        root.remove();
      }
    }, 120_000);

    ktest(`${mode}: DORA and DISCOVER floods of invented clients from one container: the next container and a plain client still get addresses`, async () => {
      const root = await copyRoot(await busyboxRoot());
      const netd = mode === 'sidecar' ? await sidecar([]) : undefined;
      const zone = `sta${mode.slice(0, 1)}`;
      let first: Proc | undefined;
      let port: Port | undefined;
      let plain: Port | undefined;
      let attacker: Attacker | undefined;
      try {
        first = keptContainer(zone, `st1-${mode.slice(0, 1)}-${process.pid}`, root.dir);
        const gateway = await gatewayOf(first);
        port = await Port.join(`vz-${zone}`, `sta${mode.slice(0, 1)}`, ATTACKER_MAC);
        attacker = new Attacker(port, `sta${mode.slice(0, 1)}0`);
        attacker.server = gateway;
        await attacker.invent(300, { request: true, prefix: '66' });
        // the sidecar caps a source at 8 dynamic leases; embedded launchers answer only their own container
        expect(attacker.acks.length).toBeLessThanOrEqual(mode === 'sidecar' ? 8 : 0);
        await attacker.invent(1000, { request: false, prefix: '67' });

        await nextContainerLeases(zone, `st2-${mode.slice(0, 1)}-${process.pid}`, root.dir);
        // a client without a reservation arriving after the floods gets an offer and a lease
        if (mode === 'sidecar') plain = await plainClientLeases(zone, 'plcs', '02:00:00:00:0c:0c');
        expect(netd?.proc.output() ?? '').not.toMatch(/internal error/);
      } finally {
        attacker?.close();
        await port?.leave();
        await plain?.leave();
        first?.child.stdin?.end();
        if (first) await exitOf(first);
        await netd?.stop();
        root.remove();
      }
    }, 180_000);
  });
}

describe('a hostile neighbour inventing its Ethernet source for every client (sidecar)', () => {
  ktest('DORA of invented clients, each from its own invented MAC, through one bridge port: capped per port; a plain client and the next container are served', async () => {
    const root = await copyRoot(await busyboxRoot());
    const netd = await sidecar([]);
    let first: Proc | undefined;
    let port: Port | undefined;
    let plain: Port | undefined;
    let attacker: Attacker | undefined;
    try {
      first = keptContainer('macs', `mc1-${process.pid}`, root.dir);
      const gateway = await gatewayOf(first);
      port = await Port.join('vz-macs', 'macs', ATTACKER_MAC);
      attacker = new Attacker(port, 'macs0');
      attacker.server = gateway;
      await attacker.inventSources('macs0');
      await attacker.invent(300, { request: true, prefix: '6b' });
      // per source MAC each invented client would be a source of its own: ~250 ACKs, the /24 full
      expect(attacker.acks.length).toBeGreaterThan(0); // the frames do reach the server
      expect(attacker.acks.length).toBeLessThanOrEqual(8);
      await attacker.invent(600, { request: false, prefix: '6c' });
      // a plain client (no reservation) on another port gets a lease
      plain = await plainClientLeases('macs', 'plcm', '02:00:00:00:0c:0e');
      // the next container's real udhcpc gets its address
      await nextContainerLeases('macs', `mc2-${process.pid}`, root.dir);
      expect(netd.proc.output()).not.toMatch(/internal error/);
    } finally {
      attacker?.close();
      await port?.leave();
      await plain?.leave();
      first?.child.stdin?.end();
      if (first) await exitOf(first);
      await netd.stop();
      root.remove();
    }
  }, 180_000);
});

describe('a zone without a per-source cap (--zone-leases-per-source=0)', () => {
  ktest('a DORA flood fills the /24 and a DISCOVER flood holds what is left: the next container displaces a dynamic lease, a plain client an offer', async () => {
    const root = await copyRoot(await busyboxRoot());
    const netd = await sidecar(['--zone-leases-per-source=0']);
    let first: Proc | undefined;
    let port: Port | undefined;
    let plain: Port | undefined;
    let attacker: Attacker | undefined;
    try {
      first = keptContainer('nocap', `nc1-${process.pid}`, root.dir);
      const gateway = await gatewayOf(first);
      port = await Port.join('vz-nocap', 'ncap', ATTACKER_MAC);
      attacker = new Attacker(port, 'ncap0');
      attacker.server = gateway;
      await attacker.invent(240, { request: true, prefix: '68' });
      expect(attacker.acks.length).toBeGreaterThan(120);
      await attacker.invent(300, { request: false, prefix: '69' }); // offers on all that is left
      const c = await NetdClient.connect();
      try {
        const held = (await c!.request<DhcpLeaseInfo[]>({ op: 'leases' })).filter((l) => l.ifname === 'vz-nocap' && l.state !== 'released');
        expect(held.filter((l) => l.state === 'bound').length).toBe(attacker.acks.length + 1); // and the first container's
        expect(held.length).toBe(253); // every client address of the /24 is bound or offered
      } finally {
        c?.close();
      }

      // a plain client (no reservation) gets the oldest offer's address
      plain = await plainClientLeases('nocap', 'plcn', '02:00:00:00:0c:0d');
      // and more: the pool is all bindings now; the next container's reservation takes a dynamic lease's address
      await attacker.invent(30, { request: true, prefix: '6a' });
      await nextContainerLeases('nocap', `nc2-${process.pid}`, root.dir);
      expect(netd.proc.output()).not.toMatch(/internal error/);
    } finally {
      attacker?.close();
      await port?.leave();
      await plain?.leave();
      first?.child.stdin?.end();
      if (first) await exitOf(first);
      await netd.stop();
      root.remove();
    }
  }, 180_000);
});
