// `nspawn-netd dhcp-serve`: the DHCP server alone, in the foreground, logging each lease.
//
//   nspawn-netd dhcp-serve --interface IF [--interface IF2 …] --pool CIDR|FIRST-LAST [--pool …]
//       [--router IP[,IP…]|none] [--dns IP,…] [--domain NAME] [--lease-time SECONDS] [--mtu N]
//       [--lease-file PATH] [--static MAC=IP …] [--durability write|fsync] [--max-leases-per-source N]
//       [--verbose|--quiet]
//
// Each interface is served with the --pool that lies in the subnet of one of its IPv4 addresses
// (that address is the server identifier and default router), so one command serves several links
// with their own pools. --static reservations go to the interface whose subnet holds the address.
import { dropStartupPages } from '../common/startup-pages.js';
import { ConfigError, errorMessage } from '../errors.js';
import { isDebug, logger, setLogLevel } from '../log.js';
import { Rtnl } from '../net/rtnl.js';
import { type InterfaceConfig, type Reservation, resolveInterfaceConfig } from './config.js';
import { type Ipv4Cidr, inSubnet, ipv4ToString, parseIpv4Cidr, parseIpv4, parseMac } from './ipv4.js';
import type { Durability } from './journal.js';
import { type DhcpEvent, DhcpServer } from './server.js';

export const DHCP_SERVE_USAGE = `Usage: nspawn-netd dhcp-serve --interface IF [--interface IF2 ...] --pool CIDR|FIRST-LAST [options]

Serves DHCPv4 on the given interfaces, in the foreground, logging each lease.

  --interface IF          serve this interface (repeatable); it needs an IPv4 address in its pool's subnet
  --pool CIDR|FIRST-LAST  addresses to hand out, e.g. 192.0.2.0/24 or 192.0.2.100-192.0.2.199 (repeatable:
                          each interface takes the pool inside the subnet of its address)
  --router IP[,IP...]     routers to announce (default: the interface's address; "none" for none)
  --dns IP[,IP...]        DNS servers to announce
  --domain NAME           domain name (and search domain) to announce
  --lease-time SECONDS    lease time (default 3600)
  --mtu N                 interface MTU to announce
  --lease-file PATH       lease journal (default /var/lib/nspawn-ts/dhcp/leases)
  --static MAC=IP         always give IP to MAC (repeatable)
  --durability MODE       write (default): an ACK waits until its lease is written to the file (survives
                          the server being killed; synced to disk within a second); fsync: until it is
                          on disk (survives a power cut; every ACK pays the disk's sync latency)
  --max-leases-per-source N
                          at most N addresses held at once by clients without a reservation whose frames
                          come from one Ethernet source (a link shared by several machines); default 0: no cap
  -v, --verbose           log every packet decision
  -q, --quiet             log warnings and errors only
  -h, --help              show this help`;

export const DEFAULT_LEASE_FILE = '/var/lib/nspawn-ts/dhcp/leases';

export interface DhcpServeArgs {
  interfaces: string[];
  pools: string[];
  routers?: string[];
  dns: string[];
  domain?: string;
  leaseTime?: number;
  mtu?: number;
  leaseFile: string;
  statics: Array<{ mac: string; address: string }>;
  durability: Durability;
  maxLeasesPerSource?: number;
  verbosity: 'quiet' | 'normal' | 'verbose';
  help: boolean;
}

const VALUE_FLAGS = ['--interface', '--pool', '--router', '--dns', '--domain', '--lease-time', '--mtu', '--lease-file', '--static', '--durability', '--max-leases-per-source'];

function bad(msg: string): never {
  throw new ConfigError(`dhcp-serve: ${msg}`);
}

function ipList(flag: string, text: string): string[] {
  const list = text.split(',').map((s) => s.trim()).filter(Boolean);
  if (!list.length) bad(`${flag} needs at least one IPv4 address`);
  for (const a of list) if (parseIpv4(a) === undefined) bad(`${flag}: "${a}" is not an IPv4 address (like 192.0.2.1)`);
  return list;
}

function seconds(flag: string, text: string): number {
  if (!/^\d+$/.test(text) || Number(text) < 1 || Number(text) > 0xfffffffe) bad(`${flag}: "${text}" is not a number of seconds (1..4294967294)`);
  return Number(text);
}

