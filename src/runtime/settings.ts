// .nspawn settings files: lookup, trust, INI parsing and merging into the LaunchSpec, as
// systemd-nspawn v252 does it (load_settings/merge_settings in src/nspawn/nspawn.c,
// src/nspawn/nspawn-settings.c, nspawn-gperf.gperf, config_parse() in src/shared/conf-parser.c).
//
// Lookup of NAME.nspawn: /etc/systemd/nspawn/, then /run/systemd/nspawn/ (first hit wins, trusted),
// else next to the root directory (DIR/../NAME.nspawn, untrusted; not for -D /). --settings=trusted
// trusts every file, --settings=no reads none. A setting the command line gave wins over the file,
// unless --settings=override. An untrusted file cannot add mounts, networking, ports, user
// namespaces or journal links: those settings are ignored with a warning.
//
// Where systemd only warns about a bad value and goes on, we stop with an error naming file, line
// and what is allowed (a typo should not silently give a different container); unknown keys and
// sections stay warnings, and so do systemd keys that nspawn-ts does not implement.
import { dirname, isAbsolute, join, normalize } from 'node:path';
import { errorMessage } from '../errors.js';
import { BoundedReadError, readBoundedText } from './bounded-read.js';
import { addPortSpec, PortSpecError } from '../net/port-spec.js';
import {
  BOOLEAN_VALUES, LINK_JOURNAL_MODES, parsePrivateUsersOwnership, RESOLV_CONF_MODES, checkIfname, checkZone, envAssignmentProblem, parseBindMount,
  parseBoolean, parseLinkJournal, parsePrivateUsers, parseResolvConfMode, parseTmpfs, parseVethExtra,
  setEnv, verifyLaunchSpec, type CommandLine, type LinkJournal, type SettingGroup,
} from './cli.js';
import { HintedConfigError, machineNameValid } from './machine-name.js';
import { parseSignal } from './signals.js';
import { PRIVATE_USERS_OWNERSHIP } from './spec.js';
import type {
  BindMount, LaunchSpec, PrivateUsersOwnership, PortForward, PrivateUsers, ResolvConfMode, TmpfsMount, VethExtra,
} from './spec.js';

/** What one .nspawn file sets; a field is undefined when the file does not mention it. */
export interface NspawnSettings {
  // [Exec]
  startMode?: LaunchSpec['mode'];
  parameters?: string[];
  ephemeral?: boolean;
  environment?: string[];
  user?: string;
  workingDirectory?: string;
  hostname?: string;
  privateUsers?: PrivateUsers;
  killSignal?: string;
  resolvConf?: ResolvConfMode;
  linkJournal?: LinkJournal;
  notifyReady?: boolean;
  // [Files]
  privateUsersChown?: boolean;
  privateUsersOwnership?: PrivateUsersOwnership;
  /** Bind=, BindReadOnly= and TemporaryFileSystem= together: systemd's "custom mounts" */
  binds?: BindMount[];
  tmpfs?: TmpfsMount[];
  // [Network]
  private?: boolean;
  virtualEthernet?: boolean;
  vethExtra?: VethExtra[];
  bridge?: string;
  zone?: string;
  macvlan?: string[];
  ipvlan?: string[];
  interfaces?: string[];
  ports?: PortForward[];
}

export interface SettingsFile {
  path: string;
  trusted: boolean;
  settings: NspawnSettings;
}

export interface SettingsLookup {
  /** the admin directories, in order; default /etc/systemd/nspawn, /run/systemd/nspawn */
  searchDirs?: readonly string[];
  /** reads a file, undefined if it does not exist (tests replace it; default: the filesystem) */
  readFile?: (path: string, admin: boolean) => string | undefined;
}

export const SETTINGS_DIRS = ['/etc/systemd/nspawn', '/run/systemd/nspawn'];

/** Warnings go here (file:line: message); the default logs them. */
export type Warn = (message: string) => void;

/**
 * A settings file's text, undefined if it does not exist; bounded (bounded-read.ts): never a
 * symlink next to the image (in the admin's directories a link is the admin's), never a FIFO or
 * device, at most 4 MiB and lines of at most 1 MiB ("Line too long", as systemd).
 */
