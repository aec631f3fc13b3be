// nspawn-cni's operations: ADD, CHECK, DEL of one container on one network, in zone mode (the
// network's containers on one bridge vz-ZONE, as --network-zone= puts machines). The links are made
// here (the veth pair, the bridge under the zone lock every launcher and systemd-nspawn takes); the
// rest — the zone's subnet from the pool, the host address, masquerade, the container's stable
// address, port mappings — is the network subsystem's reserve/release (src/net/netd/subsystem.ts):
// over the sidecar's socket when nspawn-netd runs (one request), else in this process under the
// same state lock, with the subsystem opened as the sidecar's one-shot (SubsystemOptions.oneShot: it
// touches only this network's bridge, its record and its firewall entries — no resync of the host's
// links, no firewall reconcile; its records are held by "sidecar", so launchers' dead-holder sweeps
// leave them, and a sidecar started later takes them over).
import { closeSync, mkdirSync, openSync, readFileSync, renameSync, rmSync, writeSync } from 'node:fs';
import { errorMessage, NspawnError } from '../errors.js';
import { logger } from '../log.js';
import { sys } from '../native.js';
import { withLock } from '../common/lock.js';
import type { PortForward } from '../net/model.js';
import { removeZoneBridgeIfEmpty, zoneLock } from '../net/modes/zone.js';
import { zoneBridgeIfname } from '../net/naming.js';
import { NetdClient } from '../net/netd/client.js';
import type { MachineLease } from '../net/netd/subsystem.js';
import { Rtnl } from '../net/rtnl.js';
import {
  type AddOutcome, CNI_ERR, CniError, type CniConfig, type CniEnv, hostIfnameFor, machineFor, prevAddress,
} from './config.js';

const log = logger('cni');

/** The log level of this module's bundle (bin/nspawn-cni loads it apart from its entry's). */
export { setLogLevel } from '../log.js';

/** What one container's ADD recorded, so that DEL finds it without CNI_ARGS or prevResult. */
interface ContainerRecord {
  machine: string;
  zone: string;
  hostIfname: string;
}

function recordPath(cfg: CniConfig, env: CniEnv): string {
  return `${cfg.stateDir}/cni/${cfg.name.replace(/[^A-Za-z0-9_.-]/g, '_')}/${env.containerId}-${env.ifname}.json`;
}

function writeRecord(path: string, rec: ContainerRecord): void {
  mkdirSync(path.slice(0, path.lastIndexOf('/')), { recursive: true, mode: 0o700 });
  const tmp = `${path}.${process.pid}`;
  const fd = openSync(tmp, 'w', 0o600);
  try {
    writeSync(fd, JSON.stringify(rec) + '\n');
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, path);
}

function readRecord(path: string): ContainerRecord | undefined {
  try {
    const r = JSON.parse(readFileSync(path, 'utf8')) as Partial<ContainerRecord>;
    if (typeof r.machine === 'string' && typeof r.zone === 'string' && typeof r.hostIfname === 'string') return r as ContainerRecord;
  } catch { /* none, or unreadable: DEL falls back to what the call says */ }
  return undefined;
}

/** reserve/release of the network subsystem: the sidecar's, or our own for this one call. */
interface Library {
  reserve(req: { machine: string; mac: string; zone: string; ports: PortForward[] }): Promise<MachineLease>;
  release(req: { machine: string; zone: string }): Promise<void>;
}

async function withLibrary<T>(cfg: CniConfig, fn: (lib: Library) => Promise<T>): Promise<T> {
  const client = cfg.sidecar === 'auto' ? await NetdClient.connect(cfg.netdSocket) : undefined;
  if (client) {
    try {
      return await fn({
        reserve: (r) => client.request<MachineLease>({ op: 'reserve', machine: r.machine, mac: r.mac, kind: 'zone', zone: r.zone, ports: r.ports }),
        release: async (r) => { await client.request({ op: 'release', machine: r.machine, kind: 'zone', zone: r.zone }); },
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
        reserve: (r) => sub.reserve({ machine: r.machine, mac: r.mac, kind: 'zone', zone: r.zone, ports: r.ports }),
        release: async (r) => { await sub.release({ machine: r.machine, kind: 'zone', zone: r.zone }); },
      });
    } finally {
      await sub.close();
    }
  }, { timeoutMs: 30_000 });
}

