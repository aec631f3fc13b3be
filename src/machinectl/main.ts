// machinectl-ts: machinectl's verbs for the machines nspawn-ts runs (their records in the machine
// registry, src/runtime/registry.ts) and for the images in /var/lib/machines.
//
// Exit status: 0 on success, 1 with `machinectl-ts: MESSAGE` (and a hint line where one helps) for
// bad input, unknown machines and images, and failures; `shell` returns the command's status.
import { errorMessage, NspawnError } from '../errors.js';
import { logger, setLogLevel } from '../log.js';
import { ImageStore, readHostname, readMachineIdOf, readOsRelease } from '../runtime/images.js';
import { HintedConfigError } from '../runtime/machine-name.js';
import { removeProperties, renameProperties } from '../runtime/property-store.js';
import { MachineRegistry } from '../runtime/registry.js';
import { parseArgs, PROGRAM, type Options, type Verb } from './args.js';
import { killMachine, lookupMachine, shutdown, terminate } from './control.js';
import { signalName } from '../runtime/signals.js';
import { gatherInfo } from './info.js';
import { Proc } from './procfs.js';
import { setProperty } from './resources.js';
import { loginMachine, shellMachine } from './shell.js';
import { exportTar, importFs, importTar, type TransferIo } from './import-export.js';
import { pullTar } from './pull.js';
import { startMachine } from './start.js';
import { defaultBootSystem, disableMachines, enableMachines, installUnits, startUnit, type BootSystem } from './units.js';
import {
  imageProperties, machineProperties, renderImageStatus, renderImages, renderList, renderProperties, renderStatus,
  type RenderContext,
} from './view.js';

const log = logger('machinectl');

export interface Io {
  stdout: (text: string) => void;
  stderr: (text: string) => void;
}

export interface MainDeps {
  io?: Io;
  registry?: MachineRegistry;
  images?: ImageStore;
  proc?: Proc;
  /** µs since the epoch (tests fix it) */
  now?: () => number;
  timeZone?: string;
  /** where set-property stores properties (default: properties.ts's) */
  propertiesDir?: string;
  /** the service manager enable/disable talk to */
  boot?: BootSystem;
  /** stderr is a terminal (transfer progress as a bar); default: process.stderr's */
  tty?: boolean;
}

interface Ctx {
  io: Io;
  opts: Options;
  registry: MachineRegistry;
  images: ImageStore;
  proc: Proc;
  render: RenderContext;
  propertiesDir?: string;
  boot?: BootSystem;
  tty: boolean;
}

/** Host-side ifindexes of the machine's links, from the record. */
function ifindexes(r: { network?: { links?: Array<{ side: string; ifindex?: number }> } }): number[] {
  return (r.network?.links ?? []).filter((l) => l.side === 'host' && l.ifindex !== undefined).map((l) => l.ifindex as number);
}

/** µs since boot at which a process started (/proc/PID/stat start time, in clock ticks). */
function monotonicStart(startTime: string): number {
  return Number(BigInt(startTime) * 1_000_000n / 100n); // USER_HZ is 100 on Linux
}

