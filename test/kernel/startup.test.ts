// The launcher's start-up path against the kernel (docs/design/startup.md): PID 1 enters its cgroups
// itself before its first sync point (its cgroup namespace is rooted there); sockets made in another network namespace leave the calling thread
// where it was; a launch without a sidecar makes no connection attempt, and its DHCP server listens before
// the payload runs (the container's first DISCOVER is answered).
import { existsSync, mkdtempSync, readFileSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect } from 'vitest';
import { ktest } from '../helpers/kernel.js';
import { busyboxRoot, copyRoot } from '../helpers/rootfs.js';
import { leftoverCgroups, machineRecords, nspawn } from '../helpers/nspawn.js';
import { sys } from '../../src/native.js';
import { detectLayout } from '../../src/runtime/cgroups.js';

const RUN = process.pid.toString(36);
let root: string;
let counter = 0;
const name = (): string => `su-${RUN}-${++counter}`;

beforeAll(async () => {
  root = await busyboxRoot();
}, 120_000);

function nothingLeft(): void {
  expect(machineRecords()).toEqual([]);
  expect(leftoverCgroups().filter((d) => d.includes(`su-${RUN}-`))).toEqual([]);
}

describe('cgroups on the start-up path', () => {
  ktest('PID 1 is in its machine cgroups before it goes on (its cgroup namespace is rooted there)', async () => {
    const layout = detectLayout();
    if (layout.mode === 'none') return; // nothing to move into (the kernel has cgroups here; see cgroups.test.ts)
    // made right after the first sync point: had PID 1 been moved later, its paths would not be "/"
    // --resolv-conf=off: nothing written into the shared test root
    const r = await nspawn(['-q', '--resolv-conf=off', '-D', root, '-M', name(), '/bin/sh', '-c', 'cat /proc/self/cgroup']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const lines = r.stdout.trim().split('\n');
    expect(lines.length).toBeGreaterThan(0);
    for (const l of lines) expect(l).toMatch(/:\/$/);
    nothingLeft();
  });
});

describe('sockets in another network namespace', () => {
  ktest('are made there, and the calling thread stays in its own namespace', async ({ netns }) => {
    const s = sys();
    const home = readlinkSync('/proc/thread-self/ns/net');
    const fd = s.openNamespace(netns.path);
    try {
      for (let i = 0; i < 3; i++) {
        const sock = s.socket(16 /* AF_NETLINK */, 3 /* SOCK_RAW */, 0 /* NETLINK_ROUTE */, fd);
        s.close(sock);
        expect(readlinkSync('/proc/thread-self/ns/net')).toBe(home);
      }
      // libnftables' context for that namespace is made there too
      const r = s.nftRun('list tables', { netnsFd: fd });
      expect(r.rc).toBe(0);
      expect(readlinkSync('/proc/thread-self/ns/net')).toBe(home);
      // a namespace fd that is no namespace: setns fails, nothing moves
      const notNs = s.openNamespace('/proc/self/status');
      try {
        expect(() => s.socket(16, 3, 0, notNs)).toThrow(/setns/);
      } finally {
        s.close(notNs);
      }
      expect(readlinkSync('/proc/thread-self/ns/net')).toBe(home);
    } finally {
      s.nftForget(fd);
      s.close(fd);
    }
  });
});

describe('the embedded path', () => {
  ktest('-n without a sidecar socket: no connection attempt, host0 configured before the payload runs', async () => {
    const socket = `/run/nspawn-ts/no-sidecar-${RUN}.sock`;
    expect(existsSync(socket)).toBe(false);
    const dir = mkdtempSync(join(tmpdir(), 'nspawn-ts-startup-'));
    // a copy: the launcher writes the lease's /etc/resolv.conf into the root (the shared one is copied by others)
    const own = await copyRoot(root);
    try {
      const record = join(dir, 'connections');
      const preload = join(dir, 'preload.cjs');
      // every connection the launcher makes goes through node:net's createConnection
      writeFileSync(preload, `const net = require('node:net'); const fs = require('node:fs');
        const orig = net.createConnection;
        net.createConnection = function (...args) { fs.appendFileSync(${JSON.stringify(record)}, JSON.stringify(args[0]) + '\\n'); return orig.apply(this, args); };`);
      writeFileSync(record, '');
      const r = await nspawn(['-q', '-n', '-D', own.dir, '-M', name(), '/bin/sh', '-c', 'ip -4 route show default; ip -4 -o addr show dev host0'],
        { env: { NODE_OPTIONS: `--require ${preload}`, NSPAWN_NETD_SOCKET: socket, NSPAWN_NETD_DNS: '192.0.2.53' } });
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
      expect(r.stdout).toMatch(/^default via \d+\.\d+\.\d+\.\d+ dev host0/m);
      expect(r.stdout).toMatch(/host0\s+inet \d+\.\d+\.\d+\.\d+\/28/);
      expect(readFileSync(record, 'utf8')).toBe('');
    } finally {
      rmSync(dir, { recursive: true, force: true });
      own.remove();
    }
    nothingLeft();
  });

  ktest('--network-config=dhcp without a sidecar: the server listens before the payload runs and answers its very first DISCOVER', async () => {
    const socket = `/run/nspawn-ts/no-sidecar-${RUN}.sock`;
    // -t 1: one DISCOVER and one REQUEST, no retransmission; a DISCOVER sent before the embedded
    // server listened would be lost and udhcpc (-n) would fail after -T seconds
    const r = await nspawn(['-v', '-n', '--resolv-conf=off', '--network-config=dhcp', '-D', root, '-M', name(), '/bin/sh', '-c',
      'udhcpc -i host0 -f -q -n -t 1 -T 5 -s /bin/true 2>&1 && echo LEASED'], { env: { NSPAWN_NETD_SOCKET: socket } });
    expect(r.code).toBe(0);
    expect(r.stdout.match(/broadcasting discover/g)).toHaveLength(1);
    expect(r.stdout).toMatch(/lease of \d+\.\d+\.\d+\.\d+ obtained/);
    expect(r.stdout).toMatch(/^LEASED$/m);
    // udhcpc's own socket set-up (two AF_PACKET binds, each an RCU grace period) usually hides a
    // server that starts a little late; the rule is stricter: its socket is bound before the exec
    const lines = r.stderr.split('\n');
    const serving = lines.findIndex((l) => /\bdhcp\] serving DHCP ifname=ve-/.test(l));
    const released = lines.findIndex((l) => /launcher\] before-exec hooks done; PID 1 goes on to exec/.test(l));
    expect(serving).toBeGreaterThanOrEqual(0);
    expect(released).toBeGreaterThan(serving);
    nothingLeft();
  });
});
