// The command line of nspawn-ts: systemd-nspawn's syntax (getopt_long with "+": short option
// groups, attached values, `--opt=value` and `--opt value`, unique prefixes of long options, `--`,
// and the first non-option starts the command) turned into a LaunchSpec. Parsing is pure apart from
// an injectable environment (cwd, hostname, image lookup, randomness); every bad input throws a
// ConfigError naming the option and what is allowed, before anything is created.
//
// Order as in systemd-nspawn's main(): parse_argv → determine_names → load_settings/merge_settings
// (src/runtime/settings.ts) → verify_arguments (verifyLaunchSpec below).
import { existsSync, statSync } from 'node:fs';
import { hostname as osHostname } from 'node:os';
import { randomBytes } from 'node:crypto';
import { isAbsolute, resolve as resolvePath } from 'node:path';
import { ConfigError, errorMessage } from '../errors.js';
import { ifnameProblem, ifnameValid, zoneNameValid, ZONE_NAME_MAX } from '../net/naming.js';
import { addPortSpec } from '../net/port-spec.js';
import {
  HintedConfigError, defaultMachineName, ephemeralMachineName, machineNameValid, requireMachineName,
} from './machine-name.js';
import { CONSOLE_SETTINGS, PRIVATE_USERS_OWNERSHIP, defaultNetworkSpec, type BindMount, type ConsoleSetting, type PrivateUsersOwnership, type LaunchSpec, type PrivateUsers, type ResolvConfMode, type TmpfsMount } from './spec.js';

export const PROGRAM = 'nspawn-ts';
export const VERSION = '0.1.0';

// ---------------------------------------------------------------------------------------------
// Settings groups (systemd's SettingsMask): what the command line set explicitly. A .nspawn file
// does not change a group the command line set, unless --settings=override.

export type SettingGroup =
  | 'start-mode' | 'ephemeral' | 'directory' | 'working-directory' | 'environment' | 'user'
  | 'kill-signal' | 'custom-mounts' | 'network' | 'expose-ports' | 'userns' | 'hostname'
  | 'resolv-conf' | 'link-journal' | 'notify-ready';

export type SettingsMode = 'yes' | 'no' | 'trusted' | 'override';

/** What the command line asked for: a container to run, or a text to print. */
export type ParseResult =
  | { action: 'help'; text: string }
  | { action: 'version'; text: string }
  | CommandLine;

export interface CommandLine {
  action: 'run';
  /** the launch spec as the command line alone describes it (not yet merged, not yet verified) */
  spec: LaunchSpec;
  settingsMode: SettingsMode;
  /** groups the command line set; with --settings=override this is empty (the file wins) */
  explicit: ReadonlySet<SettingGroup>;
  /** the name `NAME.nspawn` is looked up by: the machine name before an ephemeral suffix */
  settingsName: string;
  verbose: boolean;
}

/** What the parser may ask of the machine; tests replace all of it. */
export interface CliEnvironment {
  cwd: string;
  /** the host's hostname (the machine name for `-D /`) */
  hostname: () => string;
  /** a random 64-bit value (the suffix of ephemeral machine names) */
  random64: () => bigint;
  /** the directory of machine image NAME (-M without -D), as machinectl's image search finds it */
  findMachineImage: (name: string) => string | undefined;
  /** whether the kernel has user namespaces (-U is a no-op without them, as in systemd) */
  userNamespacesSupported: boolean;
}

/** systemd's image search path for directories (src/shared/discover-image.c, IMAGE_MACHINE). */
export const MACHINE_IMAGE_DIRS = ['/etc/machines', '/run/machines', '/var/lib/machines', '/usr/local/lib/machines', '/usr/lib/machines'];

export function defaultCliEnvironment(): CliEnvironment {
  return {
    cwd: process.cwd(),
    hostname: () => osHostname(),
    random64: () => randomBytes(8).readBigUInt64LE(),
    findMachineImage: (name) => {
      for (const dir of MACHINE_IMAGE_DIRS) {
        const p = `${dir}/${name}`;
        try {
          if (statSync(p).isDirectory()) return p;
        } catch { /* not there */ }
      }
      return undefined;
    },
    userNamespacesSupported: existsSync('/proc/self/ns/user'),
  };
}

// ---------------------------------------------------------------------------------------------
// Errors

const SEE_HELP = `Run '${PROGRAM} --help' for the options ${PROGRAM} supports.`;

function fail(message: string, hint?: string, code = 'CFG_INVALID_OPTION'): never {
  throw new HintedConfigError(message, hint, code);
}

/** The text main prints for a failure: `nspawn-ts: MESSAGE` and, if there is one, the hint. */
export function formatCliError(err: unknown): string {
  const lines = [`${PROGRAM}: ${errorMessage(err)}`];
  if (err instanceof HintedConfigError && err.hint) lines.push(`${PROGRAM}: ${err.hint}`);
  return lines.join('\n');
}

// ---------------------------------------------------------------------------------------------
// Value parsers shared with the settings file (src/runtime/settings.ts)

/** systemd's parse_boolean(). */
export function parseBoolean(s: string): boolean | undefined {
  switch (s.toLowerCase()) {
    case '1': case 'yes': case 'y': case 'true': case 't': case 'on': return true;
    case '0': case 'no': case 'n': case 'false': case 'f': case 'off': return false;
    default: return undefined;
  }
}
export const BOOLEAN_VALUES = 'yes/no, true/false, on/off, 1/0';

