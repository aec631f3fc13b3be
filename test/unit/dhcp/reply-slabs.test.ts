// Reply slabs: a slab whose replies were all handed back is carved again (zeroed), one whose replies
// are not is never handed out twice, and what is followed stays bounded.
import { describe, expect, test } from 'vitest';
import { encodePacket } from '../../../src/dhcp/codec.js';
import { releaseReply, replyBytes, SLAB_BYTES, slabsMade } from '../../../src/dhcp/reply-slabs.js';
import { IP_UDP_HEADERS } from '../../../src/dhcp/wire.js';
import { MessageType as T } from '../../../src/dhcp/options.js';
import { clientPacket } from './helpers.js';

describe('reply slabs', () => {
  test('replies handed back once sent: 10,000 of them use two slabs, not ~200', () => {
    const before = slabsMade();
    for (let i = 0; i < 10_000; i++) {
      const turn = Array.from({ length: 1 + (i % 7) }, () => replyBytes(340));
      for (const r of turn) releaseReply(r);
    }
    expect(slabsMade() - before).toBeLessThanOrEqual(2);
  });

  test('a slab carved again hands out zeroes, and encodePacket fills a reply the same as a fresh array', () => {
    const dirty = replyBytes(SLAB_BYTES / 4);
    dirty.fill(0xee);
    releaseReply(dirty);
    // fill the slab so the next reply comes from a slab carved again
    for (let i = 0; i < 8; i++) releaseReply(replyBytes(SLAB_BYTES / 4));
    const again = replyBytes(SLAB_BYTES / 4);
    expect(again.every((b) => b === 0)).toBe(true);
    releaseReply(again);
    const packet = clientPacket({ type: T.DISCOVER, hostname: 'box' });
    for (let i = 0; i < 200; i++) {
      const sent = encodePacket(packet, { headroom: IP_UDP_HEADERS });
      expect(Buffer.from(sent).equals(Buffer.from(encodePacket(packet)))).toBe(true);
      sent.fill(0xee); // what the IP/UDP headers and a longer reply would leave
      releaseReply(new Uint8Array(sent.buffer, sent.byteOffset - IP_UDP_HEADERS, sent.length + IP_UDP_HEADERS));
    }
  });

  test('bytes of a reply not handed back are never handed out again', () => {
    const kept = replyBytes(300);
    kept.fill(0x5a);
    const seen = new Set<ArrayBufferLike>();
    for (let i = 0; i < 2_000; i++) {
      const r = replyBytes(300);
      seen.add(r.buffer);
      if (r.buffer === kept.buffer) {
        const overlaps = r.byteOffset < kept.byteOffset + kept.length && kept.byteOffset < r.byteOffset + r.length;
        expect(overlaps).toBe(false);
      }
      releaseReply(r);
    }
    expect(kept.every((b) => b === 0x5a)).toBe(true);
    expect(seen.has(kept.buffer)).toBe(true); // carved on until full, then left alone
  });

  test('views of other buffers and large replies are ignored', () => {
    const before = slabsMade();
    releaseReply(new Uint8Array(64));
    const big = replyBytes(SLAB_BYTES);
    expect(big.byteLength).toBe(SLAB_BYTES);
    releaseReply(big);
    expect(slabsMade()).toBe(before);
  });
});
