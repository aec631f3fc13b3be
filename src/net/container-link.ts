// The container's side of a lease: its interface configured inside its network namespace as the
// network library handed the address out (the launcher's static configuration, nspawn-cni's ADD).
import { NspawnError } from '../errors.js';
import { sys } from '../native.js';
import type { MachineLease } from './netd/subsystem-types.js';
import { type Link, Rtnl } from './rtnl.js';

/**
 * Configures host0 in the container's namespace with the lease: up, address, default route; and
 * with IPv6 the SLAAC address its kernel would form from our advertisements (no DAD: the
 * reservation makes it unique, and the command may use it at once) and a default route via the
 * host side's link-local address. The advertisements that follow find it there and refresh it.
 */
export async function configureContainerLink(netnsPath: string, ifname: string, lease: ContainerLease): Promise<void> {
  const s = sys();
  const fd = s.openNamespace(netnsPath);
  let rtnl: Rtnl | undefined;
  try {
    rtnl = Rtnl.open({ netnsFd: fd });
    await configureLinkIn(rtnl, await rtnl.requireLink(ifname), lease);
  } finally {
    rtnl?.close();
    s.close(fd);
  }
}

type ContainerLease = Pick<MachineLease, 'address' | 'prefixLength' | 'gateway' | 'ipv6'>;

/** configureContainerLink with a client of the container's namespace open already and its link as just read. */
export async function configureLinkIn(rtnl: Rtnl, link: Link, lease: ContainerLease): Promise<void> {
  // IPv6 without DAD, so the command can use it at once; when host0 was up already, the kernel's
  // SLAAC may have formed the same address from our first advertisement, still tentative for
  // a second: it is replaced by ours
  if (lease.ipv6) {
    const cidr = `${lease.ipv6.address}/${lease.ipv6.prefixLength}`;
    try {
      await rtnl.addAddress(link.index, cidr, { nodad: true });
    } catch (err) {
      if (!(err instanceof NspawnError && err.code === 'EEXIST')) throw err;
      await rtnl.deleteAddress(link.index, cidr);
      await rtnl.addAddress(link.index, cidr, { nodad: true });
    }
  }
  if (!link.up) await rtnl.setUp(link.index);
  try {
    await rtnl.addAddress(link.index, `${lease.address}/${lease.prefixLength}`, { broadcast: true });
  } catch (err) {
    if (!(err instanceof NspawnError && err.code === 'EEXIST')) throw err; // a restart of the same container
  }
  await rtnl.replaceRoute({ dst: 'default', gateway: lease.gateway, dev: link.index });
  if (lease.ipv6) await rtnl.replaceRoute({ dst: 'default', gateway: lease.ipv6.gateway, dev: link.index });
}
