// -p/--port= through bin/nspawn-ts, each launcher in a namespace of its own standing for the host:
// bad specs and host ports another machine forwards fail with a clear message before anything of the
// container exists (no machine record, no link, no cgroup, no mapping).
import { spawn } from 'node:child_process';
import { describe, expect } from 'vitest';
import { ktest } from '../helpers/kernel.js';
import type { TestNetns } from '../helpers/netns.js';
import { NSPAWN_TS, leftoverCgroups, machineRecords } from '../helpers/nspawn.js';
import { busyboxRoot } from '../helpers/rootfs.js';
import { Firewall } from '../../src/net/firewall/index.js';

const P = String(process.pid);

/** bin/nspawn-ts inside `ns` to its end; exit code and output. */
function nspawnIn(ns: TestNetns, args: string[]): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve) => {
    const child = spawn('nsenter', [`--net=${ns.path}`, '--', process.execPath, NSPAWN_TS, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (d: Buffer) => { output += d.toString(); });
    child.stderr.on('data', (d: Buffer) => { output += d.toString(); });
    child.on('exit', (code) => resolve({ code, output }));
  });
}

async function nothingMade(ns: TestNetns, machine: string): Promise<void> {
  expect(machineRecords()).not.toContain(machine);
  expect((await ns.ipJson<Array<{ ifname: string }>>(['link', 'show'])).map((l) => l.ifname)).toEqual(['lo']);
  expect(leftoverCgroups().filter((d) => d.endsWith(`machine-${machine}`))).toEqual([]);
}

describe('bin/nspawn-ts -p: refused before anything is made', () => {
  ktest('a host port another machine forwards, and one systemd-nspawn forwards', async ({ netns }) => {
    const root = await busyboxRoot();
    const fw = new Firewall({ netnsFd: netns.fd });
    try {
      fw.ensureTables();
      fw.addPortMapping({ protocol: 'tcp', hostPort: 8000, containerAddress: '10.0.0.34', containerPort: 80, owner: 'other' });
      const machine = `pc${P}`;
      let r = await nspawnIn(netns, ['-q', '-D', root, '-M', machine, '-n', '-p', 'udp:8000:80', '-p', 'tcp:8000:80', '/bin/true']);
      expect(r.code).toBe(1);
      expect(r.output).toContain(`cannot forward tcp port 8000 to ${machine}: tcp port 8000 is already forwarded to 10.0.0.34:80 for other (stop that machine or pick another host port)`);
      await nothingMade(netns, machine);
      expect(fw.state().ports).toEqual([{ protocol: 'tcp', hostPort: 8000, containerAddress: '10.0.0.34', containerPort: 80, owner: 'other' }]);
      fw.removeTables();

      await netns.exec('nft', ['-f', '-'], {
        input: 'table ip io.systemd.nat {\n map map_port_ipport { type inet_proto . inet_service : ipv4_addr . inet_service; elements = { udp . 53 : 10.0.0.24 . 53 } }\n}\n',
      });
      r = await nspawnIn(netns, ['-q', '-D', root, '-M', machine, '--network-veth', '--port=udp:53', '/bin/true']);
      expect(r.code).toBe(1);
      expect(r.output).toContain('udp port 53 is already forwarded to 10.0.0.24:53 for a systemd-nspawn container (table ip io.systemd.nat)');
      await nothingMade(netns, machine);
      await netns.exec('nft', ['delete', 'table', 'ip', 'io.systemd.nat']);
    } finally {
      fw.removeTables();
      fw.close();
    }
  });

  ktest('bad specs: systemd\'s messages, nothing made', async ({ netns }) => {
    const root = await busyboxRoot();
    const machine = `pb${P}`;
    for (const [spec, message] of [
      ['0', 'Failed to parse host port 0: Invalid argument'],
      ['70000', 'Failed to parse host port 70000: Invalid argument'],
      ['sctp:80', 'Failed to parse host port sctp:80: Invalid argument'],
      ['tcp:80:0', 'Failed to parse host port tcp:80:0: Invalid argument'],
    ] as const) {
      const r = await nspawnIn(netns, ['-q', '-D', root, '-M', machine, '-n', '-p', spec, '/bin/true']);
      expect(r.code, spec).toBe(1);
      expect(r.output, spec).toContain(message);
    }
    let r = await nspawnIn(netns, ['-q', '-D', root, '-M', machine, '-n', '-p', '8080', '-p', 'tcp:8080:81', '/bin/true']);
    expect(r.code).toBe(1);
    expect(r.output).toContain('Duplicate port specification: tcp:8080:81');
    r = await nspawnIn(netns, ['-q', '-D', root, '-M', machine, '-p', '8080', '/bin/true']);
    expect(r.code).toBe(1);
    expect(r.output).toContain('Cannot use --port= without private networking.');
    await nothingMade(netns, machine);
  });
});
