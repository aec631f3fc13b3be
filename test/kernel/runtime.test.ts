// bin/nspawn-ts end to end on the busybox root: namespaces, the file system a container sees,
// what it may not do, options, exit codes, and that nothing is left behind.
import { mkdtempSync, readFileSync, readlinkSync, rmSync, statSync, writeFileSync, existsSync, mkdirSync } from 'node:fs';
import { describe, expect, beforeAll } from 'vitest';
import { ktest } from '../helpers/kernel.js';
import { busyboxRoot, debianRoot } from '../helpers/rootfs.js';
import { ephemeralLayers, exited, leftoverCgroups, machineLeader, machineRecords, nspawn, startNspawn } from '../helpers/nspawn.js';
import { waitFor } from '../helpers/exec.js';
import { CAPS, NSPAWN_RETAINED_CAPS, capMask, readOwnBoundingSet } from '../../src/runtime/caps.js';

/** machine names carry this run's ID: cgroups are host-wide, and other test runs may use the same names */
const RUN = process.pid.toString(36);

let root: string;
beforeAll(async () => {
  root = await busyboxRoot();
}, 120_000);

const NAME_PREFIX = `rt-${process.pid.toString(36)}-`;
let counter = 0;

/** Runs a shell script in a container of the busybox root; -q and a machine name of this run. */
function sh(script: string, opts: string[] = [], env: NodeJS.ProcessEnv = {}) {
  return nspawn(['-q', '-D', root, '-M', `${NAME_PREFIX}${++counter}`, ...opts, '/bin/sh', '-c', script], { env });
}

/** No machine record, and no cgroup of a machine of this test file (other runs on the host have their own). */
function nothingLeft(): void {
  expect(machineRecords()).toEqual([]);
  expect(leftoverCgroups().filter((d) => d.includes(`-${RUN}`) || d.includes(NAME_PREFIX))).toEqual([]);
}

describe('namespaces', () => {
  ktest('PID 1 is the command, in its own PID, mount, UTS and IPC namespaces; hostname = machine name', async () => {
    const r = await nspawn(['-q', '-D', root, '-M', `nsprobe-${RUN}`, '/bin/sh', '-c',
      'echo $$; hostname; for n in mnt pid uts ipc net cgroup; do readlink /proc/self/ns/$n; done; ps -o pid,comm | wc -l']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const [pid, host, mnt, pidns, uts, ipc, net, cgroup, procs] = r.stdout.trim().split('\n');
    expect(pid).toBe('1');
    expect(host).toBe(`nsprobe-${RUN}`);
    expect(mnt).not.toBe(readlinkSync('/proc/self/ns/mnt'));
    expect(pidns).not.toBe(readlinkSync('/proc/self/ns/pid'));
    expect(uts).not.toBe(readlinkSync('/proc/self/ns/uts'));
    expect(ipc).not.toBe(readlinkSync('/proc/self/ns/ipc'));
    expect(cgroup).not.toBe(readlinkSync('/proc/self/ns/cgroup'));
    // the host network (this test run's namespace) without --private-network
    expect(net).toBe(readlinkSync('/proc/self/ns/net'));
    // ps sees only the container: header, sh, ps, wc
    expect(Number(procs)).toBeLessThanOrEqual(4);
    nothingLeft();
  });

  ktest('--hostname= overrides the machine name as hostname', async () => {
    const r = await sh('hostname', ['--hostname=other-name']);
    expect(r.stdout.trim()).toBe('other-name');
  });

  ktest('a private network has only lo, and it is up', async () => {
    const r = await sh('ls /sys/class/net; ip -o link show lo', ['--private-network']);
    expect(r.code).toBe(0);
    expect(r.stdout.split('\n')[0]).toBe('lo');
    expect(r.stdout).toMatch(/state UNKNOWN|LOWER_UP|,UP/);
    const net = await sh('readlink /proc/self/ns/net', ['--private-network']);
    expect(net.stdout.trim()).not.toBe(readlinkSync('/proc/self/ns/net'));
  });

  ktest('--network-namespace-path= joins that network namespace instead of making one', async ({ netns }) => {
    const r = await sh('readlink /proc/self/ns/net; ls /sys/class/net', [`--network-namespace-path=${netns.path}`]);
    expect(r.code).toBe(0);
    const [ns, ...links] = r.stdout.trim().split('\n');
    expect(ns).toBe(`net:[${statSync(netns.path).ino}]`);
    expect(links).toEqual(['lo']);
    const bad = await sh('true', ['--network-namespace-path=/etc/hostname']);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/is not a namespace file/);
    nothingLeft();
  });

  ktest('mounts made inside stay inside', async () => {
    const r = await sh('mount -t tmpfs none /mnt && echo inside > /mnt/f && cat /mnt/f');
    expect(r.stdout.trim()).toBe('inside');
    expect(existsSync(`${root}/mnt/f`)).toBe(false);
    expect(readFileSync('/proc/self/mountinfo', 'utf8')).not.toContain(`${root}/mnt`);
  });
});

