// bin/nspawn-cni, the CNI plugin's native front (native/front/nspawn-cni.c): it answers the runtime's
// VERSION call ({"cniVersion":"X"} on stdin) without starting Node, with exactly the bytes the Node
// path (bin/nspawn-cni.cjs → src/cni/main.ts) writes; every other call and every other VERSION input
// goes to Node as bin/nspawn-cni.cjs's #! line would start it (its flags, its environment), with stdin
// as the runtime wrote it.
import { spawn, spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { chmodSync, closeSync, mkdtempSync, openSync, readFileSync, readSync, realpathSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { fileURLToPath } from 'node:url';
import fc from 'fast-check';
import { afterAll, describe, expect, test } from 'vitest';
import { SUPPORTED_VERSIONS, versionAsked, versionResult } from '../../src/cni/config.js';

const FRONT = fileURLToPath(new URL('../../bin/nspawn-cni', import.meta.url));
const SCRIPT = fileURLToPath(new URL('../../bin/nspawn-cni.cjs', import.meta.url));
const work = mkdtempSync(`${tmpdir()}/cni-front-`);
afterAll(() => rmSync(work, { recursive: true, force: true }));

// a PATH without node: what the front answers, it answers alone
const NO_NODE = `${work}/empty`;
spawnSync('mkdir', ['-p', NO_NODE]);
// a "node" that records how it was started: arguments, environment, stdin
const FAKE = `${work}/fake`;
const RECORD = `${work}/record`;
spawnSync('mkdir', ['-p', FAKE, RECORD]);
writeFileSync(`${FAKE}/node`, `#!/bin/sh\nprintf '%s\\n' "$@" > "${RECORD}/argv"\nenv > "${RECORD}/env"\ncat > "${RECORD}/stdin"\n`);
chmodSync(`${FAKE}/node`, 0o755);

type Env = Record<string, string>;
function call(file: string, input: string | Buffer, env: Env = {}, args: string[] = []): SpawnSyncReturns<Buffer> {
  return spawnSync(file, args, { input, env: { PATH: process.env.PATH ?? '/usr/bin:/bin', CNI_COMMAND: 'VERSION', ...env }, timeout: 60_000 });
}
/** What src/cni/main.ts writes for a VERSION call with this stdin. */
function nodeAnswer(text: string): string {
  return JSON.stringify(versionResult(versionAsked(text))) + '\n';
}
function recorded(): { argv: string[]; env: string[]; stdin: Buffer } {
  return {
    argv: readFileSync(`${RECORD}/argv`, 'utf8').split('\n').slice(0, -1),
    env: readFileSync(`${RECORD}/env`, 'utf8').split('\n'),
    stdin: readFileSync(`${RECORD}/stdin`),
  };
}
function resetRecord(): void {
  rmSync(RECORD, { recursive: true, force: true });
  spawnSync('mkdir', ['-p', RECORD]);
}

const SIMPLE_VERSIONS = [
  ...SUPPORTED_VERSIONS, '0.1.0', '0.2.0', '1.0.1', '1.1', '1', '1.10.0', '1.2.0', '2.0.0', '0.9.9', '', 'abc', '1.1.0-rc1',
  '01.01.0', '1..1', '.1.1', '1.1.0.5', '1.0.9.9', '99999999999999999999.0.0', '1.0.99999999999', '1.1.000000000000000000001', '0000000001.1.0',
  ' 1.1.0', '1.1.0 ', '0x1.1.0', '1e3.0.0', '-1.2.0', '+1.1.0', '1.+1.0', '1.1.-0', 'v1.1.0', "1.1.0'", '<>&%s%n', '1.0.0}', '{', '.', '..',
  '1.0.999999999', '1.0.1000000000',
];

describe('VERSION answered by the front', () => {
  test('libcni\'s VERSION ({"cniVersion":"X"}) is answered without Node, as src/cni/main.ts answers it', () => {
    for (const v of SIMPLE_VERSIONS) {
      const text = JSON.stringify({ cniVersion: v });
      const r = call(FRONT, text, { PATH: NO_NODE });
      expect(r.stderr.toString(), v).toBe('');
      expect(r.status, v).toBe(0);
      expect(r.stdout.toString('latin1'), v).toBe(nodeAnswer(text));
    }
    // CNI_ARGS as parseEnv accepts it
    for (const args of ['', 'K8S_POD_NAME=a;IgnoreUnknown=1', ';;', 'A=;B==c']) {
      const r = call(FRONT, '{"cniVersion":"1.0.0"}', { PATH: NO_NODE, CNI_ARGS: args });
      expect(r.stdout.toString(), args).toBe(nodeAnswer('{"cniVersion":"1.0.0"}'));
    }
  });

  test('any printable version and JSON whitespace between the tokens (property)', () => {
    const ws = fc.string({ unit: fc.constantFrom(' ', '\t', '\n', '\r'), maxLength: 4 });
    const version = fc.oneof(
      fc.string({ unit: fc.constantFrom('0', '1', '2', '9', '.', 'a', '-'), maxLength: 12 }),
      fc.string({ unit: fc.integer({ min: 0x20, max: 0x7e }).filter((c) => c !== 0x22 && c !== 0x5c).map((c) => String.fromCharCode(c)), maxLength: 20 }),
    );
    fc.assert(fc.property(fc.tuple(ws, ws, ws, ws, ws, ws), version, (w, v) => {
      const text = `${w[0]}{${w[1]}"cniVersion"${w[2]}:${w[3]}"${v}"${w[4]}}${w[5]}`;
      const r = call(FRONT, text, { PATH: NO_NODE });
      return r.status === 0 && r.stdout.toString('latin1') === nodeAnswer(text);
    }), { numRuns: 150 });
  });

  test('a stdin written in pieces is read to its end before the answer', async () => {
    const child = spawn(FRONT, [], { env: { PATH: NO_NODE, CNI_COMMAND: 'VERSION' }, stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    const done = new Promise<number | null>((resolve) => child.on('close', resolve));
    child.stdin.write('{"cniVersion":');
    await new Promise((r) => setTimeout(r, 150));
    child.stdin.end('"1.1.0"}');
    expect(await done).toBe(0);
    expect(out).toBe(nodeAnswer('{"cniVersion":"1.1.0"}'));
  });
});

describe('the front and the Node path give the same bytes', () => {
  const big = Buffer.alloc((1 << 20) + 100, 0x20);
  const cases: Array<[string, string | Buffer, Env]> = [
    ...SIMPLE_VERSIONS.slice(0, 16).map((v): [string, string, Env] => [`version ${JSON.stringify(v)}`, JSON.stringify({ cniVersion: v }), {}]),
    ['another key', '{"cniVersion":"1.1.0","name":"x"}', {}],
    ['a number', '{"cniVersion":1}', {}],
    ['an escape', '{"cniVersion":"\\u0031.1.0"}', {}],
    ['two objects', '{"cniVersion":"1.1.0"}{}', {}],
    ['a list', '[{"cniVersion":"1.1.0"}]', {}],
    ['null', 'null', {}],
    ['empty', '', {}],
    ['not JSON', 'garbage', {}],
    ['a BOM', '\uFEFF{"cniVersion":"1.1.0"}', {}],
    ['non-ASCII', '{"cniVersion":"１.1.0"}', {}],
    ['a raw tab in the string', '{"cniVersion":"1.1\t0"}', {}],
    ['a key twice', '{"cniVersion":"1.1.0","cniVersion":"0.4.0"}', {}],
    ['a NUL', Buffer.from('{"cniVersion":"1.1.0"}\0'), {}],
    ['5000 spaces first', `${' '.repeat(5000)}{"cniVersion":"1.1.0"}`, {}],
    ['over 1 MiB', big, {}],
    ['CNI_ARGS without "="', '{"cniVersion":"1.0.0"}', { CNI_ARGS: 'a' }],
    ['CNI_ARGS "=x"', '{"cniVersion":"1.0.0"}', { CNI_ARGS: 'K=V;=x' }],
    ['CNI_COMMAND version', '{"cniVersion":"1.0.0"}', { CNI_COMMAND: 'version' }],
  ];
  test.each(cases)('%s', (_what, input, env) => {
    const front = call(FRONT, input, env);
    const node = call(SCRIPT, input, env);
    expect(node.stdout.length).toBeGreaterThan(0);
    expect(front.stdout.toString('latin1')).toBe(node.stdout.toString('latin1'));
    expect(front.status).toBe(node.status);
  }, 60_000);
});

describe('everything else goes to Node as bin/nspawn-cni.cjs\'s #! line starts it', () => {
  const nodeOptions = (createRequire(import.meta.url)('../../bin/cached-bundle.cjs') as { nodeOptions(name: string): string[] }).nodeOptions('nspawn-cni');
  const env = { PATH: `${FAKE}:/usr/bin:/bin`, NODE_EXTRA_CA_CERTS: '/etc/ssl/certs/ca-certificates.crt', MALLOC_ARENA_MAX: '8', KEEP: 'kept' };

  test('an ADD: the #! line\'s V8 flags (the code cache\'s), the script, the arguments; NODE_EXTRA_CA_CERTS out, MALLOC_ARENA_MAX=1; stdin untouched', () => {
    const line = readFileSync(SCRIPT, 'utf8').split('\n', 1)[0] ?? '';
    expect(line).toBe(`#!/usr/bin/env -S -u NODE_EXTRA_CA_CERTS MALLOC_ARENA_MAX=1 node ${nodeOptions.join(' ')}`);
    expect(nodeOptions.length).toBeGreaterThan(0);
    resetRecord();
    const config = '{"cniVersion":"1.0.0","name":"n","type":"nspawn-cni"}';
    const r = call(FRONT, config, { ...env, CNI_COMMAND: 'ADD', CNI_CONTAINERID: 'c' }, ['a b', '-x']);
    expect(r.status, r.stderr.toString()).toBe(0);
    const got = recorded();
    expect(got.argv).toEqual([...nodeOptions, realpathSync(SCRIPT), 'a b', '-x']);
    expect(got.env).toContain('MALLOC_ARENA_MAX=1');
    expect(got.env).toContain('KEEP=kept');
    expect(got.env).toContain('CNI_COMMAND=ADD');
    expect(got.env.filter((l) => l.startsWith('NODE_EXTRA_CA_CERTS='))).toEqual([]);
    expect(got.stdin.toString()).toBe(config);
  });

  test('a VERSION it does not answer: Node gets every byte of stdin the runtime wrote (pipe, in pieces, a file)', async () => {
    for (const input of ['garbage', '{"cniVersion":"1.0.0","x":1}', `${' '.repeat(70_000)}{"cniVersion":"1.1.0"}`, '\0\x01\xff']) {
      resetRecord();
      const r = call(FRONT, Buffer.from(input, 'latin1'), env);
      expect(r.status, r.stderr.toString()).toBe(0);
      expect(recorded().stdin.equals(Buffer.from(input, 'latin1'))).toBe(true);
    }
    // over 1 MiB: Node reads (and refuses) no more than 1 MiB + 1 byte, the front passes that on
    resetRecord();
    const big = Buffer.alloc((1 << 20) + 5000, 0x41);
    call(FRONT, big, env);
    expect(recorded().stdin.equals(big.subarray(0, (1 << 20) + 1))).toBe(true);
    // written in pieces
    resetRecord();
    const child = spawn(FRONT, [], { env: { ...env, CNI_COMMAND: 'VERSION' }, stdio: ['pipe', 'ignore', 'ignore'] });
    const done = new Promise<number | null>((resolve) => child.on('close', resolve));
    child.stdin.write('{"cniVersion":"1.0.0",');
    await new Promise((r) => setTimeout(r, 150));
    child.stdin.end('"x":1}');
    expect(await done).toBe(0);
    expect(recorded().stdin.toString()).toBe('{"cniVersion":"1.0.0","x":1}');
    // a file: read from where the runtime left it
    resetRecord();
    writeFileSync(`${work}/in.json`, 'XX{"cniVersion":"1.0.0"} tail');
    const fd = openSync(`${work}/in.json`, 'r');
    try {
      readSync(fd, Buffer.alloc(2), 0, 2, null); // the runtime's offset: 2
      const r = spawnSync(FRONT, [], { stdio: [fd, 'pipe', 'pipe'], env: { ...env, CNI_COMMAND: 'VERSION' } });
      expect(r.status).toBe(0);
    } finally {
      closeSync(fd);
    }
    expect(recorded().stdin.toString()).toBe('{"cniVersion":"1.0.0"} tail');
  }, 60_000);

  test('started through a link (as /opt/cni/bin/nspawn-cni): the script next to the real executable', () => {
    symlinkSync(FRONT, `${work}/nspawn-cni`);
    resetRecord();
    call(`${work}/nspawn-cni`, '{}', { ...env, CNI_COMMAND: 'DEL' });
    expect(recorded().argv).toEqual([...nodeOptions, realpathSync(SCRIPT)]);
  });
});
