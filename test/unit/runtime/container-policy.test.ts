// The container's policy as data: mount plan, capabilities, system call filter, user-namespace
// ranges, kill signals, the console escape — no kernel needed.
import { describe, expect, test } from 'vitest';
import { UID_MAPPED_ROOT, bindIdmap, buildMountPlan, escapeOverlay, idmapLines, type MountPlanInput } from '../../../src/runtime/mounts.js';
import { CAPS, NSPAWN_RETAINED_CAPS, capMask, capNames, containerCaps, readOwnBoundingSet } from '../../../src/runtime/caps.js';
import { buildSeccompFilter, deniedSyscalls } from '../../../src/runtime/seccomp.js';
import {
  containerCloneFlags, fixedUidRange, idMapLine, namespaceNames, pickCandidateFromName, reduceCandidate,
  CONTAINER_UID_BASE_MAX, CONTAINER_UID_BASE_MIN,
} from '../../../src/runtime/namespaces.js';
import { shiftedId } from '../../../src/runtime/file-tree.js';
import { containerEnvironment, parseOsRelease, signalName, stopSignal } from '../../../src/runtime/launcher.js';
import { EscapeDetector } from '../../../src/runtime/console.js';
import { cgroupMountOps } from '../../../src/runtime/container-cgroup.js';
import { execCandidates } from '../../../src/runtime/container-root.js';
import { CLONE_NEWNET, CLONE_NEWUSER, MS_BIND, describeOp, type PlanOp } from '../../../src/runtime/plan.js';
import type { CgroupLayout } from '../../../src/runtime/cgroups.js';
import { newSpec } from './spec-fixture.js';

const hybrid: CgroupLayout = {
  mode: 'hybrid',
  hierarchies: [
    { version: 1, controllers: ['cpu', 'cpuacct'], mountPoint: '/sys/fs/cgroup/cpu,cpuacct', mountRoot: '/', ownPath: '/' },
    { version: 1, controllers: ['memory'], mountPoint: '/sys/fs/cgroup/memory', mountRoot: '/', ownPath: '/x' },
    { version: 1, controllers: [], name: 'systemd', mountPoint: '/sys/fs/cgroup/systemd', mountRoot: '/', ownPath: '/' },
    { version: 2, controllers: ['hugetlb'], mountPoint: '/sys/fs/cgroup/unified', mountRoot: '/', ownPath: '/' },
  ],
  controllers: {},
};

function input(over: Partial<MountPlanInput> = {}): MountPlanInput {
  return {
    root: '/r', rootSource: { kind: 'directory', directory: '/r' }, privateNetwork: false, console: false,
    binds: [], tmpfs: [], cgroups: { mode: 'none', hierarchies: [], controllers: {} }, uuid: 'u', manager: 'systemd-nspawn', ...over,
  };
}

const targets = (ops: PlanOp[]): string[] => ops.flatMap((o) => (o.op === 'mount' ? [`${o.fstype ?? (o.flags & MS_BIND ? 'bind' : 'flags')}:${o.target}`] : []));