export const RESOLV_CONF_MODES: readonly ResolvConfMode[] = [
  'off', 'copy-host', 'copy-static', 'copy-uplink', 'copy-stub', 'replace-host', 'replace-static',
  'replace-uplink', 'replace-stub', 'bind-host', 'bind-static', 'bind-uplink', 'bind-stub', 'delete', 'auto',
];

/** resolv_conf_mode_from_string() with its boolean fallback (yes → auto, no → off). */
export function parseResolvConfMode(s: string): ResolvConfMode | undefined {
  if ((RESOLV_CONF_MODES as readonly string[]).includes(s)) return s as ResolvConfMode;
  const b = parseBoolean(s);
  return b === undefined ? undefined : b ? 'auto' : 'off';
}

export type LinkJournal = LaunchSpec['linkJournal'];
export const LINK_JOURNAL_MODES: readonly LinkJournal[] = ['no', 'auto', 'guest', 'host', 'try-guest', 'try-host'];
export function parseLinkJournal(s: string): LinkJournal | undefined {
  return (LINK_JOURNAL_MODES as readonly string[]).includes(s) ? s as LinkJournal : undefined;
}

/** user_namespace_ownership_from_string() for --private-users-ownership=. */
export function parsePrivateUsersOwnership(s: string): PrivateUsersOwnership | undefined {
  return (PRIVATE_USERS_OWNERSHIP as readonly string[]).includes(s) ? s as PrivateUsersOwnership : undefined;
}

/** console_mode_from_string() for --console=. */
export function parseConsoleMode(s: string): ConsoleSetting | undefined {
  return (CONSOLE_SETTINGS as readonly string[]).includes(s) ? s as ConsoleSetting : undefined;
}

import { parseSignal } from './signals.js';

/** env_assignment_is_valid(): NAME=VALUE, NAME of [A-Za-z0-9_] not starting with a digit. */
export function envAssignmentProblem(s: string): string | undefined {
  const eq = s.indexOf('=');
  if (eq < 0) return "expected NAME=VALUE (there is no '=')";
  const name = s.slice(0, eq);
  if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) return "NAME must be letters, digits and '_', not starting with a digit";
  // env_value_is_valid(): no control characters other than tab and newline
  // eslint-disable-next-line no-control-regex
  if (/[\x00-\x08\x0b-\x1f\x7f]/.test(s.slice(eq + 1))) return 'VALUE must not contain control characters';
  return undefined;
}

/** Adds NAME=VALUE to an environment list, replacing an earlier NAME (strv_env_replace). */
export function setEnv(list: string[], assignment: string): void {
  const name = assignment.slice(0, assignment.indexOf('=') + 1);
  const i = list.findIndex((e) => e.startsWith(name));
  if (i >= 0) list.splice(i, 1);
  list.push(assignment);
}

const UID_INVALID = 0xffffffff;

/** parse_private_users() for `--private-users=`/`PrivateUsers=`; throws with systemd's texts. */
export function parsePrivateUsers(s: string | undefined, what = '--private-users='): PrivateUsers {
  if (s === undefined) return { mode: 'yes' };
  // do *not* parse numbers as booleans (systemd: "1" is UID 1)
  const b = /^[0-9]+$/.test(s) ? undefined : parseBoolean(s);
  if (b === false) return { mode: 'no' };
  if (b === true) return { mode: 'yes' };
  if (s === 'pick') return { mode: 'pick' };
  if (s === 'identity') return { mode: 'identity' };
  const allowed = `${what} takes no, yes, pick, identity, UID or UID:COUNT (UID a decimal user ID, COUNT ≥ 1, UID+COUNT ≤ 4294967295)`;
  const colon = s.indexOf(':');
  const shiftText = colon >= 0 ? s.slice(0, colon) : s;
  let count = 0x10000;
  if (colon >= 0) {
    const rangeText = s.slice(colon + 1);
    const r = /^[0-9]+$/.test(rangeText) ? Number(rangeText) : NaN;
    if (!(r <= UID_INVALID)) fail(`Failed to parse UID range "${rangeText}": Invalid argument`, allowed, 'CFG_PRIVATE_USERS');
    count = r;
  }
  const uid = /^[0-9]+$/.test(shiftText) ? Number(shiftText) : NaN;
  // parse_uid(): (uid_t) -1 and 65535 (the 16-bit "nobody") are not valid UIDs
  if (!(uid < UID_INVALID) || uid === 0xffff) fail(`Failed to parse UID "${s}": Invalid argument`, allowed, 'CFG_PRIVATE_USERS');
  if (count === 0 || uid > UID_INVALID - count) {
    fail(`UID range cannot be empty or go beyond ${UID_INVALID}.`, allowed, 'CFG_PRIVATE_USERS');
  }
  return { mode: 'range', uid, count };
}

const BIND_OPTIONS = ['rbind', 'norbind', 'idmap', 'noidmap', 'rootidmap', 'owneridmap'];
const BIND_SYNTAX = 'SOURCE[:DESTINATION[:OPTIONS]] with absolute paths (SOURCE may be +PATH, inside the container), '
  + `OPTIONS a comma-separated list of ${BIND_OPTIONS.join(', ')}; write \\: for a ':' in a path`;

/**
 * extract_first_word(…, ":", EXTRACT_DONT_COALESCE_SEPARATORS): the text up to the first unescaped
 * ':' with backslash escapes removed, and the rest after that ':' (undefined at the end).
 */
function takeColonWord(s: string): { word: string; rest: string | undefined } {
  let word = '';
  for (let i = 0; i < s.length; i++) {
    const c = s[i] as string;
    if (c === '\\') {
      if (i + 1 >= s.length) throw new Error('a trailing backslash escapes nothing');
      word += s[++i];
    } else if (c === ':') {
      return { word, rest: s.slice(i + 1) };
    } else {
      word += c;
    }
  }
  return { word, rest: undefined };
}

