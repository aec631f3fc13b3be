// --console= end to end on the busybox root: what the container's stdio and /dev/console are in
// each mode, what reaches the launcher's output, and systemd-nspawn's default without a terminal
// (read-only: a pty whose output is forwarded, our standard input never read).
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { beforeAll, describe, expect } from 'vitest';
import { ktest } from '../helpers/kernel.js';
import { busyboxRoot } from '../helpers/rootfs.js';
import { NSPAWN_TS, machineRecords, nspawn } from '../helpers/nspawn.js';
import { run } from '../helpers/exec.js';

const RUN = process.pid.toString(36);
let root: string;
let counter = 0;
beforeAll(async () => {
  root = await busyboxRoot();
}, 120_000);

/** bin/nspawn-ts exactly as given (the test helper would add --pipe): stdin from `input`, not a terminal. */
function raw(args: string[], input = '') {
  return run(process.execPath, [NSPAWN_TS, '-D', root, '-M', `con-${RUN}-${++counter}`, ...args], { input, timeoutMs: 30_000 });
}

const PROBE = 'tty; readlink /dev/console; if read -t 1 x; then echo "got:$x"; else echo no-input; fi; echo err >&2';

describe('--console=', () => {
  ktest('default without a terminal is read-only: a pty as stdio and /dev/console, output forwarded, input not read', async () => {
    const r = await raw(['/bin/sh', '-c', PROBE], 'typed\n');
    expect(r.code).toBe(0);
    // through the pty's line discipline: CRLF, and the container's stderr on our stdout
    expect(r.stdout).toBe('/dev/pts/0\r\npts/0\r\nno-input\r\nerr\r\n');
    expect(r.stderr).toContain(`Spawning container con-${RUN}-${counter} on ${root}.`);
    expect(r.stderr).not.toContain('Press ^]');
    const explicit = await raw(['-q', '--console=read-only', '/bin/sh', '-c', PROBE], 'typed\n');
    expect(explicit.stdout).toBe(r.stdout);
    expect(explicit.stderr).toBe('');
  });

  ktest('interactive forwards our standard input to the pty, also when it is not a terminal', async () => {
    const r = await raw(['-q', '--console=interactive', '/bin/sh', '-c', 'read x; echo "got:$x"; tty'], 'typed\n');
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('got:typed\r\n');
    expect(r.stdout).toContain('/dev/pts/0\r\n');
  });

  ktest('passive: /dev/console and stdio are a pty, but nothing is forwarded either way', async () => {
    const dir = `/tmp/nspawn-ts-console-${RUN}`;
    mkdirSync(dir, { recursive: true });
    try {
      const r = await raw(['-q', '--console=passive', `--bind=${dir}:/out`, '/bin/sh', '-c',
        `echo to-the-console; tty > /out/seen; readlink /dev/console >> /out/seen; if read -t 1 x; then echo "got:$x"; else echo no-input; fi >> /out/seen`], 'typed\n');
      expect(r.code).toBe(0);
      expect(r.stdout).toBe('');
      expect(r.stderr).toBe('');
      expect(readFileSync(`${dir}/seen`, 'utf8')).toBe('/dev/pts/0\npts/0\nno-input\n');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  ktest('pipe (--pipe, -P): the container\'s stdio are ours, byte for byte; no pty, no /dev/console, no status lines', async () => {
    for (const opt of ['--pipe', '-P', '--console=pipe']) {
      const r = await raw([opt, '/bin/sh', '-c', 'cat; test -t 0 || echo stdin-no-tty; test -e /dev/console || echo no-console; echo err >&2'], 'hi\n');
      expect(r.code).toBe(0);
      expect(r.stdout).toBe('hi\nstdin-no-tty\nno-console\n');
      // without -q too: the container writes to our stderr, status lines stay out of it (as systemd-nspawn)
      expect(r.stderr).toBe('err\n');
    }
    // what scripts do: echo hi | nspawn-ts -D … --pipe cat
    const piped = await run('sh', ['-c', `echo hi | ${process.execPath} ${NSPAWN_TS} -D ${root} -M con-${RUN}-sh --pipe cat`]);
    expect(piped).toMatchObject({ code: 0, stdout: 'hi\n', stderr: '' });
  });

  ktest('autopipe: pipe without a terminal, interactive on one', async () => {
    const r = await raw(['--console=autopipe', '/bin/cat'], 'through\n');
    expect(r).toMatchObject({ code: 0, stdout: 'through\n', stderr: '' });
    // script(1) gives nspawn-ts a terminal: then the container gets a pty of its own
    const dir = mkdtempSync('/tmp/nspawn-ts-console-');
    try {
      const log = `${dir}/autopipe`;
      const cmd = `${process.execPath} ${NSPAWN_TS} -q --console=autopipe -D ${root} -M con-${RUN}-tty /bin/sh -c 'tty; readlink /dev/console'`;
      const t = await run('script', ['-qfec', cmd, log], { timeoutMs: 30_000 });
      expect(t.code).toBe(0);
      const out = readFileSync(log, 'utf8');
      expect(out).toContain('/dev/pts/0');
      expect(out).toContain('pts/0');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  ktest('a bad mode: exit 1, the option, the value and the modes named, nothing created', async () => {
    const r = await nspawn(['-D', root, '-M', `con-${RUN}-bad`, '--console=tty', '/bin/true']);
    expect(r.code).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr).toBe("nspawn-ts: Unknown console mode: tty\nnspawn-ts: --console= takes interactive, read-only, passive, pipe, autopipe\n");
    expect(machineRecords()).toEqual([]);
  });
});
