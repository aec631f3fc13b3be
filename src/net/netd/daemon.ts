// `nspawn-netd` without a subcommand: the network sidecar, in the foreground. It serves every ve-/vz-
// link on the host (ours and systemd-nspawn's), answers the JSON API on its socket, logs JSON lines
// to stderr, and tells systemd when it is ready ($NOTIFY_SOCKET, Type=notify). SIGTERM/SIGINT stop
// it; links stay configured (containers keep working) and the next start picks them up again.
import { ConfigError, errorMessage } from '../../errors.js';
import { logger, setLogFormat, setLogLevel } from '../../log.js';
import { helpEntry } from '../../common/help.js';
import { defaultStateDir } from '../../common/paths.js';
import type { CniRequest, NetdRequest } from './api.js';
import { defaultSocketPath } from './client.js';
import { SubnetPool } from '../pool.js';
import { parseDnsList } from './dns.js';
import { ipv6Settings, type Ipv6Settings } from './ipv6.js';
import { sdNotify } from './notify.js';
import { ApiServer, socketAnswers } from './server.js';
import { dnsServerClass } from './dns-class.js';
import { type DhcpBackend, type MachineLease, NetdError, NetworkSubsystem } from './subsystem.js';
import type { ServedKind } from './links.js';
import type { PortForward } from '../model.js';

const log = logger('netd');

/** How long a stopping sidecar lets requests being answered finish. */
const STOP_DRAIN_MS = 30_000;

export interface SidecarOptions {
  stateDir: string;
  socket: string;
  dns?: string[];
  pools?: string[];
  zoneLeasesPerSource?: number;
  ipv6: Ipv6Settings;
  verbose: boolean;
}

/** An option of the sidecar that takes a value: its help, and what it sets. */
interface SidecarOption {
  name: string;
  /** the value's name in --help */
  value: string;
  /** --help's text; its line breaks kept */
  help: string;
  /** `given`: the options met before this one */
  apply(opts: SidecarOptions, value: string, given: ReadonlySet<string>): void;
}

function absolutePath(name: string, value: string): string {
  if (!value.startsWith('/')) throw new ConfigError(`${name} takes an absolute path, got "${value}"`, { code: 'CFG_ARGS' });
  return value;
}

const SIDECAR_OPTIONS: readonly SidecarOption[] = [
  {
    name: '--state-dir', value: 'DIR', help: 'state directory (default $NSPAWN_TS_STATE_DIR or /var/lib/nspawn-ts)',
    apply: (opts, v) => { opts.stateDir = absolutePath('--state-dir', v); },
  },
  {
    name: '--socket', value: 'PATH', help: 'API socket (default $NSPAWN_NETD_SOCKET or /run/nspawn-ts/netd.sock)',
    apply: (opts, v) => { opts.socket = absolutePath('--socket', v); },
  },
  {
    name: '--dns', value: 'ADDR[,ADDR]',
    help: 'DNS servers for containers, instead of our DNS server on each link: IPv4\nones by DHCP, IPv6 ones in router advertisements (RDNSS) (default:\n$NSPAWN_NETD_DNS, else our server: machine names, the rest forwarded)',
    apply: (opts, v, given) => {
      try {
        // --dns replaces $NSPAWN_NETD_DNS; repeated, it adds
        opts.dns = [...(given.has('--dns') ? opts.dns ?? [] : []), ...parseDnsList(v, '--dns')];
      } catch (err) {
        throw new ConfigError(errorMessage(err), { code: 'CFG_ARGS' });
      }
    },
  },
  {
    name: '--pool', value: 'CIDR', help: 'IPv4 pool for subnets; repeat for several (default 192.168.0.0/16,\n172.16.0.0/12, 10.0.0.0/8, as systemd-networkd)',
    apply: (opts, v) => { opts.pools = [...(opts.pools ?? []), v]; },
  },
  {
    name: '--ipv6', value: 'no|PREFIX',
    help: "IPv6 for containers: a /64 per link of this host's ULA /48 (default,\nmasqueraded), of PREFIX (e.g. 2001:db8:42::/48, routed), or none\n(default $NSPAWN_TS_IPV6)",
    apply: (opts, v) => { opts.ipv6 = ipv6Settings(v, '--ipv6'); },
  },
  {
    name: '--zone-leases-per-source', value: 'N',
    help: 'on a zone, at most N DHCP addresses held at once by clients without a\nreservation behind one Ethernet source (default 8; 0: no cap)',
    apply: (opts, v) => {
      if (!/^\d{1,9}$/.test(v)) throw new ConfigError(`--zone-leases-per-source: "${v}" is not a number of leases (0: no cap)`, { code: 'CFG_ARGS' });
      opts.zoneLeasesPerSource = Number(v);
    },
  },
];

/** Where --help's descriptions start. */
const HELP_COLUMN = 20;

/** The sidecar's --help, made from its option table; `subcommands`: nspawn-netd's other commands, listed after. */
export function sidecarHelp(subcommands = ''): string {
  const options = [
    ...SIDECAR_OPTIONS.flatMap((o) => helpEntry(`  ${o.name}=${o.value}`, o.help, HELP_COLUMN)),
    ...helpEntry('  -v, --verbose', 'debug logging', HELP_COLUMN),
    ...helpEntry('  -h, --help', 'this text', HELP_COLUMN),
  ];
  return `Usage: nspawn-netd [OPTIONS]
${subcommands ? '       nspawn-netd SUBCOMMAND [ARGS...]\n' : ''}
Serves host-side networking for containers (ve-*, vz-* links, also systemd-nspawn's):
subnets, DHCP, DNS (machine names), masquerade. Runs in the foreground; logs JSON lines to stderr.

Options:
${options.join('\n')}${subcommands ? `\n\n${subcommands}` : ''}`;
}

