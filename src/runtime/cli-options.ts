// The command line of nspawn-ts: systemd-nspawn's syntax (getopt_long with "+": short option
// groups, attached values, `--opt=value` and `--opt value`, unique prefixes of long options, `--`,
// and the first non-option starts the command) turned into a LaunchSpec. Parsing is pure apart from
// an injectable environment (cwd, hostname, image lookup, randomness); every bad input throws a
// ConfigError naming the option and what is allowed, before anything is created.
//
// Order as in systemd-nspawn's main(): parse_argv → determine_names → load_settings/merge_settings
// (src/runtime/settings.ts) → verify_arguments (cli-verify.ts).

import { isAbsolute, resolve as resolvePath } from 'node:path';
import { addPortSpec } from '../net/port-spec.js';
import { defaultMachineName, ephemeralMachineName, machineNameValid, requireMachineName } from './machine-name.js';
import { CONSOLE_SETTINGS, PRIVATE_USERS_OWNERSHIP, defaultNetworkSpec, type LaunchSpec, type PrivateUsers } from './spec.js';
import { parseSignal } from './signals.js';
import {
  BOOLEAN_VALUES, checkIfname, checkZone, envAssignmentProblem, fail, LINK_JOURNAL_MODES, parseBindMount, parseBoolean, parseConsoleMode, parseLinkJournal, parsePrivateUsers, parsePrivateUsersOwnership, parseResolvConfMode, parseTmpfs, parseVethExtra, PROGRAM, RESOLV_CONF_MODES, SEE_HELP, setEnv,
} from './cli-values.js';
import { helpText as formatHelp, versionText, type OptionHelp } from './cli-help.js';
import {
  defaultCliEnvironment, MACHINE_IMAGE_DIRS, type CliEnvironment, type ParseResult, type SettingGroup, type SettingsMode,
} from './cli-types.js';

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
  /** its lines in --help (bind and bind-ro: one each) */
  help: OptionHelp | OptionHelp[];
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
  { long: ['help'], short: 'h', arg: 'none', help: { text: 'Show this help' }, handle: (st) => { st.help = true; } },
  { long: ['version'], arg: 'none', help: { text: 'Print version string' }, handle: (st) => { st.version = true; } },
  { long: ['quiet'], short: 'q', arg: 'none', help: { text: 'Do not show status information' }, handle: (st) => { st.spec.quiet = true; } },
  { long: ['verbose'], short: 'v', arg: 'none', help: { text: 'Show debug messages (as NSPAWN_TS_LOG=debug)' }, handle: (st) => { st.verbose = true; } },
  { long: ['no-pager'], arg: 'none', help: { text: 'Accepted; nothing is paged' }, handle: () => { /* we never page */ } },
  {
    long: ['settings'], arg: 'required', help: { value: 'BOOLEAN', text: 'Load additional settings from .nspawn file\n(yes, no, trusted, override)' }, handle: (st, v) => {
      const b = parseBoolean(req(v));
      if (v === 'trusted' || v === 'override') st.settingsMode = v;
      else if (b !== undefined) st.settingsMode = b ? 'yes' : 'no';
      else fail(`Failed to parse --settings= argument: ${v}`, `--settings= takes yes, no, trusted or override`, 'CFG_SETTINGS');
    },
  },
  // Image
  {
    long: ['directory'], short: 'D', arg: 'required', help: { section: 'Image', value: 'PATH', text: 'Root directory for the container' }, handle: (st, v, env) => {
      st.directory = absolutePath(req(v), env);
      st.explicit.add('directory');
    },
  },
  {
    long: ['template'], arg: 'required', help: { section: 'Image', value: 'PATH', text: 'Initialize root directory from template directory,\nif missing' }, handle: (st, v, env) => {
      st.template = absolutePath(req(v), env);
      st.explicit.add('directory');
    },
  },
  { long: ['ephemeral'], short: 'x', arg: 'none', help: { section: 'Image', text: 'Run container with snapshot of root directory, and\nremove it after exit' }, handle: (st) => { st.spec.ephemeral = true; st.explicit.add('ephemeral'); } },
  // Execution
  {
    long: ['as-pid2'], short: 'a', arg: 'none', help: { section: 'Execution', text: 'Maintain a stub init as PID1, invoke binary as PID2' }, handle: (st) => {
      if (st.spec.mode === 'boot') fail('--boot and --as-pid2 may not be combined.', '-b/--boot runs the container\'s init as PID 1; -a/--as-pid2 runs the command under a stub init', 'CFG_CONFLICT');
      st.spec.mode = 'as-pid2';
      st.explicit.add('start-mode');
    },
  },
  {
    long: ['boot'], short: 'b', arg: 'none', help: { section: 'Execution', text: 'Boot up full system (i.e. invoke init)' }, handle: (st) => {
      if (st.spec.mode === 'as-pid2') fail('--boot and --as-pid2 may not be combined.', '-b/--boot runs the container\'s init as PID 1; -a/--as-pid2 runs the command under a stub init', 'CFG_CONFLICT');
      st.spec.mode = 'boot';
      st.explicit.add('start-mode');
    },
  },
  {
    long: ['chdir'], arg: 'required', help: { section: 'Execution', value: 'PATH', text: 'Set working directory in the container' }, handle: (st, v) => {
      if (!isAbsolute(req(v))) fail(`Working directory ${v} is not an absolute path.`, '--chdir= takes an absolute path inside the container', 'CFG_CHDIR');
      st.spec.chdir = v;
      st.explicit.add('working-directory');
    },
  },
  {
    long: ['setenv'], short: 'E', arg: 'required', help: { section: 'Execution', value: 'NAME=VALUE', text: 'Pass an environment variable to PID 1' }, handle: (st, v) => {
      const problem = envAssignmentProblem(req(v));
      if (problem) fail(`Environment variable assignment '${v}' is not valid.`, `-E/--setenv= takes NAME=VALUE: ${problem}`, 'CFG_ENV');
      setEnv(st.spec.environment, req(v));
      st.explicit.add('environment');
    },
  },
  {
    long: ['user', 'uid'], aliases: true, short: 'u', arg: 'required', help: { section: 'Execution', value: 'USER', text: 'Run the command under specified user or UID' }, handle: (st, v) => {
      if (v === '') delete st.spec.user;
      else st.spec.user = v;
      st.explicit.add('user');
    },
  },
  {
    long: ['kill-signal'], arg: 'required', help: { section: 'Execution', value: 'SIGNAL', text: 'Select signal to use for shutting down PID 1' }, handle: (st, v) => {
      const sig = parseSignal(req(v));
      if (!sig) fail(`Cannot parse signal: ${v}`, '--kill-signal= takes a signal name (SIGTERM, TERM, SIGRTMIN+3) or number 1-64', 'CFG_SIGNAL');
      st.spec.killSignal = sig.name;
      st.explicit.add('kill-signal');
    },
  },
  // System identity
  {
    long: ['machine'], short: 'M', arg: 'required', help: { section: 'System Identity', value: 'NAME', text: 'Set the machine name for the container' }, handle: (st, v) => {
      if (v !== '') requireMachineName(req(v));
      st.machine = v === '' ? undefined : v;
    },
  },
  {
    long: ['hostname'], arg: 'required', help: { section: 'System Identity', value: 'NAME', text: 'Override the hostname for the container' }, handle: (st, v) => {
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
    long: ['property'], arg: 'required', help: { section: 'Properties', value: 'NAME=VALUE', text: 'Set a resource-control property of the container' }, handle: (st, v) => {
      const eq = req(v).indexOf('=');
      if (eq <= 0 || /\s/.test(req(v).slice(0, eq))) {
        fail(`Invalid --property= assignment: ${v}`, '--property= takes NAME=VALUE, e.g. --property=MemoryMax=512M', 'CFG_PROPERTY');
      }
      st.spec.properties.push({ name: req(v).slice(0, eq), value: req(v).slice(eq + 1) });
    },
  },
  {
    long: ['register'], arg: 'required', help: { section: 'Properties', value: 'BOOLEAN', text: 'Record the container in the machine registry\n(/run/nspawn-ts/machines; machinectl-ts reads it)' }, handle: (st, v) => {
      const b = parseBoolean(req(v));
      if (b === undefined) fail(`Failed to parse boolean argument to --register=: ${v}`, `--register= takes ${BOOLEAN_VALUES}`, 'CFG_REGISTER');
      st.spec.register = b;
    },
  },
  { long: ['keep-unit'], arg: 'none', help: { section: 'Properties', text: "Do not create a scope for the container; stay in\nthe caller's cgroup" }, handle: (st) => { st.spec.keepUnit = true; } },
  // User namespacing
  {
    long: ['private-users'], arg: 'optional', help: { section: 'User Namespacing', value: 'no|yes|pick|identity|UID[:COUNT]', text: 'Run within user namespace, configure UID/GID range' }, handle: (st, v) => {
      st.userns = parsePrivateUsers(v);
      st.explicit.add('userns');
    },
  },
  { long: ['private-users-chown'], arg: 'none', help: { section: 'User Namespacing', text: 'Adjust OS tree ownership to private UID/GID range' }, handle: (st) => { st.spec.privateUsersChown = true; st.explicit.add('userns'); } },
  {
    long: ['private-users-ownership'], arg: 'required', help: { section: 'User Namespacing', value: 'MODE', text: "Adjust ('chown') or map ('map') OS tree ownership\nto private UID/GID range (off, chown, map, auto)" }, handle: (st, v) => {
      const o = parsePrivateUsersOwnership(req(v));
      if (!o) fail(`Cannot parse --private-users-ownership= value: ${v}`, `--private-users-ownership= takes ${PRIVATE_USERS_OWNERSHIP.join(', ')}`, 'CFG_PRIVATE_USERS');
      st.spec.privateUsersOwnership = o;
      st.explicit.add('userns');
    },
  },
  {
    long: [], short: 'U', arg: 'none', help: { section: 'User Namespacing', text: 'Equivalent to --private-users=pick (ownership\nadjusted automatically), if the kernel supports it' }, handle: (st, _v, env) => {
      if (!env.userNamespacesSupported) return; // as systemd: silently nothing
      st.userns = { mode: 'pick' };
      st.explicit.add('userns');
    },
  },
  // Networking
  { long: ['private-network'], arg: 'none', help: { section: 'Networking', text: 'Disable network in container' }, handle: (st) => setNetwork(st) },
  {
    long: ['network-interface'], arg: 'required', help: { section: 'Networking', value: 'INTERFACE', text: 'Assign an existing network interface to the\ncontainer' }, handle: (st, v) => {
      st.spec.network.interfaces.push(checkIfname(req(v), 'Network interface name not valid'));
      setNetwork(st);
    },
  },
  {
    long: ['network-macvlan'], arg: 'required', help: { section: 'Networking', value: 'INTERFACE', text: 'Create a macvlan network interface based on an\nexisting network interface to the container' }, handle: (st, v) => {
      st.spec.network.macvlan.push(checkIfname(req(v), 'MACVLAN network interface name not valid'));
      setNetwork(st);
    },
  },
  {
    long: ['network-ipvlan'], arg: 'required', help: { section: 'Networking', value: 'INTERFACE', text: 'Create an ipvlan network interface based on an\nexisting network interface to the container' }, handle: (st, v) => {
      st.spec.network.ipvlan.push(checkIfname(req(v), 'IPVLAN network interface name not valid'));
      setNetwork(st);
    },
  },
  { long: ['network-veth'], short: 'n', arg: 'none', help: { section: 'Networking', text: 'Add a virtual Ethernet connection between host\nand container' }, handle: (st) => { st.spec.network.veth = true; setNetwork(st); } },
  {
    long: ['network-veth-extra'], arg: 'required', help: { section: 'Networking', value: 'HOSTIF[:CONTAINERIF]', text: 'Add an additional virtual Ethernet link between\nhost and container' }, handle: (st, v) => {
      st.spec.network.vethExtra.push(parseVethExtra(req(v)));
      setNetwork(st);
    },
  },
  {
    long: ['network-bridge'], arg: 'required', help: { section: 'Networking', value: 'INTERFACE', text: 'Add a virtual Ethernet connection to the container\nand attach it to an existing bridge on the host' }, handle: (st, v) => {
      st.spec.network.bridge = checkIfname(req(v), 'Bridge interface name not valid');
      st.spec.network.veth = true;
      setNetwork(st);
    },
  },
  {
    long: ['network-zone'], arg: 'required', help: { section: 'Networking', value: 'NAME', text: 'Similar, but attach the new interface to an\nautomatically managed bridge interface' }, handle: (st, v) => {
      st.spec.network.zone = checkZone(req(v));
      st.spec.network.veth = true;
      setNetwork(st);
    },
  },
  {
    long: ['network-namespace-path'], arg: 'required', help: { section: 'Networking', value: 'PATH', text: 'Set network namespace to the one represented by\nthe specified kernel namespace file node' }, handle: (st, v, env) => {
      const p = absolutePath(req(v), env);
      if (p === undefined) delete st.spec.network.namespacePath;
      else st.spec.network.namespacePath = p;
      st.explicit.add('network');
    },
  },
  {
    long: ['port'], short: 'p', arg: 'required', help: { section: 'Networking', value: '[PROTOCOL:]HOSTPORT[:CONTAINERPORT]', text: 'Expose a container IP port on the host' }, handle: (st, v) => {
      addPortSpec(st.spec.network.ports, req(v));
      st.explicit.add('expose-ports');
    },
  },
  { long: ['port-loopback'], arg: 'none', help: { section: 'Networking', text: 'Also forward the ports for connections to\n127.0.0.1 on the host (not in systemd-nspawn)' }, handle: (st) => { st.spec.network.portLoopback = true; } },
  {
    long: ['network-config'], arg: 'required', help: { section: 'Networking', value: 'auto|static|dhcp', text: 'How host0 gets its address: configured before the\ncommand starts (static), left to a DHCP client in\nthe container (dhcp), or static unless the\ncontainer boots (auto; not in systemd-nspawn)' }, handle: (st, v) => {
      if (v !== 'auto' && v !== 'static' && v !== 'dhcp') fail(`Failed to parse --network-config= argument: ${v}`, '--network-config= takes auto, static or dhcp', 'CFG_NETWORK');
      st.spec.network.config = v;
    },
  },
  // Integration
  {
    long: ['notify-ready'], arg: 'required', help: { section: 'Integration', value: 'BOOLEAN', text: 'Wait for the container to send READY=1 to\n/run/host/notify before reporting READY=1 to\n$NOTIFY_SOCKET' }, handle: (st, v) => {
      const b = parseBoolean(req(v));
      if (b === undefined) fail(`Failed to parse --notify-ready= argument: ${v}`, `--notify-ready= takes ${BOOLEAN_VALUES}`, 'CFG_NOTIFY_READY');
      st.spec.notifyReady = b;
      st.explicit.add('notify-ready');
    },
  },
  {
    long: ['resolv-conf'], arg: 'required', help: { section: 'Integration', value: 'MODE', text: 'Select mode of /etc/resolv.conf initialization\n(off, copy-host, copy-static, copy-uplink,\ncopy-stub, replace-*, bind-*, delete, auto)' }, handle: (st, v) => {
      const m = parseResolvConfMode(req(v));
      if (!m) fail(`Failed to parse /etc/resolv.conf mode: ${v}`, `--resolv-conf= takes ${RESOLV_CONF_MODES.join(', ')} (or yes = auto, no = off)`, 'CFG_RESOLV_CONF');
      st.spec.resolvConf = m;
      st.explicit.add('resolv-conf');
    },
  },
  {
    long: ['link-journal'], arg: 'required', help: { section: 'Integration', value: 'MODE', text: 'Link up guest journal, one of no, auto, guest,\nhost, try-guest, try-host' }, handle: (st, v) => {
      const m = parseLinkJournal(req(v));
      if (!m) fail(`Failed to parse link journal mode ${v}`, `--link-journal= takes ${LINK_JOURNAL_MODES.join(', ')}`, 'CFG_LINK_JOURNAL');
      st.spec.linkJournal = m;
      st.explicit.add('link-journal');
    },
  },
  { long: [], short: 'j', arg: 'none', help: { section: 'Integration', text: 'Equivalent to --link-journal=try-guest' }, handle: (st) => { st.spec.linkJournal = 'try-guest'; st.explicit.add('link-journal'); } },
  // Mounts
  {
    long: ['bind', 'bind-ro'], arg: 'required', help: [{ section: 'Mounts', value: 'PATH[:PATH[:OPTIONS]]', text: 'Bind mount a file or directory from the host into\nthe container (OPTIONS: rbind, norbind, idmap,\nnoidmap, rootidmap, owneridmap)' }, { long: 'bind-ro', section: 'Mounts', value: 'PATH[:PATH[:OPTIONS]]', text: 'Similar, but creates a read-only bind mount' }], handle: (st, v, _env, used) => {
      st.spec.binds.push(parseBindMount(req(v), used === 'bind-ro'));
      st.explicit.add('custom-mounts');
    },
  },
  {
    long: ['tmpfs'], arg: 'required', help: { section: 'Mounts', value: 'PATH:[OPTIONS]', text: 'Mount an empty tmpfs to the specified directory' }, handle: (st, v) => {
      st.spec.tmpfs.push(parseTmpfs(req(v)));
      st.explicit.add('custom-mounts');
    },
  },
  // Input/Output
  {
    long: ['console'], arg: 'required', help: { section: 'Input/Output', value: 'MODE', text: 'Select how stdin/stdout/stderr and /dev/console are\nset up for the container (interactive, read-only,\npassive, pipe, autopipe)' }, handle: (st, v) => {
      const m = parseConsoleMode(req(v));
      if (!m) fail(`Unknown console mode: ${v}`, `--console= takes ${CONSOLE_SETTINGS.join(', ')}`, 'CFG_CONSOLE');
      st.spec.console = m;
    },
  },
  { long: ['pipe'], short: 'P', arg: 'none', help: { section: 'Input/Output', text: 'Equivalent to --console=pipe' }, handle: (st) => { st.spec.console = 'pipe'; } },
];

/** nspawn-ts --help: made from the option table. */
export function helpText(): string {
  return formatHelp(OPTIONS);
}

/**
 * The option names of the table: `long` and `short` as --help lists them, `aliases` the further
 * long names of an entry that is one getopt value (--uid of --user), which --help does not list.
 */
export function optionNames(): { long: string[]; short: string[]; aliases: string[] } {
  return {
    long: OPTIONS.flatMap((d) => (d.aliases ? d.long.slice(0, 1) : d.long)),
    short: OPTIONS.flatMap((d) => (d.short !== undefined ? [d.short] : [])),
    aliases: OPTIONS.flatMap((d) => (d.aliases ? d.long.slice(1) : [])),
  };
}

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
