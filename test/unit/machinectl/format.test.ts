// Tables, JSON, sizes and times as machinectl prints them; list/status/show/image texts byte for byte.
import { describe, expect, test } from 'vitest';
import { defaultOptions, type Options } from '../../../src/machinectl/args.js';
import {
  bool, formatBytes, formatRelative, formatTimestamp, renderTable, renderTableJson, size, str, timestamp, versionCompare,
} from '../../../src/machinectl/format.js';
import type { MachineInfo } from '../../../src/machinectl/info.js';
import {
  imageProperties, machineProperties, processTree, renderImageStatus, renderImages, renderList, renderProperties, renderStatus,
} from '../../../src/machinectl/view.js';
import type { Image } from '../../../src/runtime/images.js';

const T0 = Date.UTC(2024, 5, 4, 10, 0, 0) * 1000; // Tue 2024-06-04 10:00:00 UTC, in µs
const ctx = { now: T0 + 5 * 60 * 1_000_000 + 3_000_000, timeZone: 'UTC' };
const opts = (o: Partial<Options> = {}): Options => ({ ...defaultOptions(), ...o });

describe('sizes and times', () => {
  test('format_bytes: IEC, one decimal (truncated), B below 1K', () => {
    expect(formatBytes(0n)).toBe('0B');
    expect(formatBytes(1023n)).toBe('1023B');
    expect(formatBytes(1024n)).toBe('1.0K');
    expect(formatBytes(1536n)).toBe('1.5K');
    expect(formatBytes(1024n * 1024n * 3n / 2n)).toBe('1.5M');
    expect(formatBytes(2n * 1024n ** 3n)).toBe('2.0G');
    expect(formatBytes(2n * 1024n ** 3n - 1n)).toBe('1.9G');
    expect(formatBytes(5n * 1024n ** 4n + 512n * 1024n ** 3n)).toBe('5.5T');
    expect(formatBytes(1024n ** 6n)).toBe('1.0E');
  });

  test('format_timestamp in a given zone', () => {
    expect(formatTimestamp(T0, 'UTC')).toBe('Tue 2024-06-04 10:00:00 UTC');
    expect(formatTimestamp(T0 + 999_999, 'UTC')).toBe('Tue 2024-06-04 10:00:00 UTC');
    expect(formatTimestamp(Date.UTC(2024, 0, 7, 23, 59, 59) * 1000, 'UTC')).toBe('Sun 2024-01-07 23:59:59 UTC');
  });

  test('format_timestamp_relative', () => {
    const s = 1_000_000;
    expect(formatRelative(T0, T0)).toBe('now');
    expect(formatRelative(T0, T0 + 500)).toBe('500us ago');
    expect(formatRelative(T0, T0 + 42_000)).toBe('42ms ago');
    expect(formatRelative(T0, T0 + 7 * s)).toBe('7s ago');
    expect(formatRelative(T0, T0 + 63 * s)).toBe('1min 3s ago');
    expect(formatRelative(T0, T0 + 303 * s)).toBe('5min ago');
    expect(formatRelative(T0, T0 + 3660 * s)).toBe('1h 1min ago');
    expect(formatRelative(T0, T0 + 7 * 3600 * s)).toBe('7h ago');
    expect(formatRelative(T0, T0 + 26 * 3600 * s)).toBe('1 day 2h ago');
    expect(formatRelative(T0, T0 + 3 * 86400 * s)).toBe('3 days ago');
    expect(formatRelative(T0, T0 + 9 * 86400 * s)).toBe('1 week 2 days ago');
    expect(formatRelative(T0 + 10 * s, T0)).toBe('10s left');
  });

  test('version sort of names', () => {
    expect(['web10', 'web9', 'a', 'web1'].sort(versionCompare)).toEqual(['a', 'web1', 'web9', 'web10']);
  });
});

