// The packet-socket helpers of the native addon the DHCP server uses: a BPF program attached with
// SO_ATTACH_FILTER filters in the kernel, recvmmsg and sendmmsg move several datagrams per call.
import { describe, expect } from 'vitest';
import { dhcpServerFilter, dropAllFilter } from '../../src/dhcp/bpf.js';
import { sys } from '../../src/native.js';
import { ktest } from '../helpers/kernel.js';
import { sockaddrIn } from './dhcp-env.js';

const AF_INET = 2;
const AF_PACKET = 17;
const SOCK_DGRAM = 2;

describe('native packet helpers', () => {
  ktest('sendBatch sends several datagrams in one call; recvBatch receives them with their sources', ({ netns }) => {
    const s = sys();
    const rx = s.socket(AF_INET, SOCK_DGRAM, 0, netns.fd);
    const tx = s.socket(AF_INET, SOCK_DGRAM, 0, netns.fd);
    try {
      s.bind(rx, sockaddrIn('127.0.0.1', 4700));
      s.bind(tx, sockaddrIn('127.0.0.1', 4701));
      const msgs = ['one', 'two', 'three'].map((t) => new Uint8Array(Buffer.from(t)));
      expect(s.sendBatch(tx, msgs, msgs.map(() => sockaddrIn('127.0.0.1', 4700)))).toBe(3);
      const buf = new Uint8Array(8 * 64);
      const lengths = new Int32Array(8);
      const addrs = new Uint8Array(8 * 16);
      expect(s.recvBatch(rx, buf, 64, lengths, addrs)).toBe(3);
      const got = [0, 1, 2].map((i) => Buffer.from(buf.subarray(i * 64, i * 64 + (lengths[i] as number))).toString());
      expect(got).toEqual(['one', 'two', 'three']);
      expect(new DataView(addrs.buffer).getUint16(2, false)).toBe(4701); // sender's port, big-endian
      expect(s.recvBatch(rx, buf, 64, lengths, addrs)).toBe(-1); // nothing more, no blocking
      // a datagram longer than its slot is reported as cut (-1), not delivered half
      s.sendBatch(tx, [new Uint8Array(100)], [sockaddrIn('127.0.0.1', 4700)]);
      expect(s.recvBatch(rx, buf, 64, lengths, addrs)).toBe(1);
      expect(lengths[0]).toBe(-1);
      expect(() => s.recvBatch(rx, new Uint8Array(10), 64, lengths, addrs)).toThrow(RangeError);
      expect(() => s.sendBatch(tx, [new Uint8Array(1)], [])).toThrow(RangeError);
    } finally {
      s.close(rx);
      s.close(tx);
    }
  });

  ktest('attachFilter: the drop-all program silences a socket, the DHCP program passes port 67 only', ({ netns }) => {
    const s = sys();
    const rx = s.socket(AF_INET, SOCK_DGRAM, 0, netns.fd);
    const tx = s.socket(AF_INET, SOCK_DGRAM, 0, netns.fd);
    const pkt = s.socket(AF_PACKET, SOCK_DGRAM, 0, netns.fd);
    try {
      s.bind(rx, sockaddrIn('127.0.0.1', 4702));
      s.attachFilter(rx, dropAllFilter());
      s.sendto(tx, new Uint8Array(4), sockaddrIn('127.0.0.1', 4702));
      expect(s.recv(rx, new Uint8Array(16))).toBe(-1);
      // a packet socket with the DHCP filter sees UDP to 67, not to 68
      s.attachFilter(pkt, dhcpServerFilter());
      const ll = new Uint8Array(20);
      new DataView(ll.buffer).setUint16(0, AF_PACKET, true);
      new DataView(ll.buffer).setUint16(2, 0x0800, false);
      s.bind(pkt, ll);
      s.sendto(tx, new Uint8Array(Buffer.from('to68')), sockaddrIn('127.0.0.1', 68));
      s.sendto(tx, new Uint8Array(Buffer.from('to67')), sockaddrIn('127.0.0.1', 67));
      const buf = new Uint8Array(2048 * 4);
      const lengths = new Int32Array(4);
      const addrs = new Uint8Array(4 * 20);
      const n = s.recvBatch(pkt, buf, 2048, lengths, addrs);
      // on loopback the frame is seen once; the payload follows the 28 bytes of IP and UDP headers
      const payloads = Array.from({ length: Math.max(0, n) }, (_, i) => Buffer.from(buf.subarray(i * 2048 + 28, i * 2048 + (lengths[i] as number))).toString());
      expect(payloads).toEqual(['to67']);
      expect(() => s.attachFilter(pkt, new Uint8Array(7))).toThrow(RangeError);
    } finally {
      s.close(rx);
      s.close(tx);
      s.close(pkt);
    }
  });
});
