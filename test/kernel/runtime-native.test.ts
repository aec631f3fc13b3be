// The native clone child (native/src/container.cc) against the real kernel: namespaces, the sync
// channel, error reports with errno, exit statuses, the stub init, pidfd waiting.
import { closeSync, openSync, readlinkSync, mkdirSync, mkdtempSync, rmSync, rmdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect } from 'vitest';
import { ktest } from '../helpers/kernel.js';
import { POLL_READABLE, sys, type ChannelMessage } from '../../src/native.js';
import {
  CLONE_NEWIPC, CLONE_NEWNS, CLONE_NEWPID, CLONE_NEWUTS, type PlanOp,
} from '../../src/runtime/plan.js';
import { cgroupEntry, cgroupFsPath, detectLayout, parseProcCgroup } from '../../src/runtime/cgroups.js';

interface Outcome {
  messages: ChannelMessage[];
  status: { code: number | null; signal: number | null };
}

/** Runs a plan to the end: answers every sync with go, collects messages, reaps the child. */
function runPlan(cloneFlags: number, ops: PlanOp[], onReady?: (pid: number) => void, cgroupDir?: string): Promise<Outcome> {
  const s = sys();
  const c = s.spawnContainer({ cloneFlags, ops, ...(cgroupDir !== undefined ? { cgroupDir } : {}) });
  const messages: ChannelMessage[] = [];
  return new Promise((resolve) => {
    let status: Outcome['status'] | undefined;
    let eof = false;
    const finish = (): void => {
      if (status && eof) resolve({ messages, status });
    };
    const cw = new s.FdWatcher(c.channel, POLL_READABLE, () => {
      for (;;) {
        const m = s.channelRecv(c.channel);
        if (!m) return;
        messages.push(m);
        if (m.fd !== undefined) closeSync(m.fd);
        if (m.kind === 1) {
          onReady?.(c.pid);
          s.channelGo(c.channel);
        }
        if (m.kind === 0) {
          cw.stop();
          s.close(c.channel);
          eof = true;
          finish();
          return;
        }
      }
    });
    const pw = new s.FdWatcher(c.pidfd, POLL_READABLE, () => {
      const st = s.waitPidfd(c.pidfd);
      if (!st) return;
      pw.stop();
      s.close(c.pidfd);
      status = st;
      finish();
    });
  });
}

const sh = (script: string): PlanOp => ({ op: 'exec', candidates: ['/bin/sh'], argv: ['sh', '-c', script], envp: ['PATH=/usr/bin:/bin'] });

