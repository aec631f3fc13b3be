import { describe, expect, test } from 'vitest';
import { ConfigError, NspawnError, TeardownError, errorMessage } from '../../src/errors.js';
import { SysError } from '../../src/native.js';

describe('errors', () => {
  test('carry a stable code and their class name', () => {
    const e = new ConfigError('bad flag', { code: 'CFG_BAD_FLAG' });
    expect(e).toBeInstanceOf(NspawnError);
    expect(e.name).toBe('ConfigError');
    expect(e.code).toBe('CFG_BAD_FLAG');
  });

  test('a teardown error keeps every failure', () => {
    const e = new TeardownError('removing links', [new Error('a'), new Error('b')]);
    expect(e.errors).toHaveLength(2);
    expect(e.message).toBe('removing links: 2 step(s) failed; first: a');
  });

  test('SysError.from turns an addon error into a typed one and leaves others alone', () => {
    const raw = Object.assign(new Error('bind: Address not available (EADDRNOTAVAIL)'), { errno: 99, code: 'EADDRNOTAVAIL', syscall: 'bind' });
    const e = SysError.from(raw);
    expect(e).toBeInstanceOf(SysError);
    expect(e).toMatchObject({ errno: 99, code: 'EADDRNOTAVAIL', syscall: 'bind' });
    const plain = new Error('x');
    expect(SysError.from(plain)).toBe(plain);
    expect(errorMessage('s')).toBe('s');
  });
});