describe('mount plan', () => {
  test('the host-privileged part makes the root a mount point, then /tmp, /sys, /dev, /run', () => {
    const plan = buildMountPlan(input());
    const t = targets(plan.outer);
    expect(t.slice(0, 2)).toEqual(['flags:/', 'bind:/r']);
    for (const x of ['tmpfs:/r/tmp', 'sysfs:/r/sys', 'tmpfs:/r/dev', 'tmpfs:/r/dev/shm', 'tmpfs:/r/run']) expect(t).toContain(x);
    const nodes = plan.outer.filter((o) => o.op === 'mknod').map((o) => (o.op === 'mknod' ? o.path : ''));
    expect(nodes).toEqual(['/r/dev/null', '/r/dev/zero', '/r/dev/full', '/r/dev/random', '/r/dev/urandom', '/r/dev/tty', '/r/dev/net/tun', '/r/run/host/inaccessible/fifo']);
  });

  test('procfs, devpts and mqueue are mounted inside the namespaces; /proc/sys read-only', () => {
    const plan = buildMountPlan(input());
    const t = targets(plan.inner);
    expect(t[0]).toBe('proc:/r/proc');
    expect(t).toContain('bind:/r/proc/sys');
    expect(t).toContain('devpts:/r/dev/pts');
    expect(t).toContain('mqueue:/r/dev/mqueue');
    expect(plan.inner).toContainEqual(expect.objectContaining({ op: 'setattr', path: '/r/proc/sys', set: 0xf, recursive: true }));
    expect(t).not.toContain('bind:/r/proc/sys/net');
  });

  test('a private network mounts sysfs inside and leaves /proc/sys/net writable', () => {
    const plan = buildMountPlan(input({ privateNetwork: true }));
    expect(targets(plan.outer)).not.toContain('sysfs:/r/sys');
    expect(targets(plan.inner)).toContain('sysfs:/r/sys');
    expect(plan.inner).toContainEqual(expect.objectContaining({ op: 'setattr', path: '/r/proc/sys/net', clear: 1 }));
  });

  test('with a user namespace, file systems made outside belong to the container\'s root', () => {
    const plan = buildMountPlan(input({ uidShift: 65536 * 8 }));
    const run = plan.outer.find((o) => o.op === 'mount' && o.target === '/r/run');
    expect(run).toMatchObject({ data: expect.stringContaining('uid=524288,gid=524288') });
    expect(plan.outer).toContainEqual({ op: 'chown', path: '/r/dev/null', uid: 524288, gid: 524288 });
  });

  test('an overlay root for --ephemeral, with escaped layer paths', () => {
    const plan = buildMountPlan(input({ root: '/e/root', rootSource: { kind: 'overlay', lower: '/a,b', upper: '/e/upper', work: '/e/work' } }));
    expect(plan.outer[1]).toMatchObject({ op: 'mount', fstype: 'overlay', target: '/e/root', data: 'lowerdir=/a\\,b,upperdir=/e/upper,workdir=/e/work' });
    expect(escapeOverlay('a:b\\c')).toBe('a\\:b\\\\c');
  });

  test('binds: directories and files get their mount point, read-only ones a read-only flag', () => {
    const plan = buildMountPlan(input({ binds: [
      { source: '/h/d', target: '/r/srv/d', readOnly: true, recursive: true, file: false },
      { source: '/h/f', target: '/r/etc/f', readOnly: false, recursive: false, file: true },
    ] }));
    expect(plan.outer).toContainEqual({ op: 'mkdir', path: '/r/srv/d', mode: 0o755, parents: true });
    expect(plan.outer).toContainEqual({ op: 'touch', path: '/r/etc/f', mode: 0o644, parents: true });
    expect(plan.outer).toContainEqual({ op: 'setattr', path: '/r/srv/d', set: 1, recursive: true });
    expect(plan.outer).toContainEqual({ op: 'mount', source: '/h/f', target: '/r/etc/f', flags: MS_BIND });
  });

  test('a console pty when interactive', () => {
    expect(buildMountPlan(input({ console: true })).inner).toContainEqual({ op: 'pty', ptmx: '/r/dev/pts/ptmx', consoleLink: '/r/dev/console' });
    expect(buildMountPlan(input()).inner.some((o) => o.op === 'pty')).toBe(false);
  });

  test('the notify socket is bound over /run/host/notify before /run/host is made read-only', () => {
    const outer = buildMountPlan(input({ notifySocket: '/run/nspawn-ts/notify/m.1' })).outer;
    const bind = outer.findIndex((o) => o.op === 'mount' && o.target === '/r/run/host/notify');
    expect(outer[bind]).toEqual({ op: 'mount', source: '/run/nspawn-ts/notify/m.1', target: '/r/run/host/notify', flags: MS_BIND });
    expect(outer[bind - 1]).toEqual({ op: 'touch', path: '/r/run/host/notify', mode: 0o600 });
    expect(bind).toBeLessThan(outer.findIndex((o) => o.op === 'setattr' && o.path === '/r/run/host'));
    expect(buildMountPlan(input()).outer.some((o) => o.op === 'touch' && o.path.endsWith('/notify'))).toBe(false);
  });

  test('ID-mapped binds: the last of idmap/rootidmap/owneridmap/noidmap wins; maps as systemd\'s make_userns()', () => {
    const b = (...options: string[]) => bindIdmap({ source: '/s', destination: '/d', readOnly: false, options });
    expect([b(), b('rbind'), b('idmap'), b('idmap', 'noidmap'), b('noidmap', 'rootidmap'), b('owneridmap')]).toEqual(
      [undefined, undefined, 'idmap', undefined, 'rootidmap', 'owneridmap']);
    const range = { shift: 0x50000, range: 0x10000 };
    expect(idmapLines('idmap', range, 7, 8)).toBe(`0 ${0x50000} 65536\n${UID_MAPPED_ROOT} 0 1\n`);
    expect(idmapLines('idmap', { shift: 0, range: 0x10000 }, 7, 8)).toBe('0 0 65536\n'); // identity: no second line to overlap
    expect(idmapLines('rootidmap', range, 4321, 8)).toBe(`4321 ${0x50000} 1\n`);
    expect(idmapLines('owneridmap', range, 4321, 0x50000 + 1000)).toBe(`4321 ${0x50000 + 1000} 1\n`);
    const ops = buildMountPlan(input({ binds: [{ source: '/h', target: '/r/d', readOnly: true, recursive: true, file: false,
      idmap: { option: 'idmap', userns: '/proc/9/ns/user', fstype: 'ext4' } }] })).outer;
    const at = ops.findIndex((o) => o.op === 'bindIdmapped');
    expect(ops[at]).toEqual({ op: 'bindIdmapped', source: '/h', target: '/r/d', userns: '/proc/9/ns/user', recursive: true,
      what: '--bind=/h:…:idmap', instead: 'bind it without idmap, or from a file system that does', fstype: 'ext4' });
    expect(ops[at + 1]).toEqual({ op: 'setattr', path: '/r/d', set: 1, recursive: true });
    expect(ops.some((o) => o.op === 'mount' && o.target === '/r/d')).toBe(false);
    // --private-users-ownership=map: the root itself
    const mapped = buildMountPlan(input({ rootIdmap: { userns: '/proc/9/ns/user' } })).outer;
    expect(mapped[1]).toMatchObject({ op: 'bindIdmapped', source: '/r', target: '/r', userns: '/proc/9/ns/user', recursive: true, what: '--private-users-ownership=map' });
    expect(mapped.some((o) => o.op === 'mount' && o.target === '/r')).toBe(false);
  });

  test('cgroups as on a hybrid host: v1 controllers read-only, name=systemd and unified writable', () => {
    const ops = cgroupMountOps(hybrid, '/r/sys/fs/cgroup');
    expect(targets(ops)).toEqual(['tmpfs:/r/sys/fs/cgroup', 'cgroup:/r/sys/fs/cgroup/cpu,cpuacct', 'cgroup:/r/sys/fs/cgroup/memory',
      'cgroup:/r/sys/fs/cgroup/systemd', 'cgroup2:/r/sys/fs/cgroup/unified']);
    const ro = ops.filter((o) => o.op === 'setattr').map((o) => (o.op === 'setattr' ? o.path : ''));
    expect(ro).toEqual(['/r/sys/fs/cgroup/cpu,cpuacct', '/r/sys/fs/cgroup/memory', '/r/sys/fs/cgroup']);
    expect(ops).toContainEqual({ op: 'symlink', target: 'cpu,cpuacct', path: '/r/sys/fs/cgroup/cpu' });
    expect(ops).toContainEqual(expect.objectContaining({ op: 'mount', target: '/r/sys/fs/cgroup/systemd', data: 'none,name=systemd' }));
    expect(cgroupMountOps({ ...hybrid, mode: 'unified' }, '/c')).toEqual([expect.objectContaining({ fstype: 'cgroup2', target: '/c' })]);
  });

  test('ops describe themselves for error messages', () => {
    expect(describeOp({ op: 'mount', source: '/a', target: '/b', flags: MS_BIND })).toBe('bind-mount /a on /b');
    expect(describeOp({ op: 'exec', candidates: ['/bin/x'], argv: ['x'], envp: [] })).toBe('execute x');
  });
});

