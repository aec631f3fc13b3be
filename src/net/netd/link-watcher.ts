// The sidecar's view of the kernel's links: at start it serves every ve-/vz- link already there
// and reconciles state and firewall; then it follows rtnetlink's link events — links coming, going,
// renamed, and vb- ports joining zone bridges (whose machines get their address reserved there).
import { NspawnError, errorMessage } from '../../errors.js';
import { cleanupStaleZoneBridges } from '../modes/zone.js';
import { formatMac, generateMac } from '../naming.js';
import type { Link, RtnlEvent, RtnlMonitor } from '../rtnl.js';
import type { SubsystemCore } from './core.js';
import type { HolderSweep } from './holder-sweep.js';
import type { LinkServer } from './link-server.js';
import { classifyLink, type LinkRole } from './links.js';

export class LinkWatcher {
  private monitor: RtnlMonitor | undefined;
  private monitorDone: Promise<void> | undefined;

  constructor(private readonly core: SubsystemCore, private readonly server: LinkServer, private readonly sweep: HolderSweep) {}

  /** Serves what is there, reconciles, and follows link events until close(). */
  async start(): Promise<void> {
    const { core } = this;
    // the monitor first, so nothing that happens while we look goes unseen
    this.monitor = core.rtnl.monitor({ groups: ['link'] });
    // zone bridges of launchers killed before they could remove them (no container on them any
    // more): removed, under the zone lock that creating and joining take (src/net/modes/zone.ts)
    try {
      const stale = await cleanupStaleZoneBridges({ host: core.rtnl });
      if (stale.length) core.log.info(`removed stale zone bridges ${stale.join(', ')}`);
    } catch (err) {
      core.log.warn(`looking for stale zone bridges failed: ${errorMessage(err)}`);
    }
    await this.resync();
    core.tables.reconcile();
    const mon = this.monitor;
    this.monitorDone = (async () => {
      for await (const ev of mon) {
        try {
          await this.onEvent(ev);
        } catch (err) {
          // a link that went while it was being served (a container ending): rolled back, and its
          // dellink follows; not an error of ours
          if (err instanceof NspawnError && err.code === 'ENODEV') core.log.debug(`a link went while being served: ${errorMessage(err)}`, { event: ev.type });
          else core.log.error(`handling a link event failed: ${errorMessage(err)}`, { event: ev.type });
        }
      }
    })();
  }

  /** Stops following events; resolves when the event being handled is done. */
  async close(): Promise<void> {
    this.monitor?.close();
    await this.monitorDone?.catch(() => undefined);
  }

  private async onEvent(ev: RtnlEvent): Promise<void> {
    const { core, server } = this;
    if (ev.type === 'overrun') {
      core.log.warn('link notifications were lost; re-reading every link');
      await this.resync();
      return;
    }
    if (ev.type !== 'newlink' && ev.type !== 'dellink') return;
    const link = ev.link;
    // a served link renamed away from its name: it is no longer ours to serve
    for (const s of core.served.values()) {
      if (s.ifindex === link.index && s.ifname !== link.name) await core.queue(s.ifname, () => server.unserve(s.ifname, true));
    }
    const role = classifyLink(link);
    if (ev.type === 'dellink') {
      if (core.served.has(link.name)) await core.queue(link.name, () => server.unserve(link.name, true));
      if (role?.role === 'port') await this.portGone(role.machine, link);
      // a link left to an embedded launcher (heldByOther) went with its killed launcher
      else if (!core.served.has(link.name)) await this.sweep.sweep((ifname) => ifname === link.name);
      return;
    }
    if (!role) return;
    if (role.role === 'port') {
      await this.portSeen(role.machine, link);
      return;
    }
    const cur = core.served.get(link.name);
    if (cur && cur.ifindex === link.index) return;
    if (this.sweep.heldByOther(link.name)) return;
    // a veth's machine gets its address reserved in the same step (systemd-nspawn's host0 MAC)
    await core.queue(link.name, () => server.serve(link, role, this.nspawnWant(role)));
    if (role.role === 'zone') await this.reserveZonePorts(link);
  }