describe('format-table', () => {
  const cols = [{ name: 'name' }, { name: 'size', alignRight: true }, { name: 'note' }];
  test('header, padding, right alignment, ersatz dash, no trailing blanks, sorted, footer', () => {
    const out = renderTable(cols, [
      [str('beta'), size(1536), str(undefined)],
      [str('alpha'), size(undefined), str('x')],
    ], 'things', { legend: true, now: T0 });
    expect(out).toBe(
      'NAME  SIZE NOTE\n' +
      'alpha    - x\n' +
      'beta  1.5K -\n' +
      '\n2 things listed.\n');
  });

  test('no rows: only the footer; no legend: neither header nor footer', () => {
    expect(renderTable(cols, [], 'things', { legend: true })).toBe('No things.\n');
    expect(renderTable(cols, [], 'things', { legend: false })).toBe('');
    expect(renderTable(cols, [[str('a'), size(1), str('b')]], 'things', { legend: false })).toBe('a 1B b\n');
  });

  test('multi-line cells, cut to the height limit with …', () => {
    const rows = [[str('a'), size(1), str('one\ntwo\nthree')]];
    expect(renderTable(cols, rows, 't', { legend: false, cellHeightMax: 1 })).toBe('a 1B one…\n');
    expect(renderTable(cols, rows, 't', { legend: false, cellHeightMax: 2 })).toBe('a 1B one\n     two…\n');
    expect(renderTable(cols, rows, 't', { legend: false })).toBe('a 1B one\n     two\n     three\n');
  });

  test('JSON: lower-case keys, null for empty, numbers for sizes and times, booleans', () => {
    const c2 = [{ name: 'name' }, { name: 'ro' }, { name: 'usage' }, { name: 'created' }];
    const rows = [[str('b'), bool(true), size(undefined), timestamp(T0)], [str('a'), bool(false), size(4096), timestamp(undefined)]];
    expect(renderTableJson(c2, rows, 'json')).toBe(
      '[{"name":"a","ro":false,"usage":4096,"created":null},{"name":"b","ro":true,"usage":null,"created":1717495200000000}]\n');
    expect(renderTableJson(c2, [], 'json')).toBe('[]\n');
    expect(renderTableJson(c2, rows, 'json-seq').startsWith('\x1e[{')).toBe(true);
    expect(renderTableJson(c2, rows, 'json-sse').startsWith('data: [{')).toBe(true);
    expect(JSON.parse(renderTableJson(c2, rows, 'json-pretty'))).toHaveLength(2);
  });
});

function machine(over: Partial<MachineInfo> = {}): MachineInfo {
  return {
    name: 'web', class: 'container', service: 'nspawn-ts', rootDirectory: '/var/lib/machines/web', since: T0,
    leader: { pid: 4242, comm: 'init' }, launcherPid: 4240, os: { ID: 'debian', VERSION_ID: '12', PRETTY_NAME: 'Debian GNU/Linux 12 (bookworm)' },
    interfaces: ['ve-web'], addresses: [
      { family: 4, address: '192.168.77.2', ifname: 'host0', ifindex: 2 },
      { family: 6, address: 'fe80::1', ifname: 'host0', ifindex: 2 },
    ],
    ports: [{ protocol: 'tcp', hostPort: 8080, hostPortEnd: 8080, containerPort: 80, containerPortEnd: 80 }],
    subnets: ['192.168.77.0/28'], processes: [], properties: ['MemoryMax=2147483648'], ...over,
  };
}

