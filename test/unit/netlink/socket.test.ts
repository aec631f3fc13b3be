// NetlinkSocket against a scripted kernel: sequence and port-id checks, errors with the extended ACK,
// dumps, NLM_F_DUMP_INTR retries, overruns, pipelining within a window, close, and not keeping the
// process alive when idle. (test/kernel/rtnl*.test.ts run it against the real kernel.)
import { describe, expect, test } from 'vitest';
import { SysError } from '../../../src/native.js';
import * as C from '../../../src/net/netlink/constants.js';
import type { RtnlMessage } from '../../../src/net/netlink/codec.js';
import { NetlinkClosedError, NetlinkError, NetlinkEncodeError } from '../../../src/net/netlink/errors.js';
import { delLinkRequest, dumpLinksRequest, newVethRequest, setLinkRequest } from '../../../src/net/netlink/requests.js';
import { DUMP_INTR_RETRIES, NetlinkSocket } from '../../../src/net/netlink/socket.js';
import { FakeKernel, PORT_ID, ack, done, dumpedLink } from './fake-kernel.js';

function open(kernel: FakeKernel, opts: Parameters<typeof NetlinkSocket.open>[0] = {}): NetlinkSocket {
  return NetlinkSocket.open({ ...opts, sys: kernel });
}

describe('NetlinkSocket', () => {
  test('sets up extended ACKs and strict checking, and asks for an ACK with every request', async () => {
    const kernel = new FakeKernel((req) => [[ack(req)]]);
    const s = open(kernel);
    await s.request(setLinkRequest(3, { up: true }));
    expect(kernel.sockopts).toEqual(expect.arrayContaining([
      [C.SOL_NETLINK, C.NETLINK_EXT_ACK, 1], [C.SOL_NETLINK, C.NETLINK_GET_STRICT_CHK, 1], [C.SOL_NETLINK, C.NETLINK_CAP_ACK, 1],
    ]));
    const sent = kernel.datagrams[0]?.[0] as RtnlMessage;
    expect(sent.nl.flags & (C.NLM_F_REQUEST | C.NLM_F_ACK)).toBe(C.NLM_F_REQUEST | C.NLM_F_ACK);
    expect(s.portId).toBe(PORT_ID);
    s.close();
  });

  test('replies from another port id or with an unknown sequence number are ignored', async () => {
    const kernel = new FakeKernel((req) => [
      [{ ...ack(req, -17), nl: { ...ack(req).nl, pid: PORT_ID + 1 } }], // not for us
      [{ ...ack(req, -17), nl: { ...ack(req).nl, seq: req.nl.seq + 1000 } }], // no such request
      [ack(req)],
    ]);
    const s = open(kernel);
    await expect(s.request(setLinkRequest(3, { up: true }))).resolves.toEqual([]);
    s.close();
  });

  test('an error becomes a NetlinkError with errno, code, the request in words and the kernel\'s text', async () => {
    const kernel = new FakeKernel((req) => [[ack(req, -95, 'Unknown device type')]]);
    const s = open(kernel);
    const err = await s.request(newVethRequest({ name: 've-foo', peer: { name: 'host0' } }), 'create veth link "ve-foo"').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(NetlinkError);
    expect(err).toBeInstanceOf(SysError);
    expect(err).toMatchObject({ errno: 95, code: 'EOPNOTSUPP', request: 'create veth link "ve-foo"', extack: { msg: 'Unknown device type' } });
    expect((err as Error).message).toBe('RTNETLINK: cannot create veth link "ve-foo": Operation not supported (EOPNOTSUPP): Unknown device type');
    // without a description, the request describes itself
    const e2 = await s.request(delLinkRequest('ve-bar')).catch((e: unknown) => e);
    expect((e2 as Error).message).toBe('RTNETLINK: cannot send RTM_DELLINK "ve-bar": Operation not supported (EOPNOTSUPP): Unknown device type');
    s.close();
  });

  test('a dump collects every part up to NLMSG_DONE', async () => {
    const kernel = new FakeKernel((req) => [
      [dumpedLink(req, 1), dumpedLink(req, 2)],
      [dumpedLink(req, 3)],
      [done(req)],
    ]);
    const s = open(kernel);
    const msgs = await s.dump(dumpLinksRequest());
    expect(msgs.map((m) => (m.kind === 'link' ? m.header.index : -1))).toEqual([1, 2, 3]);
    expect((kernel.datagrams[0]?.[0] as RtnlMessage).nl.flags & C.NLM_F_DUMP).toBe(C.NLM_F_DUMP);
    s.close();
  });

  test('concurrent dumps wait for each other (the kernel runs one per socket); other requests do not', async () => {
    const kernel = new FakeKernel((req) => (req.nl.flags & C.NLM_F_DUMP) === C.NLM_F_DUMP
      ? [[dumpedLink(req, req.nl.seq)], [done(req)]]
      : [[ack(req)]]);
    const s = open(kernel);
    const [a, b, c, d] = await Promise.all([
      s.dump(dumpLinksRequest()), s.dump(dumpLinksRequest()), s.request(setLinkRequest(3, { up: true })), s.dump(dumpLinksRequest()),
    ]);
    expect([a, b, d].map((x) => x.length)).toEqual([1, 1, 1]);
    expect(c).toEqual([]);
    // three dumps, each in a datagram of its own, in the order asked
    const dumps = kernel.datagrams.flat().filter((m) => (m.nl.flags & C.NLM_F_DUMP) === C.NLM_F_DUMP);
    expect(dumps).toHaveLength(3);
    s.close();
  });

  test('an interrupted dump (NLM_F_DUMP_INTR) is retried and only the clean attempt is returned', async () => {
    let attempt = 0;
    const kernel = new FakeKernel((req) => {
      attempt++;
      if (attempt < 3) return [[dumpedLink(req, 1), dumpedLink(req, 2, C.NLM_F_MULTI | C.NLM_F_DUMP_INTR)], [done(req)]];
      return [[dumpedLink(req, 7)], [done(req)]];
    });
    const s = open(kernel);
    const msgs = await s.dump(dumpLinksRequest());
    expect(attempt).toBe(3);
    expect(msgs.map((m) => (m.kind === 'link' ? m.header.index : -1))).toEqual([7]);
    // each attempt used a fresh sequence number
    const seqs = kernel.datagrams.map((d) => d[0]?.nl.seq);
    expect(new Set(seqs).size).toBe(3);
    s.close();
  });

  test('a dump interrupted every time fails with EINTR after a bounded number of attempts', async () => {
    let attempts = 0;
    const kernel = new FakeKernel((req) => {
      attempts++;
      return [[dumpedLink(req, 1, C.NLM_F_MULTI | C.NLM_F_DUMP_INTR)], [done(req)]];
    });
    const s = open(kernel);
    const err = await s.dump(dumpLinksRequest(), 'list links').catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'EINTR', errno: 4 });
    expect((err as Error).message).toMatch(/list links \(the dump was interrupted by concurrent changes 6 times\)/);
    expect(attempts).toBe(DUMP_INTR_RETRIES + 1);
    s.close();
  });

  test('a dump that ends with an error in NLMSG_DONE fails', async () => {
    const kernel = new FakeKernel((req) => [[dumpedLink(req, 1)], [done(req, -22)]]);
    const s = open(kernel);
    await expect(s.dump(dumpLinksRequest())).rejects.toMatchObject({ code: 'EINVAL' });
    s.close();
  });

  test('requests issued together are pipelined: packed into few datagrams, never more than `window` outstanding', async () => {
    const kernel = new FakeKernel((req) => [[ack(req)]]);
    const s = open(kernel, { window: 64 });
    const reqs = Array.from({ length: 1000 }, (_, i) => s.request(newVethRequest({ name: `v${i}`, peer: { name: `p${i}` } })));
    await Promise.all(reqs);
    expect(kernel.peakOutstanding).toBeLessThanOrEqual(64);
    expect(kernel.datagrams.length).toBeLessThan(1000 / 30);
    const seqs = kernel.datagrams.flat().map((m) => m.nl.seq);
    expect(new Set(seqs).size).toBe(1000);
    s.close();
  });

  test('the window shrinks to what the receive buffer can hold (no root: no SO_RCVBUFFORCE)', async () => {
    const kernel = new FakeKernel((req) => [[ack(req)]]);
    kernel.rcvbuf = 2 * 212992; // rmem_max, doubled by the kernel
    const s = open(kernel);
    await Promise.all(Array.from({ length: 1000 }, (_, i) => s.request(setLinkRequest(i + 1, { up: true }))));
    expect(kernel.peakOutstanding).toBeLessThanOrEqual(Math.floor(2 * 212992 / 1024));
    expect(kernel.peakOutstanding).toBeGreaterThan(100);
    s.close();
  });

  test('an unencodable request fails alone; the others in its datagram go out', async () => {
    const kernel = new FakeKernel((req) => [[ack(req)]]);
    const s = open(kernel);
    const bad = setLinkRequest(3, { up: true });
    bad.attrs.ifname = 'x'.repeat(20); // longer than IFNAMSIZ: the codec refuses it
    const results = await Promise.allSettled([s.request(setLinkRequest(3, { mtu: 1400 })), s.request(bad), s.request(setLinkRequest(4, { mtu: 1400 }))]);
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
    expect((results[1] as PromiseRejectedResult).reason).toBeInstanceOf(NetlinkEncodeError);
    expect(kernel.datagrams.flat()).toHaveLength(2);
    s.close();
  });

  test('a receive-buffer overrun (ENOBUFS) fails what is outstanding and is reported', async () => {
    let overruns = 0;
    const kernel = new FakeKernel(() => ['ENOBUFS']);
    const s = open(kernel, { onOverrun: () => overruns++ });
    await expect(s.request(setLinkRequest(3, { up: true }))).rejects.toMatchObject({ code: 'ENOBUFS' });
    expect(overruns).toBe(1);
    s.close();
  });

  test('messages that answer no request go to onNotification', async () => {
    const seen: RtnlMessage[] = [];
    const kernel = new FakeKernel(() => []);
    const s = open(kernel, { onNotification: (m) => seen.push(m) });
    const note: RtnlMessage = { kind: 'link', nl: { type: C.RTM_NEWLINK, flags: 0, seq: 0, pid: 0 }, header: { family: 0, type: 1, index: 9, flags: 0, change: 0 }, attrs: { ifname: 've-x' } };
    kernel.notify([note]);
    await new Promise((r) => setImmediate(r));
    await new Promise((r) => setImmediate(r));
    expect(seen).toEqual([note]);
    s.close();
  });

  test('close() fails outstanding requests with NL_CLOSED; later requests fail at once', async () => {
    const kernel = new FakeKernel(() => []); // never answers
    const s = open(kernel);
    const p = s.request(setLinkRequest(3, { up: true }));
    await new Promise((r) => setImmediate(r));
    s.close();
    await expect(p).rejects.toBeInstanceOf(NetlinkClosedError);
    await expect(s.request(setLinkRequest(3, { up: true }))).rejects.toMatchObject({ code: 'NL_CLOSED' });
    expect(kernel.closed).toBe(true);
    s.close(); // idempotent
  });

  test('the watcher keeps the process alive only while something is outstanding', async () => {
    const kernel = new FakeKernel((req) => [[ack(req)]]);
    const s = open(kernel);
    expect(kernel.referenced).toBe(false);
    const p = s.request(setLinkRequest(3, { up: true }));
    expect(kernel.referenced).toBe(true);
    await p;
    expect(kernel.referenced).toBe(false);
    s.setKeepAlive(true);
    expect(kernel.referenced).toBe(true);
    s.setKeepAlive(false);
    expect(kernel.referenced).toBe(false);
    s.close();
  });
});
