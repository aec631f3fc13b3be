// ID-mapped binds (--bind=SRC:DST:idmap|rootidmap|owneridmap) with a user namespace (-U), end to
// end on a copy of the busybox root: what the container sees of the host's owners, and who owns
// on the host what it writes. Without the mapping the host's IDs are outside the container's range
// (nobody) and its root cannot write there.
import { chownSync, existsSync, mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect } from 'vitest';
import { ktest } from '../helpers/kernel.js';
import { busyboxRoot, copyRoot } from '../helpers/rootfs.js';
import { machineRecords, nspawn } from '../helpers/nspawn.js';

const RUN = process.pid.toString(36);
/** one machine name: -U picks the same range every time, so the copy is shifted once */
const MACHINE = `idm-${RUN}`;
let copy: { dir: string; remove: () => void };
let base: string;
beforeAll(async () => {
  copy = await copyRoot(await busyboxRoot());
  base = mkdtempSync('/var/tmp/nspawn-ts-idmap-');
}, 120_000);
afterAll(() => {
  copy?.remove();
  if (base) rmSync(base, { recursive: true, force: true });
});

/** A host directory owned by uid:gid with one file owned by fileOwner. */
function source(name: string, uid: number, fileOwner: number): string {
  const dir = `${base}/${name}`;
  mkdirSync(dir);
  chownSync(dir, uid, uid);
  writeFileSync(`${dir}/f`, 'x');
  chownSync(`${dir}/f`, fileOwner, fileOwner);
  return dir;
}

const owner = (path: string): string => `${statSync(path).uid}:${statSync(path).gid}`;

