// cgroup layout detection from mountinfo text, and what a machine's cgroup gets written on a
// cgroup v2 host (a fake cgroupfs in a temporary directory: this machine has no v2 controllers).
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, test } from 'vitest';
import { ConfigError } from '../../../src/errors.js';
import {
  CgroupError, MachineCgroup, cgroupFsPath, detectLayout, parseMountinfo, parseProcCgroup, type DetectOptions,
} from '../../../src/runtime/cgroups.js';
import { parseProperties, type HostFacts } from '../../../src/runtime/properties.js';

const visible: DetectOptions['isVisible'] = () => true;

// this machine (the guide's "facts of this machine")
const HYBRID_MOUNTINFO = `22 27 0:21 / /proc rw,relatime - proc proc rw
23 27 0:22 / /sys rw,relatime - sysfs sysfs rw
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
36 31 0:33 / /sys/fs/cgroup/devices rw,relatime - cgroup cgroup rw,devices
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
`;
const HYBRID_CGROUP = `9:name=systemd:/
8:pids:/
5:devices:/
4:memory:/process_api/2104c125dedcbed5bf57f82de22c57dd
3:cpuset:/
2:cpuacct:/
1:cpu:/
0::/
`;

// Debian 10 style legacy layout: cpu and cpuacct share a hierarchy
const LEGACY_MOUNTINFO = `25 18 0:23 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:4 - tmpfs tmpfs ro,mode=755
28 25 0:26 / /sys/fs/cgroup/systemd rw,nosuid,nodev,noexec,relatime shared:6 - cgroup cgroup rw,xattr,name=systemd
31 25 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:10 - cgroup cgroup rw,cpu,cpuacct
32 25 0:30 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:11 - cgroup cgroup rw,memory
33 25 0:31 / /sys/fs/cgroup/pids rw,nosuid,nodev,noexec,relatime shared:12 - cgroup cgroup rw,pids
`;
const LEGACY_CGROUP = `11:pids:/system.slice/foo.service
4:memory:/system.slice/foo.service
3:cpu,cpuacct:/system.slice/foo.service
1:name=systemd:/system.slice/foo.service
`;

// inside a container: cgroup2 mounted from the container's own subtree, path with a space
const V2_CONTAINER_MOUNTINFO = `100 90 0:40 /machine.slice/machine-a\\040b.scope /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate
`;
const V2_CONTAINER_CGROUP = `0::/machine.slice/machine-a b.scope/payload
`;

describe('mountinfo and /proc/self/cgroup', () => {
  test('parses fields, octal escapes and super options', () => {
    const m = parseMountinfo(V2_CONTAINER_MOUNTINFO + 'garbage line\n');
    expect(m).toEqual([{
      mountId: 100, parentId: 90, dev: '0:40', root: '/machine.slice/machine-a b.scope', mountPoint: '/sys/fs/cgroup',
      fsType: 'cgroup2', superOptions: ['rw', 'nsdelegate'],
    }]);
    expect(parseProcCgroup(LEGACY_CGROUP)[2]).toEqual({ id: 3, controllers: ['cpu', 'cpuacct'], path: '/system.slice/foo.service' });
    expect(parseProcCgroup('0::/\n')[0]).toEqual({ id: 0, controllers: [], path: '/' });
  });
});

