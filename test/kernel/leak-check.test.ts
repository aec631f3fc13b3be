// The harness's leak check itself: a cgroup a test leaves behind fails it (the hierarchies are the
// host's, so a leaked machine-* cgroup would outlive the run), an empty one removed again does not.
import { mkdirSync, rmdirSync } from 'node:fs';
import { describe, expect } from 'vitest';
import { ktest } from '../helpers/kernel.js';
import { assertNoLeaks, snapshot } from '../helpers/leaks.js';

describe('leak check', () => {
  ktest('names a cgroup left behind, and passes once it is removed', async () => {
    const before = await snapshot();
    const dir = `/sys/fs/cgroup/pids/leak-check-${process.pid}`;
    mkdirSync(dir);
    try {
      await expect(assertNoLeaks(before, 100)).rejects.toThrow(`cgroup ${dir}`);
    } finally {
      rmdirSync(dir);
    }
    await assertNoLeaks(before, 100);
  });
});
