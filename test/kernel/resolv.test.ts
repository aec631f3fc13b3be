// --resolv-conf=bind-*: real bind mounts in the test run's private mount namespace, on writable
// and read-only container roots. Host files are fixtures in a temp directory.
import { describe, expect } from 'vitest';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ktest } from '../helpers/kernel.js';
import {
  applyResolvConf, bindResolvConf, mountWithUtilLinux, resolveResolvConfMode, setupResolvConf, umountWithUtilLinux,
  type ResolvConfFacts, type ResolvConfPaths,
} from '../../src/net/resolv.js';

const HOST = 'nameserver 192.0.2.53\n';
const STUB = 'nameserver 127.0.0.53\noptions edns0 trust-ad\n';

function mountOptions(path: string): string[] | undefined {
  const line = readFileSync('/proc/self/mountinfo', 'utf8').split('\n').reverse().find((l) => l.split(' ')[4] === path);
  return line?.split(' ')[5]?.split(',');
}

function fixture(): { dir: string; root: string; paths: ResolvConfPaths; cleanup: (mounts: string[]) => void } {
  const dir = mkdtempSync(join(tmpdir(), 'resolv-k-'));
  const root = join(dir, 'root');
  mkdirSync(join(root, 'etc'), { recursive: true });
  mkdirSync(join(dir, 'host'));
  const paths: ResolvConfPaths = {
    host: join(dir, 'host/resolv.conf'), static: join(dir, 'host/static'), uplink: join(dir, 'host/uplink'), stub: join(dir, 'host/stub'),
  };
  writeFileSync(paths.host, HOST);
  writeFileSync(paths.stub, STUB);
  return {
    dir, root, paths,
    cleanup: (mounts) => {
      for (const m of mounts) {
        try { umountWithUtilLinux(m); } catch { /* not mounted */ }
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

const facts = (etcWritable: boolean): ResolvConfFacts => ({ privateNetwork: false, etcWritable, stubExists: true, resolvedListening: true, hostResolvConfExists: true });

describe('resolv.conf bind modes', () => {
  ktest('bind-host: the container sees the host file, read-only, nosuid, nodev', () => {
    const f = fixture();
    const target = join(f.root, 'etc/resolv.conf');
    try {
      const pending = applyResolvConf(f.root, resolveResolvConfMode('bind-host', facts(true), f.paths), { paths: f.paths });
      const r = bindResolvConf(pending, mountWithUtilLinux, umountWithUtilLinux);
      expect(r).toEqual({ mode: 'bind-host', outcome: 'bound', warnings: [] });
      expect(readFileSync(target, 'utf8')).toBe(HOST);
      expect(() => writeFileSync(target, 'nameserver 203.0.113.1\n')).toThrow(/EROFS/);
      expect(mountOptions(target)).toEqual(expect.arrayContaining(['ro', 'nosuid', 'nodev']));
      // a change on the host shows through (same inode, it is a bind)
      writeFileSync(f.paths.host, 'nameserver 192.0.2.54\n');
      expect(readFileSync(target, 'utf8')).toBe('nameserver 192.0.2.54\n');
    } finally {
      f.cleanup([target]);
    }
  });

  ktest('read-only root: copying fails with a warning; auto binds the stub over the existing file', () => {
    const f = fixture();
    const target = join(f.root, 'etc/resolv.conf');
    writeFileSync(target, 'nameserver 203.0.113.1\n');
    const mounts = [target, f.root];
    try {
      mountWithUtilLinux(f.root, f.root, null, 0x1000);
      mountWithUtilLinux(null, f.root, null, 0x1000 | 0x20 | 0x1);
      expect(() => writeFileSync(join(f.root, 'etc/x'), '')).toThrow(/EROFS/);
      // copying is impossible on a read-only root: a warning, nothing else
      const copy = setupResolvConf(f.root, 'copy-host', { privateNetwork: false, etcWritable: false }, { paths: f.paths, procNetUdp: '/nonexistent' });
      expect(copy).toMatchObject({ mode: 'copy-host', outcome: 'skipped', warnings: [expect.stringMatching(/ignoring: EROFS/)] });
      // auto with a listening stub and /etc not writable: bind-stub
      const pending = applyResolvConf(f.root, resolveResolvConfMode('auto', facts(false), f.paths), { paths: f.paths });
      expect(pending).toMatchObject({ mode: 'bind-stub', outcome: 'bind-pending' });
      expect(bindResolvConf(pending, mountWithUtilLinux, umountWithUtilLinux)).toEqual({ mode: 'bind-stub', outcome: 'bound', warnings: [] });
      expect(readFileSync(target, 'utf8')).toBe(STUB);
      umountWithUtilLinux(target);
      expect(readFileSync(target, 'utf8')).toBe('nameserver 203.0.113.1\n');
    } finally {
      f.cleanup(mounts);
    }
  });

  ktest('read-only root without /etc/resolv.conf: touch fails, the bind fails, the copy fallback fails; nothing changes', () => {
    const f = fixture();
    const target = join(f.root, 'etc/resolv.conf');
    try {
      mountWithUtilLinux(f.root, f.root, null, 0x1000);
      mountWithUtilLinux(null, f.root, null, 0x1000 | 0x20 | 0x1);
      const pending = applyResolvConf(f.root, resolveResolvConfMode('bind-host', facts(false), f.paths), { paths: f.paths });
      const r = bindResolvConf(pending, mountWithUtilLinux, umountWithUtilLinux);
      expect(r.outcome).toBe('skipped');
      expect(r.warnings[0]).toMatch(/Failed to bind mount/);
      expect(r.warnings[1]).toMatch(/Failed to copy .* ignoring: EROFS/);
      expect(mountOptions(target)).toBeUndefined();
    } finally {
      f.cleanup([target, f.root]);
    }
  });
});
