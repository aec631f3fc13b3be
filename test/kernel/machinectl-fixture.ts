// Busybox machines for machinectl-ts's kernel tests, started without the nspawn-ts launcher: a
// small "launcher" process (node, in its own process) clones a container with the runtime's
// native spawnContainer (new mount, PID, UTS, IPC and network namespaces, the busybox root
// pivoted to, /proc and a devpts of its own), registers it in a temp machine registry, and on
// SIGTERM ends it and unregisters — what a launcher does for machinectl's purposes.
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync, copyFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  CLONE_NEWIPC, CLONE_NEWNET, CLONE_NEWNS, CLONE_NEWPID, CLONE_NEWUSER, CLONE_NEWUTS, MS_BIND, MS_NODEV, MS_NOEXEC, MS_NOSUID, MS_PRIVATE, MS_REC,
  type PlanOp,
} from '../../src/runtime/plan.js';

const nativeModule = new URL('../../dist/native.js', import.meta.url).href;
const registryModule = new URL('../../dist/runtime/registry.js', import.meta.url).href;
const cgroupsModule = new URL('../../dist/runtime/cgroups.js', import.meta.url).href;

/** A busybox root: every applet, /etc/passwd with root (no password) and bob, os-release, inittab. */
export function busyboxRoot(parent: string, name: string, opts: { inittab?: string } = {}): string {
  const root = join(parent, name);
  for (const d of ['bin', 'sbin', 'etc', 'proc', 'dev', 'dev/pts', 'tmp', 'root', 'home/bob', 'usr/lib', 'run']) mkdirSync(join(root, d), { recursive: true });
  copyFileSync('/bin/busybox', join(root, 'bin/busybox'));
  chmodSync(join(root, 'bin/busybox'), 0o755);
  for (const applet of execFileSync('/bin/busybox', ['--list'], { encoding: 'utf8' }).split('\n').filter(Boolean)) {
    if (applet === 'busybox') continue;
    const dir = ['init', 'getty', 'poweroff', 'reboot', 'halt'].includes(applet) ? 'sbin' : 'bin';
    symlinkSync(dir === 'bin' ? 'busybox' : '../bin/busybox', join(root, dir, applet));
  }
  writeFileSync(join(root, 'etc/passwd'), 'root:x:0:0:root:/root:/bin/sh\nbob:x:1000:1000:Bob:/home/bob:/bin/sh\n');
  // root logs in without a password (busybox login accepts an empty shadow field); bob cannot log in
  writeFileSync(join(root, 'etc/shadow'), 'root::19000:0:99999:7:::\nbob:!:19000:0:99999:7:::\n', { mode: 0o600 });
  writeFileSync(join(root, 'etc/group'), 'root:x:0:\nwheel:x:10:bob\nbob:x:1000:\ntty:x:5:\n');
  writeFileSync(join(root, 'usr/lib/os-release'), 'ID=busybox\nVERSION_ID=1.36\nPRETTY_NAME="BusyBox test root"\n');
  symlinkSync('../usr/lib/os-release', join(root, 'etc/os-release'));
  writeFileSync(join(root, 'etc/hostname'), `${name}\n`);
  execFileSync('chown', ['1000:1000', join(root, 'home/bob')]);
  writeFileSync(join(root, 'etc/inittab'), opts.inittab ?? '::sysinit:/bin/true\n::respawn:/bin/sleep 3600\n');
  return root;
}

/** The ops that turn the clone child into a container on `root` and run argv there. */
export function containerOps(root: string, hostname: string, argv: string[], opts: { userns?: boolean } = {}): PlanOp[] {
  // in a user namespace device nodes cannot be made: the host's are bound instead
  const dev = (name: string, minor: number, major: number): PlanOp[] => (opts.userns
    ? [{ op: 'touch', path: `${root}/dev/${name}`, mode: 0o666 }, { op: 'mount', source: `/dev/${name}`, target: `${root}/dev/${name}`, flags: MS_BIND }]
    : [{ op: 'mknod', path: `${root}/dev/${name}`, mode: 0o020666, major, minor }, { op: 'chmod', path: `${root}/dev/${name}`, mode: 0o666 }]);
  return [
    // the launcher writes the ID maps while the child waits here
    // then becomes the container's root (so that what it creates is owned by a mapped ID)
    ...(opts.userns ? [{ op: 'sync' }, { op: 'setgroups', gids: [] }, { op: 'setresgid', gid: 0 }, { op: 'setresuid', uid: 0 }] as PlanOp[] : []),
    { op: 'mount', target: '/', flags: MS_REC | MS_PRIVATE },
    { op: 'mount', source: root, target: root, flags: MS_BIND | MS_REC },
    { op: 'mount', source: 'proc', target: `${root}/proc`, fstype: 'proc', flags: MS_NOSUID | MS_NODEV | MS_NOEXEC },
    { op: 'mount', source: 'tmpfs', target: `${root}/dev`, fstype: 'tmpfs', flags: MS_NOSUID, data: 'mode=755' },
    { op: 'mkdir', path: `${root}/dev/pts`, mode: 0o755 },
    { op: 'mount', source: 'devpts', target: `${root}/dev/pts`, fstype: 'devpts', flags: MS_NOSUID | MS_NOEXEC, data: 'newinstance,ptmxmode=0666,mode=620,gid=5' },
    { op: 'symlink', target: 'pts/ptmx', path: `${root}/dev/ptmx` },
    ...dev('null', 3, 1),
    ...dev('tty', 0, 5),
    { op: 'mount', source: 'tmpfs', target: `${root}/run`, fstype: 'tmpfs', flags: MS_NOSUID | MS_NODEV, data: 'mode=755' },
    { op: 'pivotRoot', path: root },
    { op: 'sethostname', name: hostname },
    { op: 'loopbackUp' },
    { op: 'exec', candidates: [argv[0] as string], argv, envp: ['PATH=/bin:/sbin', 'HOME=/root', 'TERM=dumb'] },
  ];
}

