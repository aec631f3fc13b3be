// bench/dns's server process: our DNS server (src/net/dns, as nspawn-netd and the launcher run it)
// on one link address with N machine names, forwarding to the given upstream, no per-source rate
// limit (the load generator is one source). With --address6= (the link's ::1) and --prefix6= (its
// /64) it listens there too and the machines have IPv6 addresses (AAAA), as on a served link with
// IPv6. Prints "ready" once it listens; SIGTERM stops it.
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
const address6 = arg('address6', '');
const prefix6 = arg('prefix6', '');
const machines = Array.from({ length: count }, (_, i) => ({
  name: `m${i}`, address: `${base}.${10 + i}`, ...(prefix6 ? { address6: `${prefix6.replace(/::\/64$/, '')}::${(0x10 + i).toString(16)}` } : {}),
}));
const server = new DnsServer({ rate: 0, resolved: false, forwarder: { servers: [{ address: arg('upstream'), port: 53 }] } });
server.setLinks([{ ifname: 'bench', hostAddress: address, subnet, machines, ...(address6 ? { hostAddress6: address6, prefix6 } : {}) }]);
await server.ready();
if (server.bound().length !== (address6 ? 2 : 1)) throw new Error(`cannot listen on ${address}:53${address6 ? ` and [${address6}]:53` : ''}`);
process.stdout.write('ready\n');
process.on('SIGTERM', () => {
  void server.close().then(() => process.exit(0));
});