/** bind_mount_parse(): `SOURCE[:DESTINATION[:OPTIONS]]`. */
export function parseBindMount(s: string, readOnly: boolean, what = readOnly ? '--bind-ro=' : '--bind='): BindMount {
  const bad = (why: string): never => fail(`Failed to parse ${what} argument ${s}: ${why}`, `${what} takes ${BIND_SYNTAX}`, 'CFG_BIND');
  let source: string;
  let destination: string;
  let optionText: string | undefined;
  try {
    const first = takeColonWord(s);
    source = first.word;
    if (first.rest === undefined) {
      destination = source.startsWith('+') ? source.slice(1) : source;
    } else {
      const second = takeColonWord(first.rest);
      destination = second.word;
      optionText = second.rest;
    }
  } catch (e) {
    return bad(errorMessage(e));
  }
  if (s === '') bad('it is empty');
  if (source === '') bad('an empty SOURCE (a temporary directory in systemd-nspawn) is not supported');
  let sourceInRoot = false;
  if (source.startsWith('+')) {
    sourceInRoot = true;
    source = source.slice(1);
  }
  if (!isAbsolute(source)) bad(`the source path "${source}" is not absolute`);
  if (!isAbsolute(destination)) bad(`the destination path "${destination}" is not absolute`);
  const options = optionText === undefined || optionText === '' ? [] : optionText.split(',');
  for (const o of options) {
    if (!BIND_OPTIONS.includes(o)) bad(`invalid bind mount option "${o}"`);
  }
  const m: BindMount = { source, destination, readOnly, options };
  if (sourceInRoot) m.sourceInRoot = true;
  return m;
}

/** tmpfs_mount_parse(): `PATH[:OPTIONS]`, options default "mode=0755". */
export function parseTmpfs(s: string, what = '--tmpfs='): TmpfsMount {
  const hint = `${what} takes PATH[:OPTIONS] with an absolute PATH and tmpfs mount options (default mode=0755); write \\: for a ':' in PATH`;
  let first: { word: string; rest: string | undefined };
  try {
    first = takeColonWord(s);
  } catch (e) {
    return fail(`Failed to parse ${what} argument ${s}: ${errorMessage(e)}`, hint, 'CFG_TMPFS');
  }
  if (!isAbsolute(first.word)) fail(`Failed to parse ${what} argument ${s}: the path "${first.word}" is not absolute`, hint, 'CFG_TMPFS');
  return { destination: first.word, options: first.rest === undefined || first.rest === '' ? 'mode=0755' : first.rest };
}

/** veth_extra_parse(): `HOSTIF[:CONTAINERIF]`; an invalid or missing CONTAINERIF becomes HOSTIF. */
export function parseVethExtra(s: string, what = '--network-veth-extra='): { hostIfname: string; containerIfname: string } {
  const parts = s.split(':');
  const host = parts[0] ?? '';
  const hint = `${what} takes HOSTIF[:CONTAINERIF], interface names of 1-15 printable characters without ' ', ':', '/', '%'`;
  if (parts.length > 2) fail(`Failed to parse ${what} parameter: ${s}`, hint, 'CFG_NETWORK');
  if (!ifnameValid(host)) fail(`Failed to parse ${what} parameter: ${s}`, `host interface "${host}": ${ifnameProblem(host) ?? 'invalid'}; ${hint}`, 'CFG_NETWORK');
  const cont = parts[1];
  return { hostIfname: host, containerIfname: cont !== undefined && ifnameValid(cont) ? cont : host };
}

/** An interface name for --network-interface=/--network-macvlan=/--network-ipvlan=/--network-bridge=. */
export function checkIfname(name: string, message: string): string {
  if (!ifnameValid(name)) {
    fail(`${message}: ${name}`, `${ifnameProblem(name) ?? 'invalid'}; an interface name has 1-15 printable ASCII characters other than ' ', ':', '/', '%' and is not a number`, 'CFG_NETWORK');
  }
  return name;
}

/** --network-zone=NAME: "vz-NAME" must be a valid interface name. Returns NAME (without "vz-"). */
export function checkZone(zone: string): string {
  if (!zoneNameValid(zone)) {
    fail(`Network zone name not valid: vz-${zone}`, `a zone name has 1-${ZONE_NAME_MAX} characters ("vz-" + zone must be a valid interface name of at most 15)`, 'CFG_NETWORK');
  }
  return zone;
}

// ---------------------------------------------------------------------------------------------
// The option table

type ArgKind = 'none' | 'required' | 'optional';

interface ParseState {
  spec: LaunchSpec;
  explicit: Set<SettingGroup>;
  settingsMode: SettingsMode;
  verbose: boolean;
  help: boolean;
  version: boolean;
  /** -M given (possibly empty: reset) */
  machine?: string;
  directory?: string;
  template?: string;
  userns?: PrivateUsers;
  /** -U without kernel support: nothing */
}

interface OptionDef {
  /** long names; systemd gives each its own getopt entry (a prefix of two is ambiguous) unless `aliases` */
  long: string[];
  /** the long names are one getopt value (--user/--uid) */
  aliases?: true;
  short?: string;
  arg: ArgKind;
  handle: (st: ParseState, value: string | undefined, env: CliEnvironment, used: string) => void;
}

function req(v: string | undefined): string {
  return v as string; // getopt guarantees a value for 'required' options
}

function setNetwork(st: ParseState): void {
  st.spec.network.private = true;
  st.explicit.add('network');
}