function readFileIfExists(path: string, admin = false): string | undefined {
  try {
    return readBoundedText(path, { what: 'settings file', followSymlink: admin });
  } catch (e) {
    if (e instanceof BoundedReadError) throw new HintedConfigError(e.message, undefined, 'CFG_SETTINGS_FILE');
    throw e;
  }
}

/**
 * Finds NAME.nspawn for a machine whose root is `directory`. `trustAll` is --settings=trusted.
 * Returns the path, its text and whether it is trusted, or undefined.
 */
export function findSettingsFile(
  name: string, directory: string, trustAll: boolean, lookup: SettingsLookup = {},
): { path: string; text: string; trusted: boolean } | undefined {
  const read = lookup.readFile ?? readFileIfExists;
  const file = `${name}.nspawn`;
  for (const dir of lookup.searchDirs ?? SETTINGS_DIRS) {
    const path = join(dir, file);
    const text = read(path, true);
    if (text !== undefined) return { path, text, trusted: true };
  }
  const dir = normalize(directory).replace(/\/+$/, '');
  if (dir === '') return undefined; // -D /: no file "next to" the root file system
  const path = join(dirname(dir), file);
  const text = read(path, false);
  return text === undefined ? undefined : { path, text, trusted: trustAll };
}

// ---------------------------------------------------------------------------------------------
// INI parsing (config_parse)

interface Assignment {
  section: string;
  key: string;
  value: string;
  line: number;
}

const SECTIONS = ['Exec', 'Files', 'Network'];

/**
 * Splits a file into assignments as systemd's config_parse(): '#' and ';' start comment lines (also
 * inside a continuation), a line ending in an unescaped '\' continues on the next one (the
 * backslash becomes a space), keys and values are stripped, "X-" sections and keys are ignored.
 * Unknown sections warn; lines that are not assignments are errors.
 */
export function parseIni(text: string, path: string, warn: Warn, each?: (a: Assignment) => void): Assignment[] {
  const out: Assignment[] = [];
  const lines = text.split('\n');
  let section: string | undefined;
  let skipSection = false;
  let continuation: string | undefined;
  let startLine = 0;
  for (let n = 0; n < lines.length; n++) {
    let raw = lines[n] as string;
    if (raw.endsWith('\r')) raw = raw.slice(0, -1);
    const lead = raw.trimStart();
    if (lead.startsWith('#') || lead.startsWith(';')) continue;
    if (continuation === undefined) startLine = n + 1;
    let escaped = false;
    for (const c of raw) escaped = !escaped && c === '\\';
    if (escaped) {
      continuation = (continuation ?? '') + raw.slice(0, -1) + ' ';
      if (n + 1 < lines.length) continue;
      raw = '';
    }
    const l = ((continuation ?? '') + raw).trim();
    continuation = undefined;
    const where = `${path}:${startLine}`;
    if (l === '') continue;
    if (l.startsWith('[')) {
      if (!l.endsWith(']') || l.length < 3) {
        throw new HintedConfigError(`${where}: Invalid section header '${l}'`, `a section header is [Exec], [Files] or [Network]`, 'CFG_SETTINGS_SYNTAX');
      }
      section = l.slice(1, -1);
      skipSection = !SECTIONS.includes(section);
      if (skipSection && !section.startsWith('X-')) warn(`${where}: Unknown section '${section}'. Ignoring.`);
      continue;
    }
    if (section === undefined) {
      throw new HintedConfigError(`${where}: Assignment outside of section: ${l}`, 'put settings under [Exec], [Files] or [Network]', 'CFG_SETTINGS_SYNTAX');
    }
    if (skipSection) continue;
    const eq = l.indexOf('=');
    if (eq < 0) {
      throw new HintedConfigError(`${where}: Missing '=' in "${l}"`, 'a setting is written KEY=VALUE', 'CFG_SETTINGS_SYNTAX');
    }
    const key = l.slice(0, eq).trim();
    if (key.startsWith('X-')) continue;
    const a = { section, key, value: l.slice(eq + 1).trim(), line: startLine };
    out.push(a);
    each?.(a); // handled in file order, so warnings and errors come in the order of the lines
  }
  return out;
}

