// The subsystem's nft table over its life: made before the first entry (a launcher that finds it
// complete only adds its elements), reconciled to the state file when a sidecar starts, and removed
// when nothing is left in it.
import { errorMessage } from '../../errors.js';
import type { TableLayout } from '../firewall/nfnl-dump.js';
import { CHAIN_NAMES, ruleCommands, SET_NAMES, stateFromElements } from '../firewall/rules.js';
import type { SubsystemCore } from './core.js';
import { isMasqueradeOwner, masqueradeOwner } from './links.js';
import { recordedMappings } from './ports.js';

/** How many rules each of our chains has (ruleCommands), per table name. */
const wanted = new Map<string, Map<string, number>>();
function rulesWanted(table: string): Map<string, number> {
  let counts = wanted.get(table);
  if (!counts) {
    counts = new Map();
    for (const c of ruleCommands(table)) {
      const chain = 'add' in c && 'rule' in c.add ? c.add.rule.chain : undefined;
      if (chain !== undefined) counts.set(chain, (counts.get(chain) ?? 0) + 1);
    }
    wanted.set(table, counts);
  }
  return counts;
}

export class FirewallTable {
  private ready = false;

  constructor(private readonly core: SubsystemCore) {}

  /** Makes the table's layout (once per process, or again after it was removed). */
  ensure(): void {
    if (this.ready) return;
    // (re)writing the layout costs ~10 ms of nft work; a launcher (or a sidecar's one-shot) finding
    // it complete only adds its elements (the sidecar rewrites it at every start, which also
    // upgrades an old layout)
    const { mode, oneShot } = this.core;
    if ((mode !== 'embedded' && !oneShot) || !this.layoutComplete()) this.core.firewall.ensureTables();
    this.ready = true;
  }

  /** The masqueraded subnets (the masquerade sets alone: no listing of the port maps). */
  masqueraded(): string[] {
    return this.core.firewall.masquerade().map((m) => m.subnet);
  }

  /**
   * Whether our table has every chain, set and map and each chain its rules — read by nf_tables
   * dumps that carry no elements (Firewall.layout), so the check costs the same at 10,000 mappings.
   */
  private layoutComplete(): boolean {
    const { firewall } = this.core;
    let layout: TableLayout | undefined;
    try {
      layout = firewall.layout();
    } catch {
      return false; // unreadable: rewritten (which reports a real failure)
    }
    if (!layout) return false; // no table
    const want = rulesWanted(firewall.table);
    return CHAIN_NAMES.every((c) => layout.chains.has(c) && (layout.rules.get(c) ?? 0) === (want.get(c) ?? 0)) &&
      SET_NAMES.every((n) => layout.sets.has(n));
  }

  /** The firewall holds exactly the masquerade entries of the links in the state file. */
  reconcile(): void {
    const { store, firewall, machines, v6, log } = this.core;
    const state = store.peek();
    const masquerade = Object.values(state.links).flatMap((r) => [
      { subnet: r.subnet, owner: masqueradeOwner(r.kind, r.key) },
      ...(r.prefix6 !== undefined && v6?.masquerades ? [{ subnet: r.prefix6, owner: masqueradeOwner(r.kind, r.key) }] : []),
    ]);
    // port forwarding (ports.ts): exactly the ports recorded with the reservations
    const ports = recordedMappings(state);
    const elements = firewall.elements(); // [] when the table does not exist
    const current = stateFromElements(elements);
    if (masquerade.length === 0 && current.masquerade.length === 0 && ports.length === 0 && current.ports.length === 0) return;
    // mappings without a record belong to launchers that watch their machine's address
    // (ports-watch.ts): left alone while that launcher (state's portWatchers) or machine runs,
    // removed when it is gone
    const recorded = new Set(ports.map((p) => p.owner));
    const watched = new Set(Object.keys(state.portWatchers ?? {})); // their launchers run (the sweep before this took the others)
    const owns = (o: string | undefined): boolean => isMasqueradeOwner(o) || o === undefined || recorded.has(o) ||
      (!watched.has(o) && machines.launcher(o) === undefined);
    const done = firewall.reconcile({ masquerade, ports }, { owns, current: elements });
    this.ready = true;
    if (done.added.length || done.removed.length) {
      log.info('firewall reconciled', { added: done.added.map((e) => e.key), removed: done.removed.map((e) => e.key) });
    }
  }

  /**
   * Our table goes when nothing at all is left in it (no link served by anyone, no port mapping):
   * after an embedded launcher's last container, and when a sidecar stops — a running sidecar keeps
   * it, so the next container costs no re-creation (`stopping`: the sidecar's close()).
   */
  async dropIfEmpty(stopping = false): Promise<void> {
    const { mode, store, firewall, log } = this.core;
    if (mode === 'sidecar' && !stopping) return;
    await store.update((st) => {
      if (Object.keys(st.links).length > 0) return;
      try {
        if (firewall.elements().length === 0) {
          firewall.removeTables();
          this.ready = false;
        }
      } catch (err) {
        log.warn(`removing the empty firewall table failed: ${errorMessage(err)}`);
      }
    });
  }
}
