// nspawn-netd's "cni" op (src/net/netd/api.ts): a whole nspawn-cni call — ADD, CHECK or DEL, as the
// runtime gave it to the plugin — done inside the running sidecar, so that the plugin's process is
// a thin client (src/cni/thin.ts) that sends one request and prints the answer.
//
// Why the sidecar runs the plugin's own operations (plugin.ts) with its own subsystem as the
// library, and not a generic "attach a container's link" op of the network library: one ADD is
// the record (written before anything exists), the veth pair under the zone lock, the reservation,
// the container's side, the neighbour flush and the rollback of all of these; a generic op would
// split that between two processes (the record and names here, the links there) or copy the CNI
// record into src/net. Run here, the calls are the same code under the same locks as the plugin's
// in-process path (the zone lock, cni.lock of the state directory, the state file's lock), so the
// two serve one host side by side and a DEL by either finds what the other made. The network
// library still knows nothing of CNI: it calls a handler given to it (SidecarDeps.cni) by
// src/cni/netd-main.ts, bin/nspawn-netd's entry.
import { logger } from '../log.js';
import { withLock } from '../common/lock.js';
import { sys } from '../native.js';
import type { CniRequest } from '../net/netd/api.js';
import type { SidecarLibrary } from '../net/netd/daemon.js';
import { type AddOutcome, CNI_ERR, CniError, parseConfig, parseEnv } from './config.js';
import { refuseCommand } from './main.js';
import { asCni, openNetns } from './netns.js';
import { cniAdd, cniCheck, cniDel, type LibraryProvider } from './plugin.js';

const log = logger('cni');

/** The op's answer: ADD's outcome, nothing (DEL, CHECK), or the CNI error the plugin prints. */
export interface CniAnswer {
  result?: AddOutcome;
  error?: { code: number; msg: string; details?: string };
}

/** Does one call; a CNI error is an answer (the thin client prints it), never a refusal of the request. */
export async function serveCni(req: CniRequest, lib: SidecarLibrary): Promise<CniAnswer> {
  const started = performance.now();
  log.debug(`${req.command} ${req.containerId.slice(0, 12)} ${req.ifname} begun`);
  try {
    const env = parseEnv({ CNI_COMMAND: req.command, CNI_CONTAINERID: req.containerId, CNI_NETNS: req.netns, CNI_IFNAME: req.ifname, CNI_ARGS: req.args });
    const cfg = parseConfig(req.config);
    refuseCommand(env.command, cfg);
    // the plugin runs these itself: the addresses are another plugin's, which it runs with the runtime's CNI_PATH
    if (cfg.ipam) throw new CniError(CNI_ERR.INVALID_CONFIG, 'a network whose "ipam" is another plugin is set up by nspawn-cni in its own process, not by nspawn-netd');
    if (env.command !== 'DEL') sys().close(openNetns(env.netns)); // refused before anything is made
    // the sidecar's subsystem, under the lock in-process plugins take around theirs
    const via: LibraryProvider = (fn) => withLock(`${lib.stateDir}/netd/cni.lock`, () => fn({
      reserve: (r) => lib.reserve({ machine: r.machine, mac: r.mac, kind: r.kind, ...(r.kind === 'zone' ? { zone: r.zone } : {}), ports: r.ports }),
      release: async (r) => { await lib.release({ machine: r.machine, kind: r.kind, ...(r.kind === 'zone' ? { zone: r.zone } : {}) }); },
    }), { timeoutMs: 30_000 });
    let answer: CniAnswer = {};
    if (env.command === 'ADD') answer = { result: await cniAdd(env, cfg, via) };
    else if (env.command === 'DEL') await cniDel(env, cfg, via);
    else await cniCheck(env, cfg);
    log.debug(`${req.command} ${req.containerId.slice(0, 12)} ${req.ifname} done in ${(performance.now() - started).toFixed(1)} ms`);
    return answer;
  } catch (err) {
    const e = err instanceof CniError ? err : asCni(err, `${req.command} of ${req.ifname} of container ${req.containerId.slice(0, 12)}`);
    log.debug(`${req.command} ${req.containerId.slice(0, 12)} ${req.ifname} failed: ${e.message}`);
    return { error: { code: e.code, msg: e.message, ...(e.details ? { details: e.details } : {}) } };
  }
}
