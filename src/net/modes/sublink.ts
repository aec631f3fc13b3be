// What --network-macvlan= and --network-ipvlan= share: a link on a host interface (the parent),
// created directly inside the container's namespace (IFLA_NET_NS_FD on RTM_NEWLINK, as
// systemd-nspawn does with IFLA_NET_NS_PID), named `mv-IF`/`iv-IF` (shortened to 15 bytes, the full
// name added as an alternative name inside the container), and deleted explicitly at the end
// rather than left to the namespace's death (systemd PR #33869).
import type { Link } from '../rtnl.js';
import { logger } from '../../log.js';
import {
  type LinkClient, type ModeContext, type NetworkMode, type UndoReason, NetworkSetupError, isErrno, requireFree, setupFailed,
} from './types.js';

const log = logger('net');

/** The parent of a macvlan/ipvlan: it must exist on the host and not belong to a bridge or bond already. */
export async function requireParent(host: LinkClient, option: string, name: string): Promise<Link> {
  const link = await host.getLink(name);
  if (!link) throw new NetworkSetupError('NET_NO_SUCH_INTERFACE', option, `no such interface "${name}" on the host`);
  if (link.type === 772 /* ARPHRD_LOOPBACK */) {
    throw new NetworkSetupError('NET_INTERFACE_BUSY', option, `interface "${name}" is the loopback device and cannot carry other links`);
  }
  if (link.master !== undefined) {
    const master = await host.getLink(link.master);
    throw new NetworkSetupError('NET_INTERFACE_BUSY', option,
      `interface "${name}" is already in use: it is a port of ${master ? `${master.kind ?? 'link'} "${master.name}"` : `ifindex ${link.master}`}`);
  }
  return link;
}

export interface SublinkSpec {
  parent: string;
  ifname: string;
  /** the unshortened name (added inside the container as an alternative name) */
  altname?: string;
  /** macvlan only (ipvlan shares its parent's) */
  mac?: string;
}

export interface SublinkInfo {
  parent: string;
  parentIfindex: number;
  ifname: string;
  altname?: string;
  /** in the container's namespace */
  ifindex: number;
  mac: string | undefined;
}

export abstract class SublinkMode implements NetworkMode {
  abstract readonly option: string;
  abstract readonly kind: 'macvlan' | 'ipvlan';
  private ifindex: number | undefined;
  private parentIfindex: number | undefined;
  private mac: string | undefined;

  constructor(readonly spec: SublinkSpec) {}

  /** Creates the link inside the container on `parent` (by name, so the kernel's error names it). */
  protected abstract create(ctx: ModeContext, parent: string): Promise<void>;

  async validate(ctx: ModeContext): Promise<void> {
    await requireParent(ctx.host, this.option, this.spec.parent);
    await requireFree(ctx.container, this.option, this.spec.ifname, 'container');
  }

  async apply(ctx: ModeContext): Promise<void> {
    const parent = await requireParent(ctx.host, this.option, this.spec.parent);
    try {
      await this.create(ctx, parent.name);
    } catch (err) {
      throw setupFailed(this.option, err, isErrno(err, 'EBUSY') ? `interface "${this.spec.parent}" is already in use` : undefined);
    }
    this.parentIfindex = parent.index;
    try {
      const link = await ctx.container.getLink(this.spec.ifname);
      if (!link) throw new NetworkSetupError('NET_SETUP_FAILED', this.option, `"${this.spec.ifname}" is missing in the container right after it was created`);
      this.ifindex = link.index;
      this.mac = link.mac;
    } catch (err) {
      throw setupFailed(this.option, err);
    }
    if (this.spec.altname !== undefined) {
      // best effort, as in systemd-nspawn
      try {
        await ctx.container.addAltnames(this.ifindex, this.spec.altname);
      } catch (err) {
        log.warn(`${this.option}: could not add the alternative name "${this.spec.altname}" to "${this.spec.ifname}", ignoring: ${(err as Error).message}`);
      }
    }
  }

  info(): SublinkInfo {
    if (this.ifindex === undefined || this.parentIfindex === undefined) throw new Error(`internal: ${this.spec.ifname} was not created`);
    const out: SublinkInfo = {
      parent: this.spec.parent, parentIfindex: this.parentIfindex, ifname: this.spec.ifname, ifindex: this.ifindex, mac: this.mac,
    };
    if (this.spec.altname !== undefined) out.altname = this.spec.altname;
    return out;
  }

  async undo(ctx: ModeContext, _reason: UndoReason, errors: unknown[]): Promise<void> {
    try {
      if (this.ifindex !== undefined) {
        // by index and kind: the container may have renamed it
        const link = await ctx.container.getLink(this.ifindex);
        if (link && link.kind === this.kind) await ctx.container.deleteLink(this.ifindex);
      } else {
        // created, but we never learnt its index
        const link = await ctx.container.getLink(this.spec.ifname);
        if (link && link.kind === this.kind && (this.spec.mac === undefined || link.mac === this.spec.mac)) await ctx.container.deleteLink(link.index);
      }
      this.ifindex = undefined;
    } catch (err) {
      errors.push(setupFailed(this.option, err));
    }
  }
}
