// The launcher's hook for the container's links (src/net/network-plan.ts makes them): made after the
// container's clone, before it goes on; taken away after it ends. The launcher opens
// /proc/PID/ns/net through it, which holds the namespace until the end.
import { logger } from '../../log.js';
import {
  planNetwork, setupContainerNetwork, type ContainerNetwork, type NetworkPlanInput, type SetupOptions, type ZoneLock,
} from '../../net/network-plan.js';
import type { ContainerNetworkRequest } from '../../net/model.js';
import type { NetworkHookContext } from './request.js';

const log = logger('net');

/** The launcher's hook for the container's links (a LaunchHooks, adapted in hooks.ts). */
export interface ContainerNetworkHooks {
  /** after the clone, before the container goes on: makes the links (only with a private network) */
  afterClone(ctx: Pick<NetworkHookContext, 'machine' | 'netnsPath'> & { request: Pick<ContainerNetworkRequest, 'network'> }): Promise<void>;
  /** after the container ended (or failed to start): takes them away */
  afterExit(): Promise<void>;
  /** the links while the container runs; undefined before afterClone, after afterExit, and without a private network */
  network(): ContainerNetwork | undefined;
}

export function containerNetworkHooks(opts: { zoneLock?: ZoneLock; machineId?: () => Uint8Array } = {}): ContainerNetworkHooks {
  let net: ContainerNetwork | undefined;
  return {
    async afterClone(ctx) {
      if (!ctx.request.network.private) return;
      const input: NetworkPlanInput = { machine: ctx.machine, network: ctx.request.network };
      if (opts.machineId) input.machineId = opts.machineId;
      const setup: SetupOptions = { containerNetns: ctx.netnsPath };
      if (opts.zoneLock) setup.zoneLock = opts.zoneLock;
      net = await setupContainerNetwork(planNetwork(input), setup);
      log.debug(`links of ${ctx.machine} made`);
    },
    async afterExit() {
      const n = net;
      net = undefined;
      await n?.teardown();
    },
    network: () => net,
  };
}
