// Where a reply goes (RFC 2131 §4.1), in one tested function. Every reply leaves through the
// interface the request came in on, as an Ethernet frame the server addresses itself (the transport
// sends IPv4/UDP it built, to a MAC, without ARP):
//   giaddr set          → the relay, UDP port 67, at the MAC the request came from (the relay, or the
//                         router in front of it, which routes it on); a NAK gets the broadcast bit
//   NAK                 → broadcast
//   ciaddr set          → unicast to ciaddr, at the MAC the request came from (the client, or its router)
//   broadcast bit       → broadcast
//   otherwise           → unicast to yiaddr at chaddr (the client has no address to answer ARP with);
//                         broadcast when chaddr is not an Ethernet address or there is no yiaddr
import { type DhcpPacket, FLAG_BROADCAST } from './codec.js';
import type { Ipv4 } from './ipv4.js';

export const SERVER_PORT = 67;
export const CLIENT_PORT = 68;
export const BROADCAST_IP = 0xffffffff;

export type ReplyRoute =
  | { kind: 'broadcast'; ip: Ipv4; port: number }
  /** To `ip`:`port`, at the MAC the request came from. */
  | { kind: 'back'; ip: Ipv4; port: number }
  /** To `ip`:`port`, at the reply's chaddr. */
  | { kind: 'chaddr'; ip: Ipv4; port: number };

export function replyRoute(request: DhcpPacket, reply: DhcpPacket, isNak: boolean): ReplyRoute {
  if (request.giaddr) return { kind: 'back', ip: request.giaddr, port: SERVER_PORT };
  if (isNak) return { kind: 'broadcast', ip: BROADCAST_IP, port: CLIENT_PORT };
  if (request.ciaddr) return { kind: 'back', ip: request.ciaddr, port: CLIENT_PORT };
  if (request.flags & FLAG_BROADCAST) return { kind: 'broadcast', ip: BROADCAST_IP, port: CLIENT_PORT };
  if (reply.yiaddr && request.htype === 1 && request.hlen === 6) return { kind: 'chaddr', ip: reply.yiaddr, port: CLIENT_PORT };
  return { kind: 'broadcast', ip: BROADCAST_IP, port: CLIENT_PORT };
}
