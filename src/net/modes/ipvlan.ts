// `--network-ipvlan=IF` (IPVLAN=): an ipvlan in L2 mode on the host interface IF, named `iv-IF`
// inside the container; it shares IF's MAC address, so none is set (setup_ipvlan in
// src/nspawn/nspawn-network.c). Left down, as systemd-nspawn leaves it. Kernels built without
// ipvlan answer "Unknown device type" (EOPNOTSUPP), which is passed on with the option named.
import { SublinkMode, type SublinkSpec } from './sublink.js';
import type { ModeContext } from './types.js';

export class IpvlanMode extends SublinkMode {
  readonly option: string;
  readonly kind = 'ipvlan' as const;

  constructor(spec: SublinkSpec) {
    super(spec);
    this.option = `--network-ipvlan=${spec.parent}`;
  }

  protected async create(ctx: ModeContext, parent: string): Promise<void> {
    await ctx.host.createIpvlan({ name: this.spec.ifname, parent, mode: 'l2', netnsFd: ctx.containerNetnsFd });
  }
}
