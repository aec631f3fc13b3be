// The DNS servers handed to containers (DHCP option 6, and resolv.conf of containers configured at
// start): what the host itself uses. A resolver on the host's loopback (systemd-resolved's
// 127.0.0.53, a local dnsmasq) is unreachable from a container's own network namespace, so
// loopback entries are dropped; with resolved, its upstream list (/run/systemd/resolve/resolv.conf)
// is used instead. When nothing usable is left the caller is told why, and can configure servers
// ($NSPAWN_NETD_DNS, `nspawn-netd --dns=`).
import { readFileSync } from 'node:fs';
import { Address4 } from 'ip-address';
import { ConfigError } from '../../errors.js';
import { nameservers } from '../resolv.js';

export interface HostDns {
  servers: string[];
  /** where they came from, or why there are none */
  source: string;
}

const HOST = '/etc/resolv.conf';
const UPLINK = '/run/systemd/resolve/resolv.conf';

function usable(list: readonly string[]): string[] {
  // IPv4 only: DHCPv4 option 6 carries IPv4 addresses
  return list.filter((a) => Address4.isValid(a) && !a.includes('/') && !a.startsWith('127.') && a !== '0.0.0.0');
}

function read(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
}

/** Parses a configured list: "192.0.2.53,198.51.100.53" or whitespace-separated. Throws on a bad entry. */
export function parseDnsList(text: string, where: string): string[] {
  const out: string[] = [];
  for (const item of text.split(/[\s,]+/).filter(Boolean)) {
    if (!Address4.isValid(item) || item.includes('/')) {
      throw new ConfigError(`${where}: "${item}" is not an IPv4 address (DNS servers are handed out by DHCPv4)`, { code: 'CFG_DNS' });
    }
    out.push(new Address4(item).correctForm());
  }
  return out;
}

/** The host's DNS servers as containers can use them. */
export function hostDns(paths: { host?: string; uplink?: string } = {}): HostDns {
  const hostPath = paths.host ?? HOST;
  const uplinkPath = paths.uplink ?? UPLINK;
  const hostText = read(hostPath);
  if (hostText === undefined) return { servers: [], source: `${hostPath} is missing` };
  const all = nameservers(hostText);
  const servers = usable(all);
  if (servers.length > 0) return { servers, source: hostPath };
  const uplink = read(uplinkPath);
  const up = uplink === undefined ? [] : usable(nameservers(uplink));
  if (up.length > 0) return { servers: up, source: uplinkPath };
  if (all.length > 0) {
    return {
      servers: [],
      source: `${hostPath} lists only loopback resolvers (${all.join(', ')}), which containers cannot reach; set NSPAWN_NETD_DNS or nspawn-netd --dns=`,
    };
  }
  return { servers: [], source: `${hostPath} lists no nameserver` };
}
