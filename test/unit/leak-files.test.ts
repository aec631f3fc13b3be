// The leak check's file walk and comparison (test/helpers/leak-files.ts): bounded, names each new
// tree once, and leaves alone what the product keeps by design.
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import { fileLeaks, files } from '../helpers/leak-files.js';

describe('file leak check', () => {
  let root: string;
  beforeEach(() => {
    root = mkdtempSync(`${tmpdir()}/leak-files-`);
  });
  afterEach(() => rmSync(root, { recursive: true, force: true }));

  test('walks to the root\'s depth, directories marked, symlinks not followed', () => {
    mkdirSync(`${root}/a/b/c`, { recursive: true });
    writeFileSync(`${root}/a/f`, '');
    writeFileSync(`${root}/a/b/c/deep`, '');
    symlinkSync('/etc', `${root}/link`);
    expect([...files('file', [{ dir: root, depth: 3 }])].sort()).toEqual(
      [`${root}/a/`, `${root}/a/b/`, `${root}/a/b/c/`, `${root}/a/f`, `${root}/link`].sort());
    expect([...files('file', [{ dir: `${root}/none`, depth: 3 }])]).toEqual([]);
  });

  test('a new directory is named once, with the count below it', () => {
    const before = files('file', [{ dir: root, depth: 4 }]);
    mkdirSync(`${root}/t/x`, { recursive: true });
    writeFileSync(`${root}/t/x/1`, '');
    writeFileSync(`${root}/f`, '');
    expect(fileLeaks(before, files('file', [{ dir: root, depth: 4 }]), [])).toEqual([`${root}/f`, `${root}/t/ (+2 below)`]);
  });

  test('a kept file and the directory made for it are no leak; its siblings are', () => {
    const before = files('file', [{ dir: root, depth: 4 }]);
    mkdirSync(`${root}/state/netd`, { recursive: true });
    writeFileSync(`${root}/state/netd/state.json`, '{}');
    writeFileSync(`${root}/state/netd/stray`, '');
    mkdirSync(`${root}/state/empty`);
    const kept = [new RegExp(`^${root}/state/netd/state\\.json$`)];
    expect(fileLeaks(before, files('file', [{ dir: root, depth: 4 }]), kept)).toEqual([`${root}/state/empty/`, `${root}/state/netd/stray`]);
  });

  test('a single test is checked only to the root\'s test depth', () => {
    mkdirSync(`${root}/scratch`);
    const roots = [{ dir: root, depth: 3, testDepth: 1 }];
    const before = files('test', roots);
    writeFileSync(`${root}/scratch/shared`, '');
    writeFileSync(`${root}/own`, '');
    expect(fileLeaks(before, files('test', roots), [])).toEqual([`${root}/own`]);
  });

  test('what was there before is no leak', () => {
    writeFileSync(`${root}/old`, '');
    const before = files('file', [{ dir: root, depth: 2 }]);
    expect(fileLeaks(before, files('file', [{ dir: root, depth: 2 }]), [])).toEqual([]);
  });
});
