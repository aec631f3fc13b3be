// The pure parts of image transfer: compression by name and by magic, names from files and URLs,
// SHA256SUMS lines, the progress lines (terminal bar and 10% lines), and the verbs' command line.
import { describe, expect, test } from 'vitest';
import fc from 'fast-check';
import { parseArgs, type ParseResult } from '../../../src/machinectl/args.js';
import { nameFromSource } from '../../../src/machinectl/import-export.js';
import { formatBytes, formatDuration, Progress } from '../../../src/machinectl/progress.js';
import { checksumFor } from '../../../src/machinectl/pull.js';
import { compressionFromMagic, compressionFromName, stripTarSuffix } from '../../../src/machinectl/transfer.js';
import { HintedConfigError } from '../../../src/runtime/machine-name.js';

function run(argv: string[]): Extract<ParseResult, { action: 'run' }> {
  const r = parseArgs(argv);
  if (r.action !== 'run') throw new Error(`not run: ${r.action}`);
  return r;
}

function error(argv: string[]): HintedConfigError {
  try {
    parseArgs(argv);
  } catch (err) {
    if (err instanceof HintedConfigError) return err;
    throw err;
  }
  throw new Error('no error');
}

describe('compression and names', () => {
  test('by suffix (export) and by magic (import)', () => {
    expect(['a.tar', 'a.tar.gz', 'a.tgz', 'a.tar.xz', 'a.txz', 'a.tar.zst', 'a.tar.bz2', 'a.gz', 'a.zst', 'a'].map(compressionFromName))
      .toEqual(['none', 'gzip', 'gzip', 'xz', 'xz', 'zstd', 'bzip2', 'gzip', 'zstd', 'none']);
    expect(compressionFromMagic(Buffer.from([0x1f, 0x8b, 8, 0, 0, 0]))).toBe('gzip');
    expect(compressionFromMagic(Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]))).toBe('xz');
    expect(compressionFromMagic(Buffer.from([0x28, 0xb5, 0x2f, 0xfd, 0, 0]))).toBe('zstd');
    expect(compressionFromMagic(Buffer.from('BZh91AY'))).toBe('bzip2');
    expect(compressionFromMagic(Buffer.from('./etc/\0\0'))).toBe('none');
  });

  test('image names from files and URLs; a name that is not a machine name asks for one', () => {
    expect(stripTarSuffix('debian-12.tar.xz')).toBe('debian-12');
    expect(nameFromSource('/srv/debian-12.tar.zst')).toBe('debian-12');
    expect(nameFromSource('/images/fedora.tgz?x=1')).toBe('fedora');
    expect(() => nameFromSource('/srv/bad name!.tar')).toThrow(/Cannot make a valid machine name of 'bad name!\.tar'/);
  });

  test('SHA256SUMS: binary and text lines, ./ prefixes, CRLF; other files not taken', () => {
    const a = 'a'.repeat(64);
    const b = 'B'.repeat(64);
    const sums = `${a} *other.tar\n${b}  ./image.tar.gz\r\nnot a line\n`;
    expect(checksumFor(sums, 'image.tar.gz')).toBe('b'.repeat(64));
    expect(checksumFor(sums, 'other.tar')).toBe(a);
    expect(checksumFor(sums, 'image.tar')).toBeUndefined();
  });
});

describe('progress', () => {
  test('not a terminal: one line per 10% step, whatever the chunking; a summary at the end', () => {
    fc.assert(fc.property(fc.array(fc.integer({ min: 1, max: 5000 }), { minLength: 1, maxLength: 200 }), (chunks) => {
      const total = chunks.reduce((x, y) => x + y, 0);
      const lines: string[] = [];
      const p = new Progress({ label: 'Importing x', total, tty: false, write: (l) => lines.push(l), now: () => 0 });
      for (const c of chunks) p.add(c);
      p.finish(true);
      const pcts = lines.slice(0, -1).map((l) => Number(/: (\d+)%/.exec(l)?.[1]));
      expect(pcts[pcts.length - 1]).toBe(100);
      expect(new Set(pcts).size).toBe(pcts.length); // no step twice
      expect(pcts.every((x) => x % 10 === 0)).toBe(true);
      expect(pcts.length).toBeLessThanOrEqual(10);
      expect(lines[lines.length - 1]).toMatch(/^Importing x: done, /);
    }));
  });

  test('a terminal: a bar with bytes, percent, rate and ETA, redrawn in place', () => {
    let t = 0;
    const out: string[] = [];
    const p = new Progress({ label: 'Downloading a.tar', total: 10 << 20, tty: true, write: (l) => out.push(l), now: () => t, columns: 100 });
    t = 2000;
    p.add(4 << 20);
    const line = out[out.length - 1] as string;
    expect(line.startsWith('\rDownloading a.tar [')).toBe(true);
    const ERASE = '\x1b[K'; // to the end of the line
    expect(line.endsWith(`] 4.0M/10M   40%  2.0M/s  ETA 3s${ERASE}`)).toBe(true);
    expect(line.length - ERASE.length - 1).toBeLessThanOrEqual(100);
    p.finish(true);
    expect(out[out.length - 1]).toMatch(/\n$/);
  });

  test('unknown size: bytes and rate, lines at doublings when not a terminal', () => {
    const lines: string[] = [];
    const p = new Progress({ label: 'Importing standard input', tty: false, write: (l) => lines.push(l), now: () => 1000 });
    for (let i = 0; i < 64; i++) p.add(1 << 20);
    expect(lines.map((l) => /: (\S+) /.exec(l)?.[1])).toEqual(['16M', '32M', '64M']);
    expect(formatBytes(1536)).toBe('1.5K');
    expect(formatDuration(3725)).toBe('1h02m');
  });
});

describe('command line', () => {
  test('the transfer verbs and their options', () => {
    expect(run(['import-tar', 'a.tar']).args).toEqual(['a.tar']);
    expect(run(['import-tar', '-', 'x', '--read-only', '--force']).options).toMatchObject({ readOnly: true, force: true });
    expect(run(['pull-tar', '--verify=no', 'http://x/a.tar', 'n']).options.verify).toBe('no');
    expect(run(['export-tar', 'n', '-', '--format=zstd']).options.format).toBe('zstd');
    expect(error(['pull-tar', '--verify=signature', 'http://x/a.tar']).message).toMatch(/not supported/);
    expect(error(['pull-tar', '--verify=maybe', 'http://x/a.tar']).message).toBe('Unknown verification mode: maybe');
    expect(error(['import-tar', 'a.tar', '--verify=no']).message).toMatch(/--verify= applies to 'pull-tar' only/);
    expect(error(['import-tar', 'a.tar', '--format=xz']).message).toMatch(/--format= applies to 'export-tar' only/);
    expect(error(['export-tar', 'n']).code).toBe('CFG_ARGUMENTS');
    expect(error(['export-tar', 'n', 'f', '--format=lz4']).message).toBe('Unknown format: lz4');
  });
});