describe('list', () => {
  test('table with the first address and …', () => {
    const out = renderList([machine(), machine({ name: 'db', os: {}, addresses: [] })], opts(), ctx);
    expect(out).toBe(
      'MACHINE CLASS     SERVICE   OS     VERSION ADDRESSES\n' +
      'db      container nspawn-ts -      -       -\n' +
      'web     container nspawn-ts debian 12      192.168.77.2…\n' +
      '\n2 machines listed.\n');
  });

  test('--max-addresses=all and 0', () => {
    expect(renderList([machine()], opts({ maxAddresses: Infinity, legend: false }), ctx))
      .toBe('web container nspawn-ts debian 12 192.168.77.2\n                                  fe80::1\n');
    expect(renderList([machine()], opts({ maxAddresses: 0, legend: false }), ctx)).toBe('web container nspawn-ts debian 12\n');
  });

  test('JSON', () => {
    expect(JSON.parse(renderList([machine()], opts({ output: 'json', legend: false }), ctx))).toEqual([
      { machine: 'web', class: 'container', service: 'nspawn-ts', os: 'debian', version: '12', addresses: '192.168.77.2\nfe80::1' },
    ]);
    expect(renderList([], opts({ output: 'json', legend: false }), ctx)).toBe('[]\n');
  });
});

describe('status', () => {
  test('every section', () => {
    const m = machine({
      uidShift: 1_000_000,
      usage: { processes: 2, tasks: 2, tasksMax: 100, memoryBytes: 3n * 1024n * 1024n, memoryLimitBytes: 2n * 1024n ** 3n, cpuNs: 1_234_000_000n },
      processes: [
        { pid: 4242, ppid: 4240, comm: 'init', cmdline: '/sbin/init' },
        { pid: 4250, ppid: 4242, comm: 'sh', cmdline: '/bin/sh' },
        { pid: 4251, ppid: 4250, comm: 'sleep', cmdline: 'sleep 100' },
        { pid: 4260, ppid: 4242, comm: 'udhcpc', cmdline: '' },
      ],
    });
    expect(renderStatus(m, ctx)).toBe([
      'web',
      '\t   Since: Tue 2024-06-04 10:00:00 UTC; 5min ago',
      '\t  Leader: 4242 (init)',
      '\t Service: nspawn-ts; class container',
      '\t    Root: /var/lib/machines/web',
      '\t   Iface: ve-web',
      '\t Address: 192.168.77.2',
      '\t          fe80::1%2',
      '\t  Subnet: 192.168.77.0/28',
      '\t   Ports: tcp 8080 → 80',
      '\t      OS: Debian GNU/Linux 12 (bookworm)',
      '       UID Shift: 1000000',
      '\t   Tasks: 2 (limit: 100)',
      '\t  Memory: 3.0M (max: 2.0G)',
      '\t     CPU: 1.234s',
      '\t  Limits: MemoryMax=2147483648',
      '\tLauncher: 4240 (nspawn-ts)',
      '       Processes:',
      '\t          └─4242 /sbin/init',
      '\t            ├─4250 /bin/sh',
      '\t            │ └─4251 sleep 100',
      '\t            └─4260 [udhcpc]',
      '',
    ].join('\n'));
  });

  test('a machine without network, OS data or leader', () => {
    const m = machine({ leader: undefined, os: {}, interfaces: [], addresses: [], ports: [], subnets: [], properties: [] });
    expect(renderStatus(m, ctx)).toBe([
      'web',
      '\t   Since: Tue 2024-06-04 10:00:00 UTC; 5min ago',
      '\t Service: nspawn-ts; class container',
      '\t    Root: /var/lib/machines/web',
      '\tLauncher: 4240 (nspawn-ts)',
      '',
    ].join('\n'));
  });

  test('process tree of several roots', () => {
    expect(processTree([{ pid: 2, ppid: 1, comm: 'a', cmdline: 'a' }, { pid: 3, ppid: 1, comm: 'b', cmdline: 'b' }], '')).toEqual(['├─2 a', '└─3 b']);
  });
});

