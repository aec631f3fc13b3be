// The one place where the launcher's LaunchSpec becomes the network library's model
// (src/net/model.ts): every network hook of the launcher sees the container through this.
import type { ContainerNetworkRequest, AddressConfig } from '../../net/model.js';
import type { UidRange } from '../namespaces.js';
import type { LaunchSpec } from '../spec.js';

/** static or dhcp, per --network-config= (auto: static unless the container boots an init). */
export function configMode(spec: Pick<LaunchSpec, 'mode' | 'network'>): AddressConfig {
  if (spec.network.config !== 'auto') return spec.network.config;
  return spec.mode === 'boot' ? 'dhcp' : 'static';
}

/** The container's network as the library's model. */
export function containerNetworkRequest(spec: LaunchSpec): ContainerNetworkRequest {
  return {
    machine: spec.machine, network: spec.network, resolvConf: spec.resolvConf, addressConfig: configMode(spec), directory: spec.directory,
  };
}

/** What a network hook sees of the running container (the launcher's ContainerContext, converted). */
export interface NetworkHookContext {
  machine: string;
  request: ContainerNetworkRequest;
  /** host PID of the container's PID 1 */
  pid: number;
  /** its network namespace (its own with a private network, else the host's) */
  netnsPath: string;
  /** the user namespace's range, if it has one */
  userns?: Pick<UidRange, 'shift'>;
}
