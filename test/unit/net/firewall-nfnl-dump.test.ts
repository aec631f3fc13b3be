// The layout and masquerade checks' nf_tables dumps (src/net/firewall/nfnl-dump.ts): the requests
// are the bytes libnftables 1.0.6 sends for `nft list table` / `nft list set` (test/golden/nfnl/,
// captured with strace; libmnl leaves attribute padding uninitialised, ours is zero), and the
// kernel's captured answers decode to what `nft list` shows: chains, sets and maps, rules per
// chain, and the masquerade sets' intervals as subnets with their owners.
import { readFileSync } from 'node:fs';
import { describe, expect, test } from 'vitest';
import {
  chainDumpRequest, chainNames, type DumpAnswer, intervalSubnets, layoutFromListing, NfnlDump, readDumpDatagram, ruleDumpRequest, rulesPerChain,
  setDumpRequest, setElemDumpRequest, setNames,
} from '../../../src/net/firewall/nfnl-dump.js';
import type { NftListing } from '../../../src/net/firewall/nft-json.js';
import { hex, loadGolden, type Golden } from '../netlink/golden.js';

const nfnl = new URL('../../golden/nfnl/', import.meta.url);
const TABLE = 'nspawn-ts';
const NFT = 10 << 8;

/** The message type of a datagram's first message. */
const typeOf = (b: Uint8Array): number => new DataView(b.buffer, b.byteOffset).getUint16(4, true);

/** What nft sent with `type` (the dump, flags NLM_F_DUMP), its attribute padding zeroed. */
function sentDump(g: Golden, type: number): string {
  const b = g.sent.find((s) => typeOf(s) === NFT + type && (new DataView(s.buffer, s.byteOffset).getUint16(6, true) & 0x300) === 0x300);
  if (!b) throw new Error(`${g.command}: no dump of type ${type}`);
  const out = b.slice();
  const v = new DataView(out.buffer);
  for (let at = 20; at + 4 <= out.length;) {
    const len = v.getUint16(at, true);
    out.fill(0, at + len, Math.min(out.length, at + ((len + 3) & ~3)));
    at += (len + 3) & ~3;
  }
  return hex(out);
}

/** The kernel's answer to nft's dump of `type`: the datagrams after that request up to NLMSG_DONE. */
function answerTo(g: Ordered, type: number, name?: string): DumpAnswer {
  const answer: DumpAnswer = { messages: [], done: false, interrupted: false };
  let seen = false;
  for (const [dir, bytes] of g.order) {
    if (dir === '>') {
      const isIt = typeOf(bytes) === NFT + type && (name === undefined || Buffer.from(bytes).includes(Buffer.from(`${name}\0`)));
      if (seen && answer.done) break;
      seen = isIt && (new DataView(bytes.buffer, bytes.byteOffset).getUint16(6, true) & 0x300) === 0x300;
    } else if (seen && !answer.done) {
      readDumpDatagram(bytes, 0, answer);
    }
  }
  if (!answer.done) throw new Error(`${g.command}: no complete answer to type ${type}`);
  return answer;
}

type Ordered = Golden & { order: Array<['>' | '<', Uint8Array]> };

/** The golden with its datagrams in the order they were sent and received. */
function load(name: string): Ordered {
  const g = loadGolden(name, nfnl) as Ordered;
  let s = 0;
  let r = 0;
  g.order = [];
  for (const line of readLines(name)) {
    if (line.startsWith('> ')) g.order.push(['>', g.sent[s++] as Uint8Array]);
    else if (line.startsWith('< ')) g.order.push(['<', g.received[r++] as Uint8Array]);
  }
  return g;
}

function readLines(name: string): string[] {
  return readFileSync(new URL(`${name}.txt`, nfnl), 'utf8').split('\n');
}

