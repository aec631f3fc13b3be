// -p/--port= for containers whose addresses the network subsystem does not hand out
// (--network-bridge= to an administrator's bridge, --network-macvlan=, --network-ipvlan=,
// --network-interface=, --private-network): systemd-nspawn's way (reference §4.2). The launcher
// watches the container's addresses (RTM_NEWADDR/RTM_DELADDR in its network namespace) and, for
// each family, maps the ports to the first address in systemd's order (IPv4 first, then by scope,
// interface index and address; deprecated and host/nowhere-scoped addresses skipped) if it is
// global or site scoped — link-local never qualifies. When the address changes the mappings follow
// (same owner: replaced in one transaction); when it goes they go; at the exit they are removed.
// The mappings carry the machine name as owner, like the subsystem's, and a restarted sidecar
// leaves them alone while the machine runs (subsystem.ts reconcileFirewall).
//
// Containers on served links (-n, --network-zone=) get their ports with their reservation instead
// (hook.ts → subsystem.reserve), before their DHCP exchange.
import { errorMessage } from '../../errors.js';
import { logger } from '../../log.js';
import { sys } from '../../native.js';
import { defaultStateDir } from '../../common/paths.js';
import type { NetworkSpec } from '../../net/model.js';
import type { NetworkHookContext } from './request.js';
import { Firewall, portForwardMappings, type PortMapping } from '../../net/firewall/index.js';
import type { Address } from '../../net/netlink/views.js';
import { Rtnl, type RtnlMonitor } from '../../net/rtnl.js';
import { portOwner } from '../../net/netd/ports.js';
import { processHolder, StateStore } from '../../net/netd/state.js';

const log = logger('ports');

const RT_SCOPE_LINK = 253;
const RT_SCOPE_HOST = 254;
const RT_SCOPE_NOWHERE = 255;
const IFA_F_DEPRECATED = 0x20;

/** Whether the network subsystem serves the container's main link (and maps its ports itself). */
export function portsServedBySubsystem(net: Pick<NetworkSpec, 'veth' | 'bridge' | 'zone'>): boolean {
  return net.zone !== undefined || (net.veth && net.bridge === undefined);
}

function addressBytes(a: string): number[] {
  if (!a.includes(':')) return a.split('.').map(Number);
  const [head = '', tail = ''] = a.split('::');
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  const groups = a.includes('::') ? [...h, ...Array<string>(8 - h.length - t.length).fill('0'), ...t] : h;
  return groups.flatMap((g) => {
    const n = parseInt(g, 16);
    return [n >> 8, n & 255];
  });
}

function compareBytes(a: number[], b: number[]): number {
  for (let i = 0; i < Math.min(a.length, b.length); i++) if (a[i] !== b[i]) return (a[i] as number) - (b[i] as number);
  return a.length - b.length;
}

/**
 * The address the ports of one family go to, as systemd-nspawn picks it (local_addresses() sorted,
 * the first; it must be global or site scoped). Undefined: none qualifies.
 */
export function pickForwardAddress(addresses: readonly Pick<Address, 'family' | 'index' | 'address' | 'scope' | 'flags'>[], family: 4 | 6): string | undefined {
  const candidates = addresses
    .filter((a) => a.family === family && (a.flags & IFA_F_DEPRECATED) === 0 && a.scope !== RT_SCOPE_HOST && a.scope !== RT_SCOPE_NOWHERE)
    .sort((a, b) => a.scope - b.scope || a.index - b.index || compareBytes(addressBytes(a.address), addressBytes(b.address)));
  const first = candidates[0];
  return first && first.scope < RT_SCOPE_LINK ? first.address : undefined;
}

export interface PortWatchOptions {
  env?: NodeJS.ProcessEnv;
  /** the firewall to use (default: one in the launcher's namespace, the host's) */
  firewall?: Firewall;
}

type HookContext = Pick<NetworkHookContext, 'machine' | 'request' | 'netnsPath'>;

