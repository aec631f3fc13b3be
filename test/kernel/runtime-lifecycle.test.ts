// Stopping and losing containers: SIGTERM/SIGINT to the launcher stop PID 1 gracefully (SIGKILL
// after the timeout), a SIGKILLed launcher takes its container with it, and the next start cleans
// what was left; the console pty and Ctrl-] three times.
import { existsSync, mkdirSync, readFileSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { describe, expect, beforeAll } from 'vitest';
import { ktest } from '../helpers/kernel.js';
import { busyboxRoot } from '../helpers/rootfs.js';
import { ephemeralLayers, exited, leftoverCgroups, machineLeader, machineRecords, nspawn, startNspawn, NSPAWN_TS } from '../helpers/nspawn.js';
import { run, waitFor } from '../helpers/exec.js';
import { tryLock, type FileLock } from '../../src/common/lock.js';

/** machine names carry this run's ID: cgroups are host-wide, and other test runs may use the same names */
const RUN = process.pid.toString(36);

let root: string;
beforeAll(async () => {
  root = await busyboxRoot();
}, 120_000);

function started(name: string, child: ReturnType<typeof startNspawn>): Promise<number> {
  return waitFor(() => {
    if (child.exitCode !== null) throw new Error(`exited early: ${child.output()}`);
    return machineLeader(name);
  }, `container ${name} to start`, 10_000);
}

/** Waits until PID 1 of the container runs its payload (its comm is no longer node's). */
async function payloadRunning(pid: number, comm: string): Promise<void> {
  await waitFor(() => readFileSync(`/proc/${pid}/comm`, 'utf8').trim() === comm, `PID 1 to run ${comm}`);
}

function ours(): string[] {
  return leftoverCgroups().filter((d) => d.endsWith(`-${RUN}`));
}

describe('stopping', () => {
  ktest('SIGTERM to the launcher kills a PID 1 that ignores it at once, as systemd-nspawn does without a kill signal', async () => {
    const name = `lc-kill-${RUN}`;
    const c = startNspawn(['--console=read-only', '-D', root, '-M', name, '/bin/sleep', '60']);
    const leader = await started(name, c);
    await payloadRunning(leader, 'sleep');
    const t0 = Date.now();
    c.kill('SIGTERM');
    expect(await exited(c)).toEqual({ code: 128 + 9, signal: null });
    expect(Date.now() - t0).toBeLessThan(2000);
    expect(c.output()).toContain(`Container ${name} terminated by signal KILL.`);
    expect(c.output()).not.toContain('Trying to halt');
    expect(machineRecords()).toEqual([]);
    expect(ours()).toEqual([]);
  });

  ktest('with --kill-signal=SIGTERM, SIGTERM to the launcher sends SIGTERM to PID 1, which may exit cleanly; its code is the launcher\'s', async () => {
    const c = startNspawn(['-q', '--kill-signal=SIGTERM', '-D', root, '-M', `lc-term-${RUN}`, '/bin/sh', '-c', 'trap "echo got TERM; exit 7" TERM; echo ready; while :; do sleep 0.1; done']);
    await started(`lc-term-${RUN}`, c);
    await waitFor(() => c.output().includes('ready'), 'the trap to be set');
    c.kill('SIGTERM');
    expect(await exited(c)).toEqual({ code: 7, signal: null });
    expect(c.output()).toContain('got TERM');
    expect(machineRecords()).toEqual([]);
    expect(ours()).toEqual([]);
  });

  ktest('SIGINT works the same way; a PID 1 that ignores it is SIGKILLed after the stop timeout', async () => {
    const c = startNspawn(['-q', '--kill-signal=SIGTERM', '-D', root, '-M', `lc-int-${RUN}`, '/bin/sh', '-c', 'trap "" TERM INT; echo ready; while :; do sleep 0.1; done'],
      { NSPAWN_TS_STOP_TIMEOUT_SEC: '1' });
    await started(`lc-int-${RUN}`, c);
    await waitFor(() => c.output().includes('ready'), 'the trap to be set');
    const t0 = Date.now();
    c.kill('SIGINT');
    expect(await exited(c)).toEqual({ code: 128 + 9, signal: null });
    const took = Date.now() - t0;
    expect(took).toBeGreaterThanOrEqual(900);
    expect(took).toBeLessThan(5000);
  });

  ktest('a second SIGTERM kills at once', async () => {
    const c = startNspawn(['--console=read-only', '--kill-signal=SIGTERM', '-D', root, '-M', `lc-twice-${RUN}`, '/bin/sh', '-c', 'trap "" TERM; echo ready; while :; do sleep 0.1; done']);
    await started(`lc-twice-${RUN}`, c);
    await waitFor(() => c.output().includes('ready'), 'the trap to be set');
    c.kill('SIGTERM');
    await waitFor(() => c.output().includes('Trying to halt container. Send SIGTERM again to trigger immediate termination.'), 'the first stop');
    c.kill('SIGTERM');
    expect(await exited(c)).toEqual({ code: 128 + 9, signal: null });
  });

  ktest('--as-pid2: the stub init forwards the stop signal to the command', async () => {
    const c = startNspawn(['-q', '--kill-signal=SIGTERM', '-D', root, '-M', `lc-pid2-${RUN}`, '-a', '/bin/sh', '-c', 'trap "echo pid $$ got TERM; exit 5" TERM; echo ready; while :; do sleep 0.1; done']);
    await started(`lc-pid2-${RUN}`, c);
    await waitFor(() => c.output().includes('ready'), 'the trap to be set');
    c.kill('SIGTERM');
    expect(await exited(c)).toEqual({ code: 5, signal: null });
    expect(c.output()).toContain('pid 2 got TERM');
  });

  ktest('--kill-signal= chooses the signal', async () => {
    const c = startNspawn(['-q', '-D', root, '-M', `lc-usr1-${RUN}`, '--kill-signal=SIGUSR1', '/bin/sh', '-c', 'trap "echo got USR1; exit 3" USR1; echo ready; while :; do sleep 0.1; done']);
    await started(`lc-usr1-${RUN}`, c);
    await waitFor(() => c.output().includes('ready'), 'the trap to be set');
    c.kill('SIGTERM');
    expect(await exited(c)).toEqual({ code: 3, signal: null });
    expect(c.output()).toContain('got USR1');
  });
});

/** Holds the machine registry's lock: the launcher waits for it (on timers) when it starts (the sweep) and in its last clean-up step (the record). */
function holdRegistry(): FileLock {
  const held = tryLock('/run/nspawn-ts/machines/.lock', { mode: 0o600 });
  if (!held) throw new Error('the machine registry is locked by another process');
  return held;
}

const ended = (c: ReturnType<typeof startNspawn>): boolean => c.exitCode !== null || c.signalCode !== null;
const WAITING_FOR_REGISTRY = 'is locked by another process; waiting for it';

describe('a stop request while the launcher starts or cleans up', () => {
  ktest('after PID 1 died (machinectl terminate: SIGKILL to it, then SIGTERM to us), SIGTERM arms no kill timer that outlives the clean-up', async () => {
    const { runContainer } = await import('../../src/runtime/launcher.js');
    const { newSpec } = await import('../unit/runtime/spec-fixture.js');
    const lines: string[] = [];
    const before = new Set(process.listeners('SIGTERM'));
    let handlers = -1;
    const exit = await runContainer(newSpec({
      directory: root, machine: `lc-ended-${RUN}`, killSignal: 'SIGTERM', command: ['/bin/sh', '-c', 'exit 3'],
    }), {
      console: 'pipe', registry: null, stopTimeoutMs: 300, status: (l) => lines.push(l),
      hooks: [{
        afterClone: () => undefined,
        // the clean-up after PID 1's end: the SIGTERM comes now, to the launcher's own handler
        afterExit: () => {
          const ours = process.listeners('SIGTERM').filter((l) => !before.has(l));
          handlers = ours.length;
          for (const l of ours) (l as (s: NodeJS.Signals) => void)('SIGTERM');
        },
      }],
    });
    expect(handlers).toBe(1);
    expect(exit).toEqual({ exitCode: 3, code: 3, signal: null, reboot: false });
    // a kill timer armed now would fire after the stop timeout and keep a launcher alive until then
    await new Promise((r) => setTimeout(r, 600));
    expect(lines.filter((l) => /Trying to halt|did not stop/.test(l))).toEqual([]);
    expect(process.listeners('SIGTERM').filter((l) => !before.has(l))).toEqual([]);
  });

  ktest('a container that reboots is not started again when SIGTERM comes during its clean-up', async () => {
    const { runContainer } = await import('../../src/runtime/launcher.js');
    const { newSpec } = await import('../unit/runtime/spec-fixture.js');
    const name = `lc-reboot-${RUN}`;
    const lines: string[] = [];
    const leaders: number[] = [];
    const before = new Set(process.listeners('SIGTERM'));
    const exit = await runContainer(newSpec({ directory: root, machine: name, mode: 'boot' }), {
      console: 'pipe', registry: null, stopTimeoutMs: 300, status: (l) => lines.push(l),
      hooks: [{
        afterClone: (ctx) => {
          leaders.push(ctx.pid);
          // a second start (the reboot) ends at once; the first boot reboots once rcS ran (busybox init: on SIGTERM)
          if (leaders.length > 1) process.kill(ctx.pid, 'SIGKILL');
          else void waitFor(() => existsSync(`/proc/${ctx.pid}/root/run/booted`), 'rcS to run', 20_000).then(() => process.kill(ctx.pid, 'SIGTERM'));
        },
        afterExit: () => {
          for (const l of process.listeners('SIGTERM')) if (!before.has(l)) (l as (s: NodeJS.Signals) => void)('SIGTERM');
        },
      }],
    });
    expect(leaders).toHaveLength(1);
    expect(exit).toEqual({ exitCode: 0, code: null, signal: 1, reboot: false });
    expect(lines).toContain(`Container ${name} has been shut down.`);
  });

  ktest('SIGTERM during the clean-up does not end the launcher halfway: it removes its record and ends with its container\'s status', async () => {
    const name = `lc-late-${RUN}`;
    const c = startNspawn(['-q', '-D', root, '-M', name, '/bin/sh', '-c', 'echo ready; while :; do sleep 0.1; done'], { NSPAWN_TS_LOG: 'debug' });
    const leader = await started(name, c);
    await waitFor(() => c.output().includes('ready'), 'the payload');
    const held = holdRegistry();
    try {
      process.kill(leader, 'SIGKILL');
      // its last clean-up step, the record's removal, waits for the registry
      await waitFor(() => c.output().includes(WAITING_FOR_REGISTRY), 'the launcher to wait for the registry in its clean-up', 10_000);
      c.kill('SIGTERM');
      await waitFor(() => c.output().includes('SIGTERM: the container has ended; finishing the clean-up') || ended(c), 'the launcher to take the SIGTERM');
    } finally {
      held.release();
    }
    expect(await exited(c), c.output()).toEqual({ code: 137, signal: null });
    expect(machineRecords()).toEqual([]);
    expect(ours()).toEqual([]);
  });

  ktest('SIGTERM while the launcher starts stops it before the container is made, with nothing left', async () => {
    const name = `lc-early-${RUN}`;
    mkdirSync('/run/nspawn-ts/machines', { recursive: true });
    const held = holdRegistry();
    let c: ReturnType<typeof startNspawn>;
    try {
      c = startNspawn(['-q', '-D', root, '-M', name, '/bin/true'], { NSPAWN_TS_LOG: 'debug' });
      // the sweep of dead launchers, before anything is made, waits for the registry
      await waitFor(() => c.output().includes(WAITING_FOR_REGISTRY), 'the launcher to wait for the registry as it starts', 20_000);
      c.kill('SIGTERM');
      await waitFor(() => c.output().includes('SIGTERM: stopping before the container is made') || ended(c), 'the launcher to take the SIGTERM');
    } finally {
      held.release();
    }
    expect(await exited(c), c.output()).toEqual({ code: 1, signal: null });
    expect(c.output()).toContain(`nspawn-ts: container ${name} was stopped while it started`);
    expect(c.output()).not.toContain('cloning the container');
    expect(machineRecords()).toEqual([]);
    expect(ours()).toEqual([]);
  });
});

describe('the launcher\'s end', () => {
  ktest('a handle a library left open (here a timer of a preloaded module) keeps the launcher no more than a moment after its clean-up', async ({ onTestFinished }) => {
    const dir = '/tmp/nspawn-ts-linger';
    mkdirSync(dir, { recursive: true });
    onTestFinished(() => rmSync(dir, { recursive: true, force: true }));
    writeFileSync(`${dir}/linger.cjs`, 'setInterval(() => {}, 60_000);\n');
    const name = `lc-linger-${RUN}`;
    const c = startNspawn(['-q', '-D', root, '-M', name, '/bin/sh', '-c', 'exit 4'], {
      NODE_OPTIONS: `--require ${dir}/linger.cjs`, NSPAWN_TS_LOG: 'debug',
    });
    onTestFinished(async () => {
      if (!ended(c)) c.kill('SIGKILL');
      await exited(c);
    });
    const t0 = Date.now();
    await waitFor(() => ended(c), 'the launcher to end', 20_000);
    expect(c.exitCode, c.output()).toBe(4);
    expect(Date.now() - t0).toBeLessThan(15_000);
    expect(c.output()).toMatch(/still busy 1000 ms after the clean-up \([^)]*Timeout[^)]*\); exiting/);
    expect(machineRecords()).toEqual([]);
  });
});

