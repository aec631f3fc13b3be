// Host ports between nspawn-cni's ipam networks (their own table, inet nspawn-cni) and the network
// library's (inet nspawn-ts: nspawn-ts -p, the sidecar's machines, pods of pool networks): a host
// port one of them forwards is refused to the other with a clear error, and nothing is made. The
// networks use the launcher's state directory (the test run's tmpfs /var/lib/nspawn-ts), so both
// sides check under one state lock, as on a host.
import { readdirSync, readFileSync } from 'node:fs';
import { describe, expect } from 'vitest';
import { ktest } from '../helpers/kernel.js';
import { run } from '../helpers/exec.js';
import { TestNetns } from '../helpers/netns.js';
import { machineRecords } from '../helpers/nspawn.js';
import { busyboxRoot } from '../helpers/rootfs.js';
import { exitOf, nspawnTs, stopByLine, untilReady, type Proc } from './e2e-world.js';
import { cni, cniPath, cniSuite, leftovers, network, ok, PLUGIN, work } from './cni-env.js';

cniSuite();

const P = String(process.pid);
const STATE = '/var/lib/nspawn-ts';
const tcp = (hostPort: number) => [{ hostPort, containerPort: 80, protocol: 'tcp' }];

/** The plugin run as a runtime runs it (its JSON error with the spec's code on stdout). */
function add(ns: TestNetns, id: string, conf: Record<string, unknown>, ports: unknown[]) {
  return run(PLUGIN, [], {
    env: { PATH: process.env.PATH ?? '', CNI_PATH: cniPath(), CNI_COMMAND: 'ADD', CNI_CONTAINERID: id, CNI_IFNAME: 'eth0', CNI_NETNS: ns.path },
    input: JSON.stringify({ cniVersion: '1.0.0', type: 'nspawn-cni', stateDir: STATE, netdSocket: `${work}/none.sock`, ...conf, runtimeConfig: { portMappings: ports } }),
    timeoutMs: 60_000,
  });
}

function hostLocal(dataDir: string): Record<string, unknown> {
  return { type: 'host-local', ranges: [[{ subnet: '198.51.100.0/24' }]], dataDir };
}

/** Addresses host-local handed out under `dataDir` for `net`. */
function handedOut(dataDir: string, net: string): string[] {
  try {
    return readdirSync(`${dataDir}/${net}`).filter((f) => /^\d+\.\d+\.\d+\.\d+$/.test(f));
  } catch {
    return [];
  }
}

/** The attachment records of network `net`. */
function records(net: string): string[] {
  try {
    return readdirSync(`${STATE}/cni/${net}`).filter((f) => f.endsWith('.json'));
  } catch {
    return [];
  }
}

async function ourLinks(): Promise<string[]> {
  const links = JSON.parse((await run('ip', ['-j', 'link'])).stdout) as Array<{ ifname: string }>;
  return links.map((l) => l.ifname).filter((n) => /^(nc[0-9a-f]{8}|cn-|vz-|ve-)/.test(n));
}

async function listing(what: string[]): Promise<string> {
  const r = await run('nft', ['list', ...what]);
  return r.code === 0 ? r.stdout : '';
}

