// `nspawn-netd` without a subcommand: the network sidecar, in the foreground. It serves every ve-/vz-
// link on the host (ours and systemd-nspawn's), answers the JSON API on its socket, logs JSON lines
// to stderr, and tells systemd when it is ready ($NOTIFY_SOCKET, Type=notify). SIGTERM/SIGINT stop
// it; links stay configured (containers keep working) and the next start picks them up again.
import { ConfigError, errorMessage } from '../../errors.js';
import { logger, setLogFormat, setLogLevel } from '../../log.js';
import { defaultStateDir } from '../../common/paths.js';
import type { NetdRequest } from './api.js';
import { defaultSocketPath } from './client.js';
import { SubnetPool } from '../pool.js';
import { parseDnsList } from './dns.js';
import { ipv6Settings, type Ipv6Settings } from './ipv6.js';
import { sdNotify } from './notify.js';
import { ApiServer, socketAnswers } from './server.js';
import { type DhcpBackend, NetworkSubsystem } from './subsystem.js';

const log = logger('netd');

export const SIDECAR_USAGE = `Usage: nspawn-netd [OPTIONS]

Serves host-side networking for containers (ve-*, vz-* links, also systemd-nspawn's):
subnets, DHCP, DNS (machine names), masquerade. Runs in the foreground; logs JSON lines to stderr.

Options:
  --state-dir=DIR   state directory (default $NSPAWN_TS_STATE_DIR or /var/lib/nspawn-ts)
  --socket=PATH     API socket (default $NSPAWN_NETD_SOCKET or /run/nspawn-ts/netd.sock)
  --dns=ADDR[,ADDR] DNS servers for containers, instead of our DNS server on each link: IPv4
                    ones by DHCP, IPv6 ones in router advertisements (RDNSS) (default:
                    $NSPAWN_NETD_DNS, else our server: machine names, the rest forwarded)
  --pool=CIDR       IPv4 pool for subnets; repeat for several (default 192.168.0.0/16,
                    172.16.0.0/12, 10.0.0.0/8, as systemd-networkd)
  --ipv6=no|PREFIX  IPv6 for containers: a /64 per link of this host's ULA /48 (default,
                    masqueraded), of PREFIX (e.g. 2001:db8:42::/48, routed), or none
                    (default $NSPAWN_TS_IPV6)
  --zone-leases-per-source=N
                    on a zone, at most N DHCP addresses held at once by clients without a
                    reservation behind one Ethernet source (default 8; 0: no cap)
  -v, --verbose     debug logging
  -h, --help        this text`;

export interface SidecarOptions {
  stateDir: string;
  socket: string;
  dns?: string[];
  pools?: string[];
  zoneLeasesPerSource?: number;
  ipv6: Ipv6Settings;
  verbose: boolean;
}

/** Parses the sidecar's command line; throws ConfigError naming the bad argument. */
export function parseSidecarArgs(argv: readonly string[], env: NodeJS.ProcessEnv = process.env): SidecarOptions | 'help' {
  const opts: SidecarOptions = { stateDir: defaultStateDir(env), socket: defaultSocketPath(env), ipv6: ipv6Settings(env.NSPAWN_TS_IPV6, '$NSPAWN_TS_IPV6'), verbose: false };
  if (env.NSPAWN_NETD_DNS) opts.dns = parseDnsList(env.NSPAWN_NETD_DNS, '$NSPAWN_NETD_DNS');
  let dnsGiven = false;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string;
    if (arg === '-h' || arg === '--help') return 'help';
    if (arg === '-v' || arg === '--verbose') {
      opts.verbose = true;
      continue;
    }
    const m = /^(--[a-z0-9-]+)(?:=(.*))?$/s.exec(arg);
    const name = m?.[1];
    if (!m || !['--state-dir', '--socket', '--dns', '--pool', '--zone-leases-per-source', '--ipv6'].includes(name ?? '')) {
      throw new ConfigError(`unknown argument "${arg}" (see nspawn-netd --help)`, { code: 'CFG_ARGS' });
    }
    let value = m[2];
    if (value === undefined) {
      value = argv[++i];
      if (value === undefined) throw new ConfigError(`${name} needs a value`, { code: 'CFG_ARGS' });
    }
    if (name === '--state-dir' || name === '--socket') {
      if (!value.startsWith('/')) throw new ConfigError(`${name} takes an absolute path, got "${value}"`, { code: 'CFG_ARGS' });
      if (name === '--state-dir') opts.stateDir = value;
      else opts.socket = value;
    } else if (name === '--dns') {
      try {
        // --dns replaces $NSPAWN_NETD_DNS; repeated, it adds
        opts.dns = [...(dnsGiven ? opts.dns ?? [] : []), ...parseDnsList(value, '--dns')];
        dnsGiven = true;
      } catch (err) {
        throw new ConfigError(errorMessage(err), { code: 'CFG_ARGS' });
      }
    } else if (name === '--ipv6') {
      opts.ipv6 = ipv6Settings(value, '--ipv6');
    } else if (name === '--zone-leases-per-source') {
      if (!/^\d{1,9}$/.test(value)) throw new ConfigError(`--zone-leases-per-source: "${value}" is not a number of leases (0: no cap)`, { code: 'CFG_ARGS' });
      opts.zoneLeasesPerSource = Number(value);
    } else {
      opts.pools = [...(opts.pools ?? []), value];
    }
  }
  // checked now, not when the first link needs a subnet (a sidecar that can serve nothing must not start)
  if (opts.pools) {
    try {
      new SubnetPool({ pools: opts.pools });
    } catch (err) {
      throw new ConfigError(`--pool: ${errorMessage(err)}`, { code: 'CFG_ARGS' });
    }
  }
  return opts;
}