/**
 * systemd's extract_first_word(…, EXTRACT_UNQUOTE|EXTRACT_RETAIN_ESCAPE) in a loop, as
 * config_parse_strv() uses it: whitespace-separated words, '…' and "…" quoting, backslash escapes
 * kept as written.
 */
export function splitWords(s: string): string[] {
  const words: string[] = [];
  let i = 0;
  while (i < s.length) {
    while (i < s.length && /\s/.test(s[i] as string)) i++;
    if (i >= s.length) break;
    let w = '';
    while (i < s.length && !/\s/.test(s[i] as string)) {
      const c = s[i] as string;
      if (c === '\\') {
        if (i + 1 >= s.length) throw new Error('a trailing backslash escapes nothing');
        w += c + s[i + 1];
        i += 2;
      } else if (c === '"' || c === "'") {
        const end = s.indexOf(c, i + 1);
        if (end < 0) throw new Error(`unterminated ${c} quote`);
        w += s.slice(i + 1, end);
        i = end + 1;
      } else {
        w += c;
        i++;
      }
    }
    words.push(w);
  }
  return words;
}

// ---------------------------------------------------------------------------------------------
// Keys

type KeyParser = (s: NspawnSettings, value: string, ctx: { where: string; warn: Warn }) => void;

function bad(where: string, key: string, value: string, allowed: string): never {
  throw new HintedConfigError(`${where}: Invalid ${key}= value: ${value}`, `${key}= takes ${allowed}`, 'CFG_SETTINGS_VALUE');
}

function bool(key: string, set: (s: NspawnSettings, v: boolean) => void): KeyParser {
  return (s, value, { where }) => {
    const b = parseBoolean(value);
    if (b === undefined) bad(where, key, value, `a boolean (${BOOLEAN_VALUES})`);
    set(s, b);
  };
}

function startMode(key: 'Boot' | 'ProcessTwo', mode: 'boot' | 'as-pid2'): KeyParser {
  const other = mode === 'boot' ? 'as-pid2' : 'boot';
  return (s, value, { where }) => {
    const b = parseBoolean(value);
    if (b === undefined) bad(where, key, value, `a boolean (${BOOLEAN_VALUES})`);
    if (b ? s.startMode === other : s.startMode === mode) {
      throw new HintedConfigError(`${where}: Conflicting Boot= or ProcessTwo= setting found.`, 'Boot=yes (run init as PID 1) and ProcessTwo=yes (stub init, command as PID 2) exclude each other', 'CFG_SETTINGS_VALUE');
    }
    if (b) s.startMode = mode;
    else s.startMode ??= 'command';
  };
}

/** Runs one of the command-line parsers and re-throws its error prefixed with file:line. */
function at<T>(where: string, fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    if (e instanceof HintedConfigError) throw new HintedConfigError(`${where}: ${e.message}`, e.hint, e.code);
    if (e instanceof PortSpecError) throw new HintedConfigError(`${where}: ${e.message}`, undefined, e.code);
    throw e;
  }
}

function ifnameList(key: string, field: 'macvlan' | 'ipvlan' | 'interfaces', what: string): KeyParser {
  return (s, value, { where }) => {
    if (value === '') {
      s[field] = [];
      return;
    }
    const list = s[field] ?? [];
    for (const w of value.split(/\s+/)) list.push(at(where, () => checkIfname(w, `${key}=: ${what}`)));
    s[field] = list;
  };
}

