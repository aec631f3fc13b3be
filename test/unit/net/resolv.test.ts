import { describe, expect, test } from 'vitest';
import {
  autoResolvConfMode, DEFAULT_RESOLV_CONF_PATHS, etcWritable, loopbackResolverWarning, nameservers, resolveResolvConfMode,
  stubListenerInProcNetUdp, type ResolvConfFacts, type ResolvConfPaths,
} from '../../../src/net/resolv.js';
import type { ResolvConfMode } from '../../../src/runtime/spec.js';
import { expectGolden } from './golden.js';

const FACT_KEYS = ['privateNetwork', 'etcWritable', 'stubExists', 'resolvedListening', 'hostResolvConfExists'] as const;

function allFacts(): ResolvConfFacts[] {
  const out: ResolvConfFacts[] = [];
  for (let bits = 0; bits < 32; bits++) {
    const f = {} as ResolvConfFacts;
    FACT_KEYS.forEach((k, i) => { f[k] = Boolean(bits & (1 << i)); });
    out.push(f);
  }
  return out;
}

const MODES: ResolvConfMode[] = ['off', 'copy-host', 'copy-static', 'copy-uplink', 'copy-stub', 'replace-host', 'replace-static',
  'replace-uplink', 'replace-stub', 'bind-host', 'bind-static', 'bind-uplink', 'bind-stub', 'delete', 'auto'];

describe('auto (v252 setup_resolv_conf)', () => {
  test.each([
    [{ privateNetwork: true, etcWritable: true, stubExists: true, resolvedListening: true, hostResolvConfExists: true }, 'off'],
    [{ privateNetwork: false, etcWritable: true, stubExists: true, resolvedListening: true, hostResolvConfExists: true }, 'copy-stub'],
    [{ privateNetwork: false, etcWritable: false, stubExists: true, resolvedListening: true, hostResolvConfExists: true }, 'bind-stub'],
    // the stub file without a listening stub (DNSStubListener=no, or resolved stopped) is not used
    [{ privateNetwork: false, etcWritable: true, stubExists: true, resolvedListening: false, hostResolvConfExists: true }, 'copy-host'],
    [{ privateNetwork: false, etcWritable: true, stubExists: false, resolvedListening: true, hostResolvConfExists: true }, 'copy-host'],
    [{ privateNetwork: false, etcWritable: false, stubExists: false, resolvedListening: false, hostResolvConfExists: true }, 'bind-host'],
    [{ privateNetwork: false, etcWritable: true, stubExists: false, resolvedListening: false, hostResolvConfExists: false }, 'delete'],
    [{ privateNetwork: false, etcWritable: false, stubExists: false, resolvedListening: false, hostResolvConfExists: false }, 'off'],
  ] as Array<[ResolvConfFacts, string]>)('%j → %s', (facts, mode) => {
    expect(autoResolvConfMode(facts)).toBe(mode);
  });

  test('every mode × every combination of facts (golden table)', () => {
    const paths: ResolvConfPaths = { host: 'HOST', static: 'STATIC', uplink: 'UPLINK', stub: 'STUB' };
    const table: string[] = [];
    for (const mode of MODES) {
      for (const f of allFacts()) {
        const d = resolveResolvConfMode(mode, f, paths);
        const flags = FACT_KEYS.map((k) => (f[k] ? k : `!${k}`)).join(' ');
        const action = 'source' in d.action ? `${d.action.kind} ${d.action.source}` : d.action.kind;
        table.push(`${mode.padEnd(14)} ${flags.padEnd(90)} → ${d.mode.padEnd(14)} ${action}`);
        // an explicit mode never depends on the facts
        if (mode !== 'auto') expect(d.mode).toBe(mode);
      }
    }
    expectGolden('../resolv/decisions.txt', table.join('\n') + '\n');
  });

  test('explicit modes name their source', () => {
    const f = allFacts()[0] as ResolvConfFacts;
    expect(resolveResolvConfMode('copy-uplink', f).action).toEqual({ kind: 'copy', source: '/run/systemd/resolve/resolv.conf' });
    expect(resolveResolvConfMode('replace-static', f).action).toEqual({ kind: 'replace', source: '/usr/lib/systemd/resolv.conf' });
    expect(resolveResolvConfMode('bind-stub', f).action).toEqual({ kind: 'bind', source: '/run/systemd/resolve/stub-resolv.conf' });
    expect(resolveResolvConfMode('bind-host', f).action).toEqual({ kind: 'bind', source: '/etc/resolv.conf' });
    expect(resolveResolvConfMode('delete', f)).toEqual({ mode: 'delete', action: { kind: 'delete' } });
    expect(resolveResolvConfMode('off', f)).toEqual({ mode: 'off', action: { kind: 'off' } });
    expect(DEFAULT_RESOLV_CONF_PATHS.stub).toBe('/run/systemd/resolve/stub-resolv.conf');
  });

  test('etc_writable(): not read-only, or volatile yes/overlay', () => {
    expect(etcWritable({ readOnly: false })).toBe(true);
    expect(etcWritable({ readOnly: true })).toBe(false);
    expect(etcWritable({ readOnly: true, volatile: 'state' })).toBe(false);
    expect(etcWritable({ readOnly: true, volatile: 'yes' })).toBe(true);
    expect(etcWritable({ readOnly: true, volatile: 'overlay' })).toBe(true);
  });
});

