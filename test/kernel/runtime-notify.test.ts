// --notify-ready= end to end: the container's /run/host/notify ($NOTIFY_SOCKET inside), and what
// the launcher reports to its own $NOTIFY_SOCKET — a datagram socket this test listens on, as a
// service manager would. The container notifies with a static sd-notify helper (busybox has no
// systemd-notify), exec'd by its PID 1 so that the message comes from PID 1 as systemd requires.
import { existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect } from 'vitest';
import { ktest } from '../helpers/kernel.js';
import { busyboxRoot, copyRoot } from '../helpers/rootfs.js';
import { exited, machineLeader, machineRecords, nspawn, startNspawn } from '../helpers/nspawn.js';
import { waitFor } from '../helpers/exec.js';
import { staticHelper } from '../helpers/traffic.js';
import { POLL_READABLE, sys, type FdWatcher } from '../../src/native.js';
import { sockaddrUn } from '../../src/net/netd/notify.js';

const RUN = process.pid.toString(36);
const DIR = `/tmp/nspawn-ts-notify-${RUN}`;
let root: string;
let sdNotify: string;
beforeAll(async () => {
  root = await busyboxRoot();
  sdNotify = await staticHelper('sd-notify');
  mkdirSync(DIR, { recursive: true });
}, 120_000);
afterAll(() => rmSync(DIR, { recursive: true, force: true }));

/** A service manager's end: every datagram sent to `path`. */
class Manager {
  readonly messages: string[] = [];
  private readonly watcher: FdWatcher;

  private constructor(readonly path: string, private readonly fd: number) {
    const buf = new Uint8Array(4096);
    this.watcher = new (sys().FdWatcher)(fd, POLL_READABLE, () => {
      for (let n = sys().recv(fd, buf); n >= 0; n = sys().recv(fd, buf)) this.messages.push(Buffer.from(buf.subarray(0, n)).toString());
    });
  }

  static listen(name: string): Manager {
    const path = `${DIR}/${name}`;
    rmSync(path, { force: true });
    const fd = sys().socket(1 /* AF_UNIX */, 2 /* SOCK_DGRAM */, 0);
    sys().bind(fd, sockaddrUn(path));
    return new Manager(path, fd);
  }

  /** Whether some message had this line. */
  saw(line: string): boolean {
    return this.messages.some((m) => m.split('\n').includes(line));
  }

  close(): void {
    this.watcher.stop();
    sys().close(this.fd);
    rmSync(this.path, { force: true });
  }
}

/** A shell loop that waits for FILE in the container's /out. */
const until = (file: string): string => `while [ ! -e /out/${file} ]; do sleep 0.05; done`;

describe('--notify-ready=', () => {
  ktest('no (the default): READY=1 as soon as the payload runs; the container sees NOTIFY_SOCKET=/run/host/notify', async () => {
    const mgr = Manager.listen('default');
    const out = `${DIR}/default.d`;
    mkdirSync(out, { recursive: true });
    const name = `ntf-${RUN}-1`;
    const c = startNspawn(['-q', '-D', root, '-M', name, `--bind=${out}:/out`, '/bin/sh', '-c',
      `echo "socket=$NOTIFY_SOCKET"; test -S /run/host/notify && echo is-a-socket; ${until('go')}`], { NOTIFY_SOCKET: mgr.path });
    try {
      await waitFor(() => mgr.saw('READY=1'), 'READY=1 from the launcher');
      const leader = await waitFor(() => machineLeader(name), 'the leader');
      expect(mgr.saw('STATUS=Container started.')).toBe(true);
      expect(mgr.saw(`X_NSPAWN_LEADER_PID=${leader}`)).toBe(true);
      await waitFor(() => c.output().includes('is-a-socket'), 'the payload to look');
      expect(c.output()).toContain('socket=/run/host/notify\n');
      writeFileSync(`${out}/go`, '');
      expect(await exited(c)).toEqual({ code: 0, signal: null });
    } finally {
      c.kill('SIGKILL');
      mgr.close();
    }
  });

  ktest('yes: READY=1 only once the container\'s PID 1 sent it; a message of another process is ignored; STATUS= passed on', async () => {
    const mgr = Manager.listen('yes');
    const out = `${DIR}/yes.d`;
    mkdirSync(out, { recursive: true });
    const c = startNspawn(['-q', '-D', root, '-M', `ntf-${RUN}-2`, '--notify-ready=yes', `--bind=${out}:/out`,
      `--bind-ro=${sdNotify}:/usr/bin/sd-notify`, '/bin/sh', '-c',
      // a child of PID 1 says READY=1 first: not PID 1, so not the container's readiness
      `sd-notify READY=1 && touch /out/child-sent; ${until('go')}; exec sd-notify "STATUS=serving\nREADY=1" /bin/sh -c '${until('stop')}'`],
    { NOTIFY_SOCKET: mgr.path });
    try {
      await waitFor(() => mgr.saw('STATUS=Container started.'), 'the payload to start');
      await waitFor(() => existsSync(`${out}/child-sent`), 'the child\'s READY=1');
      await new Promise((r) => setTimeout(r, 300)); // time for the launcher to (wrongly) pass it on
      expect(mgr.saw('READY=1')).toBe(false);
      writeFileSync(`${out}/go`, '');
      await waitFor(() => mgr.saw('READY=1'), 'READY=1 after PID 1 sent it');
      expect(mgr.saw('STATUS=Container running: serving')).toBe(true);
      writeFileSync(`${out}/stop`, '');
      expect(await exited(c)).toEqual({ code: 0, signal: null });
    } finally {
      c.kill('SIGKILL');
      mgr.close();
    }
  });

  ktest('yes with -U: the container\'s root (a shifted UID) may write to the socket', async () => {
    const copy = await copyRoot(root);
    const mgr = Manager.listen('userns');
    try {
      const r = await nspawn(['-q', '-U', '-D', copy.dir, '-M', `ntf-${RUN}-3`, '--notify-ready=yes',
        `--bind-ro=${sdNotify}:/usr/bin/sd-notify`, '/bin/sh', '-c', 'ls -ln /run/host/notify; exec sd-notify READY=1 sleep 0.5'], {
        env: { NOTIFY_SOCKET: mgr.path },
      });
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
      // owned by the container's root, writable by it only
      expect(r.stdout).toMatch(/^srw------- +1 0 +0 /);
      await waitFor(() => mgr.saw('READY=1'), 'READY=1 from the container');
    } finally {
      mgr.close();
      copy.remove();
    }
  });

  ktest('a bad value: exit 1, option, value and what is allowed named, nothing created', async () => {
    const r = await nspawn(['-D', root, '-M', `ntf-${RUN}-bad`, '--notify-ready=later', '/bin/true']);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe('nspawn-ts: Failed to parse --notify-ready= argument: later\nnspawn-ts: --notify-ready= takes yes/no, true/false, on/off, 1/0\n');
    expect(machineRecords()).toEqual([]);
  });
});

