import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseCommandLine, type CliEnvironment, type CommandLine } from '../../../src/runtime/cli.js';
import { HintedConfigError } from '../../../src/runtime/machine-name.js';
import {
  findSettingsFile, mergeSettings, parseIni, parseSettings, resolveLaunchSpec, splitWords, type NspawnSettings,
} from '../../../src/runtime/settings.js';
import type { LaunchSpec } from '../../../src/runtime/spec.js';
import { stopSignal } from '../../../src/runtime/launcher.js';

// Every test works in its own temporary root: <root>/etc, <root>/run for the admin directories and
// <root>/machines/NAME for the container; the machine's real /etc/systemd/nspawn is never read.
let root: string;
let etc: string;
let run: string;
let machines: string;
const env = (): CliEnvironment => ({
  cwd: root, hostname: () => 'hosty', random64: () => 7n, findMachineImage: () => undefined, userNamespacesSupported: true,
});

beforeEach(() => {
  root = mkdtempSync(join(tmpdir(), 'nspawn-settings-'));
  etc = join(root, 'etc');
  run = join(root, 'run');
  machines = join(root, 'machines');
  for (const d of [etc, run, join(machines, 'web')]) mkdirSync(d, { recursive: true });
});
afterEach(() => rmSync(root, { recursive: true, force: true }));

function cl(...argv: string[]): CommandLine {
  const r = parseCommandLine(['-D', join(machines, 'web'), ...argv], env());
  if (r.action !== 'run') throw new Error('not run');
  return r;
}
function resolve(argv: string[], warnings: string[] = []): LaunchSpec {
  return resolveLaunchSpec(cl(...argv), { searchDirs: [etc, run], warn: (m) => warnings.push(m) });
}
function parse(text: string, warnings: string[] = []): NspawnSettings {
  return parseSettings(text, '/x/web.nspawn', (m) => warnings.push(m));
}
function parseError(text: string): { message: string; hint?: string } {
  try {
    parse(text);
  } catch (e) {
    expect(e).toBeInstanceOf(HintedConfigError);
    return { message: (e as HintedConfigError).message, hint: (e as HintedConfigError).hint };
  }
  throw new Error('no error');
}

describe('INI syntax as systemd\'s config_parse', () => {
  test('comments, blank lines, whitespace, continuation lines', () => {
    const a = parseIni([
      '# comment',
      '; also a comment',
      '',
      '[Exec]',
      '  Parameters = /bin/sh \\',
      '# a comment inside a continuation is skipped',
      '    -c true',
      'Boot=yes\r',
      'Environment=A=1\\\\',
      '[X-Custom]',
      'Anything=goes',
      '[Network]',
      'X-Mine=1',
      'Zone=web',
    ].join('\n'), 'f', () => { throw new Error('no warnings expected'); });
    expect(a).toEqual([
      { section: 'Exec', key: 'Parameters', value: '/bin/sh      -c true', line: 5 },
      { section: 'Exec', key: 'Boot', value: 'yes', line: 8 },
      { section: 'Exec', key: 'Environment', value: 'A=1\\\\', line: 9 },
      { section: 'Network', key: 'Zone', value: 'web', line: 14 },
    ]);
  });

  test('a continuation on the last line ends the file', () => {
    expect(parseIni('[Exec]\nBoot=yes \\', 'f', () => {})).toEqual([{ section: 'Exec', key: 'Boot', value: 'yes', line: 2 }]);
  });

  test('syntax errors name file and line', () => {
    expect(parseError('[Exec\nBoot=yes').message).toBe("/x/web.nspawn:1: Invalid section header '[Exec'");
    expect(parseError('Boot=yes').message).toBe('/x/web.nspawn:1: Assignment outside of section: Boot=yes');
    expect(parseError('[Exec]\n\nBoot yes').message).toBe('/x/web.nspawn:3: Missing \'=\' in "Boot yes"');
  });

  test('unknown sections and keys are warnings with file and line; unsupported systemd keys say so', () => {
    const w: string[] = [];
    const s = parse('[Exec]\nBoot=yes\nFrobnicate=1\nCapability=CAP_NET_ADMIN\n[Weird]\nKey=1\n[Files]\nReadOnly=yes', w);
    expect(s.startMode).toBe('boot');
    expect(w).toEqual([
      "/x/web.nspawn:3: Unknown key name 'Frobnicate' in section 'Exec', ignoring.",
      '/x/web.nspawn:4: Capability= in section [Exec] is not supported by nspawn-ts, ignoring.',
      "/x/web.nspawn:5: Unknown section 'Weird'. Ignoring.",
      '/x/web.nspawn:8: ReadOnly= in section [Files] is not supported by nspawn-ts, ignoring.',
    ]);
  });

  test('word splitting of Parameters=/Environment= (quotes, kept escapes)', () => {
    expect(splitWords(`/bin/sh -c "echo hello world" 'a b'`)).toEqual(['/bin/sh', '-c', 'echo hello world', 'a b']);
    expect(splitWords('  a\\ b  c ')).toEqual(['a\\ b', 'c']);
    expect(() => splitWords('"open')).toThrow('unterminated " quote');
  });
});