const KEYS: Record<string, Record<string, KeyParser>> = {
  Exec: {
    Boot: startMode('Boot', 'boot'),
    ProcessTwo: startMode('ProcessTwo', 'as-pid2'),
    Ephemeral: bool('Ephemeral', (s, v) => { s.ephemeral = v; }),
    Parameters: (s, value, { where }) => {
      s.parameters = value === '' ? [] : [...(s.parameters ?? []), ...at(where, () => words(value))];
    },
    Environment: (s, value, { where }) => {
      if (value === '') {
        s.environment = [];
        return;
      }
      const env = s.environment ?? [];
      for (const a of at(where, () => words(value))) {
        const problem = envAssignmentProblem(a);
        if (problem) bad(where, 'Environment', a, `NAME=VALUE assignments: ${problem}`);
        setEnv(env, a);
      }
      s.environment = env;
    },
    User: (s, value, { where }) => {
      // eslint-disable-next-line no-control-regex
      if (/[\x00-\x1f\x7f]/.test(value)) bad(where, 'User', value, 'a user name or UID without control characters');
      if (value === '') delete s.user;
      else s.user = value;
    },
    WorkingDirectory: (s, value, { where }) => {
      if (value === '') {
        delete s.workingDirectory;
        return;
      }
      // config_parse_path(): absolute and normalized (no "." or ".." components, no "//")
      if (!isAbsolute(value) || value.includes('//') || value.split('/').some((c) => c === '.' || c === '..')) bad(where, 'WorkingDirectory', value, 'an absolute, normalized path inside the container');
      s.workingDirectory = value;
    },
    Hostname: (s, value, { where }) => {
      if (value === '') delete s.hostname;
      else if (!machineNameValid(value)) bad(where, 'Hostname', value, "a hostname: 1-64 ASCII letters, digits, '-' and '.', in labels that do not start or end with '-'");
      else s.hostname = value;
    },
    PrivateUsers: (s, value, { where }) => { s.privateUsers = at(where, () => parsePrivateUsers(value, 'PrivateUsers=')); },
    KillSignal: (s, value, { where }) => {
      const sig = parseSignal(value);
      if (!sig) bad(where, 'KillSignal', value, 'a signal name (SIGTERM, TERM, SIGRTMIN+3) or number 1-64');
      s.killSignal = sig.name;
    },
    ResolvConf: (s, value, { where }) => {
      const m = parseResolvConfMode(value);
      if (!m) bad(where, 'ResolvConf', value, `${RESOLV_CONF_MODES.join(', ')} (or yes = auto, no = off)`);
      s.resolvConf = m;
    },
    NotifyReady: bool('NotifyReady', (s, v) => { s.notifyReady = v; }),
    LinkJournal: (s, value, { where }) => {
      const m = parseLinkJournal(value);
      if (!m) bad(where, 'LinkJournal', value, LINK_JOURNAL_MODES.join(', '));
      s.linkJournal = m;
    },
  },
  Files: {
    Bind: (s, value, { where }) => {
      if (value === '') s.binds = (s.binds ?? []).filter((b) => b.readOnly);
      else (s.binds ??= []).push(at(where, () => parseBindMount(value, false, 'Bind=')));
    },
    BindReadOnly: (s, value, { where }) => {
      if (value === '') s.binds = (s.binds ?? []).filter((b) => !b.readOnly);
      else (s.binds ??= []).push(at(where, () => parseBindMount(value, true, 'BindReadOnly=')));
    },
    TemporaryFileSystem: (s, value, { where }) => {
      if (value === '') s.tmpfs = [];
      else (s.tmpfs ??= []).push(at(where, () => parseTmpfs(value, 'TemporaryFileSystem=')));
    },
    PrivateUsersChown: bool('PrivateUsersChown', (s, v) => { s.privateUsersChown = v; }),
    PrivateUsersOwnership: (s, value, { where }) => {
      const o = parsePrivateUsersOwnership(value);
      if (!o) bad(where, 'PrivateUsersOwnership', value, PRIVATE_USERS_OWNERSHIP.join(', '));
      s.privateUsersOwnership = o;
    },
  },
  Network: {
    Private: bool('Private', (s, v) => { s.private = v; }),
    VirtualEthernet: bool('VirtualEthernet', (s, v) => { s.virtualEthernet = v; }),
    VirtualEthernetExtra: (s, value, { where }) => {
      if (value === '') s.vethExtra = [];
      else (s.vethExtra ??= []).push(at(where, () => parseVethExtra(value, 'VirtualEthernetExtra=')));
    },
    Bridge: (s, value, { where }) => {
      if (value === '') delete s.bridge;
      else s.bridge = at(where, () => checkIfname(value, 'Bridge=: interface name not valid'));
    },
    Zone: (s, value, { where }) => {
      if (value === '') delete s.zone;
      else s.zone = at(where, () => checkZone(value));
    },
    Interface: ifnameList('Interface', 'interfaces', 'network interface name not valid'),
    MACVLAN: ifnameList('MACVLAN', 'macvlan', 'network interface name not valid'),
    IPVLAN: ifnameList('IPVLAN', 'ipvlan', 'network interface name not valid'),
    Port: (s, value, { where, warn }) => {
      if (value === '') {
        s.ports = [];
        return;
      }
      const list = s.ports ?? [];
      try {
        addPortSpec(list, value);
      } catch (e) {
        // systemd: a duplicate Port= in a file is a warning, the first mapping stays
        if (e instanceof PortSpecError && e.reason === 'EEXIST') {
          warn(`${where}: Duplicate port specification, ignoring: ${value}`);
        } else {
          at(where, () => { throw e; });
        }
      }
      s.ports = list;
    },
  },
};

