// The entry of bin/nspawn-ts: parse the command line (cli.ts), merge .nspawn settings
// (settings.ts), build the subsystems' hooks (net/hooks.ts), launch (launcher.ts), and exit with
// the container's exit code.
import { logger, setLogLevel } from '../log.js';
import { runCli } from './cli.js';
import { launch } from './launcher.js';
import { launchHooks } from './net/hooks.js';
import { resolveLaunchSpec } from './settings.js';

export async function main(argv: readonly string[]): Promise<number> {
  return runCli(argv, {
    resolve: (cl) => resolveLaunchSpec(cl),
    onVerbose: () => {
      setLogLevel('debug');
      logger('launcher').debug('code loaded; command line parsed');
    },
    launch: (spec) => launch(spec, { hooks: () => launchHooks(spec) }),
  });
}

/** How long bin/nspawn-ts waits, after its clean-up, for the event loop to drain by itself. */
const END_GRACE_MS = 1000;

/**
 * bin/nspawn-ts's end: exit with `code` once nothing is left to do — at the latest END_GRACE_MS
 * after the launch returned (everything it made removed), whatever a library left open. A
 * forgotten timer or socket would otherwise keep a finished launcher alive (a stop timer armed
 * after the container's end kept it 30 s, past machinectl-ts terminate's 10 s). Named in the debug
 * log, as that is a bug.
 */
export function exitWhenDone(code: number): void {
  process.exitCode = code;
  setTimeout(() => {
    logger('launcher').debug(`still busy ${END_GRACE_MS} ms after the clean-up (${process.getActiveResourcesInfo().join(', ')}); exiting`);
    process.exit(code);
  }, END_GRACE_MS).unref();
}
