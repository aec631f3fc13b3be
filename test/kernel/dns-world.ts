// The DNS tests' world: a real upstream (dnsmasq) in the "internet" namespace of e2e-world.ts at
// 203.0.113.1 with test records, the host's /etc/resolv.conf bind-mounted (in the test run's private
// mount namespace) to point at it, and a resolver to ask from inside a namespace (node's c-ares,
// which retries over TCP on TC like any stub).
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { killAndWait, run, runOk, waitFor } from '../helpers/exec.js';
import { REMOTE, World } from './e2e-world.js';

export const UPSTREAM = REMOTE;
/** a forwarded name and its address (dnsmasq answers it, TTL 60) */
export const FWD_NAME = 'fwd.example';
export const FWD_ADDR = '198.51.100.7';
/** a TXT record larger than 1232 bytes: truncated over UDP, so asked again over TCP */
export const BIG_NAME = 'big.example';
export const BIG_STRINGS = Array.from({ length: 8 }, (_, i) => String.fromCharCode(97 + i).repeat(200));

export class Upstream {
  private constructor(private readonly child: ChildProcess, private readonly dir: string) {}

  /** dnsmasq at 203.0.113.1:53 in the world's uplink namespace. */
  static async start(world: World, extra: string[] = []): Promise<Upstream> {
    const dir = mkdtempSync(join(tmpdir(), 'dns-up-'));
    const args = [
      'netns', 'exec', world.uplink.name, 'dnsmasq', '-k', '--conf-file=/dev/null', '--no-resolv', '--no-hosts', '--user=root', '--pid-file=',
      '--bind-interfaces', `--listen-address=${UPSTREAM}`, '--local-ttl=60', `--address=/${FWD_NAME}/${FWD_ADDR}`, `--address=/${FWD_NAME}/2001:db8::7`,
      `--txt-record=${BIG_NAME},${BIG_STRINGS.join(',')}`, '--log-facility=-', ...extra,
    ];
    const child = spawn('ip', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    const u = new Upstream(child, dir);
    let out = '';
    child.stderr?.on('data', (d: Buffer) => { out += d.toString(); });
    await waitFor(async () => (await world.uplink.tryExec('ss', ['-Hlun', `src ${UPSTREAM}:53`])).stdout.includes(':53') || child.exitCode !== null,
      'dnsmasq listening', 10_000);
    if (child.exitCode !== null) throw new Error(`dnsmasq did not start: ${out}`);
    return u;
  }

  async stop(): Promise<void> {
    await killAndWait(this.child, 'SIGTERM');
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** /etc/resolv.conf of the test run replaced (bind mount) by one naming `servers`; undo() puts it back. */
export async function hostResolvConf(servers: readonly string[]): Promise<{ path: string; undo: () => Promise<void> }> {
  const dir = mkdtempSync(join(tmpdir(), 'dns-resolv-'));
  const path = join(dir, 'resolv.conf');
  writeFileSync(path, servers.map((s) => `nameserver ${s}\n`).join(''));
  await runOk('mount', ['--bind', path, '/etc/resolv.conf']);
  return {
    path,
    undo: async () => {
      await run('umount', ['/etc/resolv.conf']);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export type Resolved = { ok: unknown } | { err: string };

/**
 * Asks `server` for NAME/TYPE from inside namespace `netns` (undefined: here) with node's c-ares
 * resolver; `{ ok: answer }` or `{ err: 'ENOTFOUND' | 'ENODATA' | 'ESERVFAIL' | 'ETIMEOUT' | … }`.
 */
export async function resolveIn(netns: string | undefined, server: string, name: string, type = 'A', timeoutMs = 3000): Promise<Resolved> {
  const script = `const r = new (require('dns').promises.Resolver)({ timeout: ${timeoutMs}, tries: 1 }); r.setServers([${JSON.stringify(server)}]);
r.resolve(${JSON.stringify(name)}, ${JSON.stringify(type)}).then((a) => console.log(JSON.stringify({ ok: a })), (e) => console.log(JSON.stringify({ err: e.code })));`;
  const cmd = netns === undefined ? [process.execPath, '-e', script] : ['ip', 'netns', 'exec', netns, process.execPath, '-e', script];
  const r = await run(cmd[0] as string, cmd.slice(1), { timeoutMs: timeoutMs + 5000 });
  return JSON.parse(r.stdout.trim().split('\n').pop() || '{"err":"NO_OUTPUT"}') as Resolved;
}