describe('nf_tables dumps of our table', () => {
  const table = load('list-table');
  const masq4 = load('list-set-masq4');
  const masq6 = load('list-set-masq6');
  const chains = load('list-chains');

  test('requests: the set, rule and element dumps are the bytes nft sends; the chain dump names our table', () => {
    expect(hex(setDumpRequest(TABLE, 0))).toBe(sentDump(table, 10));
    expect(hex(ruleDumpRequest(TABLE, 0))).toBe(sentDump(table, 7));
    expect(hex(setElemDumpRequest(TABLE, 'masq4', 0))).toBe(sentDump(masq4, 13));
    expect(hex(setElemDumpRequest(TABLE, 'masq6', 0))).toBe(sentDump(masq6, 13));
    // nft dumps every chain (family unspec, no attribute); ours asks for inet and names the table,
    // as `nft list chain` names it (NFTA_CHAIN_TABLE, type 1)
    expect(sentDump(chains, 4)).toBe('14000000' + '040a' + '0103' + '00000000' + '00000000' + '00000000');
    expect(hex(chainDumpRequest(TABLE, 7))).toBe('24000000' + '040a' + '0103' + '07000000' + '00000000' + '01000000' +
      '0e000100' + hex(Buffer.from('nspawn-ts\0')) + '0000');
    // the sequence number is the caller's
    expect(hex(setDumpRequest(TABLE, 0x01020304)).slice(16, 24)).toBe('04030201');
  });

  test('answers: chains, sets and maps (not the rules\' anonymous sets), rules per chain', () => {
    const layout = {
      chains: chainNames(answerTo(chains, 4).messages, TABLE),
      sets: setNames(answerTo(table, 10).messages, TABLE),
      rules: rulesPerChain(answerTo(table, 7).messages, TABLE),
    };
    expect([...layout.chains]).toEqual(['prerouting', 'output', 'postrouting', 'forward', 'input']);
    expect([...layout.sets].sort()).toEqual(['hairpin4', 'hairpin6', 'masq4', 'masq6', 'ports4', 'ports6', 'ports_lo4']);
    expect(Object.fromEntries(layout.rules)).toEqual({ prerouting: 2, output: 3, postrouting: 5, forward: 5, input: 1 });
    // another table's names are not ours
    expect(chainNames(answerTo(chains, 4).messages, 'other').size).toBe(0);
    expect(setNames(answerTo(table, 10).messages, 'other').size).toBe(0);
  });

  test('answers: interval elements become the subnets and owners libnftables lists', () => {
    // nft showed: elements = { 10.0.0.16/28 comment "zone:a", 192.0.2.1 comment "b", 255.255.255.0/24 }
    // the kernel holds start and end elements (end = the next address, flag INTERVAL_END), a leading
    // 0.0.0.0 end element, and no end for the interval reaching 255.255.255.255
    const four = answerTo(masq4, 13, 'masq4');
    expect(four.messages.length).toBe(2);
    expect(intervalSubnets(four.messages, TABLE, 'masq4').sort((a, b) => a.subnet.localeCompare(b.subnet))).toEqual([
      { subnet: '10.0.0.16/28', owner: 'zone:a' }, { subnet: '192.0.2.1/32', owner: 'b' }, { subnet: '255.255.255.0/24' },
    ]);
    expect(intervalSubnets(answerTo(masq6, 13, 'masq6').messages, TABLE, 'masq6')).toEqual([{ subnet: 'fd00:1::/64', owner: 'zone:a' }]);
    // the same answers in `nft list table`'s order
    expect(intervalSubnets(answerTo(table, 13, 'masq4').messages, TABLE, 'masq4')).toHaveLength(3);
    expect(intervalSubnets(four.messages, TABLE, 'masq6')).toEqual([]);
  });

  test('an error or a changed ruleset while dumping is reported', () => {
    // NLMSG_ERROR -ENOENT answering seq 5 (a set dump of a table that does not exist)
    const err = Buffer.from('24000000' + '0200' + '0001' + '05000000' + '00000000' + 'feffffff' + '14000000' + '0a0a' + '0103' + '05000000' + '00000000', 'hex');
    const a: DumpAnswer = { messages: [], done: false, interrupted: false };
    readDumpDatagram(new Uint8Array(err), 4, a);
    expect(a.done).toBe(false); // another request's answer
    readDumpDatagram(new Uint8Array(err), 5, a);
    expect(a).toMatchObject({ done: true, errno: 2 });
    // NLM_F_DUMP_INTR on a message
    const chainAnswer = answerTo(chains, 4);
    expect(chainAnswer.interrupted).toBe(false);
    const raw = chains.received.find((b) => typeOf(b) === NFT + 3) as Uint8Array;
    const flagged = raw.slice();
    new DataView(flagged.buffer).setUint16(6, 0x2 | 0x10, true);
    const b: DumpAnswer = { messages: [], done: false, interrupted: false };
    readDumpDatagram(flagged, 0, b);
    expect(b.interrupted).toBe(true);
  });

  test('a test runner\'s listing gives the same layout', () => {
    const listing: NftListing = {
      nftables: [
        { chain: { family: 'inet', table: TABLE, name: 'input', handle: 1 } as never },
        { set: { family: 'inet', table: TABLE, name: 'masq4', type: 'ipv4_addr' } as never },
        { map: { family: 'inet', table: TABLE, name: 'ports4', type: 'x', map: 'y' } as never },
        { rule: { family: 'inet', table: TABLE, chain: 'input', expr: [] } },
        { rule: { family: 'inet', table: 'other', chain: 'input', expr: [] } },
      ],
    };
    const l = layoutFromListing(listing, TABLE);
    expect([...l.chains]).toEqual(['input']);
    expect([...l.sets]).toEqual(['masq4', 'ports4']);
    expect(Object.fromEntries(l.rules)).toEqual({ input: 1 });
  });

  test('a dump that fails half read closes its socket (the next dump would be refused busy) and is reported', () => {
    let nextFd = 3;
    const closed: number[] = [];
    let lastSeq = 0;
    let garbage = true;
    const answer = (): Uint8Array => {
      // NLMSG_DONE for the last request, or (the first time) a message overrunning its datagram
      const b = Buffer.alloc(20);
      b.writeUInt32LE(garbage ? 100 : 20, 0);
      b.writeUInt16LE(3, 4);
      b.writeUInt16LE(2, 6);
      b.writeUInt32LE(lastSeq, 8);
      garbage = false;
      return new Uint8Array(b);
    };
    let pending: Uint8Array | undefined;
    const fake = {
      socket: () => nextFd++, setsockoptInt: () => undefined, bind: () => undefined, pollFd: () => 0,
      close: (fd: number) => void closed.push(fd),
      sendto: (_fd: number, data: Uint8Array) => {
        lastSeq = new DataView(data.buffer, data.byteOffset).getUint32(8, true);
        pending = answer();
        return data.length;
      },
      recv: (_fd: number, buf: Uint8Array) => {
        if (!pending) return -1;
        buf.set(pending);
        const n = pending.length;
        pending = undefined;
        return n;
      },
    };
    const d = new NfnlDump(undefined, fake);
    expect(() => d.layout(TABLE)).toThrow(/overruns/);
    expect(closed).toEqual([3]);
    // the next dump opens a new socket; empty dumps: a table without chains, sets or rules
    expect(d.layout(TABLE)).toEqual({ chains: new Set(), sets: new Set(), rules: new Map() });
    expect(nextFd).toBe(5);
    d.close();
    expect(closed).toEqual([3, 4]);
  });
});