/** Parses the sidecar's command line; throws ConfigError naming the bad argument. */
export function parseSidecarArgs(argv: readonly string[], env: NodeJS.ProcessEnv = process.env): SidecarOptions | 'help' {
  const opts: SidecarOptions = { stateDir: defaultStateDir(env), socket: defaultSocketPath(env), ipv6: ipv6Settings(env.NSPAWN_TS_IPV6, '$NSPAWN_TS_IPV6'), verbose: false };
  if (env.NSPAWN_NETD_DNS) opts.dns = parseDnsList(env.NSPAWN_NETD_DNS, '$NSPAWN_NETD_DNS');
  const given = new Set<string>();
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string;
    if (arg === '-h' || arg === '--help') return 'help';
    if (arg === '-v' || arg === '--verbose') {
      opts.verbose = true;
      continue;
    }
    const m = /^(--[a-z0-9-]+)(?:=(.*))?$/s.exec(arg);
    const option = SIDECAR_OPTIONS.find((o) => o.name === m?.[1]);
    if (!m || !option) throw new ConfigError(`unknown argument "${arg}" (see nspawn-netd --help)`, { code: 'CFG_ARGS' });
    let value = m[2];
    if (value === undefined) {
      value = argv[++i];
      if (value === undefined) throw new ConfigError(`${option.name} needs a value`, { code: 'CFG_ARGS' });
    }
    option.apply(opts, value, given);
    given.add(option.name);
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

/**
 * What the handler of "cni" requests gets of the sidecar: the reservations of its subsystem (the
 * API's reserve and release) and the state directory whose locks it shares with in-process users.
 */
export interface SidecarLibrary {
  stateDir: string;
  reserve(req: { machine: string; mac: string; kind: ServedKind; zone?: string; ports?: PortForward[] }): Promise<MachineLease>;
  release(req: { machine: string; kind: ServedKind; zone?: string }): Promise<boolean>;
}

/**
 * Does one CNI plugin call in the sidecar (the "cni" op). The network library does not know the
 * CNI plugin (src/net never imports src/cni): the plugin's layer hands this in (src/cni/netd-main.ts).
 */
export type CniHandler = (req: CniRequest, lib: SidecarLibrary) => Promise<unknown>;

export interface RequestContext {
  /** added to the answer of "status" */
  status?: Record<string, unknown>;
  /** the "cni" op and the sidecar's state directory; without it the op is refused */
  cni?: { handler: CniHandler; stateDir: string };
}

/** Answers one API request with the subsystem. */
export async function handleRequest(sub: NetworkSubsystem, req: NetdRequest, ctx: RequestContext = {}): Promise<unknown> {
  switch (req.op) {
    case 'reserve':
      return sub.reserve(req);
    case 'release':
      return { released: await sub.release(req) };
    case 'status':
      return { ...sub.status(), ...ctx.status };
    case 'list':
      return sub.list();
    case 'leases':
      return sub.leases(req.ifname);
    case 'ports':
      return sub.fw.state().ports;
    case 'check-ports':
      return sub.checkPorts(req.machine, req.ports);
    case 'cni': {
      if (!ctx.cni) throw new NetdError('NETD_UNSUPPORTED', 'this nspawn-netd does no CNI calls (it was started without the CNI plugin)');
      return ctx.cni.handler(req, {
        stateDir: ctx.cni.stateDir,
        reserve: (r) => sub.reserve(r),
        release: (r) => sub.release(r),
      });
    }
  }
}

export interface SidecarDeps {
  /** Makes the DHCP server (the lease file is under the state directory); default src/dhcp's. */
  dhcp?: (leaseFile: string | undefined) => DhcpBackend;
  /** Does the "cni" op (nspawn-cni's calls); without it that op is refused. */
  cni?: CniHandler;
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
    process.stdout.write(sidecarHelp() + '\n');
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
    sub = await NetworkSubsystem.open(subOpts, await dnsServerClass(subOpts));
  } catch (err) {
    log.error(`cannot start: ${errorMessage(err)}`);
    return 1;
  }
  let api: ApiServer;
  const socket = opts.socket;
  try {
    // requests answered, per op ("status" shows them: a CNI call is one request)
    const requests: Record<string, number> = {};
    const ctx: RequestContext = { status: { pid: process.pid, socket, requests }, ...(deps.cni ? { cni: { handler: deps.cni, stateDir: opts.stateDir } } : {}) };
    api = await ApiServer.listen(socket, (req) => {
      requests[req.op] = (requests[req.op] ?? 0) + 1;
      return handleRequest(sub, req, ctx);
    }, log);
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
  // requests being answered (a CNI ADD waiting for a lock) are finished first: their clients would
  // otherwise do them again themselves while this process goes on with them
  await api.close(STOP_DRAIN_MS);
  const unanswered = api.inflight;
  await sub.close();
  if (unanswered > 0) {
    // what they still do must not outlive the stop (their clients do it again): as if killed
    log.warn(`stopping with ${unanswered} request(s) unanswered after ${STOP_DRAIN_MS / 1000} s`);
    process.exit(0);
  }
  return 0;
}
