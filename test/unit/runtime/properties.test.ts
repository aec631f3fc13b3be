// Resource-control property syntax, as systemd parses it (parse_size, parse_permyriad, CPUQuota=,
// TasksMax=), and its resolution against the host.
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import fc from 'fast-check';
import { ConfigError } from '../../../src/errors.js';
import {
  SUPPORTED_PROPERTIES, adjustCpuPeriod, cpuWeightToShares, formatProperties, formatPropertyValue,
  mergeProperties, parsePermyriad, parseProperties, parsePropertyAssignment, parsePropertyValue, parseSize,
  parseTimespanUsec, readHostFacts, resolveProperties, type HostFacts, type PropertyAssignment,
} from '../../../src/runtime/properties.js';
import { loadProperties, propertiesDir, removeProperties, saveProperties, startProperties } from '../../../src/runtime/property-store.js';

const G = 1024n ** 3n;
const M = 1024n ** 2n;

function configError(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(ConfigError);
    return e as ConfigError;
  }
  throw new Error('expected a ConfigError');
}

describe('parseSize (systemd parse_size, base 1024)', () => {
  test.each([
    ['0', 0n], ['512', 512n], ['512B', 512n], ['1K', 1024n], ['2G', 2n * G], ['1T', 1024n * G],
    ['1P', 1024n ** 5n], ['15E', 15n * 1024n ** 6n], ['1.5G', 3n * G / 2n], ['10.M', 10n * M],
    ['1G 512M', G + 512n * M], ['1G512M', G + 512n * M], ['1 G', G], ['  2M', 2n * M], ['+4K', 4096n],
    ['1G5', G + 5n], ['0.5K', 512n],
  ])('%s → %s', (input, bytes) => {
    expect(parseSize(input)).toEqual({ ok: true, value: bytes });
  });

  test.each([
    ['', 'EINVAL'], ['G', 'EINVAL'], ['1g', 'EINVAL'], ['1KB', 'EINVAL'], ['1Gi', 'EINVAL'], ['1M 1G', 'EINVAL'],
    ['-1', 'ERANGE'], ['1G ', 'EINVAL'], ['16E', 'ERANGE'], ['99999999999999999999', 'ERANGE'], ['2 x', 'EINVAL'],
  ])('%s is refused (%s)', (input, err) => {
    expect(parseSize(input)).toEqual({ ok: false, err });
  });
});

describe('parsePermyriad (systemd parse_permyriad)', () => {
  test.each([
    ['50%', 5000], ['12.5%', 1250], ['12.25%', 1225], ['0%', 0], ['100%', 10000], ['125‰', 1250],
    ['12.5‰', 125], ['1250‱', 1250], ['010%', 800], ['0x10%', 1600], [' 5%', 500],
  ])('%s → %d‱', (input, v) => {
    expect(parsePermyriad(input)).toEqual({ ok: true, value: v });
  });

  test.each([['101%', 'ERANGE'], ['12.345%', 'EINVAL'], ['5.%', 'EINVAL'], ['%', 'EINVAL'], ['x%', 'EINVAL'], ['-5%', 'ERANGE'], ['5', 'EINVAL']])(
    '%s is refused (%s)', (input, err) => {
      expect(parsePermyriad(input)).toEqual({ ok: false, err });
    });
});

describe('parseTimespanUsec', () => {
  test.each([['100ms', 100_000], ['1s', 1_000_000], ['2500us', 2500], ['2', 2_000_000], ['1s 500ms', 1_500_000], ['0.5s', 500_000], ['1min', 60_000_000]])(
    '%s → %d µs', (input, v) => {
      expect(parseTimespanUsec(input)).toEqual({ ok: true, value: v });
    });
  test.each(['', 'ms', '5 parsecs', '1.5.5s'])('%s is refused', (input) => {
    expect(parseTimespanUsec(input).ok).toBe(false);
  });
});

