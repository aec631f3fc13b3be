// nspawn-ts's command line: `runCli` and the help. The parts: cli-types.ts (what parsing gives),
// cli-values.ts (value parsers, shared with .nspawn files), cli-options.ts (the option table and
// parse_argv), cli-verify.ts (verify_arguments after the settings file is merged).

import { ConfigError } from '../errors.js';
import type { LaunchSpec } from './spec.js';
export * from './cli-types.js';
export * from './cli-values.js';
export { helpText, parseCommandLine } from './cli-options.js';
export { verifyLaunchSpec } from './cli-verify.js';
export { versionText } from './cli-help.js';
import { formatCliError } from './cli-values.js';
import { defaultCliEnvironment, type CliEnvironment, type CommandLine } from './cli-types.js';
import { parseCommandLine } from './cli-options.js';

// ---------------------------------------------------------------------------------------------
// main

export interface CliIo {
  stdout: (text: string) => void;
  stderr: (text: string) => void;
}

/**
 * The whole command: parse, merge settings and verify (`resolve`), then `launch`. Prints help or
 * version, or `nspawn-ts: MESSAGE` for bad input and returns 1 with nothing created. Returns the
 * exit code.
 */
export async function runCli(
  argv: readonly string[],
  deps: {
    io?: CliIo;
    env?: CliEnvironment;
    /** command line → final LaunchSpec: settings.ts's resolveLaunchSpec (merges .nspawn files, verifies) */
    resolve: (cl: CommandLine) => LaunchSpec;
    onVerbose?: () => void;
    launch: (spec: LaunchSpec, cl: CommandLine) => Promise<number>;
  },
): Promise<number> {
  const io = deps.io ?? { stdout: (t) => process.stdout.write(t), stderr: (t) => process.stderr.write(t) };
  let cl: CommandLine;
  let spec: LaunchSpec;
  try {
    const r = parseCommandLine(argv, deps.env ?? defaultCliEnvironment());
    if (r.action === 'help' || r.action === 'version') {
      io.stdout(r.text.endsWith('\n') ? r.text : r.text + '\n');
      return 0;
    }
    cl = r;
    if (cl.verbose) deps.onVerbose?.();
    spec = deps.resolve(cl);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    io.stderr(formatCliError(err) + '\n');
    return 1;
  }
  return deps.launch(spec, cl);
}
