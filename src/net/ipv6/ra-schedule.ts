// When a router sends advertisements on one link (RFC 4861 §6.2.4–6.2.6), as pure decisions over a
// clock the caller passes in, so they are tested without timers.
//
// - Unsolicited: the first MAX_INITIAL_RTR_ADVERTISEMENTS (3) at most MAX_INITIAL_RTR_ADVERT_INTERVAL
//   (16 s) apart, then uniformly random in [MinRtrAdvInterval, MaxRtrAdvInterval] — systemd-networkd's
//   200 s and 600 s (radv-internal.h).
// - A valid solicitation from an address is answered at once by unicast to the solicitor (§6.2.6
//   allows it), at most `unicastBurst` in a row and `unicastPerSecond` after that per link, so a
//   container that floods solicitations gets a bounded trickle. One from the unspecified address
//   (a host before DAD) can only be answered by multicast, and multicast RAs are at least
//   MIN_DELAY_BETWEEN_RAS (3 s) apart.

export interface RaTiming {
  minIntervalMs: number;
  maxIntervalMs: number;
  initialIntervalMs: number;
  initialCount: number;
  minDelayBetweenRasMs: number;
  unicastBurst: number;
  unicastPerSecond: number;
}

export const RA_TIMING: Readonly<RaTiming> = {
  minIntervalMs: 200_000,
  maxIntervalMs: 600_000,
  initialIntervalMs: 16_000,
  initialCount: 3,
  minDelayBetweenRasMs: 3_000,
  unicastBurst: 10,
  unicastPerSecond: 5,
};

/** Lifetimes an advertisement carries (seconds), networkd's defaults. */
export const RA_LIFETIMES = {
  /** 3 × MaxRtrAdvInterval (networkd's RADV_DEFAULT_ROUTER_LIFETIME_USEC). */
  router: 1800,
  /** networkd's [IPv6Prefix] ValidLifetimeSec= and PreferredLifetimeSec= defaults. */
  prefixValid: 30 * 24 * 3600,
  prefixPreferred: 7 * 24 * 3600,
  /** RFC 8106 §5.1: at least 3 × MaxRtrAdvInterval. */
  dns: 1800,
} as const;

export type SolicitationAnswer =
  | { kind: 'unicast' }
  | { kind: 'multicast'; atMs: number }
  | { kind: 'none'; reason: string };

export class AdvertisementSchedule {
  private multicastSent = 0;
  private lastMulticastMs = -Infinity;
  private tokens: number;
  private tokensAtMs: number;

  constructor(
    nowMs: number,
    private readonly timing: Readonly<RaTiming> = RA_TIMING,
    private readonly random: () => number = Math.random,
  ) {
    this.tokens = timing.unicastBurst;
    this.tokensAtMs = nowMs;
  }

  /** Records a multicast advertisement sent at `nowMs`; returns the delay until the next unsolicited one. */
  sentMulticast(nowMs: number): number {
    this.multicastSent++;
    this.lastMulticastMs = nowMs;
    const t = this.timing;
    let delay = t.minIntervalMs + this.random() * (t.maxIntervalMs - t.minIntervalMs);
    if (this.multicastSent < t.initialCount) delay = Math.min(delay, t.initialIntervalMs);
    return Math.round(delay);
  }

  /** How to answer a valid solicitation received at `nowMs`. */
  solicited(nowMs: number, fromUnspecified: boolean): SolicitationAnswer {
    if (fromUnspecified) {
      return { kind: 'multicast', atMs: Math.max(nowMs, this.lastMulticastMs + this.timing.minDelayBetweenRasMs) };
    }
    const t = this.timing;
    this.tokens = Math.min(t.unicastBurst, this.tokens + ((nowMs - this.tokensAtMs) / 1000) * t.unicastPerSecond);
    this.tokensAtMs = nowMs;
    if (this.tokens < 1) return { kind: 'none', reason: 'solicitations on this link exceed the rate answered' };
    this.tokens--;
    return { kind: 'unicast' };
  }
}
