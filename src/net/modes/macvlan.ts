// `--network-macvlan=IF` (MACVLAN=): a macvlan in bridge mode on the host interface IF, named
// `mv-IF` inside the container, with the MAC systemd-nspawn derives for macvlan #idx of the machine
// (setup_macvlan in src/nspawn/nspawn-network.c). Left down, as systemd-nspawn leaves it.
import { SublinkMode, type SublinkSpec } from './sublink.js';
import type { ModeContext } from './types.js';

export class MacvlanMode extends SublinkMode {
  readonly option: string;
  readonly kind = 'macvlan' as const;

  constructor(spec: SublinkSpec & { mac: string }) {
    super(spec);
    this.option = `--network-macvlan=${spec.parent}`;
  }

  protected async create(ctx: ModeContext, parent: string): Promise<void> {
    await ctx.host.createMacvlan({
      name: this.spec.ifname, parent, mode: 'bridge', mac: this.spec.mac as string, netnsFd: ctx.containerNetnsFd,
    });
  }
}