describe('ID-mapped binds', () => {
  ktest('idmap: the host\'s IDs are the container\'s; what its root writes is owned by host root', async () => {
    const src = source('idmap', 0, 1000);
    const r = await nspawn(['-q', '-U', '-D', copy.dir, '-M', MACHINE, `--bind=${src}:/srv/m:idmap`, '/bin/sh', '-c',
      'stat -c "%u:%g" /srv/m /srv/m/f; touch /srv/m/new && stat -c "%u:%g" /srv/m/new; cat /proc/self/uid_map']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const [dir, file, created, uidMap] = r.stdout.split('\n');
    expect([dir, file, created]).toEqual(['0:0', '1000:1000', '0:0']);
    expect(uidMap?.trim()).toMatch(/^0 +[1-9][0-9]* +65536$/); // the container does run in a shifted range
    expect(owner(`${src}/new`)).toBe('0:0');
    // the same bind without idmap: the host's 0 and 1000 are outside the range, and root may not write
    const plain = await nspawn(['-q', '-U', '-D', copy.dir, '-M', MACHINE, `--bind=${src}:/srv/m`, '/bin/sh', '-c',
      'stat -c "%u:%g" /srv/m /srv/m/f; touch /srv/m/other && echo wrote']);
    expect(plain.stdout).toBe('65534:65534\n65534:65534\n');
  });

  ktest('rootidmap: the source\'s owner is the container\'s root, nobody else is mapped', async () => {
    const src = source('rootidmap', 4321, 0);
    const r = await nspawn(['-q', '-U', '-D', copy.dir, '-M', MACHINE, `--bind-ro=${src}:/srv/r:rootidmap`, `--bind=${src}:/srv/w:rootidmap`,
      '/bin/sh', '-c', 'stat -c "%u:%g" /srv/r /srv/r/f; touch /srv/r/ro 2>/dev/null || echo read-only; touch /srv/w/new && echo wrote']);
    expect(r.stderr).toBe('');
    expect(r.stdout).toBe('0:0\n65534:65534\nread-only\nwrote\n');
    expect(owner(`${src}/new`)).toBe('4321:4321');
  });

  ktest('owneridmap: the source\'s owner is the owner of the destination in the container', async () => {
    const src = source('owneridmap', 4321, 4321);
    // /home/test belongs to the container's user test (1000)
    const r = await nspawn(['-q', '-U', '-D', copy.dir, '-M', MACHINE, '-u', 'test', `--bind=${src}:/home/test:owneridmap`,
      '/bin/sh', '-c', 'stat -c "%u:%g" /home/test /home/test/f; touch /home/test/mine && echo wrote']);
    expect(r.stderr).toBe('');
    expect(r.stdout).toBe('1000:1000\n1000:1000\nwrote\n');
    expect(owner(`${src}/mine`)).toBe('4321:4321');
  });

  ktest('without a user namespace there is nothing to map to: a plain bind', async () => {
    const src = source('plain', 0, 1000);
    const r = await nspawn(['-q', '-D', copy.dir, '-M', `${MACHINE}-nous`, `--bind=${src}:/srv/m:idmap`, '/bin/sh', '-c', 'stat -c "%u:%g" /srv/m/f']);
    expect(r).toMatchObject({ code: 0, stdout: '1000:1000\n', stderr: '' });
  });

  ktest('a file system without ID-mapped mounts (sysfs): exit 1, the bind, the option and the file system named, nothing left', async () => {
    const r = await nspawn(['-q', '-U', '-D', copy.dir, '-M', MACHINE, '--bind=/sys/kernel:/srv/k:idmap', '/bin/true']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^nspawn-ts: --bind=\/sys\/kernel:…:idmap: the sysfs file system of \/sys\/kernel does not support ID-mapped mounts \(mount_setattr MOUNT_ATTR_IDMAP: .* \((EINVAL|EOPNOTSUPP)\)\); bind it without idmap, or from a file system that does\n$/);
    expect(machineRecords()).toEqual([]);
  });

  ktest('--private-users-ownership=map: the tree is not chowned; its owners are the container\'s through an ID-mapped root', async () => {
    const own = await copyRoot(await busyboxRoot());
    try {
      // (--resolv-conf=off: the shared root's resolv.conf is rewritten by other tests, with owners this range may not map)
      const r = await nspawn(['-q', '-U', '--private-users-ownership=map', '--resolv-conf=off', '-D', own.dir, '-M', `${MACHINE}-map`, '/bin/sh', '-c',
        'stat -c "%u:%g" / /home/test; touch /made && stat -c "%u:%g" /made; cat /proc/self/uid_map']);
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
      const [rootDir, home, made, uidMap] = r.stdout.split('\n');
      expect([rootDir, home, made]).toEqual(['0:0', '1000:1000', '0:0']);
      expect(uidMap?.trim()).toMatch(/^0 +[1-9][0-9]* +65536$/);
      // on the host nothing was shifted, and what the container's root made is host root's
      expect([owner(own.dir), owner(`${own.dir}/home/test`), owner(`${own.dir}/made`)]).toEqual(['0:0', '1000:1000', '0:0']);
      // with -x the overlay's lower layer is the ID-mapped tree (it was refused before)
      const eph = await nspawn(['-q', '-U', '--private-users-ownership=map', '--resolv-conf=off', '-x', '-D', own.dir, '-M', `${MACHINE}-mapx`, '/bin/sh', '-c',
        'stat -c "%u:%g" /home/test /made; touch /made-x && stat -c "%u:%g" /made-x']);
      expect(eph).toMatchObject({ code: 0, stderr: '', stdout: '1000:1000\n0:0\n0:0\n' });
      expect(existsSync(`${own.dir}/made-x`)).toBe(false);
      const bad = await nspawn(['-q', '-U', '--private-users-ownership=maybe', '-D', own.dir, '-M', `${MACHINE}-mapb`, '/bin/true']);
      expect(bad).toMatchObject({ code: 1, stderr: 'nspawn-ts: Cannot parse --private-users-ownership= value: maybe\nnspawn-ts: --private-users-ownership= takes off, chown, map, auto\n' });
      expect(machineRecords()).toEqual([]);
    } finally {
      own.remove();
    }
  });

  ktest('a bad bind option names the option and what is allowed', async () => {
    const r = await nspawn(['-q', '-D', copy.dir, '-M', `${MACHINE}-bad`, `--bind=${base}:/srv/m:idmapped`, '/bin/true']);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`Failed to parse --bind= argument ${base}:/srv/m:idmapped: invalid bind mount option "idmapped"`);
    expect(r.stderr).toContain('rbind, norbind, idmap, noidmap, rootidmap, owneridmap');
    expect(machineRecords()).toEqual([]);
  });
});
