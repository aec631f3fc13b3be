// applyResolvConf() on container roots built in temp directories, with the host's files as
// fixtures in another temp directory: never the machine's own /etc.
import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import { chmodSync, chownSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, readlinkSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  applyResolvConf, bindResolvConf, chaseInRoot, probeResolvConfFacts, resolveResolvConfMode, resolvConfBindOps, setupResolvConf,
  type ResolvConfFacts, type ResolvConfPaths,
} from '../../../src/net/resolv.js';
import type { ResolvConfMode } from '../../../src/runtime/spec.js';

let dir: string;
let root: string;
let paths: ResolvConfPaths;
const HOST = 'nameserver 192.0.2.53\nsearch example.org\n';
const STUB = 'nameserver 127.0.0.53\noptions edns0 trust-ad\nsearch .\n';
const UPLINK = 'nameserver 198.51.100.53\n';
const STATIC = '# static\nnameserver 127.0.0.53\n';
const OLD = 'nameserver 203.0.113.1\n';

const facts: ResolvConfFacts = { privateNetwork: false, etcWritable: true, stubExists: true, resolvedListening: true, hostResolvConfExists: true };
const apply = (mode: ResolvConfMode, opts: { privateNetwork?: boolean; chown?: { uid: number; gid: number } } = {}) =>
  applyResolvConf(root, resolveResolvConfMode(mode, { ...facts, privateNetwork: opts.privateNetwork ?? false }, paths), { paths, ...opts });
const target = () => join(root, 'etc/resolv.conf');

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'resolv-'));
  root = join(dir, 'root');
  mkdirSync(join(root, 'etc'), { recursive: true });
  mkdirSync(join(dir, 'host/run/systemd/resolve'), { recursive: true });
  mkdirSync(join(dir, 'host/etc'), { recursive: true });
  paths = {
    host: join(dir, 'host/etc/resolv.conf'), static: join(dir, 'host/usr-lib-systemd-resolv.conf'),
    uplink: join(dir, 'host/run/systemd/resolve/resolv.conf'), stub: join(dir, 'host/run/systemd/resolve/stub-resolv.conf'),
  };
  writeFileSync(paths.host, HOST);
  writeFileSync(paths.stub, STUB);
  writeFileSync(paths.uplink, UPLINK);
  writeFileSync(paths.static, STATIC);
});

afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

describe('copy-*', () => {
  test.each([['copy-host', HOST], ['copy-stub', STUB], ['copy-uplink', UPLINK], ['copy-static', STATIC]] as Array<[ResolvConfMode, string]>)('%s writes its source', (mode, content) => {
    writeFileSync(target(), OLD);
    expect(apply(mode)).toEqual({ mode, outcome: 'copied', warnings: [] });
    expect(readFileSync(target(), 'utf8')).toBe(content);
    // no temporary file left behind
    expect(readdirSync(join(root, 'etc'))).toEqual(['resolv.conf']);
  });

  test('creates a missing file 0644; keeps mode and owner of an existing one', () => {
    expect(apply('copy-host').outcome).toBe('copied');
    expect(statSync(target()).mode & 0o7777).toBe(0o644);
    chmodSync(target(), 0o600);
    chownSync(target(), 1234, 5678);
    apply('copy-uplink');
    const st = statSync(target());
    expect([st.mode & 0o7777, st.uid, st.gid]).toEqual([0o600, 1234, 5678]);
    expect(readFileSync(target(), 'utf8')).toBe(UPLINK);
  });

  test('a symlink is left to the container (O_NOFOLLOW), with a warning', () => {
    mkdirSync(join(root, 'run/systemd/resolve'), { recursive: true });
    writeFileSync(join(root, 'run/systemd/resolve/stub-resolv.conf'), OLD);
    symlinkSync('../run/systemd/resolve/stub-resolv.conf', target());
    const r = apply('copy-host');
    expect(r.outcome).toBe('skipped');
    expect(r.warnings[0]).toMatch(/it is a symlink \(to \.\.\/run\/systemd\/resolve\/stub-resolv.conf\), left to the container/);
    expect(readlinkSync(target())).toBe('../run/systemd/resolve/stub-resolv.conf');
    expect(readFileSync(join(root, 'run/systemd/resolve/stub-resolv.conf'), 'utf8')).toBe(OLD);
  });

  test('chown: the written file belongs to the container\'s root after the UID shift', () => {
    apply('copy-host', { chown: { uid: 0x10000, gid: 0x10000 } });
    expect([statSync(target()).uid, statSync(target()).gid]).toEqual([0x10000, 0x10000]);
  });

  test('a missing source is a warning, and nothing changes', () => {
    writeFileSync(target(), OLD);
    rmSync(paths.uplink);
    const r = apply('copy-uplink');
    expect(r.outcome).toBe('skipped');
    expect(r.warnings[0]).toMatch(/^Failed to copy .*resolve\/resolv.conf to .*etc\/resolv.conf, ignoring: ENOENT/);
    expect(readFileSync(target(), 'utf8')).toBe(OLD);
  });
});