describe('host facts', () => {
  const header = '   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops\n';
  test('a UDP socket on 127.0.0.53:53 is the stub listener', () => {
    expect(stubListenerInProcNetUdp(header
      + ' 1234: 3500007F:0035 00000000:0000 07 00000000:00000000 00:00000000 00000000   991        0 23456 2 0000000000000000 0\n')).toBe(true);
    // dnsmasq on 127.0.0.1:53, or something else on 127.0.0.53:5353, is not
    expect(stubListenerInProcNetUdp(header
      + ' 1234: 0100007F:0035 00000000:0000 07 00000000:00000000 00:00000000 00000000   0        0 23456 2 0000000000000000 0\n'
      + ' 1235: 3500007F:14E9 00000000:0000 07 00000000:00000000 00:00000000 00000000   0        0 23457 2 0000000000000000 0\n')).toBe(false);
    expect(stubListenerInProcNetUdp(header)).toBe(false);
    expect(stubListenerInProcNetUdp('')).toBe(false);
  });
});

describe('loopback resolvers and private networks', () => {
  test('nameservers() reads nameserver lines only', () => {
    expect(nameservers('# nameserver 1.1.1.1\nnameserver 127.0.0.53\n  nameserver\t::1\noptions edns0\nsearch .\nnameserver fe80::1%eth0\n'))
      .toEqual(['127.0.0.53', '::1', 'fe80::1%eth0']);
  });

  test('warns only with a private network, and says what fails', () => {
    const stub = 'nameserver 127.0.0.53\noptions edns0 trust-ad\nsearch .\n';
    expect(loopbackResolverWarning(stub, '/etc/resolv.conf', false)).toBeUndefined();
    expect(loopbackResolverWarning(stub, '/etc/resolv.conf', true)).toMatch(
      /^\/etc\/resolv.conf points at a resolver on the host's loopback \(127.0.0.53\), which the container cannot reach .*DNS lookups in the container will fail/);
    expect(loopbackResolverWarning('nameserver ::1\n', 'x', true)).toMatch(/\(::1\)/);
    expect(loopbackResolverWarning('nameserver ::ffff:127.0.0.1\n', 'x', true)).toMatch(/cannot reach/);
    expect(loopbackResolverWarning('nameserver 127.0.0.1\nnameserver 192.0.2.53\n', 'x', true)).toMatch(/\(127.0.0.1\).*only use the others/);
    expect(loopbackResolverWarning('nameserver 192.0.2.53\nnameserver 2001:db8::53\n', 'x', true)).toBeUndefined();
    expect(loopbackResolverWarning('', 'x', true)).toBeUndefined();
  });
});
