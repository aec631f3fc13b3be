// Container roots for tests, built once and cached outside the repository (so clean clones on the
// same machine share them): /var/cache/nspawn-ts/roots/<name>. Each is built into a temporary
// directory next to it and renamed into place, under a lock, so concurrent test runs neither race
// nor see half a root. A root is rebuilt when missing or when its recipe version changes.
//
//   busyboxRoot()  Debian's busybox-static with every applet linked, /etc/passwd and group (root,
//                  a user "test" 1000:1000, nobody), os-release, a busybox init inittab, a udhcpc
//                  default.script. Builds in well under a second.
//   debianRoot()   Debian bookworm from debootstrap --variant=minbase with systemd, systemd-sysv,
//                  dbus and iproute2, from the mirror in the host's apt sources (~35 s, ~250 MB).
//
// Roots are shared: a test that changes files must use copyRoot() (or --ephemeral).
import { execFile } from 'node:child_process';
import {
  chmodSync, chownSync, closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, readdirSync, renameSync, rmSync,
  statSync, symlinkSync, writeFileSync,
} from 'node:fs';
import { posix } from 'node:path';
import { promisify } from 'node:util';
import { sys } from '../../src/native.js';
import { shiftOwnership } from '../../src/runtime/namespaces.js';

const run = promisify(execFile);

export const ROOTS_DIR = process.env.NSPAWN_TS_TEST_ROOTS ?? '/var/cache/nspawn-ts/roots';

/** Bump when a recipe changes: old caches are then rebuilt. */
const BUSYBOX_VERSION = 1;
const DEBIAN_VERSION = 1;

async function withLock<T>(name: string, fn: () => Promise<T>): Promise<T> {
  mkdirSync(ROOTS_DIR, { recursive: true });
  const fd = openSync(`${ROOTS_DIR}/.${name}.lock`, 'a');
  try {
    while (!sys().flock(fd, 2 | 4)) await new Promise((r) => setTimeout(r, 200));
    return await fn();
  } finally {
    closeSync(fd); // drops the lock
  }
}

/** Builds `name` with `build(tmpDir)` unless it exists with `version`; returns its path. */
async function cached(name: string, version: number, build: (dir: string) => Promise<void>): Promise<string> {
  const dir = `${ROOTS_DIR}/${name}`;
  const stamp = `${ROOTS_DIR}/.${name}.version`;
  const current = (): boolean => existsSync(dir) && existsSync(stamp) && readFileSync(stamp, 'utf8').trim() === String(version);
  if (current()) return dir;
  return withLock(name, async () => {
    if (current()) return dir;
    const tmp = mkdtempSync(`${ROOTS_DIR}/.${name}.build-`);
    try {
      await build(tmp);
      chmodSync(tmp, 0o755);
      rmSync(dir, { recursive: true, force: true });
      renameSync(tmp, dir);
      writeFileSync(stamp, `${version}\n`);
    } catch (err) {
      rmSync(tmp, { recursive: true, force: true });
      throw err;
    }
    return dir;
  });
}

const INITTAB = `# busybox init (nspawn-ts test root)
::sysinit:/etc/init.d/rcS
::shutdown:/bin/echo nspawn-ts-test: shutdown
`;

const RCS = `#!/bin/sh
echo "nspawn-ts-test: booted as PID $$ on $(hostname)"
touch /run/booted
`;

// Configures the lease with busybox's ip; writes resolv.conf (udhcpc runs it as default.script)
const UDHCPC_SCRIPT = `#!/bin/sh
case "$1" in
  deconfig)
    ip link set "$interface" up
    ip -4 addr flush dev "$interface"
    ;;
  bound|renew)
    ip -4 addr flush dev "$interface"
    ip -4 addr add "$ip/\${mask:-24}" dev "$interface"
    if [ -n "$router" ]; then
      ip -4 route replace default via "\${router%% *}" dev "$interface"
    fi
    : > /etc/resolv.conf
    for d in $dns; do echo "nameserver $d" >> /etc/resolv.conf; done
    env | sort > "/run/udhcpc.$interface.env"
    ;;
esac
exit 0
`;

