// What nspawn-cni's plugin bundle (dist/nspawn-cni-plugin.cjs, loaded with its code cache in every
// in-process ADD, CHECK and DEL) carries: each module in it costs every call its share of loading.
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { expect, test } from 'vitest';

/** The modules esbuild put in a bundle (its "// path" line before each). */
function bundledModules(name: string): string[] {
  const file = fileURLToPath(new URL(`../../dist/${name}.cjs`, import.meta.url));
  return [...readFileSync(file, 'latin1').matchAll(/^\/\/ ((?:src|node_modules)\/\S+)$/gm)].map((m) => m[1]!);
}

test('the plugin bundle carries no DNS server: the one-shot never serves DNS (the sidecar\'s bundle does)', () => {
  const dns = (m: string): boolean => m.startsWith('src/net/dns/') || m.startsWith('node_modules/dns-packet/');
  expect(bundledModules('nspawn-netd').filter(dns)).toContain('src/net/dns/server.ts'); // the list is real
  expect(bundledModules('nspawn-cni-plugin').filter(dns)).toEqual([]);
});
