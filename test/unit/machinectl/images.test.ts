// Images on a temp machines directory: discovery (directories, raw files, symlinks, a symlinked
// pool, hidden and invalid names), lookup order, status files read inside the root, and remove /
// rename / clone with their .nspawn files, in-use refusal and rollback.
import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import { execFileSync } from 'node:child_process';
import {
  chmodSync, existsSync, linkSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, readlinkSync, rmSync, statSync, symlinkSync, writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  ImageError, ImageStore, imageNameValid, parseEnvFile, readFileInRoot, readHostname, readMachineIdOf, readOsRelease, resolveInRoot, setImmutable,
} from '../../../src/runtime/images.js';

let tmp: string;
let pool: string;
let etc: string;
let store: ImageStore;

function mkimage(name: string, osRelease = 'ID=debian\nVERSION_ID="12"\nPRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\n'): string {
  const root = join(pool, name);
  mkdirSync(join(root, 'etc'), { recursive: true });
  mkdirSync(join(root, 'usr/lib'), { recursive: true });
  writeFileSync(join(root, 'usr/lib/os-release'), osRelease);
  symlinkSync('../usr/lib/os-release', join(root, 'etc/os-release'));
  writeFileSync(join(root, 'etc/hostname'), `${name}-host\n`);
  return root;
}

