// CNI 1.1.0's network-wide commands. GC: every attachment of this network recorded here that the
// runtime no longer lists in "cni.dev/valid-attachments" is removed as its DEL would (links,
// reservation or ipam addresses, port mappings). STATUS: whether an ADD can work now (exit 0 with
// no output), else error 50 naming what is missing — also a pool with no subnet or address left.
import { accessSync, constants, mkdirSync } from 'node:fs';
import { errorMessage } from '../errors.js';
import { logger } from '../log.js';
import { Firewall } from '../net/firewall/nft.js';
import { CNI_ERR, CniError, type CniConfig, type CniEnv } from './config.js';
import { lookupPlugin } from './ipam.js';
import { listRecords, removeRecord } from './records.js';

const log = logger('cni');

export async function cniGc(env: CniEnv, cfg: CniConfig): Promise<string[]> {
  if (cfg.validAttachments === undefined) throw new CniError(CNI_ERR.INVALID_CONFIG, 'GC needs "cni.dev/valid-attachments" (the attachments to keep) in the configuration');
  const keep = new Set(cfg.validAttachments.map((a) => `${a.containerID}\0${a.ifname}`));
  const removed: string[] = [];
  const failed: string[] = [];
  for (const { path, rec } of listRecords(cfg)) {
    if (keep.has(`${rec.containerId}\0${rec.ifname}`)) continue;
    try {
      if (rec.ipam !== undefined) await (await import('./ipam-net.js')).ipamNetCollect(env, cfg, rec);
      else await (await import('./plugin.js')).teardown(cfg, rec);
      removeRecord(path);
      removed.push(`${rec.containerId}/${rec.ifname}`);
      log.info(`GC removed ${rec.ifname} of container ${rec.containerId.slice(0, 12)} (${rec.machine}) from network ${cfg.name}`);
    } catch (err) {
      failed.push(`${rec.containerId.slice(0, 12)}/${rec.ifname}: ${errorMessage(err)}`);
    }
  }
  if (failed.length) throw new CniError(CNI_ERR.SETUP_FAILED, `GC of network ${cfg.name} could not remove ${failed.length} attachment(s)`, failed.join('; '));
  return removed;
}

export async function cniStatus(env: CniEnv, cfg: CniConfig): Promise<void> {
  const unavailable = (msg: string): never => {
    throw new CniError(CNI_ERR.NOT_AVAILABLE, msg);
  };
  if (cfg.ipam && lookupPlugin(cfg.ipam.type, env.path) === undefined) {
    unavailable(`the ipam plugin "${cfg.ipam.type}" is not in CNI_PATH (${env.path.join(':') || 'empty'})`);
  }
  try {
    mkdirSync(`${cfg.stateDir}/cni`, { recursive: true, mode: 0o700 });
    accessSync(`${cfg.stateDir}/cni`, constants.W_OK);
  } catch (err) {
    unavailable(`the state directory ${cfg.stateDir} is not usable: ${errorMessage(err)}`);
  }
  try {
    new Firewall().close();
  } catch (err) {
    unavailable(`nftables cannot be used: ${errorMessage(err)}`);
  }
  // with an ipam plugin, the addresses are its business (plugins 1.1.1 answer no STATUS)
  if (!cfg.ipam) {
    const full = await (await import('./pool-room.js')).poolRoom(cfg);
    if (full !== undefined) unavailable(full);
  }
}