function words(value: string): string[] {
  try {
    return splitWords(value);
  } catch (e) {
    throw new HintedConfigError(errorMessage(e), 'quote with "…" or \'…\'', 'CFG_SETTINGS_VALUE');
  }
}

/** systemd keys (v252) nspawn-ts does not implement: a warning, not an error. */
const UNSUPPORTED: Record<string, readonly string[]> = {
  Exec: ['Capability', 'AmbientCapability', 'DropCapability', 'Personality', 'MachineID',
    'SystemCallFilter', 'NoNewPrivileges', 'OOMScoreAdjust', 'CPUAffinity', 'Timezone', 'SuppressSync', 'PivotRoot',
    'LimitCPU', 'LimitFSIZE', 'LimitDATA', 'LimitSTACK', 'LimitCORE', 'LimitRSS', 'LimitNOFILE', 'LimitAS', 'LimitNPROC',
    'LimitMEMLOCK', 'LimitLOCKS', 'LimitSIGPENDING', 'LimitMSGQUEUE', 'LimitNICE', 'LimitRTPRIO', 'LimitRTTIME'],
  Files: ['ReadOnly', 'Volatile', 'Inaccessible', 'Overlay', 'OverlayReadOnly', 'BindUser'],
  Network: [],
};

/** Parses the text of a .nspawn file. Throws HintedConfigError with "PATH:LINE: …"; warns via `warn`. */
export function parseSettings(text: string, path: string, warn: Warn): NspawnSettings {
  const s: NspawnSettings = {};
  parseIni(text, path, warn, (a) => {
    const where = `${path}:${a.line}`;
    const parser = KEYS[a.section]?.[a.key];
    if (parser) {
      parser(s, a.value, { where, warn });
    } else if (UNSUPPORTED[a.section]?.includes(a.key)) {
      warn(`${where}: ${a.key}= in section [${a.section}] is not supported by nspawn-ts, ignoring.`);
    } else {
      warn(`${where}: Unknown key name '${a.key}' in section '${a.section}', ignoring.`);
    }
  });
  // Parameters= without Boot=/ProcessTwo= is the command to run
  if (s.parameters !== undefined && s.startMode === undefined) s.startMode = 'command';
  return s;
}

// ---------------------------------------------------------------------------------------------
// Merge

function networkConfigured(s: NspawnSettings): boolean {
  return s.private !== undefined || s.virtualEthernet !== undefined || s.bridge !== undefined || s.zone !== undefined
    || s.interfaces !== undefined || s.macvlan !== undefined || s.ipvlan !== undefined || s.vethExtra !== undefined;
}

/**
 * merge_settings(): copies what the file sets into a copy of `spec`, except groups in `explicit`
 * (set on the command line); privileged settings of an untrusted file are ignored with a warning.
 */
