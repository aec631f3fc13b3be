// nspawn-cni's thin client (src/cni/thin.ts) against scripted sidecars in a process of their own (the
// client blocks while it waits, as it does in the plugin): one request and its answer; undefined
// (the plugin's own path) when nothing listens, the socket is stale, or the sidecar refuses the op;
// a connection broken before the answer is tried again; a sidecar that never answers is CNI error 11.
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, test } from 'vitest';
import { parseRequest, type CniRequest } from '../../src/net/netd/api.js';
import { askSidecar } from '../../src/cni/thin.js';

const cleanup: Array<() => void | Promise<void>> = [];
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f();
});

const REQ: CniRequest = { op: 'cni', command: 'ADD', containerId: 'cid1', netns: '/run/netns/x', ifname: 'eth0', args: 'K8S_POD_NAME=a', config: '{"cniVersion":"1.0.0","name":"n","type":"nspawn-cni"}' };

// a sidecar stand-in: logs each request line to LOG; BEHAVIOUR says how it answers the Nth connection
const SERVER = `
const net = require('node:net'), fs = require('node:fs');
const [path, log, behaviour] = process.argv.slice(1);
let n = 0;
net.createServer((s) => {
  const conn = ++n;
  let buf = '';
  s.on('data', (d) => {
    buf += d;
    if (!buf.includes('\\n')) return;
    fs.appendFileSync(log, buf);
    const answer = (o) => s.end(JSON.stringify(o) + '\\n');
    if (behaviour === 'answer') answer({ ok: true, result: { result: { interfaces: [], ips: [], routes: [], dns: {} } } });
    else if (behaviour === 'old') answer({ ok: false, error: { code: 'NETD_BAD_REQUEST', message: '"op" must be one of reserve, release' } });
    else if (behaviour === 'break-once') conn === 1 ? s.destroy() : answer({ ok: true, result: {} });
    else if (behaviour === 'busy-once') conn === 1 ? answer({ ok: false, error: { code: 'NETD_BUSY', message: 'busy' } }) : answer({ ok: true, result: {} });
    else if (behaviour === 'break') s.destroy();
    // 'silent': never answers
  });
}).listen(path, () => console.log('ready'));
`;

function dir(): string {
  const d = mkdtempSync(`${tmpdir()}/cni-thin-`);
  cleanup.push(() => rmSync(d, { recursive: true, force: true }));
  return d;
}

async function server(behaviour: string): Promise<{ path: string; lines: () => unknown[] }> {
  const d = dir();
  const path = `${d}/netd.sock`;
  const log = `${d}/requests`;
  const child: ChildProcess = spawn(process.execPath, ['-e', SERVER, path, log, behaviour], { stdio: ['ignore', 'pipe', 'inherit'] });
  cleanup.push(() => new Promise<void>((resolve) => {
    if (child.exitCode !== null) return resolve();
    child.once('exit', () => resolve());
    child.kill('SIGKILL');
  }));
  await new Promise<void>((resolve) => child.stdout?.once('data', () => resolve()));
  return { path, lines: () => (existsSync(log) ? readFileSync(log, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as unknown) : []) };
}

describe('the thin client', () => {
  test('sends one request with the call and returns the answer', async () => {
    const s = await server('answer');
    expect(askSidecar(s.path, REQ)).toEqual({ result: { interfaces: [], ips: [], routes: [], dns: {} } });
    expect(s.lines()).toEqual([REQ]);
    // what it sends is what the sidecar's API accepts
    expect(parseRequest(s.lines()[0])).toEqual(REQ);
  }, 30_000);

  test('undefined (the plugin does the call) when no socket, a stale socket, or a sidecar without the op', async () => {
    const d = dir();
    expect(askSidecar(`${d}/none.sock`, REQ)).toBeUndefined();
    // a socket file nobody accepts on (its sidecar was killed)
    spawnSync('python3', ['-c', `import socket; socket.socket(socket.AF_UNIX).bind("${d}/stale.sock")`]);
    expect(existsSync(`${d}/stale.sock`)).toBe(true);
    expect(askSidecar(`${d}/stale.sock`, REQ)).toBeUndefined();
    const old = await server('old');
    expect(askSidecar(old.path, REQ)).toBeUndefined();
    expect(old.lines()).toHaveLength(1);
    // a request over the sidecar's line limit is not sent
    const big = await server('answer');
    expect(askSidecar(big.path, { ...REQ, config: 'x'.repeat(17_000) })).toBeUndefined();
    expect(big.lines()).toHaveLength(0);
  }, 30_000);

  test('a connection broken before the answer, or a busy sidecar, is tried again', async () => {
    const s = await server('break-once');
    expect(askSidecar(s.path, REQ, { backoffMs: 1 })).toEqual({});
    expect(s.lines()).toHaveLength(2);
    const b = await server('busy-once');
    expect(askSidecar(b.path, REQ, { backoffMs: 1 })).toEqual({});
    expect(b.lines()).toHaveLength(2);
  }, 30_000);

  test('a sidecar that keeps breaking, or never answers, is CNI error 11 (try again later)', async () => {
    const s = await server('break');
    expect(() => askSidecar(s.path, REQ, { backoffMs: 1, attempts: 3 })).toThrow(expect.objectContaining({ code: 11, message: expect.stringContaining('failed 3 times') }) as Error);
    expect(s.lines()).toHaveLength(3);
    const q = await server('silent');
    const t0 = Date.now();
    expect(() => askSidecar(q.path, REQ, { timeoutMs: 300 })).toThrow(expect.objectContaining({ code: 11, message: expect.stringContaining('did not answer') }) as Error);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(290);
  }, 30_000);
});

