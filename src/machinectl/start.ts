// start, enable, disable. machinectl starts systemd-nspawn@NAME.service; without a service
// manager to ask, start runs nspawn-ts itself with that unit's command line
//   --quiet --keep-unit --boot --link-journal=try-guest --network-veth -U --settings=override --machine=NAME
// (plus -D for the image found here, and the machine's stored set-property values as --property=),
// detached in a session of its own, its output appended to a log file, and waits until the machine
// is registered with its leader — or reports the launcher's failure with the end of that log.
//
// enable/disable install nspawn-ts@.service (the same command line) and its machines.target.wants
// link where systemd is PID 1; elsewhere there is nothing that would start it at boot, which is
// said plainly.
import { spawn } from 'node:child_process';
import {
  closeSync, existsSync, mkdirSync, openSync, readFileSync, readlinkSync, symlinkSync, unlinkSync, writeFileSync, writeSync,
} from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ConfigError } from '../errors.js';
import type { ImageStore } from '../runtime/images.js';
import { HintedConfigError, machineNameProblem, MACHINE_NAME_RULES } from '../runtime/machine-name.js';
import { formatProperties, loadProperties } from '../runtime/properties.js';
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

// ---------------------------------------------------------------------------------------------
// enable / disable

export interface BootSystem {
  /** sd_booted(): /run/systemd/system exists */
  systemdIsInit: () => boolean;
  /** what PID 1 is, for the message */
  pid1: () => string;
  unitDir: string;
  /** systemctl daemon-reload */
  reload: () => Promise<void>;
}

export function defaultBootSystem(): BootSystem {
  return {
    systemdIsInit: () => existsSync('/run/systemd/system'),
    pid1: () => {
      try {
        return readFileSync('/proc/1/comm', 'utf8').trim();
      } catch {
        return 'unknown';
      }
    },
    unitDir: '/etc/systemd/system',
    reload: () => new Promise((resolve, reject) => {
      const c = spawn('systemctl', ['daemon-reload'], { stdio: 'ignore' });
      c.on('error', reject);
      c.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`systemctl daemon-reload exited with status ${code}`))));
    }),
  };
}

export const TEMPLATE_UNIT = 'nspawn-ts@.service';

export function unitText(launcher: string): string {
  return `# Installed by machinectl-ts enable: nspawn-ts's systemd-nspawn@.service.
[Unit]
Description=Container %i (nspawn-ts)
Documentation=man:systemd-nspawn(1)
Wants=modprobe@tun.service modprobe@loop.service modprobe@dm_mod.service
PartOf=machines.target
Before=machines.target
After=network.target modprobe@tun.service modprobe@loop.service modprobe@dm_mod.service
RequiresMountsFor=/var/lib/machines/%i

[Service]
ExecStart=${launcher} ${UNIT_OPTIONS.join(' ')} --machine=%i
KillMode=mixed
RestartForceExitStatus=133
SuccessExitStatus=133
Slice=machine.slice
Delegate=yes
TasksMax=16384
DevicePolicy=closed
DeviceAllow=/dev/net/tun rwm
DeviceAllow=char-pts rw
DeviceAllow=block-loop rw
DeviceAllow=block-blkext rw
DeviceAllow=/dev/loop-control rw
DeviceAllow=block-device-mapper rw
DeviceAllow=/dev/mapper/control rw

[Install]
WantedBy=machines.target
`;
}

function requireSystemd(sys: BootSystem, verb: string): void {
  if (sys.systemdIsInit()) return;
  const what = verb === 'enable' ? 'makes systemd start a machine at boot' : 'stops systemd from starting a machine at boot';
  throw new MachineError('NO_SYSTEMD', `Cannot ${verb} machines here: '${verb}' ${what}, but this system's PID 1 is ` +
    `'${sys.pid1()}', not systemd (/run/systemd/system does not exist). Start the machine from your init system's boot scripts ` +
    "with 'machinectl-ts start NAME' instead.");
}

function wantsLink(sys: BootSystem, name: string): string {
  return join(sys.unitDir, 'machines.target.wants', `nspawn-ts@${name}.service`);
}

export async function enableMachines(images: ImageStore, names: readonly string[], sys: BootSystem = defaultBootSystem(), env: NodeJS.ProcessEnv = process.env): Promise<string> {
  for (const n of names) {
    checkMachineName(n);
    if (!images.find(n)) throw new MachineError('IMAGE_NOT_FOUND', `Machine image '${n}' does not exist (looked in ${images.searchPath.join(', ')})`);
  }
  requireSystemd(sys, 'enable');
  const unit = join(sys.unitDir, TEMPLATE_UNIT);
  const text = unitText(launcherPath(env));
  const lines: string[] = [];
  let current: string | undefined;
  try {
    current = readFileSync(unit, 'utf8');
  } catch { /* not installed yet */ }
  if (current !== text) {
    mkdirSync(sys.unitDir, { recursive: true });
    writeFileSync(unit, text, { mode: 0o644 });
    lines.push(`Created ${unit}.`);
  }
  for (const n of names) {
    const link = wantsLink(sys, n);
    mkdirSync(join(sys.unitDir, 'machines.target.wants'), { recursive: true });
    let target: string | undefined;
    try {
      target = readlinkSync(link);
    } catch { /* none */ }
    if (target === `../${TEMPLATE_UNIT}`) continue;
    if (target !== undefined) unlinkSync(link);
    symlinkSync(`../${TEMPLATE_UNIT}`, link);
    lines.push(`Created symlink ${link} → ${unit}.`);
  }
  await sys.reload();
  return lines.join('\n');
}

export async function disableMachines(names: readonly string[], sys: BootSystem = defaultBootSystem()): Promise<string> {
  for (const n of names) checkMachineName(n);
  requireSystemd(sys, 'disable');
  const lines: string[] = [];
  for (const n of names) {
    const link = wantsLink(sys, n);
    try {
      unlinkSync(link);
      lines.push(`Removed ${link}.`);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw new ConfigError(`Cannot remove ${link}: ${(err as Error).message}`);
    }
  }
  await sys.reload();
  return lines.join('\n');
}
