// --resolv-conf= end to end: real busybox containers started by the launcher (in-process), with
// fixture host files (LaunchOptions.resolvConf.paths: the machine's own /etc is never read or
// written), checked from inside (what the container reads, whether it can write, its mounts) and
// from outside (what happened to the image). Read-only roots are read-only bind mounts made in the
// test run's private mount namespace.
import { chmodSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync, unlinkSync, writeFileSync } from 'node:fs';
import { describe, expect } from 'vitest';
import { ktest } from '../helpers/kernel.js';
import { runOk } from '../helpers/exec.js';
import { busyboxRoot, copyRoot } from '../helpers/rootfs.js';
import { newSpec } from '../unit/runtime/spec-fixture.js';
import { runContainer } from '../../src/runtime/launcher.js';
import { launchHooks } from '../../src/runtime/net/hooks.js';
import { defaultNetworkSpec, type LaunchSpec, type ResolvConfMode } from '../../src/runtime/spec.js';
import type { ResolvConfPaths } from '../../src/net/resolv.js';

const P = String(process.pid);
let seq = 0;

const CONTENT = {
  host: 'nameserver 192.0.2.1\nsearch example.test\n',
  static: '# static\nnameserver 127.0.0.53\noptions edns0 trust-ad\n',
  uplink: 'nameserver 198.51.100.53\nnameserver 203.0.113.53\n',
  stub: '# stub\nnameserver 127.0.0.53\noptions edns0 trust-ad\nsearch .\n',
};

interface Fixture {
  dir: string;
  paths: ResolvConfPaths;
  /** /proc/net/udp without and with resolved's stub listener on 127.0.0.53:53 */
  noStub: string;
  withStub: string;
  remove(): void;
}