describe('keys', () => {
  test('[Exec]', () => {
    const s = parse([
      '[Exec]', 'ProcessTwo=yes', 'Parameters=/bin/sh -c "sleep 1"', 'Parameters=extra', 'Environment=A=1 B=2', 'Environment=A=3',
      'User=daemon', 'WorkingDirectory=/srv', 'Hostname=web.local', 'PrivateUsers=pick', 'KillSignal=SIGINT',
      'ResolvConf=copy-stub', 'LinkJournal=try-host', 'Ephemeral=yes',
    ].join('\n'));
    expect(s).toEqual({
      startMode: 'as-pid2', parameters: ['/bin/sh', '-c', 'sleep 1', 'extra'], environment: ['B=2', 'A=3'], user: 'daemon',
      workingDirectory: '/srv', hostname: 'web.local', privateUsers: { mode: 'pick' }, killSignal: 'SIGINT',
      resolvConf: 'copy-stub', linkJournal: 'try-host', ephemeral: true,
    });
  });

  test('an empty assignment resets a list', () => {
    const s = parse('[Exec]\nParameters=a b\nParameters=\nParameters=c\nEnvironment=A=1\nEnvironment=\n[Network]\nPort=80\nPort=\nPort=81\nMACVLAN=eth0 eth1\nMACVLAN=\n[Files]\nBind=/a\nBindReadOnly=/b\nBind=\nTemporaryFileSystem=/t\nTemporaryFileSystem=');
    expect(s.parameters).toEqual(['c']);
    expect(s.environment).toEqual([]);
    expect(s.ports?.map((p) => p.hostPort)).toEqual([81]);
    expect(s.macvlan).toEqual([]);
    expect(s.binds).toEqual([{ source: '/b', destination: '/b', readOnly: true, options: [] }]);
    expect(s.tmpfs).toEqual([]);
  });

  test('Boot= and ProcessTwo= conflict; Parameters= alone is the command', () => {
    expect(parseError('[Exec]\nBoot=yes\nProcessTwo=yes').message).toBe('/x/web.nspawn:3: Conflicting Boot= or ProcessTwo= setting found.');
    expect(parseError('[Exec]\nProcessTwo=yes\nBoot=yes').message).toBe('/x/web.nspawn:3: Conflicting Boot= or ProcessTwo= setting found.');
    expect(parse('[Exec]\nBoot=no').startMode).toBe('command');
    expect(parse('[Exec]\nParameters=/bin/true')).toEqual({ startMode: 'command', parameters: ['/bin/true'] });
  });

  test('[Files] and [Network]', () => {
    const w: string[] = [];
    const s = parse([
      '[Files]', 'Bind=/srv/data:/data:norbind', 'BindReadOnly=/etc/ssl', 'TemporaryFileSystem=/run/x:size=1M', 'PrivateUsersChown=yes',
      '[Network]', 'Private=yes', 'VirtualEthernet=yes', 'VirtualEthernetExtra=vx0:inner', 'Bridge=br0', 'Interface=dummy0 dummy1',
      'MACVLAN=eth0', 'IPVLAN=eth1', 'Port=8080:80', 'Port=udp:53', 'Port=tcp:8080', 'Zone=web',
    ].join('\n'), w);
    expect(s).toEqual({
      binds: [
        { source: '/srv/data', destination: '/data', readOnly: false, options: ['norbind'] },
        { source: '/etc/ssl', destination: '/etc/ssl', readOnly: true, options: [] },
      ],
      tmpfs: [{ destination: '/run/x', options: 'size=1M' }],
      privateUsersChown: true,
      private: true, virtualEthernet: true, vethExtra: [{ hostIfname: 'vx0', containerIfname: 'inner' }], bridge: 'br0',
      interfaces: ['dummy0', 'dummy1'], macvlan: ['eth0'], ipvlan: ['eth1'], zone: 'web',
      ports: [
        { protocol: 'tcp', hostPort: 8080, hostPortEnd: 8080, containerPort: 80, containerPortEnd: 80 },
        { protocol: 'udp', hostPort: 53, hostPortEnd: 53, containerPort: 53, containerPortEnd: 53 },
      ],
    });
    // a duplicate Port= is a warning (as systemd), the first mapping stays
    expect(w).toEqual(['/x/web.nspawn:16: Duplicate port specification, ignoring: tcp:8080']);
  });

  test('bad values are errors with file, line and what is allowed', () => {
    const cases: Array<[string, string, RegExp]> = [
      ['[Exec]\nBoot=maybe', '/x/web.nspawn:2: Invalid Boot= value: maybe', /Boot= takes a boolean/],
      ['[Exec]\nKillSignal=SIGNOPE', '/x/web.nspawn:2: Invalid KillSignal= value: SIGNOPE', /signal name/],
      ['[Exec]\nResolvConf=copy', '/x/web.nspawn:2: Invalid ResolvConf= value: copy', /bind-stub/],
      ['[Exec]\nLinkJournal=maybe', '/x/web.nspawn:2: Invalid LinkJournal= value: maybe', /try-guest/],
      ['[Exec]\nHostname=a_b', '/x/web.nspawn:2: Invalid Hostname= value: a_b', /hostname/],
      ['[Exec]\nWorkingDirectory=srv', '/x/web.nspawn:2: Invalid WorkingDirectory= value: srv', /absolute/],
      ['[Exec]\nWorkingDirectory=/srv/../etc', '/x/web.nspawn:2: Invalid WorkingDirectory= value: /srv/../etc', /normalized/],
      ['[Exec]\nEnvironment=NOEQ', '/x/web.nspawn:2: Invalid Environment= value: NOEQ', /NAME=VALUE/],
      ['[Exec]\nParameters="unterminated', '/x/web.nspawn:2: unterminated " quote', /quote/],
      ['[Exec]\nPrivateUsers=65535', '/x/web.nspawn:2: Failed to parse UID "65535": Invalid argument', /PrivateUsers= takes no, yes, pick/],
      ['[Files]\nBind=relative', '/x/web.nspawn:2: Failed to parse Bind= argument relative: the source path "relative" is not absolute', /Bind= takes SOURCE/],
      ['[Files]\nBindReadOnly=/a:/b:bogus', '/x/web.nspawn:2: Failed to parse BindReadOnly= argument /a:/b:bogus: invalid bind mount option "bogus"', /rbind/],
      ['[Files]\nTemporaryFileSystem=tmp', '/x/web.nspawn:2: Failed to parse TemporaryFileSystem= argument tmp: the path "tmp" is not absolute', /absolute PATH/],
      ['[Files]\nPrivateUsersChown=perhaps', '/x/web.nspawn:2: Invalid PrivateUsersChown= value: perhaps', /boolean/],
      ['[Network]\nZone=abcdefghijklm', '/x/web.nspawn:2: Network zone name not valid: vz-abcdefghijklm', /1-12 characters/],
      ['[Network]\nBridge=a:b', '/x/web.nspawn:2: Bridge=: interface name not valid: a:b', /interface name/],
      ['[Network]\nMACVLAN=eth0 all', '/x/web.nspawn:2: MACVLAN=: network interface name not valid: all', /reserved/],
      ['[Network]\nVirtualEthernetExtra=a:b:c', '/x/web.nspawn:2: Failed to parse VirtualEthernetExtra= parameter: a:b:c', /HOSTIF/],
      ['[Network]\nPort=sctp:80', '/x/web.nspawn:2: Failed to parse host port sctp:80: Invalid argument (expected [tcp:|udp:]HOSTPORT[:CONTAINERPORT] with ports 1-65535 (e.g. 8080, 8080:80, udp:53))', /.*/],
      ['[Network]\nPrivate=2', '/x/web.nspawn:2: Invalid Private= value: 2', /boolean/],
    ];
    for (const [text, message, hint] of cases) {
      const e = parseError(text);
      expect(e.message, text).toBe(message);
      expect(e.hint ?? '', text).toMatch(hint);
    }
  });
});

