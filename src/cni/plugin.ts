// nspawn-cni's operations: ADD, CHECK, DEL of one container on one network, in zone mode (the
// network's containers on one bridge vz-ZONE, as --network-zone= puts machines) or veth mode (a
// point-to-point link ve-MACHINE and a /28 per container, as --network-veth). The links are made
// here (the veth pair, the bridge under the zone lock every launcher and systemd-nspawn takes); the
// rest — the subnet from the pool, the host address, masquerade, the container's stable address
// (and IPv6: the link's /64, its SLAAC address), port mappings — is the network subsystem's reserve/release (src/net/netd/subsystem.ts):
// over the sidecar's socket when nspawn-netd runs (one request), else in this process under the
// same state lock, with the subsystem opened as the sidecar's one-shot (SubsystemOptions.oneShot: it
// touches only this container's link or its network's bridge, their records and firewall entries —
// no resync of the host's links, no firewall reconcile; its records are held by "sidecar", so
// launchers' dead-holder sweeps leave them, and a sidecar started later takes them over).
import { existsSync } from 'node:fs';
import { errorMessage } from '../errors.js';
import { logger } from '../log.js';
import { sys } from '../native.js';
import { withLock } from '../common/lock.js';
import type { PortForward } from '../net/model.js';
import { configureLinkIn } from '../net/container-link.js';
import { zoneBridgeIfname } from '../net/naming.js';
import type { MachineLease } from '../net/netd/subsystem.js';
import type { ServedKind } from '../net/netd/links.js';
import { Rtnl } from '../net/rtnl.js';
import {
  type AddOutcome, CNI_ERR, CniError, type CniConfig, type CniEnv, prevAddresses,
} from './config.js';
import { asCni, inNetns, makeContainerVeth, openNetns } from './netns.js';
import { checkHostSide, removeHostLinks, resultInterfaces } from './host-side.js';
import { type ContainerRecord, readRecord, recordFor, recordPath, removeRecord, writeRecord } from './records.js';

const log = logger('cni');

/** The log level of this module's bundle (bin/nspawn-cni loads it apart from its entry's). */
export { setLogLevel } from '../log.js';
/** CNI 1.1.0's STATUS and GC, in this bundle too (gc.ts loaded for them only: it runs ipam plugins, node:child_process). */
export async function cniGc(env: CniEnv, cfg: CniConfig): Promise<string[]> {
  return (await import('./gc.js')).cniGc(env, cfg);
}
export async function cniStatus(env: CniEnv, cfg: CniConfig): Promise<void> {
  return (await import('./gc.js')).cniStatus(env, cfg);
}

/** reserve/release of the network subsystem: the sidecar's, or our own for this one call. */
export interface Library {
  reserve(req: { machine: string; mac: string; kind: ServedKind; zone: string; ports: PortForward[] }): Promise<MachineLease>;
  release(req: { machine: string; kind: ServedKind; zone: string }): Promise<void>;
}

/**
 * Runs `fn` with the library (withLibrary's by default); nspawn-netd doing a call itself
 * (src/cni/sidecar-op.ts) gives its own subsystem.
 */
export type LibraryProvider = <T>(fn: (lib: Library) => Promise<T>) => Promise<T>;