describe('property values', () => {
  test('memory limits: bytes, infinity, percentages, empty', () => {
    expect(parsePropertyAssignment('MemoryMax=2G')).toEqual({ name: 'MemoryMax', value: { kind: 'bytes', bytes: 2n * G } });
    expect(parsePropertyAssignment('MemoryHigh=infinity')).toEqual({ name: 'MemoryHigh', value: { kind: 'infinity' } });
    expect(parsePropertyAssignment('MemoryMax=25%')).toEqual({ name: 'MemoryMax', value: { kind: 'scale', permyriad: 2500 } });
    expect(parsePropertyAssignment('MemoryMax=')).toEqual({ name: 'MemoryMax', value: { kind: 'infinity' } });
    expect(parsePropertyAssignment('MemoryLow=')).toEqual({ name: 'MemoryLow', value: { kind: 'bytes', bytes: 0n } });
    expect(parsePropertyAssignment('MemorySwapMax=0')).toEqual({ name: 'MemorySwapMax', value: { kind: 'bytes', bytes: 0n } });
  });

  test('CPUQuota is per core and may exceed 100%', () => {
    expect(parsePropertyValue('CPUQuota', '200%')).toEqual({ name: 'CPUQuota', value: { kind: 'quota', usecPerSec: 2_000_000 } });
    expect(parsePropertyValue('CPUQuota', '50%')).toEqual({ name: 'CPUQuota', value: { kind: 'quota', usecPerSec: 500_000 } });
    expect(parsePropertyValue('CPUQuota', '0.5%')).toEqual({ name: 'CPUQuota', value: { kind: 'quota', usecPerSec: 5_000 } });
    expect(parsePropertyValue('CPUQuota', '')).toEqual({ name: 'CPUQuota', value: { kind: 'infinity' } });
  });

  test('TasksMax: count, percentage, infinity', () => {
    expect(parsePropertyValue('TasksMax', '20')).toEqual({ name: 'TasksMax', value: { kind: 'count', count: 20n } });
    expect(parsePropertyValue('TasksMax', '10%')).toEqual({ name: 'TasksMax', value: { kind: 'scale', permyriad: 1000 } });
    expect(parsePropertyValue('TasksMax', 'infinity')).toEqual({ name: 'TasksMax', value: { kind: 'infinity' } });
  });

  test('CPUWeight and CPUQuotaPeriodSec', () => {
    expect(parsePropertyValue('CPUWeight', '500')).toEqual({ name: 'CPUWeight', value: { kind: 'weight', weight: 500 } });
    expect(parsePropertyValue('CPUWeight', 'idle')).toEqual({ name: 'CPUWeight', value: { kind: 'idle' } });
    expect(parsePropertyValue('CPUQuotaPeriodSec', '10ms')).toEqual({ name: 'CPUQuotaPeriodSec', value: { kind: 'usec', usec: 10_000 } });
    expect(parsePropertyValue('CPUQuotaPeriodSec', 'infinity')).toEqual({ name: 'CPUQuotaPeriodSec', value: { kind: 'default' } });
  });

  test.each([
    ['MemoryMax=0', /must be above 0/], ['MemoryMax=150%', /cannot exceed 100%/], ['MemoryMax=2g', /not understood/],
    ['MemoryMax=16E', /too large/], ['MemoryHigh=-1', /too large|out of range/], ['CPUQuota=0%', /above 0%/],
    ['CPUQuota=50', /percentage/], ['CPUQuota=1.234%', /not understood/], ['TasksMax=0', /out of range/],
    ['TasksMax=abc', /not understood/], ['TasksMax=-3', /out of range/], ['CPUWeight=0', /out of range/],
    ['CPUWeight=10001', /out of range/], ['CPUQuotaPeriodSec=fast', /not understood/],
  ])('%s is refused saying what is allowed', (assignment, reason) => {
    const e = configError(() => parsePropertyAssignment(assignment));
    expect(e.code).toBe('CFG_PROPERTY_VALUE');
    expect(e.message).toMatch(reason);
    expect(e.message).toMatch(/allowed: /);
    expect(e.message).toContain(`'${assignment.slice(assignment.indexOf('=') + 1)}'`);
  });

  test('DeviceAllow=: entries add up, an empty one resets; node or class, access r/w/m; stored as one line each', () => {
    const p = parseProperties(['DeviceAllow=/dev/fuse', 'DeviceAllow=char-pts rw', 'DeviceAllow=/dev/fuse']);
    expect(p.DeviceAllow).toEqual({ reset: false, entries: [{ node: '/dev/fuse', access: 'rwm' }, { node: 'char-pts', access: 'rw' }] });
    expect(parseProperties(['DeviceAllow=/dev/fuse', 'DeviceAllow=', 'DeviceAllow=block-loop r']).DeviceAllow)
      .toEqual({ reset: true, entries: [{ node: 'block-loop', access: 'r' }] });
    expect(formatProperties(parseProperties(['DeviceAllow=', 'DeviceAllow=/dev/fuse rw', 'TasksMax=5'])))
      .toEqual(['TasksMax=5', 'DeviceAllow=', 'DeviceAllow=/dev/fuse rw']);
    // set-property adds to what is stored
    const merged = mergeProperties(parseProperties(['DeviceAllow=/dev/fuse rw']), parseProperties(['DeviceAllow=/dev/kvm rw']));
    expect(formatProperties(merged)).toEqual(['DeviceAllow=/dev/fuse rw', 'DeviceAllow=/dev/kvm rw']);
    for (const bad of ['/dev/fuse rx', '/dev/fuse rr', 'fuse rw', '/dev/../etc/passwd', '/dev/fuse rw extra', 'char- rw']) {
      const e = configError(() => parsePropertyAssignment(`DeviceAllow=${bad}`));
      expect(e.code, bad).toBe('CFG_PROPERTY_VALUE');
    }
  });

  test('unknown and unsupported names name the property and list the supported ones', () => {
    const unknown = configError(() => parsePropertyAssignment('Frobnicate=1'));
    expect(unknown.code).toBe('CFG_PROPERTY_UNKNOWN');
    expect(unknown.message).toContain("'Frobnicate'");
    for (const p of SUPPORTED_PROPERTIES) expect(unknown.message).toContain(p);

    const unsupported = configError(() => parsePropertyAssignment('DevicePolicy=closed', 'set-property'));
    expect(unsupported.code).toBe('CFG_PROPERTY_UNSUPPORTED');
    expect(unsupported.message).toMatch(/^set-property: property 'DevicePolicy' is not supported.*MemoryMax/);

    const cased = configError(() => parsePropertyAssignment('memorymax=1G'));
    expect(cased.message).toContain("did you mean 'MemoryMax'");

    const syntax = configError(() => parsePropertyAssignment('MemoryMax'));
    expect(syntax.code).toBe('CFG_PROPERTY_SYNTAX');
  });

  test('later assignments win; merge overlays', () => {
    const p = parseProperties(['MemoryMax=1G', { name: 'TasksMax', value: '20' }, 'MemoryMax=2G']);
    expect(p).toEqual({ MemoryMax: { kind: 'bytes', bytes: 2n * G }, TasksMax: { kind: 'count', count: 20n } });
    expect(mergeProperties(p, parseProperties(['TasksMax=infinity']))).toEqual({ MemoryMax: { kind: 'bytes', bytes: 2n * G }, TasksMax: { kind: 'infinity' } });
  });

  test('formatting is canonical and stable', () => {
    expect(formatProperties(parseProperties(['TasksMax=5%', 'CPUQuota=12.5%', 'MemoryMax=1.5G', 'CPUWeight=', 'CPUQuotaPeriodSec=10ms'])))
      .toEqual(['MemoryMax=1610612736', 'CPUQuota=12.50%', 'CPUQuotaPeriodSec=10000us', 'CPUWeight=', 'TasksMax=5%']);
  });
});

