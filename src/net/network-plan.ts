// A container's links, from its NetworkSpec to the kernel and back: planNetwork() (pure) names every
// link and derives every MAC address exactly as systemd-nspawn v252 does and refuses options that
// would collide with each other; setupContainerNetwork() checks the host and the container for
// every mode before touching anything (parents and bridges exist, names are free, interfaces are
// not in use), then applies the modes in systemd-nspawn's order — moved interfaces, the main veth
// (with its bridge or zone), extra veths, macvlans, ipvlans, then loopback up — and, when one fails,
// undoes the ones applied, newest first (netavark's validate/apply/teardown). The handle it returns
// says what was made and takes it away at the container's end (teardown()).
//
// Addresses, DHCP and NAT are not made here: the sidecar (or its embedded twin) configures the links
// this module reports.
import { TeardownError } from '../errors.js';
import { logger } from '../log.js';
import { sys } from '../native.js';
import type { NetworkSpec } from './model.js';
import {
  CONTAINER_IFNAME, bridgeVethHostIfname, formatMac, generateMac, ipvlanIfname, macvlanIfname, namingSchemeHasLongHash,
  readMachineId, vethHostIfname, vethMacs, zoneBridgeIfname, type ShortenedIfname,
} from './naming.js';
import { Rtnl } from './rtnl.js';
import { BridgeMode } from './modes/bridge.js';
import { InterfaceMode, type MovedInterfaceInfo } from './modes/interface.js';
import { IpvlanMode } from './modes/ipvlan.js';
import { MacvlanMode } from './modes/macvlan.js';
import type { SublinkInfo } from './modes/sublink.js';
import {
  type LinkClient, type ModeContext, type NetworkMode, type UndoReason, type ZoneLock, NetworkSetupError, setupFailed,
} from './modes/types.js';
import { VethExtraMode } from './modes/veth-extra.js';
import { VethMode, primaryVethSpec, type VethPairInfo } from './modes/veth.js';
import { ZoneMode, zoneLock } from './modes/zone.js';

export { NetworkSetupError } from './modes/types.js';
export type { LinkClient, ZoneLock } from './modes/types.js';
export type { VethPairInfo } from './modes/veth.js';
export type { SublinkInfo } from './modes/sublink.js';
export type { MovedInterfaceInfo } from './modes/interface.js';
export { cleanupStaleZoneBridges, removeZoneBridgeIfEmpty, zoneLock, SYSTEMD_ZONE_LOCK, ZONE_LOCK } from './modes/zone.js';

const log = logger('net');

export interface NetworkPlanInput {
  machine: string;
  network: NetworkSpec;
  /** the host's machine ID (16 bytes), or how to read it; read only when a MAC is needed. Default: readMachineId() */
  machineId?: Uint8Array | (() => Uint8Array);
  /** systemd's NAMING_NSPAWN_LONG_HASH; default: from the kernel command line and $NET_NAMING_SCHEME */
  longHash?: boolean;
}

/** Loopback up inside (systemd-nspawn's inner child does it; harmless when the launcher did too). */
class LoopbackMode implements NetworkMode {
  readonly option = '--private-network';
  async validate(): Promise<void> { /* lo always exists */ }
  async apply(ctx: ModeContext): Promise<void> {
    try {
      await ctx.container.setUp('lo');
    } catch (err) {
      throw setupFailed(this.option, err, 'bringing up the loopback interface');
    }
  }
  async undo(): Promise<void> { /* the namespace takes it */ }
}

export interface NetworkPlan {
  machine: string;
  /** the modes in the order they are applied */
  modes: NetworkMode[];
  /** what systemd-nspawn warns about too (shortened names) */
  warnings: string[];
}

function conflict(option: string, message: string): NetworkSetupError {
  return new NetworkSetupError('NET_NAME_CONFLICT', option, message);
}

/**
 * Names, MAC addresses and order of every link of `network`, with no I/O except reading the machine
 * ID when MACs are needed. Throws NetworkSetupError NET_NAME_CONFLICT when two options would make
 * (or move) links of the same name on the same side, or when an interface is both moved into the
 * container and used as a parent.
 */
