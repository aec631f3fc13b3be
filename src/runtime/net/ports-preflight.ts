// -p/--port= in the launcher, before anything of the container exists (a LaunchHooks `preflight`):
// a host port that another machine already forwards — ours, through the sidecar or the firewall
// table and state file an embedded launcher shares, or a real systemd-nspawn's — fails the start
// with a message naming each port and its holder, and nothing is created. The ports themselves
// travel with the machine's reservation (hook.ts → subsystem.reserve), so they are installed for the
// address the subsystem hands out, before the container's DHCP exchange.
import { ConfigError } from '../../errors.js';
import { defaultStateDir } from '../../common/paths.js';
import type { ContainerNetworkRequest } from '../../net/model.js';
import { defaultSocketPath, NetdRemoteError, requestRetrying } from '../../net/netd/client.js';

export interface PortsPreflightOptions {
  env?: NodeJS.ProcessEnv;
}

/** Refuses the start when a requested host port is taken; resolves when all are free (or none asked). */
export async function checkPortsBeforeStart(spec: Pick<ContainerNetworkRequest, 'machine' | 'network'>, opts: PortsPreflightOptions = {}): Promise<void> {
  const { ports } = spec.network;
  if (ports.length === 0) return;
  if (!spec.network.private) throw new ConfigError('Cannot use --port= without private networking.', { code: 'CFG_CONFLICT' });
  const env = opts.env ?? process.env;
  // a sidecar that dies before answering is asked again; when none listens any more, as without one
  let answer: { result: unknown } | undefined;
  try {
    answer = await requestRetrying(defaultSocketPath(env), { op: 'check-ports', machine: spec.machine, ports });
  } catch (err) {
    if (err instanceof NetdRemoteError && err.code === 'NETD_PORT_IN_USE') throw new ConfigError(err.message, { code: err.code, cause: err });
    throw err;
  }
  if (answer) return;
  // no sidecar: the table and the state file every embedded launcher shares, after what killed
  // launchers left there is cleared (the embedded subsystem's open() does that)
  const { NetworkSubsystem } = await import('../../net/netd/subsystem.js');
  const sub = await NetworkSubsystem.open({ mode: 'embedded', stateDir: defaultStateDir(env), dns: [], machineId: null });
  try {
    await sub.checkPorts(spec.machine, ports);
  } finally {
    await sub.close();
  }
}

export function portsPreflightHooks(opts: PortsPreflightOptions = {}): { preflight(request: ContainerNetworkRequest): Promise<void> } {
  return { preflight: (request) => checkPortsBeforeStart(request, opts) };
}
