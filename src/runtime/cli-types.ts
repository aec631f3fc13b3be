// The command line's types: what parsing gives (cli-options.ts), the settings groups a .nspawn file
// may not override, and what the parser may ask of the machine.
import { existsSync, statSync } from 'node:fs';
import { hostname as osHostname } from 'node:os';
import { randomBytes } from 'node:crypto';
import type { LaunchSpec } from './spec.js';

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
