// The test function for kernel tests: every test is leak-checked, and `netns` gives it a fresh
// namespace that is always destroyed. Use `ktest` instead of vitest's `test` in test/kernel/.
import { test as base } from 'vitest';
import { assertNoLeaks, snapshot } from './leaks.js';
import { TestNetns } from './netns.js';

export const ktest = base.extend<{ leakCheck: void; netns: TestNetns }>({
  leakCheck: [
    async ({ onTestFinished }, use) => {
      const before = await snapshot();
      // Checked last: after the test's fixtures, afterEach hooks and its own onTestFinished clean-ups
      // (vitest runs those after fixtures, as a stack, and this one is registered first).
      onTestFinished(() => assertNoLeaks(before));
      await use();
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
