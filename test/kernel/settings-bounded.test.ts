// Settings files someone else may control are read bounded (src/runtime/bounded-read.ts): a .nspawn
// next to the image that is a symlink to /dev/zero, a 64 MB line or a FIFO fails the start at
// once with a message naming it (it took the launcher to 7 GB, 2.5 GB, or hung it); so do
// properties files and the admin's directories' FIFOs.
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect } from 'vitest';
import { ktest } from '../helpers/kernel.js';
import { busyboxRoot, copyRoot } from '../helpers/rootfs.js';
import { nspawn } from '../helpers/nspawn.js';
import { MAX_LINE_LENGTH, readBoundedText } from '../../src/runtime/bounded-read.js';
import { loadProperties } from '../../src/runtime/property-store.js';

const RUN = process.pid.toString(36);
let scratch: string;
let image: { dir: string; remove: () => void };
beforeAll(async () => {
  scratch = mkdtempSync('/var/tmp/nspawn-ts-settings-');
  image = await copyRoot(await busyboxRoot());
}, 60_000);
afterAll(() => {
  rmSync(scratch, { recursive: true, force: true });
  image?.remove();
});

function fifo(path: string): void {
  execFileSync('mkfifo', [path]);
}

/** A file of `size` bytes without a newline (sparse: nothing is written) */
function longLine(path: string, size: number): void {
  writeFileSync(path, '[Exec]\nEnvironment=A=');
  execFileSync('truncate', ['-s', String(size), path]);
}

function code(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    return (err as { code?: string }).code;
  }
  return undefined;
}

describe('readBoundedText', () => {
  ktest('refuses symlinks, FIFOs, devices, files over the cap and lines over LONG_LINE_MAX; reads the rest', () => {
    const d = mkdtempSync(join(scratch, 'r-'));
    writeFileSync(`${d}/ok`, '[Exec]\nBoot=yes\n');
    expect(readBoundedText(`${d}/ok`, { what: 'settings file' })).toBe('[Exec]\nBoot=yes\n');
    expect(readBoundedText(`${d}/missing`, { what: 'settings file' })).toBeUndefined();
    symlinkSync('/dev/zero', `${d}/zero`);
    expect(() => readBoundedText(`${d}/zero`, { what: 'settings file' })).toThrow(`Refusing to read settings file ${d}/zero: it is a symbolic link`);
    // followed where links are the admin's: /dev/zero is still no regular file
    expect(() => readBoundedText(`${d}/zero`, { what: 'settings file', followSymlink: true })).toThrow('it is a character device, not a regular file');
    symlinkSync(`${d}/ok`, `${d}/link`);
    expect(readBoundedText(`${d}/link`, { what: 'settings file', followSymlink: true })).toBe('[Exec]\nBoot=yes\n');
    fifo(`${d}/fifo`);
    expect(() => readBoundedText(`${d}/fifo`, { what: 'settings file', followSymlink: true })).toThrow('it is a FIFO, not a regular file');
    longLine(`${d}/huge`, 64 << 20);
    expect(code(() => readBoundedText(`${d}/huge`, { what: 'settings file' }))).toBe('FILE_TOO_LARGE');
    longLine(`${d}/line`, MAX_LINE_LENGTH + 100);
    expect(() => readBoundedText(`${d}/line`, { what: 'settings file' })).toThrow(`${d}/line:2: Line too long`);
    longLine(`${d}/fits`, MAX_LINE_LENGTH);
    expect(readBoundedText(`${d}/fits`, { what: 'settings file' })).toHaveLength(MAX_LINE_LENGTH);
    expect(code(() => readBoundedText(d, { what: 'settings file' }))).toBe('FILE_NOT_REGULAR');
  });

  ktest('a properties file that is a FIFO, a symlink or huge is an error naming it, at once', () => {
    const d = mkdtempSync(join(scratch, 'p-'));
    fifo(`${d}/f.properties`);
    expect(() => loadProperties('f', { dir: d })).toThrow(`cannot read ${d}/f.properties: Refusing to read properties file ${d}/f.properties: it is a FIFO`);
    symlinkSync('/dev/zero', `${d}/z.properties`);
    expect(() => loadProperties('z', { dir: d })).toThrow('it is a symbolic link');
    longLine(`${d}/h.properties`, 64 << 20);
    expect(() => loadProperties('h', { dir: d })).toThrow(/more than the 4194304 allowed/);
    writeFileSync(`${d}/ok.properties`, '[Resources]\nTasksMax=7\n');
    expect(loadProperties('ok', { dir: d })).toMatchObject({ TasksMax: { kind: 'count' } });
  });
});

describe('nspawn-ts with a hostile .nspawn next to the image', () => {
  const cases: Array<[string, (p: string) => void, RegExp]> = [
    ['a symlink to /dev/zero', (p) => symlinkSync('/dev/zero', p), /Refusing to read settings file .*: it is a symbolic link/],
    ['a 64 MB line', (p) => longLine(p, 64 << 20), /Refusing to read settings file .*: 67108864 bytes, more than the 4194304 allowed/],
    ['a 2 MB line', (p) => longLine(p, 2 << 20), /:2: Line too long \(2097145 bytes, at most 1048576\)/],
    ['a FIFO', fifo, /Refusing to read settings file .*: it is a FIFO, not a regular file/],
  ];
  for (const [what, make, message] of cases) {
    ktest(`${what}: refused at once, nothing started`, async () => {
      const name = `bounded-${RUN}`;
      const file = join(dirname(image.dir), `${name}.nspawn`);
      make(file);
      try {
        const t0 = Date.now();
        const r = await nspawn(['-q', '-D', image.dir, '-M', name, '/bin/true'], { timeoutMs: 20_000 });
        expect(r.stderr).toMatch(message);
        expect(r.code).toBe(1);
        expect(Date.now() - t0).toBeLessThan(10_000);
      } finally {
        rmSync(file, { force: true });
      }
    });
  }

  ktest("the admin's directory: a FIFO there is refused too, a symlink to a regular file is followed", async () => {
    const dir = '/run/systemd/nspawn';
    mkdirSync(dir, { recursive: true });
    const name = `admin-${RUN}`;
    try {
      fifo(`${dir}/${name}.nspawn`);
      const r = await nspawn(['-q', '-D', image.dir, '-M', name, '/bin/true'], { timeoutMs: 20_000 });
      expect(r.stderr).toMatch(/Refusing to read settings file \/run\/systemd\/nspawn\/.*: it is a FIFO/);
      rmSync(`${dir}/${name}.nspawn`);
      writeFileSync(join(scratch, 'env.nspawn'), '[Exec]\nEnvironment=FROM_ADMIN=yes\n');
      symlinkSync(join(scratch, 'env.nspawn'), `${dir}/${name}.nspawn`);
      const ok = await nspawn(['-q', '-D', image.dir, '-M', name, '/bin/sh', '-c', 'echo $FROM_ADMIN']);
      expect(ok.stderr).toBe('');
      expect(ok.stdout).toBe('yes\n');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
