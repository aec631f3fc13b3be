import { describe, expect, test } from 'vitest';
import { readFileSync } from 'node:fs';
import { ConfigError } from '../../../src/errors.js';
import {
  formatCliError, parseCommandLine, runCli, verifyLaunchSpec, type CliEnvironment, type CommandLine,
} from '../../../src/runtime/cli.js';
import { optionNames } from '../../../src/runtime/cli-options.js';
import { parseSignal } from '../../../src/runtime/signals.js';
import { HintedConfigError } from '../../../src/runtime/machine-name.js';
import type { LaunchSpec } from '../../../src/runtime/spec.js';

const env: CliEnvironment = {
  cwd: '/home/user/work',
  hostname: () => 'hosty',
  random64: () => 0xabcn,
  findMachineImage: (n) => (n === 'known' ? '/var/lib/machines/known' : undefined),
  userNamespacesSupported: true,
};

function parse(...argv: string[]): CommandLine {
  const r = parseCommandLine(argv, env);
  if (r.action !== 'run') throw new Error(`expected run, got ${r.action}`);
  return r;
}
function spec(...argv: string[]): LaunchSpec {
  return verifyLaunchSpec(parse(...argv).spec);
}
/** The ConfigError a command line fails with (message, hint). */
function error(...argv: string[]): { message: string; hint?: string; code: string } {
  try {
    verifyLaunchSpec(parse(...argv).spec);
  } catch (e) {
    expect(e).toBeInstanceOf(ConfigError);
    const c = e as ConfigError;
    return { message: c.message, hint: e instanceof HintedConfigError ? e.hint : undefined, code: c.code };
  }
  throw new Error(`no error for ${argv.join(' ')}`);
}
function msg(...argv: string[]): string {
  return error(...argv).message;
}

