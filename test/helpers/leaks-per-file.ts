// Setup file of the kernel project (vitest.config.ts): the leak check for a whole test file, so what
// its beforeAll makes and its afterAll does not remove fails it too (ktest checks each test only
// between its own start and end).
import { afterAll, beforeAll } from 'vitest';
import { assertNoLeaks, snapshot, type Snapshot } from './leaks.js';

let before: Snapshot | undefined;

beforeAll(async () => {
  before = await snapshot('file');
});

// registered first, so it runs after the file's own afterAll hooks (vitest runs them as a stack)
afterAll(async () => {
  if (before) await assertNoLeaks(before);
});
