// Real traffic between test namespaces: a TCP+UDP echo server that answers "PORT PEER-ADDRESS", a
// one-shot client, and a LAN client namespace wired to the "host" namespace at 198.51.100.2.
import type { ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { killAndWait, runOk, start, waitFor } from './exec.js';
import { TestNetns } from './netns.js';

const NODE = process.execPath;

// A TCP+UDP echo of the peer's address on each port given; prints "ready" when listening.
const SERVER = `
const net = require('net'), dgram = require('dgram');
const ports = process.argv.slice(1).map(Number);
let pending = ports.length * 2;
const ready = () => { if (--pending === 0) console.log('ready'); };
for (const port of ports) {
  net.createServer((s) => s.end(port + ' ' + s.remoteAddress.replace(/^::ffff:/, '') + '\\n')).listen(port, '::', ready);
  const u = dgram.createSocket({ type: 'udp6' });
  u.on('message', (m, r) => u.send(port + ' ' + r.address.replace(/^::ffff:/, '') + '\\n', r.port, r.address));
  u.bind(port, '::', ready);
}`;

// Connects (TCP) or sends (UDP) once; prints "OK <reply>", "ERR <code>" or "TIMEOUT".
const CLIENT = `
const [proto, host, port, payload] = process.argv.slice(1);
const done = (s) => { console.log(s); process.exit(0); };
setTimeout(() => done('TIMEOUT'), 3000);
if (proto === 'tcp') {
  const s = require('net').connect({ host, port: Number(port) });
  if (payload) s.end(payload);
  let d = ''; s.on('data', (x) => d += x); s.on('end', () => done('OK ' + d.trim()));
  s.on('error', (e) => done('ERR ' + e.code));
} else {
  const u = require('dgram').createSocket(host.includes(':') ? 'udp6' : 'udp4');
  u.on('message', (m) => done('OK ' + m.toString().trim()));
  u.on('error', (e) => done('ERR ' + e.code));
  u.send(payload || 'x', Number(port), host);
}`;

/** One connection (TCP) or datagram (UDP) from namespace `from` (a path or name; undefined: this one). */
export async function connect(from: TestNetns | undefined, proto: 'tcp' | 'udp', host: string, port: number, payload = ''): Promise<string> {
  const args = ['-e', CLIENT, proto, host, String(port), payload];
  if (!from) return (await runOk(NODE, args, { timeoutMs: 10_000 })).trim();
  return (await from.exec(NODE, args, { timeoutMs: 10_000 })).trim();
}

/** Starts the echo server on `ports` in `ns`; resolves once it listens. */
export async function serve(ns: TestNetns, ports: number[]): Promise<ChildProcess> {
  const child = start('ip', ['netns', 'exec', ns.name, NODE, '-e', SERVER, ...ports.map(String)]);
  let out = '';
  child.stdout?.on('data', (d: Buffer) => { out += d.toString(); });
  try {
    await waitFor(() => out.includes('ready'), `echo server in ${ns.name} on ${ports.join(',')}`, 10_000);
  } catch (err) {
    await killAndWait(child);
    throw err;
  }
  return child;
}

/** A LAN client: namespace with c0 198.51.100.2/24, wired to the host's c-host 198.51.100.1/24. */
export interface LanClient {
  ns: TestNetns;
  hostAddress: string;
  address: string;
  destroy(): Promise<void>;
}

/** `host`: the host namespace (undefined: the caller's, i.e. the test run's). */
export async function lanClient(host?: TestNetns, label = 'client'): Promise<LanClient> {
  const ns = await TestNetns.create(label);
  const hostIp = (...a: string[]) => runOk('ip', host ? ['-n', host.name, ...a] : a);
  try {
    await hostIp('link', 'add', 'c-host', 'type', 'veth', 'peer', 'name', 'c0', 'netns', ns.name);
    await hostIp('addr', 'add', '198.51.100.1/24', 'dev', 'c-host');
    await hostIp('link', 'set', 'c-host', 'up');
    await ns.exec('ip', ['addr', 'add', '198.51.100.2/24', 'dev', 'c0']);
    await ns.exec('ip', ['link', 'set', 'c0', 'up']);
    await ns.exec('ip', ['route', 'add', 'default', 'via', '198.51.100.1']);
  } catch (err) {
    await ns.destroy();
    throw err;
  }
  return {
    ns, hostAddress: '198.51.100.1', address: '198.51.100.2',
    async destroy() {
      await ns.destroy(); // c0 goes with it, and c-host with its peer
    },
  };
}

/** A static build of test/helpers/NAME.c, to run inside busybox roots; built once (named by its source's hash). */
export async function staticHelper(name: string): Promise<string> {
  const src = fileURLToPath(new URL(`./${name}.c`, import.meta.url));
  const dir = '/var/cache/nspawn-ts/bin';
  const bin = `${dir}/${name}-${createHash('sha256').update(readFileSync(src)).digest('hex').slice(0, 12)}`;
  if (existsSync(bin)) return bin;
  mkdirSync(dir, { recursive: true });
  const tmp = `${bin}.${process.pid}.tmp`;
  await runOk('cc', ['-static', '-O2', '-o', tmp, src]);
  renameSync(tmp, bin);
  return bin;
}

/** A static udp-echo binary (test/helpers/udp-echo.c) for busybox roots. */
export function udpEchoBinary(): Promise<string> {
  return staticHelper('udp-echo');
}
