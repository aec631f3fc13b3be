// Persistent properties (`machinectl-ts set-property NAME …` without --runtime): one file per
// machine in unit-file syntax, applied at each start under what the command line gives.
import { mkdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ConfigError, NspawnError } from '../errors.js';
import { readBoundedText } from './bounded-read.js';
import {
  formatProperties, mergeProperties, parseProperties, parsePropertyValue, setAssignment, type ResourceProperties,
} from './properties.js';

/**
 * Where persistent properties live: $NSPAWN_TS_PROPERTIES_DIR, else /etc/systemd/nspawn-ts (next
 * to systemd's /etc/systemd/nspawn/*.nspawn; systemd keeps its own in /etc/systemd/system.control).
 * One file per machine, NAME.properties, in unit-file syntax under [Resources].
 */
export function propertiesDir(dir?: string): string {
  return dir ?? process.env.NSPAWN_TS_PROPERTIES_DIR ?? '/etc/systemd/nspawn-ts';
}

function propertiesFile(name: string, dir?: string): string {
  if (!name || name.length > 255 || name.includes('/') || name.includes('\0') || name === '.' || name === '..') {
    throw new ConfigError(`machine name '${name}' cannot name a properties file (1–255 characters, no '/')`, { code: 'CFG_MACHINE_NAME' });
  }
  return join(propertiesDir(dir), `${name}.properties`);
}

/** Reads a machine's persistent properties ({} when it has none). A bad file is a ConfigError naming the line. */
export function loadProperties(name: string, opts: { dir?: string } = {}): ResourceProperties {
  const file = propertiesFile(name, opts.dir);
  let text: string | undefined;
  try {
    // bounded: a symlink, FIFO or device there, or a huge file or line, is refused (bounded-read.ts)
    text = readBoundedText(file, { what: 'properties file' });
  } catch (err) {
    throw new NspawnError('PROPERTIES_READ', `cannot read ${file}: ${(err as Error).message}`, { cause: err });
  }
  if (text === undefined) return {};
  const out: ResourceProperties = {};
  let section = '';
  text.split('\n').forEach((raw, i) => {
    const line = raw.trim();
    if (line === '' || line.startsWith('#') || line.startsWith(';')) return;
    const where = `${file}:${i + 1}`;
    const sec = /^\[(.*)\]$/.exec(line);
    if (sec) {
      section = sec[1]!;
      if (section !== 'Resources') throw new ConfigError(`${where}: unknown section [${section}] (only [Resources])`, { code: 'CFG_PROPERTY_FILE' });
      return;
    }
    if (section !== 'Resources') throw new ConfigError(`${where}: assignment outside [Resources]`, { code: 'CFG_PROPERTY_FILE' });
    const eq = line.indexOf('=');
    if (eq <= 0) throw new ConfigError(`${where}: expected NAME=VALUE, got '${line}'`, { code: 'CFG_PROPERTY_FILE' });
    setAssignment(out, parsePropertyValue(line.slice(0, eq).trim(), line.slice(eq + 1).trim(), where));
  });
  return out;
}

/**
 * Stores `props` on top of the machine's persistent properties (set-property semantics: each named
 * property replaced, the others kept), atomically (temporary file + rename). Returns the result.
 */
export function saveProperties(name: string, props: ResourceProperties, opts: { dir?: string } = {}): ResourceProperties {
  const file = propertiesFile(name, opts.dir);
  const merged = mergeProperties(loadProperties(name, opts), props);
  const text = [
    `# Resource properties of machine ${name}, written by machinectl-ts set-property.`,
    '# Applied at every start of the machine, over --property= options.',
    '[Resources]',
    ...formatProperties(merged),
    '',
  ].join('\n');
  const tmp = `${file}.${process.pid}.tmp`;
  try {
    mkdirSync(propertiesDir(opts.dir), { recursive: true, mode: 0o755 });
    writeFileSync(tmp, text, { mode: 0o644 });
    renameSync(tmp, file);
  } catch (err) {
    rmSync(tmp, { force: true });
    throw new NspawnError('PROPERTIES_WRITE', `cannot write ${file}: ${(err as Error).message}`, { cause: err });
  }
  return merged;
}

/** Forgets a machine's persistent properties (true if there were any). */
export function removeProperties(name: string, opts: { dir?: string } = {}): boolean {
  const file = propertiesFile(name, opts.dir);
  try {
    rmSync(file);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw new NspawnError('PROPERTIES_WRITE', `cannot remove ${file}: ${(err as Error).message}`, { cause: err });
  }
}

/** Moves a machine's persistent properties to a new name (an image rename); false if it had none. */
export function renameProperties(name: string, newName: string, opts: { dir?: string } = {}): boolean {
  const from = propertiesFile(name, opts.dir);
  const to = propertiesFile(newName, opts.dir);
  try {
    renameSync(from, to);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw new NspawnError('PROPERTIES_WRITE', `cannot rename ${from} to ${to}: ${(err as Error).message}`, { cause: err });
  }
}

/** What a start applies: the command line's --property= values, then the persistent ones over them. */
export function startProperties(name: string, cli: ReadonlyArray<string | { name: string; value: string }>, opts: { dir?: string } = {}): ResourceProperties {
  return mergeProperties(parseProperties(cli), loadProperties(name, opts));
}