describe('show', () => {
  const props = machineProperties(machine(), { ...ctx, machineId: '0123456789abcdef0123456789abcdef', monotonic: 12_340_000, ifindexes: [7] });

  test('Key=value, empty ones hidden', () => {
    expect(renderProperties(props, opts())).toBe([
      'Name=web', 'Id=0123456789abcdef0123456789abcdef', 'Timestamp=Tue 2024-06-04 10:00:00 UTC', 'TimestampMonotonic=12340000',
      'Service=nspawn-ts', 'Leader=4242', 'Class=container', 'RootDirectory=/var/lib/machines/web', 'NetworkInterfaces=7',
      'State=running', 'Launcher=4240', 'Addresses=192.168.77.2 fe80::1', 'Ports=tcp:8080:80',
      'OSRelease=Debian GNU/Linux 12 (bookworm)', 'MemoryMax=2147483648', '',
    ].join('\n'));
  });

  test('-p, --value, --all', () => {
    expect(renderProperties(props, opts({ properties: ['Leader', 'Class'] }))).toBe('Leader=4242\nClass=container\n');
    expect(renderProperties(props, opts({ properties: ['Leader'], value: true }))).toBe('4242\n');
    expect(renderProperties(props, opts({ properties: ['Unit'] }))).toBe('Unit=\n');
    expect(renderProperties(props, opts({ all: true }))).toContain('Unit=\n');
    expect(renderProperties(props, opts({ all: true }))).toContain('UIDShift=\n');
  });
});

describe('images', () => {
  const img = (over: Partial<Image> = {}): Image => ({
    name: 'deb', type: 'directory', path: '/var/lib/machines/deb', realPath: '/var/lib/machines/deb', link: false,
    readOnly: false, crtime: T0, mtime: T0 + 60_000_000, ...over,
  });

  test('list-images table and JSON', () => {
    const list = [img(), img({ name: 'disk', type: 'raw', path: '/var/lib/machines/disk.raw', readOnly: true, usage: 1536n * 1024n, crtime: undefined })];
    expect(renderImages(list, opts(), ctx)).toBe(
      'NAME TYPE      RO  USAGE CREATED                     MODIFIED\n' +
      'deb  directory no      - Tue 2024-06-04 10:00:00 UTC Tue 2024-06-04 10:01:00 UTC\n' +
      'disk raw       yes  1.5M -                           Tue 2024-06-04 10:01:00 UTC\n' +
      '\n2 images listed.\n');
    expect(JSON.parse(renderImages(list, opts({ output: 'json' }), ctx))).toEqual([
      { name: 'deb', type: 'directory', ro: false, usage: null, created: T0, modified: T0 + 60_000_000 },
      { name: 'disk', type: 'raw', ro: true, usage: 1572864, created: null, modified: T0 + 60_000_000 },
    ]);
    expect(renderImages([img({ name: '.hidden' })], opts(), ctx)).toBe('No images.\n');
    expect(renderImages([img({ name: '.hidden' })], opts({ all: true, legend: false }), ctx)).toMatch(/^\.hidden /);
  });

  test('image-status and show-image', () => {
    expect(renderImageStatus(img({ link: true, realPath: '/srv/deb' }), { hostname: 'debby', machineId: 'ab'.repeat(16), os: { PRETTY_NAME: 'Debian' } }, ctx)).toBe([
      'deb',
      '\t    Type: directory',
      '\t    Path: /var/lib/machines/deb',
      '\t  Target: /srv/deb',
      '\tHostname: debby',
      `      Machine ID: ${'ab'.repeat(16)}`,
      '\t      OS: Debian',
      '\t      RO: writable',
      '\t Created: Tue 2024-06-04 10:00:00 UTC; 5min ago',
      '\tModified: Tue 2024-06-04 10:01:00 UTC; 4min 3s ago',
      '',
    ].join('\n'));
    expect(renderProperties(imageProperties(img({ readOnly: true }), ctx), opts())).toBe([
      'Name=deb', 'Path=/var/lib/machines/deb', 'Type=directory', 'ReadOnly=yes', 'CreationTimestamp=Tue 2024-06-04 10:00:00 UTC',
      'ModificationTimestamp=Tue 2024-06-04 10:01:00 UTC', '',
    ].join('\n'));
  });
});
