// Entry point of `nspawn-netd dhcp-serve` when bin/nspawn-netd runs it: a bundle of its own
// (dist/nspawn-netd-dhcp.cjs, scripts/build.sh) with the DHCP server's code alone. Loaded through the
// sidecar's bundle, a standalone DHCP server also kept the source of the whole sidecar (netlink,
// firewall, DNS, …) and its compiled top level in its heap: ~2 MB of a server whose goal is a small
// peak RSS (docs/design/dhcp-performance.md). The same subcommand stays in src/net/netd/main.ts.
import { errorMessage } from '../errors.js';
import { dhcpServeMain } from './cli.js';

/** Runs `dhcp-serve ARGS...` (argv as bin/nspawn-netd got it); resolves to the exit code. */
export async function main(argv: readonly string[]): Promise<number> {
  try {
    return await dhcpServeMain(argv.slice(1));
  } catch (err) {
    process.stderr.write(`nspawn-netd: dhcp-serve: ${errorMessage(err)}\n`);
    return 1;
  }
}