describe('a launcher killed with SIGKILL', () => {
  ktest('takes its container along, and the next start cleans the record, cgroups and ephemeral layer', async () => {
    const c = startNspawn(['-q', '-D', root, '-M', `lc-lost-${RUN}`, '-x', '/bin/sleep', '60']);
    const leader = await started(`lc-lost-${RUN}`, c);
    await payloadRunning(leader, 'sleep');
    c.kill('SIGKILL');
    await exited(c);
    // PID 1 had PR_SET_PDEATHSIG: it dies with the launcher, and its namespaces with it
    await waitFor(() => !existsSync(`/proc/${leader}`), 'the container to die with its launcher');
    expect(machineRecords()).toEqual([`lc-lost-${RUN}`]);
    expect(ours().length).toBeGreaterThan(0);
    expect(ephemeralLayers().length).toBe(1);
    // the next start of the same name
    const again = await nspawn(['-q', '-D', root, '-M', `lc-lost-${RUN}`, '-x', '/bin/true']);
    expect(again.code).toBe(0);
    expect(machineRecords()).toEqual([]);
    expect(ours()).toEqual([]);
    expect(ephemeralLayers()).toEqual([]);
  });

  ktest('a stub init (--as-pid2) and a user-namespaced container die with it too', async () => {
    for (const [name, opts] of [[`lc-lost2-${RUN}`, ['-a']], [`lc-lost3-${RUN}`, ['--private-users=identity']]] as const) {
      const c = startNspawn(['-q', '-D', root, '-M', name, ...opts, '/bin/sleep', '60']);
      const leader = await started(name, c);
      await waitFor(() => c.output() === '' && existsSync(`/proc/${leader}`), 'running');
      await new Promise((r) => setTimeout(r, 200));
      c.kill('SIGKILL');
      await exited(c);
      await waitFor(() => !existsSync(`/proc/${leader}`), `${name} to die with its launcher`);
      const again = await nspawn(['-q', '-D', root, '-M', name, '/bin/true']);
      expect(again.code).toBe(0);
    }
    expect(machineRecords()).toEqual([]);
  });
});

