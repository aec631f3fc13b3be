// npm run demo:netlink — the rtnetlink client alone (npm run demo shows containers). It runs inside a
// private network namespace. With the rtnetlink client alone it builds the network systemd-nspawn
// would give a container — two namespaces, a veth with nspawn's names and MACs, addresses, a default
// route — shows it, pings across, watches it with the monitor, and takes it all down again.
import { randomBytes } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { errorMessage } from './errors.js';
import { sys } from './native.js';
import { CONTAINER_IFNAME, formatMac, readMachineId, vethHostIfname, vethMacs } from './net/naming.js';
import { type Address, type Link, type Route, type RtnlEvent, type RtnlMonitor, Rtnl } from './net/rtnl.js';

const MACHINE = 'nspawn-ts-demo-machine';
const HOST_V4 = '192.0.2.1/28';
const CONTAINER_V4 = '192.0.2.2/28';
const HOST_V6 = '2001:db8::1/64';
const CONTAINER_V6 = '2001:db8::2/64';

const started = Date.now();
let stepNo = 0;
function step(text: string): void {
  process.stdout.write(`[${++stepNo}] ${text}\n`);
}
function detail(text: string): void {
  process.stdout.write(`    ${text}\n`);
}

function machineId(): Uint8Array {
  try {
    return readMachineId();
  } catch {
    // no machine id on this system: any 16 bytes do for a demo
    return Uint8Array.from(randomBytes(16));
  }
}

/** One line per link, like `ip -br addr`: name, state, MAC, addresses. */
function brief(links: Link[], addrs: Address[]): string[] {
  return links.map((l) => {
    const mine = addrs.filter((a) => a.index === l.index && !a.address.startsWith('fe80')).map((a) => a.cidr);
    const state = l.up ? (l.lowerUp || l.name === 'lo' ? 'UP' : 'NO-CARRIER') : 'DOWN';
    return `${l.name.padEnd(16)} ${state.padEnd(10)} ${(l.mac ?? '').padEnd(17)}  ${mine.join(' ')}`.trimEnd();
  });
}

function routeLine(r: Route, links: Link[]): string {
  const dev = links.find((l) => l.index === r.oif)?.name ?? `#${r.oif}`;
  return [r.dst, r.gateway && `via ${r.gateway}`, `dev ${dev}`, r.metric !== undefined && `metric ${r.metric}`].filter(Boolean).join(' ');
}

async function show(label: string, r: Rtnl): Promise<void> {
  const [links, addrs, routes] = await Promise.all([r.listLinks(), r.listAddresses(), r.listRoutes()]);
  detail(`${label}:`);
  for (const line of brief(links, addrs)) detail(`  ${line}`);
  for (const rt of routes) detail(`  route ${routeLine(rt, links)}`);
}

/** ping from inside a namespace we hold by fd (busybox ping; nsenter enters the namespace for it). */
function ping(netnsFd: number, address: string): string {
  const res = spawnSync('nsenter', [`--net=/proc/${process.pid}/fd/${netnsFd}`, 'busybox', 'ping', '-c', '1', '-W', '2', address], { encoding: 'utf8', timeout: 10_000 });
  if (res.status !== 0) throw new Error(`ping ${address} failed: ${(res.stderr || res.stdout).trim()}`);
  const rtt = /time=([\d.]+) ms/.exec(res.stdout)?.[1];
  return rtt ? `${rtt} ms` : 'ok';
}

function summarize(ev: RtnlEvent): string {
  switch (ev.type) {
    case 'newlink':
    case 'dellink':
      return `${ev.type} ${ev.link.name}${ev.type === 'newlink' ? (ev.link.up ? ' up' : ' down') : ''}`;
    case 'newaddr':
    case 'deladdr':
      return `${ev.type} ${ev.address.cidr}`;
    default:
      return ev.type;
  }
}

