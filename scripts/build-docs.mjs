// Builds what the package installs besides the commands, from each command's own --help (so that
// they say what --help says, option for option):
//   dist/man/nspawn-ts.1, machinectl-ts.1, nspawn-netd.8   with help2man (apt: help2man)
//   dist/completion/nspawn-ts, machinectl-ts                bash completion
// Run by scripts/build.sh after the bundles; node scripts/build-docs.mjs [OUTDIR].
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync, rmSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const out = process.argv[2] ?? join(root, 'dist');
const version = JSON.parse(execFileSync('node', ['-p', `JSON.stringify(require(${JSON.stringify(join(root, 'package.json'))}).version)`], { encoding: 'utf8' }));

function help(cmd) {
  return execFileSync(join(root, 'bin', cmd), ['--help'], { encoding: 'utf8', env: { ...process.env, NSPAWN_TS_LOG: '' } });
}

/** Options of a --help text: [{ names: ['-D', '--directory'], arg: 'PATH' | undefined, desc }]. */
export function parseOptions(text) {
  const opts = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const m = /^ {2}(?:(-[A-Za-z0-9]) )?\s*(--[a-z0-9-]+)?(?:=(\S+))?(?:\s{2,}(.*))?$/.exec(lines[i]);
    if (!m || (!m[1] && !m[2])) continue;
    let desc = m[4] ?? '';
    for (let j = i + 1; j < lines.length && /^ {20,}\S/.test(lines[j]); j++) desc += ' ' + lines[j].trim();
    opts.push({ names: [m[1], m[2]].filter(Boolean), arg: m[3], desc });
  }
  return opts;
}

/** Verbs of machinectl-ts --help: the first word of the lines under "... Commands:". */
function parseVerbs(text) {
  const verbs = [];
  let inCommands = false;
  for (const line of text.split('\n')) {
    if (/Commands:$/.test(line)) { inCommands = true; continue; }
    if (/^\S/.test(line)) { inCommands = false; continue; }
    const m = /^ {2}([a-z][a-z-]+)\b/.exec(line);
    if (inCommands && m) verbs.push(m[1]);
  }
  return verbs;
}

