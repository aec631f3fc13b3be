// --help and --version of nspawn-ts. The option lines are made from the option table
// (cli-options.ts): an option has its help where it is parsed, so the two cannot drift apart.
// machinectl-ts lays out its table with the same functions.
import { helpEntry } from '../common/help.js';
import { PROGRAM, VERSION } from './cli-values.js';

/** What --help says of one option of the table. */
export interface OptionHelp {
  /** the heading it is listed under; none: the general options at the top */
  section?: string;
  /** which of the option's long names this line is for (default: its first) */
  long?: string;
  /** the name of its value, shown after "=": "PATH" */
  value?: string;
  /** the description; its line breaks are kept (systemd's help is wrapped by hand) */
  text: string;
}

/** The part of an option table entry --help shows; `unlisted`: why --help leaves it out. */
export interface HelpedOption {
  long: string | readonly string[];
  short?: string;
  help: OptionHelp | readonly OptionHelp[] | { unlisted: string };
}

/** Where nspawn-ts's descriptions start; a longer label gets a line of its own. */
const TEXT_COLUMN = 28;

function helpEntries(def: HelpedOption): readonly OptionHelp[] {
  if ('unlisted' in def.help) return [];
  return Array.isArray(def.help) ? def.help : [def.help as OptionHelp];
}

/**
 * The option part of a --help text: the table's options ("  -h --help", "     --dir=PATH"), grouped
 * under their headings in the table's order.
 */
export function optionsHelp(table: readonly HelpedOption[], column = TEXT_COLUMN): string {
  const sections = new Map<string, string[]>();
  for (const def of table) {
    const names = typeof def.long === 'string' ? [def.long] : def.long;
    helpEntries(def).forEach((h, i) => {
      const key = h.section ?? '';
      const lines = sections.get(key) ?? [];
      sections.set(key, lines);
      const short = i === 0 ? def.short : undefined;
      const long = h.long ?? names[0];
      let label = `  ${short !== undefined ? `-${short}` : '  '}`;
      if (long !== undefined) label += ` --${long}${h.value !== undefined ? `=${h.value}` : ''}`;
      lines.push(...helpEntry(label, h.text, column));
    });
  }
  return [...sections].map(([section, lines]) => (section ? `\n${section}:\n` : '') + lines.map((l) => `${l}\n`).join('')).join('');
}

export function versionText(): string {
  return `${PROGRAM} ${VERSION}\ncommand line and .nspawn files of systemd-nspawn 252`;
}

/** --help of nspawn-ts around the option lines of `table`. */
export function helpText(table: readonly HelpedOption[]): string {
  return `${PROGRAM} [OPTIONS...] [PATH] [ARGUMENTS...]

Spawn a command or OS in a lightweight container.

${optionsHelp(table)}
Other options of systemd-nspawn are refused with an error naming them.
Networking works without systemd-networkd: the host side of -n/--network-zone
gets an address, DHCP, NAT and port forwarding from ${PROGRAM}'s network
subsystem (or from a running nspawn-netd).
`;
}
