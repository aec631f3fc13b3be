// shell and login. machined runs these through the container's systemd (a transient
// container-shell@ unit, a container-getty@ unit); nspawn-ts containers need not run systemd, so
// the process is started directly inside the machine (src/machinectl/enter.ts) with what such a
// unit would give it: the user's IDs and groups, home directory (or /), login shell (`-l`), an
// environment of PATH, HOME, USER, LOGNAME, SHELL, the caller's TERM and -E assignments, and a pty
// of the machine's own devpts when we run on a terminal (always for login). Without a terminal the
// command gets our standard input and output directly, so `machinectl-ts shell foo cmd | …` works,
// and its exit status becomes ours (128 + N when a signal ended it).
import { basename } from 'node:path';
import type { Readable, Writable } from 'node:stream';
import { resolveInRoot } from '../runtime/images.js';
import type { MachineRegistry } from '../runtime/registry.js';
import { parseMachineUser, type Options } from './args.js';
import { lookupMachine, MachineError } from './control.js';
import { commandCandidates, enter, resolveUser, waitExit, type EnterRequest } from './enter.js';
import { Proc } from './procfs.js';
import { PtyForwarder } from '../runtime/console.js';
import type { ReadStream, WriteStream } from 'node:tty';

/** systemd's DEFAULT_PATH. */
export const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

export interface ShellDeps {
  proc?: Proc;
  /** our terminal (tests drive pty mode through pipes) */
  input?: Readable & { isTTY?: boolean; setRawMode?(m: boolean): unknown };
  output?: Writable & { isTTY?: boolean; rows?: number; columns?: number };
  stderr?: (text: string) => void;
  /** use a pty even without a terminal */
  forcePty?: boolean;
  /** the caller's environment (TERM) */
  env?: NodeJS.ProcessEnv;
}

export function shellEnvironment(user: { name: string; home: string; shell: string }, setenv: readonly string[], term: string | undefined): string[] {
  const env = new Map<string, string>([
    ['PATH', DEFAULT_PATH], ['HOME', user.home], ['USER', user.name], ['LOGNAME', user.name], ['SHELL', user.shell],
  ]);
  if (term !== undefined && term !== '') env.set('TERM', term);
  for (const a of setenv) {
    const eq = a.indexOf('=');
    env.set(a.slice(0, eq), a.slice(eq + 1));
  }
  return [...env].map(([k, v]) => `${k}=${v}`);
}

function exitStatus(st: { code: number | null; signal: number | null }): number {
  return st.code ?? 128 + (st.signal ?? 0);
}

interface Target {
  leader?: EnterRequest['leader'];
  root: string;
  what: string;
  name: string;
}

function target(registry: MachineRegistry, machine: string, proc: Proc): Target {
  if (machine === '.host') return { root: '/', what: 'the host', name: '.host' };
  const r = lookupMachine(registry, machine);
  if (!r.leader) throw new MachineError('MACHINE_STARTING', `Machine '${machine}' has no leader yet (it is starting); try again in a moment`);
  return { leader: r.leader, root: `${proc.root}/${r.leader.pid}/root`, what: `machine '${machine}'`, name: machine };
}

async function run(req: EnterRequest, t: Target, opts: Options, deps: ShellDeps): Promise<number> {
  const stderr = deps.stderr ?? ((s: string) => process.stderr.write(s));
  const entered = await enter(req);
  if (entered.master === undefined) return exitStatus(await waitExit(entered.pidfd));
  // the launcher's console forwarder; it touches raw mode and window size only on a real terminal,
  // so the streams of tests (pipes) serve as well
  const io = { input: (deps.input ?? process.stdin) as ReadStream, output: (deps.output ?? process.stdout) as WriteStream };
  const fwd = new PtyForwarder(entered.master, () => {
    // Ctrl-] ×3: leave; closing the pty hangs the session up (SIGHUP), as with machinectl
    fwd.stop();
  }, io);
  if (!opts.quiet) {
    stderr(t.name === '.host'
      ? 'Connected to the local host. Press ^] three times within 1s to exit session.\n'
      : `Connected to machine ${t.name}. Press ^] three times within 1s to exit session.\n`);
  }
  fwd.start();
  const status = await waitExit(entered.pidfd);
  fwd.stop();
  if (!opts.quiet) {
    stderr(t.name === '.host' ? 'Connection to the local host terminated.\n' : `Connection to machine ${t.name} terminated.\n`);
  }
  return exitStatus(status);
}

