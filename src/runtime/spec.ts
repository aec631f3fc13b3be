// LaunchSpec: everything the launcher needs to start one container, after the command line and
// the .nspawn settings file have been parsed, merged and validated (src/runtime/cli.ts and
// src/runtime/settings.ts produce it; src/runtime/launcher.ts consumes it). Plain data, no I/O.
// The network options are the network library's model (src/net/model.ts); the launcher hands them
// over through src/runtime/net/request.ts.
import type { NetworkSpec, ResolvConfMode } from '../net/model.js';

export type { NetworkSpec, PortForward, ResolvConfMode, VethExtra } from '../net/model.js';

export type PrivateUsers =
  | { mode: 'no' }
  /** `UID[:N]`: a range starting at `uid` of `count` IDs (systemd: 65536). */
  | { mode: 'range'; uid: number; count: number }
  /**
   * `yes`: a 65536-ID range whose base is the owner UID of the container's root directory rounded
   * down to a multiple of 65536 (owner UID and GID base must agree); read by the launcher at start.
   */
  | { mode: 'yes' }
  /** `pick`: a free 64K range chosen at start (see systemd's user-namespace pick). */
  | { mode: 'pick' }
  /** `identity`: 0..65535 mapped onto itself (only private to the extent of capabilities). */
  | { mode: 'identity' };

export const PRIVATE_USERS_OWNERSHIP = ['off', 'chown', 'map', 'auto'] as const;
export type PrivateUsersOwnership = typeof PRIVATE_USERS_OWNERSHIP[number];

export interface BindMount {
  /** absolute; with `sourceInRoot`, a path inside the container's root directory */
  source: string;
  /** the source was given as `+PATH`: relative to the container's root directory */
  sourceInRoot?: boolean;
  destination: string;
  readOnly: boolean;
  /** `rbind` (default) or `norbind`, and `idmap`/`noidmap` etc. as given after the second colon. */
  options: string[];
}

export interface TmpfsMount {
  destination: string;
  /** mount options, default "mode=0755" */
  options: string;
}

/**
 * --console= (systemd-nspawn's ConsoleMode): `interactive` a pty with input and output forwarded;
 * `read-only` a pty whose output is forwarded, input ignored; `passive` a pty that nothing is
 * forwarded to or from; `pipe` the launcher's own stdin/stdout/stderr, no pty; `autopipe` pipe
 * unless standard input and output are a terminal, then interactive.
 */
export const CONSOLE_SETTINGS = ['interactive', 'read-only', 'passive', 'pipe', 'autopipe'] as const;
export type ConsoleSetting = typeof CONSOLE_SETTINGS[number];

export interface LaunchSpec {
  /** root directory (-D); for --template/--ephemeral, the one to copy or overlay */
  directory: string;
  /** -M, default: the directory's last component, made valid */
  machine: string;
  hostname?: string;
  /** the container's PID 1: the command, our stub init (--as-pid2) or the container's init (-b) */
  mode: 'command' | 'as-pid2' | 'boot';
  /** the command and its arguments (or, with -b, arguments for init) */
  command: string[];
  user?: string;
  chdir?: string;
  /** KEY=VALUE from -E/--setenv and Environment= */
  environment: string[];
  binds: BindMount[];
  tmpfs: TmpfsMount[];
  ephemeral: boolean;
  template?: string;
  privateUsers: PrivateUsers;
  privateUsersChown: boolean;
  /**
   * --private-users-ownership=/PrivateUsersOwnership=: `chown` shifts the tree's owners into the
   * range, `map` binds the root ID-mapped through it instead (the tree stays as it is), `off` does
   * neither; `auto` (and unset) chowns with --private-users-chown or `pick`.
   */
  privateUsersOwnership?: PrivateUsersOwnership;
  network: NetworkSpec;
  resolvConf: ResolvConfMode;
  /** systemd's --timezone= is not handled yet; the host's is not copied */
  quiet: boolean;
  /** --register=: recorded in the machine registry (always; systemd-machined is not used) */
  register: boolean;
  keepUnit: boolean;
  linkJournal: 'no' | 'host' | 'try-host' | 'guest' | 'try-guest' | 'auto';
  /** --property=NAME=VALUE (MemoryMax=, CPUQuota=, TasksMax=, MemoryHigh=) */
  properties: Array<{ name: string; value: string }>;
  /** where the settings file came from, for messages */
  settingsFile?: string;
  /** --console=/--pipe; unset: interactive on a terminal, else read-only (systemd's default) */
  console?: ConsoleSetting;
  /** --notify-ready=/NotifyReady=: READY=1 to $NOTIFY_SOCKET only once the container sent it */
  notifyReady: boolean;
  /** KillSignal= as configured (--kill-signal= or the .nspawn file); unset: the launcher's default (stopSignal()) */
  killSignal?: string;
}

export function defaultNetworkSpec(): NetworkSpec {
  return {
    private: false, veth: false, vethExtra: [], macvlan: [], ipvlan: [], interfaces: [],
    ports: [], portLoopback: false, config: 'auto',
  };
}
