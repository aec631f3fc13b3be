// Loads the captured netlink traffic in test/golden/netlink/ (see capture.mjs there for how it was
// made): the datagrams iproute2 sent (`>`) and the kernel's answers (`<`), plus the producing command.
import { readFileSync } from 'node:fs';

export interface Golden {
  name: string;
  command: string;
  sent: Uint8Array[];
  received: Uint8Array[];
}

const dir = new URL('../../golden/netlink/', import.meta.url);

/** `from`: another directory of captures in this format (test/golden/nfnl/ holds nft's). */
export function loadGolden(name: string, from: URL = dir): Golden {
  const text = readFileSync(new URL(`${name}.txt`, from), 'utf8');
  const g: Golden = { name, command: '', sent: [], received: [] };
  for (const line of text.split('\n')) {
    if (line.startsWith('# command: ')) g.command = line.slice('# command: '.length);
    else if (line.startsWith('> ')) g.sent.push(trim(Buffer.from(line.slice(2), 'hex')));
    else if (line.startsWith('< ')) g.received.push(new Uint8Array(Buffer.from(line.slice(2), 'hex')));
  }
  if (!g.command || !g.sent.length) throw new Error(`golden ${name}: no command or no datagrams`);
  return g;
}

/** iproute2 sometimes sends its whole request buffer; the kernel reads only nlmsg_len bytes. */
function trim(b: Buffer): Uint8Array {
  return new Uint8Array(b.subarray(0, Math.min(b.length, b.readUInt32LE(0))));
}

/** The request the command is about: the last datagram ip sent. */
export function lastSent(g: Golden): Uint8Array {
  return g.sent[g.sent.length - 1] as Uint8Array;
}

/** A copy with nlmsg_seq and nlmsg_pid of every top-level message set to zero. */
export function zeroSeqPid(bytes: Uint8Array): Uint8Array {
  const out = bytes.slice();
  const v = new DataView(out.buffer);
  for (let at = 0; at + 16 <= out.length;) {
    const len = v.getUint32(at, true);
    v.setUint32(at + 8, 0, true);
    v.setUint32(at + 12, 0, true);
    if (len < 16) break;
    at += (len + 3) & ~3;
  }
  return out;
}

export function hex(b: Uint8Array): string {
  return Buffer.from(b).toString('hex');
}
