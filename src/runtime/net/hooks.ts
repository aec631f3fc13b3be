// The launcher's network hooks, built by its entry point (main.ts) and handed to launch() as
// LaunchHooks: launcher.ts itself knows no network module. In order:
//   -p preflight (ports-preflight.ts): a host port another machine forwards is refused before
//               anything is made;
//   links       (links.ts → src/net/network-plan.ts) made after the clone, removed after the exit;
//   addresses   (addresses.ts: the sidecar's or the embedded subsystem's reservation, host0
//               configured) — after the links, and released (in reverse) while the links still exist;
//   -p watch    (ports-watch.ts) for links whose address the subsystem does not hand out;
//   the caller's hooks;
//   --resolv-conf= (resolv-conf.ts).
// Each sees the container through the library's model (request.ts converts the LaunchSpec once).
// The modules are imported on demand: the launch path stays lean without a private network.
import type { ContainerNetworkRequest } from '../../net/model.js';
import type { ContainerContext, LaunchHooks } from '../launch-types.js';
import type { PlanOp } from '../plan.js';
import type { LaunchSpec } from '../spec.js';
import type { ContainerLinkInfo } from './addresses.js';
import type { ContainerNetworkHooks } from './links.js';
import { containerNetworkRequest, type NetworkHookContext } from './request.js';
import type { ResolvConfHookOptions } from './resolv-conf.js';

export interface NetworkHookOptions {
  /** the container's links (links.ts); default: a fresh one. Pass your own to read its ContainerNetwork (`network()`) from other hooks. */
  links?: ContainerNetworkHooks;
  /** --resolv-conf=: the host's source files and where warnings go (tests inject fixtures) */
  resolvConf?: ResolvConfHookOptions;
  /** the caller's hooks: after the network's, before --resolv-conf='s */
  hooks?: LaunchHooks[];
}

/** A network hook: LaunchHooks' methods, seeing the model instead of the LaunchSpec. */
interface NetworkHook {
  preflight?(request: ContainerNetworkRequest): void | Promise<void>;
  afterClone?(ctx: NetworkHookContext): void | Promise<void>;
  beforeExec?(ctx: NetworkHookContext): void | Promise<void>;
  afterExit?(ctx: NetworkHookContext): void | Promise<void>;
  planMounts?(info: { root: string; request: ContainerNetworkRequest; uidShift?: number }): PlanOp[];
  planAfterHooks?(request: ContainerNetworkRequest): PlanOp[];
}

/** The launcher's hook for a network hook: only the methods it has (the launcher checks which exist). */
function adapt(hook: NetworkHook, request: ContainerNetworkRequest): LaunchHooks {
  const ctx = (c: ContainerContext): NetworkHookContext => ({
    machine: c.machine, request, pid: c.pid, netnsPath: c.netnsPath, ...(c.userns ? { userns: c.userns } : {}),
  });
  const out: LaunchHooks = {};
  if (hook.preflight) out.preflight = () => hook.preflight?.(request);
  if (hook.afterClone) out.afterClone = (c) => hook.afterClone?.(ctx(c));
  if (hook.beforeExec) out.beforeExec = (c) => hook.beforeExec?.(ctx(c));
  if (hook.afterExit) out.afterExit = (c) => hook.afterExit?.(ctx(c));
  if (hook.planAfterHooks) out.planAfterHooks = () => hook.planAfterHooks?.(request) ?? [];
  if (hook.planMounts) out.planMounts = (i) => hook.planMounts?.({ root: i.root, request, ...(i.uidShift !== undefined ? { uidShift: i.uidShift } : {}) }) ?? [];
  return out;
}

/** The main veth as the address hook needs it; undefined when no served link leads to host0. */
function servedLink(links: ContainerNetworkHooks): ContainerLinkInfo | undefined {
  const v = links.network()?.veth;
  if (!v) return undefined;
  if (v.zone !== undefined) return { kind: 'zone', zone: v.zone, containerMac: v.containerMac, containerIfname: v.containerIfname };
  // --network-bridge=: an administrator's bridge, its network is theirs (vb- links are never served)
  if (v.bridge !== undefined) return undefined;
  return { kind: 'veth', containerMac: v.containerMac, containerIfname: v.containerIfname };
}

/** Every hook of a launch of `spec`, in the order above. */
export async function launchHooks(spec: LaunchSpec, opts: NetworkHookOptions = {}): Promise<LaunchHooks[]> {
  const request = containerNetworkRequest(spec);
  const { network } = request;
  const [preflight, watch, links, addresses, resolv] = await Promise.all([
    network.ports.length > 0 ? import('./ports-preflight.js') : undefined,
    network.ports.length > 0 && network.private ? import('./ports-watch.js') : undefined,
    network.private && !opts.links ? import('./links.js') : undefined,
    network.private ? import('./addresses.js') : undefined,
    import('./resolv-conf.js'),
  ]);
  const hooks: LaunchHooks[] = [];
  if (preflight) hooks.push(adapt(preflight.portsPreflightHooks(), request));
  if (addresses) {
    const l = opts.links ?? (links as typeof import('./links.js')).containerNetworkHooks();
    hooks.push(adapt(l, request), adapt(addresses.addressHooks({ link: () => servedLink(l) }), request));
  }
  if (watch) hooks.push(adapt(watch.portWatchHooks(), request));
  hooks.push(...(opts.hooks ?? []), adapt(resolv.resolvConfHooks(opts.resolvConf), request));
  return hooks;
}