function absolutePath(v: string, env: CliEnvironment): string | undefined {
  // parse_path_argument(): "" unsets; otherwise absolute against cwd, simplified
  if (v === '') return undefined;
  return resolvePath(env.cwd, v);
}

const OPTIONS: OptionDef[] = [
  { long: ['help'], short: 'h', arg: 'none', handle: (st) => { st.help = true; } },
  { long: ['version'], arg: 'none', handle: (st) => { st.version = true; } },
  { long: ['quiet'], short: 'q', arg: 'none', handle: (st) => { st.spec.quiet = true; } },
  { long: ['verbose'], short: 'v', arg: 'none', handle: (st) => { st.verbose = true; } },
  { long: ['no-pager'], arg: 'none', handle: () => { /* we never page */ } },
  {
    long: ['settings'], arg: 'required', handle: (st, v) => {
      const b = parseBoolean(req(v));
      if (v === 'trusted' || v === 'override') st.settingsMode = v;
      else if (b !== undefined) st.settingsMode = b ? 'yes' : 'no';
      else fail(`Failed to parse --settings= argument: ${v}`, `--settings= takes yes, no, trusted or override`, 'CFG_SETTINGS');
    },
  },
  // Image
  {
    long: ['directory'], short: 'D', arg: 'required', handle: (st, v, env) => {
      st.directory = absolutePath(req(v), env);
      st.explicit.add('directory');
    },
  },
  {
    long: ['template'], arg: 'required', handle: (st, v, env) => {
      st.template = absolutePath(req(v), env);
      st.explicit.add('directory');
    },
  },
  { long: ['ephemeral'], short: 'x', arg: 'none', handle: (st) => { st.spec.ephemeral = true; st.explicit.add('ephemeral'); } },
  // Execution
  {
    long: ['as-pid2'], short: 'a', arg: 'none', handle: (st) => {
      if (st.spec.mode === 'boot') fail('--boot and --as-pid2 may not be combined.', '-b/--boot runs the container\'s init as PID 1; -a/--as-pid2 runs the command under a stub init', 'CFG_CONFLICT');
      st.spec.mode = 'as-pid2';
      st.explicit.add('start-mode');
    },
  },
  {
    long: ['boot'], short: 'b', arg: 'none', handle: (st) => {
      if (st.spec.mode === 'as-pid2') fail('--boot and --as-pid2 may not be combined.', '-b/--boot runs the container\'s init as PID 1; -a/--as-pid2 runs the command under a stub init', 'CFG_CONFLICT');
      st.spec.mode = 'boot';
      st.explicit.add('start-mode');
    },
  },
  {
    long: ['chdir'], arg: 'required', handle: (st, v) => {
      if (!isAbsolute(req(v))) fail(`Working directory ${v} is not an absolute path.`, '--chdir= takes an absolute path inside the container', 'CFG_CHDIR');
      st.spec.chdir = v;
      st.explicit.add('working-directory');
    },
  },
  {
    long: ['setenv'], short: 'E', arg: 'required', handle: (st, v) => {
      const problem = envAssignmentProblem(req(v));
      if (problem) fail(`Environment variable assignment '${v}' is not valid.`, `-E/--setenv= takes NAME=VALUE: ${problem}`, 'CFG_ENV');
      setEnv(st.spec.environment, req(v));
      st.explicit.add('environment');
    },
  },
  {
    long: ['user', 'uid'], aliases: true, short: 'u', arg: 'required', handle: (st, v) => {
      if (v === '') delete st.spec.user;
      else st.spec.user = v;
      st.explicit.add('user');
    },
  },
  {
    long: ['kill-signal'], arg: 'required', handle: (st, v) => {
      const sig = parseSignal(req(v));
      if (!sig) fail(`Cannot parse signal: ${v}`, '--kill-signal= takes a signal name (SIGTERM, TERM, SIGRTMIN+3) or number 1-64', 'CFG_SIGNAL');
      st.spec.killSignal = sig.name;
      st.explicit.add('kill-signal');
    },
  },
  // System identity
  {
    long: ['machine'], short: 'M', arg: 'required', handle: (st, v) => {
      if (v !== '') requireMachineName(req(v));
      st.machine = v === '' ? undefined : v;
    },
  },
  {
    long: ['hostname'], arg: 'required', handle: (st, v) => {
      if (v !== '' && !machineNameValid(req(v))) {
        fail(`Invalid hostname: ${v}`, "a hostname has 1-64 characters: ASCII letters, digits, '-' and '.', in dot-separated labels that are non-empty and do not start or end with '-'", 'CFG_HOSTNAME');
      }
      if (v === '') delete st.spec.hostname;
      else st.spec.hostname = v;
      st.explicit.add('hostname');
    },
  },
  // Properties
  {
    long: ['property'], arg: 'required', handle: (st, v) => {
      const eq = req(v).indexOf('=');
      if (eq <= 0 || /\s/.test(req(v).slice(0, eq))) {
        fail(`Invalid --property= assignment: ${v}`, '--property= takes NAME=VALUE, e.g. --property=MemoryMax=512M', 'CFG_PROPERTY');
      }
      st.spec.properties.push({ name: req(v).slice(0, eq), value: req(v).slice(eq + 1) });
    },
  },
  {
    long: ['register'], arg: 'required', handle: (st, v) => {
      const b = parseBoolean(req(v));
      if (b === undefined) fail(`Failed to parse boolean argument to --register=: ${v}`, `--register= takes ${BOOLEAN_VALUES}`, 'CFG_REGISTER');
      st.spec.register = b;
    },
  },
  { long: ['keep-unit'], arg: 'none', handle: (st) => { st.spec.keepUnit = true; } },
  // User namespacing
  {
    long: ['private-users'], arg: 'optional', handle: (st, v) => {
      st.userns = parsePrivateUsers(v);
      st.explicit.add('userns');
    },
  },
  { long: ['private-users-chown'], arg: 'none', handle: (st) => { st.spec.privateUsersChown = true; st.explicit.add('userns'); } },
  {
    long: ['private-users-ownership'], arg: 'required', handle: (st, v) => {
      const o = parsePrivateUsersOwnership(req(v));
      if (!o) fail(`Cannot parse --private-users-ownership= value: ${v}`, `--private-users-ownership= takes ${PRIVATE_USERS_OWNERSHIP.join(', ')}`, 'CFG_PRIVATE_USERS');
      st.spec.privateUsersOwnership = o;
      st.explicit.add('userns');
    },
  },
  {
    long: [], short: 'U', arg: 'none', handle: (st, _v, env) => {
      if (!env.userNamespacesSupported) return; // as systemd: silently nothing
      st.userns = { mode: 'pick' };
      st.explicit.add('userns');
    },
  },
  // Networking
  { long: ['private-network'], arg: 'none', handle: (st) => setNetwork(st) },
  {
    long: ['network-interface'], arg: 'required', handle: (st, v) => {
      st.spec.network.interfaces.push(checkIfname(req(v), 'Network interface name not valid'));
      setNetwork(st);
    },
  },
  {
    long: ['network-macvlan'], arg: 'required', handle: (st, v) => {
      st.spec.network.macvlan.push(checkIfname(req(v), 'MACVLAN network interface name not valid'));
      setNetwork(st);
    },
  },
  {
    long: ['network-ipvlan'], arg: 'required', handle: (st, v) => {
      st.spec.network.ipvlan.push(checkIfname(req(v), 'IPVLAN network interface name not valid'));
      setNetwork(st);
    },
  },
  { long: ['network-veth'], short: 'n', arg: 'none', handle: (st) => { st.spec.network.veth = true; setNetwork(st); } },
  {
    long: ['network-veth-extra'], arg: 'required', handle: (st, v) => {
      st.spec.network.vethExtra.push(parseVethExtra(req(v)));
      setNetwork(st);
    },
  },
  {
    long: ['network-bridge'], arg: 'required', handle: (st, v) => {
      st.spec.network.bridge = checkIfname(req(v), 'Bridge interface name not valid');
      st.spec.network.veth = true;
      setNetwork(st);
    },
  },
  {
    long: ['network-zone'], arg: 'required', handle: (st, v) => {
      st.spec.network.zone = checkZone(req(v));
      st.spec.network.veth = true;
      setNetwork(st);
    },
  },
  {
    long: ['network-namespace-path'], arg: 'required', handle: (st, v, env) => {
      const p = absolutePath(req(v), env);
      if (p === undefined) delete st.spec.network.namespacePath;
      else st.spec.network.namespacePath = p;
      st.explicit.add('network');
    },
  },
  {
    long: ['port'], short: 'p', arg: 'required', handle: (st, v) => {
      addPortSpec(st.spec.network.ports, req(v));
      st.explicit.add('expose-ports');
    },
  },
  { long: ['port-loopback'], arg: 'none', handle: (st) => { st.spec.network.portLoopback = true; } },
  {
    long: ['network-config'], arg: 'required', handle: (st, v) => {
      if (v !== 'auto' && v !== 'static' && v !== 'dhcp') fail(`Failed to parse --network-config= argument: ${v}`, '--network-config= takes auto, static or dhcp', 'CFG_NETWORK');
      st.spec.network.config = v;
    },
  },
  // Integration
  {
    long: ['resolv-conf'], arg: 'required', handle: (st, v) => {
      const m = parseResolvConfMode(req(v));
      if (!m) fail(`Failed to parse /etc/resolv.conf mode: ${v}`, `--resolv-conf= takes ${RESOLV_CONF_MODES.join(', ')} (or yes = auto, no = off)`, 'CFG_RESOLV_CONF');
      st.spec.resolvConf = m;
      st.explicit.add('resolv-conf');
    },
  },
  {
    long: ['link-journal'], arg: 'required', handle: (st, v) => {
      const m = parseLinkJournal(req(v));
      if (!m) fail(`Failed to parse link journal mode ${v}`, `--link-journal= takes ${LINK_JOURNAL_MODES.join(', ')}`, 'CFG_LINK_JOURNAL');
      st.spec.linkJournal = m;
      st.explicit.add('link-journal');
    },
  },
  { long: [], short: 'j', arg: 'none', handle: (st) => { st.spec.linkJournal = 'try-guest'; st.explicit.add('link-journal'); } },
  {
    long: ['notify-ready'], arg: 'required', handle: (st, v) => {
      const b = parseBoolean(req(v));
      if (b === undefined) fail(`Failed to parse --notify-ready= argument: ${v}`, `--notify-ready= takes ${BOOLEAN_VALUES}`, 'CFG_NOTIFY_READY');
      st.spec.notifyReady = b;
      st.explicit.add('notify-ready');
    },
  },
  // Input/Output
  {
    long: ['console'], arg: 'required', handle: (st, v) => {
      const m = parseConsoleMode(req(v));
      if (!m) fail(`Unknown console mode: ${v}`, `--console= takes ${CONSOLE_SETTINGS.join(', ')}`, 'CFG_CONSOLE');
      st.spec.console = m;
    },
  },
  { long: ['pipe'], short: 'P', arg: 'none', handle: (st) => { st.spec.console = 'pipe'; } },
  // Mounts
  {
    long: ['bind', 'bind-ro'], arg: 'required', handle: (st, v, _env, used) => {
      st.spec.binds.push(parseBindMount(req(v), used === 'bind-ro'));
      st.explicit.add('custom-mounts');
    },
  },
  {
    long: ['tmpfs'], arg: 'required', handle: (st, v) => {
      st.spec.tmpfs.push(parseTmpfs(req(v)));
      st.explicit.add('custom-mounts');
    },
  },
];

