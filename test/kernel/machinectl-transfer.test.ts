// machinectl-ts's image transfer verbs with a private machines directory (NSPAWN_TS_MACHINES_DIR;
// the real /var/lib/machines is never touched): export-tar → import-tar of the Debian test root
// (which then boots with -b), owners/modes/xattrs/ACLs/device nodes/hard links through a round
// trip, import-fs, pull-tar from an HTTP server in a test network namespace (good and bad
// checksum, missing SHA256SUMS line, a truncated download), hostile archives (../ members, writing
// through a symlink out of the image) refused with the host untouched, and interrupted transfers
// leaving nothing under the final name.
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  closeSync, existsSync, linkSync, lstatSync, mkdirSync, openSync, readFileSync, readdirSync, readlinkSync, statSync, symlinkSync, unlinkSync, writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect } from 'vitest';
import { ktest } from '../helpers/kernel.js';
import { killAndWait, run, runOk, waitFor } from '../helpers/exec.js';
import { TestNetns } from '../helpers/netns.js';
import { NSPAWN_TS, machineLeader } from '../helpers/nspawn.js';
import { busyboxRoot as cachedBusybox, debianRoot } from '../helpers/rootfs.js';
import { tempDir } from './machinectl-fixture.js';
import { sys } from '../../src/native.js';

const BIN = new URL('../../bin/machinectl-ts', import.meta.url).pathname;

let t: { dir: string; cleanup: () => void };
let pool: string;
let env: NodeJS.ProcessEnv;

beforeAll(() => {
  t = tempDir('machinectl-xfer-');
  pool = join(t.dir, 'machines');
  mkdirSync(pool);
  env = { ...process.env, NSPAWN_TS_MACHINES_DIR: pool, NSPAWN_TS_RUN_DIR: join(t.dir, 'run'), NSPAWN_TS_SETTINGS_DIRS: join(t.dir, 'etc-nspawn') };
});

afterAll(async () => {
  // read-only imports are immutable: machinectl-ts remove clears the flag
  for (const e of existsSync(pool) ? readdirSync(pool) : []) {
    if (!e.startsWith('.')) await run(BIN, ['remove', e], { env });
  }
  t.cleanup();
});

function ctl(args: string[], opts: { input?: string; timeoutMs?: number } = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return run(BIN, args, { env, timeoutMs: opts.timeoutMs ?? 120_000, ...(opts.input !== undefined ? { input: opts.input } : {}) });
}

/** Everything tar should keep of a tree: type, mode, owner, size, device, link target, xattrs, ACLs. */
async function describeTree(root: string): Promise<string[]> {
  const out: string[] = [];
  const walk = (rel: string): void => {
    const p = join(root, rel);
    const st = lstatSync(p);
    const kind = st.isSymbolicLink() ? `l>${readlinkSync(p)}` : st.isDirectory() ? 'd' : st.isFile() ? `f${st.size}` : st.isCharacterDevice() ? `c${st.rdev}` : st.isBlockDevice() ? `b${st.rdev}` : st.isFIFO() ? 'p' : 's';
    out.push(`${rel || '.'} ${kind} ${(st.mode & 0o7777).toString(8)} ${st.uid}:${st.gid}${st.isFile() && st.nlink > 1 ? ` n${st.nlink}` : ''}`);
    if (st.isDirectory() && !st.isSymbolicLink()) for (const e of readdirSync(p).sort()) walk(rel ? `${rel}/${e}` : e);
  };
  walk('');
  const attrs = await run('getfattr', ['-R', '-P', '-d', '-m', '-', '--absolute-names', '.'], { cwd: root });
  const acls = await run('getfacl', ['-R', '-P', '-p', '-s', '.'], { cwd: root });
  // one block per file, in the file system's readdir order (tmpfs: newest first): compared sorted
  const blocks = (text: string): string[] => text.split('\n\n').map((b) => b.trim()).filter(Boolean).sort().flatMap((b) => b.split('\n'));
  return [...out, ...blocks(attrs.stdout), ...blocks(acls.stdout)];
}

