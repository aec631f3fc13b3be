// nspawn-cni with "ipam" delegated (src/cni/ipam.ts): the addresses, routes and DNS are another
// plugin's (host-local, dhcp, static …), so the network subsystem, whose links get subnets from our
// pool, does not serve these links. Their names keep them out of its sight (a sidecar serves
// ve-/vz- links): the zone's bridge is cn-ZONE, the host side of each veth ncXXXXXXXX. What the
// subsystem would do is done here with the same library parts: the gateway on the bridge (zone
// mode) or on the container's host link as a /32 with a route to the container (veth mode, as the
// ptp plugin does), forwarding, masquerade and NAT66 of the ipam subnets and the port mappings in
// nftables — in a table of their own ("nspawn-cni"), which the subsystem's reconciliation never touches.
import { errorMessage, NspawnError } from '../errors.js';
import { logger } from '../log.js';
import { sys } from '../native.js';
import { Firewall } from '../net/firewall/nft.js';
import { normaliseSubnet, portForwardMappings, TABLE_FAMILY, type PortMapping } from '../net/firewall/rules.js';
import { CNI_IPAM_TABLE, findPortClashes, foreignPortClashes, hostPortsOf, PortInUseError } from '../net/netd/ports.js';
import { type NetdState, StateStore } from '../net/netd/state.js';
import { forwardingOffIfUnused, forwardingOn } from '../net/netd/sysctl.js';
import { Rtnl } from '../net/rtnl.js';
import { type AddOutcome, CNI_ERR, CniError, type CniConfig, type CniEnv } from './config.js';
import { delConfigFor, type IpamResult, ipamAdd, ipamCheck, ipamDel } from './ipam.js';
import { checkHostSide, removeHostLinks, resultInterfaces } from './host-side.js';
import { asCni, inNetns, makeContainerVeth, openNetns } from './netns.js';
import { type ContainerRecord, listRecords, recordFor, recordPath, removeRecord, writeRecord } from './records.js';

const log = logger('cni');

/** The bridge of a zone whose addresses an ipam plugin gives (not vz-: the subsystem would serve that). */
export function ipamBridgeIfname(zone: string): string {
  return `cn-${zone}`;
}

function masqueradeOwner(cfg: CniConfig): string {
  return `cni:${cfg.name.replace(/[^A-Za-z0-9._:@/+-]/g, '_')}`.slice(0, 100);
}

/** The network as a user of forwarding in the library's state (held while the network has a container). */
function forwardingUser(cfg: CniConfig): string {
  return `cni:${cfg.name}`;
}

function portOwner(cfg: CniConfig, rec: ContainerRecord): string {
  return `${masqueradeOwner(cfg)}/${rec.machine}`.slice(0, 100);
}

/**
 * Refuses (code 7, naming each port and who holds it) host ports that the network library forwards
 * (its table inet nspawn-ts: nspawn-ts -p, the sidecar's machines, pods of pool networks; and its
 * recorded reservations in `state`) or systemd-nspawn does. Our own table's clashes are its map's.
 */
function refuseTakenPorts(cfg: CniConfig, owner: string, state: NetdState): void {
  const library = new Firewall();
  let current: PortMapping[];
  try {
    // its entries at the asked ports, looked up key by key: no listing of its (maybe large) table
    current = library.portMappingsAt(hostPortsOf(cfg.ports));
  } finally {
    library.close();
  }
  const clashes = findPortClashes(owner, cfg.ports, { current, state, foreign: foreignPortClashes(cfg.ports, { tables: [] }) })
    .map((c) => (c.holder.includes('(table ') ? c : { ...c, holder: `${c.holder} (table ${TABLE_FAMILY} ${library.table})` }));
  if (clashes.length) throw new CniError(CNI_ERR.INVALID_CONFIG, `runtimeConfig.portMappings: ${new PortInUseError(owner, clashes).message}`);
}

function isEexist(err: unknown): boolean {
  return err instanceof NspawnError && err.code === 'EEXIST';
}

/** The routes the container gets: the ipam plugin's (a route without gw goes via its family's gateway), and a default route per family with a gateway when it gave none. */
function containerRoutes(res: IpamResult): Array<{ dst: string; gw?: string }> {
  const gw = (v6: boolean): string | undefined => res.ips.find((ip) => ip.address.includes(':') === v6 && ip.gateway)?.gateway;
  const routes = res.routes.map((r) => ({ dst: r.dst, ...(r.gw ?? gw(r.dst.includes(':')) ? { gw: r.gw ?? gw(r.dst.includes(':')) } : {}) }));
  for (const v6 of [false, true]) {
    const def = v6 ? '::/0' : '0.0.0.0/0';
    const g = gw(v6);
    if (g && !routes.some((r) => r.dst === def)) routes.push({ dst: def, gw: g });
  }
  return routes;
}

