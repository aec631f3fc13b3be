// nspawn-cni's pure side: CNI_* environment and network configuration parsing, results per
// cniVersion, CNI errors with the spec's codes.
import { describe, expect, test } from 'vitest';
import {
  addResult, CNI_ERR, CniError, errorResult, hostIfnameFor, machineFor, parseConfig, parseEnv, prevAddresses, versionAtLeast, versionResult,
} from '../../src/cni/config.js';

const ENV = { CNI_COMMAND: 'ADD', CNI_CONTAINERID: 'a'.repeat(64), CNI_NETNS: '/run/netns/x', CNI_IFNAME: 'eth0', CNI_ARGS: 'IgnoreUnknown=1;K8S_POD_NAME=web' };

function codeOf(fn: () => unknown): number | undefined {
  try {
    fn();
  } catch (err) {
    return err instanceof CniError ? err.code : -1;
  }
  return undefined;
}

describe('CNI environment', () => {
  test('ADD as podman calls it', () => {
    expect(parseEnv({ ...ENV, CNI_PATH: '/opt/cni/bin:/usr/lib/cni' })).toEqual({
      command: 'ADD', containerId: 'a'.repeat(64), netns: '/run/netns/x', ifname: 'eth0', args: { IgnoreUnknown: '1', K8S_POD_NAME: 'web' }, path: ['/opt/cni/bin', '/usr/lib/cni'],
    });
  });
  test('invalid environment is code 7, naming the variable', () => {
    expect(codeOf(() => parseEnv({ ...ENV, CNI_COMMAND: 'FOO' }))).toBe(CNI_ERR.INVALID_ENVIRONMENT);
    expect(() => parseEnv({ ...ENV, CNI_IFNAME: 'a/b' })).toThrow(/CNI_IFNAME/);
    expect(() => parseEnv({ ...ENV, CNI_CONTAINERID: '../x' })).toThrow(/CNI_CONTAINERID/);
    expect(() => parseEnv({ ...ENV, CNI_NETNS: undefined })).toThrow(/CNI_NETNS/);
    expect(codeOf(() => parseEnv({ ...ENV, CNI_ARGS: 'novalue' }))).toBe(CNI_ERR.INVALID_ENVIRONMENT);
  });
  test('DEL without a namespace (it is gone) and VERSION without anything are accepted', () => {
    expect(parseEnv({ ...ENV, CNI_COMMAND: 'DEL', CNI_NETNS: undefined }).netns).toBe('');
    expect(parseEnv({ CNI_COMMAND: 'VERSION' }).command).toBe('VERSION');
    // CNI 1.1.0: STATUS and GC are about the network, with CNI_PATH only
    expect(parseEnv({ CNI_COMMAND: 'GC', CNI_PATH: '/x' })).toMatchObject({ command: 'GC', containerId: '', path: ['/x'] });
    expect(parseEnv({ CNI_COMMAND: 'STATUS' }).command).toBe('STATUS');
  });
  test('the reservation name: pod name (with namespace), else the container ID', () => {
    expect(machineFor(parseEnv(ENV))).toBe('web');
    expect(machineFor(parseEnv({ ...ENV, CNI_ARGS: 'K8S_POD_NAME=web;K8S_POD_NAMESPACE=prod' }))).toBe('web.prod');
    expect(machineFor(parseEnv({ ...ENV, CNI_ARGS: '' }))).toBe('a'.repeat(63));
    expect(hostIfnameFor('abc', 'eth0')).toMatch(/^nc[0-9a-f]{8}$/);
    expect(hostIfnameFor('abc', 'eth0')).not.toBe(hostIfnameFor('abc', 'eth1'));
    // veth mode: a second interface of one container is a machine (and /28, ve- link) of its own
    expect(machineFor(parseEnv(ENV), 'veth')).toBe('web');
    expect(machineFor(parseEnv({ ...ENV, CNI_IFNAME: 'eth1' }), 'veth')).toBe('web.eth1');
    expect(machineFor(parseEnv({ ...ENV, CNI_IFNAME: 'eth1' }), 'zone')).toBe('web');
  });
});

