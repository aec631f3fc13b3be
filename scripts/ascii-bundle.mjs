// Rewrites a bundle as pure ASCII: every non-ASCII character (esbuild leaves them in comments and
// regular-expression literals) becomes its \uXXXX escape. Why: V8 keeps a source with a single
// non-ASCII character as a two-byte string — the whole bundle decoded to UTF-16 at every start,
// twice the bytes to hash and hold (~1 ms CPU of an nspawn-cni call for the plugin's 560 KB) — and
// the code cache needs that source. In comments the escape is text; in strings, templates,
// identifiers and regular expressions (esbuild escapes the first three itself) it means the same
// UTF-16 code units. A non-ASCII character right after a backslash would change meaning: refused.
import { readFileSync, writeFileSync } from 'node:fs';

/** `source` with every non-ASCII UTF-16 code unit as \uXXXX (astral characters as their surrogate pair). */
export function asciiSource(source) {
  const escaped = /\\[^\0-\x7f]/.exec(source);
  if (escaped) throw new Error(`a non-ASCII character follows a backslash at offset ${escaped.index}: cannot escape it`);
  return source.replace(/[^\0-\x7f]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

if (process.argv[1] && import.meta.url === new URL(`file://${process.argv[1]}`).href) {
  for (const file of process.argv.slice(2)) writeFileSync(file, asciiSource(readFileSync(file, 'utf8')));
}