export function planNetwork(input: NetworkPlanInput): NetworkPlan {
  const { machine, network: net } = input;
  const opts = { longHash: input.longHash ?? namingSchemeHasLongHash() };
  const warnings: string[] = [];
  let id: Uint8Array | undefined;
  const machineId = (): Uint8Array => {
    id ??= typeof input.machineId === 'function' ? input.machineId() : input.machineId ?? readMachineId();
    return id;
  };
  const named = (n: ShortenedIfname): ShortenedIfname => {
    if (n.shortened) warnings.push(`Network interface name '${n.full}' has been changed to '${n.name}' to fit length constraints.`);
    return n;
  };

  // names on each side, with the option that makes them, to refuse collisions
  const hostNames = new Map<string, string>();
  const containerNames = new Map<string, string>([['lo', 'the loopback interface']]);
  const claim = (side: Map<string, string>, where: string, name: string, option: string): void => {
    const other = side.get(name);
    if (other !== undefined) {
      throw conflict(option, `interface name "${name}" in the ${where} is also used by ${other === option ? 'another use of the same option' : other}`);
    }
    side.set(name, option);
  };

  const modes: NetworkMode[] = [];
  const moved = new Set<string>();
  for (const ifname of net.interfaces) {
    const option = `--network-interface=${ifname}`;
    if (moved.has(ifname)) throw conflict(option, `interface "${ifname}" is given twice`);
    moved.add(ifname);
    claim(containerNames, 'container', ifname, option);
    modes.push(new InterfaceMode(ifname));
  }
  for (const [list, name] of [[net.macvlan, '--network-macvlan'], [net.ipvlan, '--network-ipvlan']] as const) {
    for (const parent of list) {
      if (moved.has(parent)) {
        throw conflict(`${name}=${parent}`, `interface "${parent}" cannot be the parent of a link on the host and be moved into the container by --network-interface=${parent}`);
      }
    }
  }

  if (net.zone !== undefined || net.bridge !== undefined || net.veth) {
    const macs = vethMacs(machineId(), machine);
    if (net.zone !== undefined) {
      const bridge = zoneBridgeIfname(net.zone);
      const option = `--network-zone=${net.zone}`;
      if (moved.has(bridge)) throw conflict(option, `the zone's bridge "${bridge}" is moved into the container by --network-interface=${bridge}`);
      const names = named(bridgeVethHostIfname(machine, opts));
      claim(hostNames, 'host', bridge, option);
      claim(hostNames, 'host', names.name, option);
      if (names.altname !== undefined) claim(hostNames, 'host', names.altname, option);
      claim(containerNames, 'container', CONTAINER_IFNAME, option);
      modes.push(new ZoneMode(net.zone, bridge, primaryVethSpec(names, macs, CONTAINER_IFNAME), moved));
    } else if (net.bridge !== undefined) {
      const option = `--network-bridge=${net.bridge}`;
      if (moved.has(net.bridge)) throw conflict(option, `bridge "${net.bridge}" is moved into the container by --network-interface=${net.bridge}`);
      const names = named(bridgeVethHostIfname(machine, opts));
      claim(hostNames, 'host', net.bridge, option);
      claim(hostNames, 'host', names.name, option);
      if (names.altname !== undefined) claim(hostNames, 'host', names.altname, option);
      claim(containerNames, 'container', CONTAINER_IFNAME, option);
      modes.push(new BridgeMode(net.bridge, primaryVethSpec(names, macs, CONTAINER_IFNAME), moved));
    } else {
      const option = '--network-veth';
      const names = named(vethHostIfname(machine, opts));
      claim(hostNames, 'host', names.name, option);
      if (names.altname !== undefined) claim(hostNames, 'host', names.altname, option);
      claim(containerNames, 'container', CONTAINER_IFNAME, option);
      modes.push(new VethMode(primaryVethSpec(names, macs, CONTAINER_IFNAME), moved));
    }
  }

  net.vethExtra.forEach((extra, idx) => {
    const option = `--network-veth-extra=${extra.hostIfname}:${extra.containerIfname}`;
    claim(hostNames, 'host', extra.hostIfname, option);
    claim(containerNames, 'container', extra.containerIfname, option);
    modes.push(new VethExtraMode({
      hostIfname: extra.hostIfname, hostMac: formatMac(generateMac(machineId(), machine, 'extraHost', idx)),
      containerIfname: extra.containerIfname, containerMac: formatMac(generateMac(machineId(), machine, 'extraContainer', idx)),
      containerUp: false,
    }, moved));
  });

  net.macvlan.forEach((parent, idx) => {
    const option = `--network-macvlan=${parent}`;
    const names = named(macvlanIfname(parent, opts));
    claim(containerNames, 'container', names.name, option);
    const spec = { parent, ifname: names.name, mac: formatMac(generateMac(machineId(), machine, 'macvlan', idx)) };
    modes.push(new MacvlanMode(names.altname !== undefined ? { ...spec, altname: names.altname } : spec));
  });

  for (const parent of net.ipvlan) {
    const option = `--network-ipvlan=${parent}`;
    const names = named(ipvlanIfname(parent, opts));
    claim(containerNames, 'container', names.name, option);
    modes.push(new IpvlanMode(names.altname !== undefined ? { parent, ifname: names.name, altname: names.altname } : { parent, ifname: names.name }));
  }

  if (net.private || modes.length > 0) modes.push(new LoopbackMode());
  return { machine, modes, warnings };
}