/** systemd-nspawn options (v252) that nspawn-ts does not implement: named in the error. */
const SYSTEMD_ONLY_LONG = [
  'cleanup', 'image', 'image-policy', 'oci-bundle', 'read-only', 'volatile', 'root-hash', 'root-hash-sig',
  'verity-data', 'pivot-root', 'suppress-sync', 'uuid', 'slice',
  'capability', 'drop-capability', 'ambient-capability', 'no-new-privileges', 'system-call-filter',
  'selinux-context', 'selinux-apifs-context', 'rlimit', 'oom-score-adjust', 'cpu-affinity', 'personality',
  'timezone', 'inaccessible', 'overlay', 'overlay-ro', 'bind-user', 'set-credential',
  'load-credential', 'share-system', 'no-ask-password',
];
const SYSTEMD_ONLY_SHORT: Record<string, string> = { i: 'image', S: 'slice', Z: 'selinux-context', L: 'selinux-apifs-context' };

function notSupported(option: string): never {
  return fail(`Option '${option}' of systemd-nspawn is not supported by ${PROGRAM}.`, SEE_HELP, 'CFG_UNSUPPORTED_OPTION');
}

function findLong(name: string): { def: OptionDef; name: string } {
  for (const def of OPTIONS) if (def.long.includes(name)) return { def, name };
  if (SYSTEMD_ONLY_LONG.includes(name)) notSupported(`--${name}`);
  // getopt_long accepts an unambiguous prefix of a long option; --bind and --bind-ro (and systemd's
  // --bind-user) are distinct entries, so --bi= is ambiguous as in systemd-nspawn
  const matches: Array<{ def?: OptionDef; name: string }> = [];
  for (const def of OPTIONS) for (const l of def.long) if (l.startsWith(name)) matches.push({ def, name: l });
  for (const l of SYSTEMD_ONLY_LONG) if (l.startsWith(name)) matches.push({ name: l });
  const distinct = new Set(matches.map((m) => (m.def?.aliases ? m.def : m.name)));
  const only = matches[0];
  if (name !== '' && distinct.size === 1 && only) {
    if (!only.def) notSupported(`--${only.name}`);
    return { def: only.def, name: only.name };
  }
  if (distinct.size > 1) {
    fail(`Option '--${name}' is ambiguous; possibilities: ${matches.map((m) => `'--${m.name}'`).join(' ')}`, SEE_HELP, 'CFG_UNKNOWN_OPTION');
  }
  return fail(`Unknown option '--${name}'.`, SEE_HELP, 'CFG_UNKNOWN_OPTION');
}

