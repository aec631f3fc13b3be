// Host tree walks through directory fds (src/runtime/file-tree.ts): the -U ownership shift under a
// hostile image owner swapping a directory for a symlink to a host directory, and what a shift does.
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  chmodSync, chownSync, existsSync, lchownSync, linkSync, lstatSync, lutimesSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, readlinkSync,
  rmSync, statSync, symlinkSync, truncateSync, utimesSync, writeFileSync,
} from 'node:fs';
import { afterEach, describe, expect } from 'vitest';
import { ktest } from '../helpers/kernel.js';
import { busyboxRoot, copyRoot, debianRoot } from '../helpers/rootfs.js';
import { nspawn } from '../helpers/nspawn.js';
import { killAndWait, runOk } from '../helpers/exec.js';
import { copyTree, shiftOwnership } from '../../src/runtime/file-tree.js';
import { sys } from '../../src/native.js';

const SHIFT = 0x7e0000;
let base: string | undefined;
afterEach(() => {
  if (base) rmSync(base, { recursive: true, force: true });
  base = undefined;
});

function scratch(): string {
  base = mkdtempSync('/var/tmp/nspawn-ts-tree-');
  chmodSync(base, 0o755); // the image owner (UID 1000) walks into it
  return base;
}

function files(dir: string, n: number, uid: number, mode = 0o644): void {
  for (let i = 0; i < n; i++) {
    const f = `${dir}/f${String(i).padStart(4, '0')}`;
    writeFileSync(f, 'x');
    chownSync(f, uid, uid);
    chmodSync(f, mode);
  }
}

describe('-U ownership shift', () => {
  ktest('an image owner swapping its directory for a symlink to a host directory during the shift changes no host file', async () => {
    const b = scratch();
    // host files the image owner must never reach: same names as in its own directory
    const host = `${b}/host`;
    mkdirSync(host, { mode: 0o755 });
    files(host, 1000, 0, 0o4755);
    // the image: /home/u is the owner's (0777: renames in it stay possible once it is shifted), d its directory
    const img = `${b}/img`;
    mkdirSync(`${img}/home/u/d`, { recursive: true });
    chownSync(`${img}/home/u`, 1000, 1000);
    chmodSync(`${img}/home/u`, 0o777);
    chownSync(`${img}/home/u/d`, 1000, 1000);
    files(`${img}/home/u/d`, 1000, 1000);
    // the owner, as UID 1000: d → a symlink to the host directory and back, as fast as it can
    const attacker = spawn('perl', ['-e', `chdir "${img}/home/u" or die; $| = 1; print "go\\n";
      for (;;) { rename "d", "x"; symlink "${host}", "d"; select(undef, undef, undef, 0.0005); unlink "d"; rename "x", "d"; }`],
    { uid: 1000, gid: 1000, stdio: ['ignore', 'pipe', 'inherit'] });
    try {
      await new Promise<void>((resolve) => attacker.stdout?.once('data', () => resolve()));
      let shifted = 0;
      let refused = 0;
      const hostTouched = (): string[] => readdirSync(host).filter((f) => {
        const st = lstatSync(`${host}/${f}`);
        return st.uid !== 0 || st.gid !== 0 || (st.mode & 0o7777) !== 0o4755;
      });
      const deadline = Date.now() + 3000;
      for (let i = 0; Date.now() < deadline; i++) {
        try {
          shiftOwnership(img, i % 2 === 0 ? SHIFT : 0);
          shifted++;
        } catch (err) {
          // the walk met the swap: it stops (and leaves the root unshifted, so the next run redoes it)
          expect((err as { code?: string }).code).toBe('TREE_CHANGED');
          i--;
          refused++;
        }
        expect(hostTouched()).toEqual([]);
        await new Promise((r) => setImmediate(r));
      }
      expect(shifted).toBeGreaterThan(2);
      expect(shifted + refused).toBeGreaterThan(10);
    } finally {
      await killAndWait(attacker);
    }
    expect(readdirSync(host)).toHaveLength(1000);
  }, 30_000);

  ktest('set-ID bits survive, symlinks change themselves, mount points are left, the root changes last', async () => {
    const b = scratch();
    const img = `${b}/img`;
    mkdirSync(`${img}/bin`, { recursive: true });
    writeFileSync(`${img}/bin/su`, 'x');
    chmodSync(`${img}/bin/su`, 0o4755);
    writeFileSync(`${img}/bin/wall`, 'x');
    chownSync(`${img}/bin/wall`, 0, 5);
    chmodSync(`${img}/bin/wall`, 0o2755);
    mkdirSync(`${img}/srv`, { mode: 0o2775 });
    chmodSync(`${img}/srv`, 0o2775);
    symlinkSync(`${b}/outside`, `${img}/link`);
    writeFileSync(`${b}/outside`, 'host');
    mkdirSync(`${img}/mnt`);
    await runOk('mount', ['-t', 'tmpfs', 'tmpfs', `${img}/mnt`]);
    try {
      writeFileSync(`${img}/mnt/other-fs`, 'x');
      expect(shiftOwnership(img, SHIFT)).toBe(6); // bin, su, wall, srv, link and the root; mnt is the tmpfs's own root
      expect(lstatSync(`${img}/bin/su`)).toMatchObject({ uid: SHIFT, gid: SHIFT, mode: 0o104755 });
      expect(lstatSync(`${img}/bin/wall`)).toMatchObject({ uid: SHIFT, gid: SHIFT + 5, mode: 0o102755 });
      expect(lstatSync(`${img}/srv`)).toMatchObject({ uid: SHIFT, mode: 0o42775 });
      expect(lstatSync(`${img}/link`).uid).toBe(SHIFT);
      expect(statSync(`${b}/outside`).uid).toBe(0);
      expect(statSync(`${img}/mnt/other-fs`).uid).toBe(0);
      expect(statSync(`${img}/mnt`).uid).toBe(0);
      expect(statSync(img).uid).toBe(SHIFT);
      // done is done: the root's owner says so
      expect(shiftOwnership(img, SHIFT)).toBe(0);
      expect(shiftOwnership(img, 0)).toBe(6);
      expect(lstatSync(`${img}/bin/su`)).toMatchObject({ uid: 0, mode: 0o104755 });
    } finally {
      await runOk('umount', [`${img}/mnt`]);
    }
  });
});

