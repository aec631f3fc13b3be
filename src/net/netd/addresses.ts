// The address a machine gets inside its subnet: stable, derived from its name, moving on only when
// that address is taken. Pure.
//
// h = the first 8 bytes, big-endian, of SHA-256("nspawn-ts/address/v1\0" ‖ machine); the candidate
// is client address number h mod (clients in the subnet), probing upwards (wrapping) past taken
// ones. For a veth's /28 (13 client addresses: .2–.14 of the subnet) the machine is alone and gets
// its hash's address every time; in a zone's /24 (253 clients) machines keep theirs unless two
// collide, and then the later one moves to the next free address.
import { Address4 } from 'ip-address';
import { sha256 } from '../../common/sha256.js';
import { NspawnError } from '../../errors.js';
import type { SubnetAllocation } from '../pool.js';
import type { Holder, ReservationRecord } from './state.js';

const DOMAIN = 'nspawn-ts/address/v1\0';

export function addressHash(machine: string): bigint {
  return sha256(DOMAIN + machine).readBigUInt64BE(0);
}

export class SubnetFullError extends NspawnError {
  constructor(message: string) {
    super('NETD_SUBNET_FULL', message);
  }
}

/** The client address for `machine` in `alloc`, not in `taken` (addresses as dotted quads). */
export function pickAddress(alloc: SubnetAllocation, machine: string, taken: ReadonlySet<string>): string {
  const first = new Address4(alloc.clientRange.first).bigInt();
  const count = BigInt(alloc.clientRange.count);
  const start = addressHash(machine) % count;
  for (let i = 0n; i < count; i++) {
    const a = Address4.fromBigInt(first + ((start + i) % count)).correctForm();
    if (!taken.has(a)) return a;
  }
  throw new SubnetFullError(`no free address for machine '${machine}' in ${alloc.subnet}: all ${count} client addresses are taken`);
}

/** Whether `address` is a client address of `alloc` (not network, host or broadcast). */
export function isClientAddress(alloc: SubnetAllocation, address: string): boolean {
  if (!Address4.isValid(address)) return false;
  const a = new Address4(address).bigInt();
  const first = new Address4(alloc.clientRange.first).bigInt();
  return a >= first && a < first + BigInt(alloc.clientRange.count);
}

/**
 * The reservations with `machine` placed: its previous address when still free, else its stable
 * one (pickAddress) past the others' reservations and `bound` (dynamic) addresses. When dynamic
 * leases hold every address left, the machine's stable address is taken from its dynamic holder (a
 * reservation is the launcher's word; dynamic clients move on). A previous entry for the machine or
 * the MAC is replaced.
 */
export function placeReservation(alloc: SubnetAllocation, current: readonly ReservationRecord[], machine: string, mac: string, bound: readonly string[],
  holder?: Holder): ReservationRecord[] {
  const mine = current.find((r) => r.machine === machine);
  const others = current.filter((r) => r.machine !== machine && r.mac !== mac);
  const reserved = new Set<string>(others.map((r) => r.address));
  const taken = new Set<string>([...reserved, ...bound]);
  let address: string;
  if (mine && !taken.has(mine.address) && isClientAddress(alloc, mine.address)) address = mine.address;
  else {
    try {
      address = pickAddress(alloc, machine, taken);
    } catch (err) {
      if (!(err instanceof SubnetFullError)) throw err;
      address = mine && !reserved.has(mine.address) && isClientAddress(alloc, mine.address) ? mine.address : pickAddress(alloc, machine, reserved);
    }
  }
  return [...others, holder === undefined ? { machine, mac, address } : { machine, mac, address, holder }];
}
