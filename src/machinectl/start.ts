// start. machinectl starts systemd-nspawn@NAME.service; without a service
// manager to ask, start runs nspawn-ts itself with that unit's command line
//   --quiet --keep-unit --boot --link-journal=try-guest --network-veth -U --settings=override --machine=NAME
// (plus -D for the image found here, and the machine's stored set-property values as --property=),
// detached in a session of its own, its output appended to a log file, and waits until the machine
// is registered with its leader — or reports the launcher's failure with the end of that log.
//
// Where systemd is PID 1, start asks it to start nspawn-ts@NAME.service instead (units.ts).
import { spawn } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ImageStore } from '../runtime/images.js';
import { HintedConfigError, machineNameProblem, MACHINE_NAME_RULES } from '../runtime/machine-name.js';
import { formatProperties } from '../runtime/properties.js';
import { loadProperties } from '../runtime/property-store.js';
import type { MachineRegistry } from '../runtime/registry.js';
import { MachineError } from './control.js';

/** systemd-nspawn@.service's ExecStart= options (units/systemd-nspawn@.service.in, v252–v255). */
export const UNIT_OPTIONS = ['--quiet', '--keep-unit', '--boot', '--link-journal=try-guest', '--network-veth', '-U', '--settings=override'];

export function checkMachineName(name: string): void {
  const problem = machineNameProblem(name);
  if (problem !== undefined) throw new HintedConfigError(`Invalid machine name: ${name}`, `${problem}; ${MACHINE_NAME_RULES}`, 'CFG_MACHINE_NAME');
}

/**
 * bin/nspawn-ts of this installation ($NSPAWN_TS_LAUNCHER overrides): next to dist/ for the bundle
 * (dist/machinectl-ts.cjs, also in an installed package), two levels up for dist/machinectl/start.js.
 */
export function launcherPath(env: NodeJS.ProcessEnv = process.env): string {
  if (env.NSPAWN_TS_LAUNCHER) return env.NSPAWN_TS_LAUNCHER;
  const candidates = ['../bin/nspawn-ts', '../../bin/nspawn-ts'].map((p) => fileURLToPath(new URL(p, import.meta.url)));
  return candidates.find((p) => existsSync(p)) ?? (candidates[1] as string);
}

export function logDir(env: NodeJS.ProcessEnv = process.env): string {
  return env.NSPAWN_TS_LOG_DIR || '/var/log/nspawn-ts';
}

/** The launcher's arguments for `start NAME` of the image at `directory`. */
export function startArguments(name: string, directory: string, properties: readonly string[]): string[] {
  return [...UNIT_OPTIONS, `--machine=${name}`, `--directory=${directory}`, ...properties.map((p) => `--property=${p}`)];
}

function tail(file: string, lines: number): string {
  try {
    const text = readFileSync(file, 'utf8').trimEnd().split('\n');
    return text.slice(-lines).join('\n');
  } catch {
    return '';
  }
}

export interface StartOptions {
  quiet?: boolean;
  /** how long to wait for the machine to register its leader (default 60 s) */
  timeoutMs?: number;
  propertiesDir?: string;
  env?: NodeJS.ProcessEnv;
}

export async function startMachine(registry: MachineRegistry, images: ImageStore, name: string, opts: StartOptions = {}): Promise<{ launcherPid: number; logFile: string }> {
  checkMachineName(name);
  const running = registry.get(name);
  if (running) {
    throw new MachineError('MACHINE_EXISTS', `Machine '${name}' is already running (leader PID ${running.leader?.pid ?? '-'}, launcher PID ${running.launcher.pid})`);
  }
  const img = images.find(name);
  if (!img) throw new MachineError('IMAGE_NOT_FOUND', `Machine image '${name}' does not exist (looked in ${images.searchPath.join(', ')})`);
  if (img.type !== 'directory') {
    throw new MachineError('IMAGE_TYPE', `Machine image '${name}' is a ${img.type} image (${img.path}); nspawn-ts starts directory images only`);
  }
  const env = opts.env ?? process.env;
  const properties = formatProperties(loadProperties(name, opts.propertiesDir ? { dir: opts.propertiesDir } : {}));
  const args = startArguments(name, img.path, properties);
  const dir = logDir(env);
  mkdirSync(dir, { recursive: true, mode: 0o755 });
  const logFile = join(dir, `${name}.log`);
  const fd = openSync(logFile, 'a', 0o640);
  const bin = launcherPath(env);
  let child;
  try {
    writeSync(fd, `-- ${new Date().toISOString()} machinectl-ts start ${name}: ${bin} ${args.join(' ')}\n`);
    child = spawn(bin, args, { detached: true, stdio: ['ignore', fd, fd], env });
  } finally {
    closeSync(fd);
  }
  const pid = child.pid;
  let exited: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  let spawnError: Error | undefined;
  child.on('exit', (code, signal) => { exited = { code, signal }; });
  child.on('error', (err) => { spawnError = err; });
  child.unref();
  const deadline = Date.now() + (opts.timeoutMs ?? 60_000);
  for (;;) {
    await new Promise((r) => setTimeout(r, 50));
    if (spawnError) throw new MachineError('START_FAILED', `Could not run ${bin}: ${spawnError.message}`);
    const r = registry.get(name);
    if (r?.leader && r.launcher.pid === pid) return { launcherPid: pid ?? 0, logFile };
    if (exited) {
      const how = exited.signal ? `was killed by ${exited.signal}` : `exited with status ${exited.code}`;
      const out = tail(logFile, 15);
      throw new MachineError('START_FAILED', `Failed to start machine '${name}': nspawn-ts ${how}${out ? `; the end of ${logFile}:\n${out}` : ` (log: ${logFile})`}`);
    }
    if (Date.now() > deadline) {
      throw new MachineError('START_TIMEOUT', `Machine '${name}' did not come up within ${Math.round((opts.timeoutMs ?? 60_000) / 1000)} s (nspawn-ts PID ${pid} still runs; log: ${logFile})`);
    }
  }
}