describe('detectLayout', () => {
  test('hybrid (this machine): controllers on v1, cgroup2 with hugetlb only', () => {
    const l = detectLayout({ mountinfo: HYBRID_MOUNTINFO, procCgroup: HYBRID_CGROUP, isVisible: visible,
      readFile: (p) => (p === '/sys/fs/cgroup/unified/cgroup.controllers' ? 'hugetlb\n' : undefined) });
    expect(l.mode).toBe('hybrid');
    expect(l.controllers.memory).toMatchObject({ version: 1, mountPoint: '/sys/fs/cgroup/memory', ownPath: '/process_api/2104c125dedcbed5bf57f82de22c57dd' });
    expect(l.controllers.cpu).toMatchObject({ version: 1, controllers: ['cpu'], ownPath: '/' });
    expect(l.controllers.cpuacct).toMatchObject({ version: 1, controllers: ['cpuacct'] });
    expect(l.controllers.pids?.mountPoint).toBe('/sys/fs/cgroup/pids');
    expect(l.unified).toMatchObject({ version: 2, controllers: ['hugetlb'], ownPath: '/' });
    expect(l.hierarchies.find((h) => h.name === 'systemd')).toMatchObject({ version: 1, controllers: [], ownPath: '/' });
    expect(cgroupFsPath(l.controllers.memory!, l.controllers.memory!.ownPath!)).toBe('/sys/fs/cgroup/memory/process_api/2104c125dedcbed5bf57f82de22c57dd');
  });

  test('legacy with cpu,cpuacct together', () => {
    const l = detectLayout({ mountinfo: LEGACY_MOUNTINFO, procCgroup: LEGACY_CGROUP, isVisible: visible, readFile: () => undefined });
    expect(l.mode).toBe('legacy');
    expect(l.unified).toBeUndefined();
    expect(l.controllers.cpu).toBe(l.controllers.cpuacct);
    expect(l.controllers.cpu).toMatchObject({ mountPoint: '/sys/fs/cgroup/cpu,cpuacct', ownPath: '/system.slice/foo.service' });
  });

  test('unified inside a container: paths relative to the mounted subtree; cpuacct folds into cpu.stat', () => {
    const l = detectLayout({ mountinfo: V2_CONTAINER_MOUNTINFO, procCgroup: V2_CONTAINER_CGROUP, isVisible: visible,
      readFile: () => 'cpuset cpu io memory pids\n' });
    expect(l.mode).toBe('unified');
    expect(l.controllers.memory).toBe(l.unified);
    expect(l.controllers.pids).toBe(l.unified);
    expect(l.controllers.cpuacct).toBeUndefined();
    const h = l.unified!;
    expect(cgroupFsPath(h, h.ownPath!)).toBe('/sys/fs/cgroup/payload');
    expect(cgroupFsPath(h, h.mountRoot)).toBe('/sys/fs/cgroup');
    expect(cgroupFsPath(h, '/elsewhere')).toBeUndefined();
  });

  test('hidden mounts and second mounts of the same hierarchy are skipped; nothing mounted → none', () => {
    const twice = HYBRID_MOUNTINFO + '90 31 0:32 / /mnt/memory rw - cgroup cgroup rw,memory\n';
    const l = detectLayout({ mountinfo: twice, procCgroup: HYBRID_CGROUP, readFile: () => '',
      isVisible: (m) => m.mountPoint !== '/sys/fs/cgroup/pids' });
    expect(l.controllers.memory?.mountPoint).toBe('/sys/fs/cgroup/memory');
    expect(l.controllers.pids).toBeUndefined();
    expect(detectLayout({ mountinfo: '', procCgroup: '', isVisible: visible }).mode).toBe('none');
  });
});

