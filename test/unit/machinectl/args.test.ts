// machinectl-ts's command line: getopt behaviour (options anywhere, prefixes, groups, `--`), the
// shell exception, verb argument counts, option/verb combinations, and bad input for each.
import { describe, expect, test } from 'vitest';
import { listedNames, parseArgs, parseMachineUser, signalList, type ParseResult } from '../../../src/machinectl/args.js';
import { HintedConfigError } from '../../../src/runtime/machine-name.js';

function run(argv: string[]): Extract<ParseResult, { action: 'run' }> {
  const r = parseArgs(argv);
  if (r.action !== 'run') throw new Error(`expected run, got ${r.action}`);
  return r;
}

function error(argv: string[]): HintedConfigError {
  try {
    parseArgs(argv);
  } catch (e) {
    if (e instanceof HintedConfigError) return e;
    throw e;
  }
  throw new Error(`no error for ${argv.join(' ')}`);
}

describe('verbs', () => {
  test('list is the default verb', () => {
    expect(run([]).verb).toBe('list');
    expect(run(['--no-legend']).options.legend).toBe(false);
  });

  test('stop is poweroff', () => {
    const r = run(['stop', 'a', 'b']);
    expect(r.verb).toBe('poweroff');
    expect(r.args).toEqual(['a', 'b']);
  });

  test.each([
    ['status', [], 'Too few arguments'],
    ['terminate', [], 'Too few arguments'],
    ['kill', [], 'Too few arguments'],
    ['reboot', [], 'Too few arguments'],
    ['poweroff', [], 'Too few arguments'],
    ['rename', ['a'], 'Too few arguments'],
    ['rename', ['a', 'b', 'c'], 'Too many arguments'],
    ['clone', ['a'], 'Too few arguments'],
    ['remove', [], 'Too few arguments'],
    ['start', [], 'Too few arguments'],
    ['enable', [], 'Too few arguments'],
    ['disable', [], 'Too few arguments'],
    ['login', ['a', 'b'], 'Too many arguments'],
    ['list', ['x'], 'Too many arguments'],
    ['list-images', ['x'], 'Too many arguments'],
    ['set-property', ['a'], 'Too few arguments'],
  ])('%s %j: %s', (verb, args, message) => {
    const e = error([verb, ...args]);
    expect(e.message).toContain(message);
    expect(e.message).toContain(`'${verb}'`);
    expect(e.hint).toMatch(/^usage: machinectl-ts /);
    expect(e.code).toBe('CFG_ARGUMENTS');
  });

  test('unknown and unsupported verbs are named', () => {
    expect(error(['frobnicate']).message).toBe("Unknown command verb 'frobnicate'.");
    const e = error(['pull-raw', 'http://example.org/x.raw']);
    expect(e.message).toBe("Verb 'pull-raw' of machinectl is not supported by machinectl-ts.");
    expect(e.code).toBe('CFG_UNSUPPORTED_VERB');
    expect(error(['bind', 'a', '/x']).code).toBe('CFG_UNSUPPORTED_VERB');
  });

  test('--help lists exactly the verbs and options of the tables, each parsed as listed', () => {
    const h = parseArgs(['--help']);
    const text = h.action === 'help' ? h.text : '';
    const [verbPart = '', optionPart = ''] = text.split('\nOptions:\n');
    const listed = { long: new Set<string>(), short: new Set<string>(), verbs: new Set<string>() };
    for (const line of optionPart.split('\n')) {
      const m = /^ {2}(?:-([A-Za-z]))?\s*--([a-z0-9-]+)/.exec(line);
      if (m?.[1]) listed.short.add(m[1]);
      if (m?.[2]) listed.long.add(m[2]);
    }
    for (const line of verbPart.split('\n')) {
      const m = /^ {2}([a-z][a-z-]+)/.exec(line);
      if (m?.[1]) listed.verbs.add(m[1]);
    }
    const table = listedNames();
    expect([...listed.long].sort()).toEqual([...table.long].sort());
    expect([...listed.short].sort()).toEqual([...table.short].sort());
    expect([...listed.verbs].sort()).toEqual([...table.verbs].sort());
    for (const name of listed.long) {
      try {
        parseArgs([`--${name}=x`, 'list']);
      } catch (err) {
        expect(String(err)).not.toMatch(/Unknown option|ambiguous/);
      }
    }
    for (const verb of listed.verbs) {
      try {
        parseArgs([verb, 'a', 'b']);
      } catch (err) {
        expect(String(err)).not.toMatch(/Unknown command verb|not supported/);
      }
    }
  });

  test('help, version, signal and output lists act when read', () => {
    expect(parseArgs(['--help', 'bogus-verb']).action).toBe('help');
    expect(parseArgs(['help']).action).toBe('help');
    expect(parseArgs(['--version']).action).toBe('version');
    const s = parseArgs(['kill', 'x', '--signal=help']);
    expect(s.action).toBe('list');
    expect(s.action === 'list' && s.text.split('\n')).toContain('RTMIN+4');
    expect(signalList().split('\n')[0]).toBe('HUP');
    const o = parseArgs(['-o', 'help']);
    expect(o.action === 'list' && o.text).toContain('json-pretty\n');
  });
});