describe('replace-*', () => {
  test('replaces a symlink with a file', () => {
    symlinkSync('/run/systemd/resolve/stub-resolv.conf', target());
    expect(apply('replace-stub')).toEqual({ mode: 'replace-stub', outcome: 'replaced', warnings: [] });
    expect(lstatSync(target()).isFile()).toBe(true);
    expect(readFileSync(target(), 'utf8')).toBe(STUB);
  });

  test('a symlink pointing out of the root is replaced, never followed', () => {
    const outside = join(dir, 'outside-victim');
    writeFileSync(outside, 'precious\n');
    symlinkSync(outside, target());
    apply('replace-host');
    expect(readFileSync(outside, 'utf8')).toBe('precious\n');
    expect(readFileSync(target(), 'utf8')).toBe(HOST);
  });

  test('an /etc that is a symlink is resolved inside the root (absolute targets too)', () => {
    rmSync(join(root, 'etc'), { recursive: true });
    mkdirSync(join(root, 'usr/etc'), { recursive: true });
    symlinkSync('/usr/etc', join(root, 'etc'));
    // the host path /usr/etc must not be touched: it is resolved as ROOT/usr/etc
    expect(apply('replace-host').outcome).toBe('replaced');
    expect(readFileSync(join(root, 'usr/etc/resolv.conf'), 'utf8')).toBe(HOST);
    // even a symlink climbing with .. stays inside
    rmSync(join(root, 'etc'));
    symlinkSync('../../../../../../usr/etc', join(root, 'etc'));
    writeFileSync(join(root, 'usr/etc/resolv.conf'), OLD);
    expect(apply('copy-uplink').outcome).toBe('copied');
    expect(readFileSync(join(root, 'usr/etc/resolv.conf'), 'utf8')).toBe(UPLINK);
  });

  test('a container without /etc is a warning', () => {
    rmSync(join(root, 'etc'), { recursive: true });
    const r = apply('replace-host');
    expect(r).toMatchObject({ outcome: 'skipped', warnings: [expect.stringMatching(/^Failed to resolve \/etc path in container, ignoring: ENOENT/)] });
    expect(existsSync(join(root, 'etc'))).toBe(false);
  });
});

describe('delete and off', () => {
  test('delete removes the file (or the symlink), and a missing one is fine', () => {
    writeFileSync(target(), OLD);
    expect(apply('delete').outcome).toBe('deleted');
    expect(existsSync(target())).toBe(false);
    expect(apply('delete')).toEqual({ mode: 'delete', outcome: 'untouched', warnings: [] });
    symlinkSync('/nonexistent', target());
    expect(apply('delete').outcome).toBe('deleted');
    expect(() => lstatSync(target())).toThrow();
  });

  test('off and auto with a private network touch nothing', () => {
    writeFileSync(target(), OLD);
    expect(apply('off')).toEqual({ mode: 'off', outcome: 'untouched', warnings: [] });
    expect(apply('auto', { privateNetwork: true })).toEqual({ mode: 'off', outcome: 'untouched', warnings: [] });
    expect(readFileSync(target(), 'utf8')).toBe(OLD);
  });
});