describe('lookup and trust', () => {
  test('/etc wins over /run, both over the file next to the directory; -D / has no neighbour', () => {
    writeFileSync(join(machines, 'web.nspawn'), '[Exec]\nHostname=beside\n');
    expect(findSettingsFile('web', join(machines, 'web'), false, { searchDirs: [etc, run] }))
      .toMatchObject({ path: join(machines, 'web.nspawn'), trusted: false });
    expect(findSettingsFile('web', join(machines, 'web'), true, { searchDirs: [etc, run] })).toMatchObject({ trusted: true });
    writeFileSync(join(run, 'web.nspawn'), '[Exec]\nHostname=run\n');
    expect(findSettingsFile('web', join(machines, 'web'), false, { searchDirs: [etc, run] }))
      .toMatchObject({ path: join(run, 'web.nspawn'), trusted: true });
    writeFileSync(join(etc, 'web.nspawn'), '[Exec]\nHostname=etc\n');
    expect(findSettingsFile('web', join(machines, 'web'), false, { searchDirs: [etc, run] }))
      .toMatchObject({ path: join(etc, 'web.nspawn'), trusted: true, text: '[Exec]\nHostname=etc\n' });
    expect(findSettingsFile('other', '/', false, { searchDirs: [etc, run], readFile: (p) => (p === '/other.nspawn' ? 'x' : undefined) })).toBeUndefined();
    expect(findSettingsFile('none', join(machines, 'web'), false, { searchDirs: [etc, run] })).toBeUndefined();
  });

  test('an untrusted file cannot add mounts, networking, ports, user namespaces or journal links', () => {
    writeFileSync(join(machines, 'web.nspawn'), [
      '[Exec]', 'Boot=yes', 'Hostname=fromfile', 'Environment=A=1', 'PrivateUsers=pick', 'LinkJournal=host',
      '[Files]', 'Bind=/srv', '[Network]', 'VirtualEthernet=yes', 'Port=80',
    ].join('\n'));
    const w: string[] = [];
    const s = resolve([], w);
    expect(s).toMatchObject({ mode: 'boot', hostname: 'fromfile', environment: ['A=1'], binds: [], privateUsers: { mode: 'no' }, linkJournal: 'auto' });
    expect(s.network).toMatchObject({ private: false, veth: false, ports: [] });
    expect(s.settingsFile).toBe(join(machines, 'web.nspawn'));
    const file = join(machines, 'web.nspawn');
    expect(w).toEqual([
      `Ignoring TemporaryFileSystem=, Bind= and BindReadOnly= settings, file ${file} is not trusted.`,
      `Ignoring network settings, file ${file} is not trusted.`,
      `Ignoring Port= setting, file ${file} is not trusted.`,
      `Ignoring PrivateUsers= and PrivateUsersChown= settings, file ${file} is not trusted.`,
      `Ignoring journal link setting, file ${file} is not trusted.`,
    ]);
  });

  test('--settings=trusted trusts the file next to the directory', () => {
    writeFileSync(join(machines, 'web.nspawn'), '[Files]\nBind=/srv\n[Network]\nVirtualEthernet=yes\nPort=80\n[Exec]\nPrivateUsers=pick');
    const w: string[] = [];
    const s = resolve(['--settings=trusted'], w);
    expect(w).toEqual([]);
    expect(s.binds).toHaveLength(1);
    expect(s.network).toMatchObject({ private: true, veth: true });
    expect(s.network.ports).toHaveLength(1);
    expect(s.privateUsers).toEqual({ mode: 'pick' });
    expect(s.privateUsersChown).toBe(true);
  });

  test('files in /etc are trusted; a zone from the file implies veth and private', () => {
    writeFileSync(join(etc, 'web.nspawn'), '[Network]\nZone=dmz\nPort=tcp:2222:22');
    const s = resolve([]);
    expect(s.network).toMatchObject({ private: true, veth: true, zone: 'dmz' });
    expect(s.network.ports[0]).toMatchObject({ hostPort: 2222, containerPort: 22 });
  });

  test('--settings=no reads nothing', () => {
    writeFileSync(join(etc, 'web.nspawn'), '[Exec]\nHostname=fromfile\nBoot=garbage');
    expect(resolve(['--settings=no']).hostname).toBeUndefined();
  });

  test('an ephemeral machine reads the settings of its plain name', () => {
    writeFileSync(join(etc, 'web.nspawn'), '[Exec]\nHostname=eph');
    const s = resolve(['-x']);
    expect(s.machine).toBe('web-0000000000000007');
    expect(s.hostname).toBe('eph');
  });
});

