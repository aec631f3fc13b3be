// The test function for kernel tests: every test is leak-checked, and `netns` gives it a fresh
// namespace that is always destroyed. Use `ktest` instead of vitest's `test` in test/kernel/.
import { test as base } from 'vitest';
import { assertNoLeaks, snapshot } from './leaks.js';
import { TestNetns } from './netns.js';

export const ktest = base.extend<{ leakCheck: void; netns: TestNetns }>({
  leakCheck: [
    // eslint-disable-next-line no-empty-pattern
    async ({}, use) => {
      const before = await snapshot();
      await use();
      await assertNoLeaks(before);
    },
    { auto: true },
  ],
  // eslint-disable-next-line no-empty-pattern
  netns: async ({}, use) => {
    const ns = await TestNetns.create();
    try {
      await use(ns);
    } finally {
      await ns.destroy();
    }
  },
});
