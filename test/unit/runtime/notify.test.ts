import { describe, expect, test } from 'vitest';
import { parseNotifyMessage } from '../../../src/runtime/notify.js';

describe('sd_notify messages', () => {
  test('newline-separated assignments; lines without "=" are skipped, the last of a key wins', () => {
    expect([...parseNotifyMessage('READY=1\nSTATUS=up: a=b\n\nnoise\nSTATUS=again')]).toEqual([['READY', '1'], ['STATUS', 'again']]);
  });
});
