// machinectl-ts's command line, read as machinectl (systemd v252, src/machine/machinectl.c) reads
// its own: getopt_long with options anywhere (also after the verb), unique prefixes of long
// options, `--opt=value` and `--opt value`, short option groups (`-al`, `-sKILL`), `--` ending the
// options. `shell` is special: options are read up to the machine name only, so that everything
// after it belongs to the command run inside (`shell foo /bin/ls -l`).
//
// Every verb machinectl has is known: ours run, the others (image transfer, bind, copy-*) are
// refused by name. Bad input throws HintedConfigError (exit 1, nothing done).
import { HintedConfigError } from '../runtime/machine-name.js';
import { envAssignmentProblem, parseBoolean } from '../runtime/cli.js';
import { parseSignal } from '../runtime/signals.js';
import { helpEntry } from '../common/help.js';
import { optionsHelp, type OptionHelp } from '../runtime/cli-help.js';

export const PROGRAM = 'machinectl-ts';
export const VERSION = '0.1.0';

export type OutputMode =
  | 'short' | 'short-precise' | 'short-iso' | 'short-iso-precise' | 'short-full' | 'short-monotonic'
  | 'short-unix' | 'short-delta' | 'json' | 'json-pretty' | 'json-sse' | 'json-seq' | 'cat' | 'verbose'
  | 'export' | 'with-unit';

export const OUTPUT_MODES: readonly OutputMode[] = [
  'short', 'short-precise', 'short-iso', 'short-iso-precise', 'short-full', 'short-monotonic', 'short-unix',
  'short-delta', 'json', 'json-pretty', 'json-sse', 'json-seq', 'cat', 'verbose', 'export', 'with-unit',
];

export function isJsonMode(m: OutputMode): boolean {
  return m === 'json' || m === 'json-pretty' || m === 'json-sse' || m === 'json-seq';
}

export interface Signal {
  name: string;
  number: number;
}

export interface Options {
  /** -p/--property=NAME (show): only these */
  properties: string[];
  /** -a/--all: empty properties too; hidden (dot) images and machines too */
  all: boolean;
  /** --value: print only the values of properties */
  value: boolean;
  /** -l/--full */
  full: boolean;
  /** headers and footers of tables (--no-legend, and any JSON output, turn them off) */
  legend: boolean;
  /** --kill-whom= */
  killWhom?: 'leader' | 'all';
  /** -s/--signal= (default SIGTERM) */
  signal: Signal;
  signalGiven: boolean;
  /** --read-only (clone, import-*, pull-tar) */
  readOnly: boolean;
  /** --verify= (pull-tar); checksum when not given */
  verify?: 'no' | 'checksum';
  /** --format= (export-tar); default from the file name */
  format?: 'none' | 'gzip' | 'xz' | 'zstd' | 'bzip2';
  quiet: boolean;
  /** -o/--output= */
  output: OutputMode;
  /** --uid= (shell) */
  uid?: string;
  /** -E/--setenv= (shell), NAME=VALUE */
  setenv: string[];
  /** --max-addresses= (list); Infinity for "all" */
  maxAddresses: number;
  force: boolean;
  /** --runtime (set-property): change the running machine only, nothing persistent */
  runtime: boolean;
  verbose: boolean;
}

export type Verb =
  | 'list' | 'list-images' | 'status' | 'image-status' | 'show' | 'show-image' | 'terminate' | 'reboot'
  | 'poweroff' | 'kill' | 'login' | 'shell' | 'remove' | 'rename' | 'clone' | 'start' | 'enable' | 'disable'
  | 'set-property' | 'import-tar' | 'import-fs' | 'export-tar' | 'pull-tar' | 'install-units';

export type ParseResult =
  | { action: 'help'; text: string }
  | { action: 'version'; text: string }
  /** `-s help`, `-o help`: a list to print */
  | { action: 'list'; text: string }
  | { action: 'run'; verb: Verb; args: string[]; options: Options };