/** Everything a copy must keep, per relative path: type, mode, owner, device, size, times (ns), data, link target, hard-link group. */
function describeTree(root: string, opts: { atime?: boolean } = {}): Map<string, string> {
  const out = new Map<string, string>();
  const inodes = new Map<bigint, string>();
  const walk = (rel: Buffer): void => {
    const path = rel.length ? Buffer.concat([Buffer.from(`${root}/`), rel]) : Buffer.from(root);
    const st = lstatSync(path, { bigint: true });
    let extra = '';
    if (st.isFile()) extra = createHash('sha256').update(readFileSync(path)).digest('hex').slice(0, 16);
    if (st.isSymbolicLink()) extra = readlinkSync(path, { encoding: 'buffer' }).toString('hex');
    if (!st.isDirectory() && st.nlink > 1n) {
      const first = inodes.get(st.ino);
      if (first === undefined) inodes.set(st.ino, rel.toString('hex'));
      extra += ` link:${first ?? 'first'} nlink:${st.nlink}`;
    }
    const times = st.isDirectory() || opts.atime === false ? st.mtimeNs : `${st.mtimeNs}/${st.atimeNs}`;
    // (a directory's size is its file system's business: ext4's grows with entries once held)
    out.set(rel.toString('hex'), `mode ${st.mode.toString(8)} ${st.uid}:${st.gid} rdev ${st.rdev} size ${st.isDirectory() ? '-' : st.size} t ${times} ${extra}`);
    if (st.isDirectory()) {
      for (const e of readdirSync(path, { encoding: 'buffer' })) walk(rel.length ? Buffer.concat([rel, Buffer.from('/'), e]) : e);
    }
  };
  walk(Buffer.alloc(0));
  return out;
}

async function attrs(root: string): Promise<string> {
  // every xattr (user.*, security.capability, the ACLs' system.posix_acl_*) and the ACLs as getfacl reads them
  const x = await runOk('getfattr', ['-R', '-P', '-h', '-d', '-m', '-', '-e', 'hex', '.'], { cwd: root });
  const a = await runOk('getfacl', ['-R', '-P', '-n', '.'], { cwd: root });
  // per-file blocks in name order (readdir order differs between the trees); the mount point is compared on its own
  return `${x}\n${a}`.split(/\n\n+/).filter((blk) => blk.trim() !== '' && !blk.includes('# file: mnt\n')).sort().join('\n\n');
}

function unixSocketFile(path: string): void {
  const s = sys();
  const fd = s.socket(1 /* AF_UNIX */, 1 /* SOCK_STREAM */, 0);
  try {
    s.bind(fd, Buffer.concat([Buffer.from([1, 0]), Buffer.from(path), Buffer.from([0])]));
  } finally {
    s.close(fd);
  }
}

