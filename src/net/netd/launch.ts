// The launcher's network hooks in order: links (src/net/network-plan.ts, the modes) first, then
// addresses (hook.ts: the sidecar's or the embedded subsystem's reservation, host0 configured).
// Hooks run in this order after the clone and in reverse after the exit, so the addresses are
// released while the links still exist, and the links go last.
import { type ContainerNetworkHooks, containerNetworkHooks } from '../network-plan.js';
import { addressHooks, type ContainerLinkInfo } from './hook.js';

export function containerNetworkAndAddressHooks(links: ContainerNetworkHooks = containerNetworkHooks()): [ContainerNetworkHooks, ReturnType<typeof addressHooks>] {
  const addresses = addressHooks({
    link: (): ContainerLinkInfo | undefined => {
      const v = links.network()?.veth;
      if (!v) return undefined;
      if (v.zone !== undefined) return { kind: 'zone', zone: v.zone, containerMac: v.containerMac, containerIfname: v.containerIfname };
      // --network-bridge=: an administrator's bridge, its network is theirs (vb- links are never served)
      if (v.bridge !== undefined) return undefined;
      return { kind: 'veth', containerMac: v.containerMac, containerIfname: v.containerIfname };
    },
  });
  return [links, addresses];
}