interface VerbDef {
  /** minimum and maximum number of words including the verb (systemd's dispatch_verb); Infinity = any */
  min: number;
  max: number;
  /** the verb the name stands for (`stop` is `poweroff`) */
  alias?: Verb;
  /** its words and options, for "usage:" hints; --help shows it without the options */
  usage: string;
  /** its lines in --help (an alias has none) */
  help?: { section: string; text: string };
}

const VERBS: Record<string, VerbDef> = {
  list: { min: 1, max: 1, usage: 'list', help: { section: 'Machine Commands', text: 'List running machines' } },
  status: { min: 2, max: Infinity, usage: 'status NAME...', help: { section: 'Machine Commands', text: 'Show machine details: leader, root, network,\nOS, resources, processes' } },
  show: { min: 1, max: Infinity, usage: 'show [NAME...]', help: { section: 'Machine Commands', text: 'Show properties of one or more machines' } },
  start: { min: 2, max: Infinity, usage: 'start NAME...', help: { section: 'Machine Commands', text: "Start a machine from its image: as\nnspawn-ts@NAME.service where systemd is PID 1,\nelse detached with that unit's options" } },
  login: { min: 1, max: 2, usage: 'login NAME', help: { section: 'Machine Commands', text: 'Get a login prompt in a machine (runs its getty)' } },
  shell: { min: 1, max: Infinity, usage: 'shell [[USER@]NAME [COMMAND...]]', help: { section: 'Machine Commands', text: 'Invoke a shell (or other command) in a machine' } },
  enable: { min: 2, max: Infinity, usage: 'enable NAME...', help: { section: 'Machine Commands', text: 'Start a machine at boot (needs systemd as PID 1)' } },
  disable: { min: 2, max: Infinity, usage: 'disable NAME...', help: { section: 'Machine Commands', text: 'Do not start a machine at boot' } },
  'install-units': { min: 1, max: 2, usage: 'install-units [DIRECTORY]', help: { section: 'Machine Commands', text: 'Install nspawn-ts@.service and nspawn-netd.service\nfor this installation (default\n/etc/systemd/system)' } },
  poweroff: { min: 2, max: Infinity, usage: 'poweroff NAME...', help: { section: 'Machine Commands', text: 'Power off one or more machines' } },
  reboot: { min: 2, max: Infinity, usage: 'reboot NAME...', help: { section: 'Machine Commands', text: 'Reboot one or more machines' } },
  terminate: { min: 2, max: Infinity, usage: 'terminate NAME...', help: { section: 'Machine Commands', text: 'Terminate one or more machines' } },
  kill: { min: 2, max: Infinity, usage: 'kill NAME... [--signal=SIGNAL] [--kill-whom=leader|all]', help: { section: 'Machine Commands', text: 'Send a signal to processes of a machine' } },
  'set-property': { min: 3, max: Infinity, usage: 'set-property [--runtime] NAME PROPERTY=VALUE...', help: { section: 'Machine Commands', text: 'Set resource limits (MemoryMax=, MemoryHigh=,\nMemoryLow=, MemorySwapMax=, CPUQuota=,\nCPUQuotaPeriodSec=, CPUWeight=, TasksMax=)' } },
  'list-images': { min: 1, max: 1, usage: 'list-images', help: { section: 'Image Commands', text: 'Show available container images' } },
  'image-status': { min: 1, max: Infinity, usage: 'image-status [NAME...]', help: { section: 'Image Commands', text: 'Show image details' } },
  'show-image': { min: 1, max: Infinity, usage: 'show-image [NAME...]', help: { section: 'Image Commands', text: 'Show properties of images' } },
  clone: { min: 3, max: 3, usage: 'clone NAME NEWNAME [--read-only]', help: { section: 'Image Commands', text: 'Clone an image' } },
  rename: { min: 3, max: 3, usage: 'rename NAME NEWNAME', help: { section: 'Image Commands', text: 'Rename an image' } },
  remove: { min: 2, max: Infinity, usage: 'remove NAME...', help: { section: 'Image Commands', text: 'Remove an image' } },
  'import-tar': { min: 2, max: 3, usage: 'import-tar FILE|- [NAME] [--read-only] [--force]', help: { section: 'Image Transfer Commands', text: 'Import a tar archive (.tar, .gz, .xz, .zst, .bz2)' } },
  'import-fs': { min: 2, max: 3, usage: 'import-fs DIRECTORY [NAME] [--read-only] [--force]', help: { section: 'Image Transfer Commands', text: 'Import a directory tree' } },
  'export-tar': { min: 3, max: 3, usage: 'export-tar NAME FILE|- [--format=FORMAT]', help: { section: 'Image Transfer Commands', text: "Export an image as a tar archive, compressed\nas the file name's suffix says" } },
  'pull-tar': { min: 2, max: 3, usage: 'pull-tar URL [NAME] [--verify=checksum|no] [--read-only] [--force]', help: { section: 'Image Transfer Commands', text: 'Download a tar archive over HTTP(S) and import it' } },
  stop: { min: 2, max: Infinity, alias: 'poweroff', usage: 'stop NAME...' },
};

