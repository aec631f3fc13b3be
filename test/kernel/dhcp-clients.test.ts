// Real DHCP clients against the server, across a veth between two private namespaces: busybox
// udhcpc, dhcpcd and ISC dhclient each obtain a lease, renew it, renew it again with a restarted
// server (the lease came back from the lease file), release it, and get the same address again.
import { describe, expect } from 'vitest';
import { slabsMade } from '../../src/dhcp/reply-slabs.js';
import { waitFor } from '../helpers/exec.js';
import { ktest } from '../helpers/kernel.js';
import { CLIENT_MAC, DhcpEnv, ifindexOf, SERVER_IP } from './dhcp-env.js';

const TIMEOUT = 120_000;

function bound(env: DhcpEnv, after: number): Promise<string> {
  return env.waitEvent((e) => e.type === 'bound' && !e.renewed && e.mac === CLIENT_MAC, 'a new lease', 20_000, after)
    .then((e) => (e.type === 'bound' ? e.address : ''));
}

function renewed(env: DhcpEnv, address: string, after: number, timeoutMs = 30_000): Promise<unknown> {
  return env.waitEvent((e) => e.type === 'bound' && e.renewed && e.address === address, `a renewal of ${address}`, timeoutMs, after);
}

describe('real DHCP clients', () => {
  ktest('busybox udhcpc: obtain, renew, renew after a server restart, release, same address again', async ({ netns, onTestFailed }) => {
    const env = await DhcpEnv.create(netns, { onTestFailed });
    try {
      // udhcpc renews at half the lease, and treats leases below 30 s as 30 s.
      env.startServer({ leaseTime: 30, dns: ['198.51.100.53'], domain: 'example.org', mtu: 1400 });
      const client = env.startClient(['busybox', 'udhcpc', '-f', '-i', 'dc0', '-s', env.script, '-t', '5', '-T', '1', '-x', 'hostname:box1']);
      const address = await bound(env, 0);
      await env.waitClient(new RegExp(`^bound ${address.replace(/\./g, '\\.')}$`), 'udhcpc bound');
      expect(await env.clientAddresses()).toContain(address);
      // What the client was told (its script's environment).
      const told = env.clientEnv('bound');
      expect(told).toMatchObject({ ip: address, mask: '24', router: SERVER_IP, dns: '198.51.100.53', domain: 'example.org', mtu: '1400', lease: '30', serverid: SERVER_IP });

      let mark = env.events.length;
      await renewed(env, address, mark);
      await env.waitClient(/^renew /, 'udhcpc renew');

      await env.stopServer();
      mark = env.events.length;
      const restarted = env.startServer({ leaseTime: 30 });
      expect(restarted.leases('ds0')).toEqual([expect.objectContaining({ address, state: 'bound', mac: CLIENT_MAC })]);
      client.kill('SIGUSR1'); // udhcpc: renew now
      await renewed(env, address, mark);

      mark = env.events.length;
      client.kill('SIGUSR2'); // udhcpc: release the lease
      await env.waitEvent((e) => e.type === 'released' && e.address === address, 'the release', 10_000, mark);
      expect(restarted.leases('ds0')).toEqual([expect.objectContaining({ address, state: 'released' })]);
      await env.kill(client);

      mark = env.events.length;
      await env.runClient(['busybox', 'udhcpc', '-q', '-n', '-i', 'dc0', '-s', env.script, '-t', '5', '-T', '1']);
      expect(await bound(env, mark)).toBe(address);
      const log = env.clientLog();
      expect(log).not.toContain('leasefail ');
      expect(log.filter((l) => l.startsWith('nak'))).toEqual([]);
    } finally {
      await env.destroy();
    }
  }, TIMEOUT);

  ktest('dhcpcd: obtain, renew, renew after a server restart, release, same address again', async ({ netns, onTestFailed }) => {
    const env = await DhcpEnv.create(netns, { onTestFailed });
    // dhcpcd keeps its state in /var/lib/dhcpcd and /run/dhcpcd: private tmpfs for each run. /run/dhcpcd
    // exists only once dhcpcd ran on a machine (npm test's /run is empty): a private /run holds it.
    const dhcpcd = (...args: string[]): string[] => ['unshare', '-m', 'sh', '-c',
      'mkdir -p /var/lib/dhcpcd && mount -t tmpfs tmpfs /var/lib/dhcpcd && mount -t tmpfs -o mode=0755 tmpfs /run && '
      + 'mkdir /run/dhcpcd && exec dhcpcd "$@"', 'dhcpcd',
      '-4', '--noarp', '-c', env.script, '--config', '/dev/null', ...args, 'dc0'];
    try {
      // dhcpcd's minimum lease is 20 s (it renews at half of that).
      env.startServer({ leaseTime: 20, dns: ['198.51.100.53'] });
      const client = env.startClient(dhcpcd('-B'));
      const address = await bound(env, 0);
      await env.waitClient(/^BOUND /, 'dhcpcd BOUND');
      await expectEventually(async () => (await env.clientAddresses()).includes(address));
      expect(env.clientEnv('BOUND')).toMatchObject({ new_ip_address: address, new_routers: SERVER_IP, new_domain_name_servers: '198.51.100.53', new_dhcp_lease_time: '20' });

      let mark = env.events.length;
      await renewed(env, address, mark);

      await env.stopServer();
      mark = env.events.length;
      env.startServer({ leaseTime: 20 });
      await renewed(env, address, mark);

      // Let dhcpcd finish with the ACK (its RENEW hook) before asking it to release.
      await waitFor(() => env.clientLog().filter((l) => l.startsWith('RENEW ')).length >= 2, 'the second RENEW hook', 10_000);
      mark = env.events.length;
      // dhcpcd: SIGALRM = release and exit. Its privilege-separated processes can miss a signal
      // that lands while they pass the lease around, so it is repeated until dhcpcd acts on it.
      for (let attempt = 0; ; attempt++) {
        client.kill('SIGALRM');
        try {
          await env.waitEvent((e) => e.type === 'released' && e.address === address, 'the release', 4_000, mark);
          break;
        } catch (err) {
          if (attempt === 2) throw err;
        }
      }
      await env.kill(client, 'SIGTERM');

      mark = env.events.length;
      await env.runClient(dhcpcd('-B', '-1', '-t', '15'));
      expect(await bound(env, mark)).toBe(address);
      expect(env.clientLog().filter((l) => /^(NAK|FAIL|EXPIRE)/.test(l))).toEqual([]);
    } finally {
      await env.destroy();
    }
  }, TIMEOUT);

  ktest('ISC dhclient: obtain, renew, renew after a server restart, release, same address again', async ({ netns, onTestFailed }) => {
    const env = await DhcpEnv.create(netns, { onTestFailed });
    const files = ['-lf', `${env.dir}/dhclient.leases`, '-pf', `${env.dir}/dhclient.pid`, '-sf', env.script];
    try {
      env.startServer({ leaseTime: 6, domain: 'example.org', searchDomains: ['example.org', 'corp.example.org'] });
      const client = env.startClient(['dhclient', '-4', '-d', '-1', ...files, 'dc0']);
      const address = await bound(env, 0);
      await env.waitClient(/^BOUND /, 'dhclient BOUND');
      expect(await env.clientAddresses()).toContain(address);
      expect(env.clientEnv('BOUND')).toMatchObject({
        new_ip_address: address, new_routers: SERVER_IP, new_subnet_mask: '255.255.255.0',
        new_domain_name: 'example.org', new_domain_search: "example.org. corp.example.org.",
      });

      let mark = env.events.length;
      await renewed(env, address, mark);
      await env.waitClient(/^RENEW /, 'dhclient RENEW');

      await env.stopServer();
      mark = env.events.length;
      env.startServer({ leaseTime: 6 });
      await renewed(env, address, mark);

      mark = env.events.length;
      await env.runClient(['dhclient', '-4', '-r', ...files, 'dc0']); // stops the running one, releases
      await env.waitEvent((e) => e.type === 'released' && e.address === address, 'the release', 10_000, mark);
      await env.kill(client);

      mark = env.events.length;
      const again = env.startClient(['dhclient', '-4', '-d', '-1', ...files, 'dc0']);
      expect(await bound(env, mark)).toBe(address);
      await env.kill(again);
      expect(env.clientLog().filter((l) => /^(FAIL|EXPIRE)/.test(l))).toEqual([]);
    } finally {
      await env.destroy();
    }
  }, TIMEOUT);
});