function openNetns(path: string): number {
  try {
    return sys().openNamespace(path);
  } catch (err) {
    throw new CniError(CNI_ERR.INVALID_ENVIRONMENT, `CNI_NETNS ${path} cannot be opened as a network namespace: ${errorMessage(err)}`);
  }
}

async function inNetns<T>(path: string, fn: (rtnl: Rtnl) => Promise<T>): Promise<T> {
  const fd = openNetns(path);
  let rtnl: Rtnl | undefined;
  try {
    rtnl = Rtnl.open({ netnsFd: fd });
    return await fn(rtnl);
  } finally {
    rtnl?.close();
    sys().close(fd);
  }
}

/** Library errors as CNI errors: the sidecar's port clash and lock waits are the caller's to retry or fix. */
function asCni(err: unknown, what: string): CniError {
  if (err instanceof CniError) return err;
  const code = err instanceof NspawnError ? err.code : undefined;
  if (code === 'NET_ZONE_LOCK_TIMEOUT' || code === 'LOCK_TIMEOUT' || code === 'NETD_TIMEOUT') return new CniError(CNI_ERR.TRY_AGAIN_LATER, `${what}: ${errorMessage(err)}`);
  if (code === 'NETD_PORT_IN_USE' || code === 'NETD_BAD_REQUEST') return new CniError(CNI_ERR.INVALID_CONFIG, `${what}: ${errorMessage(err)}`);
  return new CniError(CNI_ERR.SETUP_FAILED, `${what}: ${errorMessage(err)}`, code ?? '');
}

/** Removes the container's links (its host veth, the bridge if it was the last port) and its reservation. */
async function teardown(cfg: CniConfig, rec: ContainerRecord): Promise<void> {
  const bridge = zoneBridgeIfname(rec.zone);
  const rtnl = Rtnl.open();
  try {
    await rtnl.deleteLink(rec.hostIfname); // false when gone already (its namespace went, or a second DEL)
    await removeZoneBridgeIfEmpty(rtnl, zoneLock(), bridge);
  } finally {
    rtnl.close();
  }
  await withLibrary(cfg, (lib) => lib.release({ machine: rec.machine, zone: rec.zone }));
}

export async function cniAdd(env: CniEnv, cfg: CniConfig): Promise<AddOutcome> {
  const rec: ContainerRecord = { machine: machineFor(env), zone: cfg.zone, hostIfname: hostIfnameFor(env.containerId, env.ifname) };
  const bridgeName = zoneBridgeIfname(cfg.zone);
  const path = recordPath(cfg, env);
  const netnsFd = openNetns(env.netns);
  const rtnl = Rtnl.open();
  let made = false;
  try {
    // recorded before anything exists: a crash from here on leaves what a DEL finds and removes
    writeRecord(path, rec);
    const release = await zoneLock().acquire();
    let bridge;
    try {
      bridge = await rtnl.ensureBridge({ name: bridgeName, up: true });
      await rtnl.deleteLink(rec.hostIfname); // a repeated ADD of the same container starts afresh
      made = true;
      await rtnl.createVeth({ name: rec.hostIfname, master: bridge.index, up: true, peer: { name: env.ifname, netnsFd } });
    } finally {
      release();
    }
    const host = await rtnl.requireLink(rec.hostIfname);
    const lease = await inNetns(env.netns, async (c) => {
      const link = await c.requireLink(env.ifname);
      const lease = await withLibrary(cfg, (lib) => lib.reserve({ machine: rec.machine, mac: link.mac ?? '', zone: cfg.zone, ports: cfg.ports }));
      await c.addAddress(link.index, `${lease.address}/${lease.prefixLength}`, { broadcast: true });
      await c.setUp(link.index);
      await c.replaceRoute({ dst: 'default', gateway: lease.gateway, dev: link.index });
      return { lease, mac: link.mac ?? '' };
    });
    const br = await rtnl.requireLink(bridgeName);
    log.debug(`ADD ${rec.machine}: ${lease.lease.address} on ${bridgeName}`);
    return {
      bridge: { name: bridgeName, mac: br.mac ?? '' }, host: { name: rec.hostIfname, mac: host.mac ?? '' },
      container: { name: env.ifname, mac: lease.mac, sandbox: env.netns },
      address: lease.lease.address, prefixLength: lease.lease.prefixLength, gateway: lease.lease.gateway, dns: lease.lease.dns,
    };
  } catch (err) {
    // a failed ADD leaves nothing (the runtime's DEL after it finds nothing either)
    if (made) {
      try {
        await teardown(cfg, rec);
      } catch (undo) {
        log.warn(`rolling back the ADD of ${rec.machine} failed: ${errorMessage(undo)}`);
      }
    }
    rmSync(path, { force: true });
    throw asCni(err, `setting up ${env.ifname} of container ${env.containerId.slice(0, 12)} on network ${cfg.name}`);
  } finally {
    rtnl.close();
    sys().close(netnsFd);
  }
}