describe('kernel interfaces', () => {
  ktest('/proc/sys, /proc/sysrq-trigger and /sys refuse writes; /proc/kallsyms is empty', async () => {
    const r = await sh([
      'echo x > /proc/sys/kernel/hostname && echo wrote-proc-sys',
      'echo h > /proc/sysrq-trigger && echo wrote-sysrq',
      'echo x > /sys/kernel/uevent_helper && echo wrote-sys',
      'touch /sys/x && echo wrote-sys-dir',
      'echo "kallsyms=$(wc -c < /proc/kallsyms)"',
      'grep -E " /(proc/sys|sys) " /proc/self/mountinfo',
    ].join('; '));
    expect(r.stdout).not.toMatch(/wrote-/);
    expect(r.stderr).toMatch(/Read-only file system/);
    expect(r.stdout).toContain('kallsyms=0');
    for (const line of r.stdout.split('\n').filter((l) => / \/(proc\/sys|sys) /.test(l))) expect(line).toMatch(/ ro,/);
  });

  ktest('/dev has the standard pseudo devices only, and no other device node can be made', async () => {
    const r = await sh('ls /dev; echo ---; echo hi > /dev/null && head -c 4 /dev/zero | wc -c; mknod /tmp/sda b 8 0 && echo made-block; mknod /tmp/mem c 1 1 && echo made-mem; ls /dev/pts; readlink /dev/ptmx');
    const [listing, rest] = r.stdout.split('---\n');
    expect((listing ?? '').trim().split('\n').sort()).toEqual(
      ['char', 'fd', 'full', 'mqueue', 'net', 'null', 'ptmx', 'pts', 'random', 'shm', 'stderr', 'stdin', 'stdout', 'tty', 'urandom', 'zero'].sort());
    expect(rest).toContain('4');
    expect(rest).not.toContain('made-');
    expect(rest).toContain('ptmx');
    expect(r.stderr).toMatch(/Operation not permitted/);
  });

  ktest('capabilities are bounded as systemd-nspawn bounds them; CAP_NET_ADMIN only with a private network', async () => {
    const hostBound = readOwnBoundingSet(readFileSync('/proc/self/status', 'utf8')) as bigint;
    const expected = capMask(NSPAWN_RETAINED_CAPS) & hostBound;
    const r = await sh('grep -E "^Cap(Bnd|Eff)" /proc/1/status');
    const bnd = BigInt('0x' + (/CapBnd:\s*(\w+)/.exec(r.stdout)?.[1] ?? '0'));
    expect(bnd).toBe(expected);
    expect(bnd & (1n << BigInt(CAPS.CAP_NET_ADMIN))).toBe(0n);
    expect(bnd & (1n << BigInt(CAPS.CAP_SYS_MODULE))).toBe(0n);
    const p = await sh('grep ^CapBnd /proc/1/status', ['--private-network']);
    const pb = BigInt('0x' + (/CapBnd:\s*(\w+)/.exec(p.stdout)?.[1] ?? '0'));
    expect(pb).toBe(expected | (1n << BigInt(CAPS.CAP_NET_ADMIN)));
  });

  ktest('host-global system calls are refused (swapon, kexec, keyrings) while the rest works', async () => {
    const r = await sh('dd if=/dev/zero of=/tmp/swap bs=1k count=64 2>/dev/null; mkswap /tmp/swap >/dev/null; swapon /tmp/swap; echo rc=$?');
    expect(r.stderr).toMatch(/swapon.*Operation not permitted/);
    expect(r.stdout).toContain('rc=1');
  });

  ktest('the host cannot be powered off or rebooted: poweroff -f ends the container only, reboot -f restarts it', async () => {
    const before = readFileSync('/proc/sys/kernel/random/boot_id', 'utf8');
    // status lines need a console mode other than pipe (systemd's default without a terminal: read-only)
    const r = await nspawn(['--console=read-only', '-D', root, '-M', `${NAME_PREFIX}off`, '/bin/sh', '-c', 'poweroff -f; sleep 5; echo survived']);
    expect(r.stdout).not.toContain('survived');
    expect(r.code).toBe(0);
    expect(r.stderr).toContain('has been shut down.');
    const dir = mkdtempSync('/var/tmp/nspawn-ts-reboot-');
    try {
      const b = await nspawn(['--console=read-only', '-D', root, '-M', `${NAME_PREFIX}reboot`, `--bind=${dir}:/srv/m`, '/bin/sh', '-c',
        'if [ -e /srv/m/once ]; then echo second boot; exit 4; fi; touch /srv/m/once; reboot -f; sleep 5']);
      expect(b.stdout).toBe('second boot\r\n'); // through the pty
      expect(b.stderr).toContain('is being rebooted.');
      expect(b.code).toBe(4);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    expect(readFileSync('/proc/sys/kernel/random/boot_id', 'utf8')).toBe(before);
    nothingLeft();
  });
});

describe('file system', () => {
  ktest('/run, /tmp and /run/host are as systemd-nspawn makes them', async () => {
    const r = await sh('grep -E " /(run|tmp|dev|dev/shm|run/host) " /proc/self/mountinfo; cat /run/host/container-manager /run/host/container-uuid; echo "uuid=$container_uuid container=$container"; ls /run/host; touch /run/host/x && echo wrote-host');
    expect(r.stdout).toMatch(/ \/run rw,nosuid,nodev .* tmpfs /);
    expect(r.stdout).toMatch(/ \/tmp rw,nosuid,nodev .* tmpfs /);
    expect(r.stdout).toMatch(/ \/run\/host ro,/);
    const lines = r.stdout.split('\n');
    const uuid = lines.find((l) => /^[0-9a-f-]{36}$/.test(l));
    expect(uuid).toBeDefined();
    expect(r.stdout).toContain(`uuid=${uuid} container=systemd-nspawn`);
    expect(r.stdout).toContain('systemd-nspawn');
    expect(r.stdout).toContain('os-release');
    expect(r.stdout).not.toContain('wrote-host');
  });

  ktest('--bind works both ways, --bind-ro refuses writes, SRC:DST and files work', async () => {
    const dir = mkdtempSync('/var/tmp/nspawn-ts-bind-');
    try {
      writeFileSync(`${dir}/from-host`, 'hello from host\n');
      writeFileSync(`${dir}/file`, 'a file\n');
      mkdirSync(`${dir}/ro`);
      const r = await sh('cat /srv/data/from-host; echo from-container > /srv/data/from-container; cat /etc/bound-file; echo x > /srv/ro/f && echo wrote-ro; ls /srv',
        [`--bind=${dir}:/srv/data`, `--bind=${dir}/file:/etc/bound-file`, `--bind-ro=${dir}/ro:/srv/ro`]);
      expect(r.stdout).toContain('hello from host');
      expect(r.stdout).toContain('a file');
      expect(r.stdout).not.toContain('wrote-ro');
      expect(r.stderr).toMatch(/Read-only file system/);
      expect(readFileSync(`${dir}/from-container`, 'utf8')).toBe('from-container\n');
      // the mount points made in the root stay, like systemd-nspawn's; nothing else changed there
      expect(existsSync(`${root}/srv/data/from-host`)).toBe(false);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  ktest('--tmpfs mounts an empty, writable tmpfs with the given options', async () => {
    const r = await sh('ls -A /var/tmp | wc -l; touch /var/tmp/x && echo ok; grep " /var/tmp " /proc/self/mountinfo', ['--tmpfs=/var/tmp:mode=0700,size=1m']);
    expect(r.stdout.split('\n')[0]).toBe('0');
    expect(r.stdout).toContain('ok');
    expect(r.stdout).toMatch(/tmpfs tmpfs rw.*size=1024k.*mode=700/);
    expect(existsSync(`${root}/var/tmp/x`)).toBe(false);
  });

  ktest('-x/--ephemeral: changes vanish with the container, and its overlay layer with them', async () => {
    const r = await sh('echo changed > /etc/ephemeral-test; rm /etc/hostname; cat /etc/ephemeral-test; grep " / " /proc/self/mountinfo', ['-x']);
    expect(r.stdout).toContain('changed');
    expect(r.stdout).toMatch(/ \/ .* overlay /);
    expect(existsSync(`${root}/etc/ephemeral-test`)).toBe(false);
    expect(existsSync(`${root}/etc/hostname`)).toBe(true);
    expect(ephemeralLayers()).toEqual([]);
    nothingLeft();
  });

  ktest('--template= fills a missing directory from a template once', async () => {
    const parent = mkdtempSync('/var/tmp/nspawn-ts-tpl-');
    try {
      const dir = `${parent}/new`;
      const r = await nspawn(['-q', '-D', dir, '-M', `tpl-${RUN}`, `--template=${root}`, '/bin/sh', '-c', 'echo mine > /root/marker; cat /etc/os-release | head -1']);
      expect(r.code).toBe(0);
      expect(r.stdout).toContain('BusyBox');
      expect(readFileSync(`${dir}/root/marker`, 'utf8')).toBe('mine\n');
      expect(existsSync(`${root}/root/marker`)).toBe(false);
      // a second start keeps the directory as it is
      const again = await nspawn(['-q', '-D', dir, '-M', `tpl-${RUN}`, `--template=${root}`, '/bin/cat', '/root/marker']);
      expect(again.stdout).toBe('mine\n');
    } finally {
      rmSync(parent, { recursive: true, force: true });
    }
  });
});

describe('execution', () => {
  ktest('the exit code is the launcher\'s; a signal that ends PID 1 gives 128+N', async () => {
    expect((await sh('exit 42')).code).toBe(42);
    expect((await sh('exit 0')).code).toBe(0);
    // PID 1 cannot kill itself; from the host, SIGKILL ends it
    const name = `${NAME_PREFIX}killed`;
    const c = startNspawn(['-q', '-D', root, '-M', name, '/bin/sleep', '30']);
    const leader = await waitFor(() => machineLeader(name), 'the container to start');
    await waitFor(() => readFileSync(`/proc/${leader}/comm`, 'utf8').trim() === 'sleep', 'the payload to run');
    process.kill(leader, 'SIGKILL');
    expect(await exited(c)).toEqual({ code: 128 + 9, signal: null });
  });

  ktest('standard input and output pass through without a terminal', async () => {
    const r = await nspawn(['-q', '-D', root, '/bin/sh', '-c', 'tr a-z A-Z; echo err >&2'], { input: 'piped input\n' });
    expect(r.stdout).toBe('PIPED INPUT\n');
    expect(r.stderr).toBe('err\n');
  });

  ktest('-u, --chdir and -E set the user, directory and environment of the command', async () => {
    const r = await sh('id; pwd; echo "$FOO|$HOME|$USER|$PATH|$container"', ['-u', 'test', '--chdir=/tmp', '-E', 'FOO=bar baz']);
    expect(r.stdout).toMatch(/uid=1000\(test\) gid=1000\(test\) groups=(100\(users\),1000\(test\)|1000\(test\),100\(users\))\n/);
    expect(r.stdout).toContain('/tmp\n');
    expect(r.stdout).toContain('bar baz|/home/test|test|/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin|systemd-nspawn');
    const caps = await sh('grep CapEff /proc/self/status', ['-u', 'test']);
    expect(caps.stdout).toMatch(/CapEff:\s*0+\n/);
    // a command starts in / (systemd-nspawn's inner_child() enters the home only for the shell)
    const byUid = await sh('id -u; pwd', ['-u', '1000']);
    expect(byUid.stdout).toBe('1000\n/\n');
  });

  ktest('-u nobody, whose home /nonexistent is missing, starts in / and creates nothing; no command: a login shell in the home', async () => {
    const r = await sh('id -u; pwd; echo $HOME', ['-u', 'nobody']);
    expect(r).toMatchObject({ code: 0, stdout: '65534\n/\n/nonexistent\n' });
    expect(existsSync(`${root}/nonexistent`)).toBe(false);
    // no command: busybox has no /bin/bash, so /bin/sh as a login shell ("-sh"), in the home
    const shell = (user: string[]) => nspawn(['-q', '-D', root, '-M', `${NAME_PREFIX}${++counter}`, ...user], { input: 'echo "$0"; pwd; exit 4\n' });
    expect(await shell(['-u', 'test'])).toMatchObject({ code: 4, stdout: '-sh\n/home/test\n' });
    expect(await shell(['-u', 'nobody'])).toMatchObject({ code: 4, stdout: '-sh\n/\n' });
    expect(await shell([])).toMatchObject({ code: 4, stdout: '-sh\n/root\n' });
    // Debian has bash: "-bash", also for a user whose passwd shell is nologin (as systemd-nspawn 252 does)
    const deb = await debianRoot();
    const dsh = (user: string[]) => nspawn(['-q', '-x', '-D', deb, '-M', `${NAME_PREFIX}${++counter}`, ...user], { input: 'echo "$0"; pwd; exit 4\n' });
    expect(await dsh([])).toMatchObject({ code: 4, stdout: '-bash\n/root\n' });
    expect(await dsh(['-u', 'daemon'])).toMatchObject({ code: 4, stdout: '-bash\n/usr/sbin\n' });
  });

  ktest('a command is looked up in PATH inside the container', async () => {
    const r = await nspawn(['-q', '-D', root, 'hostname']);
    expect(r.code).toBe(0);
  });

  ktest('--as-pid2: a stub init is PID 1, the command PID 2; orphans are reaped', async () => {
    const r = await sh('echo $$; cat /proc/1/comm; (sleep 0.2 &); sleep 0.6; ps -o stat,comm | grep -c "^Z"; '
      + "tr '\\0' '\\n' < /proc/1/cmdline | grep -v '^$' | tr '\\n' ' '; echo; tr -d '\\0' < /proc/1/environ | wc -c; exit 3", ['--as-pid2']);
    const [pid, comm, zombies, cmdline, environ] = r.stdout.trim().split('\n');
    expect(pid).toBe('2');
    // as systemd-nspawn's stub: no launcher command line (host paths) or environment shows
    expect(comm).toBe('(sd-stubinit)');
    expect(cmdline).toBe('(sd-stubinit) ');
    expect(environ?.trim()).toBe('0');
    expect(zombies).toBe('0');
    expect(r.code).toBe(3);
  });

  ktest('--register=no keeps no record while it runs; --keep-unit and --link-journal= are accepted', async () => {
    const name = `noreg-${RUN}`;
    const c = startNspawn(['-q', '-D', root, '-M', name, '--register=no', '--keep-unit', '--link-journal=try-guest', '/bin/sh', '-c', 'echo up; sleep 30']);
    try {
      await waitFor(() => c.output().includes('up'), 'the container to run');
      expect(machineRecords()).toEqual([]);
    } finally {
      c.kill('SIGTERM');
      await exited(c);
    }
    nothingLeft();
  });

  ktest('--bind=…:norbind leaves submounts of the source out; rbind (the default) takes them along', async () => {
    // /sys/fs/cgroup has a mount per hierarchy below it
    const n = await sh('grep -c " /srv/x" /proc/self/mountinfo', ['--bind=/sys/fs/cgroup:/srv/x:norbind']);
    const rb = await sh('grep -c " /srv/x" /proc/self/mountinfo', ['--bind=/sys/fs/cgroup:/srv/x']);
    expect(Number(n.stdout)).toBe(1);
    expect(Number(rb.stdout)).toBeGreaterThan(1);
  });

  ktest('the machine is recorded while it runs, with its leader and namespaces', async () => {
    const name = `rec-${RUN}`;
    const c = startNspawn(['-q', '-D', root, '-M', name, '/bin/sleep', '30']);
    try {
      const leader = await waitFor(() => machineLeader(name), 'the record to name the leader');
      await waitFor(() => readFileSync(`/proc/${leader}/comm`, 'utf8').trim() === 'sleep', 'the payload');
      const rec = JSON.parse(readFileSync(`/run/nspawn-ts/machines/${name}.json`, 'utf8')) as Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any -- a record read back to probe fields of any shape
      expect(rec).toMatchObject({ name, class: 'container', rootDirectory: root, launcher: { pid: c.pid } });
      expect(rec.namespaces.pid.path).toBe(`/proc/${leader}/ns/pid`);
      expect(rec.namespaces.pid.id).toBe(readlinkSync(`/proc/${leader}/ns/pid`));
      expect(rec.namespaces.pid.id).not.toBe(readlinkSync('/proc/self/ns/pid'));
      expect(rec.spec).toMatchObject({ mode: 'command', command: ['/bin/sleep', '30'] });
      // its cgroups, for machinectl-ts status/set-property
      expect(rec.cgroup.name).toBe(name);
      for (const d of rec.cgroup.dirs) expect(readFileSync(`${d.path}/cgroup.procs`, 'utf8').split('\n')).toContain(String(leader));
      expect(typeof rec.startedAt).toBe('string');
    } finally {
      c.kill('SIGTERM');
      await exited(c);
    }
    nothingLeft();
  });

  ktest('status lines unless -q', async () => {
    const r = await nspawn(['--console=read-only', '-D', root, '-M', `chatty-${RUN}`, '/bin/true']);
    expect(r.stderr).toContain(`Spawning container chatty-${RUN} on `);
    expect(r.stderr).toContain(`Container chatty-${RUN} exited successfully.`);
    const f = await nspawn(['--console=read-only', '-D', root, '-M', `chatty-${RUN}`, '/bin/sh', '-c', 'exit 3']);
    expect(f.stderr).toContain(`Container chatty-${RUN} failed with error code 3.`);
  });
});

describe('bad input fails cleanly with nothing created', () => {
  ktest('a missing program', async () => {
    const r = await nspawn(['-q', '-D', root, '/nonexistent/program']);
    expect(r.code).toBe(127);
    expect(r.stderr).toBe('nspawn-ts: failed to execute /nonexistent/program: No such file or directory (ENOENT)\n');
    nothingLeft();
  });

  ktest('a missing directory, a file as directory, a root without /usr', async () => {
    const r = await nspawn(['-q', '-D', '/nonexistent/root', '/bin/true']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/nonexistent\/root: .*no such file or directory/i);
    const f = await nspawn(['-q', '-D', '/etc/hostname', '/bin/true']);
    expect(f.code).toBe(1);
    expect(f.stderr).toMatch(/is not a directory/);
    const empty = mkdtempSync('/var/tmp/nspawn-ts-empty-');
    try {
      const e = await nspawn(['-q', '-D', empty, '/bin/true']);
      expect(e.stderr).toMatch(/doesn't look like it has an OS tree/);
      const b = await nspawn(['-q', '-D', empty, '-b']);
      expect(b.stderr).toMatch(/os-release file is missing/);
    } finally {
      rmSync(empty, { recursive: true });
    }
    nothingLeft();
  });

  ktest('-D / (or a path to it) is refused without -x, saying why; with -x the host\'s root runs as an overlay', async () => {
    for (const dir of ['/', '/usr/..']) {
      const r = await nspawn(['-q', '-D', dir, '/bin/true']);
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(/^nspawn-ts: Spawning container on root directory is not supported: the host's root \(\/\) can be a container's root only with --ephemeral \(-x\)/);
      expect(r.stderr).not.toMatch(/sysfs|EBUSY/);
    }
    const x = await nspawn(['-q', '-D', '/', '-x', '-M', `hostroot-${RUN}`, '/bin/sh', '-c', 'grep " / / " /proc/self/mountinfo; test -d /sys/class && echo sys']);
    expect(x.code).toBe(0);
    expect(x.stdout).toMatch(/ overlay /);
    expect(x.stdout).toContain('sys\n');
    expect(ephemeralLayers()).toEqual([]);
    nothingLeft();
  });

  ktest('an unknown user, a missing bind source, a bad option', async () => {
    const u = await sh('true', ['-u', 'nosuchuser']);
    expect(u.code).toBe(1);
    expect(u.stderr).toMatch(/user "nosuchuser" does not exist in the container/);
    const b = await sh('true', ['--bind=/nonexistent/src:/mnt']);
    expect(b.code).toBe(1);
    expect(b.stderr).toMatch(/Failed to stat \/nonexistent\/src/);
    const o = await sh('true', ['--no-such-option']);
    expect(o.code).toBe(1);
    nothingLeft();
  });

  ktest('a machine name that is already running', async () => {
    const first = nspawn(['-q', '-D', root, '-M', `twice-${RUN}`, '/bin/sleep', '2']);
    await new Promise((r) => setTimeout(r, 700));
    const second = await nspawn(['-q', '-D', root, '-M', `twice-${RUN}`, '/bin/true']);
    expect(second.code).toBe(1);
    expect(second.stderr).toContain(`Machine 'twice-${RUN}' already exists`);
    expect((await first).code).toBe(0);
    nothingLeft();
  });

  ktest('a failing mount step reports the step and errno, and cleans up', async () => {
    // a bind onto a path below a file cannot be made
    const r = await sh('true', ['--bind=/etc/hostname:/etc/hostname/sub']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^nspawn-ts: failed to .*\/etc\/hostname\/sub: Not a directory \(ENOTDIR\)\n$/);
    nothingLeft();
  });
});