/** A busybox image with what tar must carry: owners, setuid, xattrs, an ACL, device nodes, a FIFO, hard links, a sparse file. */
async function richImage(name: string): Promise<string> {
  const dir = join(t.dir, name);
  await runOk('cp', ['-a', await cachedBusybox(), dir]);
  writeFileSync(join(dir, 'owned'), 'x');
  await runOk('chown', ['1234:5678', join(dir, 'owned')]);
  await runOk('chmod', ['4751', join(dir, 'owned')]);
  await runOk('setfattr', ['-n', 'user.nspawn-ts', '-v', 'kept', join(dir, 'owned')]);
  await runOk('setfattr', ['-n', 'trusted.nspawn-ts', '-v', 'kept-too', join(dir, 'owned')]);
  await runOk('setfacl', ['-m', 'u:4321:rx', join(dir, 'owned')]);
  await runOk('mknod', ['-m', '0620', join(dir, 'dev/xnull'), 'c', '1', '3']);
  await runOk('mknod', ['-m', '0600', join(dir, 'dev/xloop'), 'b', '7', '42']);
  await runOk('mkfifo', [join(dir, 'fifo')]);
  linkSync(join(dir, 'owned'), join(dir, 'hardlink'));
  await runOk('truncate', ['-s', '64M', join(dir, 'sparse')]);
  symlinkSync('/etc/os-release', join(dir, 'abs-link'));
  return dir;
}

