// How DHCP datagrams reach the server and leave it.
//
// One AF_PACKET socket (SOCK_DGRAM, ETH_P_IP) per network namespace serves every interface in it: a
// classic BPF filter in the kernel passes only unfragmented UDP to port 67 that this host did not send
// itself, and each datagram arrives with the index of the interface it came in on (sll_ifindex), which
// the server looks up in its table of served interfaces; frames from any other interface are dropped.
// Serving an interface therefore costs one Map entry and no file descriptor, no socket buffer and no
// wakeups of its own: hundreds of container links cost what one does. (A UDP socket per interface with
// SO_BINDTODEVICE, as networkd does, costs an fd, a receive buffer and a poll registration each, and
// still cannot send to a client that has no address yet without a raw socket beside it.)
//
// Replies are sent on the same socket as whole IPv4/UDP datagrams built in TypeScript (wire.ts), to an
// explicit MAC on an explicit interface: to a client's chaddr before it has an address (no ARP), back
// to the MAC a request came from (a relay or a renewing client), or to ff:ff:ff:ff:ff:ff. The kernel
// adds the Ethernet header with the interface's own MAC.
//
// A UDP socket bound to 0.0.0.0:67 with a drop-everything filter sits beside it, only so that
// unicast requests (RENEWING, relays) do not make the kernel answer "port unreachable".
//
// Bridge ports: the socket is of ETH_P_ALL (a tap, ignoring outgoing frames: PACKET_IGNORE_OUTGOING,
// so nothing sent is cloned for it), so a request from a zone's container arrives twice — first as
// received on its bridge port (vb-…: taps run before the bridge's rx_handler takes the frame), then
// as the bridge passes it up (vz-…). The server serves the bridge; the transport pairs the copies
// (ingress.ts) and delivers the bridge's copy once, with the port it came in on (`ingressPort`),
// which is what a container cannot fake: its Ethernet source it can. The port's copy is not
// delivered: it is counted as not served only if no bridge copy takes it.
// (A socket of ETH_P_IP sees only the bridge's copy, and PACKET_ORIGDEV does not help: the bridge
// hands the frame up in a new receive pass whose original device is the bridge itself.) Without
// PACKET_IGNORE_OUTGOING (Linux < 4.20) the socket stays ETH_P_IP, and frames carry no port.
import type { Logger } from '../log.js';
import { type FdWatcher, POLL_READABLE, sys } from '../native.js';
import { dhcpServerFilter, dropAllFilter } from './bpf.js';
import { IngressPorts } from './ingress.js';
import { releaseReply } from './reply-slabs.js';
import { type UdpDatagram, buildIpUdp, buildIpUdpInPlace, parseIpUdp } from './wire.js';

export interface InboundFrame {
  ifindex: number;
  /** PACKET_HOST (0), PACKET_BROADCAST (1), PACKET_MULTICAST (2), PACKET_OTHERHOST (3). */
  pkttype: number;
  /** Source MAC of the frame (6 bytes). */
  srcMac: Uint8Array;
  datagram: UdpDatagram;
  /** The bridge port the frame came in on (its ifindex), when the socket saw it there first (ingress.ts). */
  ingressPort?: number | undefined;
}

/** What the transport needs to know to pair a bridge port's copy of a request with the bridge's. */
export interface IngressHandlers {
  /** Whether frames on this interface are the server's (others may be ports of a served bridge). */
  served(ifindex: number): boolean;
  /**
   * Frames on interfaces not served, less those that turned out to be a port's copy of a frame that
   * followed on a served bridge (negative when the pairing came a batch later than the copy).
   */
  notServed(delta: number): void;
}

export interface OutboundFrame {
  ifindex: number;
  dstMac: Uint8Array;
  srcIp: number;
  dstIp: number;
  srcPort: number;
  dstPort: number;
  payload: Uint8Array;
  /** The payload's buffer has 28 free bytes before it for the headers (encodePacket `headroom`). */
  headroom?: boolean;
}

export interface DhcpTransport {
  /**
   * Starts delivering frames; `onFrame` runs synchronously for each. `onDropped` hears of datagrams
   * that were not IPv4/UDP as they should be, `onSendFailed` of replies the kernel refused,
   * `onBatchEnd` when the frames that were waiting have been delivered (replies sent until then
   * leave together, after it returns). With `ingress`, frames on interfaces not served are not
   * delivered (they may be ports' copies) but counted there.
   */
  start(onFrame: (frame: InboundFrame) => void, onDropped?: (reason: string) => void, onSendFailed?: (count: number) => void, onBatchEnd?: () => void,
    ingress?: IngressHandlers): void;
  /** Sends one frame (possibly batched with others sent in the same event-loop turn); false when refused at once. */
  send(frame: OutboundFrame): boolean;
  /** Stops delivering frames; send() still works (replies waiting for the journal go out). */
  stopReceiving(): void;
  close(): void;
}