describe('getopt syntax', () => {
  test('short option groups with a separate value: -bUD DIR', () => {
    const s = spec('-bUD', '/srv/c');
    expect(s.mode).toBe('boot');
    expect(s.privateUsers).toEqual({ mode: 'pick' });
    expect(s.directory).toBe('/srv/c');
    expect(s.machine).toBe('c');
    expect(s.command).toEqual([]);
  });

  test('attached values: -D/dir and -bD/dir and -Mname', () => {
    expect(spec('-D/srv/a').directory).toBe('/srv/a');
    const s = spec('-bD/srv/b', '-Mfoo');
    expect(s).toMatchObject({ mode: 'boot', directory: '/srv/b', machine: 'foo' });
  });

  test('--opt=value and --opt value, and a required value may start with a dash', () => {
    expect(spec('--directory=/x').directory).toBe('/x');
    expect(spec('--directory', '/y').directory).toBe('/y');
    expect(spec('-D', '-weird').directory).toBe('/home/user/work/-weird');
  });

  test('the first non-option starts the command; options after it belong to the command', () => {
    const s = spec('-D', '/c', 'sh', '-c', 'echo --boot', '-b');
    expect(s.command).toEqual(['sh', '-c', 'echo --boot', '-b']);
    expect(s.mode).toBe('command');
  });

  test('-- ends the options, even before something that looks like one', () => {
    expect(spec('-D/c', '--', '--not-an-option', 'x').command).toEqual(['--not-an-option', 'x']);
    expect(spec('-D/c', '--').command).toEqual([]);
    expect(spec('-D/c', '-', 'a').command).toEqual(['-', 'a']);
  });

  test('unique prefixes of long options, as getopt_long', () => {
    expect(spec('--direct=/p').directory).toBe('/p');
    expect(spec('-D/c', '--ephem').ephemeral).toBe(true);
    expect(msg('--network-i=eth0')).toBe("Option '--network-i' is ambiguous; possibilities: '--network-interface' '--network-ipvlan'");
  });

  test('--bi= is ambiguous between --bind, --bind-ro and --bind-user, as systemd-nspawn\'s getopt says (it was a writable --bind)', () => {
    const e = error('-D/c', '--bi=/srv:/mnt');
    expect(e).toMatchObject({ message: "Option '--bi' is ambiguous; possibilities: '--bind' '--bind-ro' '--bind-user'", code: 'CFG_UNKNOWN_OPTION' });
    expect(msg('-D/c', '--bin=/srv')).toBe("Option '--bin' is ambiguous; possibilities: '--bind' '--bind-ro' '--bind-user'");
    // systemd: "option '--u=root' is ambiguous; possibilities: '--user' '--uuid'" (--uid is --user's alias here)
    expect(msg('-D/c', '--u=root')).toBe("Option '--u' is ambiguous; possibilities: '--user' '--uid' '--uuid'");
    expect(spec('-D/c', '--bind-r=/srv:/mnt').binds).toMatchObject([{ source: '/srv', destination: '/mnt', readOnly: true }]);
    expect(spec('-D/c', '--us=root').user).toBe('root');
    expect(msg('-D/c', '--bind-u=alice')).toBe("Option '--bind-user' of systemd-nspawn is not supported by nspawn-ts.");
  });

  test('unknown and unsupported options name the option; nothing else is needed to fail', () => {
    const e = error('--frobnicate');
    expect(e).toMatchObject({ message: "Unknown option '--frobnicate'.", code: 'CFG_UNKNOWN_OPTION' });
    expect(e.hint).toBe("Run 'nspawn-ts --help' for the options nspawn-ts supports.");
    expect(msg('-Y')).toBe("Unknown option '-Y'.");
    expect(msg('-bY')).toBe("Unknown option '-Y'.");
    expect(msg('--capability=CAP_NET_ADMIN')).toBe("Option '--capability' of systemd-nspawn is not supported by nspawn-ts.");
    expect(msg('-i', 'disk.raw')).toBe("Option '-i/--image' of systemd-nspawn is not supported by nspawn-ts.");
  });

  test('missing and superfluous arguments', () => {
    expect(msg('--directory')).toBe("Option '--directory' requires an argument.");
    expect(msg('-D')).toBe("Option '-D' requires an argument.");
    expect(msg('-bD')).toBe("Option '-D' requires an argument.");
    expect(msg('--boot=yes')).toBe("Option '--boot' doesn't allow an argument.");
  });

  test('an optional argument is only taken with "=" (--private-users pick: pick is the command)', () => {
    const s = spec('-D/c', '--private-users', 'pick');
    expect(s.privateUsers).toEqual({ mode: 'yes' });
    expect(s.command).toEqual(['pick']);
  });

  test('-h/--help and --version win over everything else that parses', () => {
    const h = parseCommandLine(['-D/c', '--help'], env);
    expect(h.action).toBe('help');
    expect(parseCommandLine(['-h'], env).action).toBe('help');
    // acted on when read: later errors do not matter, earlier ones do
    expect(parseCommandLine(['-bh', '--frobnicate'], env).action).toBe('help');
    expect(() => parseCommandLine(['--frobnicate', '-h'], env)).toThrow("Unknown option '--frobnicate'.");
    const v = parseCommandLine(['--version'], env);
    expect(v).toMatchObject({ action: 'version' });
    expect(v.action === 'version' && v.text).toMatch(/^nspawn-ts \d+\.\d+\.\d+/);
  });

  test('help text lists every supported option (golden)', () => {
    const h = parseCommandLine(['--help'], env);
    const golden = readFileSync(new URL('./golden/help.txt', import.meta.url), 'utf8');
    expect(h.action === 'help' && h.text).toBe(golden);
  });

  test('--help lists exactly the options of the table, each parsed as listed', () => {
    const h = parseCommandLine(['--help'], env);
    const text = h.action === 'help' ? h.text : '';
    const listed = { long: new Set<string>(), short: new Set<string>() };
    for (const line of text.split('\n')) {
      const m = /^ {2}(?:-([A-Za-z]))?\s*(?:--([a-z0-9-]+))?/.exec(line);
      if (m?.[1]) listed.short.add(m[1]);
      if (m?.[2]) listed.long.add(m[2]);
    }
    const table = optionNames();
    expect([...listed.long].sort()).toEqual([...table.long].sort());
    expect([...listed.short].sort()).toEqual([...table.short].sort());
    expect(table.aliases).toEqual(['uid']);
    // and what --help lists, the parser knows (by that exact name, not as an unknown or systemd-only option)
    for (const name of [...listed.long, ...table.aliases]) {
      try {
        parseCommandLine([`--${name}=x`, '-D/c'], env);
      } catch (err) {
        expect(String(err)).not.toMatch(/Unknown option|not supported|ambiguous/);
      }
    }
    for (const c of listed.short) {
      try {
        parseCommandLine([`-${c}`, 'x', '-D/c'], env);
      } catch (err) {
        expect(String(err)).not.toMatch(/Unknown option|not supported/);
      }
    }
  });
});