/** machinectl verbs we do not implement, refused by name. */
const SYSTEMD_ONLY_VERBS = [
  'bind', 'copy-to', 'copy-from', 'read-only', 'set-limit', 'clean', 'import-raw', 'export-raw', 'pull-raw',
  'list-transfers', 'cancel-transfer',
];

type ArgKind = 'none' | 'required';

interface OptionDef {
  long: string;
  short?: string;
  arg: ArgKind;
  /** its lines in --help, or why it is not listed */
  help: OptionHelp | { unlisted: string };
  handle: (st: State, value: string | undefined, used: string) => void;
}

interface State {
  options: Options;
  help: boolean;
  version: boolean;
  list?: string;
}

const SEE_HELP = `Run '${PROGRAM} --help' for the verbs and options it supports.`;

function fail(message: string, hint: string = SEE_HELP, code = 'CFG_INVALID_OPTION'): never {
  throw new HintedConfigError(message, hint, code);
}

function req(v: string | undefined): string {
  return v as string; // the parser guarantees a value for 'required' options
}

/** safe_atou(): a non-negative decimal that fits 32 bits. */
function parseUnsigned(s: string): number | undefined {
  if (!/^\s*\+?[0-9]+$/.test(s)) return undefined;
  const n = Number(s.trim());
  return Number.isSafeInteger(n) && n <= 0xffffffff ? n : undefined;
}

/** Signal names for `--signal=help` (systemd prints its signal table). */
export function signalList(): string {
  const out: string[] = [];
  for (let n = 1; n <= 64; n++) {
    const s = parseSignal(String(n));
    if (s) out.push(s.name.replace(/^SIG/, ''));
  }
  return out.join('\n') + '\n';
}