export const BROADCAST_MAC = Uint8Array.of(0xff, 0xff, 0xff, 0xff, 0xff, 0xff);

const AF_INET = 2;
const AF_PACKET = 17;
const SOCK_DGRAM = 2;
const SOL_SOCKET = 1;
const SO_REUSEADDR = 2;
const SO_SNDBUF = 7;
const SO_RCVBUF = 8;
const SO_SNDBUFFORCE = 32;
const SO_RCVBUFFORCE = 33;
const ETH_P_IP = 0x0800;
const ETH_P_ALL = 0x0003;
const SOL_PACKET = 263;
const PACKET_IGNORE_OUTGOING = 23;
/** Datagrams per recvmmsg, and recvmmsg calls per readiness callback before yielding to the event loop. */
const BATCH = 64;
const ROUNDS = 4;
/** Receive slot: larger frames are dropped (a DHCP message is at most a few hundred bytes). */
const SLOT = 4096;
/** Bytes per source address (struct sockaddr_ll). */
const ADDR = 20;

/** A struct sockaddr_ll for a packet socket: `protocol` (ETH_P_*) on `ifindex`, to `mac` when sending. */
export function sockaddrLl(ifindex: number, mac?: Uint8Array, protocol = ETH_P_IP): Uint8Array {
  const b = new Uint8Array(20);
  const dv = new DataView(b.buffer);
  dv.setUint16(0, AF_PACKET, true);
  dv.setUint16(2, protocol, false);
  dv.setInt32(4, ifindex, true);
  if (mac) {
    b[11] = mac.length;
    b.set(mac.subarray(0, 8), 12);
  }
  return b;
}

export interface PacketTransportOptions {
  /** Make the sockets inside this network namespace (fd); default: the caller's. */
  netnsFd?: number;
  log: Logger;
  /** Socket buffer sizes (bytes); default 4 MiB each. */
  bufferBytes?: number;
}

export class PacketTransport implements DhcpTransport {
  private readonly fd: number;
  private readonly guardFd: number | undefined;
  private watcher: FdWatcher | undefined;
  private readonly log: Logger;
  private readonly rx = new Uint8Array(BATCH * SLOT);
  private readonly lengths = new Int32Array(BATCH);
  private readonly addrs = new Uint8Array(BATCH * ADDR);
  private readonly addrView = new DataView(this.addrs.buffer);
  /** ports' copies of requests, until the bridge's copy takes them */
  private readonly ports = new IngressPorts();
  private outPackets: Uint8Array[] = [];
  /** sockaddr_ll buffers reused across flushes, one per queued reply. */
  private readonly outAddrs: Uint8Array[] = [];
  private onSendFailed: ((count: number) => void) | undefined;
  private closed = false;

  constructor(opts: PacketTransportOptions) {
    const s = sys();
    this.log = opts.log;
    // Protocol 0 receives nothing until bind(): the filter is in place before the first frame.
    this.fd = s.socket(AF_PACKET, SOCK_DGRAM, 0, opts.netnsFd);
    try {
      s.attachFilter(this.fd, dhcpServerFilter());
      const bytes = opts.bufferBytes ?? 4 << 20;
      setBuffer(this.fd, SO_RCVBUFFORCE, SO_RCVBUF, bytes);
      setBuffer(this.fd, SO_SNDBUFFORCE, SO_SNDBUF, bytes);
      let protocol = ETH_P_IP;
      try {
        s.setsockoptInt(this.fd, SOL_PACKET, PACKET_IGNORE_OUTGOING, 1);
        protocol = ETH_P_ALL;
      } catch (err) {
        this.log.debug('no PACKET_IGNORE_OUTGOING: requests on bridges are not told apart by port', { error: (err as Error).message });
      }
      s.bind(this.fd, sockaddrLl(0, undefined, protocol));
    } catch (err) {
      s.close(this.fd);
      throw err;
    }
    this.guardFd = this.openGuard(opts.netnsFd);
  }

  private openGuard(netnsFd: number | undefined): number | undefined {
    const s = sys();
    let fd: number | undefined;
    try {
      fd = s.socket(AF_INET, SOCK_DGRAM, 0, netnsFd);
      s.attachFilter(fd, dropAllFilter());
      s.setsockoptInt(fd, SOL_SOCKET, SO_REUSEADDR, 1);
      const sin = new Uint8Array(16);
      new DataView(sin.buffer).setUint16(0, AF_INET, true);
      new DataView(sin.buffer).setUint16(2, 67, false);
      s.bind(fd, sin);
      return fd;
    } catch (err) {
      if (fd !== undefined) s.close(fd);
      this.log.debug('no UDP socket on port 67 (another server has it); unicast requests may draw ICMP port-unreachable', { error: (err as Error).message });
      return undefined;
    }
  }