describe('host ports between nspawn-cni ipam networks and the network library', () => {
  ktest('nspawn-ts -p holds tcp 8084: an ipam ADD asking for it gets error 7 naming the port and the machine, and changes nothing', async () => {
    const root = await busyboxRoot();
    const c1 = await TestNetns.create('c1');
    const dataDir = `${work}/hl-clash1`;
    const m = `pk${P}`;
    let launcher: Proc | undefined;
    try {
      launcher = await untilReady(nspawnTs(['-D', root, '-x', '-M', m, '-n', '-p', 'tcp:8084:80', '/bin/sh', '-c', 'echo ready && read x']), m);
      const portsBefore = await listing(['map', 'inet', 'nspawn-ts', 'ports4']);
      const linksBefore = await ourLinks();
      expect(portsBefore).toContain(`tcp . 8084 comment "${m}"`);

      const r = await add(c1, 'cid-k1', { name: 'clash1', ipam: hostLocal(dataDir) }, tcp(8084));
      expect(r.code).toBe(1);
      const err = JSON.parse(r.stdout) as { code: number; msg: string };
      expect(err.code).toBe(7);
      expect(err.msg).toContain('runtimeConfig.portMappings');
      expect(err.msg).toMatch(new RegExp(`tcp port 8084 is already forwarded to \\S+:80 for ${m} \\(table inet nspawn-ts\\)`));
      // nothing made: no address from host-local, no link, no table, no record
      expect(handedOut(dataDir, 'clash1')).toEqual([]);
      expect(await c1.tryExec('ip', ['link', 'show', 'eth0'])).toMatchObject({ code: 1 });
      expect(await ourLinks()).toEqual(linksBefore);
      expect(await listing(['table', 'inet', 'nspawn-cni'])).toBe('');
      expect(await listing(['map', 'inet', 'nspawn-ts', 'ports4'])).toBe(portsBefore);
      expect(records('clash1')).toEqual([]);

      // through libcni too (its message carries ours); another port works
      const net = network('1.0.0', { stateDir: STATE, ipam: hostLocal(dataDir) }, 'clash1');
      const viaLibcni = await cni(net, 'add', c1, 'cid-k1', { caps: { portMappings: tcp(8084) } });
      expect(viaLibcni.code).not.toBe(0);
      expect(viaLibcni.stderr).toContain('tcp port 8084 is already forwarded');
      await ok(cni(net, 'add', c1, 'cid-k1', { caps: { portMappings: tcp(8087) } }));
      await ok(cni(net, 'del', c1, 'cid-k1'));
      expect(handedOut(dataDir, 'clash1')).toEqual([]);
    } finally {
      if (launcher) await stopByLine(launcher);
      await c1.destroy();
    }
    expect(await leftovers({ conflist: '', cache: '', stateDir: STATE })).toEqual([]);
  }, 120_000);

  ktest('an ipam network holds tcp 8085: nspawn-ts -p 8085 is refused before anything is made, and so is a pool network\'s ADD (error 7)', async () => {
    const root = await busyboxRoot();
    const c1 = await TestNetns.create('c1');
    const c2 = await TestNetns.create('c2');
    const dataDir = `${work}/hl-clash2`;
    const net = network('1.0.0', { stateDir: STATE, ipam: hostLocal(dataDir) }, 'clash2');
    const m = `pl${P}`;
    try {
      await ok(cni(net, 'add', c1, 'cid-k2', { caps: { portMappings: tcp(8085) } }));
      const held = 'tcp port 8085 is already forwarded to 198.51.100.2:80 for cni:clash2/cid-k2 (table inet nspawn-cni)';
      // the record names the host ports: the DEL removes the mappings there by key, without a listing of the table
      expect(JSON.parse(readFileSync(`${STATE}/cni/clash2/cid-k2-eth0.json`, 'utf8'))).toMatchObject({ ports: [{ protocol: 'tcp', hostPort: 8085 }] });

      const refused = nspawnTs(['-D', root, '-x', '-M', m, '-n', '-p', 'tcp:9185:80', '-p', 'tcp:8085:80', '/bin/true']);
      expect(await exitOf(refused)).toBe(1);
      expect(refused.output()).toContain(`cannot forward tcp port 8085 to ${m}: ${held}`);
      expect(machineRecords()).not.toContain(m);
      expect((await run('ip', ['link', 'show', `ve-${m}`])).code).not.toBe(0);
      expect(await listing(['map', 'inet', 'nspawn-ts', 'ports4'])).not.toContain('9185');

      // a network of our pool: its ADD goes through the library's reserve, refused the same way
      const linksBefore = await ourLinks();
      const r = await add(c2, 'cid-k3', { name: 'poolnet' }, tcp(8085));
      expect(r.code).toBe(1);
      const err = JSON.parse(r.stdout) as { code: number; msg: string };
      expect(err.code).toBe(7);
      expect(err.msg).toContain(held);
      expect(await c2.tryExec('ip', ['link', 'show', 'eth0'])).toMatchObject({ code: 1 });
      expect(await ourLinks()).toEqual(linksBefore);
      expect(records('poolnet')).toEqual([]);
      expect(await listing(['map', 'inet', 'nspawn-ts', 'ports4'])).not.toContain('8085');

      // the ipam container's mapping is as it was, and goes with its DEL
      expect(await listing(['map', 'inet', 'nspawn-cni', 'ports4'])).toContain('tcp . 8085 comment "cni:clash2/cid-k2" : 198.51.100.2 . 80');
      await ok(cni(net, 'del', c1, 'cid-k2'));
      expect(await leftovers({ ...net, stateDir: STATE })).toEqual([]);
    } finally {
      await cni(net, 'del', c1, 'cid-k2');
      await c1.destroy();
      await c2.destroy();
    }
  }, 120_000);
});
