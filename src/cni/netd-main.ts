// bin/nspawn-netd's entry (scripts/build.sh bundles it): the network library's sidecar and its
// subcommands (src/net/netd/main.ts) with the CNI plugin's "cni" op plugged in. The library never
// imports src/cni; the plugin's layer, which builds on the library, joins the two here. The op's
// code (src/cni/sidecar-op.ts says why the sidecar runs the plugin's own operations) is in the
// same bundle, so it shares the sidecar's modules, but it runs only from the first CNI call on.
import type { CniHandler } from '../net/netd/daemon.js';
import { main as netdMain } from '../net/netd/main.js';

const cni: CniHandler = async (req, lib) => (await import('./sidecar-op.js')).serveCni(req, lib);

export function main(argv: readonly string[]): Promise<number> {
  return netdMain(argv, { cni });
}