/** Parses the command line; throws ConfigError naming the flag and what is allowed. */
export function parseDhcpServeArgs(argv: readonly string[]): DhcpServeArgs {
  const a: DhcpServeArgs = {
    interfaces: [], pools: [], dns: [], leaseFile: DEFAULT_LEASE_FILE, statics: [], durability: 'write', verbosity: 'normal', help: false,
  };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string;
    if (arg === '-h' || arg === '--help') {
      a.help = true;
      continue;
    }
    if (arg === '-v' || arg === '--verbose') {
      a.verbosity = 'verbose';
      continue;
    }
    if (arg === '-q' || arg === '--quiet') {
      a.verbosity = 'quiet';
      continue;
    }
    const eq = arg.indexOf('=');
    const flag = arg.startsWith('--') && eq > 0 ? arg.slice(0, eq) : arg;
    if (!VALUE_FLAGS.includes(flag)) {
      bad(arg.startsWith('-') ? `unknown option ${flag} (see --help)` : `unexpected argument "${arg}" (options start with --; see --help)`);
    }
    let value: string;
    if (flag !== arg) value = arg.slice(eq + 1);
    else {
      const next = argv[i + 1];
      if (next === undefined) bad(`${flag} needs a value`);
      value = next;
      i++;
    }
    switch (flag) {
      case '--interface':
        if (!/^[^\s/:]{1,15}$/.test(value)) bad(`--interface: "${value}" is not an interface name (1-15 characters, no spaces, "/" or ":")`);
        if (a.interfaces.includes(value)) bad(`--interface ${value} is given twice`);
        a.interfaces.push(value);
        break;
      case '--pool': {
        const range = value.match(/^([^-\s]+)-([^-\s]+)$/);
        const ok = range ? parseIpv4(range[1] as string) !== undefined && parseIpv4(range[2] as string) !== undefined : parseIpv4Cidr(value) !== undefined;
        if (!ok) bad(`--pool: "${value}" is neither a CIDR (192.0.2.0/24) nor a range (192.0.2.100-192.0.2.199)`);
        a.pools.push(value);
        break;
      }
      case '--router':
        a.routers = value === 'none' ? [] : ipList('--router', value);
        break;
      case '--dns':
        a.dns.push(...ipList('--dns', value));
        break;
      case '--domain':
        if (!/^[A-Za-z0-9_]([A-Za-z0-9_.-]{0,251}[A-Za-z0-9_])?\.?$/.test(value)) bad(`--domain: "${value}" is not a domain name`);
        a.domain = value;
        break;
      case '--lease-time':
        a.leaseTime = seconds('--lease-time', value);
        break;
      case '--mtu':
        if (!/^\d+$/.test(value) || Number(value) < 68 || Number(value) > 65535) bad(`--mtu: "${value}" is not an MTU (68..65535)`);
        a.mtu = Number(value);
        break;
      case '--lease-file':
        if (!value) bad('--lease-file needs a path');
        a.leaseFile = value;
        break;
      case '--static': {
        const m = value.match(/^([^=]+)=(.+)$/);
        if (!m || !parseMac(m[1] as string) || parseIpv4(m[2] as string) === undefined) {
          bad(`--static: "${value}" is not MAC=IP (like 02:00:00:00:00:42=192.0.2.42)`);
        }
        a.statics.push({ mac: m[1] as string, address: m[2] as string });
        break;
      }
      case '--durability':
        if (value !== 'fsync' && value !== 'write') bad(`--durability: "${value}" is not fsync or write`);
        a.durability = value;
        break;
      case '--max-leases-per-source':
        if (!/^\d{1,9}$/.test(value)) bad(`--max-leases-per-source: "${value}" is not a number of leases (0: no cap)`);
        a.maxLeasesPerSource = Number(value);
        break;
    }
  }
  if (a.help) return a;
  if (!a.interfaces.length) bad('--interface is required (the interface to serve)');
  if (!a.pools.length) bad('--pool is required (CIDR or FIRST-LAST)');
  return a;
}

export interface LinkInfo {
  ifindex: number;
  ifname: string;
  addresses: Ipv4Cidr[];
}

/** Index and IPv4 addresses of the named interfaces, asked of the kernel (rtnetlink). */
export async function linkInfos(names: readonly string[]): Promise<LinkInfo[]> {
  const rt = Rtnl.open();
  try {
    const out: LinkInfo[] = [];
    for (const name of names) {
      const link = await rt.getLink(name);
      if (!link) throw new ConfigError(`dhcp-serve: --interface ${name}: no such interface`);
      const addresses = (await rt.listAddresses({ link: link.index, family: 4 }))
        .map((a) => parseIpv4Cidr(a.cidr)).filter((x): x is Ipv4Cidr => x !== undefined);
      out.push({ ifindex: link.index, ifname: link.name, addresses });
    }
    return out;
  } finally {
    rt.close();
  }
}