describe('directory and machine name', () => {
  test('default directory is the current one, default name its last component', () => {
    const s = spec();
    expect(s.directory).toBe('/home/user/work');
    expect(s.machine).toBe('work');
  });

  test('a relative -D is made absolute and simplified', () => {
    expect(spec('-D', '../other/./c/').directory).toBe('/home/user/other/c');
  });

  test('default names are cleaned up like systemd\'s hostname_cleanup', () => {
    expect(spec('-D', '/var/lib/machines/my_container').machine).toBe('mycontainer');
    expect(spec('-D', '/srv/-web.server-').machine).toBe('web.server');
    expect(msg('-D', '/srv/___')).toBe('Failed to determine machine name automatically, please use -M.');
  });

  test('-D / takes the host name', () => {
    expect(spec('-D', '/').machine).toBe('hosty');
  });

  test('-M validates with systemd\'s exact message', () => {
    const e = error('-M', 'container_name');
    expect(e.message).toBe('Invalid machine name: container_name');
    expect(e.code).toBe('CFG_MACHINE_NAME');
    expect(e.hint).toContain("\"_\" is not allowed");
    expect(msg('--machine=-lead')).toBe('Invalid machine name: -lead');
    expect(msg('--machine=a..b')).toBe('Invalid machine name: a..b');
    expect(msg('--machine=' + 'a'.repeat(65))).toBe(`Invalid machine name: ${'a'.repeat(65)}`);
    expect(spec('-D/c', '-M', 'web-1.example').machine).toBe('web-1.example');
  });

  test('-M without -D finds the image directory, or says there is none', () => {
    expect(spec('-M', 'known').directory).toBe('/var/lib/machines/known');
    expect(msg('-M', 'nothere')).toBe("No image for machine 'nothere'.");
  });

  test('ephemeral machines get a random suffix; the settings name stays the plain one', () => {
    const cl = parse('-x', '-D', '/srv/base');
    expect(cl.spec.machine).toBe('base-0000000000000abc');
    expect(cl.settingsName).toBe('base');
    const named = parse('-x', '-D', '/srv/base', '-M', 'mine');
    expect(named.spec.machine).toBe('mine');
    expect(named.settingsName).toBe('mine');
  });

  test('--template: needs -D or -M; with -M the directory is /var/lib/machines/NAME; not with -x', () => {
    expect(spec('--template=/srv/tpl', '-D/srv/new')).toMatchObject({ template: '/srv/tpl', directory: '/srv/new' });
    expect(spec('--template=/srv/tpl', '-M', 'fresh')).toMatchObject({ directory: '/var/lib/machines/fresh', machine: 'fresh' });
    expect(msg('--template=/srv/tpl')).toBe('--template= needs --directory= or --machine=.');
    expect(msg('-x', '--template=/srv/tpl', '-D/srv/new')).toBe('--ephemeral and --template= may not be combined.');
    // -x --template=DIR (no -D) means -x -D DIR
    const s = spec('-x', '--template=/srv/tpl');
    expect(s.directory).toBe('/srv/tpl');
    expect(s.template).toBeUndefined();
  });

  test('--hostname', () => {
    expect(spec('-D/c', '--hostname=web.local').hostname).toBe('web.local');
    expect(msg('-D/c', '--hostname=bad_host')).toBe('Invalid hostname: bad_host');
    expect(spec('-D/c', '--hostname=x', '--hostname=').hostname).toBeUndefined();
  });
});

