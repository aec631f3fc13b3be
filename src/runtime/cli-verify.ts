// verify_arguments(): the checks of the final spec, after the command line and the settings file
// were merged (systemd-nspawn's order: parse_argv → determine_names → load/merge settings → verify).

import { ConfigError } from '../errors.js';
import type { LaunchSpec } from './spec.js';
import { fail } from './cli-values.js';

/**
 * verify_arguments(): checks that need the final, merged spec (command line + settings file), and
 * fills in defaults that depend on it. Returns a new spec; throws ConfigError.
 */
export function verifyLaunchSpec(input: LaunchSpec): LaunchSpec {
  const spec: LaunchSpec = structuredClone(input);
  const net = spec.network;
  // systemd-nspawn's verify_arguments() also fills in KillSignal=SIGRTMIN+3 for a booted container
  // here; we leave killSignal as configured and let the launcher choose the default when it knows
  // the init (stopSignal() in launcher.ts), so that a configured signal is never taken for it.
  if (spec.ephemeral && spec.template !== undefined) {
    fail('--ephemeral and --template= may not be combined.', undefined, 'CFG_CONFLICT');
  }
  if (spec.ephemeral && (spec.linkJournal === 'host' || spec.linkJournal === 'guest')) {
    fail('--ephemeral and --link-journal={host,guest} may not be combined.', 'use --link-journal=try-host or try-guest, which do nothing for an ephemeral machine', 'CFG_CONFLICT');
  }
  if (net.namespacePath !== undefined && (net.interfaces.length || net.macvlan.length || net.ipvlan.length
    || net.vethExtra.length || net.bridge !== undefined || net.zone !== undefined || net.veth)) {
    fail('--network-namespace-path= cannot be combined with other network options.', 'only --private-network may go with --network-namespace-path=', 'CFG_CONFLICT');
  }
  if (net.bridge !== undefined && net.zone !== undefined) {
    fail('--network-bridge= and --network-zone= may not be combined.', 'a container joins either an existing bridge or a zone\'s bridge vz-ZONE', 'CFG_CONFLICT');
  }
  if (net.ports.length > 0 && !net.private) {
    fail('Cannot use --port= without private networking.', 'add -n/--network-veth (or another --network-* option, or --private-network)', 'CFG_CONFLICT');
  }
  if (spec.machine === '' || spec.directory === '') throw new ConfigError('internal: spec without machine name or directory');
  return spec;
}