const OPTIONS: OptionDef[] = [
  { long: 'help', short: 'h', arg: 'none', help: { text: 'Show this help' }, handle: (st) => { st.help = true; } },
  { long: 'version', arg: 'none', help: { text: 'Show package version' }, handle: (st) => { st.version = true; } },
  { long: 'no-pager', arg: 'none', help: { text: 'Accepted; there is no pager' }, handle: () => { /* there is no pager */ } },
  { long: 'no-legend', arg: 'none', help: { text: 'Do not show the headers and footers' }, handle: (st) => { st.options.legend = false; } },
  {
    long: 'property', short: 'p', arg: 'required', help: { value: 'NAME', text: 'Show only properties by this name' }, handle: (st, v) => {
      // systemd: a property asked for is shown even when empty
      st.options.properties.push(...req(v).split(',').filter((p) => p !== ''));
    },
  },
  { long: 'quiet', short: 'q', arg: 'none', help: { text: 'Suppress output (and transfer progress)' }, handle: (st) => { st.options.quiet = true; } },
  { long: 'all', short: 'a', arg: 'none', help: { text: 'Show all properties, including empty ones;\nlist hidden images too' }, handle: (st) => { st.options.all = true; } },
  { long: 'value', arg: 'none', help: { text: 'When showing properties, only print the value' }, handle: (st) => { st.options.value = true; } },
  { long: 'full', short: 'l', arg: 'none', help: { text: 'Do not ellipsize output' }, handle: (st) => { st.options.full = true; } },
  {
    long: 'kill-whom', arg: 'required', help: { value: 'WHOM', text: 'Whom to send the signal to (leader, all)' }, handle: (st, v) => {
      const w = req(v);
      if (w !== 'leader' && w !== 'all') fail(`Invalid --kill-whom= value: ${w}`, "allowed: 'leader' (the container's PID 1) or 'all' (every process of the container)");
      st.options.killWhom = w;
    },
  },
  {
    long: 'signal', short: 's', arg: 'required', help: { value: 'SIGNAL', text: "Which signal to send ('help' lists them)" }, handle: (st, v) => {
      const s = req(v);
      if (s === 'help') {
        st.list = signalList();
        return;
      }
      const sig = parseSignal(s);
      if (!sig) fail(`Unknown signal: ${s}`, "a signal name (SIGTERM, TERM, RTMIN+4) or number 1-64; '--signal=help' lists them", 'CFG_INVALID_SIGNAL');
      st.options.signal = sig;
      st.options.signalGiven = true;
    },
  },
  {
    long: 'uid', arg: 'required', help: { value: 'USER', text: 'Specify user ID to invoke shell as' }, handle: (st, v) => {
      const u = req(v);
      if (u === '') fail('--uid= needs a user name or number.');
      st.options.uid = u;
    },
  },
  {
    long: 'setenv', short: 'E', arg: 'required', help: { value: 'VAR[=VALUE]', text: 'Add an environment variable for shell' }, handle: (st, v) => {
      let a = req(v);
      // strv_env_replace_strdup_passthrough(): a bare NAME takes its value from our environment
      if (!a.includes('=')) {
        if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(a)) fail(`Cannot assign environment variable ${a}: invalid name`, 'NAME=VALUE, or NAME alone to pass on the value it has here');
        const val = process.env[a];
        if (val === undefined) return; // systemd passes nothing for an unset variable
        a = `${a}=${val}`;
      }
      const problem = envAssignmentProblem(a);
      if (problem) fail(`Cannot assign environment variable ${a}: ${problem}`, 'NAME=VALUE');
      const name = a.slice(0, a.indexOf('=') + 1);
      st.options.setenv = st.options.setenv.filter((e) => !e.startsWith(name));
      st.options.setenv.push(a);
    },
  },
  { long: 'read-only', arg: 'none', help: { text: 'Create a read-only image (clone, import, pull)' }, handle: (st) => { st.options.readOnly = true; } },
  { long: 'force', arg: 'none', help: { text: 'Replace an image of the same name (import, pull)' }, handle: (st) => { st.options.force = true; } },
  {
    long: 'verify', arg: 'required', help: { value: 'MODE', text: "pull-tar: 'checksum' (SHA256SUMS next to the file,\nthe default) or 'no'" }, handle: (st, v) => {
      const m = req(v);
      if (m === 'signature') fail('--verify=signature is not supported by machinectl-ts (no GnuPG keyring is kept).', "use --verify=checksum (SHA256SUMS next to the file) or --verify=no", 'CFG_UNSUPPORTED_OPTION');
      if (m !== 'no' && m !== 'checksum') fail(`Unknown verification mode: ${m}`, "allowed: 'checksum' (SHA256SUMS next to the file, the default) or 'no'");
      st.options.verify = m;
    },
  },
  {
    long: 'format', arg: 'required', help: { value: 'FORMAT', text: 'export-tar: uncompressed, gzip, xz, zstd, bzip2' }, handle: (st, v) => {
      const f = req(v);
      const formats: Record<string, NonNullable<Options['format']>> = { uncompressed: 'none', gzip: 'gzip', xz: 'xz', zstd: 'zstd', bzip2: 'bzip2' };
      const format = formats[f];
      if (format === undefined) fail(`Unknown format: ${f}`, `allowed: ${Object.keys(formats).join(', ')}`);
      st.options.format = format;
    },
  },
  {
    long: 'max-addresses', arg: 'required', help: { value: 'INTEGER', text: 'Number of internet addresses to show at most' }, handle: (st, v) => {
      const s = req(v);
      if (s === 'all') {
        st.options.maxAddresses = Infinity;
        return;
      }
      const n = parseUnsigned(s);
      if (n === undefined) fail(`Invalid number of addresses: ${s}`, "a non-negative integer or 'all'");
      st.options.maxAddresses = n;
    },
  },
  {
    long: 'output', short: 'o', arg: 'required', help: { value: 'STRING', text: 'Output mode; json, json-pretty, json-seq and\njson-sse print tables as JSON' }, handle: (st, v) => {
      const o = req(v);
      if (o === 'help') {
        st.list = OUTPUT_MODES.join('\n') + '\n';
        return;
      }
      if (!(OUTPUT_MODES as readonly string[]).includes(o)) fail(`Unknown output '${o}'.`, `allowed: ${OUTPUT_MODES.join(', ')}`);
      st.options.output = o as OutputMode;
      if (isJsonMode(st.options.output)) st.options.legend = false;
    },
  },
  { long: 'runtime', arg: 'none', help: { text: 'set-property: change the running machine only\n(otherwise also stored and applied at each start)' }, handle: (st) => { st.options.runtime = true; } },
  { long: 'verbose', short: 'v', arg: 'none', help: { text: 'Log what is done' }, handle: (st) => { st.options.verbose = true; } },
  { long: 'no-ask-password', arg: 'none', help: { unlisted: "accepted for machinectl's sake: nothing asks for passwords" }, handle: () => { /* nothing asks for passwords */ } },
  {
    long: 'host', short: 'H', arg: 'required', help: { unlisted: 'refused by name (this host only)' }, handle: () => {
      fail('Option -H/--host= of machinectl is not supported by machinectl-ts: it manages the machines of this host only.', SEE_HELP, 'CFG_UNSUPPORTED_OPTION');
    },
  },
  {
    long: 'machine', short: 'M', arg: 'required', help: { unlisted: 'refused by name (this host only)' }, handle: () => {
      fail('Option -M/--machine= of machinectl is not supported by machinectl-ts: it manages the machines of this host only.', SEE_HELP, 'CFG_UNSUPPORTED_OPTION');
    },
  },
  {
    long: 'mkdir', arg: 'none', help: { unlisted: "refused by name (the 'bind' verb's)" }, handle: () => {
      fail("Option --mkdir of machinectl is not supported by machinectl-ts (it belongs to the 'bind' verb, which is not implemented).", SEE_HELP, 'CFG_UNSUPPORTED_OPTION');
    },
  },
  {
    long: 'lines', short: 'n', arg: 'required', help: { unlisted: 'checked as machinectl checks it; there is no journal to show' }, handle: (_st, v) => {
      // there is no journal to show lines of; the value is still checked as systemd checks it
      if (parseUnsigned(req(v)) === undefined) fail(`Failed to parse lines '${req(v)}'`, 'a non-negative integer');
    },
  },
];