  /** Serves every ve-/vz- link there is, unserves what went; drops records of vanished links. */
  private async resync(): Promise<void> {
    const { core, server } = this;
    const links = await core.rtnl.listLinks();
    const byName = new Map(links.map((l) => [l.name, l]));
    for (const s of [...core.served.values()]) {
      const l = byName.get(s.ifname);
      if (!l || l.index !== s.ifindex) await core.queue(s.ifname, () => server.unserve(s.ifname, !l));
    }
    // records of links that are gone (they went while no sidecar ran) are released, as are
    // reservations of launchers that are gone
    await this.sweep.sweep((ifname) => {
      const l = byName.get(ifname);
      const role = l ? classifyLink(l) : undefined;
      return !l || !role || role.role === 'port';
    });
    for (const l of links) {
      const role = classifyLink(l);
      if (!role || role.role === 'port') continue;
      if (core.served.get(l.name)?.ifindex === l.index) continue;
      if (this.sweep.heldByOther(l.name)) continue;
      try {
        await core.queue(l.name, () => server.serve(l, role, this.nspawnWant(role)));
      } catch (err) {
        core.log.error(`cannot serve ${l.name}: ${errorMessage(err)}`, { ifname: l.name });
      }
    }
    for (const l of links) {
      if (l.kind === 'bridge' && core.served.has(l.name)) await this.reserveZonePorts(l);
    }
  }

  /** The host0 MAC systemd-nspawn gives `machine`'s container (host machine ID + name). */
  private nspawnContainerMac(machine: string): string | undefined {
    return this.core.machineId ? formatMac(generateMac(this.core.machineId, machine, 'container')) : undefined;
  }

  /** What a sidecar reserves for a ve- link's machine before its DHCP client asks (systemd-nspawn's host0 MAC). */
  private nspawnWant(role: Exclude<LinkRole, { role: 'port' }>): { machine: string; mac: string; soft: true } | undefined {
    if (role.role !== 'veth') return undefined;
    const mac = this.nspawnContainerMac(role.machine);
    return mac ? { machine: role.machine, mac, soft: true } : undefined;
  }

  /** vb-MACHINE joined (or is in) a zone bridge we serve: reserve that machine's address there. */
  private async portSeen(machine: string, port: Link): Promise<void> {
    const { core } = this;
    if (port.master === undefined) return;
    const zone = [...core.served.values()].find((s) => s.ifindex === port.master && s.kind === 'zone');
    if (!zone) return;
    const rec = core.store.peek().links[zone.ifname];
    if (rec?.reservations.some((r) => r.machine === machine)) return;
    const mac = this.nspawnContainerMac(machine);
    if (!mac) return;
    try {
      await core.queue(zone.ifname, () => this.server.reserveOn(zone.ifname, machine, mac));
    } catch (err) {
      core.log.warn(`reserving an address for ${machine} on ${zone.ifname} failed: ${errorMessage(err)}`);
    }
  }

  private async portGone(machine: string, port: Link): Promise<void> {
    const { core } = this;
    for (const s of core.served.values()) {
      if (s.kind !== 'zone' || (port.master !== undefined && s.ifindex !== port.master)) continue;
      const rec = core.store.peek().links[s.ifname];
      if (rec?.reservations.some((r) => r.machine === machine)) await core.queue(s.ifname, () => this.server.unreserveOn(s.ifname, machine));
    }
  }

  private async reserveZonePorts(bridge: Link): Promise<void> {
    if (!this.core.served.has(bridge.name)) return;
    for (const p of await this.core.rtnl.listLinks({ master: bridge.index })) {
      const role = classifyLink(p);
      if (role?.role === 'port') await this.portSeen(role.machine, p);
    }
  }
}