describe('capabilities and system calls', () => {
  test('systemd-nspawn\'s bounding set; CAP_NET_ADMIN with a private network only', () => {
    const base = containerCaps({ privateNetwork: false });
    expect(base).toBe(capMask(NSPAWN_RETAINED_CAPS));
    // the set systemd-nspawn showed on this host (CapBnd 00000000fcecafff, plus CAP_SYS_RESOURCE the host lacks)
    expect(base).toBe(0xfcecafffn | (1n << 24n));
    expect(containerCaps({ privateNetwork: true })).toBe(base | (1n << BigInt(CAPS.CAP_NET_ADMIN)));
    expect(capNames(base)).not.toContain('CAP_SYS_MODULE');
    expect(readOwnBoundingSet('CapInh:\t0\nCapBnd:\t000001fffeffffff\n')).toBe(0x1fffeffffffn);
  });

  test('the filter refuses kexec, modules, keyrings, open_by_handle_at; clock setting only without CAP_SYS_TIME', () => {
    const denied = deniedSyscalls(containerCaps({ privateNetwork: false }));
    for (const s of ['kexec_load', 'open_by_handle_at', 'init_module', 'keyctl', 'swapon', 'bpf', 'settimeofday']) expect(denied).toContain(s);
    for (const s of ['reboot', 'mount', 'ptrace']) expect(denied).not.toContain(s);
    expect(deniedSyscalls(containerCaps({ privateNetwork: false }) | (1n << BigInt(CAPS.CAP_SYS_TIME)))).not.toContain('settimeofday');
  });

  test('the BPF program: arch check, one compare and return per call, allow at the end', () => {
    const prog = buildSeccompFilter(containerCaps({ privateNetwork: false }));
    const dv = new DataView(prog.buffer);
    const insn = (i: number) => ({ code: dv.getUint16(i * 8, true), jt: dv.getUint8(i * 8 + 2), jf: dv.getUint8(i * 8 + 3), k: dv.getUint32(i * 8 + 4, true) });
    expect(prog.length % 8).toBe(0);
    expect(insn(0)).toEqual({ code: 0x20, jt: 0, jf: 0, k: 4 });
    expect(insn(1)).toMatchObject({ code: 0x15, k: 0xc000003e });
    const n = prog.length / 8;
    expect(insn(n - 1)).toEqual({ code: 0x06, jt: 0, jf: 0, k: 0x7fff0000 });
    // every "jeq nr" on the x86-64 path is followed by "return EPERM"
    const x64End = 2 + insn(1).jf;
    for (let i = 4; i < x64End - 1; i += 2) {
      expect(insn(i).code).toBe(0x15);
      expect(insn(i + 1)).toEqual({ code: 0x06, jt: 0, jf: 0, k: 0x00050001 });
    }
    const nrs = new Set<number>();
    for (let i = 4; i < x64End - 1; i += 2) nrs.add(insn(i).k);
    expect(nrs.has(246)).toBe(true); // kexec_load
    expect(nrs.has(304)).toBe(true); // open_by_handle_at
  });
});