describe('execution options', () => {
  test('-b and -a are exclusive in either order', () => {
    expect(msg('-b', '-a')).toBe('--boot and --as-pid2 may not be combined.');
    expect(msg('--as-pid2', '--boot')).toBe('--boot and --as-pid2 may not be combined.');
    expect(spec('-D/c', '-a', 'sh').mode).toBe('as-pid2');
  });

  test('--kill-signal= is kept as given; -b alone configures none (the launcher picks the default for its init)', () => {
    expect(spec('-D/c', '-b').killSignal).toBeUndefined();
    expect(spec('-D/c').killSignal).toBeUndefined();
    expect(spec('-D/c', '-b', '--kill-signal=RTMIN+3').killSignal).toBe('SIGRTMIN+3');
    expect(spec('-D/c', '-b', '--kill-signal=TERM').killSignal).toBe('SIGTERM');
    expect(spec('-D/c', '--kill-signal=9').killSignal).toBe('SIGKILL');
    expect(msg('-D/c', '--kill-signal=SIGFOO')).toBe('Cannot parse signal: SIGFOO');
    expect(msg('-D/c', '--kill-signal=0')).toBe('Cannot parse signal: 0');
  });

  test('signals as systemd\'s signal_from_string reads them', () => {
    expect(parseSignal('SIGRTMIN+3')).toEqual({ name: 'SIGRTMIN+3', number: 37 });
    expect(parseSignal('RTMIN')).toEqual({ name: 'SIGRTMIN', number: 34 });
    expect(parseSignal('RTMAX-1')).toEqual({ name: 'SIGRTMIN+29', number: 63 });
    expect(parseSignal('HUP')).toEqual({ name: 'SIGHUP', number: 1 });
    expect(parseSignal('65')).toBeUndefined();
    expect(parseSignal('32')).toBeUndefined();
    expect(parseSignal('RTMIN-1')).toBeUndefined();
    expect(parseSignal('sigterm')).toBeUndefined();
  });

  test('--chdir must be absolute', () => {
    expect(spec('-D/c', '--chdir=/srv').chdir).toBe('/srv');
    expect(msg('-D/c', '--chdir=srv')).toBe('Working directory srv is not an absolute path.');
  });

  test('-E/--setenv takes NAME=VALUE; a later NAME replaces an earlier one', () => {
    expect(spec('-D/c', '-E', 'A=1', '--setenv=B=x=y', '-EA=2', '-E', 'C=').environment).toEqual(['B=x=y', 'A=2', 'C=']);
    const e = error('-D/c', '-E', 'NOEQUALS');
    expect(e.message).toBe("Environment variable assignment 'NOEQUALS' is not valid.");
    expect(e.hint).toContain("there is no '='");
    expect(msg('-D/c', '-E', '1A=x')).toBe("Environment variable assignment '1A=x' is not valid.");
    expect(msg('-D/c', '-E', 'A B=x')).toBe("Environment variable assignment 'A B=x' is not valid.");
    expect(msg('-D/c', '-E', 'A=\x01')).toBe("Environment variable assignment 'A=\x01' is not valid.");
    expect(spec('-D/c', '-E', 'A=tab\tand\nnewline').environment).toEqual(['A=tab\tand\nnewline']);
  });

  test('-u/--user/--uid', () => {
    expect(spec('-D/c', '-u', 'daemon').user).toBe('daemon');
    expect(spec('-D/c', '--user=1000').user).toBe('1000');
    expect(spec('-D/c', '--uid', 'nobody').user).toBe('nobody');
  });
});

describe('user namespaces', () => {
  test('every --private-users= form', () => {
    expect(spec('-D/c', '--private-users').privateUsers).toEqual({ mode: 'yes' });
    expect(spec('-D/c', '--private-users=yes').privateUsers).toEqual({ mode: 'yes' });
    expect(spec('-D/c', '--private-users=no').privateUsers).toEqual({ mode: 'no' });
    expect(spec('-D/c', '--private-users=pick').privateUsers).toEqual({ mode: 'pick' });
    expect(spec('-D/c', '--private-users=identity').privateUsers).toEqual({ mode: 'identity' });
    expect(spec('-D/c', '--private-users=1').privateUsers).toEqual({ mode: 'range', uid: 1, count: 65536 });
    expect(spec('-D/c', '--private-users=0').privateUsers).toEqual({ mode: 'range', uid: 0, count: 65536 });
    expect(spec('-D/c', '--private-users=1879048192:65536').privateUsers).toEqual({ mode: 'range', uid: 1879048192, count: 65536 });
    expect(spec('-D/c', '--private-users=4294901759:65536').privateUsers).toEqual({ mode: 'range', uid: 4294901759, count: 65536 });
  });

  test.each([
    ['maybe', 'Failed to parse UID "maybe": Invalid argument'],
    ['65535', 'Failed to parse UID "65535": Invalid argument'],
    ['-5', 'Failed to parse UID "-5": Invalid argument'],
    ['100000:x', 'Failed to parse UID range "x": Invalid argument'],
    ['100000:4294967296', 'Failed to parse UID range "4294967296": Invalid argument'],
    ['100000:0', 'UID range cannot be empty or go beyond 4294967295.'],
    ['4294901760:65536', 'UID range cannot be empty or go beyond 4294967295.'],
  ])('bad UID range --private-users=%s: systemd\'s message', (value, message) => {
    expect(msg('-D/c', `--private-users=${value}`)).toBe(message);
    expect(error('-D/c', `--private-users=${value}`).hint).toContain('no, yes, pick, identity');
  });

  test('-U is pick when the kernel has user namespaces, nothing otherwise', () => {
    expect(spec('-D/c', '-U').privateUsers).toEqual({ mode: 'pick' });
    const r = parseCommandLine(['-D/c', '-U'], { ...env, userNamespacesSupported: false });
    expect(r.action === 'run' && r.spec.privateUsers).toEqual({ mode: 'no' });
    expect(r.action === 'run' && r.explicit.has('userns')).toBe(false);
    expect(spec('-D/c', '--private-users-chown').privateUsersChown).toBe(true);
  });
});

