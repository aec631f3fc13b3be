// Machine names: validation as systemd-nspawn's -M/--machine= does it (hostname_is_valid(name, 0),
// src/basic/hostname-util.c), and the default name derived from the container's directory
// (determine_names() in src/nspawn/nspawn.c: basename → hostname_cleanup → must then be valid;
// `-D /` takes the host's hostname; ephemeral machines get a random `-%016x` suffix).
import { ConfigError } from '../errors.js';
import { HOST_NAME_MAX, hostnameCleanup, machineNameValid } from '../net/naming.js';

/** HOST_NAME_MAX on Linux. */
export const MACHINE_NAME_MAX = HOST_NAME_MAX;

const LDH = /^[A-Za-z0-9]$/;

// Validity (hostname_is_valid) and hostname_cleanup live with the other systemd naming rules in
// src/net/naming.ts; this module adds the launcher's messages and the default-name logic.
export { machineNameValid, hostnameCleanup };

/** Why `name` is not a valid machine name (for the hint under the error); undefined if it is. */
export function machineNameProblem(name: string): string | undefined {
  if (machineNameValid(name)) return undefined;
  if (name.length === 0) return 'it is empty';
  if (name.length > MACHINE_NAME_MAX) return `it is longer than ${MACHINE_NAME_MAX} characters`;
  if (name === '.host') return '".host" is reserved for the host itself';
  const bad = [...name].find((c) => c !== '.' && c !== '-' && !LDH.test(c));
  if (bad !== undefined) return `${JSON.stringify(bad)} is not allowed (only ASCII letters, digits, '-' and '.')`;
  return "each dot-separated label must be non-empty and must not start or end with '-'";
}

/** What a machine name may look like, for hints. */
export const MACHINE_NAME_RULES =
  `a machine name has 1-${MACHINE_NAME_MAX} characters: ASCII letters, digits, '-' and '.', ` +
  "in dot-separated labels that are non-empty and do not start or end with '-'";

/** A ConfigError that also says, on a line of its own, what would have been accepted. */
export class HintedConfigError extends ConfigError {
  readonly hint: string | undefined;

  constructor(message: string, hint?: string, code = 'CFG_INVALID') {
    super(message, { code });
    this.hint = hint;
  }
}

/** Throws systemd's exact error, `Invalid machine name: NAME`, with the reason as the hint. */
export function requireMachineName(name: string): string {
  const problem = machineNameProblem(name);
  if (problem === undefined) return name;
  throw new HintedConfigError(`Invalid machine name: ${name}`, `${problem}; ${MACHINE_NAME_RULES}`, 'CFG_MACHINE_NAME');
}

/**
 * The machine name systemd-nspawn picks when -M is not given: the directory's last component made
 * valid by hostnameCleanup(); for `/` the host's hostname. Throws systemd's message when nothing
 * usable remains.
 */
export function defaultMachineName(directory: string, hostname: () => string): string {
  const trimmed = directory.replace(/\/+$/, '');
  const base = trimmed === '' ? hostnameCleanup(hostname()) : hostnameCleanup(trimmed.slice(trimmed.lastIndexOf('/') + 1));
  if (!machineNameValid(base)) {
    throw new HintedConfigError('Failed to determine machine name automatically, please use -M.',
      `the name is taken from the directory's name (${JSON.stringify(directory)}); ${MACHINE_NAME_RULES}`, 'CFG_MACHINE_NAME');
  }
  return base;
}

/** `NAME-%016x`: the random suffix systemd-nspawn gives ephemeral machines without -M. */
export function ephemeralMachineName(base: string, random64: () => bigint): string {
  return `${base}-${random64().toString(16).padStart(16, '0')}`;
}