describe('network configuration', () => {
  test('nothing but type: zone from the network name, our state directory, the sidecar when it answers', () => {
    const text = JSON.stringify({ cniVersion: '1.0.0', name: 'podnet', type: 'nspawn-cni' });
    expect(parseConfig(text)).toEqual({
      cniVersion: '1.0.0', name: 'podnet', mode: 'zone', zone: 'podnet', raw: text, stateDir: '/var/lib/nspawn-ts', netdSocket: '/run/nspawn-ts/netd.sock', sidecar: 'auto', ports: [],
    });
  });
  test('veth mode, ipam delegation, GC\'s valid attachments', () => {
    const c = (o: Record<string, unknown>) => parseConfig(JSON.stringify({ cniVersion: '1.1.0', name: 'n', ...o }));
    expect(c({ mode: 'veth' }).mode).toBe('veth');
    expect(c({ mode: 'bridge' }).mode).toBe('zone');
    expect(c({ ipam: { type: 'host-local', ranges: [] } }).ipam).toEqual({ type: 'host-local' });
    expect(c({ ipam: {} }).ipam).toBeUndefined();
    expect(c({ 'cni.dev/valid-attachments': [{ containerID: 'x', ifname: 'eth0' }] }).validAttachments).toEqual([{ containerID: 'x', ifname: 'eth0' }]);
  });
  test('a network name too long for a bridge name gets a stable hashed zone', () => {
    const a = parseConfig(JSON.stringify({ cniVersion: '1.0.0', name: 'k8s-pod-network', type: 'nspawn-cni' }));
    expect(a.zone).toMatch(/^cni-[0-9a-f]{8}$/);
    expect(parseConfig(JSON.stringify({ cniVersion: '1.0.0', name: 'k8s-pod-network', type: 'nspawn-cni' })).zone).toBe(a.zone);
  });
  test('portMappings from runtimeConfig', () => {
    const c = parseConfig(JSON.stringify({ cniVersion: '0.4.0', name: 'n', runtimeConfig: { portMappings: [{ hostPort: 8080, containerPort: 80, protocol: 'tcp' }, { hostPort: 53, containerPort: 53, protocol: 'udp', hostIP: '' }] } }));
    expect(c.ports).toEqual([
      { protocol: 'tcp', hostPort: 8080, hostPortEnd: 8080, containerPort: 80, containerPortEnd: 80 },
      { protocol: 'udp', hostPort: 53, hostPortEnd: 53, containerPort: 53, containerPortEnd: 53 },
    ]);
  });
  test('refusals carry the spec codes and name the field', () => {
    const cfg = (o: Record<string, unknown>) => JSON.stringify({ cniVersion: '1.0.0', name: 'n', ...o });
    expect(codeOf(() => parseConfig('{'))).toBe(CNI_ERR.DECODE_FAILURE);
    expect(codeOf(() => parseConfig(cfg({ cniVersion: '1.2.0' })))).toBe(CNI_ERR.INCOMPATIBLE_VERSION);
    expect(codeOf(() => parseConfig(cfg({ cniVersion: undefined })))).toBe(CNI_ERR.INCOMPATIBLE_VERSION);
    expect(codeOf(() => parseConfig(cfg({ name: '' })))).toBe(CNI_ERR.INVALID_CONFIG);
    expect(() => parseConfig(cfg({ ipam: { ranges: [] } }))).toThrow(/"ipam.type"/);
    expect(codeOf(() => parseConfig(cfg({ ipam: { type: '../x' } })))).toBe(CNI_ERR.INVALID_CONFIG);
    expect(codeOf(() => parseConfig(cfg({ ipam: 'host-local' })))).toBe(CNI_ERR.INVALID_CONFIG);
    expect(() => parseConfig(cfg({ mode: 'p2p' }))).toThrow(/"mode"/);
    expect(() => parseConfig(cfg({ 'cni.dev/valid-attachments': [{ containerID: 'x' }] }))).toThrow(/valid-attachments"\[0\]\.ifname/);
    expect(codeOf(() => parseConfig(cfg({ zone: 'far-too-long-zone' })))).toBe(CNI_ERR.INVALID_CONFIG);
    expect(codeOf(() => parseConfig(cfg({ stateDir: 'relative' })))).toBe(CNI_ERR.INVALID_CONFIG);
    expect(() => parseConfig(cfg({ runtimeConfig: { portMappings: [{ hostPort: 70000, containerPort: 80 }] } }))).toThrow(/portMappings\[0\]\.hostPort/);
    expect(() => parseConfig(cfg({ runtimeConfig: { portMappings: [{ hostPort: 1, containerPort: 80, protocol: 'sctp' }] } }))).toThrow(/protocol/);
    expect(codeOf(() => parseConfig(cfg({ runtimeConfig: { portMappings: [{ hostPort: 1, containerPort: 80, hostIP: '192.0.2.1' }] } })))).toBe(CNI_ERR.UNSUPPORTED_FIELD);
  });
});

describe('results', () => {
  const outcome = {
    interfaces: [{ name: 'vz-podnet', mac: '02:00:00:00:00:01' }, { name: 'nc01234567', mac: '02:00:00:00:00:01' }, { name: 'eth0', mac: '02:00:00:00:00:02', sandbox: '/run/netns/x' }],
    ips: [{ address: '192.168.57.115/24', gateway: '192.168.57.1', interface: 2 }, { address: 'fd12:3456:789a:1::2/64', gateway: 'fe80::1', interface: 2 }],
    routes: [{ dst: '0.0.0.0/0', gw: '192.168.57.1' }, { dst: '::/0', gw: 'fe80::1' }],
    dns: { nameservers: ['192.0.2.53'] },
  };
  test('1.0.0 (golden)', () => {
    expect(JSON.stringify(addResult('1.0.0', outcome))).toBe(
      '{"cniVersion":"1.0.0","interfaces":[{"name":"vz-podnet","mac":"02:00:00:00:00:01"},{"name":"nc01234567","mac":"02:00:00:00:00:01"},' +
      '{"name":"eth0","mac":"02:00:00:00:00:02","sandbox":"/run/netns/x"}],"ips":[{"address":"192.168.57.115/24","gateway":"192.168.57.1","interface":2},' +
      '{"address":"fd12:3456:789a:1::2/64","gateway":"fe80::1","interface":2}],' +
      '"routes":[{"dst":"0.0.0.0/0","gw":"192.168.57.1"},{"dst":"::/0","gw":"fe80::1"}],"dns":{"nameservers":["192.0.2.53"]}}');
  });
  test('0.4.0 and 0.3.1 carry ips[].version', () => {
    for (const v of ['0.4.0', '0.3.1'] as const) {
      const r = addResult(v, outcome) as { cniVersion: string; ips: Array<{ version?: string }> };
      expect(r.cniVersion).toBe(v);
      expect(r.ips.map((i) => i.version)).toEqual(['4', '6']);
    }
    expect(prevAddresses(addResult('0.4.0', outcome))).toEqual(['192.168.57.115/24', 'fd12:3456:789a:1::2/64']);
    expect(prevAddresses({})).toEqual([]);
  });
  test('VERSION and errors', () => {
    // libcni asks with its own newest version: 1.1.0 only for a runtime that speaks it (libcni 1.1.2 cannot convert a 1.1.0 result back)
    expect(versionResult('1.0.0')).toEqual({ cniVersion: '1.0.0', supportedVersions: ['0.3.0', '0.3.1', '0.4.0', '1.0.0'] });
    expect(versionResult('1.1.0')).toEqual({ cniVersion: '1.1.0', supportedVersions: ['0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0'] });
    expect(versionAtLeast('1.0.0', '1.1.0')).toBe(false);
    expect(versionAtLeast('1.2.0', '1.1.0')).toBe(true);
    expect(versionAtLeast('0.4.0', '0.4.0')).toBe(true);
    expect(errorResult('0.4.0', new CniError(11, 'busy', 'the zone lock'))).toEqual({ cniVersion: '0.4.0', code: 11, msg: 'busy', details: 'the zone lock' });
    expect(errorResult('1.0.0', new CniError(4, 'bad'))).toEqual({ cniVersion: '1.0.0', code: 4, msg: 'bad' });
  });
  test('the spec\'s well-known codes (SPEC.md "Error"; libcni types.ErrInvalidEnvironmentVariables 4, ErrInvalidNetworkConfig 7)', () => {
    expect(CNI_ERR).toMatchObject({
      INCOMPATIBLE_VERSION: 1, UNSUPPORTED_FIELD: 2, UNKNOWN_CONTAINER: 3, INVALID_ENVIRONMENT: 4, IO_FAILURE: 5, DECODE_FAILURE: 6,
      INVALID_CONFIG: 7, TRY_AGAIN_LATER: 11, NOT_AVAILABLE: 50,
    });
    expect(codeOf(() => parseEnv({ ...ENV, CNI_NETNS: undefined }))).toBe(4);
    expect(codeOf(() => parseConfig(JSON.stringify({ cniVersion: '1.0.0', name: 'n', mode: 'ipvlan' })))).toBe(7);
  });
});
