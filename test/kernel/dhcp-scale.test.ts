// Many served links at once (the sidecar serves one per container): 200 veth pairs, one server. Serving
// a link costs no file descriptor; clients on the first, a middle and the last link get addresses of
// their own subnet; a link that is no longer served gets no answer.
import { readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect } from 'vitest';
import { runOk } from '../helpers/exec.js';
import { ktest } from '../helpers/kernel.js';
import { DhcpEnv } from './dhcp-env.js';

const LINKS = 200;
/** Link i: 198.18.0.0/15 (the benchmarking range) cut into /29s; the server is .1 of each. */
const subnetBase = (i: number): number => 0xc6120000 + i * 8;
const dotted = (a: number): string => [a >>> 24, (a >>> 16) & 255, (a >>> 8) & 255, a & 255].join('.');

describe('many interfaces', () => {
  ktest(`${LINKS} links served by one server and one socket`, async ({ netns, onTestFailed }) => {
    const env = await DhcpEnv.create(netns, { onTestFailed });
    try {
      const batch = (name: string, lines: string[], ns?: string): Promise<string> => {
        const file = join(env.dir, name);
        writeFileSync(file, lines.join('\n') + '\n');
        return runOk('ip', [...(ns ? ['-n', ns] : []), '-batch', file], { timeoutMs: 60_000 });
      };
      const idx = Array.from({ length: LINKS }, (_, i) => i + 1);
      await batch('links', idx.map((i) => `link add ds${i} netns ${env.srv.name} type veth peer name dc${i} netns ${env.cli.name}`));
      await batch('srv', idx.flatMap((i) => [`addr add ${dotted(subnetBase(i) + 1)}/29 dev ds${i}`, `link set ds${i} up`]), env.srv.name);
      await batch('cli', idx.map((i) => `link set dc${i} up`), env.cli.name);
      const links = await env.srv.ipJson<Array<{ ifindex: number; ifname: string }>>(['link', 'show']);
      const ifindex = new Map(links.map((l) => [l.ifname, l.ifindex]));

      const server = env.startServer();
      const fdsBefore = readdirSync('/proc/self/fd').length;
      for (const i of idx) {
        server.addInterface({ ifindex: ifindex.get(`ds${i}`)!, ifname: `ds${i}`, address: `${dotted(subnetBase(i) + 1)}/29` });
      }
      expect(server.interfaces()).toHaveLength(LINKS + 1);
      expect(readdirSync('/proc/self/fd').length).toBe(fdsBefore); // no socket, no fd per link

      for (const i of [1, LINKS / 2, LINKS]) {
        const mark = env.events.length;
        await env.runClient(['busybox', 'udhcpc', '-q', '-n', '-i', `dc${i}`, '-s', env.script, '-t', '5', '-T', '1']);
        const e = env.events.slice(mark).find((x) => x.type === 'bound');
        expect(e).toMatchObject({ type: 'bound', ifname: `ds${i}` });
        const a = e && e.type === 'bound' ? e.address : '';
        const n = a.split('.').map(Number).reduce((x, y) => x * 256 + y, 0);
        expect(n).toBeGreaterThan(subnetBase(i) + 1);
        expect(n).toBeLessThan(subnetBase(i) + 7);
      }

      server.removeInterface(`ds${LINKS / 2}`);
      const mark = env.events.length;
      await env.runClient(['busybox', 'udhcpc', '-q', '-n', '-i', `dc${LINKS / 2}`, '-s', env.script, '-t', '2', '-T', '1']);
      expect(env.events.slice(mark)).toEqual([]);
      expect(server.stats.notServed).toBeGreaterThan(0);
      expect(env.clientLog().at(-1)).toBe('leasefail ');
    } finally {
      await env.destroy();
    }
  }, 120_000);
});
