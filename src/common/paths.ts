// Where nspawn-ts keeps its files, shared by the launcher, machinectl-ts and the network library.

/** Where persistent state lives when nothing says otherwise. */
export const DEFAULT_STATE_DIR = '/var/lib/nspawn-ts';

/** Persistent state (leases, subnets, ephemeral layers): $NSPAWN_TS_STATE_DIR or /var/lib/nspawn-ts. */
export function defaultStateDir(env: NodeJS.ProcessEnv = process.env): string {
  return env.NSPAWN_TS_STATE_DIR || DEFAULT_STATE_DIR;
}

/** Runtime state (machine records): $NSPAWN_TS_RUN_DIR or /run/nspawn-ts. */
export function defaultRunDir(env: NodeJS.ProcessEnv = process.env): string {
  return env.NSPAWN_TS_RUN_DIR || '/run/nspawn-ts';
}