describe('a machine on a cgroup v2 host (fake cgroupfs)', () => {
  const facts: HostFacts = { physicalMemory: 8n << 30n, pageSize: 4096, tasksMax: 4_194_303n };
  let root = '';
  afterEach(() => {
    if (root) rmSync(root, { recursive: true, force: true });
  });

  /** A fake v2 tree: the launcher's cgroup /user.slice/x.scope with a pre-made machine directory. */
  function fakeV2(launcherProcs: string): { base: string; dir: string; opts: { layout: ReturnType<typeof detectLayout>; facts: HostFacts } } {
    root = mkdtempSync(join(tmpdir(), 'cg2-'));
    const base = join(root, 'user.slice/x.scope');
    const dir = join(base, 'nspawn-ts/machine-m1');
    mkdirSync(dir, { recursive: true });
    for (const [d, files] of [
      [base, { 'cgroup.subtree_control': '', 'cgroup.procs': launcherProcs }],
      [join(base, 'nspawn-ts'), { 'cgroup.subtree_control': '', 'cgroup.procs': '' }],
      [dir, { 'cgroup.procs': '', 'memory.max': 'max', 'memory.high': 'max', 'memory.low': '0', 'memory.swap.max': 'max',
        'cpu.max': 'max 100000', 'cpu.weight': '100', 'cpu.idle': '0', 'pids.max': 'max', 'memory.current': '4096',
        'memory.events': 'low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n', 'cpu.stat': 'usage_usec 1500\nnr_throttled 7\n', 'pids.current': '3' }],
    ] as const) {
      for (const [f, v] of Object.entries(files)) writeFileSync(join(d, f), v);
    }
    const layout = detectLayout({
      mountinfo: `50 1 0:40 / ${root} rw - cgroup2 cgroup2 rw\n`, procCgroup: '0::/user.slice/x.scope\n', isVisible: visible,
      readFile: () => 'cpuset cpu io memory pids\n',
    });
    return { base, dir, opts: { layout, facts } };
  }

  test('limits go to memory.max/high, cpu.max, cpu.weight and pids.max; controllers are enabled down the path', () => {
    const { base, dir, opts } = fakeV2('');
    const cg = MachineCgroup.create('m1', parseProperties(['MemoryMax=2G', 'MemoryHigh=50%', 'CPUQuota=200%', 'CPUWeight=50', 'TasksMax=20', 'MemoryLow=64M']), opts);
    const read = (f: string): string => readFileSync(join(dir, f), 'utf8');
    expect(read('memory.max')).toBe(String(2n << 30n));
    expect(read('memory.high')).toBe(String(4n << 30n));
    expect(read('memory.low')).toBe(String(64n << 20n));
    expect(read('cpu.max')).toBe('200000 100000');
    expect(read('cpu.weight')).toBe('50');
    expect(read('cpu.idle')).toBe('0');
    expect(read('pids.max')).toBe('20');
    expect(readFileSync(join(base, 'cgroup.subtree_control'), 'utf8')).toBe('+memory +cpu +pids');
    expect(readFileSync(join(base, 'nspawn-ts/cgroup.subtree_control'), 'utf8')).toBe('+memory +cpu +pids');
    expect(cg.dirs).toEqual([{ version: 2, controllers: ['memory', 'cpu', 'pids'], path: dir }]);

    cg.update(parseProperties(['CPUQuota=', 'MemoryMax=infinity', 'CPUWeight=idle']));
    expect(read('cpu.max')).toBe('max 100000');
    expect(read('memory.max')).toBe('max');
    expect(read('cpu.idle')).toBe('1');

    cg.attach(4242);
    expect(read('cgroup.procs')).toBe('4242');
    const u = cg.usage();
    expect(u).toMatchObject({ memoryBytes: 4096n, oomKills: 1, cpuNs: 1_500_000n, cpuThrottled: 7, tasks: 3, tasksMax: 20 });
    expect(u.memoryLimitBytes).toBeUndefined();
  });

  test('a write the kernel refuses is a CgroupError with the errno name and the path, and nothing stays', () => {
    const { base, opts } = fakeV2('1\n2\n');
    rmSync(join(base, 'cgroup.subtree_control'));
    mkdirSync(join(base, 'cgroup.subtree_control')); // open(O_WRONLY) on a directory: EISDIR
    let err: unknown;
    try {
      MachineCgroup.create('m1', parseProperties(['TasksMax=5']), opts);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(CgroupError);
    expect(err).toMatchObject({ code: 'CGROUP_IO', errnoCode: 'EISDIR', path: join(base, 'cgroup.subtree_control') });
  });

  test('properties needing a controller the host lacks are refused before anything is written', () => {
    root = mkdtempSync(join(tmpdir(), 'cg2-'));
    const layout = detectLayout({ mountinfo: `50 1 0:40 / ${root} rw - cgroup2 cgroup2 rw\n`, procCgroup: '0::/\n', isVisible: visible, readFile: () => 'memory\n' });
    expect(() => MachineCgroup.create('m1', parseProperties(['TasksMax=5']), { layout, facts })).toThrow(/TasksMax= need the pids controller/);
    expect(() => MachineCgroup.create('m1', parseProperties(['TasksMax=5']), { layout, facts })).toThrow(ConfigError);
    expect(() => MachineCgroup.create('a/b', {}, { layout, facts })).toThrow(/cannot name a cgroup/);
  });
});