function findLong(name: string): { def: OptionDef; used: string } {
  const exact = OPTIONS.find((d) => d.long === name);
  if (exact) return { def: exact, used: name };
  const matches = name === '' ? [] : OPTIONS.filter((d) => d.long.startsWith(name));
  if (matches.length === 1 && matches[0]) return { def: matches[0], used: matches[0].long };
  if (matches.length > 1) fail(`Option '--${name}' is ambiguous; possibilities: ${matches.map((m) => `'--${m.long}'`).join(' ')}`, SEE_HELP, 'CFG_UNKNOWN_OPTION');
  return fail(`Unknown option '--${name}'.`, SEE_HELP, 'CFG_UNKNOWN_OPTION');
}

function findShort(c: string): OptionDef {
  const def = OPTIONS.find((d) => d.short === c);
  if (!def) fail(`Unknown option '-${c}'.`, SEE_HELP, 'CFG_UNKNOWN_OPTION');
  return def;
}

export function defaultOptions(): Options {
  return {
    properties: [], all: false, value: false, full: false, legend: true, signal: { name: 'SIGTERM', number: 15 },
    signalGiven: false, readOnly: false, quiet: false, output: 'short', setenv: [], maxAddresses: 1, force: false,
    runtime: false, verbose: false,
  };
}