export async function ipamNetAdd(env: CniEnv, cfg: CniConfig): Promise<AddOutcome> {
  const rec = recordFor(env, cfg);
  const path = recordPath(cfg, env.containerId, env.ifname);
  const bridgeName = ipamBridgeIfname(cfg.zone);
  // a host port someone else forwards: refused before anything is made (again under the lock below)
  if (cfg.ports.length) refuseTakenPorts(cfg, portOwner(cfg, rec), new StateStore(cfg.stateDir).peek());
  const netnsFd = openNetns(env.netns);
  const rtnl = Rtnl.open();
  const fw = new Firewall({ table: CNI_IPAM_TABLE });
  let made = false;
  let allocated = false;
  try {
    writeRecord(path, rec);
    await makeContainerVeth(rtnl, { ...(rec.mode === 'zone' ? { bridge: bridgeName } : {}), hostIfname: rec.hostIfname, ifname: env.ifname, netnsFd }, () => { made = true; });
    const res = await ipamAdd(cfg, env);
    allocated = true;
    const subnets = [...new Set(res.ips.map((ip) => normaliseSubnet(ip.address).subnet))];
    rec.subnets = subnets;
    // the host ports before their mappings exist: a DEL removes them by these keys (no listing)
    rec.ports = hostPortsOf(cfg.ports);
    writeRecord(path, rec);
    const routes = containerRoutes(res);
    // the container: its addresses (IPv6 without DAD: the ipam plugin made it unique), then its
    // routes. Point-to-point (veth mode), as the ptp plugin does: no route to the subnet on the
    // link (its other addresses are other containers' links) but the gateway as a host route, and
    // the subnet via the gateway.
    const ptp = rec.mode === 'veth';
    const mac = await inNetns(env.netns, async (c) => {
      const link = await c.requireLink(env.ifname);
      for (const ip of res.ips) {
        const v6 = ip.address.includes(':');
        await c.addAddress(link.index, ip.address, { ...(v6 ? { nodad: true } : { broadcast: true }), ...(ptp ? { noPrefixRoute: true } : {}) });
      }
      await c.setUp(link.index);
      if (ptp) {
        for (const ip of res.ips) {
          if (!ip.gateway) continue;
          const v6 = ip.address.includes(':');
          await c.replaceRoute({ dst: `${ip.gateway}/${v6 ? 128 : 32}`, dev: link.index });
          await c.replaceRoute({ dst: normaliseSubnet(ip.address).subnet, gateway: ip.gateway, dev: link.index });
        }
      }
      for (const r of routes) await c.replaceRoute({ dst: r.dst === '0.0.0.0/0' || r.dst === '::/0' ? 'default' : r.dst, ...(r.gw ? { gateway: r.gw } : {}), dev: link.index, ...(r.dst.includes(':') ? { family: 6 as const } : {}) });
      return link.mac ?? '';
    });
    // the host: the gateways, forwarding, masquerade, the port mappings
    const host = await rtnl.requireLink(rec.hostIfname);
    for (const ip of res.ips) {
      if (!ip.gateway) continue;
      const v6 = ip.address.includes(':');
      const len = rec.mode === 'zone' ? ip.address.split('/')[1] : v6 ? '128' : '32';
      const on = rec.mode === 'zone' ? bridgeName : host.index;
      try {
        await rtnl.addAddress(on, `${ip.gateway}/${len}`, v6 ? { nodad: true } : {});
      } catch (err) {
        if (!isEexist(err)) throw err;
      }
      if (rec.mode === 'veth') await rtnl.replaceRoute({ dst: `${ip.address.split('/')[0] ?? ''}/${v6 ? 128 : 32}`, dev: host.index });
    }
    fw.ensureTables();
    const have = new Set(fw.masquerade().map((e) => e.subnet)); // the masquerade sets alone, not a listing of the table
    // both families, as the pool's links get masquerade and NAT66: an ipam range is rarely routed to this host
    for (const s of subnets) if (!have.has(s)) fw.addMasquerade(s, masqueradeOwner(cfg));
    const mappings = cfg.ports.flatMap((p) => res.ips.flatMap((ip) => portForwardMappings(p, ip.address.split('/')[0] ?? '', portOwner(cfg, rec))));
    // under the network library's state lock, which it holds while it checks our table and records its
    // own ports, and while it turns forwarding on or puts it back (the record of the values before is shared)
    await new StateStore(cfg.stateDir).update((st) => {
      if (mappings.length) {
        refuseTakenPorts(cfg, portOwner(cfg, rec), st);
        try {
          fw.addPortMappings(mappings);
        } catch (err) {
          if (err instanceof NspawnError && err.code === 'NFT_PORT_IN_USE') throw new CniError(CNI_ERR.INVALID_CONFIG, `runtimeConfig.portMappings: ${err.message}`);
          throw err;
        }
      }
      // last: a refused port leaves forwarding as it was (a throw writes no state)
      forwardingOn(st, subnets.some((s) => s.includes(':')));
      const user = forwardingUser(cfg);
      if (!st.forwardingUsers?.includes(user)) st.forwardingUsers = [...(st.forwardingUsers ?? []), user];
    });
    const links = await resultInterfaces(rtnl, rec, bridgeName, host, { name: env.ifname, mac, sandbox: env.netns });
    const container = links.length - 1;
    log.debug(`ADD ${rec.machine}: ${res.ips.map((ip) => ip.address).join(' ')} from ${cfg.ipam?.type ?? ''}`);
    return { interfaces: links, ips: res.ips.map((ip) => ({ ...ip, interface: container })), routes, dns: res.dns };
  } catch (err) {
    if (made) {
      try {
        await removeHostSide(cfg, rec, fw);
      } catch (undo) {
        log.warn(`rolling back the ADD of ${rec.machine} failed: ${errorMessage(undo)}`);
      }
    }
    // the addresses go back to the ipam plugin also when our part failed halfway
    if (allocated) {
      try {
        await ipamDel(cfg, env);
      } catch (undo) {
        log.warn(`giving ${rec.machine}'s addresses back to ${cfg.ipam?.type ?? ''} failed: ${errorMessage(undo)}`);
      }
    }
    removeRecord(path);
    throw asCni(err, `setting up ${env.ifname} of container ${env.containerId.slice(0, 12)} on network ${cfg.name}`);
  } finally {
    fw.close();
    rtnl.close();
    sys().close(netnsFd);
  }
}