/** A tree with one of everything copyTree must keep. */
async function everyKind(t: string): Promise<void> {
  mkdirSync(`${t}/etc/sub`, { recursive: true });
  writeFileSync(`${t}/etc/conf`, 'config\n');
  chownSync(`${t}/etc/conf`, 1234, 5678);
  chmodSync(`${t}/etc/conf`, 0o640);
  await runOk('setfattr', ['-n', 'user.origin', '-v', 'template', `${t}/etc/conf`]);
  await runOk('setfacl', ['-m', 'u:1000:rw,g:50:r', `${t}/etc/conf`]);
  await runOk('setfacl', ['-d', '-m', 'u:1000:rwx', `${t}/etc/sub`]);
  writeFileSync(`${t}/ping`, 'binary');
  chmodSync(`${t}/ping`, 0o755);
  await runOk('setcap', ['cap_net_raw+ep', `${t}/ping`]);
  writeFileSync(`${t}/su`, 'setuid');
  chmodSync(`${t}/su`, 0o4755);
  writeFileSync(`${t}/hard1`, 'one inode, three names');
  linkSync(`${t}/hard1`, `${t}/hard2`);
  linkSync(`${t}/hard1`, `${t}/etc/sub/hard3`);
  await runOk('mkfifo', ['-m', '0620', `${t}/fifo`]);
  chownSync(`${t}/fifo`, 7, 8);
  await runOk('mknod', ['-m', '0666', `${t}/null`, 'c', '1', '3']);
  await runOk('mknod', ['-m', '0660', `${t}/loop9`, 'b', '7', '9']);
  chownSync(`${t}/loop9`, 0, 6);
  unixSocketFile(`${t}/sock`);
  symlinkSync('../nowhere', `${t}/etc/dangling`);
  lchownSync(`${t}/etc/dangling`, 1000, 1000);
  writeFileSync(Buffer.from(`${t}/name-\xff\xfe-not-utf8`, 'latin1'), 'bytes');
  writeFileSync(`${t}/sparse`, '');
  truncateSync(`${t}/sparse`, 64 << 20);
  writeFileSync(`${t}/empty`, '');
  mkdirSync(`${t}/ro`, { mode: 0o555 });
  chmodSync(`${t}/ro`, 0o555);
  // times to the nanosecond (atime after mtime and recent: reading the source does not move it)
  const now = Date.now() / 1000;
  for (const f of ['etc/conf', 'ping', 'hard1', 'fifo', 'null', 'sparse', 'ro', 'etc/sub', 'etc']) utimesSync(`${t}/${f}`, now - 3600.123456789, now - 7200.987654321);
  lutimesSync(`${t}/etc/dangling`, now - 100, now - 200);
}