function findShort(c: string): OptionDef {
  const def = OPTIONS.find((d) => d.short === c);
  if (def) return def;
  const sd = SYSTEMD_ONLY_SHORT[c];
  if (sd !== undefined) notSupported(`-${c}/--${sd}`);
  return fail(`Unknown option '-${c}'.`, SEE_HELP, 'CFG_UNKNOWN_OPTION');
}

function newSpec(): LaunchSpec {
  return {
    directory: '',
    machine: '',
    mode: 'command',
    command: [],
    environment: [],
    binds: [],
    tmpfs: [],
    ephemeral: false,
    privateUsers: { mode: 'no' },
    privateUsersChown: false,
    network: defaultNetworkSpec(),
    resolvConf: 'auto',
    quiet: false,
    register: true,
    keepUnit: false,
    linkJournal: 'auto',
    notifyReady: false,
    properties: [],
  };
}

/**
 * Parses argv (without the program name) like systemd-nspawn's parse_argv() and determine_names().
 * Returns what to do; throws ConfigError (HintedConfigError) for any bad input.
 */
export function parseCommandLine(argv: readonly string[], env: CliEnvironment = defaultCliEnvironment()): ParseResult {
  const st: ParseState = {
    spec: newSpec(), explicit: new Set(), settingsMode: 'yes', verbose: false, help: false, version: false,
  };
  let i = 0;
  // like systemd's parse_argv(), -h/--version act as soon as they are read
  while (i < argv.length && !st.help && !st.version) {
    const a = argv[i] as string;
    if (a === '--') {
      i++;
      break;
    }
    if (!a.startsWith('-') || a === '-') break; // "+" in the getopt string: stop at the first non-option
    i++;
    if (a.startsWith('--')) {
      const eq = a.indexOf('=');
      const name = eq >= 0 ? a.slice(2, eq) : a.slice(2);
      const { def, name: used } = findLong(name);
      let value: string | undefined;
      if (eq >= 0) {
        if (def.arg === 'none') fail(`Option '--${used}' doesn't allow an argument.`, SEE_HELP, 'CFG_INVALID_OPTION');
        value = a.slice(eq + 1);
      } else if (def.arg === 'required') {
        if (i >= argv.length) fail(`Option '--${used}' requires an argument.`, SEE_HELP, 'CFG_INVALID_OPTION');
        value = argv[i++];
      }
      def.handle(st, value, env, used);
      continue;
    }
    // a group of short options: -bUD DIR, -D/dir, -bD/dir
    for (let j = 1; j < a.length; j++) {
      const c = a[j] as string;
      const def = findShort(c);
      if (def.arg === 'none') {
        def.handle(st, undefined, env, c);
        if (st.help || st.version) break;
        continue;
      }
      let value: string;
      if (j + 1 < a.length) value = a.slice(j + 1);
      else if (i < argv.length) value = argv[i++] as string;
      else return fail(`Option '-${c}' requires an argument.`, SEE_HELP, 'CFG_INVALID_OPTION');
      def.handle(st, value, env, c);
      break;
    }
  }
  if (st.help) return { action: 'help', text: helpText() };
  if (st.version) return { action: 'version', text: versionText() };

  const spec = st.spec;
  spec.command = argv.slice(i);
  if (spec.command.length > 0) st.explicit.add('start-mode');
  if (st.userns) spec.privateUsers = st.userns;

  // "--ephemeral --template=DIR" means "--ephemeral --directory=DIR" (systemd#3667)
  if (spec.ephemeral && st.template !== undefined && st.directory === undefined) {
    st.directory = st.template;
    st.template = undefined;
  }
  if (spec.ephemeral && st.template !== undefined) {
    fail('--ephemeral and --template= may not be combined.', '-x/--ephemeral runs a throw-away snapshot of -D; --template= fills a missing -D once from a template', 'CFG_CONFLICT');
  }
  if (st.template !== undefined) spec.template = st.template;

  // determine_names()
  if (st.template !== undefined && st.directory === undefined) {
    if (st.machine === undefined) fail('--template= needs --directory= or --machine=.', undefined, 'CFG_CONFLICT');
    st.directory = `/var/lib/machines/${st.machine}`;
  }
  if (st.directory === undefined) {
    if (st.machine !== undefined) {
      const found = env.findMachineImage(st.machine);
      if (found === undefined) {
        fail(`No image for machine '${st.machine}'.`, `looked for a directory ${st.machine} in ${MACHINE_IMAGE_DIRS.join(', ')}; use -D to name the root directory`, 'CFG_NO_IMAGE');
      }
      st.directory = found;
    } else {
      st.directory = env.cwd;
    }
  }
  spec.directory = st.directory;
  let settingsName: string;
  if (st.machine !== undefined) {
    spec.machine = st.machine;
    settingsName = st.machine;
  } else {
    settingsName = defaultMachineName(spec.directory, env.hostname);
    spec.machine = spec.ephemeral ? ephemeralMachineName(settingsName, env.random64) : settingsName;
  }

  // --settings=override: the file wins over everything; no: nothing is read (settings.ts skips it)
  const explicit = st.settingsMode === 'override' ? new Set<SettingGroup>() : st.explicit;
  return { action: 'run', spec, settingsMode: st.settingsMode, explicit, settingsName, verbose: st.verbose };
}

