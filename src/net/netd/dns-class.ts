// The DNS server's class for NetworkSubsystem.open, loaded only when the subsystem serves DNS (it
// brings node:dgram, node:net and dns-packet). The sidecar and the embedded launcher get it here;
// nspawn-cni's one-shot never serves DNS and never imports this module, so its bundle carries no DNS
// server (~110 KB less to load with its code cache in every call).
import type { DnsServer } from '../dns/index.js';
import { servesDns } from './core.js';
import type { SubsystemOptions } from './subsystem-types.js';

/** The DNS server's class when `opts` serve DNS (servesDns), else undefined. */
export async function dnsServerClass(opts: Pick<SubsystemOptions, 'dnsServer' | 'dns'>): Promise<typeof DnsServer | undefined> {
  return servesDns(opts) ? (await import('../dns/index.js')).DnsServer : undefined;
}