describe('user namespaces', () => {
  test('pick hashes the machine name like systemd-nspawn (mycontainer → 0x1D920000)', () => {
    expect(pickCandidateFromName('mycontainer')).toBe(0x1d920000);
    for (const c of [0, 1, 0xffffffff, 123456789]) {
      const r = reduceCandidate(c);
      expect(r % 0x10000).toBe(0);
      expect(r).toBeGreaterThanOrEqual(CONTAINER_UID_BASE_MIN);
      expect(r).toBeLessThanOrEqual(CONTAINER_UID_BASE_MAX);
    }
  });

  test('fixed ranges, map lines, id shifting', () => {
    expect(fixedUidRange({ mode: 'identity' }, '/')).toEqual({ shift: 0, range: 65536 });
    expect(fixedUidRange({ mode: 'range', uid: 100000, count: 1000 }, '/')).toEqual({ shift: 100000, range: 1000 });
    expect(fixedUidRange({ mode: 'no' }, '/')).toBeUndefined();
    expect(idMapLine({ shift: 524288, range: 65536 })).toBe('0 524288 65536\n');
    expect(shiftedId(1000, 524288)).toBe(525288);
    expect(shiftedId(525288, 0)).toBe(1000);
    expect(containerCloneFlags({ privateNetwork: true, userns: true }) & (CLONE_NEWNET | CLONE_NEWUSER)).toBe(CLONE_NEWNET | CLONE_NEWUSER);
    expect(namespaceNames(containerCloneFlags({ privateNetwork: false, userns: false }))).toEqual(['mnt', 'pid', 'uts', 'ipc']);
  });
});