function fixture(): Fixture {
  const dir = mkdtempSync('/var/tmp/nspawn-ts-resolv-host-');
  const paths = { host: `${dir}/etc-resolv.conf`, static: `${dir}/usr-lib-resolv.conf`, uplink: `${dir}/uplink-resolv.conf`, stub: `${dir}/stub-resolv.conf` };
  for (const k of ['host', 'static', 'uplink', 'stub'] as const) writeFileSync(paths[k], CONTENT[k]);
  const header = '  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops\n';
  writeFileSync(`${dir}/udp-none`, header);
  writeFileSync(`${dir}/udp-stub`, `${header}  1: 3500007F:0035 00000000:0000 07 00000000:00000000 00:00000000 00000000   991        0 1 2 0000000000000000 0\n`);
  return { dir, paths, noStub: `${dir}/udp-none`, withStub: `${dir}/udp-stub`, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

/** What the container reported: its resolv.conf, whether writing it works, whether it is a mount. */
interface Seen {
  code: number;
  content: string | undefined;
  writable: boolean;
  mounted: boolean;
  warnings: string[];
}

// the payload: report into /out (a bind of a host directory), whatever the root is like
const REPORT = 'cat /etc/resolv.conf > /out/content 2>/dev/null || rm -f /out/content; '
  + '[ -e /etc/resolv.conf ] && (echo "# probe" >> /etc/resolv.conf) 2>/dev/null && echo yes > /out/writable || echo no > /out/writable; '
  + 'grep -q " /etc/resolv.conf " /proc/self/mountinfo && echo yes > /out/mounted || echo no > /out/mounted';

async function launch(root: string, mode: ResolvConfMode, fx: Fixture, extra: Partial<LaunchSpec> = {}, procNetUdp = fx.noStub): Promise<Seen> {
  const out = mkdtempSync('/var/tmp/nspawn-ts-resolv-out-');
  chmodSync(out, 0o777); // the container's root may be a shifted UID
  const warnings: string[] = [];
  try {
    const spec = newSpec({
      directory: root, machine: `rs${P}-${++seq}`, command: ['/bin/sh', '-c', REPORT], quiet: true, resolvConf: mode,
      binds: [{ source: out, destination: '/out', readOnly: false, options: [] }], ...extra,
    });
    const exit = await runContainer(spec, {
      registry: null, handleSignals: false, console: 'pipe', status: () => undefined,
      hooks: () => launchHooks(spec, { resolvConf: { paths: fx.paths, procNetUdp, warn: (m) => warnings.push(m) } }),
    });
    const read = (f: string) => (existsSync(`${out}/${f}`) ? readFileSync(`${out}/${f}`, 'utf8') : undefined);
    return {
      code: exit.exitCode, content: read('content'), writable: read('writable')?.trim() === 'yes', mounted: read('mounted')?.trim() === 'yes', warnings,
    };
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
}

/** A fresh copy of the busybox root with /etc/resolv.conf as given (undefined: none; {link}: a symlink). */
async function rootWith(resolv: string | { link: string } | undefined): Promise<{ dir: string; remove: () => void }> {
  const r = await copyRoot(await busyboxRoot());
  rmSync(`${r.dir}/etc/resolv.conf`, { force: true });
  if (typeof resolv === 'string') {
    writeFileSync(`${r.dir}/etc/resolv.conf`, resolv);
    chmodSync(`${r.dir}/etc/resolv.conf`, 0o640);
  } else if (resolv) {
    symlinkSync(resolv.link, `${r.dir}/etc/resolv.conf`);
  }
  return r;
}

/** Makes `dir` a read-only bind mount of itself (in the run's private mount namespace). */
async function readOnly(dir: string): Promise<() => Promise<void>> {
  mkdirSync(`${dir}/out`, { recursive: true }); // the report's bind needs its mount point
  await runOk('mount', ['--bind', dir, dir]);
  await runOk('mount', ['-o', 'remount,bind,ro', dir]);
  return async () => { await runOk('umount', [dir]); };
}

const IMAGE = 'nameserver 10.9.9.9\n';

describe('--resolv-conf= with real containers', () => {
  ktest('copy-*: the source\'s content over the file, in place (mode kept), writable inside; a symlink is left alone with a warning', async () => {
    const fx = fixture();
    try {
      for (const src of ['host', 'static', 'uplink', 'stub'] as const) {
        const r = await rootWith(IMAGE);
        try {
          const seen = await launch(r.dir, `copy-${src}`, fx);
          expect(seen.code).toBe(0);
          expect(seen.content).toBe(CONTENT[src]);
          expect(seen.writable).toBe(true);
          expect(seen.mounted).toBe(false);
          // the image has the copy (plus the container's probe line), with its own mode
          expect(readFileSync(`${r.dir}/etc/resolv.conf`, 'utf8')).toBe(`${CONTENT[src]}# probe\n`);
          expect(statSync(`${r.dir}/etc/resolv.conf`).mode & 0o777).toBe(0o640);
          expect(seen.warnings).toEqual([]);
        } finally {
          r.remove();
        }
      }
      const linked = await rootWith({ link: '../run/systemd/resolve/stub-resolv.conf' });
      try {
        const seen = await launch(linked.dir, 'copy-host', fx);
        expect(seen.code).toBe(0);
        expect(lstatSync(`${linked.dir}/etc/resolv.conf`).isSymbolicLink()).toBe(true);
        expect(seen.warnings).toEqual([expect.stringMatching(/^Failed to copy .*etc-resolv.conf to \/etc\/resolv.conf, ignoring: it is a symlink/)]);
      } finally {
        linked.remove();
      }
    } finally {
      fx.remove();
    }
  });

  ktest('replace-*: a regular file, also where a symlink was; missing files are created', async () => {
    const fx = fixture();
    try {
      for (const [src, initial] of [['host', { link: '/nonexistent' }], ['static', undefined], ['uplink', IMAGE], ['stub', { link: 'resolv.real' }]] as const) {
        const r = await rootWith(initial);
        try {
          const seen = await launch(r.dir, `replace-${src}`, fx);
          expect(seen.code).toBe(0);
          expect(seen.content).toBe(CONTENT[src]);
          expect(lstatSync(`${r.dir}/etc/resolv.conf`).isFile()).toBe(true);
          expect(seen.writable).toBe(true);
        } finally {
          r.remove();
        }
      }
    } finally {
      fx.remove();
    }
  });

  ktest('bind-*: a read-only mount of the source, the image untouched (an empty target made when missing)', async () => {
    const fx = fixture();
    try {
      for (const [src, initial] of [['host', IMAGE], ['static', undefined], ['uplink', IMAGE], ['stub', IMAGE]] as const) {
        const r = await rootWith(initial);
        try {
          const seen = await launch(r.dir, `bind-${src}`, fx);
          expect(seen.code).toBe(0);
          expect(seen.content).toBe(CONTENT[src]);
          expect(seen.mounted).toBe(true);
          expect(seen.writable).toBe(false);
          expect(readFileSync(`${r.dir}/etc/resolv.conf`, 'utf8')).toBe(initial ?? '');
          // the host's file is unchanged too
          expect(readFileSync(fx.paths[src], 'utf8')).toBe(CONTENT[src]);
        } finally {
          r.remove();
        }
      }
    } finally {
      fx.remove();
    }
  });

  ktest('read-only root: bind-* works over an existing file; copy-* and a bind without a target fail with a warning, the container runs', async () => {
    const fx = fixture();
    const r = await rootWith(IMAGE);
    const bare = await rootWith(undefined);
    const undo: Array<() => Promise<void>> = [];
    try {
      undo.push(await readOnly(r.dir), await readOnly(bare.dir));
      let seen = await launch(r.dir, 'bind-uplink', fx);
      expect(seen).toMatchObject({ code: 0, content: CONTENT.uplink, mounted: true, writable: false, warnings: [] });
      seen = await launch(r.dir, 'copy-host', fx);
      expect(seen).toMatchObject({ code: 0, content: IMAGE, mounted: false, writable: false });
      expect(seen.warnings).toEqual([expect.stringMatching(/Failed to copy .* to \/etc\/resolv.conf, ignoring: EROFS/)]);
      // systemd: the target cannot be created, the mount fails, the copy fallback fails too — and says so
      seen = await launch(bare.dir, 'bind-host', fx);
      expect(seen.code).toBe(0);
      expect(seen.content).toBeUndefined();
      expect(seen.warnings).toEqual([
        expect.stringMatching(/^Failed to create \/etc\/resolv.conf to bind .* copying instead: EROFS/),
        expect.stringMatching(/Failed to copy .* ignoring: EROFS/),
      ]);
      // the source missing on the host: copy fallback, which fails for the same reason
      rmSync(fx.paths.static);
      seen = await launch(r.dir, 'bind-static', fx);
      expect(seen).toMatchObject({ code: 0, content: IMAGE });
      expect(seen.warnings[0]).toMatch(/usr-lib-resolv.conf does not exist/);
    } finally {
      for (const u of undo.reverse()) await u();
      r.remove();
      bare.remove();
      fx.remove();
    }
  });

  ktest('delete and off', async () => {
    const fx = fixture();
    const r = await rootWith(IMAGE);
    try {
      let seen = await launch(r.dir, 'off', fx);
      expect(seen).toMatchObject({ code: 0, content: IMAGE, warnings: [] });
      seen = await launch(r.dir, 'delete', fx);
      expect(seen).toMatchObject({ code: 0, content: undefined, warnings: [] });
      expect(existsSync(`${r.dir}/etc/resolv.conf`)).toBe(false);
      // deleting what is not there is fine
      seen = await launch(r.dir, 'delete', fx);
      expect(seen).toMatchObject({ code: 0, warnings: [] });
    } finally {
      r.remove();
      fx.remove();
    }
  });

  ktest('auto: off with a private network; copy-stub when resolved\'s stub listens; else copy-host; else delete', async () => {
    const fx = fixture();
    const r = await rootWith(IMAGE);
    try {
      const priv = { network: { ...defaultNetworkSpec(), private: true } };
      expect(await launch(r.dir, 'auto', fx, priv, fx.withStub)).toMatchObject({ code: 0, content: IMAGE });
      expect((await launch(r.dir, 'auto', fx, {}, fx.withStub)).content).toBe(CONTENT.stub);
      // the stub file without a listener does not count
      expect((await launch(r.dir, 'auto', fx, {}, fx.noStub)).content).toBe(CONTENT.host);
      unlinkSync(fx.paths.host);
      expect((await launch(r.dir, 'auto', fx, {}, fx.noStub)).content).toBeUndefined();
      expect(existsSync(`${r.dir}/etc/resolv.conf`)).toBe(false);
    } finally {
      r.remove();
      fx.remove();
    }
  });

  ktest('a private network and a resolver on the host\'s loopback: a warning says the container cannot reach it', async () => {
    const fx = fixture();
    const r = await rootWith(IMAGE);
    try {
      const priv = { network: { ...defaultNetworkSpec(), private: true } };
      let seen = await launch(r.dir, 'copy-static', fx, priv);
      expect(seen.content).toBe(CONTENT.static);
      expect(seen.warnings).toEqual([expect.stringContaining('points at a resolver on the host\'s loopback (127.0.0.53), which the container cannot reach')]);
      seen = await launch(r.dir, 'bind-stub', fx, priv);
      expect(seen.warnings).toEqual([expect.stringContaining('cannot reach')]);
      // the same file without a private network: the host's loopback is the container's
      seen = await launch(r.dir, 'copy-static', fx);
      expect(seen.warnings).toEqual([]);
      // a host resolver elsewhere: nothing to say
      seen = await launch(r.dir, 'copy-uplink', fx, priv);
      expect(seen.warnings).toEqual([]);
    } finally {
      r.remove();
      fx.remove();
    }
  });

  ktest('a user namespace: copies and the made bind target belong to the container\'s root; the bind is read-only inside', async () => {
    const fx = fixture();
    const r = await rootWith(IMAGE);
    const shift = 0x50000;
    const userns = { privateUsers: { mode: 'range' as const, uid: shift, count: 65536 }, privateUsersChown: true };
    try {
      let seen = await launch(r.dir, 'copy-host', fx, userns);
      expect(seen).toMatchObject({ code: 0, content: CONTENT.host, writable: true, warnings: [] });
      expect(statSync(`${r.dir}/etc/resolv.conf`).uid).toBe(shift);
      seen = await launch(r.dir, 'bind-uplink', fx, userns);
      expect(seen).toMatchObject({ code: 0, content: CONTENT.uplink, mounted: true, writable: false, warnings: [] });
      rmSync(`${r.dir}/etc/resolv.conf`);
      seen = await launch(r.dir, 'bind-stub', fx, userns);
      expect(seen).toMatchObject({ code: 0, content: CONTENT.stub, mounted: true, writable: false });
      expect(statSync(`${r.dir}/etc/resolv.conf`)).toMatchObject({ uid: shift, gid: shift, size: 0 });
      seen = await launch(r.dir, 'replace-static', fx, userns);
      expect(seen).toMatchObject({ code: 0, content: CONTENT.static });
      expect(statSync(`${r.dir}/etc/resolv.conf`).uid).toBe(shift);
    } finally {
      r.remove();
      fx.remove();
    }
  });

  ktest('--ephemeral: the container sees the copy, the image keeps its file', async () => {
    const fx = fixture();
    const r = await rootWith(IMAGE);
    try {
      let seen = await launch(r.dir, 'copy-uplink', fx, { ephemeral: true });
      expect(seen).toMatchObject({ code: 0, content: CONTENT.uplink, writable: true });
      expect(readFileSync(`${r.dir}/etc/resolv.conf`, 'utf8')).toBe(IMAGE);
      seen = await launch(r.dir, 'bind-host', fx, { ephemeral: true });
      expect(seen).toMatchObject({ code: 0, content: CONTENT.host, mounted: true, writable: false });
      seen = await launch(r.dir, 'delete', fx, { ephemeral: true });
      expect(seen).toMatchObject({ code: 0, content: undefined });
      expect(readFileSync(`${r.dir}/etc/resolv.conf`, 'utf8')).toBe(IMAGE);
    } finally {
      r.remove();
      fx.remove();
    }
  });
});
