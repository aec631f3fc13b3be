// The DHCP server (src/dhcp) as the network subsystem's backend: one server per process, serving
// each served link as an interface. The sidecar keeps leases in a journal in its state directory
// (they survive restarts); an embedded launcher keeps them in memory (its container's reservation
// is what keeps the address stable, and nothing is left behind when it ends).
import { DhcpServer, type DhcpEvent } from '../../dhcp/index.js';
import type { Logger } from '../../log.js';
import type { DhcpBackend } from './subsystem.js';

export function dhcpBackend(log: Logger): (leaseFile: string | undefined) => DhcpBackend {
  return (leaseFile) => {
    const onEvent = (e: DhcpEvent): void => {
      if (e.type === 'bound' && e.renewed) log.debug('lease renewed', { ...e });
      else log.info(`lease ${e.type}`, { ...e });
    };
    return new DhcpServer(leaseFile ? { leaseFile, log, onEvent } : { log, onEvent });
  };
}