describe('bin/nspawn-cni with a sidecar', () => {
  test('an ADD is one request and the answer printed: neither the plugin\'s bundle nor node:net is loaded', async () => {
    const s = await server('answer');
    const d = dir();
    // records what the process loaded, at its exit
    writeFileSync(`${d}/hook.cjs`, `const fs = require('fs'); const read = []; const orig = fs.readFileSync;
      fs.readFileSync = function (p, ...a) { read.push(String(p)); return orig.call(this, p, ...a); };
      process.on('exit', () => fs.writeFileSync(${JSON.stringify(`${d}/loaded.json`)}, JSON.stringify({ modules: process.moduleLoadList, read })));`);
    const config = JSON.stringify({ cniVersion: '0.4.0', name: 'n', type: 'nspawn-cni', netdSocket: s.path });
    const r = spawnSync(fileURLToPath(new URL('../../bin/nspawn-cni', import.meta.url)), [], {
      input: config, encoding: 'utf8',
      env: { PATH: process.env.PATH, NODE_OPTIONS: `--require ${d}/hook.cjs`, CNI_COMMAND: 'ADD', CNI_CONTAINERID: 'cid1', CNI_NETNS: '/run/netns/x', CNI_IFNAME: 'eth0', CNI_ARGS: 'K8S_POD_NAME=a' },
    });
    expect(r.status, r.stdout + r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual({ cniVersion: '0.4.0', interfaces: [], ips: [], routes: [], dns: {} });
    expect(s.lines()).toEqual([{ ...REQ, config }]);
    const loaded = JSON.parse(readFileSync(`${d}/loaded.json`, 'utf8')) as { modules: string[]; read: string[] };
    expect(loaded.modules).not.toContain('NativeModule net');
    expect(loaded.modules).not.toContain('NativeModule stream');
    expect(loaded.read.some((f) => f.endsWith('/dist/nspawn-cni.cjs'))).toBe(true);
    expect(loaded.read.filter((f) => f.includes('nspawn-cni-plugin'))).toEqual([]);
  }, 30_000);
});

describe('the "cni" op\'s request checks', () => {
  test('accepts a call; refuses names with "/", relative or missing namespaces, other commands', () => {
    expect(parseRequest(REQ)).toEqual(REQ);
    expect(parseRequest({ ...REQ, command: 'DEL', netns: '' })).toMatchObject({ command: 'DEL', netns: '' });
    for (const [bad, what] of [
      [{ netns: '' }, '"netns"'], [{ netns: 'x/y' }, '"netns"'], [{ netns: '/a\0b' }, '"netns"'], [{ ifname: 'a/b' }, '"ifname"'],
      [{ containerId: 'a/b' }, '"containerId"'], [{ containerId: '' }, '"containerId"'], [{ command: 'GC' }, '"command"'],
      [{ args: 'x'.repeat(5000) }, '"args"'], [{ config: null }, '"config"'],
    ] as Array<[Record<string, unknown>, string]>) {
      expect(() => parseRequest({ ...REQ, ...bad }), JSON.stringify(bad)).toThrow(expect.objectContaining({ code: 'NETD_BAD_REQUEST', message: expect.stringContaining(what) }) as Error);
    }
    const { config: _c, ...missing } = REQ;
    expect(() => parseRequest(missing)).toThrow(/"config" is missing/);
  });
});