describe('networking', () => {
  test('every link option implies a private network', () => {
    for (const opt of ['-n', '--network-veth', '--private-network', '--network-interface=eth1', '--network-macvlan=eth0',
      '--network-ipvlan=eth0', '--network-veth-extra=vx', '--network-bridge=br0', '--network-zone=web']) {
      expect(spec('-D/c', opt).network.private, opt).toBe(true);
    }
    expect(spec('-D/c').network.private).toBe(false);
  });

  test('bridge and zone imply a veth; values land where the launcher reads them', () => {
    const s = spec('-D/c', '--network-bridge=br0');
    expect(s.network).toMatchObject({ veth: true, bridge: 'br0' });
    expect(spec('-D/c', '--network-zone=web').network).toMatchObject({ veth: true, zone: 'web' });
    const many = spec('-D/c', '--network-macvlan=eth0', '--network-macvlan=eth1', '--network-ipvlan=eth2', '--network-interface=dummy0',
      '--network-veth-extra=vx0:inner', '--network-veth-extra=vx1');
    expect(many.network.macvlan).toEqual(['eth0', 'eth1']);
    expect(many.network.ipvlan).toEqual(['eth2']);
    expect(many.network.interfaces).toEqual(['dummy0']);
    expect(many.network.vethExtra).toEqual([{ hostIfname: 'vx0', containerIfname: 'inner' }, { hostIfname: 'vx1', containerIfname: 'vx1' }]);
    expect(many.network.veth).toBe(false);
  });

  test('zone names: vz-ZONE must be a valid interface name (zone ≤ 12 characters)', () => {
    expect(spec('-D/c', '--network-zone=abcdefghijkl').network.zone).toBe('abcdefghijkl');
    const e = error('-D/c', '--network-zone=abcdefghijklm');
    expect(e.message).toBe('Network zone name not valid: vz-abcdefghijklm');
    expect(e.hint).toContain('1-12 characters');
    expect(msg('-D/c', '--network-zone=a/b')).toBe('Network zone name not valid: vz-a/b');
    expect(msg('-D/c', '--network-zone=')).toBe('Network zone name not valid: vz-');
  });

  test('interface names are checked', () => {
    expect(msg('-D/c', '--network-bridge=this-is-too-long0')).toBe('Bridge interface name not valid: this-is-too-long0');
    expect(msg('-D/c', '--network-macvlan=eth:0')).toBe('MACVLAN network interface name not valid: eth:0');
    expect(msg('-D/c', '--network-ipvlan=all')).toBe('IPVLAN network interface name not valid: all');
    expect(msg('-D/c', '--network-interface=123')).toBe('Network interface name not valid: 123');
    expect(msg('-D/c', '--network-veth-extra=a:b:c')).toBe('Failed to parse --network-veth-extra= parameter: a:b:c');
    expect(msg('-D/c', '--network-veth-extra=:b')).toBe('Failed to parse --network-veth-extra= parameter: :b');
    // an invalid container-side name silently becomes the host-side one, as in systemd
    expect(spec('-D/c', '--network-veth-extra=vx0:bad/name').network.vethExtra).toEqual([{ hostIfname: 'vx0', containerIfname: 'vx0' }]);
  });

  test('--network-bridge and --network-zone are exclusive', () => {
    expect(msg('-D/c', '--network-bridge=br0', '--network-zone=z')).toBe('--network-bridge= and --network-zone= may not be combined.');
  });

  test('--network-namespace-path= only with --private-network', () => {
    expect(spec('-D/c', '--network-namespace-path=/run/netns/x', '--private-network').network)
      .toMatchObject({ namespacePath: '/run/netns/x', private: true });
    expect(spec('-D/c', '--network-namespace-path=/run/netns/x').network.namespacePath).toBe('/run/netns/x');
    for (const opt of ['-n', '--network-zone=z', '--network-macvlan=eth0', '--network-veth-extra=v']) {
      expect(msg('-D/c', '--network-namespace-path=/run/netns/x', opt)).toBe('--network-namespace-path= cannot be combined with other network options.');
    }
  });

  test('-p needs a private network; ports parse per systemd', () => {
    expect(msg('-D/c', '-p', '80')).toBe('Cannot use --port= without private networking.');
    const s = spec('-D/c', '-n', '-p', '8080:80', '--port=udp:53', '-ptcp:443');
    expect(s.network.ports).toEqual([
      { protocol: 'tcp', hostPort: 8080, hostPortEnd: 8080, containerPort: 80, containerPortEnd: 80 },
      { protocol: 'udp', hostPort: 53, hostPortEnd: 53, containerPort: 53, containerPortEnd: 53 },
      { protocol: 'tcp', hostPort: 443, hostPortEnd: 443, containerPort: 443, containerPortEnd: 443 },
    ]);
    expect(msg('-D/c', '-n', '-p', '0')).toBe('Failed to parse host port 0: Invalid argument (expected [tcp:|udp:]HOSTPORT[:CONTAINERPORT] with ports 1-65535 (e.g. 8080, 8080:80, udp:53))');
    expect(msg('-D/c', '-n', '-p', '80', '-p', 'tcp:80:81')).toBe('Duplicate port specification: tcp:80:81 (tcp port 80 is already forwarded)');
    expect(spec('-D/c', '-n', '-p', '80', '-p', 'udp:80').network.ports).toHaveLength(2);
  });

  test('--port-loopback and --network-config are ours', () => {
    expect(spec('-D/c', '-n', '--port-loopback').network.portLoopback).toBe(true);
    expect(spec('-D/c', '-n').network.config).toBe('auto');
    expect(spec('-D/c', '-n', '--network-config=dhcp').network.config).toBe('dhcp');
    expect(spec('-D/c', '-n', '--network-config=static').network.config).toBe('static');
    expect(msg('-D/c', '--network-config=manual')).toBe('Failed to parse --network-config= argument: manual');
  });
});