describe('console', () => {
  ktest('on a terminal the container gets a pty as /dev/console; Ctrl-] three times kills it', async () => {
    // script(1) gives nspawn-ts a terminal; the container's tty must be its own pty
    mkdirSync('/tmp/nspawn-ts-console', { recursive: true });
    const log = '/tmp/nspawn-ts-console/out';
    const cmd = `${process.execPath} ${NSPAWN_TS} -q -D ${root} -M lc-tty /bin/sh -c 'tty; readlink /dev/console; test -t 0 && echo stdin-is-tty; sleep 30'`;
    const input = 'abc\n'; // then three Ctrl-] after the container printed
    const t0 = Date.now();
    const r = await run('sh', ['-c', `(sleep 1.5; printf '${input}'; sleep 0.2; printf '\\035\\035\\035'; sleep 3) | script -qfec "${cmd}" ${log}`], { timeoutMs: 20_000 });
    const took = Date.now() - t0;
    const out = readFileSync(log, 'utf8');
    expect(out).toContain('/dev/pts/0');
    expect(out).toContain('pts/0');
    expect(out).toContain('stdin-is-tty');
    expect(took).toBeLessThan(15_000);
    expect(r.code).not.toBe(0);
    expect(machineRecords()).toEqual([]);
  });
});

describe('hooks', () => {
  ktest('afterClone sees PID 1 waiting in its namespaces; beforeExec runs before the payload; afterExit after', async () => {
    const { runContainer } = await import('../../src/runtime/launcher.js');
    const { newSpec } = await import('../unit/runtime/spec-fixture.js');
    const events: string[] = [];
    const dir = '/tmp/nspawn-ts-hooks';
    mkdirSync(dir, { recursive: true });
    writeFileSync(`${dir}/marker`, '');
    const exit = await runContainer(newSpec({
      directory: root, machine: `lc-hooks-${RUN}`, quiet: true, command: ['/bin/sh', '-c', `echo payload >> /srv/h/events`],
      binds: [{ source: dir, destination: '/srv/h', readOnly: false, options: [] }],
      network: { ...newSpec().network, private: true },
    }), {
      handleSignals: false, console: 'pipe', registry: null,
      hooks: [{
        afterClone: (ctx) => {
          const own = readlinkSync(ctx.netnsPath) !== readlinkSync('/proc/self/ns/net');
          events.push(`afterClone pid=${ctx.pid > 0} netns-own=${own}`);
          writeFileSync(`${dir}/events`, 'afterClone\n');
        },
        beforeExec: () => { events.push('beforeExec'); writeFileSync(`${dir}/events`, 'beforeExec\n', { flag: 'a' }); },
        afterExit: () => { events.push('afterExit'); },
      }],
    });
    expect(exit.exitCode).toBe(0);
    expect(events).toEqual(['afterClone pid=true netns-own=true', 'beforeExec', 'afterExit']);
    expect(readFileSync(`${dir}/events`, 'utf8')).toBe('afterClone\nbeforeExec\npayload\n');
    rmSync(dir, { recursive: true, force: true });
  });
});
