// The harness's leak check itself: a cgroup a test leaves behind fails it (the hierarchies are the
// host's, so a leaked machine-* cgroup would outlive the run), an empty one removed again does not;
// so do files left below the directories the product writes and the tests' scratch directories.
import { existsSync, mkdirSync, mkdtempSync, rmSync, rmdirSync, writeFileSync } from 'node:fs';
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

  ktest('names files left in /tmp and the product\'s state directories, and passes once they are removed', async () => {
    const made = ['/run/nspawn-ts'].filter((d) => !existsSync(d));
    mkdirSync('/run/nspawn-ts', { recursive: true });
    try {
      const before = await snapshot();
      const scratch = mkdtempSync('/tmp/leak-check-');
      writeFileSync(`${scratch}/a`, '');
      mkdirSync(`${scratch}/b`);
      // not a machine record (*.json in machines/): a registry reader elsewhere would prune that
      const record = `/run/nspawn-ts/leak-check-${process.pid}`;
      writeFileSync(record, '{}');
      try {
        const err = await assertNoLeaks(before, 100).then(() => undefined, (e: unknown) => e);
        expect(String(err)).toContain(`file ${scratch}/`);
        expect(String(err)).toContain(`file ${record}`);
      } finally {
        rmSync(scratch, { recursive: true });
        rmSync(record);
      }
      await assertNoLeaks(before, 100);
    } finally {
      for (const d of made) rmdirSync(d);
    }
  });
});
