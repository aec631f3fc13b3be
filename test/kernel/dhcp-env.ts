// Test topology for the DHCP server against real peers: a server namespace and a client namespace
// joined by a veth (ds0 192.0.2.1/24 ↔ dc0, MAC 02:00:00:00:00:42), the server run in this process
// with its sockets made inside the server namespace (or as the nspawn-netd command), clients run with
// `ip netns exec`. Client scripts append one line per event to a file the test reads.
import { type ChildProcess, spawn } from 'node:child_process';
import { chmodSync, closeSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DhcpServer, type DhcpEvent, type DhcpServerOptions, type InterfaceConfig } from '../../src/dhcp/index.js';
import { isDebug, type LogLevel, setLogLevel, setLogSink } from '../../src/log.js';
import { killAndWait, runOk, waitFor } from '../helpers/exec.js';
import { type FdWatcher, POLL_READABLE, sys } from '../../src/native.js';
import { TestNetns } from '../helpers/netns.js';

export const SERVER_IP = '192.0.2.1';
export const CLIENT_MAC = '02:00:00:00:00:42';

/**
 * One script for all three clients: udhcpc passes the event as $1 (ip, mask in the environment),
 * dhclient and dhcpcd set $reason (new_ip_address, new_subnet_mask; dhcpcd also $protocol). It configures
 * the address unless dhcpcd does (so unicast renewals and releases have a source address) and logs
 * "EVENT IP". Clients clear the environment they give scripts, so the events file is written in.
 */
const clientScript = (events: string): string => `#!/bin/sh
EVENTS=${events}
ev="\${1:-$reason}"
addr="\${ip:-$new_ip_address}"
# the environment first, so a test that saw the event line finds it
env | sort > "$EVENTS.env.$ev.tmp" && mv "$EVENTS.env.$ev.tmp" "$EVENTS.env.$ev"
case "$ev" in
  bound|renew) ip addr replace "$ip/$mask" dev "$interface" ;;
  deconfig) ip addr flush dev "$interface" ;;
  PREINIT) ip link set "$interface" up ;;
  BOUND|RENEW|REBIND|REBOOT) [ -z "$protocol" ] && ip addr replace "$new_ip_address/$new_subnet_mask" dev "$interface" ;;
  EXPIRE|FAIL|RELEASE|STOP) [ -z "$protocol" ] && ip addr flush dev "$interface" ;;
esac
echo "$ev $addr" >> "$EVENTS"
exit 0
`;

export class DhcpEnv {
  readonly srv: TestNetns;
  readonly cli: TestNetns;
  readonly dir: string;
  readonly events: DhcpEvent[] = [];
  readonly leaseFile: string;
  readonly script: string;
  readonly clientEvents: string;
  ifindex = 0;
  server: DhcpServer | undefined;
  private children: ChildProcess[] = [];
  private restoreSink: ((line: string) => void) | undefined;
  private restoreLevel: LogLevel | undefined;
  readonly logLines: string[] = [];

  private constructor(srv: TestNetns, cli: TestNetns) {
    this.srv = srv;
    this.cli = cli;
    this.dir = mkdtempSync(join(tmpdir(), 'nspawn-dhcp-'));
    this.leaseFile = join(this.dir, 'leases');
    this.script = join(this.dir, 'client.sh');
    this.clientEvents = join(this.dir, 'events');
    writeFileSync(this.script, clientScript(this.clientEvents));
    chmodSync(this.script, 0o755);
    writeFileSync(this.clientEvents, '');
  }

  static async create(srv: TestNetns, opts: { serverAddress?: string; clientMac?: string; onTestFailed?: (fn: () => void) => void } = {}): Promise<DhcpEnv> {
    const cli = await TestNetns.create('cli');
    const env = new DhcpEnv(srv, cli);
    opts.onTestFailed?.(() => process.stderr.write(env.finalDump ?? env.dump()));
    try {
      await runOk('ip', ['link', 'add', 'ds0', 'netns', srv.name, 'type', 'veth', 'peer', 'name', 'dc0', 'netns', cli.name]);
      await cli.exec('ip', ['link', 'set', 'dc0', 'address', opts.clientMac ?? CLIENT_MAC]);
      await srv.exec('ip', ['addr', 'add', opts.serverAddress ?? `${SERVER_IP}/24`, 'dev', 'ds0']);
      await srv.exec('ip', ['link', 'set', 'ds0', 'up']);
      await cli.exec('ip', ['link', 'set', 'dc0', 'up']);
      env.ifindex = await ifindexOf(srv, 'ds0');
    } catch (err) {
      await env.destroy();
      throw err;
    }
    return env;
  }

