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
