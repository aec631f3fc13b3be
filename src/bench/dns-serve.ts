// bench/dns's server process: our DNS server (src/net/dns, as nspawn-netd and the launcher run it)
// on one link address with N machine names, forwarding to the given upstream, no per-source rate
// limit (the load generator is one source). Prints "ready" once it listens; SIGTERM stops it.
import { DnsServer } from '../net/dns/index.js';

function arg(name: string, fallback?: string): string {
  const a = process.argv.find((x) => x.startsWith(`--${name}=`));
  const v = a?.slice(name.length + 3) ?? fallback;
  if (v === undefined) throw new Error(`--${name}= is required`);
  return v;
}

const address = arg('address');
const subnet = arg('subnet');
const count = Number(arg('machines', '100'));
const base = address.split('.').slice(0, 3).join('.');
const machines = Array.from({ length: count }, (_, i) => ({ name: `m${i}`, address: `${base}.${10 + i}` }));
const server = new DnsServer({ rate: 0, forwarder: { servers: [{ address: arg('upstream'), port: 53 }] } });
server.setLinks([{ ifname: 'bench', hostAddress: address, subnet, machines }]);
await server.ready();
if (server.bound().length !== 1) throw new Error(`cannot listen on ${address}:53`);
process.stdout.write('ready\n');
process.on('SIGTERM', () => {
  void server.close().then(() => process.exit(0));
});