describe('perfdhcp (a relay: giaddr set, unicast to the server, replies to the relay port)', () => {
  ktest('200 DORA exchanges from distinct clients, none lost, every lease recorded', async ({ netns, onTestFailed }) => {
    const env = await DhcpEnv.create(netns, { onTestFailed });
    try {
      await env.cli.exec('ip', ['addr', 'add', '192.0.2.2/24', 'dev', 'dc0']);
      const server = env.startServer({ exclude: ['192.0.2.2'] });
      const slabs = slabsMade();
      // perfdhcp's exit status reports on its own run (3 when it stopped on -n); its counters are the truth.
      // A request counts as lost only when unanswered after 20 s (-d), and after the last one perfdhcp
      // waits up to 20 s for the answers still due (-W; it ends as soon as they are all in): with the
      // defaults (1 s, and 0.5 s here before) a loaded machine's late answers were counted as lost.
      const run = await env.cli.tryExec('perfdhcp', ['-4', '-l', 'dc0', '-r', '200', '-n', '200', '-R', '200', '-d', '20', '-W', '20000000', SERVER_IP], { timeoutMs: 60_000 });
      const out = run.stdout;
      const stat = (section: string, field: string): number => Number(out.split(`***Statistics for: ${section}***`)[1]?.match(new RegExp(`${field}: (\\d+)`))?.[1]);
      // -n stops the sending after the tick that reaches it: a late tick sends the few it is behind
      // at once (201-205 under load)
      const sent = stat('DISCOVER-OFFER', 'sent packets');
      expect(sent, out).toBeGreaterThanOrEqual(200);
      expect(stat('DISCOVER-OFFER', 'received packets'), out).toBe(sent);
      expect(stat('REQUEST-ACK', 'sent packets'), out).toBe(sent);
      expect(stat('REQUEST-ACK', 'received packets'), out).toBe(sent);
      expect(stat('REQUEST-ACK', 'drops'), out).toBe(0);
      const bound = server.leases('ds0').filter((l) => l.state === 'bound');
      expect(bound.length).toBe(200);
      expect(new Set(bound.map((l) => l.address)).size).toBe(200);
      expect(bound.map((l) => l.address)).not.toContain('192.0.2.2');
      // 400 replies of ~330 bytes fill ~9 slabs of 16 KiB; the transport hands each back once sent
      expect(slabsMade() - slabs).toBeLessThanOrEqual(2);
    } finally {
      await env.destroy();
    }
  }, TIMEOUT);
});

