import { describe, expect, test } from 'vitest';
import { parseNotifyMessage, unixSockaddr } from '../../../src/runtime/notify.js';

describe('sd_notify messages and addresses', () => {
  test('newline-separated assignments; lines without "=" are skipped, the last of a key wins', () => {
    expect([...parseNotifyMessage('READY=1\nSTATUS=up: a=b\n\nnoise\nSTATUS=again')]).toEqual([['READY', '1'], ['STATUS', 'again']]);
  });

  test('a path is NUL-terminated; "@name" is abstract: a leading NUL and the name, no terminator', () => {
    expect(Buffer.from(unixSockaddr('/run/x')).toString('hex')).toBe(`0100${Buffer.from('/run/x').toString('hex')}00`);
    expect(Buffer.from(unixSockaddr('@abc')).toString('hex')).toBe('010000616263');
  });

  test('empty and over-long addresses are refused with what is allowed', () => {
    expect(() => unixSockaddr('')).toThrow(/a path or @name of at most 107 bytes/);
    expect(() => unixSockaddr(`/${'x'.repeat(107)}`)).toThrow(/not a usable AF_UNIX socket address/);
    expect(unixSockaddr(`/${'x'.repeat(106)}`).length).toBe(2 + 108);
  });
});
