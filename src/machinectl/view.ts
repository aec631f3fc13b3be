// The texts of list, status, show, list-images, image-status and show-image, from gathered facts
// (pure: every input is passed in, so tests check them byte for byte).
import type { Options } from './args.js';
import { isJsonMode } from './args.js';
import {
  bool, formatBytes, formatRelative, formatTimestamp, renderTable, renderTableJson, size, str, timestamp,
  type Cell, type Column,
} from './format.js';
import type { MachineAddress, MachineInfo } from './info.js';
import type { ProcessInfo } from './procfs.js';
import type { Image } from '../runtime/images.js';
import type { PortForward } from '../runtime/spec.js';

export interface RenderContext {
  /** µs since the epoch */
  now: number;
  timeZone?: string;
}

// ---------------------------------------------------------------------------------------------
// list

export function listColumns(opts: Options): Column[] {
  const cols: Column[] = [{ name: 'machine' }, { name: 'class' }, { name: 'service' }, { name: 'os' }, { name: 'version' }];
  if (opts.maxAddresses > 0) cols.push({ name: 'addresses' });
  return cols;
}

export function listRow(m: MachineInfo, opts: Options): Cell[] {
  const row = [str(m.name), str(m.class), str(m.service), str(m.os.ID), str(m.os.VERSION_ID)];
  if (opts.maxAddresses > 0) row.push(str(m.addresses.map((a) => a.address).join('\n')));
  return row;
}

export function renderList(machines: readonly MachineInfo[], opts: Options, ctx: RenderContext): string {
  const cols = listColumns(opts);
  const rows = machines.filter((m) => opts.all || !m.name.startsWith('.')).map((m) => listRow(m, opts));
  if (isJsonMode(opts.output)) return renderTableJson(cols, rows, opts.output);
  const cellHeightMax = opts.full || !Number.isFinite(opts.maxAddresses) ? undefined : opts.maxAddresses;
  return renderTable(cols, rows, 'machines', { legend: opts.legend, now: ctx.now, timeZone: ctx.timeZone, ...(cellHeightMax !== undefined ? { cellHeightMax } : {}) });
}

// ---------------------------------------------------------------------------------------------
// status

/** systemd's status labels: right-aligned to 16 columns, a tab standing for the first eight. */
function label(name: string): string {
  return name.length <= 8 ? `\t${name.padStart(8)}: ` : `${name.padStart(16)}: `;
}
const CONTINUATION = '\t          ';

function formatPort(p: PortForward): string {
  const host = p.hostPortEnd !== p.hostPort ? `${p.hostPort}-${p.hostPortEnd}` : String(p.hostPort);
  const cont = p.containerPortEnd !== p.containerPort ? `${p.containerPort}-${p.containerPortEnd}` : String(p.containerPort);
  return `${p.protocol} ${host} → ${cont}`;
}

function formatAddress(a: MachineAddress): string {
  return a.family === 6 && a.address.toLowerCase().startsWith('fe80:') && a.ifindex ? `${a.address}%${a.ifindex}` : a.address;
}

/** ps --forest style: each process under its parent, roots (parents outside the container) first. */
export function processTree(list: readonly ProcessInfo[], indent: string): string[] {
  const pids = new Set(list.map((p) => p.pid));
  const children = new Map<number, ProcessInfo[]>();
  const roots: ProcessInfo[] = [];
  for (const p of [...list].sort((a, b) => a.pid - b.pid)) {
    if (pids.has(p.ppid) && p.ppid !== p.pid) {
      const c = children.get(p.ppid) ?? [];
      c.push(p);
      children.set(p.ppid, c);
    } else {
      roots.push(p);
    }
  }
  const out: string[] = [];
  const walk = (nodes: ProcessInfo[], prefix: string): void => {
    nodes.forEach((p, i) => {
      const last = i === nodes.length - 1;
      const what = p.cmdline !== '' ? p.cmdline : `[${p.comm}]`;
      out.push(`${indent}${prefix}${last ? '└─' : '├─'}${p.pid} ${what}`);
      walk(children.get(p.pid) ?? [], prefix + (last ? '  ' : '│ '));
    });
  };
  walk(roots, '');
  return out;
}