/**
 * The container's host link, its port mappings, and with the network's last container its bridge,
 * masquerade, (empty) table and its claim on forwarding (put back when no one else needs it).
 */
async function removeHostSide(cfg: CniConfig, rec: ContainerRecord, fw: Firewall): Promise<void> {
  await removeHostLinks(rec, ipamBridgeIfname(rec.zone));
  fw.removePortMappings(portOwner(cfg, rec), rec.ports);
  const othersNow = (): ContainerRecord[] => listRecords(cfg).map((r) => r.rec).filter((r) => r.containerId !== rec.containerId || r.ifname !== rec.ifname);
  const store = new StateStore(cfg.stateDir);
  const user = forwardingUser(cfg);
  // the claim is given up under the lock ADD takes after writing its record: a container arriving meanwhile keeps it
  const others = !store.peek().forwardingUsers?.includes(user) ? othersNow() : await store.update((st) => {
    const rest = othersNow();
    if (rest.length === 0 && st.forwardingUsers) {
      const users = st.forwardingUsers.filter((u) => u !== user);
      if (users.length) st.forwardingUsers = users;
      else delete st.forwardingUsers;
      for (const done of forwardingOffIfUnused(st)) log.info(done);
    }
    return rest;
  });
  if (others.length === 0) {
    for (const s of rec.subnets ?? []) fw.removeMasquerade(s);
    if (fw.elements().length === 0) fw.removeTables();
  }
}

/** DEL (and GC's removal of a stale attachment): host side, then the addresses back to the ipam plugin. */
export async function ipamNetDel(env: CniEnv, cfg: CniConfig, rec: ContainerRecord, stdin?: string): Promise<void> {
  const fw = new Firewall({ table: CNI_IPAM_TABLE });
  try {
    await removeHostSide(cfg, rec, fw);
  } finally {
    fw.close();
  }
  if (cfg.ipam) await ipamDel(cfg, env, stdin ?? cfg.raw);
  else log.warn(`${rec.containerId.slice(0, 12)}'s addresses came from ${rec.ipam ?? ''}, which the configuration no longer names: not given back`);
}

/** GC: an attachment the runtime no longer has (the CNI_* of its DEL rebuilt from the record). */
export async function ipamNetCollect(env: CniEnv, cfg: CniConfig, rec: ContainerRecord): Promise<void> {
  await ipamNetDel({ ...env, command: 'DEL', containerId: rec.containerId, ifname: rec.ifname, netns: '' }, cfg, rec, delConfigFor(cfg));
}

/** CHECK's host side (the link, on the bridge, with the gateway), then the ipam plugin's own CHECK. */
export async function ipamNetCheck(env: CniEnv, cfg: CniConfig, rec: ContainerRecord, gateway: string): Promise<void> {
  await checkHostSide(rec, ipamBridgeIfname(rec.zone), gateway);
  if (cfg.ipam) await ipamCheck(cfg, env);
}
