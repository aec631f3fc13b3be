// The host side of a container's attachment, for both ways of giving addresses (our pool: plugin.ts;
// an ipam plugin: ipam-net.ts): the interfaces an ADD result lists, CHECK's look at that side, and
// DEL's removal of its links.
import { removeZoneBridgeIfEmpty, zoneLock } from '../net/modes/zone.js';
import { Rtnl, type Link } from '../net/rtnl.js';
import { type AddOutcome, CNI_ERR, CniError } from './config.js';
import type { ContainerRecord } from './records.js';

/** A result's "interfaces": the bridge (zone mode), the host side, the container's link last (ips[].interface indexes this list). */
export async function resultInterfaces(rtnl: Rtnl, rec: ContainerRecord, bridge: string, host: Link, container: { name: string; mac: string; sandbox: string }): Promise<AddOutcome['interfaces']> {
  const links: AddOutcome['interfaces'] = [];
  if (rec.mode === 'zone') links.push({ name: bridge, mac: (await rtnl.requireLink(bridge)).mac ?? '' });
  links.push({ name: rec.hostIfname, mac: host.mac ?? '' }, container);
  return links;
}

/** CHECK's host side: the container's host link (a port of `bridge` in zone mode) and the IPv4 gateway on that bridge or link. */
export async function checkHostSide(rec: ContainerRecord, bridge: string, gateway: string): Promise<void> {
  const fail = (msg: string): never => {
    throw new CniError(CNI_ERR.CHECK_FAILED, msg);
  };
  const rtnl = Rtnl.open();
  try {
    const host = await rtnl.getLink(rec.hostIfname);
    let served = host;
    if (rec.mode === 'zone') {
      const br = await rtnl.getLink(bridge);
      if (!br) return fail(`the network's bridge ${bridge} is missing`);
      if (!host || host.master !== br.index) fail(`the container's port ${rec.hostIfname} is missing or not on ${bridge}`);
      served = br;
    }
    if (!served) return fail(`the container's host link ${rec.hostIfname} is missing`);
    const own = (await rtnl.listAddresses({ link: served.index, family: 4 })).map((a) => a.address);
    if (gateway && !own.includes(gateway)) fail(`the gateway ${gateway} is not on ${served.name}`);
  } finally {
    rtnl.close();
  }
}

/** Removes the container's host link (gone already is fine: its namespace went, a second DEL), and in zone mode `bridge` when that was its last port. */
export async function removeHostLinks(rec: ContainerRecord, bridge: string): Promise<void> {
  const rtnl = Rtnl.open();
  try {
    await rtnl.deleteLink(rec.hostIfname);
    if (rec.mode === 'zone') await removeZoneBridgeIfEmpty(rtnl, zoneLock(), bridge);
  } finally {
    rtnl.close();
  }
}