function immutableSupported(dir: string): boolean {
  const probe = join(dir, '.probe');
  mkdirSync(probe);
  try {
    execFileSync('chattr', ['+i', probe], { stdio: 'ignore' });
    execFileSync('chattr', ['-i', probe], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  } finally {
    rmSync(probe, { recursive: true, force: true });
  }
}

beforeEach(() => {
  tmp = mkdtempSync(join(tmpdir(), 'machinectl-images-'));
  pool = join(tmp, 'machines');
  etc = join(tmp, 'etc-nspawn');
  mkdirSync(pool);
  mkdirSync(etc);
  store = new ImageStore({ searchPath: [pool], machinesDir: pool, settingsDirs: [etc] });
});
afterEach(() => {
  try {
    execFileSync('chattr', ['-R', '-i', tmp], { stdio: 'ignore' });
  } catch { /* nothing immutable */ }
  rmSync(tmp, { recursive: true, force: true });
});

describe('names and files in a root', () => {
  test('image names are file names', () => {
    expect(imageNameValid('deb')).toBe(true);
    expect(imageNameValid('my_image.v2')).toBe(true);
    for (const bad of ['', '.', '..', 'a/b', '.#tmp', 'x\ny', 'a'.repeat(256)]) expect(imageNameValid(bad)).toBe(false);
  });

  test('symlinks resolve inside the root, absolute ones too; .. stops at the root', () => {
    const root = mkimage('deb');
    symlinkSync('/usr/lib/os-release', join(root, 'etc/abs-link'));
    symlinkSync('../../../../../../etc/hostname', join(root, 'etc/escape'));
    symlinkSync('loop2', join(root, 'etc/loop1'));
    symlinkSync('loop1', join(root, 'etc/loop2'));
    expect(resolveInRoot(root, '/etc/abs-link')).toBe(join(root, 'usr/lib/os-release'));
    expect(resolveInRoot(root, '/etc/escape')).toBe(join(root, 'etc/hostname'));
    expect(resolveInRoot(root, '/etc/loop1')).toBeUndefined();
    expect(resolveInRoot(root, '/nonexistent/x')).toBeUndefined();
    expect(readFileInRoot(root, '/etc/abs-link')).toContain('ID=debian');
    expect(readFileInRoot(root, '/etc')).toBeUndefined();
  });

  test('os-release syntax', () => {
    expect(parseEnvFile('# c\nID=debian\nNAME="Debian GNU/Linux"\nX=\'single q\'\nY="esc \\"q\\" \\$"\nBAD LINE\n1X=no\n')).toEqual({
      ID: 'debian', NAME: 'Debian GNU/Linux', X: 'single q', Y: 'esc "q" $',
    });
    const root = mkimage('deb');
    expect(readOsRelease(root).VERSION_ID).toBe('12');
    expect(readHostname(root)).toBe('deb-host');
    expect(readMachineIdOf(root)).toBeUndefined();
    writeFileSync(join(root, 'etc/machine-id'), '0123456789abcdef0123456789abcdef\n');
    expect(readMachineIdOf(root)).toBe('0123456789abcdef0123456789abcdef');
    rmSync(join(root, 'etc/os-release'));
    expect(readOsRelease(root).ID).toBe('debian'); // /usr/lib/os-release
  });
});

describe('discovery', () => {
  test('directories, raw files, symlinked images; other files and bad names are not images', () => {
    mkimage('deb');
    writeFileSync(join(pool, 'disk.raw'), Buffer.alloc(4096));
    writeFileSync(join(pool, 'deb.nspawn'), '[Exec]\nBoot=yes\n');
    writeFileSync(join(pool, 'notes.txt'), 'x');
    const elsewhere = join(tmp, 'elsewhere', 'far');
    mkdirSync(elsewhere, { recursive: true });
    symlinkSync(elsewhere, join(pool, 'far'));
    symlinkSync(join(tmp, 'missing'), join(pool, 'dangling'));
    mkdirSync(join(pool, '.hidden'));
    mkdirSync(join(pool, '.#temp'));
    const list = store.list();
    expect(list.map((i) => [i.name, i.type, i.link])).toEqual([['deb', 'directory', false], ['disk', 'raw', false], ['far', 'directory', true]]);
    expect(list.find((i) => i.name === 'far')?.realPath).toBe(elsewhere);
    expect(list.find((i) => i.name === 'disk')?.limit).toBe(4096n);
    expect(list.find((i) => i.name === 'deb')?.readOnly).toBe(false);
    expect(store.list({ all: true }).map((i) => i.name)).toEqual(['.hidden', 'deb', 'disk', 'far']);
  });

  test('a pool that is itself a symlink', () => {
    const real = join(tmp, 'real-pool');
    mkdirSync(join(real, 'deb'), { recursive: true });
    const link = join(tmp, 'linked-pool');
    symlinkSync(real, link);
    const s = new ImageStore({ searchPath: [link], machinesDir: link, settingsDirs: [etc] });
    expect(s.get('deb').path).toBe(join(link, 'deb'));
  });

  test('the first directory of the search path wins a name', () => {
    const second = join(tmp, 'second');
    mkdirSync(join(second, 'deb'), { recursive: true });
    mkdirSync(join(second, 'only2'), { recursive: true });
    mkimage('deb');
    const s = new ImageStore({ searchPath: [pool, second], machinesDir: pool, settingsDirs: [etc] });
    expect(s.get('deb').path).toBe(join(pool, 'deb'));
    expect(s.get('only2').path).toBe(join(second, 'only2'));
    expect(s.list().map((i) => i.path)).toEqual([join(pool, 'deb'), join(second, 'only2')]);
  });

  test('unknown and invalid names are clear errors', () => {
    expect(() => store.get('nope')).toThrow(/^No image 'nope' known \(looked in /);
    expect(() => store.get('a/b')).toThrow(/^Invalid image name 'a\/b'/);
    try {
      store.get('nope');
    } catch (e) {
      expect((e as ImageError).code).toBe('IMAGE_NOT_FOUND');
    }
  });
});

describe('remove', () => {
  test('removes the tree and its .nspawn files', async () => {
    mkimage('deb');
    writeFileSync(join(pool, 'deb.nspawn'), '[Exec]\n');
    writeFileSync(join(etc, 'deb.nspawn'), '[Exec]\n');
    writeFileSync(join(etc, 'other.nspawn'), '[Exec]\n');
    await store.remove('deb');
    expect(existsSync(join(pool, 'deb'))).toBe(false);
    expect(existsSync(join(pool, 'deb.nspawn'))).toBe(false);
    expect(existsSync(join(etc, 'deb.nspawn'))).toBe(false);
    expect(existsSync(join(etc, 'other.nspawn'))).toBe(true);
  });

  test('a symlinked image loses its link; the target stays', async () => {
    const far = join(tmp, 'far');
    mkdirSync(join(far, 'etc'), { recursive: true });
    symlinkSync(far, join(pool, 'far'));
    const res = await store.remove('far');
    expect(res).toEqual({ removed: join(pool, 'far'), keptTarget: far });
    expect(existsSync(join(pool, 'far'))).toBe(false);
    expect(existsSync(join(far, 'etc'))).toBe(true);
  });

  test('an image in use, a missing one and a vendor image are refused, nothing removed', async () => {
    mkimage('deb');
    await expect(store.remove('deb', () => 'deb')).rejects.toThrow("Image 'deb' is in use by running machine 'deb'; stop it first (machinectl-ts poweroff deb)");
    expect(existsSync(join(pool, 'deb/etc/hostname'))).toBe(true);
    await expect(store.remove('nope')).rejects.toThrow(/No image 'nope' known/);
    const vendor = new ImageStore({ searchPath: ['/usr/lib/machines'], settingsDirs: [etc] });
    await expect(vendor.remove('definitely-not-there')).rejects.toThrow(/No image/);
  });

  test('a read-only (immutable) directory is removed too', async (ctx) => {
    if (!immutableSupported(pool)) ctx.skip(`the filesystem of ${pool} has no immutable flag (chattr +i)`);
    mkimage('deb');
    await setImmutable(join(pool, 'deb'), true);
    expect(store.get('deb').readOnly).toBe(true);
    await store.remove('deb');
    expect(existsSync(join(pool, 'deb'))).toBe(false);
  });
});

describe('rename', () => {
  test('the directory and its .nspawn files', async () => {
    mkimage('deb');
    writeFileSync(join(pool, 'deb.nspawn'), 'next to it\n');
    writeFileSync(join(etc, 'deb.nspawn'), 'admin\n');
    const img = await store.rename('deb', 'deb2');
    expect(img.path).toBe(join(pool, 'deb2'));
    expect(readFileSync(join(pool, 'deb2.nspawn'), 'utf8')).toBe('next to it\n');
    expect(readFileSync(join(etc, 'deb2.nspawn'), 'utf8')).toBe('admin\n');
    expect(existsSync(join(pool, 'deb'))).toBe(false);
    expect(existsSync(join(etc, 'deb.nspawn'))).toBe(false);
  });

  test('a raw image keeps its suffix; a symlinked image renames its link', async () => {
    writeFileSync(join(pool, 'disk.raw'), 'x');
    await store.rename('disk', 'disk2');
    expect(existsSync(join(pool, 'disk2.raw'))).toBe(true);
    const far = join(tmp, 'far');
    mkdirSync(far);
    symlinkSync(far, join(pool, 'far'));
    await store.rename('far', 'near');
    expect(readlinkSync(join(pool, 'near'))).toBe(far);
  });

  test('clashes, bad names and images in use are refused, nothing changed', async () => {
    mkimage('deb');
    mkimage('other');
    await expect(store.rename('deb', 'other')).rejects.toThrow(`Image 'other' already exists (${join(pool, 'other')})`);
    await expect(store.rename('deb', '../x')).rejects.toThrow(/Invalid image name/);
    await expect(store.rename('deb', 'x', () => 'deb')).rejects.toThrow(/in use by running machine 'deb'/);
    await expect(store.rename('nope', 'x')).rejects.toThrow(/No image 'nope' known/);
    expect(store.list().map((i) => i.name)).toEqual(['deb', 'other']);
  });

  test('an immutable directory is renamed and stays immutable', async (ctx) => {
    if (!immutableSupported(pool)) ctx.skip(`the filesystem of ${pool} has no immutable flag (chattr +i)`);
    mkimage('deb');
    await setImmutable(join(pool, 'deb'), true);
    const img = await store.rename('deb', 'deb2');
    expect(img.readOnly).toBe(true);
  });
});

describe('clone', () => {
  test('a faithful copy: modes, owners, symlinks, hard links, device-free special files; .nspawn files copied', async () => {
    const root = mkimage('deb');
    writeFileSync(join(root, 'etc/secret'), 's');
    chmodSync(join(root, 'etc/secret'), 0o600);
    execFileSync('chown', ['1234:5678', join(root, 'etc/secret')]);
    linkSync(join(root, 'etc/secret'), join(root, 'etc/hardlink'));
    execFileSync('mkfifo', [join(root, 'etc/fifo')]);
    writeFileSync(join(pool, 'deb.nspawn'), 'next\n');
    writeFileSync(join(etc, 'deb.nspawn'), 'admin\n');
    const img = await store.clone('deb', 'copy');
    expect(img.path).toBe(join(pool, 'copy'));
    const st = statSync(join(pool, 'copy/etc/secret'));
    expect([st.mode & 0o7777, st.uid, st.gid]).toEqual([0o600, 1234, 5678]);
    expect(statSync(join(pool, 'copy/etc/hardlink')).ino).toBe(st.ino);
    expect(readlinkSync(join(pool, 'copy/etc/os-release'))).toBe('../usr/lib/os-release');
    expect(lstatSync(join(pool, 'copy/etc/fifo')).isFIFO()).toBe(true);
    expect(readFileSync(join(pool, 'copy.nspawn'), 'utf8')).toBe('next\n');
    expect(readFileSync(join(etc, 'copy.nspawn'), 'utf8')).toBe('admin\n');
    expect(existsSync(join(pool, 'deb/etc/secret'))).toBe(true);
    expect(readOsRelease(img.path).ID).toBe('debian');
  });

  test('a symlinked image is copied into a real directory; a raw image too', async () => {
    const far = join(tmp, 'far');
    mkdirSync(join(far, 'etc'), { recursive: true });
    writeFileSync(join(far, 'etc/hostname'), 'far\n');
    symlinkSync(far, join(pool, 'far'));
    const c = await store.clone('far', 'farcopy');
    expect(c.link).toBe(false);
    expect(readFileSync(join(pool, 'farcopy/etc/hostname'), 'utf8')).toBe('far\n');
    writeFileSync(join(pool, 'disk.raw'), 'rawdata');
    const r = await store.clone('disk', 'disk2');
    expect(r.type).toBe('raw');
    expect(readFileSync(join(pool, 'disk2.raw'), 'utf8')).toBe('rawdata');
  });

  test('clashes and bad names are refused; no temporary is left behind', async () => {
    mkimage('deb');
    mkimage('other');
    await expect(store.clone('deb', 'other')).rejects.toThrow(/already exists/);
    await expect(store.clone('deb', '.#x')).rejects.toThrow(/Invalid image name/);
    await expect(store.clone('nope', 'x')).rejects.toThrow(/No image 'nope'/);
    expect(store.list({ all: true }).map((i) => i.name)).toEqual(['deb', 'other']);
  });

  test('a copy that cannot be made is a clear error and leaves nothing behind', async () => {
    mkimage('deb');
    const broken = new ImageStore({ searchPath: [pool], machinesDir: join(tmp, 'no-such-pool'), settingsDirs: [etc] });
    await expect(broken.clone('deb', 'copy')).rejects.toThrow(/Could not clone image 'deb' to 'copy'/);
    expect(existsSync(join(tmp, 'no-such-pool'))).toBe(false);
  });

  test('--read-only makes the copy immutable', async (ctx) => {
    if (!immutableSupported(pool)) ctx.skip(`the filesystem of ${pool} has no immutable flag (chattr +i)`);
    mkimage('deb');
    const img = await store.clone('deb', 'ro', { readOnly: true });
    expect(img.readOnly).toBe(true);
    expect(store.get('deb').readOnly).toBe(false);
  });
});
