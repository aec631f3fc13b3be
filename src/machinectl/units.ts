// The systemd units of an installation, and the verbs that use them where systemd is PID 1:
//   nspawn-ts@.service   systemd-nspawn@.service's twin: starts /var/lib/machines/%i with the same
//                        options (start.ts's UNIT_OPTIONS), part of machines.target
//   nspawn-netd.service  the network sidecar
//   machines.target      systemd's own (shipped since v219); written only where systemd lacks it
// `machinectl-ts install-units [DIR]` writes them with this installation's paths (default
// /etc/systemd/system); `enable`/`disable` add and remove machines.target.wants links; `start`
// runs `systemctl start nspawn-ts@NAME.service`. Elsewhere (sd_booted() false: no
// /run/systemd/system) enable/disable say plainly that nothing would start the machine at boot, and
// start runs the launcher itself (start.ts).
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readlinkSync, renameSync, symlinkSync, unlinkSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { ConfigError } from '../errors.js';
import type { ImageStore } from '../runtime/images.js';
import { MachineError } from './control.js';
import { checkMachineName, launcherPath, UNIT_OPTIONS } from './start.js';

export interface BootSystem {
  /** sd_booted(): /run/systemd/system exists */
  systemdIsInit: () => boolean;
  /** what PID 1 is, for the message */
  pid1: () => string;
  unitDir: string;
  /** systemctl daemon-reload */
  reload: () => Promise<void>;
  /** systemctl with these arguments (start); rejects with what it said when it fails */
  systemctl?: (args: string[]) => Promise<void>;
}

function systemctl(args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const c = spawn('systemctl', args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    c.stderr?.on('data', (d: Buffer) => { err += d.toString(); });
    c.on('error', reject);
    c.on('exit', (code) => (code === 0 ? resolve() : reject(new MachineError('SYSTEMCTL', `systemctl ${args.join(' ')} failed (status ${code})${err.trim() ? `: ${err.trim()}` : ''}`))));
  });
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
    reload: () => systemctl(['daemon-reload']),
    systemctl,
  };
}

export const TEMPLATE_UNIT = 'nspawn-ts@.service';
export const NETD_UNIT = 'nspawn-netd.service';
export const MACHINES_TARGET = 'machines.target';
/** where systemd's own machines.target is, when the host has it */
const SYSTEM_UNIT_DIRS = ['/usr/lib/systemd/system', '/lib/systemd/system'];

/** bin/nspawn-netd of this installation ($NSPAWN_TS_NETD overrides): next to bin/nspawn-ts. */
export function netdPath(env: NodeJS.ProcessEnv = process.env): string {
  return env.NSPAWN_TS_NETD || join(dirname(launcherPath(env)), 'nspawn-netd');
}