describe('export-tar → import-tar', () => {
  for (const suffix of ['.tar', '.tar.gz', '.tar.xz', '.tar.zst'] as const) {
    ktest(`a round trip through ${suffix} keeps owners, modes, xattrs, ACLs, device nodes, FIFOs, hard links and links`, async () => {
      const src = await richImage(`rich${suffix.replace(/\./g, '-')}`);
      const name = `rich${suffix.replace(/\./g, '-')}`;
      expect((await ctl(['import-fs', '-q', src, name])).code).toBe(0);
      const file = join(t.dir, `out${suffix}`);
      const ex = await ctl(['export-tar', name, file]);
      expect(ex.code, ex.stderr).toBe(0);
      const magic = readFileSync(file).subarray(0, 4).toString('hex');
      expect(magic.startsWith({ '.tar': '2e2f', '.tar.gz': '1f8b', '.tar.xz': 'fd37', '.tar.zst': '28b52ffd' }[suffix])).toBe(true);
      // the sparse file stays sparse in the archive: 64 MiB of holes do not make a 64 MiB tar
      expect(statSync(file).size).toBeLessThan(16 << 20);
      const im = await ctl(['import-tar', file, `${name}-back`]);
      expect(im.code, im.stderr).toBe(0);
      expect(await describeTree(join(pool, `${name}-back`))).toEqual(await describeTree(src));
      expect(im.stderr).toMatch(/100% /); // not a terminal: one line per 10%
      expect(im.stderr.split('\n').filter((l) => /%/.test(l)).length).toBeLessThanOrEqual(10);
    });
  }

  ktest('export to standard output and import from standard input; -q is silent; a name is needed for -', async () => {
    const src = await richImage('piped');
    expect((await ctl(['import-fs', '-q', src, 'piped'])).code).toBe(0);
    const file = join(t.dir, 'piped.tar');
    const r = await run('sh', ['-c', `${BIN} export-tar -q piped - > ${file} && ${BIN} import-tar -q - piped-back < ${file}`], { env, timeoutMs: 60_000 });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toBe('');
    expect(await describeTree(join(pool, 'piped-back'))).toEqual(await describeTree(src));
    const noName = await ctl(['import-tar', '-'], { input: '' });
    expect(noName.code).toBe(1);
    expect(noName.stderr).toMatch(/needs an image name/);
  });

  ktest('names: taken from the file name, existing ones refused without --force, replaced with it; --read-only', async () => {
    const file = join(t.dir, 'tiny-1.tar.zst');
    await runOk('tar', ['--zstd', '-cf', file, '-C', await cachedBusybox(), '.']);
    expect((await ctl(['import-tar', '-q', file])).code).toBe(0);
    expect(existsSync(join(pool, 'tiny-1/bin/busybox'))).toBe(true);
    const again = await ctl(['import-tar', '-q', file]);
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/Image 'tiny-1' already exists .*--force/);
    writeFileSync(join(pool, 'tiny-1/marker'), 'old');
    expect((await ctl(['import-tar', '-q', '--force', '--read-only', file])).code).toBe(0);
    expect(existsSync(join(pool, 'tiny-1/marker'))).toBe(false);
    const list = await ctl(['list-images', '--no-legend']);
    expect(list.stdout).toMatch(/^tiny-1\s+directory\s+yes/m);
    const bad = await ctl(['import-tar', '-q', join(t.dir, 'no-such.tar')]);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/Cannot read .*no-such\.tar/);
    expect(readdirSync(pool).filter((e) => e.startsWith('.#import'))).toEqual([]);
  });

  ktest('the Debian test root round-trips through .tar.zst and the imported image boots with -b', async ({ onTestFinished }) => {
    symlinkSync(await debianRoot(), join(pool, 'deb-src'));
    const file = join(t.dir, 'debian.tar.zst');
    const ex = await ctl(['export-tar', 'deb-src', file], { timeoutMs: 300_000 });
    expect(ex.code, ex.stderr).toBe(0);
    const im = await ctl(['import-tar', file, 'deb'], { timeoutMs: 300_000 });
    expect(im.code, im.stderr).toBe(0);
    unlinkSync(join(pool, 'deb-src'));
    expect(await describeTree(join(pool, 'deb'))).toEqual(await describeTree(await debianRoot()));
    const name = `xfer-deb-${process.pid}`;
    const c = spawn(process.execPath, [NSPAWN_TS, '-q', '-D', join(pool, 'deb'), '-M', name, '-b'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    c.stdout?.on('data', (d: Buffer) => { out += d.toString(); });
    c.stderr?.on('data', (d: Buffer) => { out += d.toString(); });
    onTestFinished(() => killAndWait(c));
    const leader = await waitFor(() => {
      if (c.exitCode !== null) throw new Error(`exited early: ${out}`);
      return machineLeader(name);
    }, 'the container to start', 30_000);
    const state = await waitFor(async () => {
      const r = await run('nsenter', ['-t', String(leader), '-m', '-u', '-i', '-n', '-p', 'systemctl', 'is-system-running']);
      const s = r.stdout.trim();
      return s === 'running' || s === 'degraded' ? s : undefined;
    }, 'systemd to finish booting', 90_000, 200);
    expect(state).toBe('running');
    c.kill('SIGTERM');
    await waitFor(() => c.exitCode !== null, 'poweroff', 30_000);
    expect(c.exitCode).toBe(0);
  }, 600_000);
});

describe('import-fs', () => {
  ktest('copies a directory as an image; refuses a file', async () => {
    const src = await richImage('fs-src');
    const r = await ctl(['import-fs', src, 'fs-copy']);
    expect(r.code, r.stderr).toBe(0);
    expect(await describeTree(join(pool, 'fs-copy'))).toEqual(await describeTree(src));
    const notDir = await ctl(['import-fs', join(src, 'owned'), 'x']);
    expect(notDir.code).toBe(1);
    expect(notDir.stderr).toMatch(/is not a directory/);
  });
});

