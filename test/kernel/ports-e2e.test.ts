// -p end to end: bin/nspawn-ts on the busybox root, the test run's namespace as the host, a LAN
// client namespace at 198.51.100.2. Inside: busybox httpd on 80, a UDP echo on 53. Reached from the
// client through the host's address, from the host itself, through 127.0.0.1 with --port-loopback,
// and from the container through the host's address (hairpin); gone when the container ends. With
// the sidecar: two containers with different ports at once, and a third one's clash refused.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { describe, expect } from 'vitest';
import { ktest } from '../helpers/kernel.js';
import { killAndWait, run, runOk, start, waitFor } from '../helpers/exec.js';
import { machineLeader, machineRecords } from '../helpers/nspawn.js';
import { busyboxRoot } from '../helpers/rootfs.js';
import { connect, lanClient, udpEchoBinary } from '../helpers/traffic.js';
import { exitOf, nspawnTs, startSidecar, stopByLine, untilReady, type Proc } from './e2e-world.js';

const P = String(process.pid);
const MARK = 'ports-e2e-ok';
const GET = 'GET / HTTP/1.0\r\n\r\n';

interface Served {
  www: string;
  udp: string;
  remove(): void;
}

async function content(): Promise<Served> {
  const www = mkdtempSync('/var/tmp/nspawn-ts-ports-www-');
  writeFileSync(`${www}/index.html`, `${MARK}\n`);
  return { www, udp: await udpEchoBinary(), remove: () => rmSync(www, { recursive: true, force: true }) };
}

/** A container serving HTTP on 80 and UDP echo on 53, with `ports`; resolves once both listen. */
async function serving(machine: string, s: Served, ports: string[], extra: string[] = []): Promise<Proc> {
  const root = await busyboxRoot();
  const p = nspawnTs(['-D', root, '-x', '-M', machine, '-n', ...ports.flatMap((x) => ['-p', x]), ...extra,
    `--bind-ro=${s.www}:/www`, `--bind-ro=${s.udp}:/usr/local/bin/udp-echo`,
    '/bin/sh', '-c', 'httpd -p 80 -h /www && { /usr/local/bin/udp-echo 53 & } && sleep 0.3 && echo ready && read x']);
  return untilReady(p, machine);
}

const stop = stopByLine;

async function portsMap(): Promise<string> {
  const r = await run('nft', ['list', 'map', 'inet', 'nspawn-ts', 'ports4']);
  return r.code === 0 ? r.stdout : '';
}

/** The container's address as its reservation says (the mapping's target). */
function target(map: string, machine: string, port: number): string | undefined {
  return new RegExp(`tcp \\. ${port} comment "${machine}" : ([0-9.]+) \\. 80`).exec(map)?.[1];
}

