// Bad input of any shape is a ConfigError (exit 1, nothing created), never a crash.
import { describe, expect, test } from 'vitest';
import fc from 'fast-check';
import { ConfigError } from '../../../src/errors.js';
import { parseCommandLine, verifyLaunchSpec, type CliEnvironment } from '../../../src/runtime/cli.js';
import { parseSettings } from '../../../src/runtime/settings.js';

const env: CliEnvironment = {
  cwd: '/srv/box', hostname: () => 'h', random64: () => 1n, findMachineImage: () => undefined, userNamespacesSupported: true,
};

const tokens = [
  '-b', '-a', '-x', '-n', '-U', '-q', '-j', '-v', '-D', '-M', '-p', '-E', '-u', '-bUD', '-Dx', '--', '-', '--boot',
  '--directory', '--machine=', '--port=', '--bind=', '--bind-ro', '--tmpfs=', '--private-users=', '--private-users',
  '--network-zone=', '--network-bridge=', '--network-veth-extra=', '--network-macvlan=', '--network-namespace-path=',
  '--resolv-conf=', '--settings=', '--kill-signal=', '--link-journal=', '--property=', '--template=', '--chdir=',
  '--register=', '--net', '--x', '=', ':', '/a', 'a:b', '80', 'udp:53', 'yes', 'pick', '/a:/b:rbind', 'A=1', 'web',
];

function onlyConfigErrors(fn: () => unknown): boolean {
  try {
    fn();
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
  }
  return true;
}

describe('robustness', () => {
  test('any argv parses or fails with a ConfigError', () => {
    const arg = fc.oneof(
      fc.constantFrom(...tokens),
      fc.tuple(fc.constantFrom(...tokens), fc.string({ maxLength: 12 })).map(([a, b]) => a + b),
      fc.string({ maxLength: 20 }),
    );
    fc.assert(fc.property(fc.array(arg, { maxLength: 8 }), (argv) => onlyConfigErrors(() => {
      const r = parseCommandLine(argv, env);
      if (r.action === 'run') verifyLaunchSpec(r.spec);
    })), { numRuns: 4000 });
  });

  test('any settings file parses or fails with a ConfigError', () => {
    const line = fc.oneof(
      fc.constantFrom('[Exec]', '[Files]', '[Network]', '[X-Foo]', '[Bad', '#c', ';c', '', '\\', 'Boot=yes', 'Port=80', 'Zone=z'),
      fc.tuple(fc.constantFrom('Boot', 'ProcessTwo', 'Parameters', 'Environment', 'PrivateUsers', 'Bind', 'BindReadOnly',
        'TemporaryFileSystem', 'Port', 'Zone', 'Bridge', 'MACVLAN', 'VirtualEthernetExtra', 'KillSignal', 'ResolvConf',
        'Hostname', 'WorkingDirectory', 'Unknown'), fc.string({ maxLength: 16 })).map(([k, v]) => `${k}=${v}`),
      fc.string({ maxLength: 20 }),
    );
    fc.assert(fc.property(fc.array(line, { maxLength: 12 }), (lines) => onlyConfigErrors(() => {
      parseSettings(lines.join('\n'), 'f.nspawn', () => {});
    })), { numRuns: 4000 });
  });

  test('errors always name the offending input', () => {
    expect(() => parseCommandLine(['--network-zone=way-too-long-zone'], env)).toThrow(/way-too-long-zone/);
  });
});
