// -b/--boot: the container's own init as PID 1 — busybox init, and systemd of a Debian bookworm
// root reaching `running` with no failed units — and both halting on SIGTERM to the launcher.
import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { describe, expect, beforeAll } from 'vitest';
import { ktest } from '../helpers/kernel.js';
import { busyboxRoot, copyRoot, debianRoot } from '../helpers/rootfs.js';
import { exited, leftoverCgroups, machineLeader, machineRecords, startNspawn } from '../helpers/nspawn.js';
import { killAndWait, run, waitFor } from '../helpers/exec.js';

/** machine names carry this run's ID: cgroups are host-wide, and other test runs may use the same names */
const RUN = process.pid.toString(36);

let bbRoot: string;
let debRoot: string;
beforeAll(async () => {
  bbRoot = await busyboxRoot();
  debRoot = await debianRoot(); // ~35 s the first time on a machine, cached after
}, 15 * 60_000);

/** Runs a command inside a running container's namespaces (as machinectl shell would). */
function inside(leader: number, args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return run('nsenter', ['-t', String(leader), '-a', ...args], { timeoutMs: 20_000 });
}

function started(name: string, child: ReturnType<typeof startNspawn>): Promise<number> {
  return waitFor(() => {
    if (child.exitCode !== null) throw new Error(`exited early: ${child.output()}`);
    return machineLeader(name);
  }, `container ${name} to start`, 15_000);
}

