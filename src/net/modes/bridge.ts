// `--network-bridge=BRIDGE` (Bridge=): the main veth is named `vb-MACHINE` on the host, brought up
// and enslaved to an existing bridge (setup_veth with bridge=true, then setup_bridge(create=false)
// in src/nspawn/nspawn-network.c). A bridge that does not exist, or a link that is not a bridge, is
// refused before anything is made.
import type { Link } from '../rtnl.js';
import { VethPair, joinBridge, type VethPairInfo, type VethPairSpec } from './veth.js';
import {
  type LinkClient, type ModeContext, type NetworkMode, type UndoReason, NetworkSetupError, describeKind, setupFailed,
} from './types.js';

/** The bridge `name` on the host, or a NetworkSetupError saying why it cannot be joined. */
export async function requireBridge(client: LinkClient, option: string, name: string): Promise<Link> {
  const link = await client.getLink(name);
  if (!link) throw new NetworkSetupError('NET_NO_SUCH_INTERFACE', option, `no such interface "${name}" on the host`);
  if (link.kind !== 'bridge') {
    throw new NetworkSetupError('NET_NOT_A_BRIDGE', option, `interface "${name}" is not a bridge (it is ${describeKind(link)})`);
  }
  return link;
}

export class BridgeMode implements NetworkMode {
  readonly option: string;
  readonly pair: VethPair;
  private bridgeIfindex: number | undefined;

  constructor(readonly bridge: string, spec: VethPairSpec, private readonly freed: ReadonlySet<string> = new Set()) {
    this.option = `--network-bridge=${bridge}`;
    this.pair = new VethPair(this.option, spec);
  }

  async validate(ctx: ModeContext): Promise<void> {
    await requireBridge(ctx.host, this.option, this.bridge);
    await this.pair.validate(ctx, this.freed);
  }

  async apply(ctx: ModeContext): Promise<void> {
    const info = await this.pair.create(ctx);
    // looked up again: it may have been replaced since validate()
    const bridge = await requireBridge(ctx.host, this.option, this.bridge);
    try {
      await joinBridge(ctx.host, info.hostIfindex, bridge.index);
    } catch (err) {
      throw setupFailed(this.option, err, `adding "${info.hostIfname}" to bridge "${this.bridge}"`);
    }
    this.bridgeIfindex = bridge.index;
  }

  info(): VethPairInfo & { bridge: string; bridgeIfindex: number } {
    if (this.bridgeIfindex === undefined) throw new Error('internal: the bridge veth was not set up');
    return { ...this.pair.info(), bridge: this.bridge, bridgeIfindex: this.bridgeIfindex };
  }

  async undo(ctx: ModeContext, _reason: UndoReason, errors: unknown[]): Promise<void> {
    await this.pair.remove(ctx, errors);
    this.bridgeIfindex = undefined;
  }
}