/** The fixed values an option takes, from its metavar ("no|yes|pick") or its description ("(yes, no, trusted, override)"). */
function valuesOf(o) {
  const paren = /\(([a-z-]+(?:, [a-z-]+)+)\)/.exec(o.desc) ?? /one of ([a-z-]+(?:, [a-z-]+)+)/.exec(o.desc);
  if (paren) return paren[1].split(', ');
  if (o.arg === 'BOOLEAN') return ['yes', 'no'];
  if (o.arg && /^[a-z-]+(\|[a-z-]+)+/.test(o.arg)) return o.arg.split(/[|[]/).filter((v) => /^[a-z-]+$/.test(v));
  return undefined;
}

const q = (words) => words.map((w) => `'${w}'`).join(' ');

/** The case arms that complete an option's value: `--opt|-o) COMPREPLY=(...)`. */
function valueArms(opts, special) {
  const arms = [];
  for (const o of opts.filter((x) => x.arg)) {
    const long = o.names.find((n) => n.startsWith('--'));
    const kind = (long && special[long]) ?? special[o.arg] ?? (o.arg.startsWith('PATH') ? special.PATH : undefined);
    const values = valuesOf(o);
    let body;
    if (kind) body = kind;
    else if (values) body = `COMPREPLY=($(compgen -W ${JSON.stringify(values.join(' '))} -- "$cur"))`;
    else body = 'COMPREPLY=()';
    arms.push(`    ${o.names.join('|')}) ${body}; return ;;`);
  }
  return arms.join('\n');
}

function script(cmd, fn, opts, extra) {
  const withArg = opts.filter((o) => o.arg).flatMap((o) => o.names);
  const longs = opts.flatMap((o) => o.names.filter((n) => n.startsWith('--')).map((n) => (o.arg ? `${n}=` : n)));
  const shorts = opts.flatMap((o) => o.names.filter((n) => !n.startsWith('--')));
  return `# bash completion for ${cmd} (nspawn-ts ${version}); generated from '${cmd} --help' by scripts/build-docs.mjs
_${fn}_machines() { ${cmd === 'machinectl-ts' ? cmd : 'machinectl-ts'} list --no-legend 2>/dev/null | while read -r n _; do printf '%s\\n' "$n"; done; }
_${fn}_images() { machinectl-ts list-images --no-legend 2>/dev/null | while read -r n _; do printf '%s\\n' "$n"; done; }
_${fn}_signals() { local s; for s in $(kill -l); do case $s in SIG*) printf '%s\\n' "$s";; esac; done; }
_${fn}_ifaces() { local i; for i in /sys/class/net/*; do printf '%s\\n' "\${i##*/}"; done; }

_${fn}() {
  local cur=\${COMP_WORDS[COMP_CWORD]} prev=\${COMP_WORDS[COMP_CWORD-1]} opt=
  # --opt=VALUE: bash splits at '=' (COMP_WORDBREAKS), or keeps it in the word
  if [[ $cur == --*=* ]]; then opt=\${cur%%=*}; cur=\${cur#*=}
  elif [[ $cur == = ]]; then opt=$prev; cur=
  elif [[ $prev == = ]]; then opt=\${COMP_WORDS[COMP_CWORD-2]}
  elif [[ " ${withArg.join(' ')} " == *" $prev "* ]]; then opt=$prev
  fi
  if [[ -n $opt ]]; then
    case $opt in
${valueArms(opts, extra.special)}
    esac
  fi
  if [[ $cur == -* ]]; then
    COMPREPLY=($(compgen -W ${JSON.stringify([...longs, ...shorts].join(' '))} -- "$cur"))
    [[ \${COMPREPLY[0]} == *= ]] && compopt -o nospace 2>/dev/null
    return
  fi
${extra.words}
}
complete -F _${fn} ${cmd}
`;
}

const special = {
  PATH: 'COMPREPLY=($(compgen -f -- "$cur")); compopt -o filenames 2>/dev/null',
  '--directory': 'COMPREPLY=($(compgen -d -- "$cur")); compopt -o filenames 2>/dev/null',
  '--template': 'COMPREPLY=($(compgen -d -- "$cur")); compopt -o filenames 2>/dev/null',
  '--machine': 'COMPREPLY=($(compgen -W "$(_nspawn_ts_images; _nspawn_ts_machines)" -- "$cur"))',
  INTERFACE: 'COMPREPLY=($(compgen -W "$(_nspawn_ts_ifaces)" -- "$cur"))',
  SIGNAL: 'COMPREPLY=($(compgen -W "$(_nspawn_ts_signals)" -- "$cur"))',
  USER: 'COMPREPLY=($(compgen -u -- "$cur"))',
};

const nspawnOpts = parseOptions(help('nspawn-ts'));
const nspawn = script('nspawn-ts', 'nspawn_ts', nspawnOpts, {
  special,
  // after the options: the command run inside (a path in the container, which we cannot see)
  words: '  COMPREPLY=()',
});

const mctlHelp = help('machinectl-ts');
const verbs = [...parseVerbs(mctlHelp), 'stop', 'help'];
const onMachines = ['status', 'show', 'terminate', 'reboot', 'poweroff', 'stop', 'kill', 'login', 'shell'];
const onImages = ['start', 'enable', 'disable', 'remove', 'rename', 'clone', 'image-status', 'show-image', 'export-tar', 'set-property'];
const mctl = script('machinectl-ts', 'machinectl_ts', parseOptions(mctlHelp), {
  special: {
    SIGNAL: 'COMPREPLY=($(compgen -W "$(_machinectl_ts_signals)" -- "$cur"))',
    USER: 'COMPREPLY=($(compgen -u -- "$cur"))',
    '--output': `COMPREPLY=($(compgen -W ${JSON.stringify(execFileSync(join(root, 'bin/machinectl-ts'), ['-o', 'help'], { encoding: 'utf8' }).trim().split('\n').join(' '))} -- "$cur"))`,
    '--format': 'COMPREPLY=($(compgen -W "uncompressed gzip xz zstd bzip2" -- "$cur"))',
    '--verify': 'COMPREPLY=($(compgen -W "checksum no" -- "$cur"))',
    '--kill-whom': 'COMPREPLY=($(compgen -W "leader all" -- "$cur"))',
  },
  words: `  # the verb is the first word that is not an option (or an option's value)
  local i verb= nargs=0
  for ((i = 1; i < COMP_CWORD; i++)); do
    local w=\${COMP_WORDS[i]}
    [[ $w == = || \${COMP_WORDS[i-1]} == = ]] && continue
    [[ $w == -* ]] && continue
    case \${COMP_WORDS[i-1]} in -s|--signal|-o|--output|-p|--property|-E|--setenv|--uid|--kill-whom|--verify|--format|--max-addresses|-n|--lines) continue ;; esac
    if [[ -z $verb ]]; then verb=$w; else ((nargs++)); fi
  done
  if [[ -z $verb ]]; then COMPREPLY=($(compgen -W ${JSON.stringify(verbs.join(' '))} -- "$cur")); return; fi
  case $verb in
    ${onMachines.join('|')}) COMPREPLY=($(compgen -W "$(_machinectl_ts_machines)" -- "$cur")) ;;
    ${onImages.filter((v) => v !== 'export-tar').join('|')}) [[ $verb == @(rename|clone|set-property) && $nargs -ge 1 ]] && return; COMPREPLY=($(compgen -W "$(_machinectl_ts_images)" -- "$cur")) ;;
    export-tar) if ((nargs == 0)); then COMPREPLY=($(compgen -W "$(_machinectl_ts_images)" -- "$cur")); else COMPREPLY=($(compgen -f -- "$cur")); compopt -o filenames 2>/dev/null; fi ;;
    import-tar) ((nargs == 0)) && { COMPREPLY=($(compgen -f -- "$cur")); compopt -o filenames 2>/dev/null; } ;;
    import-fs|install-units) ((nargs == 0)) && { COMPREPLY=($(compgen -d -- "$cur")); compopt -o filenames 2>/dev/null; } ;;
  esac`,
});

rmSync(join(out, 'completion'), { recursive: true, force: true });
mkdirSync(join(out, 'completion'), { recursive: true });
writeFileSync(join(out, 'completion', 'nspawn-ts'), nspawn);
writeFileSync(join(out, 'completion', 'machinectl-ts'), mctl);

// man pages: help2man turns each --help into roff (sections from the "Heading:" lines, one entry per option)
const pages = [
  ['nspawn-ts', 1, "spawn a command or OS in a container, with systemd-nspawn's options and networking that works without systemd-networkd", 'systemd-nspawn(1), systemd.nspawn(5), machinectl-ts(1), nspawn-netd(8)'],
  ['machinectl-ts', 1, 'control the machines nspawn-ts runs and their images', 'machinectl(1), nspawn-ts(1), nspawn-netd(8)'],
  ['nspawn-netd', 8, 'the nspawn-ts network sidecar: subnets, DHCP and masquerade for container links', 'nspawn-ts(1), machinectl-ts(1), systemd-nspawn(1)'],
];
mkdirSync(join(out, 'man'), { recursive: true });
for (const [cmd, section, name, seeAlso] of pages) {
  const include = join(out, 'man', `.${cmd}.h2m`);
  writeFileSync(include, `[SEE ALSO]\n${seeAlso.split(', ').map((r) => `.BR ${r.replace(/\((\d)\)/, ' ($1)')}`).join('\n')}\n\nThe guides in the package's docs/ directory (docs/install.md, docs/images.md).\n`);
  const roff = execFileSync('help2man', ['--no-info', `--section=${section}`, `--version-string=${version}`, `--name=${name}`, `--include=${include}`, '--no-discard-stderr', join(root, 'bin', cmd)], { encoding: 'utf8' });
  rmSync(include);
  writeFileSync(join(out, 'man', `${cmd}.${section}`), roff);
}
