// A NETLINK_ROUTE socket bound to one network namespace: request/ACK with sequence and port-id checks,
// dumps (multi-part, NLM_F_DUMP_INTR retried a bounded number of times), pipelining, and multicast
// notifications for monitors. Reading is driven by FdWatcher (uv_poll), so no thread ever blocks.
//
// The kernel runs each rtnetlink request inside sendmsg() and queues its ACK on our socket before
// sendmsg() returns, and netlink_rcv_skb() processes every message of a datagram in order. So
// pipelining is: coalesce the requests issued in one tick into one datagram, keep at most `window` of
// them unanswered (each queued ACK takes receive-buffer space; an overflowing buffer drops ACKs and
// reports ENOBUFS), and match replies by sequence number. The kernel runs one dump per socket at a
// time (another gets EBUSY), so dumps wait for each other. As in vishvananda/netlink's executeIter and
// containernetworking's netlinksafe, replies from a wrong port id are ignored and an interrupted dump is
// retried, then reported.
import { logger } from '../../log.js';
import { POLL_ERROR, POLL_READABLE, POLL_WRITABLE, SysError, sys as nativeSys, type FdWatcher, type NativeAddon } from '../../native.js';
import * as C from './constants.js';
import { type RtnlMessage, decodeMessages, encodeMessageInto } from './codec.js';
import { NetlinkClosedError, NetlinkError, type ExtAck } from './errors.js';
import type { ExtAckAttrs } from './policy.js';
import { Writer } from './wire.js';

const log = logger('netlink');

export interface NetlinkSocketOptions {
  /** Open the socket inside this network namespace (an fd); default: the caller's namespace. */
  netnsFd?: number;
  /** Multicast groups to join (RTNLGRP_*), for monitors. */
  groups?: readonly number[];
  /** Called with every multicast notification (messages that answer no request of ours). */
  onNotification?: (msg: RtnlMessage) => void;
  /** Called when the kernel dropped notifications because we did not read fast enough (ENOBUFS). */
  onOverrun?: () => void;
  /** Most requests sent but not yet answered (default 512, fewer if the receive buffer is small). */
  window?: number;
  /** Receive buffer size in bytes (default 8 MiB; forced past rmem_max when root). */
  rcvbuf?: number;
  /** The syscalls to use; default the native addon. Tests pass a scripted kernel. */
  sys?: NetlinkSys;
}

/** The part of the native addon a netlink socket uses. */
export type NetlinkSys = Pick<NativeAddon, 'socket' | 'setsockoptInt' | 'getsockoptInt' | 'bind' | 'getsockname' | 'sendto' | 'recv' | 'close' | 'FdWatcher'>;

/** Retries of a dump the kernel marked NLM_F_DUMP_INTR (its contents changed while we read it). */
export const DUMP_INTR_RETRIES = 5;

/** Receive-buffer space one queued ACK takes, generously (an skb's truesize for a small message). */
const ACK_TRUESIZE = 1024;
/** Largest datagram we send; requests issued together are packed up to this size. */
const MAX_DATAGRAM = 32 * 1024;
/** Receive buffer: the kernel sends dumps in chunks of at most 32 KiB (netlink_dump). */
const RECV_BUF = 256 * 1024;
/**
 * One receive buffer for every socket of the process: a datagram is copied out of it before
 * anything else runs (readAvailable), and a launcher opens several sockets on its start-up path.
 */
let sharedRecvBuf: Uint8Array | undefined;

interface Pending {
  seq: number;
  dump: boolean;
  what: string;
  msg: RtnlMessage;
  replies: RtnlMessage[];
  interrupted: boolean;
  attempts: number;
  resolve: (msgs: RtnlMessage[]) => void;
  reject: (err: unknown) => void;
}