describe('hostile archives', () => {
  /** A tar built member by member with Python's tarfile (GNU tar would not write these). */
  async function evilTar(file: string, script: string): Promise<void> {
    await runOk('python3', ['-c', `
import tarfile, io, sys
t = tarfile.open(sys.argv[1], 'w')
def f(name, data=b'pwned', **kw):
    i = tarfile.TarInfo(name); i.size = len(data); [setattr(i, k, v) for k, v in kw.items()]; t.addfile(i, io.BytesIO(data))
def d(name):
    i = tarfile.TarInfo(name); i.type = tarfile.DIRTYPE; i.mode = 0o755; t.addfile(i)
def l(name, target, kind=tarfile.SYMTYPE):
    i = tarfile.TarInfo(name); i.type = kind; i.linkname = target; t.addfile(i)
d('etc')
${script}
t.close()
`, file]);
  }

  ktest('a ../ member, and a file written through an absolute or ../ symlink, are refused; the host is untouched; nothing is left', async () => {
    const outside = join(t.dir, 'outside');
    mkdirSync(outside);
    writeFileSync(join(outside, 'victim'), 'original');
    const cases: Array<[string, string]> = [
      ['dotdot', `f('../../../../../../..${outside}/dotdot')`],
      ['dotdot-inner', `f('etc/../../../../../../../..${outside}/inner')`],
      ['abs-link', `l('escape', '${outside}'); f('escape/victim')`],
      ['rel-link', `l('escape', '../../../../../../../..${outside}'); f('escape/victim')`],
      ['hardlink-out', `l('etc/hard', '../../../../../../../..${outside}/victim', tarfile.LNKTYPE)`],
    ];
    for (const [name, script] of cases) {
      const file = join(t.dir, `${name}.tar`);
      await evilTar(file, script);
      const r = await ctl(['import-tar', '-q', file, name]);
      expect(r.code, `${name}: ${r.stderr}`).toBe(1);
      expect(r.stderr).toMatch(/Unpacking the archive failed: tar exited with status 2/);
      expect(existsSync(join(pool, name))).toBe(false);
    }
    expect(readdirSync(outside).sort()).toEqual(['victim']);
    expect(readFileSync(join(outside, 'victim'), 'utf8')).toBe('original');
    expect(readdirSync(pool).filter((e) => e.startsWith('.#import'))).toEqual([]);
  });

  ktest('absolute members are put inside the image; an absolute symlink stays a link that means the container\'s path', async () => {
    const file = join(t.dir, 'abs.tar');
    await evilTar(file, `f('/etc/abs-member', b'inside'); l('etc/shadow-link', '/etc/shadow'); f('etc/hostname', b'abs')`);
    const r = await ctl(['import-tar', '-q', file, 'abs']);
    expect(r.code, r.stderr).toBe(0);
    expect(readFileSync(join(pool, 'abs/etc/abs-member'), 'utf8')).toBe('inside');
    expect(readlinkSync(join(pool, 'abs/etc/shadow-link'))).toBe('/etc/shadow');
    expect(existsSync('/etc/abs-member')).toBe(false);
  });
});