describe('bin/nspawn-ts -p with a busybox container', () => {
  ktest('httpd on tcp:8000:80 and a UDP echo on udp:5353:53: LAN, host, 127.0.0.1, hairpin; nothing after the exit', async () => {
    const s = await content();
    const client = await lanClient();
    const m = `pe${P}`;
    let c: Proc | undefined;
    try {
      c = await serving(m, s, ['tcp:8000:80', 'udp:5353:53'], ['--port-loopback']);
      const map = await portsMap();
      const addr = target(map, m, 8000);
      expect(addr).toMatch(/^\d+\.\d+\.\d+\.\d+$/);
      expect(map).toContain(`udp . 5353 comment "${m}" : ${addr} . 53`);
      // from the LAN, through the host's address
      expect(await connect(client.ns, 'tcp', '198.51.100.1', 8000, GET)).toContain(MARK);
      expect(await connect(client.ns, 'udp', '198.51.100.1', 5353)).toBe('OK 53 198.51.100.2');
      // from the host itself, through its non-loopback address
      expect(await connect(undefined, 'tcp', '198.51.100.1', 8000, GET)).toContain(MARK);
      expect(await connect(undefined, 'udp', '198.51.100.1', 5353)).toMatch(/^OK 53 /);
      // --port-loopback: 127.0.0.1 too
      expect(await connect(undefined, 'tcp', '127.0.0.1', 8000, GET)).toContain(MARK);
      expect(await connect(undefined, 'udp', '127.0.0.1', 5353)).toMatch(/^OK 53 /);
      // hairpin: from inside the container, its own published port through the host's address
      const leader = machineLeader(m);
      expect(leader).toBeGreaterThan(0);
      const inside = await runOk('nsenter', [`--net=/proc/${leader}/ns/net`, '--', process.execPath, '-e',
        `const s=require('net').connect(8000,'198.51.100.1');s.end(${JSON.stringify(GET)});let d='';s.on('data',x=>d+=x);`
        + `s.on('end',()=>{console.log(d);process.exit(0)});setTimeout(()=>process.exit(1),3000)`]);
      expect(inside).toContain(MARK);

      expect(await stop(c)).toBe(0);
      c = undefined;
      expect(await portsMap()).not.toContain('8000');
      expect(await connect(client.ns, 'tcp', '198.51.100.1', 8000, GET)).toBe('ERR ECONNREFUSED');
      expect(await connect(undefined, 'tcp', '127.0.0.1', 8000, GET)).toBe('ERR ECONNREFUSED');
      expect((await run('nft', ['list', 'table', 'inet', 'nspawn-ts'])).code).not.toBe(0);
      expect(machineRecords()).not.toContain(m);
    } finally {
      if (c) await stop(c).catch(() => c?.child.kill('SIGKILL'));
      await client.destroy();
      s.remove();
    }
  });

  ktest('--port-loopback: a container routing 127.0.0.1 via its gateway reaches no host loopback service (CVE-2020-8558); the published port still answers on 127.0.0.1', async () => {
    const s = await content();
    const m = `pl${P}`;
    // a service bound to the host's loopback only, that the container was never given
    const secret = start(process.execPath, ['-e',
      "require('net').createServer((c)=>c.end('loopback-secret\\n')).listen(9999,'127.0.0.1',()=>console.log('listening'))"]);
    let out = '';
    secret.stdout?.on('data', (d: Buffer) => { out += d.toString(); });
    let c: Proc | undefined;
    try {
      await waitFor(() => out.includes('listening'), 'the loopback listener');
      expect(await connect(undefined, 'tcp', '127.0.0.1', 9999)).toBe('OK loopback-secret');
      c = await serving(m, s, ['tcp:8000:80'], ['--port-loopback']);
      const leader = machineLeader(m);
      expect(leader).toBeGreaterThan(0);
      // the attack: route_localnet on its own side, 127.0.0.1 off its lo, 127.0.0.1/32 via its gateway
      const attack = 'set -e; gw=$(ip route show default | cut -d" " -f3); test -n "$gw";'
        + ' echo 1 > /proc/sys/net/ipv4/conf/host0/route_localnet; ip addr del 127.0.0.1/8 dev lo;'
        + ' ip route add 127.0.0.1/32 via "$gw" dev host0; exec "$0" -e "$1"';
      const probe = "const s=require('net').connect(9999,'127.0.0.1');let d='';s.on('data',x=>d+=x);"
        + "s.on('end',()=>{console.log('OK '+d.trim());process.exit(0)});s.on('error',e=>{console.log('ERR '+e.code);process.exit(0)});"
        + "setTimeout(()=>{console.log('TIMEOUT');process.exit(0)},3000)";
      const got = (await runOk('nsenter', [`--net=/proc/${leader}/ns/net`, '--', 'sh', '-c', attack, process.execPath, probe])).trim();
      expect(got).toBe('TIMEOUT');
      // what --port-loopback is for still works: the host's 127.0.0.1:8000 reaches the container
      expect(await connect(undefined, 'tcp', '127.0.0.1', 8000, GET)).toContain(MARK);
      expect(await stop(c)).toBe(0);
      c = undefined;
    } finally {
      if (c) await stop(c).catch(() => c?.child.kill('SIGKILL'));
      await killAndWait(secret);
      s.remove();
    }
  });

  ktest('with the sidecar: two containers with different ports at once; a third one asking for a taken port is refused', async () => {
    const s = await content();
    const client = await lanClient();
    const sidecar = await startSidecar();
    const [ma, mb, mc] = [`pa${P}`, `pb${P}`, `pc${P}`];
    const running: Proc[] = [];
    try {
      running.push(await serving(ma, s, ['8000:80']), await serving(mb, s, ['9000:80', 'udp:9053:53']));
      expect(await connect(client.ns, 'tcp', '198.51.100.1', 8000, GET)).toContain(MARK);
      expect(await connect(client.ns, 'tcp', '198.51.100.1', 9000, GET)).toContain(MARK);
      expect(await connect(client.ns, 'udp', '198.51.100.1', 9053)).toBe('OK 53 198.51.100.2');
      // the sidecar lists both machines' mappings
      const api = await sidecar.client();
      try {
        const listed = await api.request<Array<{ owner: string; hostPort: number; containerAddress: string }>>({ op: 'ports' });
        // each to the container's IPv4 address and to its IPv6 one
        const family = (a: string): string => (a.includes(':') ? 'v6' : 'v4');
        expect(listed.map((x) => `${x.owner}:${x.hostPort}:${family(x.containerAddress)}`).sort())
          .toEqual([`${ma}:8000`, `${mb}:9000`, `${mb}:9053`].flatMap((m) => [`${m}:v4`, `${m}:v6`]).sort());
      } finally {
        api.close();
      }

      const refused = nspawnTs(['-D', await busyboxRoot(), '-M', mc, '-n', '-p', '9100:80', '-p', '8000:81', '/bin/true']);
      expect(await exitOf(refused)).toBe(1);
      expect(refused.output()).toContain(`cannot forward tcp port 8000 to ${mc}: tcp port 8000 is already forwarded to`);
      expect(refused.output()).toContain(`for ${ma}`);
      expect(machineRecords()).not.toContain(mc);
      expect((await run('ip', ['link', 'show', `ve-${mc}`])).code).not.toBe(0);
      expect(await portsMap()).not.toContain('9100');
      // the others are untouched
      expect(await connect(client.ns, 'tcp', '198.51.100.1', 8000, GET)).toContain(MARK);

      // the first one ends: only its mapping goes
      expect(await stop(running.shift() as Proc)).toBe(0);
      expect(await connect(client.ns, 'tcp', '198.51.100.1', 8000, GET)).toBe('ERR ECONNREFUSED');
      expect(await connect(client.ns, 'tcp', '198.51.100.1', 9000, GET)).toContain(MARK);
      expect(await stop(running.shift() as Proc)).toBe(0);
      expect(await portsMap()).not.toContain('elements'); // no mapping left (the running sidecar keeps its empty table)
    } finally {
      for (const p of running) await stop(p).catch(() => p.child.kill('SIGKILL'));
      await sidecar.stop();
      await client.destroy();
      s.remove();
    }
  });

  ktest('--network-bridge= to an administrator\'s bridge: the ports follow the address the container gives itself, as systemd-nspawn', async () => {
    const s = await content();
    const client = await lanClient();
    const m = `pw${P}`;
    const forward = (await runOk('sysctl', ['-n', 'net.ipv4.ip_forward'])).trim();
    let c: Proc | undefined;
    try {
      await runOk('ip', ['link', 'add', 'br-ports', 'type', 'bridge']);
      await runOk('ip', ['addr', 'add', '10.77.0.1/24', 'dev', 'br-ports']);
      await runOk('ip', ['link', 'set', 'br-ports', 'up']);
      await runOk('sysctl', ['-qw', 'net.ipv4.ip_forward=1']);
      const script = 'ip link set host0 up && ip addr add 10.77.0.2/24 dev host0 && ip route add default via 10.77.0.1'
        + ' && ip -6 addr add fd77::2/64 dev host0 && httpd -p 80 -h /www && echo ready && read x'
        + ' && ip addr del 10.77.0.2/24 dev host0 && ip addr add 10.77.0.3/24 dev host0 && ip route add default via 10.77.0.1 && echo moved && read y'
        + ' && ip addr flush dev host0 && echo gone && read z';
      c = nspawnTs(['-D', await busyboxRoot(), '-x', '-M', m, '--network-bridge=br-ports', '-p', '8000:80', `--bind-ro=${s.www}:/www`, '/bin/sh', '-c', script]);
      const said = (what: string) => waitFor(() => c?.output().includes(`${what}\n`) || c?.child.exitCode !== null, `the container to say ${what}`, 30_000);
      await said('ready');
      await waitFor(async () => (await portsMap()).includes(`tcp . 8000 comment "${m}" : 10.77.0.2 . 80`), 'the mapping to 10.77.0.2');
      expect(await connect(client.ns, 'tcp', '198.51.100.1', 8000, GET)).toContain(MARK);
      // IPv6: a global address qualifies (a link-local one never does)
      expect((await run('nft', ['list', 'map', 'inet', 'nspawn-ts', 'ports6'])).stdout).toContain(`tcp . 8000 comment "${m}" : fd77::2 . 80`);
      // the container moves to another address: the mapping follows
      c.child.stdin?.write('go\n');
      await said('moved');
      await waitFor(async () => (await portsMap()).includes(`tcp . 8000 comment "${m}" : 10.77.0.3 . 80`), 'the mapping to follow to 10.77.0.3');
      expect(await portsMap()).not.toContain('10.77.0.2');
      expect(await connect(client.ns, 'tcp', '198.51.100.1', 8000, GET)).toContain(MARK);
      // no address at all: no mapping
      c.child.stdin?.write('go\n');
      await said('gone');
      await waitFor(async () => !(await portsMap()).includes('8000'), 'the mapping to go with the addresses');
      expect(await stop(c)).toBe(0);
      c = undefined;
      expect((await run('nft', ['list', 'table', 'inet', 'nspawn-ts'])).code).not.toBe(0);
    } finally {
      if (c) await stop(c).catch(() => c?.child.kill('SIGKILL'));
      await run('ip', ['link', 'del', 'br-ports']);
      await runOk('sysctl', ['-qw', `net.ipv4.ip_forward=${forward}`]);
      await client.destroy();
      s.remove();
    }
  });
});