export function unitText(launcher: string): string {
  return `# Installed by machinectl-ts (install-units, enable, start): nspawn-ts's systemd-nspawn@.service.
[Unit]
Description=Container %i (nspawn-ts)
Documentation=man:nspawn-ts(1) man:systemd-nspawn(1)
Wants=modprobe@tun.service modprobe@loop.service modprobe@dm_mod.service
PartOf=machines.target
Before=machines.target
After=network.target nspawn-netd.service modprobe@tun.service modprobe@loop.service modprobe@dm_mod.service
RequiresMountsFor=/var/lib/machines/%i

[Service]
ExecStart=${launcher} ${UNIT_OPTIONS.join(' ')} --machine=%i
KillMode=mixed
Type=notify
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

export function netdUnitText(netd: string): string {
  return `# Installed by machinectl-ts install-units: the nspawn-ts network sidecar — host-side networking for
# container links (ve-*, vz-*), also those systemd-nspawn creates: subnets, DHCP, masquerade. Do not
# run it next to systemd-networkd's 80-container-ve.network / 80-container-vz.network: both would
# configure the same links.
[Unit]
Description=nspawn-ts network sidecar (subnets, DHCP and masquerade for containers)
Documentation=man:nspawn-netd(8)
After=network-pre.target
Before=network.target machines.target
Wants=network-pre.target
ConditionPathExists=/proc/sys/net/ipv4/ip_forward

[Service]
Type=notify
NotifyAccess=main
ExecStart=${netd} --state-dir=/var/lib/nspawn-ts --socket=/run/nspawn-ts/netd.sock
# links stay configured when it stops; a restart picks them up again
KillMode=mixed
Restart=on-failure
RestartSec=1s
StateDirectory=nspawn-ts
RuntimeDirectory=nspawn-ts
RuntimeDirectoryPreserve=yes
RuntimeDirectoryMode=0755
# it needs CAP_NET_ADMIN (links, addresses, nftables), CAP_NET_RAW (DHCP's packet socket) and
# CAP_NET_BIND_SERVICE (port 67); nothing else
CapabilityBoundingSet=CAP_NET_ADMIN CAP_NET_RAW CAP_NET_BIND_SERVICE
NoNewPrivileges=yes
ProtectHome=yes
ProtectSystem=strict
ReadWritePaths=/var/lib/nspawn-ts /run/nspawn-ts /proc/sys/net/ipv4
PrivateTmp=yes
RestrictAddressFamilies=AF_UNIX AF_NETLINK AF_INET AF_INET6 AF_PACKET

[Install]
WantedBy=multi-user.target
`;
}

/** systemd's machines.target (units/machines.target), for hosts whose systemd lacks it. */
export function machinesTargetText(): string {
  return `# Installed by machinectl-ts install-units (this host's systemd has no machines.target).
[Unit]
Description=Containers
Documentation=man:systemd.special(7)
Before=multi-user.target
Wants=multi-user.target

[Install]
WantedBy=multi-user.target
`;
}

/** Writes `text` to `path` unless it is there already; true when it wrote. */
function writeUnit(path: string, text: string): boolean {
  let current: string | undefined;
  try {
    current = readFileSync(path, 'utf8');
  } catch { /* not installed yet */ }
  if (current === text) return false;
  mkdirSync(dirname(path), { recursive: true });
  const tmp = `${path}.${process.pid}.tmp`;
  writeFileSync(tmp, text, { mode: 0o644 });
  renameSync(tmp, path);
  return true;
}

export interface InstallUnitsOptions {
  env?: NodeJS.ProcessEnv;
  /** where systemd's own units are (machines.target is written only when none of them has it) */
  systemUnitDirs?: readonly string[];
}

/** Writes the units into `dir` with this installation's paths; the lines say what changed. */
export function writeUnits(dir: string, opts: InstallUnitsOptions = {}): string[] {
  const env = opts.env ?? process.env;
  const units: Array<[string, string]> = [[TEMPLATE_UNIT, unitText(launcherPath(env))], [NETD_UNIT, netdUnitText(netdPath(env))]];
  if (!(opts.systemUnitDirs ?? SYSTEM_UNIT_DIRS).some((d) => existsSync(join(d, MACHINES_TARGET)))) units.push([MACHINES_TARGET, machinesTargetText()]);
  const lines: string[] = [];
  for (const [name, text] of units) {
    const path = join(dir, name);
    if (writeUnit(path, text)) lines.push(`Created ${path}.`);
  }
  return lines;
}

/** install-units [DIR]: the units into DIR (the boot system's unit directory, then reloaded). */
export async function installUnits(dir: string | undefined, sys: BootSystem = defaultBootSystem(), opts: InstallUnitsOptions = {}): Promise<string> {
  const lines = writeUnits(dir ?? sys.unitDir, opts);
  if (lines.length === 0) lines.push(`The units in ${dir ?? sys.unitDir} are up to date.`);
  if (dir === undefined && sys.systemdIsInit()) await sys.reload();
  else if (dir === undefined) lines.push(`(systemd is not PID 1 here — PID 1 is '${sys.pid1()}' — so nothing was reloaded.)`);
  return lines.join('\n');
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
  const lines: string[] = [];
  if (writeUnit(unit, unitText(launcherPath(env)))) lines.push(`Created ${unit}.`);
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

/**
 * start where systemd is PID 1: nspawn-ts@NAME.service (the template written or updated first), as
 * machinectl starts systemd-nspawn@NAME.service.
 */
export async function startUnit(images: ImageStore, name: string, sys: BootSystem, env: NodeJS.ProcessEnv = process.env): Promise<string> {
  checkMachineName(name);
  if (!images.find(name)) throw new MachineError('IMAGE_NOT_FOUND', `Machine image '${name}' does not exist (looked in ${images.searchPath.join(', ')})`);
  if (writeUnit(join(sys.unitDir, TEMPLATE_UNIT), unitText(launcherPath(env)))) await sys.reload();
  const unit = `nspawn-ts@${name}.service`;
  await (sys.systemctl ?? systemctl)(['start', unit]);
  return unit;
}