async function runVerb(verb: Verb, args: string[], c: Ctx): Promise<number> {
  const { io, opts } = c;
  const say = (text: string): void => {
    if (!opts.quiet) io.stderr(text.endsWith('\n') ? text : text + '\n');
  };
  switch (verb) {
    case 'list': {
      const infos = await Promise.all(c.registry.list().map((r) => gatherInfo(r, { proc: c.proc })));
      io.stdout(renderList(infos, opts, c.render));
      return 0;
    }
    case 'status': {
      let first = true;
      for (const name of args) {
        const r = lookupMachine(c.registry, name);
        const info = await gatherInfo(r, { proc: c.proc, usage: true, processes: true });
        io.stdout((first ? '' : '\n') + renderStatus(info, c.render));
        first = false;
      }
      return 0;
    }
    case 'show': {
      if (args.length === 0) {
        io.stdout(renderProperties([['PoolPath', c.images.machinesDir]], opts));
        return 0;
      }
      let first = true;
      for (const name of args) {
        const r = lookupMachine(c.registry, name);
        const info = await gatherInfo(r, { proc: c.proc, usage: true });
        const machineId = r.leader ? readMachineIdOf(`${c.proc.root}/${r.leader.pid}/root`) : undefined;
        const props = machineProperties(info, {
          ...c.render,
          ...(machineId ? { machineId } : {}),
          ...(r.leader ? { monotonic: monotonicStart(r.leader.startTime) } : {}),
          ifindexes: ifindexes(r),
        });
        io.stdout((first ? '' : '\n') + renderProperties(props, opts));
        first = false;
      }
      return 0;
    }
    case 'poweroff':
    case 'reboot':
      for (const name of args) {
        const r = lookupMachine(c.registry, name);
        const sig = shutdown(r, verb, c.proc);
        log.debug(`${verb}: sent ${signalName(sig)} to the leader`, { machine: name, leader: r.leader?.pid });
      }
      return 0;
    case 'terminate':
      for (const name of args) {
        const r = lookupMachine(c.registry, name);
        const res = await terminate(r, { proc: c.proc });
        if (res.killed) say(`Machine '${name}' was killed, but its launcher (PID ${r.launcher.pid}${res.stuck ? `, ${res.stuck}` : ''}) did not end after SIGTERM and was killed with SIGKILL; what it set up is removed at the machine's next start.`);
      }
      return 0;
    case 'kill':
      for (const name of args) {
        const r = lookupMachine(c.registry, name);
        const n = killMachine(r, opts.killWhom ?? 'all', opts.signal.number, c.proc);
        log.debug(`kill: sent ${opts.signal.name} to ${n} process(es)`, { machine: name });
      }
      return 0;
    case 'shell':
      return shellMachine(c.registry, args, opts, { proc: c.proc });
    case 'login':
      return loginMachine(c.registry, args[0], opts, { proc: c.proc });
    case 'list-images':
      io.stdout(renderImages(c.images.list({ all: opts.all }), opts, c.render));
      return 0;
    case 'image-status': {
      const list = args.length > 0 ? args.map((n) => c.images.get(n)) : [];
      if (args.length === 0) {
        io.stdout(`\t    Path: ${c.images.machinesDir}\n`);
        return 0;
      }
      io.stdout(list.map((img) => {
        const root = c.images.rootOf(img);
        const facts = root === undefined ? { os: {} } : {
          os: readOsRelease(root),
          ...(readHostname(root) !== undefined ? { hostname: readHostname(root) as string } : {}),
          ...(readMachineIdOf(root) !== undefined ? { machineId: readMachineIdOf(root) as string } : {}),
        };
        return renderImageStatus(img, facts, c.render);
      }).join('\n'));
      return 0;
    }
    case 'show-image': {
      if (args.length === 0) {
        io.stdout(renderProperties([['PoolPath', c.images.machinesDir]], opts));
        return 0;
      }
      io.stdout(args.map((n) => renderProperties(imageProperties(c.images.get(n), c.render), opts)).join('\n'));
      return 0;
    }
    case 'remove':
      for (const name of args) {
        const res = await c.images.remove(name, (img) => machineUsing(c.registry, img.path, img.realPath, img.name));
        if (res.keptTarget !== undefined) say(`Removed the link ${res.removed}; the directory it pointed to, ${res.keptTarget}, was left in place.`);
        // its set-property settings go with it (systemd removes an image's .nspawn file likewise)
        removeProperties(name, c.propertiesDir ? { dir: c.propertiesDir } : {});
      }
      return 0;
    case 'rename':
      await c.images.rename(args[0] as string, args[1] as string, (img) => machineUsing(c.registry, img.path, img.realPath, img.name));
      renameProperties(args[0] as string, args[1] as string, c.propertiesDir ? { dir: c.propertiesDir } : {});
      return 0;
    case 'clone':
      await c.images.clone(args[0] as string, args[1] as string, { readOnly: opts.readOnly });
      return 0;
    case 'start':
      for (const name of args) {
        const sys = c.boot ?? defaultBootSystem();
        if (sys.systemdIsInit()) {
          // as machinectl asks systemd to start systemd-nspawn@NAME.service
          const unit = await startUnit(c.images, name, sys);
          say(`Started machine '${name}' as ${unit}.`);
          continue;
        }
        const res = await startMachine(c.registry, c.images, name, { quiet: opts.quiet, ...(c.propertiesDir ? { propertiesDir: c.propertiesDir } : {}) });
        say(`Started machine '${name}' (launcher PID ${res.launcherPid}); its output goes to ${res.logFile}.`);
      }
      return 0;
    case 'enable': {
      const out = await enableMachines(c.images, args, c.boot);
      if (out) say(out);
      return 0;
    }
    case 'disable': {
      const out = await disableMachines(args, c.boot);
      if (out) say(out);
      return 0;
    }
    case 'import-tar':
    case 'import-fs':
    case 'pull-tar': {
      const io = transferIo(c);
      const landing = {
        force: opts.force, readOnly: opts.readOnly, io, inUse: (img: { name: string; path: string; realPath: string }) => machineUsing(c.registry, img.path, img.realPath, img.name),
      };
      const [source, name] = args as [string, string | undefined];
      const path = verb === 'import-tar' ? await importTar(c.images, source, name, landing)
        : verb === 'import-fs' ? await importFs(c.images, source, name, landing)
          : await pullTar(c.images, source, name, { ...landing, verify: opts.verify ?? 'checksum' });
      say(`Imported image '${path.slice(path.lastIndexOf('/') + 1)}' as ${path}${opts.readOnly ? ' (read-only)' : ''}.`);
      return 0;
    }
    case 'export-tar': {
      const io = transferIo(c);
      await exportTar(c.images, args[0] as string, args[1] as string, { io, ...(opts.format ? { format: opts.format } : {}) });
      return 0;
    }
    case 'install-units': {
      say(await installUnits(args[0], c.boot ?? defaultBootSystem()));
      return 0;
    }
    case 'set-property': {
      const res = await setProperty(c.registry, c.images, args[0] as string, args.slice(1), {
        runtime: opts.runtime, ...(c.propertiesDir ? { propertiesDir: c.propertiesDir } : {}),
      });
      if (!res.runtime) say(`Machine '${args[0]}' is not running; the properties apply from its next start.`);
      return 0;
    }
  }
}

