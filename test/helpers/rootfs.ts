// Container roots for tests, built once and cached outside the repository (so clean clones on the
// same machine share them): /var/cache/nspawn-ts/roots/<name>, by scripts/build-test-roots.sh
// (the recipes, versions and locking live there; `npm run setup` runs it).
//
//   busyboxRoot()  Debian's busybox-static with every applet linked, /etc/passwd and group (root,
//                  a user "test" 1000:1000, nobody), os-release, a busybox init inittab, a udhcpc
//                  default.script. Built here on demand when missing (no network needed).
//   debianRoot()   Debian bookworm from debootstrap --variant=minbase with systemd, systemd-sysv,
//                  dbus and iproute2 (~35 s, ~250 MB). Setup builds it: debootstrap needs the
//                  network, and tests run in a network namespace without one.
//
// Roots are shared: a test that changes files must use copyRoot() (or --ephemeral).
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { posix } from 'node:path';
import { promisify } from 'node:util';
import { fileURLToPath } from 'node:url';
import { shiftOwnership } from '../../src/runtime/file-tree.js';

const run = promisify(execFile);

export const ROOTS_DIR = process.env.NSPAWN_TS_TEST_ROOTS ?? '/var/cache/nspawn-ts/roots';

/** The recipe versions of scripts/build-test-roots.sh (keep in step). */
const BUSYBOX_VERSION = 1;
const DEBIAN_VERSION = 1;

const SCRIPT = fileURLToPath(new URL('../../scripts/build-test-roots.sh', import.meta.url));

function version(name: string): string | undefined {
  try {
    return readFileSync(`${ROOTS_DIR}/.${name}.version`, 'utf8').trim();
  } catch {
    return undefined;
  }
}

/** The busybox root (read-only for tests; copy it to change it). */
export async function busyboxRoot(): Promise<string> {
  const dir = `${ROOTS_DIR}/busybox`;
  if (!existsSync(dir) || version('busybox') !== String(BUSYBOX_VERSION)) {
    await run('bash', [SCRIPT, 'busybox'], { env: { ...process.env, NSPAWN_TS_TEST_ROOTS: ROOTS_DIR } });
  }
  // a test that ran -U on the shared root (instead of a copy) shifted its owners: shift them back
  if (statSync(dir).uid !== 0) shiftOwnership(dir, 0);
  return dir;
}

/** The Debian bookworm root with systemd (read-only for tests: boot it with --ephemeral). */
export async function debianRoot(): Promise<string> {
  const dir = `${ROOTS_DIR}/debian-bookworm`;
  if (existsSync(dir) && version('debian-bookworm') === String(DEBIAN_VERSION)) return dir;
  throw new Error(`the Debian test root ${dir} is missing or outdated: run "npm run setup" (scripts/build-test-roots.sh builds it with debootstrap, which needs the network)`);
}

/** A private copy of a root (cp -a), removed by the returned function. */
export async function copyRoot(src: string, base = '/var/tmp'): Promise<{ dir: string; remove: () => void }> {
  const parent = mkdtempSync(posix.join(base, 'nspawn-ts-root-'));
  const dir = `${parent}/root`;
  const remove = (): void => rmSync(parent, { recursive: true, force: true });
  // tests that run a container on the shared root itself (read-only for them otherwise) have the
  // launcher write /etc/resolv.conf there, through a temporary file: one that vanishes while cp
  // reads the directory fails the copy (ENOENT), so a copy is tried again, from scratch
  for (let attempt = 1; ; attempt++) {
    try {
      await run('cp', ['-a', src, dir]);
      return { dir, remove };
    } catch (err) {
      rmSync(dir, { recursive: true, force: true });
      const vanished = /No such file or directory/.test((err as { stderr?: string }).stderr ?? '');
      if (!vanished || attempt === 3) {
        remove();
        throw err;
      }
    }
  }
}