export function mergeSettings(input: LaunchSpec, explicit: ReadonlySet<SettingGroup>, file: SettingsFile, warn: Warn): LaunchSpec {
  const spec: LaunchSpec = structuredClone(input);
  const s = file.settings;
  const open = (g: SettingGroup): boolean => !explicit.has(g);
  const untrusted = (what: string): void => warn(`Ignoring ${what}, file ${file.path} is not trusted.`);

  if (open('start-mode') && s.startMode !== undefined) {
    spec.mode = s.startMode;
    spec.command = s.parameters ?? [];
  }
  if (open('ephemeral') && s.ephemeral !== undefined) spec.ephemeral = s.ephemeral;
  if (open('working-directory') && s.workingDirectory !== undefined) spec.chdir = s.workingDirectory;
  if (open('environment') && s.environment !== undefined) spec.environment = s.environment;
  if (open('user') && s.user !== undefined) spec.user = s.user;
  if (open('kill-signal') && s.killSignal !== undefined) spec.killSignal = s.killSignal;
  if (open('custom-mounts') && ((s.binds?.length ?? 0) > 0 || (s.tmpfs?.length ?? 0) > 0)) {
    if (!file.trusted) untrusted('TemporaryFileSystem=, Bind= and BindReadOnly= settings');
    else {
      spec.binds = s.binds ?? [];
      spec.tmpfs = s.tmpfs ?? [];
    }
  }
  if (open('network') && networkConfigured(s)) {
    if (!file.trusted) untrusted('network settings');
    else {
      const net = spec.network;
      net.veth = s.virtualEthernet === true || s.bridge !== undefined || s.zone !== undefined;
      net.private = s.private === true || net.veth || (s.interfaces?.length ?? 0) > 0 || (s.macvlan?.length ?? 0) > 0
        || (s.ipvlan?.length ?? 0) > 0 || (s.vethExtra?.length ?? 0) > 0;
      net.interfaces = s.interfaces ?? [];
      net.macvlan = s.macvlan ?? [];
      net.ipvlan = s.ipvlan ?? [];
      net.vethExtra = s.vethExtra ?? [];
      if (s.bridge !== undefined) net.bridge = s.bridge;
      else delete net.bridge;
      if (s.zone !== undefined) net.zone = s.zone;
      else delete net.zone;
      delete net.namespacePath;
    }
  }
  if (open('expose-ports') && s.ports !== undefined && s.ports.length > 0) {
    if (!file.trusted) untrusted('Port= setting');
    else spec.network.ports = s.ports;
  }
  if (open('userns') && (s.privateUsers !== undefined || s.privateUsersChown !== undefined || s.privateUsersOwnership !== undefined)) {
    if (!file.trusted) untrusted('PrivateUsers= and PrivateUsersChown= settings');
    else {
      // settings_load(): PrivateUsersChown= alone means PrivateUsers=no
      spec.privateUsers = s.privateUsers ?? { mode: 'no' };
      spec.privateUsersChown = s.privateUsersChown ?? spec.privateUsers.mode === 'pick';
      if (s.privateUsersOwnership !== undefined) spec.privateUsersOwnership = s.privateUsersOwnership;
      else delete spec.privateUsersOwnership;
    }
  }
  if (open('hostname') && s.hostname !== undefined) spec.hostname = s.hostname;
  if (open('resolv-conf') && s.resolvConf !== undefined) spec.resolvConf = s.resolvConf;
  if (open('link-journal') && s.linkJournal !== undefined) {
    if (!file.trusted) untrusted('journal link setting');
    else spec.linkJournal = s.linkJournal;
  }
  if (open('notify-ready') && s.notifyReady !== undefined) spec.notifyReady = s.notifyReady;
  spec.settingsFile = file.path;
  return spec;
}

/**
 * The whole of what happens between the command line and the launcher: find and parse the
 * settings file (unless --settings=no), merge it, verify the result. Throws ConfigError.
 */
export function resolveLaunchSpec(cl: CommandLine, opts: SettingsLookup & { warn?: Warn } = {}): LaunchSpec {
  const warn: Warn = opts.warn ?? ((m) => process.stderr.write(`warning: ${m}\n`));
  let spec = cl.spec;
  if (cl.settingsMode !== 'no') {
    const found = findSettingsFile(cl.settingsName, cl.spec.directory, cl.settingsMode === 'trusted', opts);
    if (found) {
      const settings = parseSettings(found.text, found.path, warn);
      spec = mergeSettings(spec, cl.explicit, { path: found.path, trusted: found.trusted || cl.settingsMode === 'trusted', settings }, warn);
    }
  }
  return verifyLaunchSpec(spec);
}
