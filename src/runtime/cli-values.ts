// Value parsers of the command line, shared with the settings file (src/runtime/settings.ts), and
// how a bad value fails: a HintedConfigError naming the option and what is allowed.

import { isAbsolute } from 'node:path';
import { errorMessage } from '../errors.js';
import { ifnameProblem, ifnameValid, zoneNameValid, ZONE_NAME_MAX } from '../net/naming.js';
import { HintedConfigError } from './machine-name.js';
import {
  CONSOLE_SETTINGS, PRIVATE_USERS_OWNERSHIP, type BindMount, type ConsoleSetting, type PrivateUsersOwnership, type LaunchSpec, type PrivateUsers, type ResolvConfMode, type TmpfsMount,
} from './spec.js';

export const PROGRAM = 'nspawn-ts';
export const VERSION = '0.1.0';

// ---------------------------------------------------------------------------------------------
// Errors

export const SEE_HELP = `Run '${PROGRAM} --help' for the options ${PROGRAM} supports.`;

export function fail(message: string, hint?: string, code = 'CFG_INVALID_OPTION'): never {
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