/**
 * verify_arguments(): checks that need the final, merged spec (command line + settings file), and
 * fills in defaults that depend on it. Returns a new spec; throws ConfigError.
 */
export function verifyLaunchSpec(input: LaunchSpec): LaunchSpec {
  const spec: LaunchSpec = structuredClone(input);
  const net = spec.network;
  // systemd-nspawn's verify_arguments() also fills in KillSignal=SIGRTMIN+3 for a booted container
  // here; we leave killSignal as configured and let the launcher choose the default when it knows
  // the init (stopSignal() in launcher.ts), so that a configured signal is never taken for it.
  if (spec.ephemeral && spec.template !== undefined) {
    fail('--ephemeral and --template= may not be combined.', undefined, 'CFG_CONFLICT');
  }
  if (spec.ephemeral && (spec.linkJournal === 'host' || spec.linkJournal === 'guest')) {
    fail('--ephemeral and --link-journal={host,guest} may not be combined.', 'use --link-journal=try-host or try-guest, which do nothing for an ephemeral machine', 'CFG_CONFLICT');
  }
  if (net.namespacePath !== undefined && (net.interfaces.length || net.macvlan.length || net.ipvlan.length
    || net.vethExtra.length || net.bridge !== undefined || net.zone !== undefined || net.veth)) {
    fail('--network-namespace-path= cannot be combined with other network options.', 'only --private-network may go with --network-namespace-path=', 'CFG_CONFLICT');
  }
  if (net.bridge !== undefined && net.zone !== undefined) {
    fail('--network-bridge= and --network-zone= may not be combined.', 'a container joins either an existing bridge or a zone\'s bridge vz-ZONE', 'CFG_CONFLICT');
  }
  if (net.ports.length > 0 && !net.private) {
    fail('Cannot use --port= without private networking.', 'add -n/--network-veth (or another --network-* option, or --private-network)', 'CFG_CONFLICT');
  }
  if (spec.machine === '' || spec.directory === '') throw new ConfigError('internal: spec without machine name or directory');
  return spec;
}

// ---------------------------------------------------------------------------------------------
// Help and version

export function versionText(): string {
  return `${PROGRAM} ${VERSION}\ncommand line and .nspawn files of systemd-nspawn 252`;
}

