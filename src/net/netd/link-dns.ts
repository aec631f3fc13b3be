// DNS for the served links: which servers containers are handed (our DNS server on the link's host
// address, or the configured/host resolvers), and the machine names our server answers, kept equal
// to the recorded reservations.
import { watch, type FSWatcher } from 'node:fs';
import { errorMessage } from '../../errors.js';
import type { DnsLink } from '../dns/index.js';
import type { Served, SubsystemCore } from './core.js';
import { holderAlive } from './state.js';
import { machineAddress6 } from './ipv6.js';

export class LinkDns {
  /** embedded: other launchers' reservations on a shared zone arrive through the state file */
  private stateWatch: FSWatcher | undefined;

  constructor(private readonly core: SubsystemCore) {}

  /**
   * IPv6 DNS servers for a link's advertisements (RDNSS) and its machines' leases: the host's
   * address there (the /64's ::1) when our server answers, else the configured or host IPv6
   * resolvers — the counterpart of what DHCP hands out (servers()).
   */
  servers6(hostAddress6: string): string[] {
    return this.core.dnsServer ? [hostAddress6] : [...this.core.dns6];
  }

  /** What containers on a served link get as DNS server: the link's host address when we answer there. */
  servers(s: Served): string[] {
    return this.core.dnsServer ? [s.alloc.hostAddress] : [...this.core.dns];
  }

  /** Search domains advertised with our server (RA's DNSSL): the machine domain. */
  get searchDomains(): string[] {
    return this.core.dnsServer ? [this.core.dnsServer.domain] : [];
  }

  /**
   * Gives the DNS server the served links and their machines, as recorded (reservations of launchers
   * that are gone excepted); resolves when it listens on each link (or stands by for another
   * launcher holding a shared zone's address). Names thus exist before a container runs and are gone
   * when its reservation is.
   */
  async refresh(): Promise<void> {
    const { dnsServer, served, store, mode } = this.core;
    if (!dnsServer || this.core.closed) return;
    const state = store.peek();
    const links: DnsLink[] = [...served.values()].map((s) => {
      const v6 = s.v6;
      const machines = (state.links[s.ifname]?.reservations ?? [])
        .filter((r) => r.holder === undefined || holderAlive(r.holder))
        .map((r) => {
          // the address host0 has: configured at start, or formed by SLAAC from our advertisement (EUI-64)
          const address6 = v6 && machineAddress6(v6.prefixText, r.mac);
          return address6 === undefined ? { name: r.machine, address: r.address } : { name: r.machine, address: r.address, address6 };
        });
      const link: DnsLink = { ifname: s.ifname, ifindex: s.ifindex, hostAddress: s.alloc.hostAddress, subnet: s.alloc.subnet, machines };
      return v6 ? { ...link, hostAddress6: v6.hostAddress, prefix6: v6.prefixText } : link;
    });
    dnsServer.setLinks(links);
    if (mode === 'embedded') this.watchState(links.some((l) => served.get(l.ifname)?.kind === 'zone'));
    await dnsServer.ready();
  }

  /** Embedded on a zone: other launchers add and remove machines there; their changes come through the state file. */
  private watchState(on: boolean): void {
    if (!on) {
      this.stateWatch?.close();
      this.stateWatch = undefined;
      return;
    }
    if (this.stateWatch) return;
    let timer: NodeJS.Timeout | undefined;
    try {
      this.stateWatch = watch(this.core.store.dir, (_event, file) => {
        if (file !== 'state.json' || timer) return;
        timer = setTimeout(() => {
          timer = undefined;
          this.refresh().catch((err: unknown) => this.core.log.warn(`updating DNS names failed: ${errorMessage(err)}`));
        }, 10);
      });
      this.stateWatch.unref();
      this.stateWatch.on('error', () => this.watchState(false));
    } catch (err) {
      this.core.log.warn(`cannot follow other launchers' machines for DNS: ${errorMessage(err)}`);
    }
  }

  async close(): Promise<void> {
    this.stateWatch?.close();
    await this.core.dnsServer?.close();
  }
}
