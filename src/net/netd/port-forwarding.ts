// Port forwarding of the machines on served links (ports.ts has the rules): recorded with the
// machine's reservation in the state file first (a crash after the install leaves a record the next
// start reconciles), then installed in the firewall with the machine as owner; removed with the
// reservation. route_localnet follows the loopback mappings of each link.
import { NspawnError, errorMessage } from '../../errors.js';
import type { Logger } from '../../log.js';
import type { Firewall } from '../firewall/index.js';
import {
  findPortClashes, foreignPortClashes, hostPortsOf, PortInUseError, portOwner, reservationMappings, routeLocalnetPath, type PortRequest,
} from './ports.js';
import type { NetdState, ReservationRecord, StateStore } from './state.js';
import { NetdError } from './subsystem-types.js';
import type { SysctlIo } from './sysctl.js';

export interface PortForwardingDeps {
  firewall: Firewall;
  store: StateStore;
  sysctl: SysctlIo;
  log: Logger;
  /** makes the firewall's tables (once) before the first mapping */
  ensureTables(): void;
}

export class PortForwarding {
  constructor(private readonly deps: PortForwardingDeps) {}

  /**
   * Puts the machine's ports on its reservation in `st`, inside the caller's state update: the
   * reservation and its ports are one write (one fsync on an ADD or a launch). Ports others hold —
   * recorded (reserved, maybe not installed yet), systemd-nspawn's and nspawn-cni's — are refused
   * (PortInUseError, nothing written): checked under the state lock, which nspawn-cni's ipam ADD
   * holds while it checks ours and maps its own.
   */
  record(st: NetdState, ifname: string, machine: string, req: PortRequest): void {
    const r = st.links[ifname]?.reservations.find((x) => x.machine === machine);
    if (!r) return;
    if (req.ports.length) {
      const clashes = findPortClashes(machine, req.ports, { current: [], state: st, foreign: foreignPortClashes(req.ports) });
      if (clashes.length) throw new PortInUseError(machine, clashes);
    }
    delete r.ports;
    delete r.portLoopback;
    if (req.ports.length) r.ports = req.ports;
    if (req.ports.length && req.loopback) r.portLoopback = true;
  }

  /**
   * Installs the ports record() put on `res` (all or none; on failure its record loses them). Recorded
   * first: a crash after the install leaves a record that the next start reconciles.
   */
  async forward(ifname: string, res: ReservationRecord, req: PortRequest, previous: ReservationRecord | undefined): Promise<void> {
    const owner = portOwner(res.machine);
    // a previous run's ports (its launcher was killed) must not outlive it
    if (previous?.ports?.length) this.deps.firewall.removePortMappings(owner, hostPortsOf(previous.ports));
    if (req.ports.length === 0) return;
    const mappings = reservationMappings(res, this.deps.store.peek().links[ifname]?.prefix6);
    try {
      this.deps.ensureTables();
      // 127.0.0.1 as a source may leave the host only by this link (reference: systemd#6106)
      if (req.loopback) this.deps.sysctl.write(routeLocalnetPath(ifname), '1');
      this.deps.firewall.addPortMappings(mappings);
    } catch (err) {
      await this.deps.store.update((st) => this.record(st, ifname, res.machine, { ports: [], loopback: false }));
      if (err instanceof NspawnError && err.code === 'NFT_PORT_IN_USE') {
        throw new NetdError('NETD_PORT_IN_USE', `cannot forward ports to ${res.machine}: ${err.message.replace(/^nftables: .*? failed: /, '')}`, { cause: err });
      }
      throw err;
    }
    this.deps.log.info(`forwarding ${mappings.length} port(s) to ${res.machine}`, {
      machine: res.machine, address: res.address, ports: mappings.map((m) => `${m.protocol}:${m.hostPort}:${m.containerPort}`), loopback: req.loopback,
    });
  }

  /**
   * Removes a reservation's mappings (one transaction; the record's ports are where they are: no
   * listing of the table); never throws (the caller is tearing down).
   */
  unforward(r: ReservationRecord, ifname?: string): void {
    try {
      const gone = this.deps.firewall.removePortMappings(portOwner(r.machine), hostPortsOf(r.ports ?? []));
      if (gone.length) this.deps.log.info(`stopped forwarding ${gone.length} port(s) to ${r.machine}`, { machine: r.machine });
    } catch (err) {
      this.deps.log.warn(`removing the port mappings of ${r.machine} failed: ${errorMessage(err)}`);
    }
    // route_localnet goes back to 0 when no loopback mapping is left on a link that stays
    if (r.portLoopback && ifname !== undefined) {
      const rest = this.deps.store.peek().links[ifname]?.reservations.some((x) => x.portLoopback && x.machine !== r.machine);
      if (!rest) {
        try {
          this.deps.sysctl.write(routeLocalnetPath(ifname), '0');
        } catch {
          // the link is gone: so is its setting
        }
      }
    }
  }
}