describe('resolution against the host', () => {
  const facts: HostFacts = { physicalMemory: 8n * G + 123n, pageSize: 4096, tasksMax: 32_767n };

  test('percentages become page-aligned bytes and task counts', () => {
    const r = resolveProperties(parseProperties(['MemoryMax=50%', 'MemoryHigh=33.33%', 'TasksMax=10%', 'MemoryLow=100%']), facts);
    expect(r.memoryMax).toBe(4n * G);
    expect((r.memoryHigh as bigint) % 4096n).toBe(0n);
    expect(r.memoryHigh).toBe(((8n * G / 4096n) * 3333n / 10000n) * 4096n);
    expect(r.tasksMax).toBe(3276n);
    expect(r.memoryLow).toBe(facts.physicalMemory);
  });

  test('CPU quota and period follow systemd (default 100 ms, adjusted so quota ≥ 1 ms per period)', () => {
    expect(resolveProperties(parseProperties(['CPUQuota=50%']), facts).cpu).toEqual({ quotaUsec: 50_000, periodUsec: 100_000 });
    expect(resolveProperties(parseProperties(['CPUQuota=200%']), facts).cpu).toEqual({ quotaUsec: 200_000, periodUsec: 100_000 });
    // 0.5% of 100 ms is 0.5 ms < 1 ms: the period grows to 200 ms
    expect(resolveProperties(parseProperties(['CPUQuota=0.5%']), facts).cpu).toEqual({ quotaUsec: 1_000, periodUsec: 200_000 });
    expect(resolveProperties(parseProperties(['CPUQuota=50%', 'CPUQuotaPeriodSec=10ms']), facts).cpu).toEqual({ quotaUsec: 5_000, periodUsec: 10_000 });
    expect(resolveProperties(parseProperties(['CPUQuota=50%', 'CPUQuotaPeriodSec=5s']), facts).cpu).toEqual({ quotaUsec: 500_000, periodUsec: 1_000_000 });
    expect(resolveProperties(parseProperties(['CPUQuota=']), facts).cpu).toEqual({ quotaUsec: 'max', periodUsec: 100_000 });
    expect(resolveProperties({}, facts)).toEqual({});
    // systemd's own test vectors (test-cgroup-unit-default / test_group_cpu_adjust_period)
    expect(adjustCpuPeriod(1_000, 400_000)).toBe(2_500);
    expect(adjustCpuPeriod(10_000, 100_000)).toBe(10_000);
    expect(adjustCpuPeriod(1_000, 10_000_000)).toBe(1_000);
  });

  test('CPUWeight maps to v1 shares as systemd does', () => {
    expect(cpuWeightToShares(100)).toBe(1024);
    expect(cpuWeightToShares(1)).toBe(10);
    expect(cpuWeightToShares(10_000)).toBe(102_400);
    expect(cpuWeightToShares('idle')).toBe(2);
  });

  test('the host facts of this machine are sane', () => {
    const f = readHostFacts();
    expect(f.physicalMemory).toBeGreaterThan(0n);
    expect(f.tasksMax).toBeGreaterThan(100n);
  });
});