describe('the loopback-resolver warning', () => {
  test('copying the stub into a container with its own network says it cannot be reached', () => {
    const r = apply('copy-stub', { privateNetwork: true });
    expect(r.outcome).toBe('copied');
    expect(r.warnings).toEqual([expect.stringMatching(/stub-resolv.conf points at a resolver on the host's loopback \(127.0.0.53\), which the container cannot reach/)]);
    expect(apply('copy-uplink', { privateNetwork: true }).warnings).toEqual([]);
    expect(apply('copy-stub', { privateNetwork: false }).warnings).toEqual([]);
  });
});

describe('bind-* (preparation; the mount itself is in test/kernel/resolv.test.ts)', () => {
  test('creates a missing target and returns the mount request', () => {
    const r = apply('bind-host');
    expect(r.outcome).toBe('bind-pending');
    expect(r.mount).toMatchObject({ source: paths.host, target: target(), containerPath: '/etc/resolv.conf' });
    expect(readFileSync(target(), 'utf8')).toBe('');
    expect(resolvConfBindOps(r.mount!)).toEqual([
      { op: 'mount', source: paths.host, target: target(), flags: 0x1000 },
      { op: 'mount', target: target(), flags: 0x1000 | 0x20 | 0x1 | 0x2 | 0x4 },
    ]);
    expect(resolvConfBindOps(r.mount!, true).map((o) => o.target)).toEqual(['/etc/resolv.conf', '/etc/resolv.conf']);
  });

  test('a symlinked target is followed inside the root', () => {
    mkdirSync(join(root, 'run/systemd/resolve'), { recursive: true });
    symlinkSync('/run/systemd/resolve/stub-resolv.conf', target());
    const r = apply('bind-stub');
    expect(r.mount).toMatchObject({ target: join(root, 'run/systemd/resolve/stub-resolv.conf'), containerPath: '/run/systemd/resolve/stub-resolv.conf' });
    expect(existsSync(join(root, 'run/systemd/resolve/stub-resolv.conf'))).toBe(true);
  });

  test('if the mount fails, the file is copied instead (systemd\'s fallback)', () => {
    const r = bindResolvConf(apply('bind-uplink'), () => { throw Object.assign(new Error('mount: permission denied'), { code: 'EPERM' }); });
    expect(r.outcome).toBe('copied');
    expect(r.warnings).toEqual([expect.stringMatching(/^Failed to bind mount .*resolv.conf on .*etc\/resolv.conf, copying instead: EPERM/)]);
    expect(readFileSync(target(), 'utf8')).toBe(UPLINK);
  });

  test('mount calls: bind, then remount read-only, nosuid, nodev', () => {
    const calls: Array<[string | null, string, number]> = [];
    const r = bindResolvConf(apply('bind-host'), (s, t, _f, flags) => { calls.push([s, t, flags]); });
    expect(r.outcome).toBe('bound');
    expect(calls).toEqual([[paths.host, target(), 0x1000], [null, target(), 0x1027]]);
  });
});

describe('chaseInRoot', () => {
  test('loops are refused', () => {
    symlinkSync('b', join(root, 'a'));
    symlinkSync('a', join(root, 'b'));
    expect(() => chaseInRoot(root, '/a/x')).toThrow(/too many levels of symbolic links/);
    expect(chaseInRoot(root, '/nope/x', { nonexistent: true })).toEqual({ path: join(root, 'nope/x'), exists: false });
    writeFileSync(join(root, 'file'), '');
    expect(() => chaseInRoot(root, '/file/x')).toThrow(/is not a directory/);
  });
});

describe('setupResolvConf (probe + decide + apply)', () => {
  test('auto copies the stub when it is listening, the host file otherwise', () => {
    const udp = join(dir, 'udp');
    writeFileSync(udp, '  sl  local_address rem_address   st\n   1: 3500007F:0035 00000000:0000 07\n');
    expect(probeResolvConfFacts(paths, udp)).toEqual({ stubExists: true, resolvedListening: true, hostResolvConfExists: true });
    expect(setupResolvConf(root, 'auto', { privateNetwork: false, etcWritable: true }, { paths, procNetUdp: udp })).toMatchObject({ mode: 'copy-stub', outcome: 'copied' });
    expect(readFileSync(target(), 'utf8')).toBe(STUB);
    writeFileSync(udp, '  sl  local_address rem_address   st\n');
    expect(setupResolvConf(root, 'auto', { privateNetwork: false, etcWritable: true }, { paths, procNetUdp: udp })).toMatchObject({ mode: 'copy-host', outcome: 'copied' });
    expect(readFileSync(target(), 'utf8')).toBe(HOST);
    expect(setupResolvConf(root, 'auto', { privateNetwork: false, etcWritable: false }, { paths, procNetUdp: udp })).toMatchObject({ mode: 'bind-host', outcome: 'bind-pending' });
    rmSync(paths.host);
    expect(setupResolvConf(root, 'auto', { privateNetwork: false, etcWritable: true }, { paths, procNetUdp: udp })).toMatchObject({ mode: 'delete', outcome: 'deleted' });
    // a dangling host symlink still counts as present (laccess)
    symlinkSync('/nonexistent/resolv.conf', paths.host);
    expect(probeResolvConfFacts(paths, udp).hostResolvConfExists).toBe(true);
  });
});