describe('spawnContainer', () => {
  ktest('the child enters its cgroups itself: joinCgroup for v1, cloned into the cgroup2 one; the caller stays where it was', async () => {
    const layout = detectLayout();
    // a fresh cgroup below this process's own in every hierarchy it has one in (removed after)
    const dirs: Array<{ version: 1 | 2; path: string; rel: string }> = [];
    const name = `rn-${process.pid}`;
    for (const h of layout.hierarchies) {
      // a new cpuset cgroup has no CPUs to run on until it is given some (machines get none)
      if (h.controllers.includes('cpuset') && h.version === 1) continue;
      const base = h.ownPath === undefined ? undefined : cgroupFsPath(h, h.ownPath);
      if (base === undefined) continue;
      const path = join(base, name);
      mkdirSync(path);
      dirs.push({ version: h.version, path, rel: `${h.ownPath === '/' ? '' : h.ownPath}/${name}` });
    }
    if (dirs.length === 0) return; // no cgroup hierarchy here (the kernel has them: see cgroups.test.ts)
    const before = readFileSync('/proc/self/cgroup', 'utf8');
    const dir = mkdtempSync(`${tmpdir()}/rt-native-`);
    try {
      const out = `${dir}/out`;
      const entry = cgroupEntry(dirs);
      const r = await runPlan(CLONE_NEWNS, [...entry.tasksFiles.map((tasks): PlanOp => ({ op: 'joinCgroup', tasks })), sh(`cat /proc/self/cgroup > ${out}`)], undefined, entry.cgroup2Dir);
      expect({ status: r.status, errors: r.messages.filter((m) => m.kind === 2) }).toEqual({ status: { code: 0, signal: null }, errors: [] });
      const seen = parseProcCgroup(readFileSync(out, 'utf8'));
      const paths = new Set(seen.map((e) => e.path));
      for (const d of dirs) expect(paths.has(d.rel)).toBe(true);
      expect(readFileSync('/proc/self/cgroup', 'utf8')).toBe(before);
      // a cgroup that is gone: the op fails with its errno, nothing runs
      const gone = await runPlan(CLONE_NEWNS, [{ op: 'joinCgroup', tasks: join(dir, 'no-such-cgroup', 'tasks') }, sh('exit 0')]);
      expect(gone.messages.find((m) => m.kind === 2)).toMatchObject({ op: 0, err: 2 });
      expect(gone.status.code).not.toBe(0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
      for (const d of dirs) rmdirSync(d.path);
    }
  });

  ktest('runs the payload in new namespaces and returns its exit code', async () => {
    const dir = mkdtempSync(`${tmpdir()}/rt-native-`);
    try {
      const out = `${dir}/out`;
      const r = await runPlan(CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWUTS | CLONE_NEWIPC, [
        { op: 'sync' },
        { op: 'sethostname', name: 'native-test' },
        sh(`echo "$$ $(hostname) $(readlink /proc/self/ns/uts)" > ${out}; exit 7`),
      ]);
      expect(r.status).toEqual({ code: 7, signal: null });
      expect(r.messages.map((m) => m.kind)).toEqual([1, 0]);
      const [pid, host, uts] = readFileSync(out, 'utf8').trim().split(' ');
      // /proc is still the host's here, so $$ is the PID-namespace view (1) and the uts ns differs
      expect(pid).toBe('1');
      expect(host).toBe('native-test');
      expect(uts).not.toBe(readlinkSync('/proc/self/ns/uts'));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  ktest('reports the failing op with its errno and does not run the payload', async () => {
    const r = await runPlan(CLONE_NEWNS, [
      { op: 'mkdir', path: '/nonexistent-dir/sub', mode: 0o755 },
      sh('exit 0'),
    ]);
    expect(r.messages[0]).toMatchObject({ kind: 2, op: 0, err: 2, code: 'ENOENT' });
    expect(r.status.code).not.toBe(0);
  });

  ktest('optional ops may fail with ENOENT', async () => {
    const r = await runPlan(CLONE_NEWNS, [
      { op: 'mount', source: '/nonexistent', target: '/nonexistent', flags: 0x1000, optional: true },
      sh('exit 0'),
    ]);
    expect(r.status).toEqual({ code: 0, signal: null });
  });

  ktest('a missing program is an ENOENT error report from the exec op', async () => {
    const r = await runPlan(CLONE_NEWNS, [
      { op: 'exec', candidates: ['/nonexistent/a', '/nonexistent/b'], argv: ['a'], envp: [] },
    ]);
    expect(r.messages[0]).toMatchObject({ kind: 2, op: 0, code: 'ENOENT' });
    expect(r.status.code).toBe(127);
  });

  ktest('a signal that ends the payload is reported as such', async () => {
    const r = await runPlan(CLONE_NEWNS, [sh('kill -TERM $$')]);
    expect(r.status).toEqual({ code: null, signal: 15 });
  });

  ktest('the stub init reaps and exits with the payload status, 128+N for a signal', async () => {
    const exited = await runPlan(CLONE_NEWNS | CLONE_NEWPID, [{ op: 'stubInit' }, sh('[ $$ = 2 ] && exit 5; exit 9')]);
    expect(exited.status).toEqual({ code: 5, signal: null });
    const killed = await runPlan(CLONE_NEWNS | CLONE_NEWPID, [{ op: 'stubInit' }, sh('kill -KILL $$')]);
    expect(killed.status).toEqual({ code: 128 + 9, signal: null });
  });

  ktest('the child waits at a sync op until the launcher says go', async () => {
    let seenPid = 0;
    const r = await runPlan(CLONE_NEWNS, [{ op: 'sync' }, sh('exit 0')], (pid) => {
      seenPid = pid;
      // still waiting: it has not exec()ed, so it is our clone of node, not sh
      expect(readFileSync(`/proc/${pid}/comm`, 'utf8').trim()).not.toBe('sh');
    });
    expect(seenPid).toBeGreaterThan(0);
    expect(r.status.code).toBe(0);
  });

  ktest('pidfd signals reach the child', async () => {
    const s = sys();
    const c = s.spawnContainer({ cloneFlags: CLONE_NEWNS, ops: [sh('exec sleep 30')] });
    try {
      await new Promise((r) => setTimeout(r, 50));
      s.pidfdSendSignal(c.pidfd, 9);
      const st = await new Promise((resolve) => {
        const w = new s.FdWatcher(c.pidfd, POLL_READABLE, () => {
          const x = s.waitPidfd(c.pidfd);
          if (x) {
            w.stop();
            resolve(x);
          }
        });
      });
      expect(st).toEqual({ code: null, signal: 9 });
    } finally {
      s.close(c.pidfd);
      s.close(c.channel);
    }
  });

  ktest('bad plans are refused before anything is cloned', () => {
    const s = sys();
    expect(() => s.spawnContainer({ cloneFlags: 0, ops: [{ op: 'nosuch' }] })).toThrow(/unknown op 'nosuch'/);
    expect(() => s.spawnContainer({ cloneFlags: 0, ops: [{ op: 'mkdir' }] })).toThrow(/'path' is required/);
  });
});

describe('flock', () => {
  ktest('a second exclusive non-blocking lock on another open file is refused', () => {
    const dir = mkdtempSync(`${tmpdir()}/rt-flock-`);
    const a = openSync(`${dir}/lock`, 'a+');
    const b = openSync(`${dir}/lock`, 'a+');
    try {
      expect(sys().flock(a, 2 | 4)).toBe(true);
      expect(sys().flock(b, 2 | 4)).toBe(false);
      expect(sys().flock(a, 8)).toBe(true); // LOCK_UN
      expect(sys().flock(b, 2 | 4)).toBe(true);
    } finally {
      closeSync(a);
      closeSync(b);
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
