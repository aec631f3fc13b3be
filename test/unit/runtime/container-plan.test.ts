// The plan of ops a start hands the native side, built by the pure buildContainerPlan() from a spec
// and what preparation made: golden files (test/unit/runtime/golden/plan-*.json) pin it op by op,
// so a change in what the container gets shows up as a diff of its plan. Regenerate deliberately
// with `npx vitest run test/unit/runtime/container-plan.test.ts -u` and review the diff.
import { createHash } from 'node:crypto';
import { describe, expect, test } from 'vitest';
import { buildContainerPlan, type PlanInput } from '../../../src/runtime/container-plan.js';
import type { CgroupLayout } from '../../../src/runtime/cgroups.js';
import { CLONE_NEWNET, CLONE_NEWNS, CLONE_NEWUSER } from '../../../src/runtime/plan.js';
import { defaultNetworkSpec } from '../../../src/runtime/spec.js';
import { newSpec } from './spec-fixture.js';

const hybrid: CgroupLayout = {
  mode: 'hybrid',
  hierarchies: [
    { version: 1, controllers: ['memory'], mountPoint: '/sys/fs/cgroup/memory', mountRoot: '/', ownPath: '/' },
    { version: 1, controllers: [], name: 'systemd', mountPoint: '/sys/fs/cgroup/systemd', mountRoot: '/', ownPath: '/' },
    { version: 2, controllers: ['hugetlb'], mountPoint: '/sys/fs/cgroup/unified', mountRoot: '/', ownPath: '/' },
  ],
  controllers: {},
};

function input(over: Partial<PlanInput> = {}): PlanInput {
  return {
    spec: newSpec({ directory: '/r', machine: 'web', command: ['/bin/true'] }),
    root: '/r', rootSource: { kind: 'directory', directory: '/r' }, groups: [],
    layout: { mode: 'none', hierarchies: [], controllers: {} }, cgroupDirs: [],
    notifySocket: '/run/nspawn-ts/notify/web.1', uuid: '00000000-0000-4000-8000-000000000001',
    hostOs: { path: '/etc/os-release', fields: { ID: 'debian', VERSION_ID: '12' } }, consoleMode: 'pipe',
    binds: [], tmpfs: [], ownBoundingSet: (1n << 41n) - 1n, seccomp: true, hookMounts: [], beforeExecSync: false, afterHookOps: [],
    workingDirectory: '/', hasBash: false, ...over,
  };
}

/** JSON of a plan: bigints as hex, byte programs (seccomp) by length and SHA-256. */
function render(value: unknown): string {
  return `${JSON.stringify(value, (_k, v: unknown) => {
    if (typeof v === 'bigint') return `0x${v.toString(16)}n`;
    if (v instanceof Uint8Array) return { bytes: v.length, sha256: createHash('sha256').update(v).digest('hex') };
    return v;
  }, 2)}\n`;
}

describe('the container plan', () => {
  test('a command, no private network, no cgroups, piped console', async () => {
    const plan = buildContainerPlan(input());
    expect(plan.cloneFlags & CLONE_NEWNET).toBe(0);
    await expect(render(plan)).toMatchFileSnapshot('golden/plan-command.json');
  });

  test('-b in a private network with a veth, an interactive console, cgroups and a before-exec hook', async () => {
    const spec = newSpec({ directory: '/r', machine: 'web', mode: 'boot', command: ['--unit=multi-user.target'], network: { ...defaultNetworkSpec(), private: true, veth: true } });
    const plan = buildContainerPlan(input({
      spec, init: { path: '/usr/lib/systemd/systemd', systemd: true }, layout: hybrid, consoleMode: 'interactive', term: 'xterm',
      cgroupDirs: [{ version: 1, path: '/sys/fs/cgroup/memory/machine.slice/web' }, { version: 2, path: '/sys/fs/cgroup/unified/machine.slice/web' }],
      beforeExecSync: true, hookMounts: [{ op: 'mount', source: '/etc/resolv.conf', target: '/r/etc/resolv.conf', flags: 0x1000 }],
      afterHookOps: [{ op: 'mount', source: '/run/host/resolv.conf', target: '/etc/resolv.conf', flags: 0x1000 }],
    }));
    expect(plan.cloneFlags & CLONE_NEWNET).toBe(CLONE_NEWNET);
    expect(plan.cgroupDir).toBe('/sys/fs/cgroup/unified/machine.slice/web');
    await expect(render(plan)).toMatchFileSnapshot('golden/plan-boot-network.json');
  });

  test('-U with an ephemeral overlay, a user, a bind, a tmpfs and a shell (no command)', async () => {
    const spec = newSpec({ directory: '/r', machine: 'web', ephemeral: true, privateUsers: { mode: 'pick' }, user: 'alice' });
    const plan = buildContainerPlan(input({
      spec, root: '/var/lib/nspawn-ts/ephemeral/web.x/root', rootSource: { kind: 'overlay', lower: '/r', upper: '/e/upper', work: '/e/work' },
      userns: { shift: 0x10000, range: 0x10000 }, user: { name: 'alice', uid: 1000, gid: 1000, home: '/home/alice', shell: '/bin/sh' }, groups: [1000, 27],
      binds: [{ source: '/srv', target: '/var/lib/nspawn-ts/ephemeral/web.x/root/srv', readOnly: true, recursive: true, file: false }],
      tmpfs: [{ target: '/var/lib/nspawn-ts/ephemeral/web.x/root/scratch', options: 'mode=0755' }],
      workingDirectory: '/home/alice', hasBash: true,
    }));
    expect(plan.cloneFlags).toBe(CLONE_NEWNS);
    const inner = plan.ops.find((o) => o.op === 'cloneInner');
    expect(inner && 'flags' in inner ? inner.flags & CLONE_NEWUSER : 0).toBe(CLONE_NEWUSER);
    await expect(render(plan)).toMatchFileSnapshot('golden/plan-userns-ephemeral.json');
  });

  test('--network-namespace-path= joins first; --as-pid2 runs the stub init', async () => {
    const spec = newSpec({ directory: '/r', machine: 'web', mode: 'as-pid2', command: ['/bin/sh'], network: { ...defaultNetworkSpec(), private: true, namespacePath: '/run/netns/n1' } });
    const plan = buildContainerPlan(input({ spec }));
    expect(plan.ops[0]).toEqual({ op: 'setns', path: '/run/netns/n1', nstype: CLONE_NEWNET });
    expect(plan.cloneFlags & CLONE_NEWNET).toBe(0);
    await expect(render(plan)).toMatchFileSnapshot('golden/plan-join-netns-pid2.json');
  });
});