describe('mounts', () => {
  test('--bind forms', () => {
    const s = spec('-D/c', '--bind=/srv', '--bind=/a:/b', '--bind-ro=/a:/b:norbind,idmap', '--bind=+/inner:/outer');
    expect(s.binds).toEqual([
      { source: '/srv', destination: '/srv', readOnly: false, options: [] },
      { source: '/a', destination: '/b', readOnly: false, options: [] },
      { source: '/a', destination: '/b', readOnly: true, options: ['norbind', 'idmap'] },
      { source: '/inner', destination: '/outer', readOnly: false, options: [], sourceInRoot: true },
    ]);
    expect(spec('-D/c', '--bind=+/only').binds[0]).toEqual({ source: '/only', destination: '/only', readOnly: false, options: [], sourceInRoot: true });
  });

  test('backslash escapes a colon in paths, as systemd\'s extract_first_word', () => {
    expect(spec('-D/c', '--bind=/a\\:b:/c\\:d:rbind').binds[0]).toEqual({ source: '/a:b', destination: '/c:d', readOnly: false, options: ['rbind'] });
    expect(spec('-D/c', '--bind=/x\\:y').binds[0]).toMatchObject({ source: '/x:y', destination: '/x:y' });
  });

  test.each([
    ['--bind=relative', 'relative: the source path "relative" is not absolute'],
    ['--bind=/a:rel', '/a:rel: the destination path "rel" is not absolute'],
    ['--bind-ro=/a:', '/a:: the destination path "" is not absolute'],
    ['--bind=/a:/b:ro', '/a:/b:ro: invalid bind mount option "ro"'],
    ['--bind=:/b', ':/b: an empty SOURCE (a temporary directory in systemd-nspawn) is not supported'],
    ['--bind=/a\\', '/a\\: a trailing backslash escapes nothing'],
    ['--bind=', ': it is empty'],
  ])('bad bind %s', (arg, problem) => {
    const e = error('-D/c', arg);
    expect(e.message).toBe(`Failed to parse ${arg.slice(0, arg.indexOf('=') + 1)} argument ${problem}`);
    expect(e.hint).toContain('SOURCE[:DESTINATION[:OPTIONS]]');
  });

  test('--tmpfs', () => {
    expect(spec('-D/c', '--tmpfs=/run/x', '--tmpfs=/y:mode=0700,size=10M', '--tmpfs=/z:').tmpfs).toEqual([
      { destination: '/run/x', options: 'mode=0755' },
      { destination: '/y', options: 'mode=0700,size=10M' },
      { destination: '/z', options: 'mode=0755' },
    ]);
    expect(msg('-D/c', '--tmpfs=tmp')).toBe('Failed to parse --tmpfs= argument tmp: the path "tmp" is not absolute');
  });
});

