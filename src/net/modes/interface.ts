// `--network-interface=IF` (Interface=): an existing host interface is moved into the container's
// namespace (move_network_interfaces in src/nspawn/nspawn-network.c) and — as systemd-nspawn does
// since v256 — moved back under its original name when the container ends. The kernel does not do
// that for us: a dying namespace hands physical devices to the initial namespace (not necessarily
// ours) under a "devN" name when the original is taken, and destroys virtual ones. So the container's
// namespace is held open (ModeContext.containerNetnsFd) until this has run.
//
// An interface that is a port of a bridge or bond, that other links (macvlan, vlan, …) sit on, or
// that cannot leave its namespace (loopback, bridges) is refused before anything is moved.
import { logger } from '../../log.js';
import {
  type LinkClient, type ModeContext, type NetworkMode, type UndoReason, NetworkSetupError, describeKind, isErrno, setupFailed,
} from './types.js';

const log = logger('net');

/** Kinds the kernel marks NETIF_F_NETNS_LOCAL: they cannot change namespace. */
const NETNS_LOCAL_KINDS = new Set(['bridge', 'vrf', 'openvswitch', 'team']);

/** Links whose IFLA_LINK names a peer, not a lower device. */
const PEER_KINDS = new Set(['veth', 'vxcan', 'netkit']);

export interface MovedInterfaceInfo {
  /** its name on the host, restored when it goes back */
  hostIfname: string;
  hostIfindex: number;
  /** its ifindex in the container (the kernel keeps the host's unless taken there) */
  containerIfindex: number;
}

export async function requireMovable(host: LinkClient, option: string, name: string): Promise<{ index: number }> {
  const link = await host.getLink(name);
  if (!link) throw new NetworkSetupError('NET_NO_SUCH_INTERFACE', option, `no such interface "${name}" on the host`);
  if (link.name !== name) {
    throw new NetworkSetupError('NET_NO_SUCH_INTERFACE', option, `no interface is named "${name}" on the host (it is an alternative name of "${link.name}"; give that name)`);
  }
  if (link.type === 772 /* ARPHRD_LOOPBACK */ || (link.kind !== undefined && NETNS_LOCAL_KINDS.has(link.kind))) {
    throw new NetworkSetupError('NET_INTERFACE_BUSY', option, `interface "${name}" is ${describeKind(link)}, which cannot be moved to another network namespace`);
  }
  if (link.master !== undefined) {
    const master = await host.getLink(link.master);
    throw new NetworkSetupError('NET_INTERFACE_BUSY', option,
      `interface is already in use: "${name}" is a port of ${master ? `${master.kind ?? 'link'} "${master.name}"` : `ifindex ${link.master}`}`);
  }
  const uppers = (await host.listLinks()).filter((l) => l.parent === link.index && l.linkNetnsid === undefined
    && l.index !== link.index && !(l.kind !== undefined && PEER_KINDS.has(l.kind)));
  if (uppers.length > 0) {
    throw new NetworkSetupError('NET_INTERFACE_BUSY', option,
      `interface is already in use: ${uppers.map((u) => `${u.kind ?? 'link'} "${u.name}"`).join(', ')} ${uppers.length === 1 ? 'sits' : 'sit'} on "${name}"`);
  }
  return link;
}

export class InterfaceMode implements NetworkMode {
  readonly option: string;
  private moved: MovedInterfaceInfo | undefined;

  constructor(readonly ifname: string) {
    this.option = `--network-interface=${ifname}`;
  }

  async validate(ctx: ModeContext): Promise<void> {
    await requireMovable(ctx.host, this.option, this.ifname);
    const clash = await ctx.container.getLink(this.ifname);
    if (clash) {
      throw new NetworkSetupError('NET_NAME_EXISTS', this.option, `interface "${this.ifname}" already exists in the container's network namespace`);
    }
  }

  async apply(ctx: ModeContext): Promise<void> {
    const link = await requireMovable(ctx.host, this.option, this.ifname);
    try {
      await ctx.host.moveToNetns(link.index, ctx.containerNetnsFd);
    } catch (err) {
      throw setupFailed(this.option, err);
    }
    // recorded before the read-back, so that a failure below still moves it back
    this.moved = { hostIfname: this.ifname, hostIfindex: link.index, containerIfindex: link.index };
    try {
      const inside = await ctx.container.getLink(this.ifname);
      if (!inside) throw new NetworkSetupError('NET_SETUP_FAILED', this.option, `"${this.ifname}" is missing in the container right after it was moved there`);
      this.moved.containerIfindex = inside.index;
    } catch (err) {
      throw setupFailed(this.option, err);
    }
  }

  info(): MovedInterfaceInfo {
    if (!this.moved) throw new Error(`internal: ${this.ifname} was not moved`);
    return { ...this.moved };
  }

  /** Moves it back to the host under its original name (the container may have renamed it). */
  async undo(ctx: ModeContext, _reason: UndoReason, errors: unknown[]): Promise<void> {
    const moved = this.moved;
    if (!moved) return;
    try {
      const inside = await ctx.container.getLink(moved.containerIfindex);
      if (!inside) {
        // deleted, or moved elsewhere, from inside the container: nothing we can bring back
        log.warn(`${this.option}: interface "${moved.hostIfname}" is no longer in the container; it cannot be moved back`);
        this.moved = undefined;
        return;
      }
      try {
        await ctx.container.moveToNetns(inside.index, ctx.hostNetnsFd, { name: moved.hostIfname });
      } catch (err) {
        if (!isErrno(err, 'EEXIST')) throw err;
        // the name was taken on the host meanwhile: bring it back under the name it has now
        log.warn(`${this.option}: the name "${moved.hostIfname}" is taken on the host; moving the interface back as "${inside.name}"`);
        await ctx.container.moveToNetns(inside.index, ctx.hostNetnsFd);
      }
      this.moved = undefined;
    } catch (err) {
      errors.push(setupFailed(this.option, err, `moving "${moved.hostIfname}" back to the host`));
    }
  }
}
