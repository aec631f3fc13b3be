// machinectl-ts start with the real launcher (which adds -U and --network-veth, as
// systemd-nspawn@.service does), then what a user does next on a terminal: the machine's log keeps
// flowing after its console was closed once; shell and login open their pty inside the machine's
// namespaces, its user namespace included; a failed try leaves no zombie in the machine.
import { spawn } from 'node:child_process';
import { chmodSync, mkdirSync, readFileSync, readlinkSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect } from 'vitest';
import { ktest } from '../helpers/kernel.js';
import { run, waitFor } from '../helpers/exec.js';
import { busyboxRoot, copyRoot } from '../helpers/rootfs.js';
import { RUN_ID, machineLeader, machineRecords } from '../helpers/nspawn.js';

const BIN = new URL('../../bin/machinectl-ts', import.meta.url).pathname;

interface World {
  dir: string;
  env: NodeJS.ProcessEnv;
  name: string;
  root: string;
  ctl(argv: string[]): Promise<{ code: number | null; stdout: string; stderr: string }>;
  /** machinectl-ts on a terminal (script(1)); what it showed */
  onTerminal(argv: string[], send?: { after: RegExp; input: string }): Promise<{ code: number | null; text: string }>;
}

const mtest = ktest.extend<{ world: World }>({
  // eslint-disable-next-line no-empty-pattern
  world: async ({}, use) => {
    const base = await busyboxRoot();
    const copy = await copyRoot(base);
    const dir = join(copy.dir, '..', 'world');
    const pool = join(dir, 'machines');
    mkdirSync(pool, { recursive: true });
    const name = `su-${RUN_ID}`;
    const root = join(pool, name);
    await run('mv', [copy.dir, root]);
    const env: NodeJS.ProcessEnv = {
      ...process.env, NSPAWN_TS_MACHINES_DIR: pool, NSPAWN_TS_PROPERTIES_DIR: join(dir, 'properties'),
      NSPAWN_TS_SETTINGS_DIRS: join(dir, 'etc-nspawn'), NSPAWN_TS_LOG_DIR: join(dir, 'log'), TERM: 'xterm',
    };
    let n = 0;
    const world: World = {
      dir, env, name, root,
      ctl: (argv) => run(BIN, argv, { env, timeoutMs: 60_000 }),
      onTerminal: async (argv, send) => {
        const log = join(dir, `term-${++n}`);
        const cmd = [BIN, ...argv].map((a) => `'${a}'`).join(' ');
        const t = spawn('script', ['-qfec', cmd, log], { stdio: ['pipe', 'ignore', 'ignore'], env });
        if (send) {
          void waitFor(() => { try { return send.after.test(readFileSync(log, 'utf8')); } catch { return false; } }, 'the prompt', 15_000, 50)
            .then(() => t.stdin?.write(send.input), () => {});
        }
        const code = await new Promise<number | null>((resolve) => {
          const timer = setTimeout(() => t.kill('SIGKILL'), 20_000);
          t.once('exit', (c) => { clearTimeout(timer); resolve(c); });
        });
        t.stdin?.destroy();
        return { code, text: readFileSync(log, 'utf8') };
      },
    };
    try {
      await use(world);
    } finally {
      await run(BIN, ['terminate', name], { env, timeoutMs: 30_000 });
      await waitFor(() => machineRecords().length === 0, 'the machine to be gone', 15_000);
      rmSync(join(copy.dir, '..'), { recursive: true, force: true });
    }
  },
});

/** The zombies among the children of the machine's PID 1. */
function zombiesUnder(leader: number): string[] {
  const kids = readFileSync(`/proc/${leader}/task/${leader}/children`, 'utf8').trim().split(/\s+/).filter(Boolean);
  return kids.filter((k) => {
    try {
      return / Z /.test(readFileSync(`/proc/${k}/stat`, 'utf8').replace(/\(.*\)/, ''));
    } catch {
      return false;
    }
  });
}

describe('machinectl-ts start, then on a terminal', () => {
  mtest("the start log keeps what PID 1 writes after it closed and reopened its console", async ({ world }) => {
    unlinkSync(join(world.root, 'sbin/init'));
    writeFileSync(join(world.root, 'sbin/init'), '#!/bin/sh\necho one\nexec 0<&- 1>&- 2>&-\nsleep 1\nexec >/dev/console 2>&1\necho two\nexec /bin/sleep 3600\n');
    chmodSync(join(world.root, 'sbin/init'), 0o755);
    const r = await world.ctl(['start', world.name]);
    expect(r.code).toBe(0);
    const log = join(world.dir, 'log', `${world.name}.log`);
    const text = await waitFor(() => { const t = readFileSync(log, 'utf8'); return /^two\r?$/m.test(t) ? t : undefined; }, '"two" in the log', 10_000, 100);
    expect(text).toMatch(/one\r?\ntwo/);
    // written while the machine runs, not at its end
    expect(machineRecords()).toEqual([world.name]);
    // terminate kills at once, also a PID 1 that ignores every signal it gets (this sleep)
    const t0 = Date.now();
    expect(await world.ctl(['terminate', world.name])).toMatchObject({ code: 0, stderr: '' });
    expect(Date.now() - t0).toBeLessThan(3000);
    expect(machineRecords()).toEqual([]);
  });

  mtest('shell and login open a pty inside a machine with a user namespace; a failure leaves no zombie', async ({ world }) => {
    expect((await world.ctl(['start', world.name])).code).toBe(0);
    const leader = await waitFor(() => machineLeader(world.name), 'the leader', 10_000);
    // -U: the machine's root is not the host's
    expect(readFileSync(`/proc/${leader}/uid_map`, 'utf8').trim()).not.toMatch(/^0\s+0\s/);

    const sh = await world.onTerminal(['shell', world.name, '/bin/sh', '-c', 'id -u; tty; readlink /proc/self/ns/user']);
    expect(sh.text).toContain(`Connected to machine ${world.name}.`);
    expect(sh.text).toMatch(/\n0\r+\n\/dev\/pts\/\d+\r+\n/);
    expect(sh.text).toContain(readlinkSync(`/proc/${leader}/ns/user`));
    expect(sh.code).toBe(0);

    // busybox getty's prompt, then Ctrl-] three times leaves
    const login = await world.onTerminal(['login', world.name], { after: / login: $/m, input: '\x1d\x1d\x1d' });
    expect(login.text).toMatch(new RegExp(`${world.name} login: `));
    expect(login.text).toContain(`Connection to machine ${world.name} terminated.`);

    const bad = await world.onTerminal(['shell', world.name, '/nonexistent']);
    expect(bad.text).toContain(`machinectl-ts: Failed to execute /nonexistent in machine '${world.name}': ENOENT`);
    expect(bad.text).not.toMatch(/in machine .* in machine/);
    await new Promise((r) => setTimeout(r, 300));
    expect(zombiesUnder(leader)).toEqual([]);
    // poweroff asks PID 1 and is quick (no zombie for busybox init to wait for)
    const t0 = Date.now();
    expect((await world.ctl(['poweroff', world.name])).code).toBe(0);
    await waitFor(() => machineRecords().length === 0, 'poweroff', 10_000);
    expect(Date.now() - t0).toBeLessThan(8000);
  });
});

