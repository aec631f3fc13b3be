// The DHCP server (src/dhcp) as the network subsystem's backend: one server per process, serving
// each served link as an interface. The sidecar keeps leases in a journal in its state directory
// (they survive restarts); an embedded launcher keeps them in memory (its container's reservation
// is what keeps the address stable, and nothing is left behind when it ends).
import { DhcpServer, type DhcpEvent } from '../../dhcp/index.js';
import type { Logger } from '../../log.js';
import type { DhcpBackend } from './subsystem.js';

/** `quiet`: lease events are detail (inside a launcher), not news (the sidecar's log). */
export function dhcpBackend(log: Logger, opts: { quiet?: boolean } = {}): (leaseFile: string | undefined) => DhcpBackend {
  return (leaseFile) => {
    const onEvent = (e: DhcpEvent): void => {
      if ((e.type === 'bound' && e.renewed) || opts.quiet) log.debug(`lease ${e.type}`, { ...e });
      else log.info(`lease ${e.type}`, { ...e });
    };
    return new DhcpServer(leaseFile ? { leaseFile, log, onEvent } : { log, onEvent });
  };
}