async function buildBusybox(dir: string): Promise<void> {
  for (const d of ['bin', 'sbin', 'usr/bin', 'usr/sbin', 'etc/init.d', 'etc/udhcpc', 'usr/share/udhcpc', 'root', 'home/test',
    'proc', 'sys', 'dev', 'run', 'tmp', 'var/log', 'var/tmp', 'mnt']) {
    mkdirSync(`${dir}/${d}`, { recursive: true, mode: 0o755 });
  }
  chmodSync(`${dir}/tmp`, 0o1777);
  chmodSync(`${dir}/root`, 0o700);
  writeFileSync(`${dir}/bin/busybox`, readFileSync('/bin/busybox'), { mode: 0o755 });
  const { stdout } = await run('/bin/busybox', ['--list-full']);
  for (const applet of stdout.split('\n').filter(Boolean)) {
    const path = `${dir}/${applet}`;
    if (applet === 'bin/busybox' || existsSync(path)) continue;
    symlinkSync('/bin/busybox', path);
  }
  writeFileSync(`${dir}/etc/passwd`, [
    'root:x:0:0:root:/root:/bin/sh', 'test:x:1000:1000:Test User:/home/test:/bin/sh',
    'nobody:x:65534:65534:nobody:/nonexistent:/bin/false', '',
  ].join('\n'));
  writeFileSync(`${dir}/etc/group`, ['root:x:0:', 'tty:x:5:', 'users:x:100:test', 'test:x:1000:', 'nogroup:x:65534:', ''].join('\n'));
  writeFileSync(`${dir}/etc/os-release`, 'NAME="BusyBox test root"\nID=busybox\nPRETTY_NAME="BusyBox (nspawn-ts tests)"\n');
  writeFileSync(`${dir}/etc/hostname`, 'busybox\n');
  writeFileSync(`${dir}/etc/inittab`, INITTAB);
  writeFileSync(`${dir}/etc/init.d/rcS`, RCS, { mode: 0o755 });
  writeFileSync(`${dir}/etc/udhcpc/default.script`, UDHCPC_SCRIPT, { mode: 0o755 });
  writeFileSync(`${dir}/usr/share/udhcpc/default.script`, UDHCPC_SCRIPT, { mode: 0o755 });
  chownSync(`${dir}/home/test`, 1000, 1000);
}

/** The busybox root (read-only for tests; copy it to change it). */
export async function busyboxRoot(): Promise<string> {
  const dir = await cached('busybox', BUSYBOX_VERSION, buildBusybox);
  // a test that ran -U on the shared root (instead of a copy) shifted its owners: shift them back
  if (statSync(dir).uid !== 0) {
    await withLock('busybox', async () => { shiftOwnership(dir, 0); });
  }
  return dir;
}

/**
 * The Debian bookworm root with systemd (read-only for tests: boot it with --ephemeral). Built by
 * scripts/build-test-roots.sh during `npm run setup` — debootstrap needs the network, and tests run
 * in a network namespace without one.
 */
export async function debianRoot(): Promise<string> {
  const dir = `${ROOTS_DIR}/debian-bookworm`;
  const stamp = `${ROOTS_DIR}/.debian-bookworm.version`;
  if (existsSync(dir) && existsSync(stamp) && readFileSync(stamp, 'utf8').trim() === String(DEBIAN_VERSION)) return dir;
  throw new Error(`the Debian test root ${dir} is missing or outdated: run "npm run setup" (scripts/build-test-roots.sh builds it with debootstrap, which needs the network)`);
}

/** A private copy of a root (cp -a), removed by the returned function. */
export async function copyRoot(src: string, base = '/var/tmp'): Promise<{ dir: string; remove: () => void }> {
  const parent = mkdtempSync(posix.join(base, 'nspawn-ts-root-'));
  const dir = `${parent}/root`;
  await run('cp', ['-a', src, dir]);
  return { dir, remove: () => rmSync(parent, { recursive: true, force: true }) };
}