  /** Starts a server in this process (sockets in the server namespace) serving ds0. */
  startServer(iface: Partial<InterfaceConfig> = {}, opts: Partial<DhcpServerOptions> = {}): DhcpServer {
    if (!this.restoreSink) {
      this.restoreSink = setLogSink((line) => this.logLines.push(line));
      this.restoreLevel = isDebug() ? undefined : 'info';
      setLogLevel('debug');
    }
    const server = new DhcpServer({
      netnsFd: this.srv.fd,
      leaseFile: this.leaseFile,
      onEvent: (e) => this.events.push(e),
      ...opts,
    });
    server.addInterface({ ifindex: this.ifindex, ifname: 'ds0', address: `${SERVER_IP}/24`, ...iface });
    server.start();
    this.server = server;
    return server;
  }

  async stopServer(): Promise<void> {
    const s = this.server;
    this.server = undefined;
    await s?.stop();
  }

  /** Starts a long-running client command in the client namespace; killed by destroy(). */
  startClient(args: string[], extraEnv: Record<string, string> = {}): ChildProcess {
    const log = openSync(join(this.dir, `client-${this.children.length}.log`), 'a');
    const child = spawn('ip', ['netns', 'exec', this.cli.name, ...args], {
      stdio: ['ignore', log, log],
      env: { ...process.env, EVENTS: this.clientEvents, ...extraEnv },
    });
    closeSync(log);
    this.children.push(child);
    return child;
  }

