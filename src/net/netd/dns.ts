// The DNS servers handed to containers (DHCP option 6, and resolv.conf of containers configured at
// start): what the host itself uses. A resolver on the host's loopback (systemd-resolved's
// 127.0.0.53, a local dnsmasq) is unreachable from a container's own network namespace, so
// loopback entries are dropped; with resolved, its upstream list (/run/systemd/resolve/resolv.conf)
// is used instead. When nothing usable is left the caller is told why, and can configure servers
// ($NSPAWN_NETD_DNS, `nspawn-netd --dns=`).
//
// IPv6 servers go to router advertisements (RDNSS), as systemd-networkd's [IPv6SendRA] DNS= takes
// the uplink's when none are configured: those a container can reach through the host — not
// loopback, not link-local (scoped to a host link the container is not on), not multicast.
import { readFileSync } from 'node:fs';
import { Address4, Address6 } from 'ip-address';
import { ConfigError } from '../../errors.js';
import { nameservers } from '../resolv.js';
import { addressFamily } from '../firewall/model.js';

export interface HostDns {
  /** IPv4: DHCP option 6 */
  servers: string[];
  /** IPv6: RDNSS */
  servers6: string[];
  /** where they came from, or why there are none */
  source: string;
}

const HOST = '/etc/resolv.conf';
const UPLINK = '/run/systemd/resolve/resolv.conf';

function usable(list: readonly string[]): string[] {
  // IPv4 only: DHCPv4 option 6 carries IPv4 addresses
  return list.filter((a) => addressFamily(a) === 4 && !a.startsWith('127.') && a !== '0.0.0.0');
}

/** An IPv6 resolver a container can reach through the host (routed or NAT66). */
export function reachableIpv6Resolver(a: string): boolean {
  if (addressFamily(a) !== 6) return false;
  const v6 = new Address6(a);
  const first = parseInt(v6.canonicalForm().slice(0, 4), 16);
  if (v6.is4()) return false; // v4-mapped: an IPv4 server, handed out as such
  return !(v6.correctForm() === '::1' || v6.correctForm() === '::' || (first & 0xffc0) === 0xfe80 || (first & 0xff00) === 0xff00);
}

function usable6(list: readonly string[]): string[] {
  return list.filter(reachableIpv6Resolver).map((a) => new Address6(a).correctForm());
}

function read(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
}

/**
 * Parses a configured list: "192.0.2.53,2001:db8::53" or whitespace-separated; IPv4 servers go to
 * DHCP, IPv6 ones to router advertisements (RDNSS). Throws on a bad entry.
 */
export function parseDnsList(text: string, where: string): string[] {
  const out: string[] = [];
  for (const item of text.split(/[\s,]+/).filter(Boolean)) {
    const family = addressFamily(item);
    if (family === 4) {
      out.push(new Address4(item).correctForm());
    } else if (family === 6) {
      out.push(new Address6(item).correctForm());
    } else {
      throw new ConfigError(`${where}: "${item}" is not an IP address (IPv4 DNS servers are handed out by DHCP, IPv6 ones in router advertisements)`, { code: 'CFG_DNS' });
    }
  }
  return out;
}

/** The host's DNS servers as containers can use them. */
export function hostDns(paths: { host?: string; uplink?: string } = {}): HostDns {
  const hostPath = paths.host ?? HOST;
  const uplinkPath = paths.uplink ?? UPLINK;
  const hostText = read(hostPath);
  if (hostText === undefined) return { servers: [], servers6: [], source: `${hostPath} is missing` };
  const all = nameservers(hostText);
  const servers = usable(all);
  const servers6 = usable6(all);
  if (servers.length + servers6.length > 0) return { servers, servers6, source: hostPath };
  const uplink = read(uplinkPath);
  const upAll = uplink === undefined ? [] : nameservers(uplink);
  const up = usable(upAll);
  const up6 = usable6(upAll);
  if (up.length + up6.length > 0) return { servers: up, servers6: up6, source: uplinkPath };
  if (all.length > 0) {
    return {
      servers: [], servers6: [],
      source: `${hostPath} lists only loopback resolvers (${all.join(', ')}), which containers cannot reach; set NSPAWN_NETD_DNS or nspawn-netd --dns=`,
    };
  }
  return { servers: [], servers6: [], source: `${hostPath} lists no nameserver` };
}