function formatNs(ns: bigint): string {
  // systemd's format_timespan with 1ms accuracy, as status shows "CPU: 1.234s"
  const ms = Number(ns / 1_000_000n);
  if (ms < 1000) return `${ms}ms`;
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(3).replace(/\.?0+$/, '')}s`;
  const min = Math.floor(s / 60);
  return `${min}min ${(s - min * 60).toFixed(3).replace(/\.?0+$/, '')}s`;
}

export function renderStatus(m: MachineInfo, ctx: RenderContext): string {
  const lines: string[] = [m.name];
  lines.push(`${label('Since')}${formatTimestamp(m.since, ctx.timeZone)}; ${formatRelative(m.since, ctx.now)}`);
  if (m.leader) lines.push(`${label('Leader')}${m.leader.pid}${m.leader.comm !== undefined ? ` (${m.leader.comm})` : ''}`);
  lines.push(`${label('Service')}${m.service}; class ${m.class}`);
  lines.push(`${label('Root')}${m.rootDirectory}`);
  if (m.interfaces.length > 0) lines.push(`${label('Iface')}${m.interfaces.join(' ')}`);
  if (m.addresses.length > 0) lines.push(`${label('Address')}${m.addresses.map(formatAddress).join(`\n${CONTINUATION}`)}`);
  if (m.subnets.length > 0) lines.push(`${label('Subnet')}${m.subnets.join(' ')}`);
  if (m.ports.length > 0) lines.push(`${label('Ports')}${m.ports.map(formatPort).join(`\n${CONTINUATION}`)}`);
  const pretty = m.os.PRETTY_NAME ?? (m.os.NAME ? `${m.os.NAME}${m.os.VERSION ? ` ${m.os.VERSION}` : ''}` : undefined);
  if (pretty) lines.push(`${label('OS')}${pretty}`);
  if (m.uidShift !== undefined) lines.push(`${label('UID Shift')}${m.uidShift}`);
  const u = m.usage;
  if (u) {
    if (u.tasks !== undefined) lines.push(`${label('Tasks')}${u.tasks}${u.tasksMax !== undefined ? ` (limit: ${u.tasksMax})` : ''}`);
    if (u.memoryBytes !== undefined) {
      const extra: string[] = [];
      if (u.memoryLimitBytes !== undefined) extra.push(`max: ${formatBytes(u.memoryLimitBytes)}`);
      if (u.memoryPeakBytes !== undefined) extra.push(`peak: ${formatBytes(u.memoryPeakBytes)}`);
      lines.push(`${label('Memory')}${formatBytes(u.memoryBytes)}${extra.length ? ` (${extra.join(', ')})` : ''}`);
    }
    if (u.cpuNs !== undefined) lines.push(`${label('CPU')}${formatNs(u.cpuNs)}`);
  }
  if (m.properties.length > 0) lines.push(`${label('Limits')}${m.properties.join(' ')}`);
  lines.push(`${label('Launcher')}${m.launcherPid} (nspawn-ts)`);
  if (m.processes.length > 0) {
    lines.push(`${label('Processes')}`.replace(/ $/, ''));
    lines.push(...processTree(m.processes, CONTINUATION));
  }
  return lines.join('\n') + '\n';
}

// ---------------------------------------------------------------------------------------------
// show

export interface ShowContext extends RenderContext {
  /** the container's machine ID, if it has one */
  machineId?: string;
  /** µs since boot when the leader started (TimestampMonotonic) */
  monotonic?: number;
  /** host-side ifindexes */
  ifindexes?: number[];
}

export function machineProperties(m: MachineInfo, ctx: ShowContext): Array<[string, string]> {
  const props: Array<[string, string]> = [
    ['Name', m.name],
    ['Id', ctx.machineId ?? ''],
    ['Timestamp', formatTimestamp(m.since, ctx.timeZone)],
    ['TimestampMonotonic', ctx.monotonic !== undefined ? String(ctx.monotonic) : ''],
    ['Service', m.service],
    ['Unit', ''],
    ['Leader', m.leader ? String(m.leader.pid) : ''],
    ['Class', m.class],
    ['RootDirectory', m.rootDirectory],
    ['NetworkInterfaces', (ctx.ifindexes ?? []).join(' ')],
    ['State', m.leader ? 'running' : 'opening'],
    ['Launcher', String(m.launcherPid)],
    ['Addresses', m.addresses.map((a) => a.address).join(' ')],
    ['Ports', m.ports.map((p) => `${p.protocol}:${p.hostPort}${p.hostPortEnd !== p.hostPort ? `-${p.hostPortEnd}` : ''}:` +
      `${p.containerPort}${p.containerPortEnd !== p.containerPort ? `-${p.containerPortEnd}` : ''}`).join(' ')],
    ['UIDShift', m.uidShift !== undefined ? String(m.uidShift) : ''],
    ['OSRelease', m.os.PRETTY_NAME ?? ''],
  ];
  for (const p of m.properties) {
    const eq = p.indexOf('=');
    props.push([p.slice(0, eq), p.slice(eq + 1)]);
  }
  if (m.usage) {
    if (m.usage.memoryBytes !== undefined) props.push(['MemoryCurrent', m.usage.memoryBytes.toString()]);
    if (m.usage.tasks !== undefined) props.push(['TasksCurrent', String(m.usage.tasks)]);
    if (m.usage.cpuNs !== undefined) props.push(['CPUUsageNSec', m.usage.cpuNs.toString()]);
  }
  return props;
}

/**
 * Key=value lines as systemd's bus_print_all_properties() prints them: empty ones only with
 * --all or when asked for by -p; --value drops the names.
 */
export function renderProperties(props: ReadonlyArray<[string, string]>, opts: Options): string {
  let out = '';
  const wanted = opts.properties;
  for (const [k, v] of props) {
    if (wanted.length > 0 && !wanted.includes(k)) continue;
    if (v === '' && !opts.all && wanted.length === 0) continue;
    out += opts.value ? `${v}\n` : `${k}=${v}\n`;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// images

export const IMAGE_COLUMNS: Column[] = [
  { name: 'name' }, { name: 'type' }, { name: 'ro' }, { name: 'usage', alignRight: true }, { name: 'created' }, { name: 'modified' },
];

export function imageRow(img: Image): Cell[] {
  return [str(img.name), str(img.type), bool(img.readOnly), size(img.usage), timestamp(img.crtime), timestamp(img.mtime)];
}

export function renderImages(images: readonly Image[], opts: Options, ctx: RenderContext): string {
  const rows = images.filter((i) => opts.all || !i.name.startsWith('.')).map(imageRow);
  if (isJsonMode(opts.output)) return renderTableJson(IMAGE_COLUMNS, rows, opts.output);
  return renderTable(IMAGE_COLUMNS, rows, 'images', { legend: opts.legend, now: ctx.now, timeZone: ctx.timeZone });
}

export interface ImageFacts {
  hostname?: string;
  machineId?: string;
  os: Record<string, string>;
}

export function renderImageStatus(img: Image, facts: ImageFacts, ctx: RenderContext): string {
  const lines = [img.name, `${label('Type')}${img.type}`, `${label('Path')}${img.path}`];
  if (img.link) lines.push(`${label('Target')}${img.realPath}`);
  if (facts.hostname) lines.push(`${label('Hostname')}${facts.hostname}`);
  if (facts.machineId) lines.push(`      Machine ID: ${facts.machineId}`);
  if (facts.os.PRETTY_NAME) lines.push(`${label('OS')}${facts.os.PRETTY_NAME}`);
  lines.push(`${label('RO')}${img.readOnly ? 'read-only' : 'writable'}`);
  if (img.crtime !== undefined) lines.push(`${label('Created')}${formatTimestamp(img.crtime, ctx.timeZone)}; ${formatRelative(img.crtime, ctx.now)}`);
  lines.push(`${label('Modified')}${formatTimestamp(img.mtime, ctx.timeZone)}; ${formatRelative(img.mtime, ctx.now)}`);
  if (img.usage !== undefined) lines.push(`${label('Usage')}${formatBytes(img.usage)}`);
  if (img.limit !== undefined) lines.push(`${label('Limit')}${formatBytes(img.limit)}`);
  return lines.join('\n') + '\n';
}

export function imageProperties(img: Image, ctx: RenderContext): Array<[string, string]> {
  return [
    ['Name', img.name],
    ['Path', img.path],
    ['Type', img.type],
    ['ReadOnly', img.readOnly ? 'yes' : 'no'],
    ['CreationTimestamp', img.crtime !== undefined ? formatTimestamp(img.crtime, ctx.timeZone) : ''],
    ['ModificationTimestamp', formatTimestamp(img.mtime, ctx.timeZone)],
    ['Usage', img.usage !== undefined ? img.usage.toString() : ''],
    ['Limit', img.limit !== undefined ? img.limit.toString() : ''],
  ];
}