describe('properties (property-based)', () => {
  const assignment = fc.oneof(
    fc.tuple(fc.constantFrom('MemoryMax', 'MemoryHigh'), fc.bigInt({ min: 1n, max: (1n << 63n) })).map(([n, b]) => `${n}=${b}`),
    fc.tuple(fc.constantFrom('MemoryMax', 'MemoryHigh', 'MemoryLow', 'MemorySwapMax', 'TasksMax'), fc.integer({ min: 1, max: 10_000 }))
      .map(([n, p]) => `${n}=${Math.floor(p / 100)}.${String(p % 100).padStart(2, '0')}%`),
    fc.integer({ min: 1, max: 100_000 }).map((p) => `CPUQuota=${Math.floor(p / 100)}.${String(p % 100).padStart(2, '0')}%`),
    fc.integer({ min: 1, max: 1_000_000 }).map((n) => `TasksMax=${n}`),
    fc.integer({ min: 1, max: 10_000 }).map((n) => `CPUWeight=${n}`),
    fc.integer({ min: 1, max: 10_000_000 }).map((n) => `CPUQuotaPeriodSec=${n}us`),
    fc.constantFrom('MemoryMax=infinity', 'TasksMax=infinity', 'CPUQuota=', 'CPUWeight=idle', 'MemoryLow='),
  );

  test('format ∘ parse is the identity on parsed values', () => {
    fc.assert(fc.property(assignment, (a) => {
      const parsed = parsePropertyAssignment(a);
      const again = parsePropertyValue(parsed.name, formatPropertyValue(parsed));
      expect(again).toEqual(parsed);
    }));
  });

  test('sizes: N with a suffix is N × 1024^k', () => {
    fc.assert(fc.property(fc.integer({ min: 0, max: 1_000_000 }), fc.integer({ min: 0, max: 4 }), (n, k) => {
      const suffix = ['', 'K', 'M', 'G', 'T'][k]!;
      expect(parseSize(`${n}${suffix}`)).toEqual({ ok: true, value: BigInt(n) * 1024n ** BigInt(k) });
    }));
  });

  test('arbitrary text never throws anything but a ConfigError', () => {
    fc.assert(fc.property(fc.constantFrom(...SUPPORTED_PROPERTIES), fc.string(), (name, value) => {
      try {
        const a: PropertyAssignment = parsePropertyValue(name, value);
        expect(a.name).toBe(name);
      } catch (e) {
        expect(e).toBeInstanceOf(ConfigError);
      }
    }));
  });

  test('resolved CPU limits satisfy the kernel: 1 ms ≤ period ≤ 1 s, quota ≥ 1 ms', () => {
    fc.assert(fc.property(fc.integer({ min: 1, max: 1_000_000 }), fc.integer({ min: 1, max: 5_000_000 }), (permyriad, period) => {
      const r = resolveProperties({ CPUQuota: { kind: 'quota', usecPerSec: permyriad * 100 }, CPUQuotaPeriodSec: { kind: 'usec', usec: period } },
        { physicalMemory: G, pageSize: 4096, tasksMax: 100n });
      const cpu = r.cpu!;
      expect(cpu.periodUsec).toBeGreaterThanOrEqual(1_000);
      expect(cpu.periodUsec).toBeLessThanOrEqual(1_000_000);
      expect(cpu.quotaUsec).toBeGreaterThanOrEqual(1_000);
    }));
  });
});

