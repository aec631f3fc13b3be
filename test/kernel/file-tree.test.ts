// Host tree walks through directory fds (src/runtime/file-tree.ts): the -U ownership shift under a
// hostile image owner swapping a directory for a symlink to a host directory, and what a shift does.
import { spawn } from 'node:child_process';
import {
  chmodSync, chownSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, symlinkSync, writeFileSync,
} from 'node:fs';
import { afterEach, describe, expect } from 'vitest';
import { ktest } from '../helpers/kernel.js';
import { killAndWait, runOk } from '../helpers/exec.js';
import { shiftOwnership } from '../../src/runtime/file-tree.js';

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
