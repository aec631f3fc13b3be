// The machine registry's record files, `<run dir>/machines/NAME.json`, as far as every reader needs
// them: where they are, which names may be file names, and reading one. The registry
// (src/runtime/registry.ts) writes them atomically (temp file + rename), so a reader needs no lock;
// the network library reads them (src/net/netd/machines.ts) without knowing the launcher.
import { readFileSync } from 'node:fs';
import { defaultRunDir } from './paths.js';
import type { ProcessRef } from './proc.js';

export const RECORD_VERSION = 1;

/** What every record has (the registry's MachineRecord adds the rest). */
export interface RecordCore {
  version: typeof RECORD_VERSION;
  name: string;
  /** the container's PID 1 (as the host sees it); absent until the launcher has started it */
  leader?: ProcessRef;
  /** the nspawn-ts process that runs (and will clean up) the machine */
  launcher: ProcessRef;
}

/** `<$NSPAWN_TS_RUN_DIR or /run/nspawn-ts>/machines` */
export function defaultMachinesDir(env: NodeJS.ProcessEnv = process.env): string {
  return `${defaultRunDir(env)}/machines`;
}

/**
 * A valid machine name, or an ephemeral one whose random suffix made it longer than 64: either way
 * safe as a file name (no '/', no leading '.'). Every valid machine name matches.
 */
export function recordNameOk(name: string): boolean {
  return /^[A-Za-z0-9][A-Za-z0-9.-]{0,100}$/.test(name);
}

/** The record of `name` in `dir`: undefined when there is none, 'corrupt' when it cannot be one. */
export function readRecordFile<T extends RecordCore>(dir: string, name: string): T | undefined | 'corrupt' {
  let text: string;
  try {
    text = readFileSync(`${dir}/${name}.json`, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
  try {
    const r = JSON.parse(text) as T;
    if (r.version !== RECORD_VERSION || r.name !== name || typeof r.launcher?.pid !== 'number') return 'corrupt';
    return r;
  } catch {
    return 'corrupt';
  }
}

/** Live: its leader or its launcher still runs (same PID and start time). */
export function recordLive(r: RecordCore, alive: (ref: ProcessRef) => boolean): boolean {
  return (r.leader !== undefined && alive(r.leader)) || alive(r.launcher);
}