  start(onFrame: (frame: InboundFrame) => void, onDropped?: (reason: string) => void, onSendFailed?: (count: number) => void, onBatchEnd?: () => void,
    ingress?: IngressHandlers): void {
    const s = sys();
    this.onSendFailed = onSendFailed;
    const { rx, lengths, addrs, addrView, ports } = this;
    /** frames on interfaces not served, less ports' copies paired since (IngressHandlers.notServed) */
    let notServed = 0;
    const receive = (): void => {
      for (let round = 0; round < ROUNDS; round++) {
        let n: number;
        try {
          n = s.recvBatch(this.fd, rx, SLOT, lengths, addrs);
        } catch (err) {
          this.log.warn('receiving on the DHCP packet socket failed', { error: (err as Error).message });
          return;
        }
        if (n < 0) return;
        for (let i = 0; i < n; i++) {
          const len = lengths[i] as number;
          if (len < 0) {
            onDropped?.(`a frame longer than ${SLOT} bytes`);
            continue;
          }
          // Views into the receive buffer: the handler is done with them when it returns (replies
          // are encoded at once, the lease table keeps no views), before the next batch overwrites it.
          const d = parseIpUdp(rx.subarray(i * SLOT, i * SLOT + len));
          if (typeof d === 'string') {
            onDropped?.(d);
            continue;
          }
          const a = i * ADDR;
          const ifindex = addrView.getInt32(a + 4, true);
          const srcMac = addrs.subarray(a + 12, a + 12 + Math.min(8, addrs[a + 11] as number));
          let ingressPort: number | undefined;
          if (ingress) {
            if (!ingress.served(ifindex)) {
              ports.note(ifindex, srcMac, d.payload); // perhaps a port of a served bridge: its copy follows
              notServed++;
              continue;
            }
            ingressPort = ports.take(srcMac, d.payload);
            if (ingressPort !== undefined) notServed--; // that copy was the port's, not a frame of its own
          }
          onFrame({ ifindex, pkttype: addrs[a + 10] as number, srcMac, datagram: d, ingressPort });
        }
        if (n < BATCH) return;
      }
    };
    this.watcher = new s.FdWatcher(this.fd, POLL_READABLE, () => {
      receive();
      if (notServed !== 0) {
        ingress?.notServed(notServed);
        notServed = 0;
      }
      onBatchEnd?.();
    });
  }

  send(f: OutboundFrame): boolean {
    const packet = f.headroom
      ? buildIpUdpInPlace(f.srcIp, f.dstIp, f.srcPort, f.dstPort, f.payload)
      : buildIpUdp(f.srcIp, f.dstIp, f.srcPort, f.dstPort, f.payload);
    const k = this.outPackets.length;
    let to = this.outAddrs[k];
    if (!to) {
      to = sockaddrLl(0);
      this.outAddrs[k] = to;
    }
    new DataView(to.buffer, to.byteOffset).setInt32(4, f.ifindex, true);
    to[11] = f.dstMac.length;
    to.fill(0, 12);
    to.set(f.dstMac.subarray(0, 8), 12);
    this.outPackets.push(packet);
    if (k === 0) queueMicrotask(this.flushOut);
    return true;
  }

  /** Sends what this event-loop turn queued, in one sendmmsg when the kernel takes it all. */
  private readonly flushOut = (): void => {
    const packets = this.outPackets;
    const n = packets.length;
    this.outPackets = [];
    if (!n || this.closed) {
      for (const p of packets) releaseReply(p);
      return;
    }
    const addrs = n === this.outAddrs.length ? this.outAddrs : this.outAddrs.slice(0, n);
    let done = 0;
    let failed = 0;
    while (done < n) {
      let k: number;
      try {
        k = sys().sendBatch(this.fd, done ? packets.slice(done) : packets, done ? addrs.slice(done, n) : addrs);
      } catch (err) {
        this.log.debug('sending DHCP replies failed', { error: (err as Error).message });
        k = 0;
      }
      done += k;
      if (done < n) {
        failed++; // refused (buffer full, link gone): skip it, the client will ask again
        done++;
      }
    }
    // sendmmsg copied them: the slabs they were carved from may be carved again (reply-slabs.ts)
    for (let i = 0; i < n; i++) releaseReply(packets[i] as Uint8Array);
    if (failed) {
      this.log.debug('the kernel refused DHCP replies', { count: failed });
      this.onSendFailed?.(failed);
    }
  };

  stopReceiving(): void {
    this.watcher?.stop();
    this.watcher = undefined;
  }

  close(): void {
    this.stopReceiving();
    this.flushOut();
    this.closed = true;
    const s = sys();
    s.close(this.fd);
    if (this.guardFd !== undefined) s.close(this.guardFd);
  }
}

function setBuffer(fd: number, force: number, plain: number, bytes: number): void {
  const s = sys();
  try {
    s.setsockoptInt(fd, SOL_SOCKET, force, bytes); // root: past net.core.*mem_max
  } catch {
    s.setsockoptInt(fd, SOL_SOCKET, plain, bytes);
  }
}
