// The devices policy (cgroup v1 devices controller): what systemd-nspawn@.service allows, plus a
// device node bound in (--bind=/dev/fuse, the ArchWiki page's FUSE/GPU recipes) and DeviceAllow=
// in --property, the properties file and set-property on a running machine.
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { beforeAll, describe, expect } from 'vitest';
import { ktest } from '../helpers/kernel.js';
import { busyboxRoot } from '../helpers/rootfs.js';
import { exited, machineLeader, nspawn, startNspawn } from '../helpers/nspawn.js';
import { run, waitFor } from '../helpers/exec.js';
import { detectLayout } from '../../src/runtime/cgroups.js';

const RUN = process.pid.toString(36);
const BIN = new URL('../../bin/machinectl-ts', import.meta.url).pathname;
let root: string;
let n = 0;
beforeAll(async () => {
  root = await busyboxRoot();
}, 120_000);

const haveDevicesCgroup = (): boolean => detectLayout().hierarchies.some((h) => h.version === 1 && h.controllers.includes('devices'));

// /dev/fuse is 10:229, a device no container gets by default
const OPEN_FUSE = 'if exec 3<>/dev/fuse; then echo opened; fi';
const MKNOD_FUSE = 'if mknod /dev/fuse2 c 10 229 && exec 3<>/dev/fuse2; then echo made-and-opened; fi';

function sh(script: string, opts: string[]) {
  return nspawn(['-q', '-D', root, '-M', `dev-${RUN}-${++n}`, ...opts, '/bin/sh', '-c', script]);
}

describe('devices', () => {
  ktest('a device node bound in can be opened; without the bind or DeviceAllow= it cannot be made', async () => {
    expect(existsSync('/dev/fuse')).toBe(true);
    expect(haveDevicesCgroup()).toBe(true);
    const bound = await sh(OPEN_FUSE, ['--bind=/dev/fuse']);
    expect(bound.stdout).toBe('opened\n');
    const plain = await sh(MKNOD_FUSE, []);
    expect(plain.stdout).toBe('');
    expect(plain.stderr).toMatch(/Operation not permitted/);
    // --bind-ro: read only
    const ro = await sh('if exec 3</dev/fuse; then echo read; fi; if exec 4>/dev/fuse; then echo written; fi', ['--bind-ro=/dev/fuse']);
    expect(ro.stdout).toBe('read\n');
  });

  ktest('DeviceAllow= in --property: a node (stat on the host) or a class from /proc/devices, with r/w/m', async () => {
    expect((await sh(MKNOD_FUSE, ['--property=DeviceAllow=/dev/fuse rwm'])).stdout).toBe('made-and-opened\n');
    expect((await sh(MKNOD_FUSE, ['--property=DeviceAllow=char-misc'])).stdout).toBe('made-and-opened\n');
    // without m the node cannot be made
    const noM = await sh(MKNOD_FUSE, ['--property=DeviceAllow=char-misc rw']);
    expect(noM.stdout).toBe('');
    // an empty assignment resets the list
    expect((await sh(MKNOD_FUSE, ['--property=DeviceAllow=char-misc rwm', '--property=DeviceAllow='])).stdout).toBe('');
    // a class or node the host lacks: a warning, the container starts
    const missing = await nspawn(['-D', root, '-M', `dev-${RUN}-${++n}`, '--console=read-only', '--property=DeviceAllow=char-nosuchdriver rw', '/bin/true']);
    expect(missing.code).toBe(0);
    expect(missing.stderr).toContain('DeviceAllow=char-nosuchdriver: no such character device class in /proc/devices; ignored');
    const bad = await sh('true', ['--property=DeviceAllow=/dev/fuse rx']);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toContain("invalid value '/dev/fuse rx' for DeviceAllow=: bad access 'rx'");
  });

  ktest('set-property DeviceAllow= on a running machine, and stored in its properties file', async ({ onTestFinished }) => {
    const dir = mkdtempSync('/tmp/nspawn-ts-props-');
    onTestFinished(() => rmSync(dir, { recursive: true, force: true }));
    const env = { ...process.env, NSPAWN_TS_PROPERTIES_DIR: dir };
    const name = `dev-${RUN}-run`;
    const c = startNspawn(['-q', '-D', root, '-M', name, '/bin/sh', '-c',
      `while :; do if mknod /dev/fuse2 c 10 229 2>/dev/null && exec 3<>/dev/fuse2; then echo opened; break; fi; sleep 0.1; done; sleep 30`]);
    try {
      await waitFor(() => machineLeader(name), 'the machine');
      await new Promise((r) => setTimeout(r, 300));
      expect(c.output()).toBe('');
      const r = await run(BIN, ['set-property', name, 'DeviceAllow=/dev/fuse rwm'], { env });
      expect(r).toMatchObject({ code: 0, stderr: '' });
      await waitFor(() => c.output().includes('opened'), 'the container to open /dev/fuse2');
      expect(readFileSync(`${dir}/${name}.properties`, 'utf8')).toContain('\nDeviceAllow=/dev/fuse rwm\n');
      // refused before anything changes
      const bad = await run(BIN, ['set-property', name, 'DeviceAllow=/nonexistent rw'], { env });
      expect(bad.code).toBe(1);
      expect(bad.stderr).toMatch(/DeviceAllow/);
    } finally {
      c.kill('SIGTERM');
      await exited(c);
    }
  });
});