async function withLibrary<T>(cfg: CniConfig, fn: (lib: Library) => Promise<T>): Promise<T> {
  // the client (and node:net with it) is loaded only when a socket is there: an in-process call
  // spends none of its start-up on it
  const client = cfg.sidecar === 'auto' && existsSync(cfg.netdSocket)
    ? await (await import('../net/netd/client.js')).NetdClient.connect(cfg.netdSocket)
    : undefined;
  if (client) {
    try {
      return await fn({
        // the sidecar's API takes "zone" with kind zone only
        reserve: (r) => client.request<MachineLease>({ op: 'reserve', machine: r.machine, mac: r.mac, kind: r.kind, ...(r.kind === 'zone' ? { zone: r.zone } : {}), ports: r.ports }),
        release: async (r) => { await client.request({ op: 'release', machine: r.machine, kind: r.kind, ...(r.kind === 'zone' ? { zone: r.zone } : {}) }); },
      });
    } finally {
      client.close();
    }
  }
  // in-process: one plugin at a time per state directory (two one-shots serving a new network at
  // once would each allocate and configure it)
  return withLock(`${cfg.stateDir}/netd/cni.lock`, async () => {
    const { NetworkSubsystem } = await import('../net/netd/subsystem.js');
    const sub = await NetworkSubsystem.open({ mode: 'sidecar', oneShot: true, stateDir: cfg.stateDir, dnsServer: false, machineId: null, log: logger('netd') });
    try {
      return await fn({
        reserve: (r) => sub.reserve({ machine: r.machine, mac: r.mac, kind: r.kind, zone: r.zone, ports: r.ports }),
        release: async (r) => { await sub.release({ machine: r.machine, kind: r.kind, zone: r.zone }); },
      });
    } finally {
      await sub.close();
    }
  }, { timeoutMs: 30_000 });
}

/** Removes the container's links (its host veth, the zone's bridge if it was the last port) and its reservation. */
export async function teardown(cfg: CniConfig, rec: ContainerRecord, via: LibraryProvider = (fn) => withLibrary(cfg, fn)): Promise<void> {
  await removeHostLinks(rec, zoneBridgeIfname(rec.zone));
  await via((lib) => lib.release({ machine: rec.machine, kind: rec.mode, zone: rec.zone }));
}

/** The lease as a CNI result: IPv4, and IPv6 when the link has it (its gateway the host's link-local address). */
function outcomeOf(lease: MachineLease, links: AddOutcome['interfaces']): AddOutcome {
  const container = links.length - 1;
  const out: AddOutcome = {
    interfaces: links,
    ips: [{ address: `${lease.address}/${lease.prefixLength}`, gateway: lease.gateway, interface: container }],
    routes: [{ dst: '0.0.0.0/0', gw: lease.gateway }],
    dns: {},
  };
  const dns = [...lease.dns];
  if (lease.ipv6) {
    out.ips.push({ address: `${lease.ipv6.address}/${lease.ipv6.prefixLength}`, gateway: lease.ipv6.gateway, interface: container });
    out.routes.push({ dst: '::/0', gw: lease.ipv6.gateway });
    for (const d of lease.ipv6.dns) if (!dns.includes(d)) dns.push(d);
  }
  if (dns.length) out.dns.nameservers = dns;
  return out;
}

export async function cniAdd(env: CniEnv, cfg: CniConfig, via: LibraryProvider = (fn) => withLibrary(cfg, fn)): Promise<AddOutcome> {
  if (cfg.ipam) return (await import('./ipam-net.js')).ipamNetAdd(env, cfg);
  const rec = recordFor(env, cfg);
  const bridgeName = zoneBridgeIfname(cfg.zone);
  const path = recordPath(cfg, env.containerId, env.ifname);
  const netnsFd = openNetns(env.netns);
  const rtnl = Rtnl.open();
  let inner: Rtnl | undefined;
  let made = false;
  try {
    // recorded before anything exists: a crash from here on leaves what a DEL (or GC) finds and removes
    writeRecord(path, rec);
    await makeContainerVeth(rtnl, { ...(rec.mode === 'zone' ? { bridge: bridgeName } : {}), hostIfname: rec.hostIfname, ifname: env.ifname, netnsFd }, () => { made = true; });
    const host = await rtnl.requireLink(rec.hostIfname);
    // one client in the container's namespace (the fd open already) reads its link and configures it
    inner = Rtnl.open({ netnsFd });
    const peer = await inner.requireLink(env.ifname);
    const mac = peer.mac ?? '';
    const lease = await via((lib) => lib.reserve({ machine: rec.machine, mac, kind: rec.mode, zone: cfg.zone, ports: cfg.ports }));
    try {
      await configureLinkIn(inner, peer, lease);
    } catch (err) {
      throw new CniError(CNI_ERR.SETUP_FAILED, `configuring ${env.ifname} in ${env.netns}: ${errorMessage(err)}`);
    }
    if (rec.mode === 'zone') {
      // the address may have been a container's just gone (another MAC): the host asks again, or
      // it sends to the old MAC until its neighbour entry goes stale (seconds of silence)
      await rtnl.deleteNeighbour(bridgeName, lease.address);
      if (lease.ipv6) await rtnl.deleteNeighbour(bridgeName, lease.ipv6.address);
    }
    const links = await resultInterfaces(rtnl, rec, bridgeName, host, { name: env.ifname, mac, sandbox: env.netns });
    log.debug(`ADD ${rec.machine}: ${lease.address}${lease.ipv6 ? ` ${lease.ipv6.address}` : ''} on ${lease.ifname}`);
    return outcomeOf(lease, links);
  } catch (err) {
    // a failed ADD leaves nothing (the runtime's DEL after it finds nothing either)
    if (made) {
      try {
        await teardown(cfg, rec, via);
      } catch (undo) {
        log.warn(`rolling back the ADD of ${rec.machine} failed: ${errorMessage(undo)}`);
      }
    }
    removeRecord(path);
    throw asCni(err, `setting up ${env.ifname} of container ${env.containerId.slice(0, 12)} on network ${cfg.name}`);
  } finally {
    inner?.close();
    rtnl.close();
    sys().close(netnsFd);
  }
}