export function portWatchHooks(opts: PortWatchOptions = {}): {
  afterClone(ctx: HookContext): Promise<void>;
  afterExit(ctx: HookContext): Promise<void>;
  /** the addresses mapped now, per family (for tests) */
  current(): { 4?: string; 6?: string };
} {
  let fw: Firewall | undefined;
  let ownFirewall = false;
  let netnsFd: number | undefined;
  let rtnl: Rtnl | undefined;
  let monitor: RtnlMonitor | undefined;
  let loop: Promise<void> | undefined;
  let mapped: { 4?: string; 6?: string } = {};
  let chain: Promise<void> = Promise.resolve();
  let watching = false;
  // the launcher's container dies with it: no fsync needed
  const stateStore = (): StateStore => new StateStore(defaultStateDir(opts.env ?? process.env), { durable: false });

  const apply = async (ctx: HookContext): Promise<void> => {
    if (!rtnl || !fw) return;
    const addrs = await rtnl.listAddresses();
    const want = { 4: pickForwardAddress(addrs, 4), 6: pickForwardAddress(addrs, 6) };
    if (want[4] === mapped[4] && want[6] === mapped[6]) return;
    const owner = portOwner(ctx.machine);
    const { ports, portLoopback } = ctx.request.network;
    const mappings: PortMapping[] = [];
    for (const fam of [4, 6] as const) {
      const a = want[fam];
      if (a !== undefined) for (const p of ports) mappings.push(...portForwardMappings(p, a, owner, portLoopback));
    }
    // a family lost its address: start from nothing (the rest is added again right away)
    if ((mapped[4] !== undefined && want[4] === undefined) || (mapped[6] !== undefined && want[6] === undefined)) fw.removePortMappings(owner);
    if (mappings.length) {
      fw.ensureTables();
      fw.addPortMappings(mappings);
    }
    for (const fam of [4, 6] as const) {
      if (want[fam] !== mapped[fam]) {
        if (want[fam] === undefined) log.info(`Lost IP address of ${ctx.machine} (IPv${fam}): its ports are no longer forwarded`);
        else log.debug(`forwarding ${ports.length} port(s) to ${want[fam]} (${ctx.machine})`);
      }
    }
    mapped = {};
    if (want[4] !== undefined) mapped[4] = want[4];
    if (want[6] !== undefined) mapped[6] = want[6];
  };

  const schedule = (ctx: HookContext): Promise<void> => {
    chain = chain.then(() => apply(ctx)).catch((err: unknown) => {
      log.warn(`forwarding the ports of ${ctx.machine}: ${errorMessage(err)}`);
    });
    return chain;
  };

  return {
    async afterClone(ctx) {
      const net = ctx.request.network;
      if (!net.private || net.ports.length === 0 || portsServedBySubsystem(net)) return;
      if (opts.firewall) {
        fw = opts.firewall;
      } else {
        fw = new Firewall();
        ownFirewall = true;
      }
      // recorded before the first mapping: a sweep keeps this launcher's mappings while it runs
      // (also with --register=no) and removes them once it is gone (kill -9: no afterExit)
      const owner = portOwner(ctx.machine);
      await stateStore().update((st) => {
        st.portWatchers = { ...st.portWatchers, [owner]: processHolder() };
      });
      watching = true;
      netnsFd = sys().openNamespace(ctx.netnsPath);
      rtnl = Rtnl.open({ netnsFd });
      // the monitor first, so no address added while we list goes unseen
      monitor = rtnl.monitor({ groups: ['ipv4-addr', 'ipv6-addr'] });
      const mon = monitor;
      loop = (async () => {
        for await (const ev of mon) if (ev.type === 'newaddr' || ev.type === 'deladdr' || ev.type === 'overrun') await schedule(ctx);
      })();
      await schedule(ctx);
    },

    async afterExit(ctx) {
      monitor?.close();
      await loop?.catch(() => undefined);
      await chain;
      monitor = undefined;
      loop = undefined;
      try {
        if (fw && (mapped[4] !== undefined || mapped[6] !== undefined)) fw.removePortMappings(portOwner(ctx.machine));
        mapped = {};
        // our table goes when nothing is left in it, under the network state's lock as the subsystem does
        if (watching) {
          const f = fw && ownFirewall ? fw : undefined;
          await stateStore().update((st) => {
            if (st.portWatchers) delete st.portWatchers[portOwner(ctx.machine)];
            if (st.portWatchers && Object.keys(st.portWatchers).length === 0) delete st.portWatchers;
            if (f && Object.keys(st.links).length === 0 && f.elements().length === 0) f.removeTables();
          });
          watching = false;
        }
      } finally {
        rtnl?.close();
        if (netnsFd !== undefined) sys().close(netnsFd);
        if (ownFirewall) fw?.close();
        rtnl = undefined;
        netnsFd = undefined;
        fw = undefined;
      }
    },

    current: () => ({ ...mapped }),
  };
}
