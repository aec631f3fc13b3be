// The console after the container's processes have closed it once (as systemd does while booting,
// when journald takes over): later bytes flow at once, a big write does not block, and a Debian boot
// on a real terminal (script(1) drives one) reaches its login prompt. A pty whose every slave is
// closed answers EIO until one is opened again: that is not the end of the console.
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { beforeAll, describe, expect } from 'vitest';
import { ktest } from '../helpers/kernel.js';
import { busyboxRoot, debianRoot } from '../helpers/rootfs.js';
import { NSPAWN_TS, exited, machineRecords } from '../helpers/nspawn.js';
import { killAndWait, waitFor } from '../helpers/exec.js';

const RUN = process.pid.toString(36);
let bb: string;
let deb: string;
beforeAll(async () => {
  bb = await busyboxRoot();
  deb = await debianRoot();
}, 120_000);

/** nspawn-ts with stdin /dev/null and stdout a pipe (the default console: read-only), output timed. */
function timed(args: string[]) {
  const child = spawn(process.execPath, [NSPAWN_TS, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  const t0 = Date.now();
  let out = '';
  const seen = new Map<string, number>();
  child.stdout.on('data', (d: Buffer) => {
    out += d.toString();
    for (const w of ['one', 'two', 'three', 'done']) if (!seen.has(w) && out.includes(`${w}\r\n`)) seen.set(w, Date.now() - t0);
  });
  let err = '';
  child.stderr.on('data', (d: Buffer) => { err += d.toString(); });
  return { child, seen, out: () => out, err: () => err, t0 };
}

describe('console reopened', () => {
  ktest("bytes written after the console was closed and opened again reach us while the container runs", async ({ onTestFinished }) => {
    const c = timed(['-q', '-x', '-D', bb, '-M', `cre-${RUN}-1`, '/bin/sh', '-c',
      'echo one; exec 0<&- 1>&- 2>&-; sleep 1; exec 1>/dev/console; echo two; sleep 3; echo three']);
    onTestFinished(() => killAndWait(c.child));
    const st = await exited(c.child);
    const end = Date.now() - c.t0;
    expect(st).toEqual({ code: 0, signal: null });
    expect(c.out()).toBe('one\r\ntwo\r\nthree\r\n');
    // "two" came about 1 s in, not at exit ~3 s later
    expect(end - (c.seen.get('two') ?? end)).toBeGreaterThan(2000);
    expect(machineRecords()).toEqual([]);
  });

  ktest('a writer of 300 kB to a reopened console does not block', async ({ onTestFinished }) => {
    const c = timed(['-q', '-x', '-D', bb, '-M', `cre-${RUN}-2`, '/bin/sh', '-c',
      "exec 0<&- 1>&- 2>&-; sleep 0.5; head -c 300000 /dev/zero | tr '\\0' x > /dev/console; echo; echo done > /dev/console"]);
    onTestFinished(() => killAndWait(c.child));
    const st = await Promise.race([exited(c.child), new Promise((r) => setTimeout(() => r('blocked'), 20_000))]);
    expect(st).toEqual({ code: 0, signal: null });
    expect(c.out().split('x').length - 1).toBe(300000);
    expect(c.out()).toMatch(/done\r\n$/);
  });

  ktest('Debian boots to its login prompt on a terminal (as systemd-nspawn -b shows it)', async ({ onTestFinished }) => {
    const dir = mkdtempSync('/tmp/nspawn-ts-console-');
    const log = `${dir}/boot`;
    onTestFinished(() => rmSync(dir, { recursive: true, force: true }));
    const name = `cre-${RUN}-deb`;
    const cmd = `${process.execPath} ${NSPAWN_TS} -x -b -D ${deb} -M ${name}`;
    // script(1): nspawn-ts gets a real terminal (interactive console); our stdin pipe stays open
    const t = spawn('script', ['-qfec', cmd, log], { stdio: ['pipe', 'ignore', 'ignore'], env: { ...process.env, TERM: 'xterm' } });
    onTestFinished(async () => {
      // Ctrl-] three times kills the container; script then ends
      if (t.exitCode === null) t.stdin?.write('\x1d\x1d\x1d');
      await Promise.race([exited(t), new Promise((r) => setTimeout(r, 10_000))]);
      await killAndWait(t);
    });
    const text = await waitFor(() => {
      if (t.exitCode !== null) throw new Error(`script exited: ${readFileSync(log, 'utf8')}`);
      // eslint-disable-next-line no-control-regex -- strips the terminal's colour sequences (ESC [ … m)
      const s = readFileSync(log, 'utf8').replace(/\x1b\[[0-9;]*m/g, '');
      return /\S+ login: $/m.test(s) ? s : undefined;
    }, 'the login prompt', 90_000, 200);
    expect(text).toContain('Started systemd-journald.service - Journal Service.');
    expect(text).toContain('Started console-getty.service - Console Getty.');
    expect(text).toMatch(new RegExp(`^${name} login: `, 'm'));
    // Ctrl-] three times ends it, as systemd-nspawn's forwarder does
    t.stdin?.write('\x1d\x1d\x1d');
    expect((await exited(t)).code).not.toBeNull();
    await waitFor(() => machineRecords().length === 0, 'the machine to be gone', 10_000);
    expect(readFileSync(log, 'utf8')).toContain(`Container ${name} killed (^] pressed three times).`);
  });
});