function transferIo(c: Ctx): TransferIo {
  return { stderr: c.io.stderr, tty: c.tty, quiet: c.opts.quiet, ...(process.stderr.columns ? { columns: process.stderr.columns } : {}) };
}

/** The running machine whose root is this image, if any (remove/rename refuse then). */
function machineUsing(registry: MachineRegistry, path: string, realPath: string, name: string): string | undefined {
  for (const r of registry.list()) {
    if (r.name === name || r.rootDirectory === path || r.rootDirectory === realPath) return r.name;
  }
  return undefined;
}

export function formatError(err: unknown): string {
  const lines = [`${PROGRAM}: ${errorMessage(err)}`];
  if (err instanceof HintedConfigError && err.hint) lines.push(`${PROGRAM}: ${err.hint}`);
  return lines.join('\n') + '\n';
}

export async function main(argv: readonly string[], deps: MainDeps = {}): Promise<number> {
  const io = deps.io ?? { stdout: (t) => process.stdout.write(t), stderr: (t) => process.stderr.write(t) };
  try {
    const parsed = parseArgs(argv);
    if (parsed.action !== 'run') {
      io.stdout(parsed.text);
      return 0;
    }
    if (parsed.options.verbose) setLogLevel('debug');
    const ctx: Ctx = {
      io,
      opts: parsed.options,
      registry: deps.registry ?? new MachineRegistry({ onPrune: (n, why) => log.debug('pruned a stale machine record', { machine: n, why }) }),
      images: deps.images ?? new ImageStore(),
      proc: deps.proc ?? new Proc(),
      render: { now: deps.now?.() ?? Date.now() * 1000, ...(deps.timeZone !== undefined ? { timeZone: deps.timeZone } : {}) },
      ...(deps.propertiesDir !== undefined ? { propertiesDir: deps.propertiesDir } : {}),
      ...(deps.boot !== undefined ? { boot: deps.boot } : {}),
      tty: deps.tty ?? process.stderr.isTTY === true,
    };
    return await runVerb(parsed.verb, parsed.args, ctx);
  } catch (err) {
    if (err instanceof NspawnError) {
      io.stderr(formatError(err));
      return 1;
    }
    io.stderr(`${PROGRAM}: internal error: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`);
    return 1;
  }
}