describe('interrupted transfers', () => {
  ktest('kill -9 mid-import leaves no image under the name; the next transfer sweeps the remains; SIGTERM cleans up at once', async () => {
    const file = join(t.dir, 'big.tar');
    await runOk('tar', ['-cf', file, '-C', await cachedBusybox(), '.']);
    for (const sig of ['SIGKILL', 'SIGTERM'] as const) {
      // the archive's first half, then nothing: the import waits for the rest
      const child: ChildProcess = spawn('sh', ['-c', `head -c ${Math.floor(statSync(file).size / 2)} ${file}; sleep 60`], { stdio: ['ignore', 'pipe', 'ignore'] });
      const imp = spawn(BIN, ['import-tar', '-q', '-', 'cut'], { env, stdio: [child.stdout as NodeJS.ReadableStream & { fd?: number }, 'ignore', 'pipe'] as never });
      try {
        // a new temporary directory with files in it (the one kill -9 left is swept when the next begins)
        const before = readdirSync(pool);
        let said = '';
        imp.stderr?.on('data', (d: Buffer) => { said += d.toString(); });
        await waitFor(() => readdirSync(pool).some((e) => e.startsWith('.#import-cut-') && !before.includes(e) && readdirSync(join(pool, e)).length > 0), 'the import to begin', 15_000)
          .catch((err: Error) => { throw new Error(`${err.message} (${sig}; pool: ${readdirSync(pool).join(' ')}; it said: ${said})`); });
        imp.kill(sig);
        await waitFor(() => imp.exitCode !== null || imp.signalCode !== null, 'the import to end', 10_000);
        expect(existsSync(join(pool, 'cut'))).toBe(false);
        const temps = readdirSync(pool).filter((e) => e.startsWith('.#import-'));
        if (sig === 'SIGTERM') {
          expect(imp.exitCode).toBe(143);
          expect(temps).toEqual([]);
        } else {
          expect(temps.length).toBe(1); // what kill -9 left, until the next transfer
          // Its tar inherited the directory's lock and ends only when it reads the end of its input,
          // a moment after the kill (longer under load): until then the transfer is still running and
          // the next one rightly leaves the directory alone. Sweeping is for what no process holds.
          const left = join(pool, temps[0]!);
          await waitFor(() => lockFree(left), 'the killed import\'s tar to end', 10_000);
        }
      } finally {
        await killAndWait(child);
        if (imp.exitCode === null && imp.signalCode === null) await killAndWait(imp);
      }
    }
    const next = await ctl(['import-tar', '-q', file, 'after']);
    expect(next.code, next.stderr).toBe(0);
    expect(readdirSync(pool).filter((e) => e.startsWith('.#import-'))).toEqual([]);
  });
});

/** Whether no process holds the lock of directory `dir` (a running transfer holds it). */
function lockFree(dir: string): boolean {
  const fd = openSync(dir, 'r');
  try {
    return sys().flock(fd, LOCK_SH | LOCK_NB);
  } finally {
    closeSync(fd); // drops the shared lock taken, if it was
  }
}
const LOCK_SH = 1;
const LOCK_NB = 4;

// --- pull-tar ----------------------------------------------------------------------------------

const SERVER_ADDR = '198.51.100.80';
const SERVER = `
const http = require('http'), fs = require('fs'), path = require('path');
const root = process.argv[1];
http.createServer((q, r) => {
  const url = decodeURIComponent(q.url);
  if (url.startsWith('/redirect/')) { r.writeHead(302, { location: url.slice('/redirect'.length) }); return r.end(); }
  const file = path.join(root, path.normalize(url));
  if (!file.startsWith(root) || !fs.existsSync(file) || fs.statSync(file).isDirectory()) { r.writeHead(404); return r.end('no'); }
  const data = fs.readFileSync(file);
  r.writeHead(200, { 'content-length': data.length });
  if (url.startsWith('/trunc/')) { r.write(data.subarray(0, data.length >> 1)); setTimeout(() => r.socket.destroy(), 100); return; }
  r.end(data);
}).listen(80, '${SERVER_ADDR}', () => console.log('ready'));`;