describe('launch details', () => {
  test('stop signals: a configured KillSignal= always; unset, SIGRTMIN+3 for a booted systemd, SIGTERM for another init, none when not booted', () => {
    const systemd = { path: '/lib/systemd/systemd', systemd: true };
    const busybox = { path: '/sbin/init', systemd: false };
    const boot = { ...newSpec(), mode: 'boot' as const };
    expect(stopSignal(boot, systemd)).toBe(37);
    // systemd-nspawn's default for -b is for systemd: a busybox init has no handler for it
    expect(stopSignal(boot, busybox)).toBe(15);
    expect(stopSignal({ ...boot, killSignal: 'SIGRTMIN+3' }, busybox)).toBe(37);
    expect(stopSignal({ ...boot, killSignal: 'SIGUSR1' }, systemd)).toBe(10);
    expect(stopSignal({ ...newSpec(), killSignal: 'SIGUSR2' }, undefined)).toBe(12);
    // not booted, nothing configured: no kill signal (a stop kills at once, as systemd-nspawn)
    expect(stopSignal(newSpec(), undefined)).toBe(0);
    expect(signalName(37)).toBe('SIGRTMIN+3');
  });

  test('the environment of PID 1', () => {
    const env = containerEnvironment({ spec: { ...newSpec(), environment: ['A=1', 'PATH=/x'] }, uuid: 'U', user: undefined, term: undefined, hostOs: parseOsRelease('ID=debian\nVERSION_ID="12"\n') });
    expect(env).toEqual(expect.arrayContaining(['container=systemd-nspawn', 'container_uuid=U', 'TERM=vt220', 'HOME=/root', 'A=1', 'PATH=/x',
      'container_host_id=debian', 'container_host_version_id=12']));
  });

  test('commands are looked up in PATH unless they have a slash', () => {
    expect(execCandidates('/bin/x')).toEqual(['/bin/x']);
    expect(execCandidates('ls', '/a:/b')).toEqual(['/a/ls', '/b/ls']);
  });

  test('Ctrl-] three times within a second, and nothing in between', () => {
    const d = new EscapeDetector();
    expect(d.feed(Uint8Array.of(0x1d, 0x1d), 0)).toBe(false);
    expect(d.feed(Uint8Array.of(0x1d), 500)).toBe(true);
    const slow = new EscapeDetector();
    expect(slow.feed(Uint8Array.of(0x1d, 0x1d), 0)).toBe(false);
    expect(slow.feed(Uint8Array.of(0x1d), 1500)).toBe(false);
    const broken = new EscapeDetector();
    expect(broken.feed(Uint8Array.of(0x1d, 0x1d, 0x61, 0x1d), 0)).toBe(false);
  });
});
