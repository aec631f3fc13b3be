// A scripted NETLINK_ROUTE kernel implementing the syscalls NetlinkSocket uses (NetlinkSys), so the
// socket's sequencing, dump, retry, overrun and pipelining logic can be tested without a kernel.
// `answer` decides the reply datagrams for each request message; like the real kernel, replies are
// queued during sendto() and readiness is signalled through the event loop.
import { POLL_READABLE, SysError, type FdWatcher } from '../../../src/native.js';
import * as C from '../../../src/net/netlink/constants.js';
import { type RtnlMessage, decodeMessages, encodeMessages } from '../../../src/net/netlink/codec.js';
import type { NetlinkSys } from '../../../src/net/netlink/socket.js';

export const PORT_ID = 4242;

export type Reply = RtnlMessage[] | 'ENOBUFS';

export class FakeKernel implements NetlinkSys {
  /** Every datagram the socket sent, decoded. */
  readonly datagrams: RtnlMessage[][] = [];
  readonly sockopts: Array<[number, number, number]> = [];
  /** Requests sent whose replies have not been read yet; its peak is the pipelining depth. */
  outstanding = 0;
  peakOutstanding = 0;
  referenced = true;
  closed = false;
  /** Like the kernel: one dump per socket at a time; another dump meanwhile gets EBUSY. */
  dumpRunning = false;
  private readonly queue: Array<{ data: Uint8Array; requests: number; endsDump?: boolean } | 'ENOBUFS'> = [];
  private callback: ((events: number) => void) | undefined;
  private signalled = false;

  constructor(private readonly answer: (req: RtnlMessage, kernel: FakeKernel) => Reply[]) {}

  /** Queues an unsolicited datagram (a multicast notification). */
  notify(msgs: RtnlMessage[]): void {
    this.queue.push({ data: encodeMessages(msgs), requests: 0 });
    this.signal();
  }

  /** The socket's receive buffer overflowed: the next read fails with ENOBUFS. */
  overflow(): void {
    this.queue.push('ENOBUFS');
    this.signal();
  }

  socket(): number {
    return 77;
  }
  setsockoptInt(_fd: number, level: number, name: number, value: number): void {
    this.sockopts.push([level, name, value]);
  }
  /** SO_RCVBUF as the kernel reports it (twice what was set), or `rcvbuf` when a test sets it. */
  rcvbuf: number | undefined;
  getsockoptInt(_fd: number, level: number, name: number): number {
    if (level === C.SOL_SOCKET && name === C.SO_RCVBUF) return this.rcvbuf ?? 16 << 20;
    return 0;
  }
  bind(): void {}
  getsockname(): Uint8Array {
    const b = new Uint8Array(12);
    new DataView(b.buffer).setUint16(0, C.AF_NETLINK, true);
    new DataView(b.buffer).setUint32(4, PORT_ID, true);
    return b;
  }
  sendto(_fd: number, data: Uint8Array): number {
    const msgs = decodeMessages(data);
    this.datagrams.push(msgs);
    this.outstanding += msgs.length;
    this.peakOutstanding = Math.max(this.peakOutstanding, this.outstanding);
    for (const m of msgs) {
      const dump = (m.nl.flags & C.NLM_F_DUMP) === C.NLM_F_DUMP;
      if (dump && this.dumpRunning) {
        this.queue.push({ data: encodeMessages([ack(m, -16)]), requests: 1 });
        continue;
      }
      const replies = this.answer(m, this);
      if (dump && replies.length) this.dumpRunning = true;
      replies.forEach((r, i) => {
        // the last datagram of a reply completes the request
        const last = i === replies.length - 1;
        this.queue.push(r === 'ENOBUFS' ? r : { data: encodeMessages(r), requests: last ? 1 : 0, endsDump: dump && last });
      });
      if (!replies.length) this.outstanding--;
    }
    this.signal();
    return data.length;
  }
  recv(_fd: number, buf: Uint8Array): number {
    const next = this.queue.shift();
    if (next === undefined) return -1;
    if (next === 'ENOBUFS') throw new SysError(105, 'ENOBUFS', 'recvfrom', 'recvfrom: No buffer space available (ENOBUFS)');
    buf.set(next.data);
    this.outstanding -= next.requests;
    if (next.endsDump) this.dumpRunning = false;
    return next.data.length;
  }
  close(): void {
    this.closed = true;
  }

  readonly FdWatcher = ((kernel: FakeKernel) => class implements FdWatcher {
    constructor(_fd: number, _events: number, cb: (events: number) => void) {
      kernel.callback = cb;
    }
    stop(): void {
      kernel.callback = undefined;
    }
    ref(): void {
      kernel.referenced = true;
    }
    unref(): void {
      kernel.referenced = false;
    }
    setEvents(): void {}
  })(this);

  private signal(): void {
    if (this.signalled) return;
    this.signalled = true;
    setImmediate(() => {
      this.signalled = false;
      if (this.queue.length) this.callback?.(POLL_READABLE);
    });
  }
}

/** The kernel's ACK (or error) for a request. */
export function ack(req: RtnlMessage, error = 0, extackMsg?: string): RtnlMessage {
  return {
    kind: 'error',
    nl: { type: C.NLMSG_ERROR, flags: C.NLM_F_CAPPED | (extackMsg ? C.NLM_F_ACK_TLVS : 0), seq: req.nl.seq, pid: PORT_ID },
    error,
    request: { ...req.nl, len: 32 },
    requestPayload: new Uint8Array(0),
    ...(extackMsg ? { extack: { msg: extackMsg } } : {}),
  };
}

/** One RTM_NEWLINK of a dump. */
export function dumpedLink(req: RtnlMessage, index: number, flags = C.NLM_F_MULTI): RtnlMessage {
  return {
    kind: 'link', nl: { type: C.RTM_NEWLINK, flags, seq: req.nl.seq, pid: PORT_ID },
    header: { family: 0, type: C.ARPHRD_ETHER, index, flags: 0, change: 0 }, attrs: { ifname: `l${index}` },
  };
}

export function done(req: RtnlMessage, error = 0): RtnlMessage {
  return { kind: 'done', nl: { type: C.NLMSG_DONE, flags: C.NLM_F_MULTI, seq: req.nl.seq, pid: PORT_ID }, error };
}
