// The layout of the commands' --help texts (nspawn-ts, machinectl-ts, nspawn-netd), which each make
// from their option tables, so that a table and its help cannot drift apart.

/**
 * One entry of a --help text: `label`, then `text` from `column` on (its line breaks kept). A label
 * that leaves less than `gap` spaces before the column gets a line of its own (help2man, which
 * makes the man pages, wants two between an option and its text).
 */
export function helpEntry(label: string, text: string, column: number, gap = 2): string[] {
  const lines = text.split('\n');
  const indent = ' '.repeat(column);
  const first = label.length + gap <= column ? [label.padEnd(column) + lines.shift()] : [label];
  return [...first, ...lines.map((t) => indent + t)];
}