describe('integration options', () => {
  test('--resolv-conf takes every mode of systemd and its booleans', () => {
    for (const m of ['off', 'copy-host', 'copy-static', 'copy-uplink', 'copy-stub', 'replace-host', 'replace-static',
      'replace-uplink', 'replace-stub', 'bind-host', 'bind-static', 'bind-uplink', 'bind-stub', 'delete', 'auto']) {
      expect(spec('-D/c', `--resolv-conf=${m}`).resolvConf).toBe(m);
    }
    expect(spec('-D/c', '--resolv-conf=yes').resolvConf).toBe('auto');
    expect(spec('-D/c', '--resolv-conf=no').resolvConf).toBe('off');
    expect(spec('-D/c').resolvConf).toBe('auto');
    const e = error('-D/c', '--resolv-conf=copy');
    expect(e.message).toBe('Failed to parse /etc/resolv.conf mode: copy');
    expect(e.hint).toContain('bind-stub');
  });

  test('--link-journal and -j; -x refuses host/guest', () => {
    expect(spec('-D/c', '--link-journal=try-host').linkJournal).toBe('try-host');
    expect(spec('-D/c', '-j').linkJournal).toBe('try-guest');
    expect(spec('-D/c').linkJournal).toBe('auto');
    expect(msg('-D/c', '--link-journal=maybe')).toBe('Failed to parse link journal mode maybe');
    expect(msg('-D/c', '-x', '--link-journal=guest')).toBe('--ephemeral and --link-journal={host,guest} may not be combined.');
    expect(spec('-D/c', '-x', '--link-journal=try-guest').ephemeral).toBe(true);
  });

  test('--console=, --pipe and -P; a bad mode names the option and the modes', () => {
    for (const m of ['interactive', 'read-only', 'passive', 'pipe', 'autopipe'] as const) expect(spec('-D/c', `--console=${m}`).console).toBe(m);
    expect(spec('-D/c').console).toBeUndefined();
    expect(spec('-D/c', '--pipe').console).toBe('pipe');
    expect(spec('-PD/c').console).toBe('pipe');
    expect(spec('-D/c', '--pipe', '--console=passive').console).toBe('passive');
    const e = error('-D/c', '--console=tty');
    expect(e).toMatchObject({ message: 'Unknown console mode: tty', code: 'CFG_CONSOLE' });
    expect(e.hint).toBe('--console= takes interactive, read-only, passive, pipe, autopipe');
    expect(msg('-D/c', '--console=')).toBe('Unknown console mode: ');
  });

  test('--private-users-ownership= takes off, chown, map or auto', () => {
    expect(spec('-D/c', '-U', '--private-users-ownership=map')).toMatchObject({ privateUsersOwnership: 'map', privateUsers: { mode: 'pick' } });
    for (const o of ['off', 'chown', 'auto'] as const) expect(spec('-D/c', `--private-users-ownership=${o}`).privateUsersOwnership).toBe(o);
    expect(spec('-D/c').privateUsersOwnership).toBeUndefined();
    const e = error('-D/c', '--private-users-ownership=idmap');
    expect(e).toMatchObject({ message: 'Cannot parse --private-users-ownership= value: idmap', code: 'CFG_PRIVATE_USERS' });
    expect(e.hint).toBe('--private-users-ownership= takes off, chown, map, auto');
  });

  test('--notify-ready= takes a boolean', () => {
    expect(spec('-D/c').notifyReady).toBe(false);
    expect(spec('-D/c', '--notify-ready=yes').notifyReady).toBe(true);
    expect(spec('-D/c', '--notify-ready=no').notifyReady).toBe(false);
    expect(parse('-D/c', '--notify-ready=1').explicit.has('notify-ready')).toBe(true);
    const e = error('-D/c', '--notify-ready=soon');
    expect(e).toMatchObject({ message: 'Failed to parse --notify-ready= argument: soon', code: 'CFG_NOTIFY_READY' });
    expect(e.hint).toContain('yes/no');
  });

  test('-q, --register, --keep-unit, --property', () => {
    const s = spec('-D/c', '-q', '--register=no', '--keep-unit', '--property=MemoryMax=512M', '--property', 'CPUQuota=50%', '--property=X=');
    expect(s).toMatchObject({ quiet: true, register: false, keepUnit: true });
    expect(s.properties).toEqual([{ name: 'MemoryMax', value: '512M' }, { name: 'CPUQuota', value: '50%' }, { name: 'X', value: '' }]);
    expect(spec('-D/c').register).toBe(true);
    expect(msg('-D/c', '--register=perhaps')).toBe('Failed to parse boolean argument to --register=: perhaps');
    expect(msg('-D/c', '--property=MemoryMax')).toBe('Invalid --property= assignment: MemoryMax');
    expect(msg('-D/c', '--property==5')).toBe('Invalid --property= assignment: =5');
  });

  test('--settings= modes; override empties the explicit set', () => {
    expect(parse('-D/c').settingsMode).toBe('yes');
    expect(parse('-D/c', '--settings=no').settingsMode).toBe('no');
    expect(parse('-D/c', '--settings=0').settingsMode).toBe('no');
    expect(parse('-D/c', '--settings=trusted').settingsMode).toBe('trusted');
    const o = parse('-D/c', '-b', '--settings=override');
    expect(o.settingsMode).toBe('override');
    expect(o.explicit.size).toBe(0);
    expect([...parse('-D/c', '-b', '-n', '-p80').explicit].sort()).toEqual(['directory', 'expose-ports', 'network', 'start-mode']);
    expect(msg('-D/c', '--settings=sometimes')).toBe('Failed to parse --settings= argument: sometimes');
  });

  test('-v/--verbose', () => {
    expect(parse('-D/c', '-v').verbose).toBe(true);
    expect(parse('-D/c').verbose).toBe(false);
  });
});

