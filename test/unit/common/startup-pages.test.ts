// The start-up's pages of read-only file mappings: which mappings qualify (never one with written,
// anonymous pages), and a real drop in a child node: its file-backed RSS falls, what it runs after
// still works (the pages come back from the page cache as they were).
import { spawnSync } from 'node:child_process';
import { describe, expect, test } from 'vitest';
import { droppableMappings } from '../../../src/common/startup-pages.js';

const entry = (range: string, perms: string, path: string, rssKb: number, anonKb: number, flags = 'rd mr mw me sd'): string => `${range} ${perms} 00000000 08:01 123 ${path}
Size:               1024 kB
Rss:                ${rssKb} kB
Pss:                ${rssKb} kB
Anonymous:          ${anonKb} kB
Locked:                0 kB
VmFlags: ${flags}
`;

describe('droppableMappings', () => {
  test('read-only private file mappings with resident pages and none written', () => {
    const smaps = [
      entry('00400000-00b6f000', 'r--p', '/usr/bin/node', 7000, 0),
      entry('00b72000-025fe000', 'r-xp', '/usr/bin/node', 17000, 0, 'rd ex mr mw me dw sd'),
      entry('0563a000-0565c000', 'r--p', '/usr/bin/node', 136, 92), // relocated (RELRO): written pages
      entry('0565c000-05689000', 'rw-p', '/usr/bin/node', 120, 80),
      entry('7f0000000000-7f0000100000', 'r--s', '/usr/lib/locale/locale-archive', 40, 0), // shared
      entry('7f0000200000-7f0000300000', 'r--p', '/usr/lib/x86_64-linux-gnu/libc.so.6', 0, 0), // nothing resident
      entry('7f0000300000-7f0000400000', 'r-xp', '/usr/lib/x86_64-linux-gnu/libc.so.6', 1100, 0, 'rd ex mr mw me lo'), // locked
      entry('7f0000400000-7f0000500000', 'rw-p', '', 900, 900),
      entry('7ffc00000000-7ffc00002000', 'r-xp', '[vdso]', 8, 0),
      entry('7f0000600000-7f0000700000', 'r-xp', '/work/native/build/Release/nspawn_native.node', 156, 0),
    ].join('');
    expect(droppableMappings(smaps)).toEqual([
      { start: 0x400000, length: 0xb6f000 - 0x400000, path: '/usr/bin/node', rss: 7000 * 1024 },
      { start: 0xb72000, length: 0x25fe000 - 0xb72000, path: '/usr/bin/node', rss: 17000 * 1024 },
      { start: 0x7f0000600000, length: 0x100000, path: '/work/native/build/Release/nspawn_native.node', rss: 156 * 1024 },
    ]);
  });

  test('a mapping whose Anonymous or VmFlags line is missing is left alone', () => {
    const cut = entry('00400000-00b6f000', 'r--p', '/usr/bin/node', 7000, 0).replace(/Anonymous:.*\n/, '');
    const noFlags = entry('00b72000-025fe000', 'r-xp', '/usr/bin/node', 17000, 0).replace(/VmFlags:.*\n/, '');
    expect(droppableMappings(cut + noFlags)).toEqual([]);
  });

  test('a node process that drops them: file-backed RSS falls by megabytes, and it goes on working', () => {
    const script = `
      const { dropStartupPages } = await import(${JSON.stringify(new URL('../../../dist/common/startup-pages.js', import.meta.url).pathname)});
      const { readFileSync } = await import('node:fs');
      const rssFile = () => Number(/RssFile:\\s+(\\d+)/.exec(readFileSync('/proc/self/status', 'utf8'))[1]) * 1024;
      const big = new Uint8Array(8 << 20).fill(7); // anonymous memory: never dropped
      const before = rssFile();
      const dropped = dropStartupPages();
      const after = rssFile();
      const zlib = await import('node:zlib'); // code and data not touched since start-up: back from the page cache
      const ok = zlib.gunzipSync(zlib.gzipSync(Buffer.from('still works'))).toString() === 'still works' && big.every((b) => b === 7);
      process.stdout.write(JSON.stringify({ before, after, dropped, ok }));`;
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', timeout: 30_000 });
    expect(r.stderr).toBe('');
    const { before, after, dropped, ok } = JSON.parse(r.stdout) as { before: number; after: number; dropped: number; ok: boolean };
    expect(ok).toBe(true);
    expect(dropped).toBeGreaterThan(10 << 20);
    expect(before - after).toBeGreaterThan(10 << 20);
  });
});