export async function cniDel(env: CniEnv, cfg: CniConfig, via: LibraryProvider = (fn) => withLibrary(cfg, fn)): Promise<void> {
  const path = recordPath(cfg, env.containerId, env.ifname);
  const rec = readRecord(path) ?? recordFor(env, cfg);
  try {
    if (rec.ipam !== undefined) await (await import('./ipam-net.js')).ipamNetDel(env, cfg, rec);
    else await teardown(cfg, rec, via);
  } catch (err) {
    throw asCni(err, `removing ${env.ifname} of container ${env.containerId.slice(0, 12)} from network ${cfg.name}`);
  }
  removeRecord(path);
}

/** CHECK: the container's link, addresses and default routes, and its host side (host-side.ts) are as ADD left them. */
export async function cniCheck(env: CniEnv, cfg: CniConfig): Promise<void> {
  const want = prevAddresses(cfg.prevResult);
  if (want.length === 0) throw new CniError(CNI_ERR.INVALID_CONFIG, 'CHECK needs the ADD result as "prevResult" (with an address in "ips")');
  const rec = readRecord(recordPath(cfg, env.containerId, env.ifname));
  if (!rec) throw new CniError(CNI_ERR.UNKNOWN_CONTAINER, `container ${env.containerId.slice(0, 12)} was not added to network ${cfg.name} (or its record is gone)`);
  const fail = (msg: string): never => {
    throw new CniError(CNI_ERR.CHECK_FAILED, msg);
  };
  const gateway = await inNetns(env.netns, async (c) => {
    const link = await c.getLink(env.ifname);
    if (!link) return fail(`${env.ifname} is missing in ${env.netns}`);
    if (!link.up) fail(`${env.ifname} in ${env.netns} is down`);
    const addrs = (await c.listAddresses({ link: link.index })).map((a) => a.cidr);
    for (const w of want) if (!addrs.includes(w)) fail(`${env.ifname} in ${env.netns} lost its address ${w} (has: ${addrs.join(', ') || 'none'})`);
    let gw4 = '';
    for (const family of [4, 6] as const) {
      if (!want.some((w) => w.includes(':') === (family === 6))) continue;
      const def = (await c.listRoutes({ family })).find((r) => r.dst === 'default');
      if (!def?.gateway) return fail(`${env.ifname} in ${env.netns} has no IPv${family} default route`);
      if (family === 4) gw4 = def.gateway;
    }
    return gw4;
  });
  if (rec.ipam !== undefined) await (await import('./ipam-net.js')).ipamNetCheck(env, cfg, rec, gateway);
  else await checkHostSide(rec, zoneBridgeIfname(rec.zone), gateway);
}
