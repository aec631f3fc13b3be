// The dhcp-serve command: serves a real client, logs each lease, stops cleanly on SIGTERM, finds its
// leases again on restart, and refuses bad input with a message naming the flag.
import { readFileSync } from 'node:fs';
import { describe, expect } from 'vitest';
import { run } from '../helpers/exec.js';
import { ktest } from '../helpers/kernel.js';
import { CLIENT_MAC, DhcpEnv, ServerProcess } from './dhcp-env.js';

const BIN = new URL('../../bin/nspawn-netd', import.meta.url).pathname;

describe('nspawn-netd dhcp-serve', () => {
  ktest('serves, logs each lease, stops on SIGTERM, restores its leases', async ({ netns, onTestFailed }) => {
    const env = await DhcpEnv.create(netns, { onTestFailed });
    try {
      const args = ['--interface', 'ds0', '--pool', '192.0.2.100-192.0.2.150', '--dns', '198.51.100.53', '--lease-file', env.leaseFile,
        '--static', '02:00:00:00:00:77=192.0.2.77'];
      let server = new ServerProcess(env.srv, args);
      await server.waitOutput(/serving DHCP on ds0 as 192\.0\.2\.1, pool 192\.0\.2\.100-192\.0\.2\.150/, 'the start message');
      await env.runClient(['busybox', 'udhcpc', '-q', '-n', '-i', 'dc0', '-s', env.script, '-t', '5', '-T', '1']);
      const m = await server.waitOutput(new RegExp(`leased (192\\.0\\.2\\.\\d+) to ${CLIENT_MAC} on ds0 for 3600 s`), 'the lease log line');
      const address = m[1] as string;
      const n = Number(address.split('.')[3]);
      expect(n).toBeGreaterThanOrEqual(100);
      expect(n).toBeLessThanOrEqual(150);
      expect(env.clientEnv('bound')).toMatchObject({ ip: address, dns: '198.51.100.53', router: '192.0.2.1' });
      // the start-up's pages of node's binary were dropped once it served (~37 MB file-backed kept otherwise)
      const rssFileMb = Number(/RssFile:\s+(\d+) kB/.exec(readFileSync(`/proc/${server.child.pid}/status`, 'utf8'))?.[1]) / 1024;
      expect(rssFileMb).toBeLessThan(25);
      expect(await server.stop('SIGTERM')).toBe(0);
      expect(server.output).toMatch(/SIGTERM: stopping; \d+ datagrams received .* 1 ACKs/);

      server = new ServerProcess(env.srv, args);
      await server.waitOutput(/serving DHCP on ds0 .*, 1 lease\(s\) restored/, 'the restored lease');
      // the static reservation: that MAC gets its address
      await env.cli.exec('ip', ['link', 'set', 'dc0', 'address', '02:00:00:00:00:77']);
      await env.runClient(['busybox', 'udhcpc', '-q', '-n', '-i', 'dc0', '-s', env.script, '-t', '5', '-T', '1']);
      await server.waitOutput(/leased 192\.0\.2\.77 to 02:00:00:00:00:77 on ds0/, 'the static lease');
      expect(await server.stop('SIGINT')).toBe(0);
    } finally {
      await env.destroy();
    }
  }, 60_000);

  ktest('bad input: a message naming what is wrong, exit 1, nothing served', async ({ netns }) => {
    const env = await DhcpEnv.create(netns);
    try {
      const cases: Array<[string[], RegExp]> = [
        [['--interface', 'nosuch0', '--pool', '192.0.2.0/24'], /--interface nosuch0: no such interface/],
        [['--interface', 'ds0', '--pool', '198.51.100.0/24'], /no --pool lies in a subnet of ds0 \(its addresses: 192\.0\.2\.1\/24\)/],
        [['--interface', 'ds0'], /--pool is required/],
        [['--interface', 'ds0', '--pool', '192.0.2.0/24', '--lease-file', '/proc/nope/leases'], /lease file/],
        [['--interface', 'ds0', '--pool', '192.0.2.200-192.0.2.100'], /the last address is before the first/],
      ];
      for (const [args, re] of cases) {
        const r = await run('ip', ['netns', 'exec', env.srv.name, process.execPath, BIN, 'dhcp-serve', ...args]);
        expect({ args, code: r.code }).toEqual({ args, code: 1 });
        expect(r.stderr).toMatch(re);
      }
      const unknown = await run(process.execPath, [BIN, 'dhcp-frob']);
      expect(unknown.code).toBe(1);
      expect(unknown.stderr).toMatch(/unknown subcommand "dhcp-frob"; available: .*dhcp-serve/);
    } finally {
      await env.destroy();
    }
  });
});
