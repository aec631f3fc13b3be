// A LaunchSpec with systemd-nspawn's defaults, for tests that need one.
import { defaultNetworkSpec, type LaunchSpec } from '../../../src/runtime/spec.js';

export function newSpec(over: Partial<LaunchSpec> = {}): LaunchSpec {
  return {
    directory: '/r', machine: 'm', mode: 'command', command: [], environment: [], binds: [], tmpfs: [], ephemeral: false,
    privateUsers: { mode: 'no' }, privateUsersChown: false, network: defaultNetworkSpec(), resolvConf: 'auto', quiet: false,
    register: true, keepUnit: false, linkJournal: 'auto', notifyReady: false, properties: [], ...over,
  };
}
