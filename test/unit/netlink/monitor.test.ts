// RtnlMonitor against a scripted kernel: notifications become typed events, for await and 'event'
// listeners alike; a slow reader gets 'overrun' instead of unbounded memory; close() ends iteration;
// the process is kept alive only while an iterator waits.
import { describe, expect, test } from 'vitest';
import * as C from '../../../src/net/netlink/constants.js';
import type { RtnlMessage } from '../../../src/net/netlink/codec.js';
import { type RtnlEvent, RtnlMonitor } from '../../../src/net/monitor.js';
import { FakeKernel } from './fake-kernel.js';

const tick = (): Promise<void> => new Promise((r) => setImmediate(r));

function linkMsg(type: number, index: number, name: string): RtnlMessage {
  return { kind: 'link', nl: { type, flags: 0, seq: 0, pid: 0 }, header: { family: 0, type: C.ARPHRD_ETHER, index, flags: C.IFF_UP, change: 0 }, attrs: { ifname: name, linkinfo: { kind: 'veth' } } };
}

function addrMsg(type: number, index: number, local: string, prefixlen: number): RtnlMessage {
  return { kind: 'addr', nl: { type, flags: 0, seq: 0, pid: 0 }, header: { family: local.includes(':') ? C.AF_INET6 : C.AF_INET, prefixlen, flags: 0, scope: 0, index }, attrs: { local, address: local } };
}

function brief(ev: RtnlEvent): string {
  if (ev.type === 'newlink' || ev.type === 'dellink') return `${ev.type} ${ev.link.name} ${ev.link.kind ?? ''}`.trim();
  if (ev.type === 'newaddr' || ev.type === 'deladdr') return `${ev.type} ${ev.address.cidr} on ${ev.address.index}`;
  return ev.type;
}

describe('RtnlMonitor', () => {
  test('joins the groups asked for and turns notifications into typed events, in order', async () => {
    const kernel = new FakeKernel(() => []);
    const mon = new RtnlMonitor({ sys: kernel });
    expect(kernel.sockopts.filter(([level, name]) => level === C.SOL_NETLINK && name === C.NETLINK_ADD_MEMBERSHIP).map(([, , g]) => g))
      .toEqual([C.RTNLGRP_LINK, C.RTNLGRP_IPV4_IFADDR, C.RTNLGRP_IPV6_IFADDR]);
    kernel.notify([linkMsg(C.RTM_NEWLINK, 5, 've-a'), addrMsg(C.RTM_NEWADDR, 5, '192.0.2.1', 24)]);
    kernel.notify([addrMsg(C.RTM_DELADDR, 5, '2001:db8::1', 64), linkMsg(C.RTM_DELLINK, 5, 've-a')]);
    // a route message is not a monitored event
    kernel.notify([{ kind: 'route', nl: { type: C.RTM_NEWROUTE, flags: 0, seq: 0, pid: 0 }, header: { family: 2, dstLen: 0, srcLen: 0, tos: 0, table: 254, protocol: 3, scope: 0, type: 1, flags: 0 }, attrs: {} }]);
    const seen: string[] = [];
    for await (const ev of mon) {
      seen.push(brief(ev));
      if (seen.length === 4) break; // break closes the monitor
    }
    expect(seen).toEqual(['newlink ve-a veth', 'newaddr 192.0.2.1/24 on 5', 'deladdr 2001:db8::1/64 on 5', 'dellink ve-a veth']);
    expect(mon.isClosed).toBe(true);
    expect(kernel.closed).toBe(true);
  });

  test('an event emitter too; only the groups asked for are joined', async () => {
    const kernel = new FakeKernel(() => []);
    const mon = new RtnlMonitor({ sys: kernel, groups: ['ipv6-addr'] });
    expect(kernel.sockopts.filter(([, name]) => name === C.NETLINK_ADD_MEMBERSHIP).map(([, , g]) => g)).toEqual([C.RTNLGRP_IPV6_IFADDR]);
    const seen: string[] = [];
    mon.on('event', (ev) => seen.push(brief(ev)));
    kernel.notify([addrMsg(C.RTM_NEWADDR, 2, '2001:db8::5', 64)]);
    await tick();
    await tick();
    expect(seen).toEqual(['newaddr 2001:db8::5/64 on 2']);
    mon.close();
    expect(() => new RtnlMonitor({ sys: kernel, groups: ['routes' as 'link'] })).toThrow(/unknown monitor group "routes" \(allowed: link, ipv4-addr, ipv6-addr\)/);
  });

  test('a reader that falls behind gets one overrun instead of an unbounded queue', async () => {
    const kernel = new FakeKernel(() => []);
    const mon = new RtnlMonitor({ sys: kernel, maxQueue: 3 });
    kernel.notify([1, 2, 3, 4, 5].map((i) => linkMsg(C.RTM_NEWLINK, i, `l${i}`)));
    await tick();
    await tick();
    kernel.notify([linkMsg(C.RTM_NEWLINK, 9, 'l9')]);
    await tick();
    await tick();
    const got: string[] = [];
    for (let i = 0; i < 3; i++) got.push(brief((await mon.next()).value as RtnlEvent));
    // l1..l3 filled the queue; l4 found it full: dropped with them, one overrun in their place
    expect(got).toEqual(['overrun', 'newlink l5 veth', 'newlink l9 veth']);
    mon.close();
  });

  test('the kernel dropping notifications (ENOBUFS) is an overrun event', async () => {
    const kernel = new FakeKernel(() => []);
    const mon = new RtnlMonitor({ sys: kernel });
    const next = mon.next();
    kernel.overflow();
    expect((await next).value).toEqual({ type: 'overrun' });
    mon.close();
  });

  test('keeps the process alive only while an iterator waits, and close() ends the wait', async () => {
    const kernel = new FakeKernel(() => []);
    const mon = new RtnlMonitor({ sys: kernel });
    expect(kernel.referenced).toBe(false);
    const waiting = mon.next();
    expect(kernel.referenced).toBe(true);
    await expect(mon.next()).rejects.toThrow(/called again before the previous call resolved/);
    kernel.notify([linkMsg(C.RTM_NEWLINK, 3, 'x')]);
    expect(brief((await waiting).value as RtnlEvent)).toBe('newlink x veth');
    expect(kernel.referenced).toBe(false);
    mon.ref();
    expect(kernel.referenced).toBe(true);
    mon.unref();
    expect(kernel.referenced).toBe(false);
    const pending = mon.next();
    mon.close();
    expect(await pending).toEqual({ value: undefined, done: true });
    expect(await mon.next()).toEqual({ value: undefined, done: true });
  });
});