// ---------------------------------------------------------------------------------------------

/** The main veth as made: host side, host0, and the bridge it is on (--network-bridge=/--network-zone=). */
export interface PrimaryVethInfo extends VethPairInfo {
  /** `ve-`: none; `vb-`: the bridge it was added to */
  bridge?: string;
  bridgeIfindex?: number;
  /** --network-zone=: the zone (bridge is vz-ZONE) */
  zone?: string;
}

export interface SetupOptions {
  /**
   * The container's network namespace: an fd (the caller keeps it open until teardown() returned),
   * or a path such as /proc/PID/ns/net, opened here and held until teardown() — holding it keeps the
   * namespace alive after the container's last process, so moved interfaces can go back.
   */
  containerNetns: number | string;
  /** the host's network namespace (default: ours) */
  hostNetnsFd?: number;
  /** the zone bridge lock (default: zoneLock()) */
  zoneLock?: ZoneLock;
  /** for tests: clients to use instead of opening rtnetlink sockets */
  clients?: { host: LinkClient; container: LinkClient };
}

/** The links of one running container; teardown() removes them. */
export class ContainerNetwork {
  private done = false;

  /** @internal use setupContainerNetwork() */
  constructor(
    readonly machine: string,
    private readonly modes: readonly NetworkMode[],
    private readonly ctx: ModeContext,
    private readonly release: () => void,
  ) {}

  /** -n/--network-veth, --network-bridge=, --network-zone=: the veth to host0, if any. */
  get veth(): PrimaryVethInfo | undefined {
    for (const m of this.modes) {
      if (m instanceof ZoneMode) return m.info();
      if (m instanceof BridgeMode) return m.info();
      if (m instanceof VethMode) return m.pair.info();
    }
    return undefined;
  }

  get vethExtras(): VethPairInfo[] {
    return this.modes.filter((m): m is VethExtraMode => m instanceof VethExtraMode).map((m) => m.info());
  }

  /** in the container's namespace */
  get macvlans(): SublinkInfo[] {
    return this.modes.filter((m): m is MacvlanMode => m instanceof MacvlanMode).map((m) => m.info());
  }

  /** in the container's namespace */
  get ipvlans(): SublinkInfo[] {
    return this.modes.filter((m): m is IpvlanMode => m instanceof IpvlanMode).map((m) => m.info());
  }

  get movedInterfaces(): MovedInterfaceInfo[] {
    return this.modes.filter((m): m is InterfaceMode => m instanceof InterfaceMode).map((m) => m.info());
  }

  /** Names of the host-side links this container owns (what the sidecar configures): ve-/vb- and the extras. */
  get hostIfnames(): string[] {
    const out: string[] = [];
    const v = this.veth;
    if (v) out.push(v.hostIfname);
    for (const e of this.vethExtras) out.push(e.hostIfname);
    return out;
  }

