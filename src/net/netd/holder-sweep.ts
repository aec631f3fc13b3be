// Clearing what holders that are gone left behind: launchers killed before their afterExit (kill
// -9), a sidecar's records of links that went while it was down. A holder is a process identified by
// PID and start time, so nothing of a running launcher is ever taken.
import { errorMessage } from '../../errors.js';
import { processStartTime } from '../../common/proc.js';
import { removeZoneBridgeIfEmpty, zoneLock } from '../modes/zone.js';
import type { SubsystemCore } from './core.js';
import type { LinkServer } from './link-server.js';
import { portOwner } from './ports.js';
import { type Holder, holderAlive, type LinkRecord, type NetdState, type ReservationRecord } from './state.js';

export class HolderSweep {
  constructor(private readonly core: SubsystemCore, private readonly server: LinkServer) {}

  /** A link an embedded launcher is serving: a sidecar leaves it to that launcher. */
  heldByOther(ifname: string): boolean {
    if (this.core.mode !== 'sidecar') return false;
    const rec = this.core.store.peek().links[ifname];
    return rec !== undefined && rec.holders.some((h) => h !== 'sidecar' && holderAlive(h));
  }

  /**
   * Clears records of links no live process holds (and, in sidecar mode, the sidecar only when
   * `linkGone` says the link went), and reservations whose embedded launcher is gone; with them
   * their masquerade entries, port mappings, DHCP interfaces and (embedded) empty zone bridges.
   * 'sidecar' records are left to the sidecar (its next start reconciles them), and so are the
   * links it serves for systemd-nspawn. The firewall is changed under the state lock: no launcher
   * can meanwhile record, and then install, an entry this removes.
   */
  async sweep(linkGone: (ifname: string) => boolean): Promise<void> {
    const { core, server } = this;
    const { mode, store, log } = core;
    const live = (h: Holder): boolean => (h === 'sidecar' ? mode === 'embedded' : holderAlive(h));
    const deadRecord = (rec: LinkRecord): boolean => !rec.holders.some(live) && (mode === 'embedded' || linkGone(rec.ifname));
    const deadReservation = (r: ReservationRecord): boolean => r.holder !== undefined && !holderAlive(r.holder);
    const deadWatchers = (st: NetdState): string[] => Object.entries(st.portWatchers ?? {}).filter(([, h]) => !holderAlive(h)).map(([owner]) => owner);
    const anything = (st: NetdState): boolean =>
      Object.values(st.links).some((rec) => deadRecord(rec) || rec.reservations.some(deadReservation)) || deadWatchers(st).length > 0;
    // the common case (nothing left behind) costs one read of the state file
    if (!anything(store.peek())) return;
    const zones: string[] = [];
    await store.update((st) => {
      const dropped: Array<{ rec: LinkRecord; reservations: ReservationRecord[] }> = [];
      for (const rec of Object.values(st.links)) {
        if (deadRecord(rec)) {
          server.forgetRecord(st, rec);
          dropped.push({ rec, reservations: rec.reservations });
          if (rec.kind === 'zone' && mode === 'embedded') zones.push(rec.ifname);
          continue;
        }
        const gone = rec.reservations.filter(deadReservation);
        if (gone.length === 0) continue;
        rec.reservations = rec.reservations.filter((r) => !gone.includes(r));
        rec.holders = rec.holders.filter((h) => h === 'sidecar' || holderAlive(h));
        dropped.push({ rec, reservations: gone });
      }
      // a machine name another record or another running launcher claims keeps its port mappings
      // (same owner): they are that launcher's now. This launcher's own machine (a new start after
      // a kill) installs its mappings afresh right after.
      const me = `${process.pid}:${processStartTime(process.pid) ?? ''}`;
      const claimed = new Set(Object.values(st.links).flatMap((l) => l.reservations.map((r) => r.machine)));
      const runsElsewhere = (machine: string): boolean => {
        const launcher = core.machines.launcher(machine);
        return launcher !== undefined && !(mode === 'embedded' && `${launcher.pid}:${launcher.startTime}` === me);
      };
      // launchers that mapped their machine's ports themselves (ports-watch.ts)
      for (const owner of deadWatchers(st)) {
        delete st.portWatchers?.[owner];
        if (claimed.has(owner) || runsElsewhere(owner)) continue;
        try {
          const gone = core.firewall.removePortMappings(portOwner(owner));
          if (gone.length) log.info(`stopped forwarding ${gone.length} port(s) to ${owner}: its launcher is gone`, { machine: owner });
        } catch (err) {
          log.warn(`removing the port mappings of ${owner} failed: ${errorMessage(err)}`);
        }
      }
      if (st.portWatchers && Object.keys(st.portWatchers).length === 0) delete st.portWatchers;
      for (const { rec, reservations } of dropped) {
        const whole = st.links[rec.ifname] === undefined;
        for (const r of reservations) {
          if (r.ports?.length && !claimed.has(r.machine) && !runsElsewhere(r.machine)) core.ports.unforward(r, whole ? undefined : rec.ifname);
          if (!whole && core.dhcpServer && core.served.get(rec.ifname)?.dhcp) core.dhcpServer.unreserve(rec.ifname, { mac: r.mac });
          log.info(`released ${r.address} of ${r.machine}: its launcher is gone`, { ifname: rec.ifname, machine: r.machine });
        }
        if (!whole) continue;
        server.removeRecordMasquerade(rec);
        if (!core.served.has(rec.ifname)) core.dhcpServer?.removeInterface(rec.ifname);
        log.info(`forgot ${rec.ifname} (${rec.subnet}): ${mode === 'embedded' ? 'its launcher is gone' : 'its link is gone'}`, { ifname: rec.ifname });
      }
    });
    // a zone bridge its killed launchers left: removed if no container is on it (zone.ts, under the zone lock)
    for (const bridge of zones) {
      try {
        if (await removeZoneBridgeIfEmpty(core.rtnl, zoneLock(), bridge)) log.info(`removed the zone bridge ${bridge}: its launchers are gone`, { ifname: bridge });
      } catch (err) {
        log.warn(`removing the zone bridge ${bridge} failed: ${errorMessage(err)}`);
      }
    }
  }
}
