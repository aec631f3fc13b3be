// scripts/ascii-bundle.mjs: the bundles V8 loads at every start are pure ASCII (one non-ASCII
// character makes V8 hold the whole source as UTF-16), and the escaping keeps their meaning.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { runInNewContext } from 'node:vm';
import { afterEach, describe, expect, test } from 'vitest';

const root = new URL('../..', import.meta.url).pathname;
const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function escapeFile(text: string): { code: number | null; out: string; stderr: string } {
  const dir = mkdtempSync('/tmp/ascii-bundle-');
  dirs.push(dir);
  writeFileSync(`${dir}/b.cjs`, text);
  const r = spawnSync(process.execPath, [`${root}scripts/ascii-bundle.mjs`, `${dir}/b.cjs`], { encoding: 'utf8' });
  return { code: r.status, out: readFileSync(`${dir}/b.cjs`, 'utf8'), stderr: r.stderr };
}

describe('ASCII bundles', () => {
  test('non-ASCII in comments, regular expressions and strings is escaped with the same meaning', () => {
    const source = [
      '// a comment — with µ and 😀',
      'const units = /[a-zA-Zµμ]/; const per = /[%‰‱]$/; const astral = /😀/u;',
      'const s = "→ é 😀";',
      'result = [units.test("µ"), units.test("μ"), units.test("x"), per.test("5‰"), per.test("5%"), per.test("5"), astral.test("a😀"), s, s.length];',
    ].join('\n');
    const { code, out } = escapeFile(source);
    expect(code).toBe(0);
    expect(/[^\0-\x7f]/.test(out)).toBe(false);
    expect(out).toContain('\\u2014');
    const run = (src: string): unknown => {
      const ctx: { result?: unknown } = {};
      runInNewContext(src, ctx);
      return ctx.result;
    };
    expect(run(out)).toEqual(run(source));
    expect(run(out)).toEqual([true, true, true, true, true, false, true, '→ é 😀', 6]);
  });

  test('a non-ASCII character after a backslash is refused (its escape would mean something else)', () => {
    const { code, stderr } = escapeFile('const r = /\\µ/;');
    expect(code).not.toBe(0);
    expect(stderr).toMatch(/follows a backslash/);
  });

  test('every built bundle is ASCII', () => {
    const bundles = readdirSync(`${root}dist`).filter((f) => f.endsWith('.cjs'));
    expect(bundles).toEqual(expect.arrayContaining(['nspawn-cni.cjs', 'nspawn-cni-plugin.cjs', 'nspawn-ts.cjs', 'nspawn-netd.cjs']));
    for (const b of bundles) {
      const bytes = readFileSync(`${root}dist/${b}`);
      expect(bytes.findIndex((x) => x > 0x7f), b).toBe(-1);
    }
  });
});