export async function cniDel(env: CniEnv, cfg: CniConfig): Promise<void> {
  const path = recordPath(cfg, env);
  const rec = readRecord(path) ?? { machine: machineFor(env), zone: cfg.zone, hostIfname: hostIfnameFor(env.containerId, env.ifname) };
  try {
    await teardown(cfg, rec);
  } catch (err) {
    throw asCni(err, `removing ${env.ifname} of container ${env.containerId.slice(0, 12)} from network ${cfg.name}`);
  }
  rmSync(path, { force: true });
}

/** CHECK: the container's link, address and route, its port on the bridge and the bridge's gateway address are as ADD left them. */
export async function cniCheck(env: CniEnv, cfg: CniConfig): Promise<void> {
  const want = prevAddress(cfg.prevResult);
  if (want === undefined) throw new CniError(CNI_ERR.INVALID_CONFIG, 'CHECK needs the ADD result as "prevResult" (with an address in "ips")');
  const rec = readRecord(recordPath(cfg, env));
  if (!rec) throw new CniError(CNI_ERR.UNKNOWN_CONTAINER, `container ${env.containerId.slice(0, 12)} was not added to network ${cfg.name} (or its record is gone)`);
  const fail = (msg: string): never => {
    throw new CniError(CNI_ERR.CHECK_FAILED, msg);
  };
  const gateway = await inNetns(env.netns, async (c) => {
    const link = await c.getLink(env.ifname);
    if (!link) return fail(`${env.ifname} is missing in ${env.netns}`);
    if (!link.up) fail(`${env.ifname} in ${env.netns} is down`);
    const addrs = (await c.listAddresses({ link: link.index, family: 4 })).map((a) => a.cidr);
    if (!addrs.includes(want)) fail(`${env.ifname} in ${env.netns} lost its address ${want} (has: ${addrs.join(', ') || 'none'})`);
    const def = (await c.listRoutes({ family: 4 })).find((r) => r.dst === 'default');
    if (!def?.gateway) return fail(`${env.ifname} in ${env.netns} has no default route`);
    return def.gateway;
  });
  const rtnl = Rtnl.open();
  try {
    const bridge = await rtnl.getLink(zoneBridgeIfname(rec.zone));
    if (!bridge) fail(`the network's bridge ${zoneBridgeIfname(rec.zone)} is missing`);
    const host = await rtnl.getLink(rec.hostIfname);
    if (!host || host.master !== bridge?.index) fail(`the container's port ${rec.hostIfname} is missing or not on ${zoneBridgeIfname(rec.zone)}`);
    const own = (await rtnl.listAddresses({ link: bridge?.index, family: 4 })).map((a) => a.address);
    if (!own.includes(gateway)) fail(`the gateway ${gateway} is not on ${zoneBridgeIfname(rec.zone)}`);
  } finally {
    rtnl.close();
  }
}
