// `-n`/`--network-veth` (VirtualEthernet=yes): a veth pair, `ve-MACHINE` on the host and `host0` in
// the container, with the MAC addresses systemd-nspawn derives from the machine ID and machine name
// (setup_veth, add_veth in src/nspawn/nspawn-network.c). The peer is created directly inside the
// container's namespace (VETH_INFO_PEER with IFLA_NET_NS_FD), so it never appears on the host. A
// name shortened to 15 bytes gets its full form as an alternative name. As with systemd-nspawn the
// host side is left down (whoever configures it — the sidecar, networkd — brings it up); host0 is
// brought up.
//
// VethPair is the building block of this mode, of the bridge and zone modes (vb-) and of
// --network-veth-extra=.
import { formatMac, type ShortenedIfname } from '../naming.js';
import {
  type LinkClient, type ModeContext, type NetworkMode, type UndoReason, NetworkSetupError, deleteOwnLink, requireFree, setupFailed,
} from './types.js';

export interface VethPairSpec {
  hostIfname: string;
  /** the unshortened name, added as an alternative name */
  hostAltname?: string;
  hostMac: string;
  containerIfname: string;
  containerMac: string;
  /** bring the container side up once created */
  containerUp: boolean;
}

/** What a created pair is, for the handle and for teardown. */
export interface VethPairInfo {
  hostIfname: string;
  hostAltname?: string;
  hostIfindex: number;
  hostMac: string;
  containerIfname: string;
  containerIfindex: number;
  containerMac: string;
}

export class VethPair {
  private hostIfindex: number | undefined;
  private containerIfindex: number | undefined;

  constructor(readonly option: string, readonly spec: VethPairSpec) {}

  /** Both names (and the altname) must be free; `freed` are host names that links moved away vacate first. */
  async validate(ctx: ModeContext, freed: ReadonlySet<string>): Promise<void> {
    const s = this.spec;
    if (!freed.has(s.hostIfname)) await requireFree(ctx.host, this.option, s.hostIfname, 'host');
    if (s.hostAltname !== undefined && !freed.has(s.hostAltname)) await requireFree(ctx.host, this.option, s.hostAltname, 'host');
    await requireFree(ctx.container, this.option, s.containerIfname, 'container');
  }

  async create(ctx: ModeContext): Promise<VethPairInfo> {
    const s = this.spec;
    try {
      await ctx.host.createVeth({
        name: s.hostIfname, mac: s.hostMac,
        peer: { name: s.containerIfname, mac: s.containerMac, netnsFd: ctx.containerNetnsFd },
      });
    } catch (err) {
      throw setupFailed(this.option, err);
    }
    try {
      const host = await ctx.host.getLink(s.hostIfname);
      if (!host) throw new NetworkSetupError('NET_SETUP_FAILED', this.option, `veth "${s.hostIfname}" vanished right after it was created`);
      this.hostIfindex = host.index;
      const peer = await ctx.container.getLink(s.containerIfname);
      if (!peer) throw new NetworkSetupError('NET_SETUP_FAILED', this.option, `"${s.containerIfname}" is missing in the container right after it was created`);
      this.containerIfindex = peer.index;
      if (s.hostAltname !== undefined) await ctx.host.addAltnames(host.index, s.hostAltname);
      if (s.containerUp) await ctx.container.setUp(peer.index);
      return this.info();
    } catch (err) {
      throw setupFailed(this.option, err);
    }
  }

  info(): VethPairInfo {
    const s = this.spec;
    if (this.hostIfindex === undefined || this.containerIfindex === undefined) throw new Error(`internal: veth ${s.hostIfname} was not created`);
    const out: VethPairInfo = {
      hostIfname: s.hostIfname, hostIfindex: this.hostIfindex, hostMac: s.hostMac,
      containerIfname: s.containerIfname, containerIfindex: this.containerIfindex, containerMac: s.containerMac,
    };
    if (s.hostAltname !== undefined) out.hostAltname = s.hostAltname;
    return out;
  }

  get created(): boolean {
    return this.hostIfindex !== undefined;
  }

  get hostIndex(): number | undefined {
    return this.hostIfindex;
  }

  /**
   * Deletes the pair through its host end (the peer goes with it). systemd-nspawn deletes it
   * explicitly rather than leaving it to the namespace's death, which the kernel may delay. When
   * creation failed before we learnt the ifindex, the pair is found by name and MAC.
   */
  async remove(ctx: ModeContext, errors: unknown[]): Promise<void> {
    const s = this.spec;
    try {
      if (this.hostIfindex !== undefined) {
        await deleteOwnLink(ctx.host, this.hostIfindex, { name: s.hostIfname, kind: 'veth' });
      } else {
        const link = await ctx.host.getLink(s.hostIfname);
        if (link && link.kind === 'veth' && link.mac === s.hostMac) await ctx.host.deleteLink(link.index);
      }
      this.hostIfindex = undefined;
      this.containerIfindex = undefined;
    } catch (err) {
      errors.push(setupFailed(this.option, err));
    }
  }
}

/** The main veth of -n/--network-veth, --network-bridge= and --network-zone= (container side host0). */
export function primaryVethSpec(names: ShortenedIfname, macs: { host: Uint8Array; container: Uint8Array }, containerIfname: string): VethPairSpec {
  const spec: VethPairSpec = {
    hostIfname: names.name, hostMac: formatMac(macs.host),
    containerIfname, containerMac: formatMac(macs.container), containerUp: true,
  };
  if (names.altname !== undefined) spec.hostAltname = names.altname;
  return spec;
}

/** `-n`/`--network-veth`: ve-MACHINE ↔ host0. */
export class VethMode implements NetworkMode {
  readonly option: string;
  readonly pair: VethPair;

  constructor(spec: VethPairSpec, private readonly freed: ReadonlySet<string> = new Set(), option = '--network-veth') {
    this.option = option;
    this.pair = new VethPair(option, spec);
  }

  validate(ctx: ModeContext): Promise<void> {
    return this.pair.validate(ctx, this.freed);
  }

  async apply(ctx: ModeContext): Promise<void> {
    await this.pair.create(ctx);
  }

  async undo(ctx: ModeContext, _reason: UndoReason, errors: unknown[]): Promise<void> {
    await this.pair.remove(ctx, errors);
  }
}

/** Enslaves a host link to a bridge and brings it up in one request, as systemd-nspawn's join_bridge() does. */
export async function joinBridge(client: LinkClient, link: number, bridge: number): Promise<void> {
  await client.setLink(link, { up: true, master: bridge });
}