describe('a bridge served (a zone): the socket sees each request on the port, then on the bridge', () => {
  ktest('the two copies are one request: counted once, none "not served"', async ({ netns, onTestFailed }) => {
    const env = await DhcpEnv.create(netns, { onTestFailed });
    try {
      // ds0 becomes a port of br0, which has the server's address
      await env.srv.exec('ip', ['addr', 'flush', 'dev', 'ds0']);
      await env.srv.exec('ip', ['link', 'add', 'br0', 'type', 'bridge']);
      await env.srv.exec('ip', ['link', 'set', 'ds0', 'master', 'br0']);
      await env.srv.exec('ip', ['addr', 'add', `${SERVER_IP}/24`, 'dev', 'br0']);
      await env.srv.exec('ip', ['link', 'set', 'br0', 'up']);
      const server = env.startServer({ ifindex: await ifindexOf(env.srv, 'br0'), ifname: 'br0' });
      await env.runClient(['busybox', 'udhcpc', '-f', '-q', '-n', '-i', 'dc0', '-s', env.script, '-t', '5', '-T', '1']);
      expect(server.stats.acks).toBe(1);
      expect(server.stats.notServed).toBe(0);
      expect(server.stats.received).toBe(server.stats.offers + server.stats.acks);
      expect(server.leases('br0')).toEqual([expect.objectContaining({ state: 'bound', mac: CLIENT_MAC })]);
    } finally {
      await env.destroy();
    }
  }, TIMEOUT);
});

async function expectEventually(check: () => Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 50));
  }
}
