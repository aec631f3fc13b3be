// `--network-veth-extra=HOSTIF[:CONTAINERIF]` (VirtualEthernetExtra=): an additional veth pair with
// the names verbatim (no prefix, no shortening) and MAC addresses from the veth-extra keys with the
// pair's index (setup_veth_extra in src/nspawn/nspawn-network.c). Both ends are left down, as
// systemd-nspawn leaves them.
import { VethPair, type VethPairInfo, type VethPairSpec } from './veth.js';
import type { ModeContext, NetworkMode, UndoReason } from './types.js';

export class VethExtraMode implements NetworkMode {
  readonly option: string;
  readonly pair: VethPair;

  constructor(spec: VethPairSpec, private readonly freed: ReadonlySet<string> = new Set()) {
    this.option = `--network-veth-extra=${spec.hostIfname}:${spec.containerIfname}`;
    this.pair = new VethPair(this.option, spec);
  }

  validate(ctx: ModeContext): Promise<void> {
    return this.pair.validate(ctx, this.freed);
  }

  async apply(ctx: ModeContext): Promise<void> {
    await this.pair.create(ctx);
  }

  info(): VethPairInfo {
    return this.pair.info();
  }

  async undo(ctx: ModeContext, _reason: UndoReason, errors: unknown[]): Promise<void> {
    await this.pair.remove(ctx, errors);
  }
}