describe('precedence (--settings=yes vs override)', () => {
  beforeEach(() => {
    writeFileSync(join(etc, 'web.nspawn'), [
      '[Exec]', 'Boot=yes', 'Parameters=--unit=rescue.target', 'Hostname=file-host', 'Environment=FROM=file', 'User=fileuser',
      'WorkingDirectory=/file', 'KillSignal=SIGTERM', 'ResolvConf=off', 'LinkJournal=try-guest', 'PrivateUsers=identity',
      '[Files]', 'Bind=/from/file', '[Network]', 'Bridge=br-file', 'Port=9000',
    ].join('\n'));
  });

  test('with nothing on the command line the file applies', () => {
    const s = resolve([]);
    expect(s).toMatchObject({
      mode: 'boot', command: ['--unit=rescue.target'], hostname: 'file-host', environment: ['FROM=file'], user: 'fileuser',
      chdir: '/file', killSignal: 'SIGTERM', resolvConf: 'off', linkJournal: 'try-guest', privateUsers: { mode: 'identity' },
    });
    expect(s.binds.map((b) => b.source)).toEqual(['/from/file']);
    expect(s.network).toMatchObject({ bridge: 'br-file', veth: true, private: true });
  });

  test('yes: each setting the command line gave wins', () => {
    const s = resolve(['-a', '--hostname=cli-host', '-E', 'FROM=cli', '-u', 'cliuser', '--chdir=/cli', '--kill-signal=INT',
      '--resolv-conf=copy-host', '--link-journal=no', '--private-users=no', '--bind=/from/cli', '--network-zone=clizone', '-p', '7000',
      '/bin/true']);
    expect(s).toMatchObject({
      mode: 'as-pid2', command: ['/bin/true'], hostname: 'cli-host', environment: ['FROM=cli'], user: 'cliuser', chdir: '/cli',
      killSignal: 'SIGINT', resolvConf: 'copy-host', linkJournal: 'no', privateUsers: { mode: 'no' },
    });
    expect(s.binds.map((b) => b.source)).toEqual(['/from/cli']);
    expect(s.network).toMatchObject({ zone: 'clizone', veth: true });
    expect(s.network.bridge).toBeUndefined();
    expect(s.network.ports.map((p) => p.hostPort)).toEqual([7000]);
  });

  test('a command on the command line masks Boot=/Parameters=', () => {
    expect(resolve(['/bin/echo', 'hi'])).toMatchObject({ mode: 'command', command: ['/bin/echo', 'hi'] });
  });

  test('override: the file wins over the command line', () => {
    const s = resolve(['--settings=override', '-a', '--hostname=cli-host', '--network-zone=clizone', '-p', '7000', '/bin/true']);
    expect(s).toMatchObject({ mode: 'boot', command: ['--unit=rescue.target'], hostname: 'file-host' });
    expect(s.network).toMatchObject({ bridge: 'br-file' });
    expect(s.network.zone).toBeUndefined();
    expect(s.network.ports.map((p) => p.hostPort)).toEqual([9000]);
  });

  test('override keeps command-line settings the file does not mention', () => {
    writeFileSync(join(etc, 'web.nspawn'), '[Exec]\nHostname=only-this');
    const s = resolve(['--settings=override', '-n', '-p', '80', '--chdir=/cli']);
    expect(s).toMatchObject({ hostname: 'only-this', chdir: '/cli' });
    expect(s.network).toMatchObject({ veth: true, private: true });
  });

  test('verification runs after the merge: a file can provide the private network -p needs', () => {
    writeFileSync(join(etc, 'web.nspawn'), '[Network]\nPrivate=yes');
    expect(resolve(['-p', '80']).network.ports).toHaveLength(1);
    writeFileSync(join(etc, 'web.nspawn'), '[Network]\nBridge=br0');
    // the command line's zone masks the file's network settings entirely
    expect(resolve(['--network-zone=z']).network).toMatchObject({ zone: 'z' });
    writeFileSync(join(etc, 'web.nspawn'), '[Network]\nBridge=br0\nZone=z');
    expect(() => resolve([])).toThrow('--network-bridge= and --network-zone= may not be combined.');
  });

  test('a bad file is an error even when the command line masks the setting', () => {
    writeFileSync(join(etc, 'web.nspawn'), '[Exec]\nBoot=sometimes');
    expect(() => resolve(['-b'])).toThrow(`${join(etc, 'web.nspawn')}:2: Invalid Boot= value: sometimes`);
  });

  test('PrivateUsersChown= alone means PrivateUsers=no with chown (settings_load)', () => {
    writeFileSync(join(etc, 'web.nspawn'), '[Files]\nPrivateUsersChown=yes');
    expect(resolve([])).toMatchObject({ privateUsers: { mode: 'no' }, privateUsersChown: true });
  });
});