/**
 * Parses argv (without the program name). Options may come before or after the verb, except that
 * for `shell` everything after the machine name is the command.
 */
export function parseArgs(argv: readonly string[]): ParseResult {
  const st: State = { options: defaultOptions(), help: false, version: false };
  const words: string[] = [];
  let shellAt = -1; // index in `words` of the verb "shell", while we look for its machine name
  let i = 0;
  const takeRest = (): void => {
    words.push(...argv.slice(i));
    i = argv.length;
  };
  while (i < argv.length) {
    const a = argv[i] as string;
    if (a === '--') {
      i++;
      takeRest();
      break;
    }
    if (!a.startsWith('-') || a === '-') {
      i++;
      words.push(a);
      if (words.length === 1 && a === 'shell') shellAt = 0;
      else if (shellAt >= 0 && words.length === 2) {
        // shell's machine name: the rest is the command and its arguments, options included
        takeRest();
        break;
      }
      continue;
    }
    i++;
    if (a.startsWith('--')) {
      const eq = a.indexOf('=');
      const name = eq >= 0 ? a.slice(2, eq) : a.slice(2);
      const { def, used } = findLong(name);
      let value: string | undefined;
      if (eq >= 0) {
        if (def.arg === 'none') fail(`Option '--${used}' doesn't allow an argument.`);
        value = a.slice(eq + 1);
      } else if (def.arg === 'required') {
        if (i >= argv.length) fail(`Option '--${used}' requires an argument.`);
        value = argv[i++];
      }
      def.handle(st, value, used);
    } else {
      for (let j = 1; j < a.length; j++) {
        const c = a[j] as string;
        const def = findShort(c);
        if (def.arg === 'none') {
          def.handle(st, undefined, c);
          continue;
        }
        let value: string;
        if (j + 1 < a.length) value = a.slice(j + 1);
        else if (i < argv.length) value = argv[i++] as string;
        else return fail(`Option '-${c}' requires an argument.`);
        def.handle(st, value, c);
        break;
      }
    }
    // like getopt in systemd's parse_argv(), --help and --version act as soon as they are read
    if (st.help) return { action: 'help', text: helpText() };
    if (st.version) return { action: 'version', text: `${PROGRAM} ${VERSION} (machinectl of nspawn-ts)\n` };
    if (st.list !== undefined) return { action: 'list', text: st.list };
  }

  const verbWord = words[0] ?? 'list';
  if (verbWord === 'help') return { action: 'help', text: helpText() };
  const def = VERBS[verbWord];
  if (!def) {
    if (SYSTEMD_ONLY_VERBS.includes(verbWord)) {
      fail(`Verb '${verbWord}' of machinectl is not supported by ${PROGRAM}.`, SEE_HELP, 'CFG_UNSUPPORTED_VERB');
    }
    fail(`Unknown command verb '${verbWord}'.`, SEE_HELP, 'CFG_UNKNOWN_VERB');
  }
  const count = Math.max(words.length, 1);
  if (count < def.min) fail(`Too few arguments for '${verbWord}'.`, usageOf(verbWord), 'CFG_ARGUMENTS');
  if (count > def.max) fail(`Too many arguments for '${verbWord}'.`, usageOf(verbWord), 'CFG_ARGUMENTS');
  const verb = (def.alias ?? verbWord) as Verb;
  const o = st.options;
  if (o.killWhom !== undefined && verb !== 'kill') fail(`--kill-whom= applies to 'kill' only.`, usageOf(verbWord));
  if (o.signalGiven && verb !== 'kill') fail(`--signal= applies to 'kill' only (${verbWord} sends the signal machinectl uses for it).`, usageOf(verbWord));
  if ((o.uid !== undefined || o.setenv.length > 0) && verb !== 'shell') {
    fail(verb === 'login' ? "--setenv= and --uid= are not supported for 'login'. Use 'shell' instead." : `--uid= and --setenv= apply to 'shell' only.`, usageOf(verbWord));
  }
  if (o.runtime && verb !== 'set-property') fail(`--runtime applies to 'set-property' only.`, usageOf(verbWord));
  const landing = ['clone', 'import-tar', 'import-fs', 'pull-tar'];
  if (o.readOnly && !landing.includes(verb)) fail(`--read-only applies to 'clone', 'import-tar', 'import-fs' and 'pull-tar' only.`, usageOf(verbWord));
  if (o.verify !== undefined && verb !== 'pull-tar') fail(`--verify= applies to 'pull-tar' only.`, usageOf(verbWord));
  if (o.format !== undefined && verb !== 'export-tar') fail(`--format= applies to 'export-tar' only.`, usageOf(verbWord));
  return { action: 'run', verb, args: words.slice(1), options: o };
}

