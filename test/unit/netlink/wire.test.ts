// Byte-level helpers: bounds-checked reading, growing writes, UTF-8 lengths.
import fc from 'fast-check';
import { describe, expect, test } from 'vitest';
import { NetlinkDecodeError, NetlinkEncodeError } from '../../../src/net/netlink/errors.js';
import { Reader, Writer, align4, decodeStringAt, encodeUtf8, utf8Length } from '../../../src/net/netlink/wire.js';

describe('wire', () => {
  test('utf8Length and Writer.utf8 agree with TextEncoder for any string, lone surrogates included', () => {
    fc.assert(fc.property(fc.string({ unit: 'binary', maxLength: 40 }), (s) => {
      expect(utf8Length(s)).toBe(encodeUtf8(s).length);
      const w = new Writer(4);
      w.utf8(s);
      expect(w.finish()).toEqual(encodeUtf8(s));
    }), { numRuns: 2000 });
  });

  test('decodeStringAt stops at the first NUL and takes unterminated strings whole', () => {
    const b = Uint8Array.from([0x76, 0x65, 0x74, 0x68, 0, 0x78]);
    expect(decodeStringAt(b, 0, 6)).toBe('veth');
    expect(decodeStringAt(b, 0, 3)).toBe('vet');
    expect(decodeStringAt(encodeUtf8('grüße'), 0, 7)).toBe('grüße');
  });

  test('the Reader raises NetlinkDecodeError at its bounds, with the offset', () => {
    const r = new Reader(new Uint8Array(10), 4, 8);
    expect(r.u32()).toBe(0);
    let err: unknown;
    try {
      r.u8('nla_type');
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(NetlinkDecodeError);
    expect(err).toMatchObject({ offset: 8, message: 'malformed netlink data at byte 8: nla_type needs 1 byte(s), 0 left' });
  });

  test('the Writer grows, pads to 4, patches lengths and refuses out-of-range numbers before writing', () => {
    const w = new Writer(2);
    w.u8(1);
    w.pad();
    w.u32(0xffffffff);
    w.u64(2n ** 64n - 1n);
    w.be16(0x8100);
    expect(w.length).toBe(18);
    w.patchU16(0, 0xabcd);
    expect(() => w.u16(65536)).toThrow(NetlinkEncodeError);
    expect(() => w.s32(2 ** 31)).toThrow(NetlinkEncodeError);
    expect(w.length).toBe(18);
    expect(Buffer.from(w.finish()).toString('hex')).toBe('cdab0000ffffffffffffffffffffffff8100');
    expect([0, 1, 4, 5, 8].map(align4)).toEqual([0, 4, 4, 8, 8]);
  });
});