describe('options', () => {
  test('anywhere, before or after the verb, in every getopt form', () => {
    const r = run(['-al', 'show', 'foo', '-p', 'Leader', '--property=Class,State', '--value']);
    expect(r.verb).toBe('show');
    expect(r.args).toEqual(['foo']);
    expect(r.options.all).toBe(true);
    expect(r.options.full).toBe(true);
    expect(r.options.properties).toEqual(['Leader', 'Class', 'State']);
    expect(r.options.value).toBe(true);
  });

  test('unique prefixes of long options; ambiguous and unknown ones are refused', () => {
    expect(run(['--no-leg']).options.legend).toBe(false);
    expect(run(['kill', 'a', '--sig', 'KILL']).options.signal).toEqual({ name: 'SIGKILL', number: 9 });
    expect(error(['--no']).message).toMatch(/^Option '--no' is ambiguous; possibilities: /);
    expect(error(['--frob']).message).toBe("Unknown option '--frob'.");
    expect(error(['-Z']).message).toBe("Unknown option '-Z'.");
    expect(error(['--all=yes']).message).toBe("Option '--all' doesn't allow an argument.");
    expect(error(['list', '--output']).message).toBe("Option '--output' requires an argument.");
    expect(error(['list', '-o']).message).toBe("Option '-o' requires an argument.");
  });

  test('-o: JSON modes drop the legend; unknown modes are refused', () => {
    const r = run(['list', '-o', 'json']);
    expect(r.options.output).toBe('json');
    expect(r.options.legend).toBe(false);
    expect(run(['list', '--output=short']).options.legend).toBe(true);
    expect(error(['list', '-o', 'yaml']).message).toBe("Unknown output 'yaml'.");
  });

  test('--signal and --kill-whom', () => {
    const r = run(['kill', '-s', 'RTMIN+4', '--kill-whom=leader', 'foo']);
    expect(r.options.signal).toEqual({ name: 'SIGRTMIN+4', number: 38 });
    expect(r.options.killWhom).toBe('leader');
    expect(run(['kill', '-sUSR1', 'foo']).options.signal.number).toBe(10);
    expect(run(['kill', '--signal=9', 'foo']).options.signal.name).toBe('SIGKILL');
    expect(error(['kill', '--signal=SIGBOGUS', 'foo']).message).toBe('Unknown signal: SIGBOGUS');
    expect(error(['kill', '--signal=65', 'foo']).code).toBe('CFG_INVALID_SIGNAL');
    expect(error(['kill', '--kill-whom=everyone', 'foo']).message).toBe('Invalid --kill-whom= value: everyone');
    expect(error(['poweroff', '--signal=KILL', 'foo']).message).toMatch(/--signal= applies to 'kill' only/);
    expect(error(['status', '--kill-whom=all', 'foo']).message).toMatch(/--kill-whom= applies to 'kill' only/);
  });

  test('--max-addresses', () => {
    expect(run(['--max-addresses=3']).options.maxAddresses).toBe(3);
    expect(run(['--max-addresses=all']).options.maxAddresses).toBe(Infinity);
    expect(run(['--max-addresses=0']).options.maxAddresses).toBe(0);
    expect(error(['--max-addresses=-1']).message).toBe('Invalid number of addresses: -1');
    expect(error(['--max-addresses=x']).message).toBe('Invalid number of addresses: x');
  });

  test('-n is checked though there is no journal', () => {
    expect(run(['status', 'x', '-n', '5']).verb).toBe('status');
    expect(error(['status', 'x', '-n', 'many']).message).toBe("Failed to parse lines 'many'");
  });

  test('remote and machine-scoped operation are refused', () => {
    expect(error(['-H', 'host', 'list']).code).toBe('CFG_UNSUPPORTED_OPTION');
    expect(error(['--machine=foo', 'list']).code).toBe('CFG_UNSUPPORTED_OPTION');
  });

  test('options that belong to one verb are refused elsewhere', () => {
    expect(error(['status', 'x', '--uid=bob']).message).toMatch(/apply to 'shell' only/);
    expect(error(['login', 'x', '--uid=bob']).message).toBe("--setenv= and --uid= are not supported for 'login'. Use 'shell' instead.");
    expect(error(['list', '--runtime']).message).toMatch(/--runtime applies to 'set-property' only/);
    expect(error(['rename', 'a', 'b', '--read-only']).message).toMatch(/--read-only applies to 'clone', 'import-tar', 'import-fs' and 'pull-tar' only/);
    expect(run(['clone', 'a', 'b', '--read-only']).options.readOnly).toBe(true);
    expect(run(['set-property', '--runtime', 'a', 'MemoryMax=1G']).options.runtime).toBe(true);
  });
});

