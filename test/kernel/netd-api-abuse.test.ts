// bin/nspawn-netd's API socket under hostile clients: a process that is not root (a real one,
// uid 65534 through setpriv) is refused by SO_PEERCRED even when the socket's mode lets it in; every
// malformed request gets a specific error; overlong lines, a half line that stalls, a flood of
// connections and a client that never reads its answers are bounded. Afterwards the daemon still
// answers, and nothing on the host changed (state file, served links, firewall).
import { type ChildProcess, spawn } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createConnection, type Socket } from 'node:net';
import { fileURLToPath } from 'node:url';
import { describe, expect } from 'vitest';
import { ktest } from '../helpers/kernel.js';
import { killAndWait, run, runOk, waitFor } from '../helpers/exec.js';
import { NetdClient } from '../../src/net/netd/client.js';
import type { NetdResponse } from '../../src/net/netd/api.js';

const NETD = fileURLToPath(new URL('../../bin/nspawn-netd', import.meta.url));

interface Daemon {
  child: ChildProcess;
  dir: string;
  socket: string;
  log: () => string;
  stop: () => Promise<void>;
}

async function startDaemon(): Promise<Daemon> {
  const dir = mkdtempSync('/var/lib/nspawn-ts/netd-abuse-');
  const socket = `${dir}/netd.sock`;
  const child = spawn(process.execPath, [NETD, `--state-dir=${dir}/state`, `--socket=${socket}`, '--dns=192.0.2.53'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout?.on('data', (d: Buffer) => { out += d.toString(); });
  child.stderr?.on('data', (d: Buffer) => { out += d.toString(); });
  const c = await waitFor(() => NetdClient.connect(socket), 'the sidecar socket', 15_000, 20);
  c.close();
  return {
    child, dir, socket, log: () => out,
    stop: async () => {
      await killAndWait(child, 'SIGTERM');
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** One connection; lines as they come. */
class Raw {
  readonly lines: string[] = [];
  closed = false;
  private buf = '';
  private constructor(readonly sock: Socket) {
    sock.setEncoding('utf8');
    sock.on('data', (d: string) => {
      this.buf += d;
      for (let nl = this.buf.indexOf('\n'); nl >= 0; nl = this.buf.indexOf('\n')) {
        this.lines.push(this.buf.slice(0, nl));
        this.buf = this.buf.slice(nl + 1);
      }
    });
    sock.on('error', () => undefined);
    sock.on('close', () => { this.closed = true; });
  }

  /** Connects; a full listen backlog (EAGAIN: the daemon has not accepted the ones before yet) is retried. */
  static async open(path: string): Promise<Raw> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await new Promise<Raw>((resolve, reject) => {
          const s = createConnection(path);
          s.once('connect', () => resolve(new Raw(s)));
          s.once('error', reject);
        });
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EAGAIN' || attempt >= 200) throw err;
        await new Promise((r) => setTimeout(r, 10));
      }
    }
  }

  async next(timeoutMs = 10_000): Promise<NetdResponse> {
    const n = this.lines.length;
    await waitFor(() => this.lines.length > n || this.closed, 'an answer', timeoutMs, 5);
    const line = this.lines[n];
    if (line === undefined) throw new Error('the connection closed without an answer');
    return JSON.parse(line) as NetdResponse;
  }

  async ask(line: string | Buffer): Promise<NetdResponse> {
    const answer = this.next();
    this.sock.write(line);
    return answer;
  }

  close(): void {
    this.sock.destroy();
  }
}

/** What the host looks like to the sidecar: its state file, its served links, our firewall table. */
async function hostView(d: Daemon): Promise<{ state: string; list: unknown; nft: string }> {
  const c = (await NetdClient.connect(d.socket))!;
  try {
    return {
      state: readFileSync(`${d.dir}/state/netd/state.json`, 'utf8'),
      list: await c.request({ op: 'list' }),
      nft: (await runOk('nft', ['list', 'table', 'inet', 'nspawn-ts'])),
    };
  } finally {
    c.close();
  }
}

describe('nspawn-netd API socket', () => {
  ktest('a process that is not root is refused (SO_PEERCRED) with its uid named, even when the socket mode lets it in', async ({ netns }) => {
    const d = await startDaemon();
    try {
      await runOk('ip', ['link', 'add', 've-abuse', 'type', 'veth', 'peer', 'name', 'host0', 'netns', netns.name]);
      await waitFor(async () => ((await hostView(d)).list as unknown[]).length === 1, 've-abuse served');
      const before = await hostView(d);
      // made accessible by mistake: the mode no longer protects it
      chmodSync(d.dir, 0o755);
      chmodSync(d.socket, 0o666);
      const script = `const s=require('net').connect(${JSON.stringify(d.socket)});let o='';s.setEncoding('utf8');`
        + `s.on('connect',()=>s.write(JSON.stringify({op:'release',machine:'abuse',kind:'veth'})+'\\n'));`
        + `s.on('data',x=>o+=x);s.on('close',()=>{process.stdout.write(o);process.exit(0)});s.on('error',e=>{process.stdout.write(o+'ERR '+e.code);process.exit(0)});`
        + 'setTimeout(()=>{process.stdout.write(o+"TIMEOUT");process.exit(1)},10000)';
      const r = await run('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', '--', process.execPath, '-e', script], { cwd: '/' });
      expect(r.code).toBe(0);
      const answer = JSON.parse(r.stdout.split('\n')[0] ?? '') as NetdResponse;
      expect(answer).toMatchObject({ ok: false, error: { code: 'NETD_PERMISSION_DENIED' } });
      const message = (answer as { error: { message: string } }).error.message;
      expect(message).toContain('uid 65534');
      expect(message).toContain('only for root (uid 0)');
      expect(d.log()).toContain('refused an API connection from uid 65534');
      // nothing changed, and root is still served
      expect(await hostView(d)).toEqual(before);
      await runOk('ip', ['link', 'del', 've-abuse']);
      await waitFor(async () => ((await hostView(d)).list as unknown[]).length === 0, 've-abuse no longer served');
    } finally {
      await run('ip', ['link', 'del', 've-abuse']);
      await d.stop();
    }
  });

  ktest('refused peers are closed at once and never count toward the connection cap: 200 held by uid 65534 do not lock root out', async () => {
    const d = await startDaemon();
    try {
      chmodSync(d.dir, 0o755);
      chmodSync(d.socket, 0o666);
      // uid 65534 opens 200 connections and holds them (never writes, never closes)
      const script = `const n=200;let open=0,closed=0,lines=[];const t0=Date.now();`
        + `for(let i=0;i<n;i++){const s=require('net').connect(${JSON.stringify(d.socket)});let o='';s.setEncoding('utf8');`
        + `s.on('connect',()=>{if(++open===n)console.log('held')});s.on('data',x=>o+=x);s.on('error',()=>{});`
        + `s.on('close',()=>{lines.push(o.split('\\n')[0]);if(++closed===n){console.log('closed '+(Date.now()-t0)+' '+JSON.stringify(lines));process.exit(0)}})}`
        + 'setTimeout(()=>{console.log("TIMEOUT "+closed);process.exit(1)},20000)';
      const child = spawn('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', '--', process.execPath, '-e', script], { cwd: '/', stdio: ['ignore', 'pipe', 'inherit'] });
      let out = '';
      child.stdout?.on('data', (x: Buffer) => { out += x.toString(); });
      try {
        await waitFor(() => out.includes('held') || out.includes('closed') || child.exitCode !== null, 'the 200 connections', 10_000, 5);
        // root is served at once, not told the sidecar is busy
        const root = await Raw.open(d.socket);
        try {
          expect(await root.ask('{"op":"status"}\n')).toMatchObject({ ok: true });
        } finally {
          root.close();
        }
        await waitFor(() => child.exitCode !== null, 'the refused connections to be closed', 15_000);
      } finally {
        if (child.exitCode === null) await killAndWait(child);
      }
      const m = /^closed (\d+) (.*)$/m.exec(out);
      expect(m, out).not.toBeNull();
      // every one told why, and closed by the sidecar well before any request timeout (5 s)
      expect(Number(m?.[1])).toBeLessThan(3_000);
      const lines = JSON.parse(m?.[2] ?? '[]') as string[];
      expect(lines).toHaveLength(200);
      for (const l of lines) expect(JSON.parse(l)).toMatchObject({ ok: false, error: { code: 'NETD_PERMISSION_DENIED' } });
    } finally {
      await d.stop();
    }
  });

  ktest('a request line has an absolute deadline: one byte every second does not hold a connection', async () => {
    const d = await startDaemon();
    const c = await Raw.open(d.socket);
    let drip: NodeJS.Timeout | undefined;
    try {
      const t0 = Date.now();
      const answer = c.next(20_000);
      // each byte well within the 5 s request timeout of the one before it
      const bytes = '{"op":"status","id":"' + 'x'.repeat(30);
      let i = 0;
      drip = setInterval(() => { if (!c.closed && i < bytes.length) c.sock.write(bytes[i++] as string); }, 1_000);
      expect(await answer).toMatchObject({ ok: false, error: { code: 'NETD_BAD_REQUEST', message: expect.stringContaining('must end (newline) within 5000 ms') } });
      await waitFor(() => c.closed, 'the trickling connection to close', 5_000);
      const took = Date.now() - t0;
      expect(took).toBeGreaterThanOrEqual(4_500);
      expect(took).toBeLessThan(7_500);
      // a line that ends in time, after a pause between requests, is served as always
      const ok = await Raw.open(d.socket);
      try {
        await new Promise((r) => setTimeout(r, 1_500));
        expect(await ok.ask('{"op":"status"}\n')).toMatchObject({ ok: true });
      } finally {
        ok.close();
      }
    } finally {
      if (drip) clearInterval(drip);
      c.close();
      await d.stop();
    }
  });

  ktest('malformed requests get specific errors; long, stalled, flooding and non-reading clients are bounded; the daemon still serves and nothing changed', async ({ netns }) => {
    const d = await startDaemon();
    const raws: Raw[] = [];
    try {
      await runOk('ip', ['link', 'add', 've-abuse', 'type', 'veth', 'peer', 'name', 'host0', 'netns', netns.name]);
      await waitFor(async () => ((await hostView(d)).list as unknown[]).length === 1, 've-abuse served');
      const before = await hostView(d);
      const c = await Raw.open(d.socket);
      raws.push(c);
      const mac = '02:00:5e:10:00:01';
      const bad: Array<[string | Buffer, RegExp]> = [
        ['not json\n', /one JSON object per line/],
        ['[]\n', /a request is a JSON object/],
        ['42\n', /a request is a JSON object/],
        ['null\n', /a request is a JSON object/],
        ['{}\n', /"op" must be one of/],
        ['{"op":"fly"}\n', /"op" must be one of .*; got "fly"/],
        ['{"op":"status","extra":1}\n', /unknown field "extra"/],
        ['{"__proto__":{"op":"status"}}\n', /"op" must be one of/],
        [`{"op":"reserve","machine":1,"mac":"${mac}","kind":"veth"}\n`, /"machine" must be a string, got number/],
        [`{"op":"reserve","machine":"../etc","mac":"${mac}","kind":"veth"}\n`, /not a valid machine name/],
        [`{"op":"reserve","machine":"-x","mac":"${mac}","kind":"veth"}\n`, /not a valid machine name/],
        [`{"op":"reserve","machine":"${'a'.repeat(65)}","mac":"${mac}","kind":"veth"}\n`, /not a valid machine name/],
        ['{"op":"release","machine":"a b","kind":"veth"}\n', /not a valid machine name/],
        ['{"op":"release","machine":"","kind":"veth"}\n', /not a valid machine name/],
        [`{"op":"reserve","machine":"abuse","mac":"${mac}","kind":"zone"}\n`, /"zone" is missing/],
        [`{"op":"reserve","machine":"abuse","mac":"${mac}","kind":"bridge"}\n`, /"kind" must be "veth" or "zone"/],
        ['{"op":"reserve","machine":"abuse","mac":"nope","kind":"veth"}\n', /not a MAC address/],
        [`{"op":"reserve","machine":"abuse","mac":"${mac}","kind":"veth","ports":"tcp:80"}\n`, /"ports" must be a list/],
        [`{"op":"reserve","machine":"abuse","mac":"${mac}","kind":"veth","ports":[80]}\n`, /"ports"\[0\] must be a string/],
        [`{"op":"reserve","machine":"abuse","mac":"${mac}","kind":"veth","ports":["tcp:99999:80"]}\n`, /"ports"\[0\]/],
        [`{"op":"reserve","machine":"abuse","mac":"${mac}","kind":"veth","portLoopback":"yes"}\n`, /"portLoopback" must be true or false/],
        ['{"op":"check-ports","machine":"abuse","ports":["tcp:80","tcp:80"]}\n', /listed twice/],
        ['{"op":"leases","ifname":"../../x"}\n', /is not an interface name/],
        ['{"op":"status","id":{"x":1}}\n', /"id" must be a string or number/],
        [`${'['.repeat(8000)}${']'.repeat(8000)}\n`, /a request is (a JSON object|one JSON object per line)/],
        [Buffer.concat([Buffer.from('{"op":"release","machine":"'), Buffer.from([0xff, 0xfe, 0xc3]), Buffer.from('","kind":"veth"}\n')]), /not a valid machine name/],
      ];
      for (const [line, message] of bad) {
        const r = await c.ask(line);
        expect(r, String(line).slice(0, 80)).toMatchObject({ ok: false, error: { code: 'NETD_BAD_REQUEST' } });
        expect((r as { error: { message: string } }).error.message).toMatch(message);
      }
      // a request for a link that does not exist is refused by the subsystem, changing nothing
      expect(await c.ask(`{"op":"reserve","machine":"nolink","mac":"${mac}","kind":"veth"}\n`)).toMatchObject({ ok: false, error: { code: 'NETD_NO_LINK' } });
      // the same connection still works
      expect(await c.ask('{"op":"status","id":"after"}\n')).toMatchObject({ ok: true, id: 'after' });

      // an overlong line: an error, and the connection is closed
      const long = await Raw.open(d.socket);
      raws.push(long);
      expect(await long.ask(`{"op":"status","id":"${'y'.repeat(40_000)}`)).toMatchObject({ ok: false, error: { code: 'NETD_BAD_REQUEST', message: expect.stringContaining('at most 16384 bytes') } });
      await waitFor(() => long.closed, 'the overlong connection to close');

      // half a line, then nothing: an error within the request timeout, and the connection is closed
      const stall = await Raw.open(d.socket);
      raws.push(stall);
      const t0 = Date.now();
      expect(await stall.ask('{"op":"sta')).toMatchObject({ ok: false, error: { code: 'NETD_BAD_REQUEST', message: expect.stringContaining('must end (newline) within') } });
      expect(Date.now() - t0).toBeLessThan(9_000);
      await waitFor(() => stall.closed, 'the stalled connection to close');

      // a client that sends many requests and never reads: the daemon stops reading it, and others are served meanwhile
      const hog = await Raw.open(d.socket);
      raws.push(hog);
      hog.sock.pause();
      hog.sock.write('{"op":"list"}\n'.repeat(50_000));
      const other = await Raw.open(d.socket);
      raws.push(other);
      const t1 = Date.now();
      expect(await other.ask('{"op":"status"}\n')).toMatchObject({ ok: true });
      expect(Date.now() - t1).toBeLessThan(3_000);
      hog.close();
      other.close();

      // a flood of 2000 connections: at most 128 are held, the rest are told NETD_BUSY; nothing stalls
      // (in batches; more at once than the listen backlog holds is the kernel's EAGAIN to the client, retried)
      const flood: Raw[] = [];
      for (let i = 0; i < 20; i++) flood.push(...await Promise.all(Array.from({ length: 100 }, () => Raw.open(d.socket))));
      raws.push(...flood);
      await waitFor(() => flood.filter((f) => f.closed).length >= 2000 - 128, 'connections beyond the limit to be refused', 15_000);
      const busy = flood.filter((f) => f.lines.length > 0).map((f) => JSON.parse(f.lines[0] as string) as NetdResponse);
      expect(busy.length).toBeGreaterThanOrEqual(2000 - 128);
      for (const b of busy) expect(b).toMatchObject({ ok: false, error: { code: 'NETD_BUSY' } });
      for (const f of flood) f.close();
      await new Promise((r) => setTimeout(r, 200));

      // still serving, and nothing on the host changed
      expect(d.child.exitCode).toBeNull();
      expect(await hostView(d)).toEqual(before);
      await runOk('ip', ['link', 'del', 've-abuse']);
      await waitFor(async () => ((await hostView(d)).list as unknown[]).length === 0, 've-abuse no longer served');
    } finally {
      for (const r of raws) r.close();
      await run('ip', ['link', 'del', 've-abuse']);
      await d.stop();
    }
  });
});