/** Answers one API request with the subsystem. */
export async function handleRequest(sub: NetworkSubsystem, req: NetdRequest, extra: Record<string, unknown> = {}): Promise<unknown> {
  switch (req.op) {
    case 'reserve':
      return sub.reserve(req);
    case 'release':
      return { released: await sub.release(req) };
    case 'status':
      return { ...sub.status(), ...extra };
    case 'list':
      return sub.list();
    case 'leases':
      return sub.leases(req.ifname);
    case 'ports':
      return sub.fw.state().ports;
    case 'check-ports':
      return sub.checkPorts(req.machine, req.ports);
  }
}

export interface SidecarDeps {
  /** Makes the DHCP server (the lease file is under the state directory); default src/dhcp's. */
  dhcp?: (leaseFile: string | undefined) => DhcpBackend;
}

/** Runs the sidecar until SIGTERM/SIGINT; returns the exit code. */
export async function sidecarMain(argv: readonly string[], deps: SidecarDeps = {}): Promise<number> {
  let opts: SidecarOptions | 'help';
  try {
    opts = parseSidecarArgs(argv);
  } catch (err) {
    process.stderr.write(`nspawn-netd: ${errorMessage(err)}\n`);
    return 1;
  }
  if (opts === 'help') {
    process.stdout.write(SIDECAR_USAGE + '\n');
    return 0;
  }
  setLogFormat('json');
  if (opts.verbose) setLogLevel('debug');
  const subOpts: Parameters<typeof NetworkSubsystem.open>[0] = { mode: 'sidecar', stateDir: opts.stateDir };
  if (opts.dns) subOpts.dns = opts.dns;
  if (opts.pools) subOpts.pools = opts.pools;
  subOpts.ipv6 = opts.ipv6;
  if (opts.zoneLeasesPerSource !== undefined) subOpts.zoneLeasesPerSource = opts.zoneLeasesPerSource;
  subOpts.dhcp = deps.dhcp ?? (await import('./dhcp-backend.js')).dhcpBackend(logger('dhcp'));
  // before touching any link: a sidecar that already runs owns them
  if (await socketAnswers(opts.socket)) {
    log.error(`another nspawn-netd is answering on ${opts.socket}; stop it first`);
    return 1;
  }
  let sub: NetworkSubsystem;
  try {
    sub = await NetworkSubsystem.open(subOpts);
  } catch (err) {
    log.error(`cannot start: ${errorMessage(err)}`);
    return 1;
  }
  let api: ApiServer;
  const socket = opts.socket;
  try {
    api = await ApiServer.listen(socket, (req) => handleRequest(sub, req, { pid: process.pid, socket }), log);
  } catch (err) {
    log.error(`cannot listen on ${socket}: ${errorMessage(err)}`);
    await sub.close();
    return 1;
  }
  log.info('ready', { socket, stateDir: opts.stateDir, links: sub.list().map((l) => l.ifname) });
  sdNotify(`READY=1\nSTATUS=serving ${sub.list().length} link(s)\nMAINPID=${process.pid}`);
  const signal = await new Promise<NodeJS.Signals>((resolve) => {
    for (const s of ['SIGTERM', 'SIGINT'] as const) process.once(s, () => resolve(s));
  });
  sdNotify('STOPPING=1');
  log.info('stopping', { signal });
  await api.close();
  await sub.close();
  return 0;
}