  /**
   * Removes every link the start made and moves interfaces back to the host, newest first; a zone
   * bridge goes when its last port does. Every step runs even when others fail; failures are
   * thrown together as one TeardownError. Idempotent.
   */
  async teardown(): Promise<void> {
    if (this.done) return;
    this.done = true;
    const errors = await undoModes(this.modes, this.ctx, 'exit');
    this.release();
    if (errors.length > 0) throw new TeardownError(`failed to remove the network of machine "${this.machine}"`, errors);
  }
}

async function undoModes(modes: readonly NetworkMode[], ctx: ModeContext, reason: UndoReason): Promise<unknown[]> {
  const errors: unknown[] = [];
  for (const m of [...modes].reverse()) {
    try {
      await m.undo(ctx, reason, errors);
    } catch (err) {
      errors.push(err);
    }
  }
  return errors;
}

function openResources(machine: string, opts: SetupOptions, needHostFd: boolean): { ctx: ModeContext; release: () => void } {
  const s = sys();
  const opened: number[] = [];
  const clients: Rtnl[] = [];
  const release = (): void => {
    for (const c of clients) c.close();
    for (const fd of opened) {
      try {
        s.close(fd);
      } catch { /* already closed */ }
    }
    clients.length = 0;
    opened.length = 0;
  };
  try {
    let containerNetnsFd: number;
    if (typeof opts.containerNetns === 'number') {
      containerNetnsFd = opts.containerNetns;
    } else {
      containerNetnsFd = s.openNamespace(opts.containerNetns);
      opened.push(containerNetnsFd);
    }
    let hostNetnsFd = opts.hostNetnsFd ?? -1;
    if (hostNetnsFd < 0 && needHostFd) {
      hostNetnsFd = s.openNamespace('/proc/self/ns/net');
      opened.push(hostNetnsFd);
    }
    let host: LinkClient;
    let container: LinkClient;
    if (opts.clients) {
      ({ host, container } = opts.clients);
    } else {
      const h = Rtnl.open(opts.hostNetnsFd !== undefined ? { netnsFd: opts.hostNetnsFd } : {});
      clients.push(h);
      const c = Rtnl.open({ netnsFd: containerNetnsFd });
      clients.push(c);
      host = h;
      container = c;
    }
    return {
      ctx: { machine, host, container, containerNetnsFd, hostNetnsFd, zoneLock: opts.zoneLock ?? zoneLock(), log },
      release,
    };
  } catch (err) {
    release();
    throw err;
  }
}

/**
 * Makes the container's links. Every mode is validated before any is applied; when applying one
 * fails, the ones applied (including the failing one's partial work) are undone and the error is
 * thrown — a NetworkSetupError naming the option, with `rollbackErrors` (and a sentence in the
 * message) if undoing failed too.
 */
export async function setupContainerNetwork(plan: NetworkPlan, opts: SetupOptions): Promise<ContainerNetwork> {
  const needHostFd = plan.modes.some((m) => m instanceof InterfaceMode);
  const { ctx, release } = openResources(plan.machine, opts, needHostFd);
  try {
    for (const m of plan.modes) {
      try {
        await m.validate(ctx);
      } catch (err) {
        throw setupFailed(m.option, err);
      }
    }
  } catch (err) {
    release();
    throw err;
  }
  for (const w of plan.warnings) log.warn(w);

  const applied: NetworkMode[] = [];
  for (const m of plan.modes) {
    applied.push(m); // before apply(): a failing apply() may have made part of its links
    try {
      await m.apply(ctx);
    } catch (err) {
      const failure = setupFailed(m.option, err);
      const errors = await undoModes(applied, ctx, 'rollback');
      release();
      if (errors.length > 0) {
        failure.rollbackErrors = errors;
        failure.message += `; removing what this start had made failed too: ${errors.map((e) => (e instanceof Error ? e.message : String(e))).join('; ')}`;
      }
      throw failure;
    }
  }
  return new ContainerNetwork(plan.machine, plan.modes, ctx, release);
}