describe('persistent properties (set-property without --runtime)', () => {
  test('save merges per property, load reads it back, start applies them over --property=', () => {
    const dir = mkdtempSync(join(tmpdir(), 'props-'));
    try {
      expect(loadProperties('web', { dir })).toEqual({});
      saveProperties('web', parseProperties(['MemoryMax=2G', 'CPUQuota=200%']), { dir });
      const merged = saveProperties('web', parseProperties(['MemoryMax=1G', 'TasksMax=10%']), { dir });
      expect(merged).toEqual(parseProperties(['MemoryMax=1G', 'CPUQuota=200%', 'TasksMax=10%']));
      expect(loadProperties('web', { dir })).toEqual(merged);
      const text = readFileSync(join(dir, 'web.properties'), 'utf8');
      expect(text).toContain('[Resources]\nMemoryMax=1073741824\nCPUQuota=200%\nTasksMax=10%\n');
      expect(startProperties('web', ['MemoryMax=4G', 'CPUWeight=50'], { dir }))
        .toEqual(parseProperties(['MemoryMax=1G', 'CPUQuota=200%', 'TasksMax=10%', 'CPUWeight=50']));
      expect(readdirSync(dir)).toEqual(['web.properties']); // no temporary file left
      expect(removeProperties('web', { dir })).toBe(true);
      expect(removeProperties('web', { dir })).toBe(false);
      expect(loadProperties('web', { dir })).toEqual({});
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('the directory comes from $NSPAWN_TS_PROPERTIES_DIR, else /etc/systemd/nspawn-ts', () => {
    const saved = process.env.NSPAWN_TS_PROPERTIES_DIR;
    try {
      delete process.env.NSPAWN_TS_PROPERTIES_DIR;
      expect(propertiesDir()).toBe('/etc/systemd/nspawn-ts');
      process.env.NSPAWN_TS_PROPERTIES_DIR = '/tmp/x';
      expect(propertiesDir()).toBe('/tmp/x');
      expect(propertiesDir('/given')).toBe('/given');
    } finally {
      if (saved === undefined) delete process.env.NSPAWN_TS_PROPERTIES_DIR;
      else process.env.NSPAWN_TS_PROPERTIES_DIR = saved;
    }
  });

  test('a broken file is a ConfigError naming file and line; bad names cannot escape the directory', () => {
    const dir = mkdtempSync(join(tmpdir(), 'props-'));
    try {
      writeFileSync(join(dir, 'a.properties'), '[Resources]\nMemoryMax=lots\n');
      expect(() => loadProperties('a', { dir })).toThrow(new RegExp(`${dir}/a.properties:2: invalid value 'lots' for MemoryMax=`));
      writeFileSync(join(dir, 'b.properties'), '[Service]\nMemoryMax=1G\n');
      expect(() => loadProperties('b', { dir })).toThrow(/b.properties:1: unknown section \[Service\]/);
      writeFileSync(join(dir, 'c.properties'), 'MemoryMax=1G\n');
      expect(() => loadProperties('c', { dir })).toThrow(/outside \[Resources\]/);
      expect(() => saveProperties('../etc/x', {}, { dir })).toThrow(ConfigError);
      expect(() => loadProperties('..', { dir })).toThrow(ConfigError);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