/** A NETLINK_ROUTE socket. Create with NetlinkSocket.open(); close() when done. */
export class NetlinkSocket {
  readonly fd: number;
  /** The port id the kernel assigned (nl_pid of our sockaddr_nl). */
  readonly portId: number;
  private readonly sys: NetlinkSys;
  private readonly watcher: FdWatcher;
  private readonly window: number;
  private readonly pending = new Map<number, Pending>();
  private readonly outbox: Pending[] = [];
  private readonly writer = new Writer(MAX_DATAGRAM + 4096);
  private readonly recvBuf = (sharedRecvBuf ??= new Uint8Array(RECV_BUF));
  private readonly onNotification: ((msg: RtnlMessage) => void) | undefined;
  private readonly onOverrun: (() => void) | undefined;
  private nextSeq = 1;
  private inFlight = 0;
  /** The kernel runs one dump per socket at a time (a second gets EBUSY): dumps queue behind it. */
  private dumpInFlight = false;
  private flushScheduled = false;
  private waitingWritable = false;
  private keepAlive = false;
  private referenced = true;
  private closed = false;

  private constructor(sys: NetlinkSys, fd: number, portId: number, rcvbuf: number, opts: NetlinkSocketOptions) {
    this.sys = sys;
    this.fd = fd;
    this.portId = portId;
    // Every unanswered request will have its ACK queued on our socket: they must all fit, or the
    // kernel drops some (ENOBUFS). Without root the buffer stays at rmem_max.
    this.window = Math.max(1, Math.min(opts.window ?? 512, Math.floor(rcvbuf / ACK_TRUESIZE)));
    this.onNotification = opts.onNotification;
    this.onOverrun = opts.onOverrun;
    this.watcher = new sys.FdWatcher(fd, POLL_READABLE, (events) => this.onPoll(events));
    this.updateRef();
  }

  /** Opens a NETLINK_ROUTE socket (in `netnsFd`'s namespace when given), with extended ACKs and strict checks. */
  static open(opts: NetlinkSocketOptions = {}): NetlinkSocket {
    const s = opts.sys ?? nativeSys();
    const fd = s.socket(C.AF_NETLINK, C.SOCK_RAW, C.NETLINK_ROUTE, opts.netnsFd);
    try {
      const rcvbuf = opts.rcvbuf ?? 8 * 1024 * 1024;
      try {
        s.setsockoptInt(fd, C.SOL_SOCKET, C.SO_RCVBUFFORCE, rcvbuf);
      } catch {
        s.setsockoptInt(fd, C.SOL_SOCKET, C.SO_RCVBUF, rcvbuf);
      }
      s.setsockoptInt(fd, C.SOL_SOCKET, C.SO_SNDBUF, MAX_DATAGRAM * 4);
      // The kernel's explanation with every error, and no copy of our request in it (we keep our own).
      s.setsockoptInt(fd, C.SOL_NETLINK, C.NETLINK_EXT_ACK, 1);
      s.setsockoptInt(fd, C.SOL_NETLINK, C.NETLINK_CAP_ACK, 1);
      // Reject malformed dump requests instead of silently ignoring their filters.
      s.setsockoptInt(fd, C.SOL_NETLINK, C.NETLINK_GET_STRICT_CHK, 1);
      const addr = new Uint8Array(12);
      new DataView(addr.buffer).setUint16(0, C.AF_NETLINK, true);
      s.bind(fd, addr);
      for (const g of opts.groups ?? []) s.setsockoptInt(fd, C.SOL_NETLINK, C.NETLINK_ADD_MEMBERSHIP, g);
      const name = s.getsockname(fd);
      const portId = new DataView(name.buffer, name.byteOffset, name.byteLength).getUint32(4, true);
      return new NetlinkSocket(s, fd, portId, s.getsockoptInt(fd, C.SOL_SOCKET, C.SO_RCVBUF), opts);
    } catch (err) {
      s.close(fd);
      throw err;
    }
  }

