// Streams rtnetlink notifications — links appearing, changing and going away, IPv4/IPv6 addresses
// added and removed — from one network namespace, as an async iterable and as an event emitter.
// The sidecar uses it to notice ve-/vz- links a real systemd-nspawn creates.
//
// It is its own NETLINK_ROUTE socket joined to RTNLGRP_LINK / RTNLGRP_IPV4_IFADDR / RTNLGRP_IPV6_IFADDR.
// When the kernel drops notifications because we read too slowly (ENOBUFS), an 'overrun' event says
// so: state must then be re-read (listLinks/listAddresses), as no event replays what was lost.
import { EventEmitter } from 'node:events';
import * as C from './netlink/constants.js';
import type { RtnlMessage } from './netlink/codec.js';
import { NetlinkSocket, type NetlinkSocketOptions, type NetlinkSys } from './netlink/socket.js';
import { NetlinkEncodeError } from './netlink/errors.js';
import { type Address, type Link, toAddress, toLink } from './netlink/views.js';

export type RtnlEvent =
  | { type: 'newlink'; link: Link }
  | { type: 'dellink'; link: Link }
  | { type: 'newaddr'; address: Address }
  | { type: 'deladdr'; address: Address }
  /** Notifications were lost (the socket's receive buffer overflowed, or our queue did); resync. */
  | { type: 'overrun' };

export type MonitorGroup = 'link' | 'ipv4-addr' | 'ipv6-addr';

const GROUPS: Readonly<Record<MonitorGroup, number>> = {
  link: C.RTNLGRP_LINK,
  'ipv4-addr': C.RTNLGRP_IPV4_IFADDR,
  'ipv6-addr': C.RTNLGRP_IPV6_IFADDR,
};

export interface MonitorOptions {
  /** Which notifications (default all three). */
  groups?: readonly MonitorGroup[];
  /** Namespace to watch (fd); default the caller's. */
  netnsFd?: number;
  /** Events buffered for the async iterator before it reports 'overrun' (default 10000). */
  maxQueue?: number;
  /** The syscalls (default the native addon); tests pass a scripted kernel. */
  sys?: NetlinkSys;
}

/**
 * A running monitor. Use `for await (const ev of monitor)` or `monitor.on('event', fn)`; call
 * close() when done. An idle monitor does not keep the process alive unless an iterator is waiting
 * on it or ref() was called.
 */
export class RtnlMonitor extends EventEmitter<{ event: [RtnlEvent]; close: [] }> implements AsyncIterable<RtnlEvent> {
  private readonly socket: NetlinkSocket;
  private readonly queue: RtnlEvent[] = [];
  private readonly maxQueue: number;
  private waiter: ((r: IteratorResult<RtnlEvent>) => void) | undefined;
  private closed = false;
  private pinned = false;

  constructor(opts: MonitorOptions = {}) {
    super();
    const groups = (opts.groups ?? ['link', 'ipv4-addr', 'ipv6-addr']).map((g) => {
      const n = GROUPS[g];
      if (n === undefined || !Object.hasOwn(GROUPS, g)) {
        throw new NetlinkEncodeError(`unknown monitor group "${String(g)}" (allowed: ${Object.keys(GROUPS).join(', ')})`);
      }
      return n;
    });
    this.maxQueue = opts.maxQueue ?? 10_000;
    const sockOpts: NetlinkSocketOptions = {
      groups,
      onNotification: (m: RtnlMessage) => this.onMessage(m),
      onOverrun: () => this.push({ type: 'overrun' }),
    };
    if (opts.netnsFd !== undefined) sockOpts.netnsFd = opts.netnsFd;
    if (opts.sys !== undefined) sockOpts.sys = opts.sys;
    this.socket = NetlinkSocket.open(sockOpts);
  }

  /** Keeps the process alive while the monitor is open (for event-emitter users). */
  ref(): this {
    this.pinned = true;
    this.socket.setKeepAlive(true);
    return this;
  }

  unref(): this {
    this.pinned = false;
    this.socket.setKeepAlive(this.waiter !== undefined);
    return this;
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /** Stops the monitor; a waiting iterator finishes. Idempotent. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.socket.close();
    this.queue.length = 0;
    const w = this.waiter;
    this.waiter = undefined;
    w?.({ value: undefined, done: true });
    this.emit('close');
  }

  [Symbol.asyncIterator](): AsyncIterator<RtnlEvent> {
    return {
      next: () => this.next(),
      return: () => {
        this.close();
        return Promise.resolve({ value: undefined, done: true });
      },
    };
  }

  /** The next event (buffered since the monitor opened), or done once closed. */
  next(): Promise<IteratorResult<RtnlEvent>> {
    const ev = this.queue.shift();
    if (ev) return Promise.resolve({ value: ev, done: false });
    if (this.closed) return Promise.resolve({ value: undefined, done: true });
    if (this.waiter) return Promise.reject(new Error('RtnlMonitor.next() called again before the previous call resolved'));
    return new Promise((resolve) => {
      this.waiter = resolve;
      this.socket.setKeepAlive(true);
    });
  }

  private onMessage(m: RtnlMessage): void {
    if (m.kind === 'link') {
      if (m.nl.type === C.RTM_NEWLINK) this.push({ type: 'newlink', link: toLink(m) });
      else if (m.nl.type === C.RTM_DELLINK) this.push({ type: 'dellink', link: toLink(m) });
    } else if (m.kind === 'addr') {
      if (m.nl.type === C.RTM_NEWADDR) this.push({ type: 'newaddr', address: toAddress(m) });
      else if (m.nl.type === C.RTM_DELADDR) this.push({ type: 'deladdr', address: toAddress(m) });
    }
  }

  private push(ev: RtnlEvent): void {
    if (this.closed) return;
    this.emit('event', ev);
    const w = this.waiter;
    if (w) {
      this.waiter = undefined;
      this.socket.setKeepAlive(this.pinned);
      w({ value: ev, done: false });
      return;
    }
    if (this.queue.length >= this.maxQueue) {
      // Nobody is reading: forget the backlog and say so once, instead of growing without bound.
      this.queue.length = 0;
      this.queue.push({ type: 'overrun' });
      return;
    }
    this.queue.push(ev);
  }
}