  /** Runs a client command to completion in the client namespace. */
  async runClient(args: string[], extraEnv: Record<string, string> = {}, timeoutMs = 30_000): Promise<void> {
    const child = this.startClient(args, extraEnv);
    await new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`${args.join(' ')} did not finish in ${timeoutMs} ms`)), timeoutMs);
      child.once('exit', () => {
        clearTimeout(t);
        resolve();
      });
    });
  }

  async kill(child: ChildProcess, signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    await killAndWait(child, signal);
  }

  /** Lines the client script logged ("bound 192.0.2.7", "RENEW 192.0.2.7", ...). */
  clientLog(): string[] {
    try {
      return readFileSync(this.clientEvents, 'utf8').split('\n').filter(Boolean);
    } catch {
      return [];
    }
  }

  clientEnv(event: string): Record<string, string> {
    const text = readFileSync(`${this.clientEvents}.env.${event}`, 'utf8');
    return Object.fromEntries(text.split('\n').filter((l) => l.includes('=')).map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));
  }

  waitClient(re: RegExp, what: string, timeoutMs = 20_000, after = 0): Promise<RegExpMatchArray> {
    return waitFor(() => {
      const lines = this.clientLog().slice(after);
      for (const l of lines) {
        const m = l.match(re);
        if (m) return m;
      }
      return undefined;
    }, what, timeoutMs, 50);
  }

  waitEvent(pred: (e: DhcpEvent) => boolean, what: string, timeoutMs = 20_000, after = 0): Promise<DhcpEvent> {
    return waitFor(() => this.events.slice(after).find(pred), what, timeoutMs, 20);
  }

  /** IPv4 addresses on the client's interface, by `ip -j addr` (an independent observer). */
  async clientAddresses(): Promise<string[]> {
    const out = await this.cli.ipJson<Array<{ addr_info: Array<{ family: string; local: string }> }>>(['addr', 'show', 'dev', 'dc0']);
    return out.flatMap((l) => l.addr_info.filter((a) => a.family === 'inet').map((a) => a.local));
  }

  /** What happened, for a failing test's output: server log lines, client events, client output. */
  dump(): string {
    let out = `--- server log\n${this.logLines.join('\n')}\n--- server events\n${this.events.map((e) => JSON.stringify(e)).join('\n')}\n--- client events\n${this.clientLog().join('\n')}\n`;
    for (let i = 0; i < this.children.length; i++) {
      try {
        out += `--- client ${i} output\n${readFileSync(join(this.dir, `client-${i}.log`), 'utf8')}`;
      } catch {
        // no output
      }
    }
    return out;
  }

  private finalDump: string | undefined;

  async destroy(): Promise<void> {
    this.finalDump = this.dump();
    for (const c of this.children) await killAndWait(c);
    this.children = [];
    await this.stopServer().catch(() => undefined);
    if (this.restoreSink) setLogSink(this.restoreSink);
    if (this.restoreLevel) setLogLevel(this.restoreLevel);
    await this.cli.destroy();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

export async function ifindexOf(ns: TestNetns, ifname: string): Promise<number> {
  const links = await ns.ipJson<Array<{ ifindex: number }>>(['link', 'show', 'dev', ifname]);
  const idx = links[0]?.ifindex;
  if (!idx) throw new Error(`no ifindex for ${ifname} in ${ns.name}`);
  return idx;
}

const AF_INET = 2;
const SOCK_DGRAM = 2;
const SOL_SOCKET = 1;
const SO_REUSEADDR = 2;
const SO_BROADCAST = 6;
const SO_BINDTODEVICE = 25;

export function sockaddrIn(ipText: string, port: number): Uint8Array {
  const b = new Uint8Array(16);
  const dv = new DataView(b.buffer);
  dv.setUint16(0, AF_INET, true);
  dv.setUint16(2, port, false);
  b.set(ipText.split('.').map(Number), 4);
  return b;
}

/**
 * A DHCP client socket of our own inside a namespace: UDP port 68 on one device, broadcasts allowed,
 * replies (sent with the broadcast bit) delivered to `onReply`. For load, durability and fuzz tests.
 */
export class UdpClient {
  readonly fd: number;
  private watcher: FdWatcher | undefined;
  private readonly buf = new Uint8Array(65536);

  constructor(netnsFd: number, ifname: string, port = 68) {
    const s = sys();
    this.fd = s.socket(AF_INET, SOCK_DGRAM, 0, netnsFd);
    try {
      s.setsockoptInt(this.fd, SOL_SOCKET, SO_REUSEADDR, 1);
      s.setsockoptInt(this.fd, SOL_SOCKET, SO_BROADCAST, 1);
      s.setsockoptBytes(this.fd, SOL_SOCKET, SO_BINDTODEVICE, new Uint8Array(Buffer.from(`${ifname}\0`)));
      s.bind(this.fd, sockaddrIn('0.0.0.0', port));
    } catch (err) {
      s.close(this.fd);
      throw err;
    }
  }

  onReply(handler: (bytes: Uint8Array) => void): void {
    const s = sys();
    this.watcher = new s.FdWatcher(this.fd, POLL_READABLE, () => {
      for (let i = 0; i < 256; i++) {
        const n = s.recv(this.fd, this.buf);
        if (n < 0) return;
        handler(this.buf.slice(0, n));
      }
    });
  }

  /** False when the socket buffer is full. */
  send(bytes: Uint8Array, to = '255.255.255.255', port = 67): boolean {
    try {
      sys().sendto(this.fd, bytes, sockaddrIn(to, port));
      return true;
    } catch (err) {
      if ((err as { code?: string }).code === 'EAGAIN') return false;
      throw err;
    }
  }

  close(): void {
    this.watcher?.stop();
    sys().close(this.fd);
  }
}

/** Runs bin/nspawn-netd dhcp-serve in a namespace; output collected. */
export class ServerProcess {
  readonly child: ChildProcess;
  output = '';

  constructor(ns: TestNetns, args: string[], env?: Record<string, string>) {
    const bin = new URL('../../bin/nspawn-netd', import.meta.url).pathname;
    this.child = spawn('ip', ['netns', 'exec', ns.name, process.execPath, bin, 'dhcp-serve', ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
    this.child.stdout?.on('data', (d: Buffer) => { this.output += d.toString(); });
    this.child.stderr?.on('data', (d: Buffer) => { this.output += d.toString(); });
  }

  get alive(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  waitOutput(re: RegExp, what: string, timeoutMs = 15_000): Promise<RegExpMatchArray> {
    return waitFor(() => this.output.match(re) ?? (this.alive ? undefined : Promise.reject(new Error(`server exited: ${this.output}`))), what, timeoutMs, 20);
  }

  async stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<number | null> {
    if (this.alive) {
      await new Promise<void>((resolve) => {
        this.child.once('exit', () => resolve());
        this.child.kill(signal);
      });
    }
    return this.child.exitCode;
  }
}
