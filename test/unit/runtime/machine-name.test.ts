import { describe, expect, test } from 'vitest';
import fc from 'fast-check';
import {
  HintedConfigError, defaultMachineName, ephemeralMachineName, hostnameCleanup, machineNameProblem, machineNameValid,
  requireMachineName,
} from '../../../src/runtime/machine-name.js';

// hostname_is_valid(name, 0) as a regular expression: labels of [A-Za-z0-9-] that neither start nor
// end with '-', joined by single dots, 1–64 characters in all, ".host" excluded.
const LABEL = '[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?';
const REFERENCE = new RegExp(`^(?=.{1,64}$)${LABEL}(?:\\.${LABEL})*$`);

describe('machine names', () => {
  test('valid and invalid examples', () => {
    for (const ok of ['a', 'web', 'web-1', 'a--b', 'x.y.z', '0', '123', 'A'.repeat(64), 'my.container-01']) {
      expect(machineNameValid(ok), ok).toBe(true);
    }
    for (const bad of ['', '.host', '-a', 'a-', 'a.', '.a', 'a..b', 'a.-b', 'a-.b', 'a_b', 'a b', 'ä', 'A'.repeat(65), 'a/b']) {
      expect(machineNameValid(bad), bad).toBe(false);
    }
  });

  test('agrees with the reference regex on arbitrary strings over the interesting alphabet', () => {
    fc.assert(fc.property(
      fc.string({ unit: fc.constantFrom('a', 'Z', '0', '9', '-', '.', '_', ' ', 'é'), maxLength: 70 }),
      (s) => machineNameValid(s) === (REFERENCE.test(s) && s !== '.host'),
    ), { numRuns: 5000 });
  });

  test('hostnameCleanup always yields a valid name or ""', () => {
    fc.assert(fc.property(fc.string({ maxLength: 100 }), (s) => {
      const c = hostnameCleanup(s);
      return c === '' || machineNameValid(c);
    }), { numRuns: 3000 });
    expect(hostnameCleanup('my_container')).toBe('mycontainer');
    expect(hostnameCleanup('..a..b--')).toBe('a.b');
  });

  test('requireMachineName: systemd\'s exact message, the reason in the hint', () => {
    expect(requireMachineName('ok')).toBe('ok');
    try {
      requireMachineName('container_name');
      expect.unreachable();
    } catch (e) {
      expect(e).toBeInstanceOf(HintedConfigError);
      expect((e as HintedConfigError).message).toBe('Invalid machine name: container_name');
      expect((e as HintedConfigError).code).toBe('CFG_MACHINE_NAME');
      expect((e as HintedConfigError).hint).toMatch(/^"_" is not allowed/);
    }
    expect(machineNameProblem('a'.repeat(65))).toBe('it is longer than 64 characters');
    expect(machineNameProblem('a..b')).toMatch(/label/);
    expect(machineNameProblem('.host')).toMatch(/reserved/);
    expect(machineNameProblem('')).toBe('it is empty');
  });

  test('default names from directories', () => {
    expect(defaultMachineName('/var/lib/machines/web', () => 'h')).toBe('web');
    expect(defaultMachineName('/var/lib/machines/web/', () => 'h')).toBe('web');
    expect(defaultMachineName('/', () => 'my_host')).toBe('myhost');
    expect(() => defaultMachineName('/srv/__', () => 'h')).toThrow('Failed to determine machine name automatically, please use -M.');
  });

  test('ephemeral suffix is 16 hex digits', () => {
    expect(ephemeralMachineName('web', () => 1n)).toBe('web-0000000000000001');
    expect(ephemeralMachineName('web', () => 0xffffffffffffffffn)).toBe('web-ffffffffffffffff');
  });
});
