// The one parser of "ADDRESS/PREFIXLEN" text. Its callers want different things from it — the netlink
// encoder both families as text and an exception naming the field, the DHCP server IPv4 numbers and
// `undefined` — so it reports what is wrong instead of throwing, and each caller words its own error.
import { Address4, Address6 } from 'ip-address';

/** A parsed "address/prefixlen": the address in its canonical text form. */
export interface Cidr {
  family: 4 | 6;
  address: string;
  prefixlen: number;
}

/** Why a text is not a CIDR: not ADDRESS/PREFIXLEN at all, a prefix length too long for the family, or no address. */
export type CidrProblem = 'syntax' | 'prefix4' | 'prefix6' | 'address';

/**
 * Parses "192.0.2.1/24" or "2001:db8::1/64". A bare address gets /32 or /128 unless `requirePrefix`.
 * Host bits may be set (192.0.2.1/24 is an interface address, not only a network).
 */
export function parseCidrText(text: string, opts: { requirePrefix?: boolean } = {}): Cidr | CidrProblem {
  const [addr, len, extra] = text.split('/');
  if (addr === undefined || extra !== undefined || (len !== undefined && !/^\d{1,3}$/.test(len))) return 'syntax';
  if (len === undefined && opts.requirePrefix) return 'syntax';
  if (Address4.isValid(addr)) {
    const prefixlen = len === undefined ? 32 : Number(len);
    if (prefixlen > 32) return 'prefix4';
    return { family: 4, address: new Address4(addr).correctForm(), prefixlen };
  }
  if (addr.includes(':') && Address6.isValid(addr)) {
    const prefixlen = len === undefined ? 128 : Number(len);
    if (prefixlen > 128) return 'prefix6';
    return { family: 6, address: new Address6(addr).correctForm(), prefixlen };
  }
  return 'address';
}
