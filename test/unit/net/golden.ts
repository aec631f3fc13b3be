// Golden files of the network library: test/golden/nft/NAME. `UPDATE_GOLDEN=1 npm test -- test/unit/net`
// rewrites them (review the diff: a golden file is a spec).
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect } from 'vitest';

export const GOLDEN_DIR = join(dirname(fileURLToPath(import.meta.url)), '../../golden/nft');

export function goldenPath(name: string): string {
  return join(GOLDEN_DIR, name);
}

/** Compares `value` (JSON-serialised, or text for a string) with the golden file `name`. */
export function expectGolden(name: string, value: unknown): void {
  const path = goldenPath(name);
  const text = typeof value === 'string' ? value : JSON.stringify(value, null, 2) + '\n';
  if (process.env.UPDATE_GOLDEN === '1' || !existsSync(path)) {
    if (process.env.CI && !existsSync(path)) throw new Error(`golden file ${path} is missing`);
    mkdirSync(dirname(path), { recursive: true });
    writeFileSync(path, text);
  }
  expect(text, `golden file ${name} (UPDATE_GOLDEN=1 rewrites it)`).toBe(readFileSync(path, 'utf8'));
}

export function readGolden<T = unknown>(name: string): T {
  return JSON.parse(readFileSync(goldenPath(name), 'utf8')) as T;
}
