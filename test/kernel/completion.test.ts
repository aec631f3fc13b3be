// bash completion and man pages (dist/completion, dist/man; scripts/build-docs.mjs makes them from
// each command's --help). Completion is driven as bash drives it: COMP_WORDS/COMP_CWORD set, the
// function bash-completion's loader finds for the command called, COMPREPLY read back. Machine
// images come from a private pool (NSPAWN_TS_MACHINES_DIR), interfaces from the test's network
// namespace.
import { mkdirSync, readFileSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect } from 'vitest';
import { ktest } from '../helpers/kernel.js';
import { run, runOk } from '../helpers/exec.js';
import { tempDir } from './machinectl-fixture.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url)).replace(/\/$/, '');
let t: { dir: string; cleanup: () => void };
let env: NodeJS.ProcessEnv;

beforeAll(() => {
  t = tempDir('completion-');
  const pool = join(t.dir, 'machines');
  for (const img of ['webserver', 'websocket', 'db']) mkdirSync(join(pool, img), { recursive: true });
  mkdirSync(join(t.dir, 'somedir/sub'), { recursive: true });
  // the layout a global install makes: PREFIX/share/bash-completion/completions/NAME → the package's file
  const share = join(t.dir, 'share/bash-completion/completions');
  mkdirSync(share, { recursive: true });
  for (const c of ['nspawn-ts', 'machinectl-ts']) symlinkSync(join(ROOT, 'dist/completion', c), join(share, c));
  env = {
    ...process.env, PATH: `${join(ROOT, 'bin')}:/usr/sbin:/usr/bin:/sbin:/bin`, NSPAWN_TS_MACHINES_DIR: pool,
    NSPAWN_TS_RUN_DIR: join(t.dir, 'run'), XDG_DATA_DIRS: join(t.dir, 'share'), HOME: t.dir,
  };
});
afterAll(() => t.cleanup());

/** What bash offers for the command line `words` (the last word being completed). */
async function complete(words: string[]): Promise<string[]> {
  const quoted = words.map((w) => `'${w.replace(/'/g, "'\\''")}'`).join(' ');
  const script = `
source /usr/share/bash-completion/bash_completion
_completion_loader ${words[0]}
fn=$(complete -p ${words[0]} | sed -n 's/.*-F \\([^ ]*\\) .*/\\1/p')
COMP_WORDS=(${quoted}); COMP_CWORD=$((\${#COMP_WORDS[@]} - 1)); COMP_LINE="\${COMP_WORDS[*]}"; COMP_POINT=\${#COMP_LINE}
"$fn" ${words[0]} "\${COMP_WORDS[COMP_CWORD]}" "\${COMP_WORDS[COMP_CWORD-1]}"
printf '%s\\n' "\${COMPREPLY[@]}"`;
  const r = await run('bash', ['-c', script], { env, timeoutMs: 20_000 });
  expect(r.code, r.stderr).toBe(0);
  return r.stdout.split('\n').filter(Boolean).sort();
}

describe('bash completion of nspawn-ts', () => {
  ktest('options, and their values: machine names, directories, interfaces, signals, fixed lists', async () => {
    expect(await complete(['nspawn-ts', '--netw'])).toEqual(['--network-bridge=', '--network-config=', '--network-interface=', '--network-ipvlan=',
      '--network-macvlan=', '--network-namespace-path=', '--network-veth', '--network-veth-extra=', '--network-zone=']);
    expect(await complete(['nspawn-ts', '-M', 'web'])).toEqual(['websocket', 'webserver'].sort());
    expect(await complete(['nspawn-ts', '--machine', '=', 'd'])).toEqual(['db']);
    expect(await complete(['nspawn-ts', '-D', join(t.dir, 'some')])).toEqual([join(t.dir, 'somedir')]);
    expect(await complete(['nspawn-ts', '--network-interface', '=', 'l'])).toEqual(['lo']);
    expect(await complete(['nspawn-ts', '--kill-signal', '=', 'SIGRTMIN+1'])).toEqual(['SIGRTMIN+1', 'SIGRTMIN+10', 'SIGRTMIN+11', 'SIGRTMIN+12', 'SIGRTMIN+13', 'SIGRTMIN+14', 'SIGRTMIN+15']);
    expect(await complete(['nspawn-ts', '--settings', '=', ''])).toEqual(['no', 'override', 'trusted', 'yes']);
    expect(await complete(['nspawn-ts', '--console=pa'])).toEqual(['passive']);
    expect(await complete(['nspawn-ts', '--link-journal', 'try-'])).toEqual(['try-guest', 'try-host']);
    expect(await complete(['nspawn-ts', '--register', '=', ''])).toEqual(['no', 'yes']);
  });
});