export interface FakeMachine {
  name: string;
  root: string;
  leader: number;
  launcher: ChildProcess;
  /** resolves when the launcher process has exited */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** what the launcher said on stderr (how the container ended: "container ended {…}") */
  log: () => string;
  /** ends the machine (SIGKILL to the launcher, which takes the container with it) */
  stop(): Promise<void>;
}

/**
 * Starts a machine: `argv` is its PID 1 (default busybox init). The launcher process registers it
 * in `registryDir`, ends it on SIGTERM (SIGKILL to the leader) and unregisters when it is gone.
 */
export async function startFakeMachine(opts: {
  name: string; root: string; registryDir: string; argv?: string[]; network?: object; onTerm?: 'kill' | 'ignore' | 'hang';
  /** a user namespace mapping container 0-65535 onto host IDs from this base */
  userns?: number;
  /** a machine cgroup (src/runtime/cgroups.ts) with the leader in it; 'record' also stores it in the registry */
  cgroup?: 'record' | 'derive';
}): Promise<FakeMachine> {
  const argv = opts.argv ?? ['/sbin/init'];
  const plan = {
    cloneFlags: CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWNET | (opts.userns !== undefined ? CLONE_NEWUSER : 0),
    ops: containerOps(opts.root, opts.name, argv, { userns: opts.userns !== undefined }),
  };
  const script = launcherScript('JSON.parse(process.argv[1])');
  const cfg = {
    plan, name: opts.name, root: opts.root, registryDir: opts.registryDir, network: opts.network, onTerm: opts.onTerm ?? 'kill', cgroup: opts.cgroup,
    userns: opts.userns,
  };
  const child = spawn(process.execPath, ['--input-type=module', '-e', script, JSON.stringify(cfg)], { stdio: ['ignore', 'pipe', 'pipe'] });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once('exit', (code, signal) => resolve({ code, signal }));
  });
  let err = '';
  child.stderr?.on('data', (d: Buffer) => { err += d.toString(); });
  const leader = await new Promise<number>((resolve, reject) => {
    let out = '';
    child.stdout?.on('data', (d: Buffer) => {
      out += d.toString();
      const line = out.split('\n')[0];
      if (out.includes('\n') && line) {
        const msg = JSON.parse(line) as { leader?: number; error?: string; op?: number };
        if (msg.leader) resolve(msg.leader);
        else reject(new Error(`fake launcher: op ${msg.op} failed: ${msg.error}`));
      }
    });
    void exited.then((st) => reject(new Error(`fake launcher exited (${st.code ?? st.signal}) before the machine ran: ${err}`)));
  });
  return {
    name: opts.name, root: opts.root, leader, launcher: child, exited, log: () => err,
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) {
        // the orderly way first (the launcher removes the machine's cgroup), then the hard one
        child.kill('SIGTERM');
        const t = setTimeout(() => child.kill('SIGKILL'), 5000);
        await exited;
        clearTimeout(t);
      }
      await exited;
    },
  };
}

