// Applies a Decision to a lease table: the in-memory half of what the server does with a decision
// (the other half is journaling and sending). Kept apart so the state-machine tests drive exactly
// the code the server runs.
import type { Decision } from './decide.js';
import type { Lease, LeaseTable } from './leases.js';

export interface ApplyOptions {
  /** How long an offered address is held for the client (ms); default 30 s. */
  offerHoldMs?: number;
  /** How long a DECLINEd address is kept out of use (ms); default 10 min. */
  declineMs?: number;
}

export const DEFAULT_OFFER_HOLD_MS = 30_000;
export const DEFAULT_DECLINE_MS = 600_000;

/** Returns the entry that changed (the ACKed, released or declined lease), if any. */
export function applyDecision(table: LeaseTable, d: Decision, now: number, opts: ApplyOptions = {}): Lease | undefined {
  switch (d.kind) {
    case 'offer':
      table.hold(d.client, d.address, now + (opts.offerHoldMs ?? DEFAULT_OFFER_HOLD_MS), now, d.src);
      return undefined;
    case 'ack':
      return table.bind(d.client, d.address, d.expiresAt, d.hostname, now, false, d.src);
    case 'release': {
      const cur = table.lease(d.client.key);
      // Remembered as the client's address until the lease would have ended.
      return table.release(d.client.key, Math.max(now + 1, cur?.expiresAt ?? now));
    }
    case 'decline': {
      const cur = table.lease(d.client.key);
      table.quarantineAddress(d.address, now + (opts.declineMs ?? DEFAULT_DECLINE_MS));
      return cur;
    }
    case 'nak': {
      // A NAKed client restarts from INIT; an offer it holds is no use to it any more.
      table.forgetOffer(d.client.key);
      return undefined;
    }
    case 'ignore':
      if (d.forgetOffer) table.forgetOffer(d.forgetOffer.key);
      return undefined;
    case 'inform':
      return undefined;
  }
}