describe('shell', () => {
  test('everything after the machine name is the command, options included', () => {
    const r = run(['-q', 'shell', '-E', 'A=1', '--uid=bob', 'foo', '/bin/ls', '-l', '--all', '--', 'x']);
    expect(r.verb).toBe('shell');
    expect(r.args).toEqual(['foo', '/bin/ls', '-l', '--all', '--', 'x']);
    expect(r.options.quiet).toBe(true);
    expect(r.options.uid).toBe('bob');
    expect(r.options.setenv).toEqual(['A=1']);
    expect(r.options.all).toBe(false);
  });

  test('a shell without a machine name is the host', () => {
    expect(run(['shell']).args).toEqual([]);
    expect(parseMachineUser(undefined, undefined)).toEqual({ machine: '.host' });
    expect(parseMachineUser('bob@', undefined)).toEqual({ machine: '.host', user: 'bob' });
  });

  test('USER@NAME, and --uid as the fallback user', () => {
    expect(parseMachineUser('bob@foo', 'alice')).toEqual({ machine: 'foo', user: 'bob' });
    expect(parseMachineUser('foo', 'alice')).toEqual({ machine: 'foo', user: 'alice' });
    expect(parseMachineUser('foo', undefined)).toEqual({ machine: 'foo' });
    expect(() => parseMachineUser('@foo', undefined)).toThrow(/no user before '@'/);
  });

  test('-E: NAME=VALUE replaces an earlier NAME; a bare NAME takes our value; bad ones are refused', () => {
    process.env.MACHINECTL_TEST_VAR = 'from-here';
    try {
      const r = run(['shell', '-E', 'A=1', '-E', 'A=2', '-E', 'MACHINECTL_TEST_VAR', '-E', 'UNSET_VAR_XYZ', 'foo']);
      expect(r.options.setenv).toEqual(['A=2', 'MACHINECTL_TEST_VAR=from-here']);
    } finally {
      delete process.env.MACHINECTL_TEST_VAR;
    }
    expect(error(['shell', '-E', '1A=x', 'foo']).message).toMatch(/^Cannot assign environment variable 1A=x/);
    expect(error(['shell', '-E', 'A=\x01', 'foo']).message).toMatch(/control characters/);
    expect(error(['shell', '-E', 'a-b', 'foo']).message).toMatch(/invalid name/);
    expect(error(['shell', '--uid=', 'foo']).message).toBe('--uid= needs a user name or number.');
  });
});
