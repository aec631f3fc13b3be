// Telling systemd-resolved on the host about our DNS server, so the host resolves machine names too:
// per served link, its DNS server (the link's host address) and the machine domain as a routing-only
// domain ("~machine": only those names go there), and the link is not a default route for other
// names. What systemd-networkd does for a link with DNS= and Domains=~…, through the same D-Bus API
// (org.freedesktop.resolve1.Manager SetLinkDNS/SetLinkDomains/SetLinkDefaultRoute/RevertLink),
// called with busctl (systemd's own client, present wherever resolved is).
//
// Only where resolved runs: its varlink socket /run/systemd/resolve/io.systemd.Resolve is there.
// Otherwise (no systemd as PID 1, another resolver) nothing is done. Failures are logged, never fatal:
// containers resolve through the server whether or not the host does.
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { errorMessage } from '../../errors.js';
import type { Logger } from '../../log.js';
import { addressBytes } from '../ipv6/prefix.js';

export const RESOLVED_SOCKET = '/run/systemd/resolve/io.systemd.Resolve';

export interface ResolvedLink {
  ifindex: number;
  ifname: string;
  address: string;
  /** the link's IPv6 host address, registered next to the IPv4 one */
  address6?: string;
  domain: string;
}

const DEST = ['org.freedesktop.resolve1', '/org/freedesktop/resolve1', 'org.freedesktop.resolve1.Manager'];

/** busctl arguments that register a link (pure; golden-tested). */
export function registerCalls(l: ResolvedLink): string[][] {
  const octets = l.address.split('.');
  // a(iay): the IPv4 (AF_INET = 2) address of 4 bytes, then the IPv6 one (AF_INET6 = 10) of 16
  const v6 = l.address6 === undefined ? [] : ['10', '16', ...[...addressBytes(l.address6)].map(String)];
  return [
    ['call', ...DEST, 'SetLinkDNS', 'ia(iay)', String(l.ifindex), v6.length ? '2' : '1', '2', '4', ...octets, ...v6],
    // a(sb): the domain, routing-only
    ['call', ...DEST, 'SetLinkDomains', 'ia(sb)', String(l.ifindex), '1', l.domain, 'true'],
    ['call', ...DEST, 'SetLinkDefaultRoute', 'ib', String(l.ifindex), 'false'],
  ];
}

export function revertCalls(ifindex: number): string[][] {
  return [['call', ...DEST, 'RevertLink', 'i', String(ifindex)]];
}

export type BusctlRunner = (args: string[]) => Promise<void>;

export const runBusctl: BusctlRunner = (args) => new Promise((resolve, reject) => {
  execFile('busctl', ['--system', '--timeout=2', ...args], { timeout: 5000 }, (err, _out, stderr) => {
    if (err) reject(new Error(`busctl ${args[4] ?? ''}: ${(stderr || err.message).trim()}`));
    else resolve();
  });
});

export class ResolvedRegistrar {
  private readonly run: BusctlRunner;
  private readonly running: () => boolean;

  constructor(private readonly log: Logger, opts: { run?: BusctlRunner; running?: () => boolean } = {}) {
    this.run = opts.run ?? runBusctl;
    this.running = opts.running ?? (() => existsSync(RESOLVED_SOCKET));
  }

  async register(l: ResolvedLink): Promise<boolean> {
    if (!this.running()) return false;
    try {
      for (const args of registerCalls(l)) await this.run(args);
      this.log.debug(`registered ${l.address} for ~${l.domain} on ${l.ifname} with systemd-resolved`);
      return true;
    } catch (err) {
      this.log.warn(`systemd-resolved runs, but registering the DNS server of ${l.ifname} with it failed (the host will not resolve machine names): ${errorMessage(err)}`);
      return false;
    }
  }

  async revert(ifindex: number, ifname: string): Promise<void> {
    if (!this.running()) return;
    try {
      for (const args of revertCalls(ifindex)) await this.run(args);
    } catch (err) {
      this.log.debug(`reverting ${ifname} in systemd-resolved failed (gone with its link?): ${errorMessage(err)}`);
    }
  }
}