/** Pairs interfaces with pools and reservations; throws ConfigError for what does not fit. */
export function planInterfaces(args: DhcpServeArgs, links: LinkInfo[]): InterfaceConfig[] {
  const poolStart = (p: string): number => {
    const range = p.match(/^([^-\s]+)-([^-\s]+)$/);
    return range ? (parseIpv4(range[1] as string) as number) : (parseIpv4Cidr(p) as Ipv4Cidr).network;
  };
  const usedPools = new Map<string, string>();
  const configs = links.map((link): InterfaceConfig => {
    if (!link.addresses.length) {
      bad(`--interface ${link.ifname} has no IPv4 address; the server needs one in the pool's subnet as its identifier (e.g. ip addr add 192.0.2.1/24 dev ${link.ifname})`);
    }
    let chosen: { pool: string; addr: Ipv4Cidr } | undefined;
    for (const pool of args.pools) {
      const start = poolStart(pool);
      const addr = link.addresses.find((x) => inSubnet(start, x.network, x.prefixLength));
      if (addr) {
        chosen = { pool, addr };
        break;
      }
    }
    if (!chosen) {
      const have = link.addresses.map((x) => `${ipv4ToString(x.address)}/${x.prefixLength}`).join(', ');
      return bad(`no --pool lies in a subnet of ${link.ifname} (its addresses: ${have})`);
    }
    const other = usedPools.get(chosen.pool);
    if (other) bad(`--pool ${chosen.pool} fits both ${other} and ${link.ifname}; give each interface its own subnet`);
    usedPools.set(chosen.pool, link.ifname);
    const cfg: InterfaceConfig = {
      ifindex: link.ifindex,
      ifname: link.ifname,
      address: `${ipv4ToString(chosen.addr.address)}/${chosen.addr.prefixLength}`,
      pool: chosen.pool,
      dns: args.dns,
      reservations: [],
    };
    if (args.routers) cfg.routers = args.routers;
    if (args.domain) {
      cfg.domain = args.domain;
      cfg.searchDomains = [args.domain];
    }
    if (args.maxLeasesPerSource !== undefined) cfg.maxLeasesPerSource = args.maxLeasesPerSource;
    if (args.leaseTime !== undefined) {
      cfg.leaseTime = args.leaseTime;
      cfg.maxLeaseTime = Math.max(args.leaseTime, 43200);
      cfg.minLeaseTime = Math.min(60, args.leaseTime);
    }
    if (args.mtu !== undefined) cfg.mtu = args.mtu;
    return cfg;
  });
  for (const p of args.pools) if (!usedPools.has(p)) bad(`--pool ${p} lies in no subnet of the served interfaces`);
  for (const s of args.statics) {
    const a = parseIpv4(s.address) as number;
    const cfg = configs.find((c) => {
      const cidr = parseIpv4Cidr(c.address) as Ipv4Cidr;
      return inSubnet(a, cidr.network, cidr.prefixLength);
    });
    if (!cfg) bad(`--static ${s.mac}=${s.address}: the address is in no served subnet`);
    (cfg.reservations as Reservation[]).push({ mac: s.mac, address: s.address });
  }
  return configs;
}

function describe(e: DhcpEvent): string {
  switch (e.type) {
    case 'bound':
      return `${e.renewed ? 'renewed' : 'leased'} ${e.address} to ${e.mac}${e.hostname ? ` (${e.hostname})` : ''} on ${e.ifname} for ${e.leaseTime} s`;
    case 'released':
      return `released ${e.address} by ${e.mac} on ${e.ifname}`;
    case 'declined':
      return `declined ${e.address} by ${e.mac} on ${e.ifname} (in use on the link; quarantined)`;
    case 'expired':
      return `expired ${e.address} of ${e.mac} on ${e.ifname}`;
    case 'nak':
      return `NAK to ${e.mac} on ${e.ifname}: ${e.reason}`;
  }
}