describe('runCli', () => {
  function io() {
    const out: string[] = [];
    const err: string[] = [];
    return { out, err, io: { stdout: (t: string) => { out.push(t); }, stderr: (t: string) => { err.push(t); } } };
  }

  test('bad input: "nspawn-ts: MESSAGE", the hint, exit 1, launch never called', async () => {
    const o = io();
    let launched = false;
    const rc = await runCli(['-M', 'container_name'], { io: o.io, env, resolve: (cl) => verifyLaunchSpec(cl.spec), launch: async () => { launched = true; return 0; } });
    expect(rc).toBe(1);
    expect(launched).toBe(false);
    expect(o.err.join('')).toMatch(/^nspawn-ts: Invalid machine name: container_name\nnspawn-ts: .*not allowed.*\n$/);
    expect(o.out).toEqual([]);
  });

  test('help and version print to stdout with exit 0', async () => {
    const o = io();
    expect(await runCli(['--version'], { io: o.io, env, resolve: (cl) => verifyLaunchSpec(cl.spec), launch: async () => 5 })).toBe(0);
    expect(o.out.join('')).toMatch(/^nspawn-ts 0\.1\.0\n/);
  });

  test('a good command line is launched with the verified spec; its exit code is returned', async () => {
    const o = io();
    let seen: LaunchSpec | undefined;
    let verbose = false;
    const rc = await runCli(['-bD', '/srv/c', '-v'], {
      io: o.io, env, resolve: (cl) => verifyLaunchSpec(cl.spec), onVerbose: () => { verbose = true; },
      launch: async (s) => { seen = s; return 7; },
    });
    expect(rc).toBe(7);
    expect(verbose).toBe(true);
    expect(seen).toMatchObject({ directory: '/srv/c', machine: 'c', mode: 'boot' });
  });

  test('formatCliError without a hint is one line', () => {
    expect(formatCliError(new ConfigError('x'))).toBe('nspawn-ts: x');
  });
});