describe('copyTree (--template=)', () => {
  ktest('keeps device nodes, FIFOs, sockets, hard links, xattrs, ACLs, file capabilities, owners, modes, times and holes', async () => {
    // on a noatime tmpfs: reading the source (to copy, to compare) moves no access time
    const b = `${scratch()}/fs`;
    mkdirSync(b);
    await runOk('mount', ['-t', 'tmpfs', '-o', 'noatime,mode=755', 'tmpfs', b]);
    try {
      const src = `${b}/src`;
      mkdirSync(src);
      await everyKind(src);
      mkdirSync(`${src}/mnt`);
      await runOk('mount', ['-t', 'tmpfs', '-o', 'mode=750', 'tmpfs', `${src}/mnt`]);
      let r;
      try {
        writeFileSync(`${src}/mnt/on-another-fs`, 'x');
        r = copyTree(src, `${b}/dst`);
      } finally {
        await runOk('umount', [`${src}/mnt`]);
      }
      const want = describeTree(src);
      const got = describeTree(`${b}/dst`);
      // the mount point is there, empty, as the mounted file system's root looked; its file is not copied
      expect(got.get(Buffer.from('mnt').toString('hex'))).toMatch(/^mode 40750 /);
      expect(readdirSync(`${b}/dst/mnt`)).toEqual([]);
      for (const m of [want, got]) m.delete(Buffer.from('mnt').toString('hex'));
      expect([...got.entries()].sort()).toEqual([...want.entries()].sort());
      expect(got.size).toBe(18);
      expect(await attrs(`${b}/dst`)).toBe(await attrs(src));
      expect(await attrs(src)).toMatch(/security\.capability=0x/);
      expect(await attrs(src)).toMatch(/user:1000:rw-/);
      expect(await attrs(src)).toMatch(/default:user:1000:rwx/);
      expect(lstatSync(`${b}/dst/sock`).isSocket()).toBe(true);
      expect(statSync(`${b}/dst/sparse`).blocks).toBeLessThan(64);
      expect(r).toMatchObject({ hardlinks: 2, reflinked: 0 });
      expect(r.copied).toBeGreaterThanOrEqual(7);
    } finally {
      await runOk('umount', ['-R', b]);
    }
  });

  ktest('shares the data with the source (FICLONE) where the file system can: XFS with reflink', async () => {
    const b = scratch();
    const image = `${b}/xfs.img`;
    writeFileSync(image, '');
    truncateSync(image, 400 << 20);
    await runOk('mkfs.xfs', ['-q', '-m', 'reflink=1', image]);
    mkdirSync(`${b}/mnt`);
    await runOk('mount', ['-o', 'loop', image, `${b}/mnt`]);
    try {
      const src = `${b}/mnt/src`;
      mkdirSync(src);
      await everyKind(src);
      writeFileSync(`${src}/big`, Buffer.alloc(8 << 20, 7));
      const r = copyTree(src, `${b}/mnt/dst`);
      expect(r.copied).toBe(0);
      expect(r.reflinked).toBeGreaterThanOrEqual(8);
      expect(readFileSync(`${b}/mnt/dst/big`).equals(readFileSync(`${src}/big`))).toBe(true);
      expect(await runOk('filefrag', ['-v', `${b}/mnt/dst/big`])).toMatch(/shared/);
      expect(await attrs(`${b}/mnt/dst`)).toBe(await attrs(src));
      expect(describeTree(`${b}/mnt/dst`, { atime: false })).toEqual(describeTree(src, { atime: false }));
    } finally {
      await runOk('umount', [`${b}/mnt`]);
    }
  });
});

describe('--template=', () => {
  ktest('--template=DEBIAN-ROOT -D NEW: the copy is the template, /dev nodes and hard links included, and it runs', async () => {
    const debian = await debianRoot();
    const b = scratch();
    const dir = `${b}/new`;
    const r = await nspawn(['-q', '-D', dir, `--template=${debian}`, '--register=no', '--resolv-conf=off', '/bin/sh', '-c', 'test -c /dev/ptmx && stat -c %h /usr/bin/perl && cat /etc/debian_version'],
      { timeoutMs: 120_000 });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^2\n12\./);
    // (access times: reading the template moved its own)
    const want = describeTree(debian, { atime: false });
    const got = describeTree(dir, { atime: false });
    expect(want.size).toBeGreaterThan(5000);
    const differ = [...want].filter(([k, v]) => got.get(k) !== v).map(([k]) => Buffer.from(k, 'hex').toString());
    expect(differ).toEqual([]);
    expect([...got.keys()].filter((k) => !want.has(k)).map((k) => Buffer.from(k, 'hex').toString())).toEqual([]);
    expect(existsSync(`${dir}.#nspawn-ts-`)).toBe(false);
    expect(readdirSync(b)).toEqual(['new']);
  }, 180_000);

  ktest('a template with a FIFO, a character device, hard links and xattrs becomes a container with them', async () => {
    const busybox = await busyboxRoot();
    const tpl = await copyRoot(busybox);
    const b = scratch();
    try {
      mkdirSync(`${tpl.dir}/srv/kinds`, { recursive: true });
      await everyKind(`${tpl.dir}/srv/kinds`);
      const dir = `${b}/new`;
      const r = await nspawn(['-q', '-D', dir, `--template=${tpl.dir}`, '--register=no', '/bin/sh', '-c',
        'cd /srv/kinds && test -p fifo && test -c null && test -b loop9 && test -S sock && stat -c "%h %i" hard1 hard2 etc/sub/hard3 && ls -l su'], { timeoutMs: 60_000 });
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
      const [l1, l2, l3, su] = r.stdout.trim().split('\n');
      expect(l1).toMatch(/^3 /);
      expect(l2).toBe(l1);
      expect(l3).toBe(l1);
      expect(su).toMatch(/^-rwsr-xr-x +1 +root +root /);
      expect(await attrs(`${dir}/srv/kinds`)).toBe(await attrs(`${tpl.dir}/srv/kinds`));
      expect(describeTree(`${dir}/srv/kinds`, { atime: false })).toEqual(describeTree(`${tpl.dir}/srv/kinds`, { atime: false }));
    } finally {
      tpl.remove();
    }
  }, 120_000);
});