function usageOf(verb: string): string {
  return `usage: ${PROGRAM} ${VERBS[verb]?.usage ?? verb}`;
}

/** What --help lists of the tables (for tests): options and verbs, unlisted options and aliases aside. */
export function listedNames(): { long: string[]; short: string[]; verbs: string[] } {
  const listed = OPTIONS.filter((d) => !('unlisted' in d.help));
  return {
    long: listed.map((d) => d.long),
    short: listed.flatMap((d) => (d.short !== undefined ? [d.short] : [])),
    verbs: Object.entries(VERBS).flatMap(([name, d]) => (d.help ? [name] : [])),
  };
}

/** The verb part of --help: each verb (aliases aside) under its heading, as the table has them. */
function verbsHelp(): string {
  const sections = new Map<string, string[]>();
  for (const def of Object.values(VERBS)) {
    if (!def.help) continue;
    const lines = sections.get(def.help.section) ?? [];
    sections.set(def.help.section, lines);
    lines.push(...helpEntry(`  ${def.usage.replace(/ \[--[^\]]*\]/g, '')}`, def.help.text, 30));
  }
  return [...sections].map(([section, lines]) => `${section}:\n${lines.map((l) => `${l}\n`).join('')}`).join('\n');
}

export function helpText(): string {
  return `${PROGRAM} [OPTIONS...] COMMAND ...

Send control commands to or query the machines that nspawn-ts runs, and manage
their images in /var/lib/machines.

${verbsHelp()}
Options:
${optionsHelp(OPTIONS, 30)}
Environment: NSPAWN_TS_RUN_DIR (machine records, default /run/nspawn-ts),
NSPAWN_TS_MACHINES_DIR (images, default /var/lib/machines),
NSPAWN_TS_PROPERTIES_DIR (stored properties, default /etc/systemd/nspawn-ts).
`;
}

/** `USER@NAME` of shell: systemd refuses "@NAME" like ssh does. */
export function parseMachineUser(spec: string | undefined, uid: string | undefined): { machine: string; user?: string } {
  if (spec === undefined || spec === '') return uid === undefined ? { machine: '.host' } : { machine: '.host', user: uid };
  const at = spec.indexOf('@');
  if (at === 0) fail(`Failed to parse machine specification '${spec}': no user before '@'`, 'USER@NAME or NAME', 'CFG_ARGUMENTS');
  if (at > 0) {
    const machine = spec.slice(at + 1);
    return { machine: machine === '' ? '.host' : machine, user: spec.slice(0, at) };
  }
  return uid === undefined ? { machine: spec } : { machine: spec, user: uid };
}

export { parseBoolean };