/** shell [[USER@]NAME [COMMAND …]] */
export async function shellMachine(registry: MachineRegistry, args: readonly string[], opts: Options, deps: ShellDeps = {}): Promise<number> {
  const proc = deps.proc ?? new Proc();
  const spec = parseMachineUser(args[0], opts.uid);
  const t = target(registry, spec.machine, proc);
  const user = resolveUser(t.root, spec.user, t.what);
  const callerEnv = deps.env ?? process.env;
  const env = shellEnvironment(user, opts.setenv, callerEnv.TERM);
  let argv: string[];
  if (args.length >= 2) {
    argv = args.slice(1);
  } else {
    // systemd runs `exec "${shell:-/bin/sh}" -l` with the shell from the machine's passwd
    const shell = user.shell !== '' && resolveInRoot(t.root, user.shell) !== undefined ? user.shell : '/bin/sh';
    argv = [shell, '-l'];
  }
  const path = env.find((e) => e.startsWith('PATH='))?.slice(5) ?? DEFAULT_PATH;
  const candidates = commandCandidates(t.root, argv[0] as string, path);
  const input = deps.input ?? process.stdin;
  const output = deps.output ?? process.stdout;
  const pty = deps.forcePty ?? Boolean(input.isTTY && output.isTTY);
  const req: EnterRequest = { what: t.what, user, argv, candidates, env, pty, proc, ...(t.leader ? { leader: t.leader } : {}) };
  return run(req, t, opts, deps);
}

const GETTYS = ['/sbin/agetty', '/usr/sbin/agetty', '/sbin/getty', '/usr/sbin/getty', '/bin/getty', '/usr/bin/getty'];

/** The getty of a machine and its arguments (container-getty@.service's for agetty; busybox's otherwise). */
export function gettyCommand(root: string, term: string): { argv: string[]; candidates: string[] } | undefined {
  for (const g of GETTYS) {
    const host = resolveInRoot(root, g);
    if (host === undefined) continue;
    // resolveInRoot followed the links: /sbin/getty may be agetty (util-linux) or busybox
    const real = basename(host);
    if (basename(g) === 'agetty' || real === 'agetty') {
      return { argv: ['agetty', '-o', '-p -- \\u', '--noclear', '--keep-baud', '-', '115200,38400,9600', term], candidates: [g] };
    }
    return { argv: ['getty', '-L', '115200,38400,9600', '-', term], candidates: [g] };
  }
  return undefined;
}

/** login NAME: the machine's getty on a new pty of the machine. */
export async function loginMachine(registry: MachineRegistry, name: string | undefined, opts: Options, deps: ShellDeps = {}): Promise<number> {
  const proc = deps.proc ?? new Proc();
  const t = target(registry, name === undefined || name === '' ? '.host' : name, proc);
  if (t.name === '.host') {
    throw new MachineError('LOGIN_HOST', "login to the local host is not supported by machinectl-ts; use 'machinectl-ts shell' (or 'machinectl-ts login NAME' for a machine)");
  }
  const term = (deps.env ?? process.env).TERM || 'vt220';
  const getty = gettyCommand(t.root, term);
  if (!getty) {
    throw new MachineError('LOGIN_NO_GETTY', `${t.what} has no getty (looked for ${GETTYS.join(', ')} inside it), so there is nothing to log in with; use 'machinectl-ts shell ${t.name}' instead`);
  }
  const user = resolveUser(t.root, 'root', t.what);
  const env = shellEnvironment(user, [], term);
  const req: EnterRequest = {
    what: t.what, user, argv: getty.argv, candidates: getty.candidates, env, pty: true, proc,
    ...(t.leader ? { leader: t.leader } : {}),
  };
  return run(req, t, opts, deps);
}