describe('PrivateUsersOwnership= in [Files]', () => {
  test('a trusted file sets it with the user namespace; a bad value names file, line and the modes', () => {
    writeFileSync(join(etc, 'web.nspawn'), '[Exec]\nPrivateUsers=pick\n[Files]\nPrivateUsersOwnership=map\n');
    expect(resolve([])).toMatchObject({ privateUsers: { mode: 'pick' }, privateUsersOwnership: 'map' });
    expect(resolve(['--private-users-ownership=chown']).privateUsersOwnership).toBe('chown');
    const e = parseError('[Files]\nPrivateUsersOwnership=shift\n');
    expect(e.message).toBe('/x/web.nspawn:2: Invalid PrivateUsersOwnership= value: shift');
    expect(e.hint).toBe('PrivateUsersOwnership= takes off, chown, map, auto');
  });
});

describe('NotifyReady= in [Exec]', () => {
  test('a boolean from the file, untrusted too; --notify-ready= on the command line wins', () => {
    writeFileSync(join(machines, 'web.nspawn'), '[Exec]\nNotifyReady=yes\n');
    expect(resolve([]).notifyReady).toBe(true);
    expect(resolve(['--notify-ready=no']).notifyReady).toBe(false);
    expect(resolve(['--settings=no']).notifyReady).toBe(false);
  });

  test('a bad value names file, line, key and what is allowed', () => {
    const e = parseError('[Exec]\nBoot=no\nNotifyReady=later\n');
    expect(e.message).toBe('/x/web.nspawn:3: Invalid NotifyReady= value: later');
    expect(e.hint).toContain('a boolean');
  });
});