export function helpText(): string {
  return `${PROGRAM} [OPTIONS...] [PATH] [ARGUMENTS...]

Spawn a command or OS in a lightweight container.

  -h --help                 Show this help
     --version              Print version string
  -q --quiet                Do not show status information
  -v --verbose              Show debug messages (as NSPAWN_TS_LOG=debug)
     --no-pager             Accepted; nothing is paged
     --settings=BOOLEAN     Load additional settings from .nspawn file
                            (yes, no, trusted, override)

Image:
  -D --directory=PATH       Root directory for the container
     --template=PATH        Initialize root directory from template directory,
                            if missing
  -x --ephemeral            Run container with snapshot of root directory, and
                            remove it after exit

Execution:
  -a --as-pid2              Maintain a stub init as PID1, invoke binary as PID2
  -b --boot                 Boot up full system (i.e. invoke init)
     --chdir=PATH           Set working directory in the container
  -E --setenv=NAME=VALUE    Pass an environment variable to PID 1
  -u --user=USER            Run the command under specified user or UID
     --kill-signal=SIGNAL   Select signal to use for shutting down PID 1

System Identity:
  -M --machine=NAME         Set the machine name for the container
     --hostname=NAME        Override the hostname for the container

Properties:
     --property=NAME=VALUE  Set a resource-control property of the container
     --register=BOOLEAN     Record the container in the machine registry
                            (/run/nspawn-ts/machines; machinectl-ts reads it)
     --keep-unit            Do not create a scope for the container; stay in
                            the caller's cgroup

User Namespacing:
     --private-users=no|yes|pick|identity|UID[:COUNT]
                            Run within user namespace, configure UID/GID range
     --private-users-chown  Adjust OS tree ownership to private UID/GID range
     --private-users-ownership=MODE
                            Adjust ('chown') or map ('map') OS tree ownership
                            to private UID/GID range (off, chown, map, auto)
  -U                        Equivalent to --private-users=pick (ownership
                            adjusted automatically), if the kernel supports it

Networking:
     --private-network      Disable network in container
     --network-interface=INTERFACE
                            Assign an existing network interface to the
                            container
     --network-macvlan=INTERFACE
                            Create a macvlan network interface based on an
                            existing network interface to the container
     --network-ipvlan=INTERFACE
                            Create an ipvlan network interface based on an
                            existing network interface to the container
  -n --network-veth         Add a virtual Ethernet connection between host
                            and container
     --network-veth-extra=HOSTIF[:CONTAINERIF]
                            Add an additional virtual Ethernet link between
                            host and container
     --network-bridge=INTERFACE
                            Add a virtual Ethernet connection to the container
                            and attach it to an existing bridge on the host
     --network-zone=NAME    Similar, but attach the new interface to an
                            automatically managed bridge interface
     --network-namespace-path=PATH
                            Set network namespace to the one represented by
                            the specified kernel namespace file node
  -p --port=[PROTOCOL:]HOSTPORT[:CONTAINERPORT]
                            Expose a container IP port on the host
     --port-loopback        Also forward the ports for connections to
                            127.0.0.1 on the host (not in systemd-nspawn)
     --network-config=auto|static|dhcp
                            How host0 gets its address: configured before the
                            command starts (static), left to a DHCP client in
                            the container (dhcp), or static unless the
                            container boots (auto; not in systemd-nspawn)

Integration:
     --notify-ready=BOOLEAN Wait for the container to send READY=1 to
                            /run/host/notify before reporting READY=1 to
                            $NOTIFY_SOCKET
     --resolv-conf=MODE     Select mode of /etc/resolv.conf initialization
                            (off, copy-host, copy-static, copy-uplink,
                            copy-stub, replace-*, bind-*, delete, auto)
     --link-journal=MODE    Link up guest journal, one of no, auto, guest,
                            host, try-guest, try-host
  -j                        Equivalent to --link-journal=try-guest

Mounts:
     --bind=PATH[:PATH[:OPTIONS]]
                            Bind mount a file or directory from the host into
                            the container (OPTIONS: rbind, norbind, idmap,
                            noidmap, rootidmap, owneridmap)
     --bind-ro=PATH[:PATH[:OPTIONS]]
                            Similar, but creates a read-only bind mount
     --tmpfs=PATH:[OPTIONS] Mount an empty tmpfs to the specified directory

Input/Output:
     --console=MODE         Select how stdin/stdout/stderr and /dev/console are
                            set up for the container (interactive, read-only,
                            passive, pipe, autopipe)
  -P --pipe                 Equivalent to --console=pipe

Other options of systemd-nspawn are refused with an error naming them.
Networking works without systemd-networkd: the host side of -n/--network-zone
gets an address, DHCP, NAT and port forwarding from ${PROGRAM}'s network
subsystem (or from a running nspawn-netd).
`;
}

// ---------------------------------------------------------------------------------------------
// main

export interface CliIo {
  stdout: (text: string) => void;
  stderr: (text: string) => void;
}

/**
 * The whole command: parse, merge settings and verify (`resolve`), then `launch`. Prints help or
 * version, or `nspawn-ts: MESSAGE` for bad input and returns 1 with nothing created. Returns the
 * exit code.
 */
export async function runCli(
  argv: readonly string[],
  deps: {
    io?: CliIo;
    env?: CliEnvironment;
    /** command line → final LaunchSpec: settings.ts's resolveLaunchSpec (merges .nspawn files, verifies) */
    resolve: (cl: CommandLine) => LaunchSpec;
    onVerbose?: () => void;
    launch: (spec: LaunchSpec, cl: CommandLine) => Promise<number>;
  },
): Promise<number> {
  const io = deps.io ?? { stdout: (t) => process.stdout.write(t), stderr: (t) => process.stderr.write(t) };
  let cl: CommandLine;
  let spec: LaunchSpec;
  try {
    const r = parseCommandLine(argv, deps.env ?? defaultCliEnvironment());
    if (r.action === 'help' || r.action === 'version') {
      io.stdout(r.text.endsWith('\n') ? r.text : r.text + '\n');
      return 0;
    }
    cl = r;
    if (cl.verbose) deps.onVerbose?.();
    spec = deps.resolve(cl);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    io.stderr(formatCliError(err) + '\n');
    return 1;
  }
  return deps.launch(spec, cl);
}
