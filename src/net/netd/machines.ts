// The running machines as the network subsystem needs them (model.ts RunningMachines), read from
// the machine registry's record files without the registry's lock (the records are replaced
// atomically): a read never waits, so the event loop that serves DHCP never blocks on a launcher.
import { defaultMachinesDir, readRecordFile, recordLive, recordNameOk } from '../../common/machine-records.js';
import { processAlive } from '../../common/proc.js';
import type { ProcessIdentity, RunningMachines } from '../model.js';

/** RunningMachines over the records in `dir` (default <$NSPAWN_TS_RUN_DIR or /run/nspawn-ts>/machines). */
export function registryMachines(dir?: string): RunningMachines {
  return {
    launcher(name: string): ProcessIdentity | undefined {
      if (!recordNameOk(name)) return undefined;
      const r = readRecordFile(dir ?? defaultMachinesDir(), name);
      if (r === undefined || r === 'corrupt' || !recordLive(r, (ref) => processAlive(ref))) return undefined;
      return r.launcher;
    },
  };
}
