// Entry point of bin/nspawn-netd: dispatches the first argument to a subcommand. To add one, add an
// entry to SUBCOMMANDS (its module is loaded only when it runs); everything else prints the list.
import { errorMessage } from '../../errors.js';
import type { SidecarDeps } from './daemon.js';

export interface Subcommand {
  summary: string;
  /** Runs with the arguments after the subcommand name; resolves to the exit code. */
  run(argv: readonly string[]): Promise<number>;
}

export const SUBCOMMANDS: Record<string, Subcommand> = {
  'dhcp-serve': {
    summary: 'serve DHCPv4 on interfaces, in the foreground (--help for options)',
    run: async (argv) => (await import('../../dhcp/cli.js')).dhcpServeMain(argv),
  },
};

function subcommandList(): string {
  const width = Math.max(...Object.keys(SUBCOMMANDS).map((n) => n.length));
  return `Subcommands:\n${Object.entries(SUBCOMMANDS).map(([name, s]) => `  ${name.padEnd(width)}  ${s.summary}`).join('\n')}`;
}

function usage(): string {
  return `Usage: nspawn-netd [OPTIONS]   (the sidecar; --help lists its options)\n       nspawn-netd SUBCOMMAND [ARGS...]\n\n${subcommandList()}`;
}

/** `deps`: what the sidecar is given by the command that embeds it (src/cni/netd-main.ts: the CNI op). */
export async function main(argv: readonly string[], deps: SidecarDeps = {}): Promise<number> {
  const [name, ...rest] = argv;
  // no subcommand, or options only: the network sidecar (src/net/netd/daemon.ts)
  if (name === undefined || (name.startsWith('-') && name !== '-h' && name !== '--help')) {
    return (await import('./daemon.js')).sidecarMain(argv, deps);
  }
  if (name === '-h' || name === '--help') {
    // the sidecar's options (from its option table), then the subcommands
    process.stdout.write((await import('./daemon.js')).sidecarHelp(subcommandList()) + '\n');
    return 0;
  }
  const sub = name === undefined ? undefined : SUBCOMMANDS[name];
  if (!sub) {
    process.stderr.write(`nspawn-netd: ${name === undefined ? 'no subcommand given' : `unknown subcommand "${name}"`}; available: ${Object.keys(SUBCOMMANDS).join(', ')}\n\n${usage()}\n`);
    return 1;
  }
  try {
    return await sub.run(rest);
  } catch (err) {
    process.stderr.write(`nspawn-netd: ${name}: ${errorMessage(err)}\n`);
    return 1;
  }
}