/** The stand-in launcher's program; `cfgExpr` is JS that yields {plan, name, root, registryDir, network?, onTerm?, cgroup?}. */
function launcherScript(cfgExpr: string, prelude = ''): string {
  return `${prelude}
    import { writeFileSync } from 'node:fs';
    import { sys, POLL_READABLE } from ${JSON.stringify(nativeModule)};
    import { MachineRegistry } from ${JSON.stringify(registryModule)};
    import { MachineCgroup } from ${JSON.stringify(cgroupsModule)};
    const cfg = ${cfgExpr};
    const s = sys();
    const c = s.spawnContainer(cfg.plan);
    const reg = new MachineRegistry({ dir: cfg.registryDir });
    let registered = false;
    let cg;
    const cw = new s.FdWatcher(c.channel, POLL_READABLE, () => {
      for (;;) {
        const m = s.channelRecv(c.channel);
        if (!m) return;
        if (m.kind === 2) { console.log(JSON.stringify({ error: m.code, op: m.op })); process.exit(1); }
        if (m.kind === 1) {
          const map = '0 ' + cfg.userns + ' 65536\\n';
          writeFileSync('/proc/' + c.pid + '/uid_map', map);
          writeFileSync('/proc/' + c.pid + '/gid_map', map);
          s.channelGo(c.channel);
          continue;
        }
        if (m.kind === 0) {
          cw.stop(); s.close(c.channel);
          const spec = { mode: 'boot', command: [], ephemeral: false, privateUsers: { mode: 'no' }, resolvConf: 'off', properties: [],
            network: { private: true, veth: false, vethExtra: [], macvlan: [], ipvlan: [], interfaces: [], ports: [], portLoopback: false, config: 'auto' } };
          reg.register({ name: cfg.name, rootDirectory: cfg.root, spec, leader: c.pid, ...(cfg.network ? { network: cfg.network } : {}) }).then(async () => {
            registered = true;
            if (cfg.cgroup) {
              cg = MachineCgroup.create(cfg.name, {});
              cg.attach(c.pid);
              if (cfg.cgroup === 'record') await reg.update(cfg.name, { cgroup: cg.toJSON() });
            }
            console.log(JSON.stringify({ leader: c.pid }));
          }).catch((e) => { console.error(String(e)); process.exit(1); });
          return;
        }
      }
    });
    // as the real launcher: the container may have ended (and been reaped) before the SIGTERM came —
    // machinectl terminate SIGKILLs the leader first — and then there is nothing left to kill (ESRCH)
    process.on('SIGTERM', () => {
      if (cfg.onTerm === 'ignore' || cfg.onTerm === 'hang') return;
      try { s.pidfdSendSignal(c.pidfd, 9); } catch (e) { if (e.code !== 'ESRCH') throw e; }
    });
    const pw = new s.FdWatcher(c.pidfd, POLL_READABLE, () => {
      const st = s.waitPidfd(c.pidfd);
      if (!st) return;
      pw.stop();
      console.error('container ended', JSON.stringify(st));
      // a launcher stuck in its clean-up: alive until SIGKILL
      if (cfg.onTerm === 'hang') { setInterval(() => {}, 1000); return; }
      const done = () => process.exit(0);
      const fail = (e) => { console.error(String(e)); process.exit(1); };
      (registered ? reg.unregister(cfg.name) : Promise.resolve()).then(() => (cg ? cg.remove() : undefined)).then(done, fail);
    });
`;
}

/**
 * An executable stand-in for bin/nspawn-ts, for machinectl-ts start: it reads nspawn-ts's own
 * command line with the real parser (src/runtime/cli.ts), prints it, and runs busybox init in the
 * directory given, registered under the machine name, until SIGTERM.
 */
export function fakeLauncherBinary(dir: string, registryDir: string): string {
  const cliModule = new URL('../../dist/runtime/cli.js', import.meta.url).href;
  const ops = JSON.stringify(containerOps('@ROOT@', '@NAME@', ['/sbin/init']));
  const flags = CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWNET;
  const prelude = `
    import { parseCommandLine } from ${JSON.stringify(cliModule)};
    const parsed = parseCommandLine(process.argv.slice(2));
    console.log('nspawn-ts stand-in: ' + JSON.stringify({ argv: process.argv.slice(2), machine: parsed.spec?.machine, mode: parsed.spec?.mode, properties: parsed.spec?.properties }));
    const opsText = ${JSON.stringify(ops)}.split('@ROOT@').join(parsed.spec.directory).split('@NAME@').join(parsed.spec.machine);
  `;
  const cfg = `{ plan: { cloneFlags: ${flags}, ops: JSON.parse(opsText) }, name: parsed.spec.machine, root: parsed.spec.directory, registryDir: ${JSON.stringify(registryDir)}, onTerm: 'kill' }`;
  const file = join(dir, 'nspawn-ts-standin.mjs');
  writeFileSync(file, `#!${process.execPath}\n` + launcherScript(cfg, prelude), { mode: 0o755 });
  return file;
}

export function tempDir(prefix: string): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  chmodSync(dir, 0o755); // a container root in a user namespace must be able to reach its root below
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}
