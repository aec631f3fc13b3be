// IPv4 and UDP headers around DHCP messages: the server receives and sends whole IP datagrams on a
// packet socket (so it can answer a client that has no address yet, at its MAC, without ARP), and
// builds and checks the headers here.
//
// On receive the IPv4 header checksum is verified; the UDP checksum is not: a datagram from another
// namespace on the same host crosses the veth with CHECKSUM_PARTIAL, so the bytes a packet socket sees
// carry only the pseudo-header sum (the kernel's own receive path knows and skips the check too).
import type { Ipv4 } from './ipv4.js';

export interface UdpDatagram {
  srcIp: Ipv4;
  dstIp: Ipv4;
  srcPort: number;
  dstPort: number;
  /** The UDP payload (a view into the received buffer). */
  payload: Uint8Array;
}

const IPPROTO_UDP = 17;

/** Parses an IPv4 datagram carrying UDP; returns the reason it is not one. */
export function parseIpUdp(b: Uint8Array, len = b.length): UdpDatagram | string {
  if (len < 28) return `${len} bytes is too short for IPv4 and UDP headers`;
  const vihl = b[0] as number;
  if (vihl >> 4 !== 4) return `IP version ${vihl >> 4}`;
  const ihl = (vihl & 0x0f) * 4;
  if (ihl < 20) return `IP header length ${ihl}`;
  const total = ((b[2] as number) << 8) | (b[3] as number);
  if (total > len || total < ihl + 8) return `IP total length ${total} does not fit ${len} bytes received`;
  if ((((b[6] as number) << 8) | (b[7] as number)) & 0x3fff) return 'an IP fragment';
  if (b[9] !== IPPROTO_UDP) return `IP protocol ${b[9]}`;
  if (checksum(b, 0, ihl, 0) !== 0) return 'bad IP header checksum';
  const udpLen = ((b[ihl + 4] as number) << 8) | (b[ihl + 5] as number);
  if (udpLen < 8 || udpLen > total - ihl) return `UDP length ${udpLen} does not fit the IP datagram`;
  return {
    srcIp: readU32(b, 12),
    dstIp: readU32(b, 16),
    srcPort: ((b[ihl] as number) << 8) | (b[ihl + 1] as number),
    dstPort: ((b[ihl + 2] as number) << 8) | (b[ihl + 3] as number),
    payload: b.subarray(ihl + 8, ihl + udpLen),
  };
}

let ipId = 1;

/** Bytes of the IPv4 and UDP headers buildIpUdp writes. */
export const IP_UDP_HEADERS = 28;

/** An IPv4 datagram (no options, TTL 64) carrying one UDP datagram with a full checksum. */
export function buildIpUdp(srcIp: Ipv4, dstIp: Ipv4, srcPort: number, dstPort: number, payload: Uint8Array): Uint8Array {
  const b = new Uint8Array(IP_UDP_HEADERS + payload.length);
  b.set(payload, IP_UDP_HEADERS);
  writeIpUdpHeaders(b, srcIp, dstIp, srcPort, dstPort);
  return b;
}

/**
 * The same, without a copy: `payload` must be a view with 28 bytes of its buffer free before it
 * (encodePacket with `headroom`), where the headers are written. Returns the whole datagram.
 */
export function buildIpUdpInPlace(srcIp: Ipv4, dstIp: Ipv4, srcPort: number, dstPort: number, payload: Uint8Array): Uint8Array {
  if (payload.byteOffset < IP_UDP_HEADERS) throw new RangeError('no room for the IP and UDP headers before the payload');
  const b = new Uint8Array(payload.buffer, payload.byteOffset - IP_UDP_HEADERS, payload.length + IP_UDP_HEADERS);
  writeIpUdpHeaders(b, srcIp, dstIp, srcPort, dstPort);
  return b;
}

function writeIpUdpHeaders(b: Uint8Array, srcIp: Ipv4, dstIp: Ipv4, srcPort: number, dstPort: number): void {
  const total = b.length;
  const udpLen = total - 20;
  b[0] = 0x45;
  b[1] = 0;
  b[2] = total >>> 8;
  b[3] = total & 0xff;
  ipId = (ipId + 1) & 0xffff;
  b[4] = ipId >>> 8;
  b[5] = ipId & 0xff;
  b[6] = 0;
  b[7] = 0;
  b[8] = 64;
  b[9] = IPPROTO_UDP;
  b[10] = 0;
  b[11] = 0;
  writeU32(b, 12, srcIp);
  writeU32(b, 16, dstIp);
  const ipSum = checksum(b, 0, 20, 0);
  b[10] = ipSum >>> 8;
  b[11] = ipSum & 0xff;
  b[20] = srcPort >>> 8;
  b[21] = srcPort & 0xff;
  b[22] = dstPort >>> 8;
  b[23] = dstPort & 0xff;
  b[24] = udpLen >>> 8;
  b[25] = udpLen & 0xff;
  b[26] = 0;
  b[27] = 0;
  // Pseudo header: source, destination, zero+protocol, UDP length.
  let pseudo = (srcIp >>> 16) + (srcIp & 0xffff) + (dstIp >>> 16) + (dstIp & 0xffff) + IPPROTO_UDP + udpLen;
  pseudo = (pseudo & 0xffff) + (pseudo >>> 16);
  let udpSum = checksum(b, 20, udpLen, pseudo);
  if (udpSum === 0) udpSum = 0xffff; // RFC 768: a computed zero is sent as all ones
  b[26] = udpSum >>> 8;
  b[27] = udpSum & 0xff;
}

/** One's complement checksum of b[off, off+len) plus `initial`, as the 16-bit value to store. */
export function checksum(b: Uint8Array, off: number, len: number, initial: number): number {
  let sum = initial;
  const end = off + len - 1;
  let i = off;
  for (; i < end; i += 2) sum += ((b[i] as number) << 8) | (b[i + 1] as number);
  if (i === end) sum += (b[i] as number) << 8;
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

function readU32(b: Uint8Array, off: number): number {
  return (((b[off] as number) << 24) | ((b[off + 1] as number) << 16) | ((b[off + 2] as number) << 8) | (b[off + 3] as number)) >>> 0;
}

function writeU32(b: Uint8Array, off: number, v: number): void {
  b[off] = v >>> 24;
  b[off + 1] = (v >>> 16) & 0xff;
  b[off + 2] = (v >>> 8) & 0xff;
  b[off + 3] = v & 0xff;
}
