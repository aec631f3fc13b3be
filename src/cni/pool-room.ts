// STATUS's look at our subnet pool (CNI 1.1.0: "not available" when an ADD cannot succeed): a dry run
// of what the next container's ADD would take — a free /24 for the network's bridge (zone mode, the
// network's first container) or /28 for its link (veth mode), or a free address in the zone's subnet —
// against the state file and what the host uses now. Loaded by STATUS only.
import { placeReservation, SubnetFullError } from '../net/netd/addresses.js';
import { NetdClient } from '../net/netd/client.js';
import { prefixesInUse } from '../net/netd/link-server.js';
import { StateStore } from '../net/netd/state.js';
import { zoneBridgeIfname } from '../net/naming.js';
import { DEFAULT_POOLS, describeSubnet, PREFIX_LENGTH, SubnetPool, SubnetPoolExhaustedError } from '../net/pool.js';
import { Rtnl } from '../net/rtnl.js';
import type { CniConfig } from './config.js';

/** The name a dry run places (no container is called so), and its MAC: none (a reservation with the probe's MAC would count as its own). */
const PROBE = 'nspawn-cni-status';
const PROBE_MAC = '';

/** The pools ADD takes subnets from: the running sidecar's (its --pool=), else the library's defaults (the in-process ADD's). */
async function addPools(cfg: CniConfig): Promise<readonly string[]> {
  const client = cfg.sidecar === 'auto' ? await NetdClient.connect(cfg.netdSocket) : undefined;
  if (!client) return DEFAULT_POOLS;
  try {
    const { pools } = await client.request<{ pools?: unknown }>({ op: 'status' });
    // a sidecar of an older release does not say
    return Array.isArray(pools) && pools.every((p) => typeof p === 'string') ? pools as string[] : DEFAULT_POOLS;
  } finally {
    client.close();
  }
}

/** Why a new container of this network would get no subnet or address from our pool now; undefined when it would. */
export async function poolRoom(cfg: CniConfig): Promise<string | undefined> {
  const state = new StateStore(cfg.stateDir).peek();
  const bridge = zoneBridgeIfname(cfg.zone);
  const served = cfg.mode === 'zone' ? state.links[bridge] : undefined;
  if (served) {
    try {
      placeReservation(describeSubnet('zone', cfg.zone, served.subnet), served.reservations, PROBE, PROBE_MAC, []);
      return undefined;
    } catch (err) {
      if (!(err instanceof SubnetFullError)) throw err;
      return `network ${cfg.name} has no address left for a new container: all of ${served.subnet} (${bridge}) is reserved (${served.reservations.length} containers and machines)`;
    }
  }
  const pools = await addPools(cfg);
  const rtnl = Rtnl.open();
  try {
    const pool = state.pool ? SubnetPool.restore(state.pool, { pools }) : new SubnetPool({ pools });
    pool.allocate(cfg.mode, cfg.mode === 'zone' ? cfg.zone : PROBE, await prefixesInUse(rtnl, (await rtnl.getLink(bridge))?.index));
    return undefined;
  } catch (err) {
    if (!(err instanceof SubnetPoolExhaustedError)) throw err;
    const what = cfg.mode === 'zone' ? `network ${cfg.name}'s bridge ${bridge}` : `a new container of network ${cfg.name}`;
    return `the subnet pool ${pools.join(', ')} has no /${PREFIX_LENGTH[cfg.mode]} left for ${what}: the host's addresses and routes and other links' subnets cover it`;
  } finally {
    rtnl.close();
  }
}
