// The monitor streams link and address events of one namespace — ours and other processes' changes —
// and an idle client never keeps the process alive.
import { describe, expect } from 'vitest';
import { ktest } from '../helpers/kernel.js';
import { run } from '../helpers/exec.js';
import { type RtnlEvent, type RtnlMonitor, Rtnl } from '../../src/net/rtnl.js';

/** Collects events until `done` says stop (or the deadline passes). */
async function collect(mon: RtnlMonitor, done: (seen: RtnlEvent[]) => boolean, timeoutMs = 5000): Promise<RtnlEvent[]> {
  const seen: RtnlEvent[] = [];
  const deadline = setTimeout(() => mon.close(), timeoutMs);
  try {
    for await (const ev of mon) {
      seen.push(ev);
      if (done(seen)) break;
    }
  } finally {
    clearTimeout(deadline);
  }
  return seen;
}

function summary(ev: RtnlEvent): string {
  switch (ev.type) {
    case 'newlink':
    case 'dellink':
      return `${ev.type} ${ev.link.name}`;
    case 'newaddr':
    case 'deladdr':
      return `${ev.type} ${ev.address.cidr}`;
    default:
      return ev.type;
  }
}

describe('monitor', () => {
  ktest('streams link and address events as an async iterable', async ({ netns }) => {
    const r = Rtnl.open({ netnsFd: netns.fd });
    const mon = r.monitor();
    try {
      await r.createVeth({ name: 've-mon', peer: { name: 've-mon-p' } });
      await r.addAddress('ve-mon', '192.0.2.5/24');
      await r.addAddress('ve-mon', '2001:db8::5/64', { nodad: true });
      await r.deleteAddress('ve-mon', '192.0.2.5/24');
      // another process's change is seen too
      await netns.exec('ip', ['link', 'add', 'by-ip', 'type', 'bridge']);
      await r.deleteLink('ve-mon');
      const seen = (await collect(mon, (s) => s.some((e) => e.type === 'dellink' && e.link.name === 've-mon'))).map(summary);
      expect(seen).toEqual(expect.arrayContaining([
        'newlink ve-mon', 'newlink ve-mon-p', 'newaddr 192.0.2.5/24', 'newaddr 2001:db8::5/64', 'deladdr 192.0.2.5/24',
        'newlink by-ip', 'dellink ve-mon',
      ]));
      expect(seen.indexOf('newaddr 192.0.2.5/24')).toBeLessThan(seen.indexOf('deladdr 192.0.2.5/24'));
      // a closed monitor ends iteration
      mon.close();
      expect(await mon.next()).toEqual({ value: undefined, done: true });
    } finally {
      mon.close();
      r.close();
    }
  });

  ktest('as an event emitter, only the groups asked for', async ({ netns }) => {
    const r = Rtnl.open({ netnsFd: netns.fd });
    const mon = r.monitor({ groups: ['ipv4-addr'] });
    const seen: string[] = [];
    mon.on('event', (ev) => seen.push(summary(ev)));
    try {
      await r.createVeth({ name: 've-e', peer: { name: 've-e-p' } });
      await r.addAddress('ve-e', '198.51.100.1/24');
      const deadline = Date.now() + 5000;
      while (!seen.includes('newaddr 198.51.100.1/24') && Date.now() < deadline) await new Promise((res) => setTimeout(res, 10));
      expect(seen).toEqual(['newaddr 198.51.100.1/24']);
    } finally {
      mon.close();
      r.close();
    }
  });

  ktest('a client with nothing outstanding does not keep the process alive', async ({ netns }) => {
    // A child process opens a client and a monitor, does one request, and never closes them.
    const script = `
      import { Rtnl } from ${JSON.stringify(new URL('../../dist/net/rtnl.js', import.meta.url).href)};
      const r = Rtnl.open();
      r.monitor();
      const links = await r.listLinks();
      console.log(links.map((l) => l.name).join(','));
    `;
    const started = Date.now();
    const res = await run('ip', ['netns', 'exec', netns.name, process.execPath, '--input-type=module', '-e', script], { timeoutMs: 15_000 });
    expect(res.signal).toBeNull();
    expect(res.code).toBe(0);
    expect(res.stdout.trim()).toBe('lo');
    expect(Date.now() - started).toBeLessThan(10_000);
  });
});