describe('pull-tar', () => {
  let ns: TestNetns;
  let server: ChildProcess;
  let served: string;
  let good: Buffer;

  beforeAll(async () => {
    served = join(t.dir, 'www');
    for (const d of ['good', 'bad', 'nosum', 'trunc']) mkdirSync(join(served, d), { recursive: true });
    const tarball = join(served, 'good/image.tar.gz');
    await runOk('tar', ['-czf', tarball, '-C', await cachedBusybox(), '.']);
    good = readFileSync(tarball);
    const sum = createHash('sha256').update(good).digest('hex');
    writeFileSync(join(served, 'good/SHA256SUMS'), `${'0'.repeat(64)} *other.tar\n${sum} *image.tar.gz\n`);
    writeFileSync(join(served, 'bad/image.tar.gz'), good);
    writeFileSync(join(served, 'bad/SHA256SUMS'), `${'f'.repeat(64)}  image.tar.gz\n`);
    writeFileSync(join(served, 'nosum/image.tar.gz'), good);
    writeFileSync(join(served, 'nosum/SHA256SUMS'), `${sum}  another.tar.gz\n`);
    writeFileSync(join(served, 'trunc/image.tar.gz'), good);
    writeFileSync(join(served, 'trunc/SHA256SUMS'), `${sum}  image.tar.gz\n`);
    ns = await TestNetns.create('www');
    await runOk('ip', ['link', 'add', 'pull-host', 'type', 'veth', 'peer', 'name', 'www0', 'netns', ns.name]);
    await runOk('ip', ['addr', 'add', '198.51.100.1/24', 'dev', 'pull-host']);
    await runOk('ip', ['link', 'set', 'pull-host', 'up']);
    await ns.exec('ip', ['addr', 'add', `${SERVER_ADDR}/24`, 'dev', 'www0']);
    await ns.exec('ip', ['link', 'set', 'www0', 'up']);
    server = spawn('ip', ['netns', 'exec', ns.name, process.execPath, '-e', SERVER, served], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    server.stdout?.on('data', (d: Buffer) => { out += d.toString(); });
    await waitFor(() => out.includes('ready'), 'the HTTP server', 10_000);
  });

  afterAll(async () => {
    if (server) await killAndWait(server);
    await run('ip', ['link', 'del', 'pull-host']);
    if (ns) await ns.destroy();
  });

  ktest('a good checksum: the image is unpacked as NAME (from the URL, or given; through a redirect)', async () => {
    const r = await ctl(['pull-tar', `http://${SERVER_ADDR}/good/image.tar.gz`]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/Downloading image\.tar\.gz: 100% /);
    expect(existsSync(join(pool, 'image/bin/busybox'))).toBe(true);
    const named = await ctl(['pull-tar', '-q', '--read-only', `http://${SERVER_ADDR}/redirect/good/image.tar.gz`, 'pulled']);
    expect(named.code, named.stderr).toBe(0);
    expect(named.stderr).toBe('');
    expect((await ctl(['list-images', '--no-legend'])).stdout).toMatch(/^pulled\s+directory\s+yes/m);
  });

  ktest('a bad checksum, a missing SHA256SUMS line, a truncated download, a 404: refused, nothing left; --verify=no takes the file as it is', async () => {
    const bad = await ctl(['pull-tar', '-q', `http://${SERVER_ADDR}/bad/image.tar.gz`, 'bad']);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/Checksum mismatch for image\.tar\.gz: SHA256SUMS says f{64}, the download has [0-9a-f]{64}; the image was not kept/);
    const nosum = await ctl(['pull-tar', '-q', `http://${SERVER_ADDR}/nosum/image.tar.gz`, 'nosum']);
    expect(nosum.code).toBe(1);
    expect(nosum.stderr).toMatch(/SHA256SUMS has no checksum for image\.tar\.gz; nothing was downloaded/);
    const trunc = await ctl(['pull-tar', '-q', '--verify=no', `http://${SERVER_ADDR}/trunc/image.tar.gz`, 'trunc']);
    expect(trunc.code).toBe(1);
    expect(trunc.stderr).toMatch(new RegExp(`ended after \\d+ of ${good.length} bytes`));
    const missing = await ctl(['pull-tar', '-q', `http://${SERVER_ADDR}/none/image.tar.gz`, 'missing']);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/HTTP 404/);
    for (const n of ['bad', 'nosum', 'trunc', 'missing']) expect(existsSync(join(pool, n))).toBe(false);
    expect(readdirSync(pool).filter((e) => e.startsWith('.#import'))).toEqual([]);
    const noVerify = await ctl(['pull-tar', '-q', '--verify=no', `http://${SERVER_ADDR}/bad/image.tar.gz`, 'unverified']);
    expect(noVerify.code, noVerify.stderr).toBe(0);
    const sig = await ctl(['pull-tar', '--verify=signature', `http://${SERVER_ADDR}/good/image.tar.gz`, 'x']);
    expect(sig.code).toBe(1);
    expect(sig.stderr).toMatch(/--verify=signature is not supported/);
  });
});