describe('bash completion of machinectl-ts', () => {
  ktest('verbs, image names after image verbs, files and directories for transfers, option values', async () => {
    const verbs = await complete(['machinectl-ts', '']);
    expect(verbs).toEqual(expect.arrayContaining(['list', 'status', 'start', 'import-tar', 'export-tar', 'pull-tar', 'import-fs', 'install-units', 'remove', 'clone']));
    expect(await complete(['machinectl-ts', 'im'])).toEqual(['image-status', 'import-fs', 'import-tar']);
    expect(await complete(['machinectl-ts', 'remove', 'web'])).toEqual(['websocket', 'webserver'].sort());
    expect(await complete(['machinectl-ts', '-q', 'clone', 'd'])).toEqual(['db']);
    expect(await complete(['machinectl-ts', 'clone', 'db', ''])).toEqual([]); // the new name is free text
    expect(await complete(['machinectl-ts', 'export-tar', 'db', join(t.dir, 'some')])).toEqual([join(t.dir, 'somedir')]);
    expect(await complete(['machinectl-ts', 'import-fs', join(t.dir, 'somedir/')])).toEqual([join(t.dir, 'somedir/sub')]);
    expect(await complete(['machinectl-ts', 'kill', '-s', 'SIGK'])).toEqual(['SIGKILL']);
    expect(await complete(['machinectl-ts', '-o', 'json-p'])).toEqual(['json-pretty']);
    expect(await complete(['machinectl-ts', 'pull-tar', '--verify', '=', ''])).toEqual(['checksum', 'no']);
    expect(await complete(['machinectl-ts', '--no-l'])).toEqual(['--no-legend']);
  });
});

describe('man pages', () => {
  ktest('nspawn-ts(1), machinectl-ts(1), nspawn-netd(8) render, and name every option and verb --help names', async () => {
    for (const [cmd, section] of [['nspawn-ts', 1], ['machinectl-ts', 1], ['nspawn-netd', 8]] as const) {
      const page = join(ROOT, 'dist/man', `${cmd}.${section}`);
      const text = await runOk('man', ['-l', '-P', 'cat', page], { env: { ...env, MANWIDTH: '200', LANG: 'C' } });
      expect(text).toMatch(new RegExp(`^${cmd.toUpperCase()}\\(${section}\\)`));
      const help = await runOk(join(ROOT, 'bin', cmd), ['--help'], { env });
      const longs = [...new Set([...help.matchAll(/^ {2}(?:-\w )?\s*(--[a-z0-9-]+)/gm)].map((m) => m[1] as string))];
      const flat = text.replace(/‐\n\s*/g, '').replace(/\s+/g, ' ');
      for (const o of longs) expect(flat, `${cmd}(${section}) lacks ${o}`).toContain(o);
      if (cmd === 'nspawn-ts') {
        // completion is made from the same --help: every option in it is offered (a label one space from its text was not)
        const offered = new Set((await complete([cmd, '--'])).map((w) => w.replace(/=$/, '')));
        for (const o of longs) expect(offered.has(o), `completion lacks ${o}`).toBe(true);
      }
      if (cmd === 'machinectl-ts') for (const v of ['import-tar', 'export-tar', 'pull-tar', 'install-units']) expect(flat).toContain(v);
    }
    expect(readFileSync(join(ROOT, 'dist/man/nspawn-ts.1'), 'utf8')).toContain('.SH "SEE ALSO"');
  });
});