/** Runs the server until SIGINT/SIGTERM. Returns the exit code. */
export async function dhcpServeMain(argv: readonly string[]): Promise<number> {
  const log = logger('dhcp');
  let args: DhcpServeArgs;
  let configs: InterfaceConfig[];
  try {
    args = parseDhcpServeArgs(argv);
    if (args.help) {
      process.stdout.write(DHCP_SERVE_USAGE + '\n');
      return 0;
    }
    if (args.verbosity === 'verbose') setLogLevel('debug');
    if (args.verbosity === 'quiet') setLogLevel('warn');
    configs = planInterfaces(args, await linkInfos(args.interfaces));
    // refused before the lease file (and its directory and lock) is made: bad input changes nothing
    for (const c of configs) resolveInterfaceConfig(c);
  } catch (err) {
    process.stderr.write(`nspawn-netd: ${errorMessage(err)}\n`);
    return 1;
  }
  let server: DhcpServer;
  try {
    server = new DhcpServer({
      leaseFile: args.leaseFile,
      durability: args.durability,
      compactMinRecords: compactMinRecordsFromEnv(),
      log,
      onEvent: (e) => {
        if (e.type === 'bound' && e.renewed) log.debug(describe(e));
        else log.info(describe(e));
      },
    });
  } catch (err) {
    process.stderr.write(`nspawn-netd: dhcp-serve: ${errorMessage(err)}\n`);
    return 1;
  }
  try {
    for (const c of configs) server.addInterface(c);
  } catch (err) {
    process.stderr.write(`nspawn-netd: ${errorMessage(err)}\n`);
    await server.stop();
    return 1;
  }
  // Signal handlers before anything is announced: whoever saw "serving" may stop us at once.
  const stopped = new Promise<number>((resolve) => {
    const stop = (signal: string): void => {
      const st = server.stats;
      log.info(`${signal}: stopping; ${st.received} datagrams received (${st.notServed} on other interfaces, ${st.malformed} malformed, ${st.ignored} ignored), `
        + `${st.offers} offers, ${st.acks} ACKs, ${st.naks} NAKs, ${st.informs} INFORM answers, ${st.releases} releases, ${st.declines} declines, `
        + `${st.backlogDrops ? `${st.backlogDrops} REQUESTs dropped while the lease file lagged, ` : ''}${st.internalErrors} internal errors`);
      if (isDebug()) {
        const mem = process.memoryUsage();
        const mb = (n: number): string => (n / 1048576).toFixed(1);
        log.debug('memory', { rss: mb(mem.rss), heapUsed: mb(mem.heapUsed), heapTotal: mb(mem.heapTotal), external: mb(mem.external), leases: server.leases().length });
      }
      process.off('SIGINT', onInt);
      process.off('SIGTERM', onTerm);
      server.stop().then(() => resolve(0), (err: unknown) => {
        process.stderr.write(`nspawn-netd: dhcp-serve: stopping: ${errorMessage(err)}\n`);
        resolve(1);
      });
    };
    const onInt = (): void => stop('SIGINT');
    const onTerm = (): void => stop('SIGTERM');
    process.on('SIGINT', onInt);
    process.on('SIGTERM', onTerm);
  });
  server.start();
  for (const c of configs) {
    const lease = server.leases(c.ifname).filter((l) => l.state === 'bound').length;
    log.info(`serving DHCP on ${c.ifname} as ${c.address.split('/')[0]}, pool ${c.pool}${lease ? `, ${lease} lease(s) restored` : ''}`);
  }
  log.info(`lease file ${args.leaseFile}`);
  // Start-up is over: the pages of node's binary only it touched are not needed again (what serving
  // touches comes back on its first touch; src/common/startup-pages.ts).
  const dropped = dropStartupPages();
  log.debug('start-up pages of read-only file mappings dropped', { mb: (dropped / 1048576).toFixed(1) });
  return stopped;
}

/**
 * $NSPAWN_TS_DHCP_COMPACT_MIN_RECORDS: compact the lease file after this many records instead of
 * 20,000 (the kill -9 tests use it to compact often). A bad value is an error, not ignored.
 */
function compactMinRecordsFromEnv(): number | undefined {
  const raw = process.env.NSPAWN_TS_DHCP_COMPACT_MIN_RECORDS;
  if (raw === undefined || raw === '') return undefined;
  if (!/^[1-9]\d{0,8}$/.test(raw)) {
    throw new ConfigError(`$NSPAWN_TS_DHCP_COMPACT_MIN_RECORDS: "${raw}" is not a whole number of records from 1 to 999999999`, { code: 'CFG_DHCP_COMPACT' });
  }
  return Number(raw);
}