  /**
   * Sends a request and resolves with the messages it produced before its ACK (an NLM_F_ECHO
   * reply, a GETLINK answer), or rejects with a NetlinkError. NLM_F_REQUEST and NLM_F_ACK are
   * added. `what` names the request in errors ("create veth link \"ve-foo\"").
   */
  request(msg: RtnlMessage, what?: string): Promise<RtnlMessage[]> {
    msg.nl.flags |= C.NLM_F_REQUEST | C.NLM_F_ACK;
    return this.enqueue(msg, false, what ?? describeRequest(msg));
  }

  /** Sends a dump request (NLM_F_DUMP added) and resolves with every message of the complete dump. */
  dump(msg: RtnlMessage, what?: string): Promise<RtnlMessage[]> {
    msg.nl.flags |= C.NLM_F_REQUEST | C.NLM_F_DUMP;
    return this.enqueue(msg, true, what ?? describeRequest(msg));
  }

  /** Keeps the process alive even when nothing is outstanding (a monitor someone waits on). */
  setKeepAlive(on: boolean): void {
    this.keepAlive = on;
    this.updateRef();
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /** Closes the socket; outstanding requests fail with NL_CLOSED. Idempotent. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.watcher.stop();
    this.sys.close(this.fd);
    const err = new NetlinkClosedError('the netlink socket was closed before the kernel answered');
    for (const p of [...this.pending.values(), ...this.outbox]) p.reject(err);
    this.pending.clear();
    this.outbox.length = 0;
  }

  private enqueue(msg: RtnlMessage, dump: boolean, what: string): Promise<RtnlMessage[]> {
    if (this.closed) return Promise.reject(new NetlinkClosedError(`cannot ${what}: the netlink socket is closed`));
    return new Promise((resolve, reject) => {
      this.outbox.push({ seq: 0, dump, what, msg, replies: [], interrupted: false, attempts: 1, resolve, reject });
      this.scheduleFlush();
    });
  }

  private scheduleFlush(): void {
    this.updateRef();
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    // A microtask: requests issued in the same synchronous run (Promise.all over a map) share datagrams.
    queueMicrotask(() => {
      this.flushScheduled = false;
      this.flush();
    });
  }

  private flush(): void {
    if (this.closed || this.waitingWritable) return;
    while (this.outbox.length && this.inFlight < this.window) {
      const w = this.writer;
      w.reset();
      const batch: Pending[] = [];
      let dumpInBatch = false;
      while (this.outbox.length && this.inFlight + batch.length < this.window && w.length < MAX_DATAGRAM) {
        const p = this.outbox[0] as Pending;
        // Keep order: a dump waits (and what follows it) while another dump is running.
        if (p.dump && (this.dumpInFlight || dumpInBatch)) break;
        const mark = w.length;
        p.seq = this.takeSeq();
        p.msg.nl.seq = p.seq;
        p.msg.nl.pid = 0;
        try {
          encodeMessageInto(w, p.msg);
        } catch (err) {
          // Unencodable: fail this request alone; the datagram so far stays intact.
          w.truncate(mark);
          this.outbox.shift();
          p.reject(err);
          continue;
        }
        if (w.length > MAX_DATAGRAM && batch.length > 0) {
          w.truncate(mark); // does not fit: next datagram
          break;
        }
        this.outbox.shift();
        batch.push(p);
        if (p.dump) dumpInBatch = true;
      }
      if (!batch.length) break;
      for (const p of batch) this.pending.set(p.seq, p);
      this.inFlight += batch.length;
      if (dumpInBatch) this.dumpInFlight = true;
      try {
        this.sys.sendto(this.fd, w.peek());
      } catch (err) {
        for (const p of batch) this.pending.delete(p.seq);
        this.inFlight -= batch.length;
        if (dumpInBatch) this.dumpInFlight = false;
        if (err instanceof SysError && (err.code === 'EAGAIN' || err.code === 'ENOBUFS')) {
          // Put them back and wait until the socket can take more.
          this.outbox.unshift(...batch);
          this.waitingWritable = true;
          this.watcher.setEvents(POLL_READABLE | POLL_WRITABLE);
          return;
        }
        for (const p of batch) p.reject(err);
        continue;
      }
      // The kernel answered inside sendto(): read the answers now rather than after a trip through
      // the event loop, which frees the window at once and never yields the CPU mid-batch.
      this.readAvailable();
    }
    this.updateRef();
  }

  private takeSeq(): number {
    let seq = this.nextSeq;
    // Skip 0 (notifications carry it) and any number still outstanding after a wrap.
    while (seq === 0 || this.pending.has(seq)) seq = (seq + 1) >>> 0;
    this.nextSeq = (seq + 1) >>> 0;
    return seq;
  }

  private onPoll(events: number): void {
    if (this.closed) return;
    if (events & POLL_ERROR) {
      this.failAll(new NetlinkClosedError('polling the netlink socket failed'));
      return;
    }
    if (events & POLL_WRITABLE && this.waitingWritable) {
      this.waitingWritable = false;
      this.watcher.setEvents(POLL_READABLE);
      this.flush();
    }
    if (events & POLL_READABLE) this.drain();
  }

  private drain(): void {
    this.readAvailable();
    if (this.outbox.length) this.flush();
    this.updateRef();
  }

  /** Reads and dispatches every datagram waiting on the socket, without blocking. */
  private readAvailable(): void {
    const s = this.sys;
    for (;;) {
      let n: number;
      try {
        n = s.recv(this.fd, this.recvBuf, C.MSG_TRUNC);
      } catch (err) {
        if (err instanceof SysError && err.code === 'ENOBUFS') {
          this.overrun();
          continue;
        }
        this.failAll(err);
        return;
      }
      if (n < 0 || this.closed) break;
      if (n > this.recvBuf.length) {
        this.failAll(new NetlinkError(105 /* ENOBUFS */, `read a ${n}-byte netlink reply (larger than the ${this.recvBuf.length}-byte buffer)`));
        continue;
      }
      let msgs: RtnlMessage[];
      try {
        // One copy per datagram; raw attributes then point into it instead of being copied one by one.
        msgs = decodeMessages(this.recvBuf.slice(0, n), { share: true });
      } catch (err) {
        log.warn('dropped an undecodable netlink datagram', { bytes: n, error: (err as Error).message });
        continue;
      }
      for (const m of msgs) this.dispatch(m);
    }
  }

  private overrun(): void {
    if (this.pending.size) {
      // ACKs may have been dropped with the overflow: nothing outstanding can be trusted to complete.
      this.failAll(new NetlinkError(105 /* ENOBUFS */, 'read netlink replies: the receive buffer overflowed'));
    }
    this.onOverrun?.();
  }

  private dispatch(m: RtnlMessage): void {
    const p = m.nl.seq !== 0 ? this.pending.get(m.nl.seq) : undefined;
    if (!p || m.nl.pid !== this.portId) {
      if (this.onNotification) this.onNotification(m);
      else log.debug('ignored a netlink message that answers no request', { type: m.nl.type, seq: m.nl.seq, pid: m.nl.pid });
      return;
    }
    if (m.kind === 'error') {
      this.settle(p);
      if (m.error === 0) p.resolve(p.replies);
      else p.reject(new NetlinkError(-m.error, p.what, extAckOf(m.extack)));
      return;
    }
    if (p.dump && m.kind === 'done') {
      if (m.error < 0) {
        this.settle(p);
        p.reject(new NetlinkError(-m.error, p.what, extAckOf(m.extack)));
      } else if (p.interrupted || m.nl.flags & C.NLM_F_DUMP_INTR) {
        this.settle(p);
        this.retryDump(p);
      } else {
        this.settle(p);
        p.resolve(p.replies);
      }
      return;
    }
    if (m.nl.flags & C.NLM_F_DUMP_INTR) p.interrupted = true;
    p.replies.push(m);
  }

  private settle(p: Pending): void {
    this.pending.delete(p.seq);
    this.inFlight--;
    if (p.dump) {
      this.dumpInFlight = false;
      if (this.outbox.length) this.scheduleFlush();
    }
  }

  private retryDump(p: Pending): void {
    if (p.attempts > DUMP_INTR_RETRIES) {
      p.reject(new NetlinkError(4 /* EINTR */, `${p.what} (the dump was interrupted by concurrent changes ${p.attempts} times)`));
      return;
    }
    log.debug('netlink dump interrupted; retrying', { what: p.what, attempt: p.attempts });
    this.outbox.push({ ...p, seq: 0, replies: [], interrupted: false, attempts: p.attempts + 1 });
    this.scheduleFlush();
  }

  private failAll(err: unknown): void {
    const all = [...this.pending.values()];
    this.pending.clear();
    this.inFlight = 0;
    this.dumpInFlight = false;
    for (const p of all) p.reject(err);
  }

  private updateRef(): void {
    if (this.closed) return;
    const want = this.keepAlive || this.pending.size > 0 || this.outbox.length > 0;
    if (want === this.referenced) return;
    this.referenced = want;
    if (want) this.watcher.ref();
    else this.watcher.unref();
  }
}

function extAckOf(a: ExtAckAttrs | undefined): ExtAck | undefined {
  if (!a) return undefined;
  const out: ExtAck = {};
  if (a.msg !== undefined) out.msg = a.msg;
  if (a.offset !== undefined) out.offset = a.offset;
  if (a.missType !== undefined) out.missType = a.missType;
  if (a.missNest !== undefined) out.missNest = a.missNest;
  if (a.cookie !== undefined) out.cookie = a.cookie;
  if (a.policy !== undefined) out.policy = a.policy;
  return out;
}

const TYPE_NAMES: Record<number, string> = {
  [C.RTM_NEWLINK]: 'RTM_NEWLINK', [C.RTM_DELLINK]: 'RTM_DELLINK', [C.RTM_GETLINK]: 'RTM_GETLINK', [C.RTM_SETLINK]: 'RTM_SETLINK',
  [C.RTM_NEWADDR]: 'RTM_NEWADDR', [C.RTM_DELADDR]: 'RTM_DELADDR', [C.RTM_GETADDR]: 'RTM_GETADDR',
  [C.RTM_NEWROUTE]: 'RTM_NEWROUTE', [C.RTM_DELROUTE]: 'RTM_DELROUTE', [C.RTM_GETROUTE]: 'RTM_GETROUTE',
  [C.RTM_NEWLINKPROP]: 'RTM_NEWLINKPROP', [C.RTM_DELLINKPROP]: 'RTM_DELLINKPROP',
};

/** A readable name for a request, used when the caller gives none: `RTM_NEWLINK veth "ve-foo"`. */
export function describeRequest(msg: RtnlMessage): string {
  const type = TYPE_NAMES[msg.nl.type] ?? `message type ${msg.nl.type}`;
  switch (msg.kind) {
    case 'link': {
      const name = msg.attrs.ifname ?? msg.attrs.altIfname;
      const target = name !== undefined ? `"${name}"` : msg.header.index ? `ifindex ${msg.header.index}` : '';
      return [`send ${type}`, msg.attrs.linkinfo?.kind, target].filter(Boolean).join(' ');
    }
    case 'addr':
      return `send ${type} ${msg.attrs.local ?? msg.attrs.address ?? ''}${msg.header.prefixlen ? `/${msg.header.prefixlen}` : ''}`.trim();
    case 'route':
      return `send ${type} ${msg.attrs.dst ? `${msg.attrs.dst}/${msg.header.dstLen}` : 'default'}`;
    default:
      return `send ${type}`;
  }
}