async function main(): Promise<void> {
  process.stdout.write('nspawn-ts demo: the rtnetlink client on its own (the launcher comes later)\n');
  const s = sys();
  let hostNs: number | undefined;
  let containerNs: number | undefined;
  let host: Rtnl | undefined;
  let container: Rtnl | undefined;
  let monitor: RtnlMonitor | undefined;
  let veth: string | undefined;
  try {
    step('two network namespaces, "host" and "container", held by fd (nobody switches namespace)');
    hostNs = s.createNetns();
    containerNs = s.createNetns();
    host = Rtnl.open({ netnsFd: hostNs });
    container = Rtnl.open({ netnsFd: containerNs });
    monitor = container.monitor();
    const events: string[] = [];
    monitor.on('event', (ev) => events.push(summarize(ev)));
    detail(`host ns fd ${hostNs}, container ns fd ${containerNs}; a monitor watches the container's links and addresses`);

    step(`a veth as systemd-nspawn names it for machine "${MACHINE}"`);
    const ifname = vethHostIfname(MACHINE);
    const macs = vethMacs(machineId(), MACHINE);
    await host.createVeth({
      name: ifname.name, mac: formatMac(macs.host),
      peer: { name: CONTAINER_IFNAME, mac: formatMac(macs.container), netnsFd: containerNs },
    });
    veth = ifname.name;
    if (ifname.altname) await host.addAltnames(ifname.name, ifname.altname);
    detail(`host side ${ifname.name}${ifname.altname ? ` (shortened; alternative name ${ifname.altname})` : ''}, MAC ${formatMac(macs.host)}`);
    detail(`container side ${CONTAINER_IFNAME}, created directly in the container namespace, MAC ${formatMac(macs.container)}`);

    step('addresses, links up, the container\'s default routes');
    const [h4, h6, c4, c6] = [HOST_V4, HOST_V6, CONTAINER_V4, CONTAINER_V6].map((a) => a.split('/')[0] as string) as [string, string, string, string];
    await Promise.all([
      host.addAddress(ifname.name, HOST_V4, { broadcast: true }),
      host.addAddress(ifname.name, HOST_V6, { nodad: true }),
      container.addAddress(CONTAINER_IFNAME, CONTAINER_V4, { broadcast: true }),
      container.addAddress(CONTAINER_IFNAME, CONTAINER_V6, { nodad: true }),
    ]);
    await Promise.all([host.setUp('lo'), host.setUp(ifname.name), container.setUp('lo'), container.setUp(CONTAINER_IFNAME)]);
    await container.addRoute({ dst: 'default', gateway: h4 });
    await container.addRoute({ dst: 'default', gateway: h6, dev: CONTAINER_IFNAME });
    detail(`host ${HOST_V4} ${HOST_V6}; container ${CONTAINER_V4} ${CONTAINER_V6}; default via ${h4} and ${h6}`);

    step('what our client reads back (dumps of links, addresses, routes)');
    // the carrier comes up asynchronously once both ends are up
    for (let i = 0; i < 100 && !(await host.getLink(ifname.name))?.lowerUp; i++) await new Promise((r) => setTimeout(r, 20));
    await show('host', host);
    await show('container', container);

    step('ping across the veth');
    detail(`host → container ${c4}: ${ping(hostNs, c4)}, ${c6}: ${ping(hostNs, c6)}`);
    detail(`container → host ${h4}: ${ping(containerNs, h4)}, ${h6}: ${ping(containerNs, h6)}`);
    detail(`the monitor saw in the container: ${[...new Set(events)].join(', ')}`);

    step('teardown');
    monitor.close();
    const deleted = await host.deleteLink(ifname.name);
    veth = undefined;
    detail(`deleted ${ifname.name} (${deleted ? `its peer ${CONTAINER_IFNAME} went with it` : 'it was already gone'})`);
    const left = await container.listLinks();
    detail(`links left in the container namespace: ${left.map((l) => l.name).join(', ')}`);
    if (left.some((l) => l.name === CONTAINER_IFNAME)) throw new Error(`${CONTAINER_IFNAME} survived its peer`);
  } finally {
    // Whatever happened, leave nothing: the link, the sockets, the namespace fds (the last references).
    const errors: string[] = [];
    const attempt = async (fn: () => unknown): Promise<void> => {
      try {
        await fn();
      } catch (err) {
        errors.push(errorMessage(err));
      }
    };
    await attempt(() => monitor?.close());
    if (veth !== undefined) await attempt(() => host?.deleteLink(veth as string));
    await attempt(() => host?.close());
    await attempt(() => container?.close());
    if (hostNs !== undefined) await attempt(() => s.close(hostNs as number));
    if (containerNs !== undefined) await attempt(() => s.close(containerNs as number));
    if (errors.length) process.stderr.write(`demo: cleanup: ${errors.join('; ')}\n`);
  }
  const own = Rtnl.open();
  try {
    const links = await own.listLinks();
    detail(`closed both namespaces and their sockets; the demo's own namespace has only: ${links.map((l) => l.name).join(', ')}`);
  } finally {
    own.close();
  }
  process.stdout.write(`done in ${((Date.now() - started) / 1000).toFixed(2)} s\n`);
}

main().catch((err: unknown) => {
  process.stderr.write(`demo failed: ${errorMessage(err)}\n`);
  process.exit(1);
});