describe('boot', () => {
  ktest('a busybox init boots as PID 1 and halts on SIGTERM to the launcher', async ({ onTestFinished }) => {
    const c = startNspawn(['-D', bbRoot, '-M', `boot-bb-${RUN}`, '-b']);
    onTestFinished(() => killAndWait(c));
    const leader = await started(`boot-bb-${RUN}`, c);
    await waitFor(() => c.output().includes('nspawn-ts-test: booted as PID'), 'rcS to run');
    expect(c.output()).toContain(`booted as PID 2 on boot-bb-${RUN}`);
    expect(readFileSync(`/proc/${leader}/comm`, 'utf8').trim()).toBe('init');
    const ps = await inside(leader, ['ps', '-o', 'pid,comm']);
    expect(ps.stdout).toMatch(/^\s*1 init$/m);
    c.kill('SIGTERM');
    expect(await exited(c)).toEqual({ code: 0, signal: null });
    expect(c.output()).toContain('nspawn-ts-test: shutdown');
    expect(c.output()).toContain(`Container boot-bb-${RUN} has been shut down.`);
    expect(machineRecords()).toEqual([]);
  });

  ktest("KillSignal= of the machine's .nspawn file is what a busybox init gets (SIGUSR2: poweroff, not SIGTERM's reboot)", async ({ onTestFinished }) => {
    const copy = await copyRoot(bbRoot);
    onTestFinished(() => copy.remove());
    const name = `boot-bb-ks-${RUN}`;
    // next to the root directory: an untrusted file, whose KillSignal= applies all the same
    writeFileSync(join(dirname(copy.dir), `${name}.nspawn`), '[Exec]\nKillSignal=SIGUSR2\n');
    const c = startNspawn(['-D', copy.dir, '-M', name, '-b']);
    onTestFinished(() => killAndWait(c));
    await started(name, c);
    await waitFor(() => c.output().includes('nspawn-ts-test: booted as PID'), 'rcS to run');
    c.kill('SIGTERM');
    expect(await exited(c)).toEqual({ code: 0, signal: null });
    expect(c.output()).toContain('Requesting system poweroff');
    expect(c.output()).not.toContain('Requesting system reboot');
    expect(c.output()).toContain(`Container ${name} has been shut down.`);
  });

  ktest('Debian with systemd boots to "running" with no failed units, and halts on SIGTERM', async ({ onTestFinished }) => {
    const t0 = Date.now();
    const c = startNspawn(['-D', debRoot, '-M', `boot-debian-${RUN}`, '-x', '-b']);
    onTestFinished(() => killAndWait(c));
    const leader = await started(`boot-debian-${RUN}`, c);
    const state = await waitFor(async () => {
      if (c.exitCode !== null) throw new Error(`exited: ${c.output()}`);
      const r = await inside(leader, ['systemctl', 'is-system-running']);
      const s = r.stdout.trim();
      return s === 'running' || s === 'degraded' ? s : undefined;
    }, 'systemd to finish booting', 60_000, 100);
    const bootMs = Date.now() - t0;
    const failed = await inside(leader, ['systemctl', '--failed', '--plain', '--no-legend']);
    expect(failed.stdout.trim()).toBe('');
    expect(state).toBe('running');
    expect(readFileSync(`/proc/${leader}/comm`, 'utf8').trim()).toBe('systemd');
    // what systemd in the container sees
    const virt = await inside(leader, ['systemd-detect-virt']);
    expect(virt.stdout.trim()).toBe('systemd-nspawn');
    const host = await inside(leader, ['hostname']);
    expect(host.stdout.trim()).toBe(`boot-debian-${RUN}`);
    const cg = await inside(leader, ['cat', '/proc/1/cgroup']);
    expect(cg.stdout).toMatch(/^0::\/init\.scope$/m);
    expect(cg.stdout).toMatch(/name=systemd:\/init\.scope$/m);
    console.log(`Debian boot to running: ${bootMs} ms`);

    c.kill('SIGTERM');
    const t1 = Date.now();
    expect(await exited(c)).toEqual({ code: 0, signal: null });
    expect(Date.now() - t1).toBeLessThan(20_000);
    expect(c.output()).toContain(`Container boot-debian-${RUN} has been shut down.`);
    expect(machineRecords()).toEqual([]);
    expect(leftoverCgroups().filter((d) => d.endsWith(`machine-boot-debian-${RUN}`))).toEqual([]);
  });

  ktest('Debian boots with -U too: a picked range, the tree shifted, its cgroups delegated', async ({ onTestFinished }) => {
    const copy = await copyRoot(debRoot);
    onTestFinished(() => copy.remove());
    const name = `boot-debian-u-${RUN}`;
    const c = startNspawn(['-D', copy.dir, '-M', name, '-U', '-b']);
    onTestFinished(() => killAndWait(c));
    const leader = await started(name, c);
    const state = await waitFor(async () => {
      if (c.exitCode !== null) throw new Error(`exited: ${c.output()}`);
      const s = (await inside(leader, ['systemctl', 'is-system-running'])).stdout.trim();
      return s === 'running' || s === 'degraded' ? s : undefined;
    }, 'systemd to finish booting', 60_000, 100);
    expect((await inside(leader, ['systemctl', '--failed', '--plain', '--no-legend'])).stdout.trim()).toBe('');
    expect(state).toBe('running');
    const map = (await inside(leader, ['cat', '/proc/1/uid_map'])).stdout.trim().split(/\s+/);
    expect(map[0]).toBe('0');
    expect(Number(map[1])).toBeGreaterThanOrEqual(0x80000);
    c.kill('SIGTERM');
    expect(await exited(c)).toEqual({ code: 0, signal: null });
  });

  ktest('-b finds no init in a root without one, and says where it looked', async () => {
    const { mkdtempSync, mkdirSync, writeFileSync, rmSync } = await import('node:fs');
    const dir = mkdtempSync('/var/tmp/nspawn-ts-noinit-');
    try {
      mkdirSync(`${dir}/etc`);
      mkdirSync(`${dir}/usr`);
      writeFileSync(`${dir}/etc/os-release`, 'ID=none\n');
      const r = await run(process.execPath, [(await import('../helpers/nspawn.js')).NSPAWN_TS, '-q', '-D', dir, '-b'], { timeoutMs: 20_000 });
      expect(r.code).toBe(1);
      expect(r.stderr).toBe(`nspawn-ts: Failed to find an init in ${dir}: tried /usr/lib/systemd/systemd, /lib/systemd/systemd, /sbin/init\n`);
      expect(machineRecords()).toEqual([]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
