import { defineConfig } from 'vitest/config';

// Two projects. `unit`: pure logic (codecs, parsers, allocators), files in parallel. `kernel`:
// anything that touches namespaces, links, nftables or real peers; one file at a time, because the
// leak check compares the state of the run's (private) network namespace before and after a test,
// and (test/helpers/leaks-per-file.ts) before and after each file.
export default defineConfig({
  test: {
    projects: [
      {
        test: {
          name: 'unit',
          include: ['test/unit/**/*.test.ts'],
          sequence: { groupOrder: 0 },
        },
      },
      {
        test: {
          name: 'kernel',
          include: ['test/kernel/**/*.test.ts'],
          setupFiles: ['test/helpers/leaks-per-file.ts'],
          fileParallelism: false,
          maxWorkers: 1,
          testTimeout: 60_000,
          hookTimeout: 60_000,
          sequence: { groupOrder: 1 },
        },
      },
    ],
  },
});