describe('mergeSettings is pure', () => {
  test('does not modify its input', () => {
    const c = cl();
    const before = structuredClone(c.spec);
    mergeSettings(c.spec, c.explicit, { path: 'p', trusted: true, settings: { hostname: 'h', binds: [{ source: '/a', destination: '/a', readOnly: false, options: [] }] } }, () => {});
    expect(c.spec).toEqual(before);
  });
});

describe('the kill signal of a booted container (KillSignal=, systemd-nspawn verify_arguments)', () => {
  const systemd = { path: '/usr/lib/systemd/systemd', systemd: true };
  const busybox = { path: '/sbin/init', systemd: false };

  test("a file's KillSignal= stops a booted container whatever its init", () => {
    writeFileSync(join(etc, 'web.nspawn'), '[Exec]\nBoot=yes\nKillSignal=SIGUSR2\n');
    const s = resolve([]);
    expect(s).toMatchObject({ mode: 'boot', killSignal: 'SIGUSR2' });
    expect(stopSignal(s, busybox)).toBe(12);
    expect(stopSignal(s, systemd)).toBe(12);
    // with -b on the command line too: the file's signal is still the configured one
    expect(stopSignal(resolve(['-b']), busybox)).toBe(12);
  });

  test('unset, -b gets the default SIGRTMIN+3 for systemd, SIGTERM for another init; nothing configured is recorded', () => {
    const s = resolve(['-b']);
    expect(s.killSignal).toBeUndefined();
    expect(stopSignal(s, systemd)).toBe(34 + 3);
    expect(stopSignal(s, busybox)).toBe(15);
  });

  test('the default is for a booted container only: Boot=no in an override file turns -b off, and SIGRTMIN+3 with it', () => {
    writeFileSync(join(etc, 'web.nspawn'), '[Exec]\nBoot=no\n');
    const s = resolve(['--settings=override', '-b']);
    expect(s.mode).not.toBe('boot');
    // not booted and nothing configured: no kill signal, a stop kills at once (systemd-nspawn's arg_kill_signal 0)
    expect(stopSignal(s, undefined)).toBe(0);
  });
});
