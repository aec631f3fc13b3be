// DNS messages in and out, with dns-packet (mafintosh/dns-packet, the maintained codec most of npm's
// DNS software uses) doing the encoding. What is ours: the checks a server makes before trusting a
// query (RFC 1035 §4.1.1 header, one question, EDNS0 per RFC 6891), and the size rules for answers
// (512 bytes without EDNS, the client's advertised size up to 1232 with it; over that: TC, so the
// client retries over TCP).
import dnsPacket from 'dns-packet';
import type { Answer, DecodedPacket, OptAnswer, Question, RecordClass, RecordType } from 'dns-packet';

export const RCODE = { NOERROR: 0, FORMERR: 1, SERVFAIL: 2, NXDOMAIN: 3, NOTIMP: 4, REFUSED: 5 } as const;
/** RFC 6891: the extended RCODE for an unsupported EDNS version (upper 8 bits in the OPT record) */
export const BADVERS = 16;

const FLAG_QR = 0x8000;
const FLAG_AA = 0x0400;
const FLAG_TC = 0x0200;
const FLAG_RD = 0x0100;
const FLAG_RA = 0x0080;
const FLAG_AD = 0x0020;
const FLAG_CD = 0x0010;

/** The UDP payload we advertise and answer up to (the DNS flag day 2020 value: no IP fragments). */
export const EDNS_UDP_SIZE = 1232;
export const PLAIN_UDP_SIZE = 512;

export interface Edns {
  udpSize: number;
  version: number;
  do: boolean;
}

export interface Query {
  id: number;
  /** header flags as sent (RD, CD are echoed) */
  flags: number;
  question: Required<Question>;
  /** lower-case question name, no trailing dot */
  name: string;
  edns: Edns | undefined;
}

export type Parsed =
  | { ok: true; query: Query }
  /** answer with `rcode` (a header-only reply to what we could read), or drop when `id` is undefined */
  | { ok: false; id: number | undefined; flags: number; rcode: number; reason: string };

/**
 * Checks and decodes a query. Responses, and anything shorter than a header, are dropped (answering
 * them could start a loop between two servers or reflect junk); the rest that is not one well-formed
 * QUERY with one question gets FORMERR (or NOTIMP for other opcodes).
 */
export function parseQuery(buf: Buffer): Parsed {
  if (buf.length < 12) return { ok: false, id: undefined, flags: 0, rcode: RCODE.FORMERR, reason: 'shorter than a DNS header' };
  const id = buf.readUInt16BE(0);
  const flags = buf.readUInt16BE(2);
  if (flags & FLAG_QR) return { ok: false, id: undefined, flags, rcode: RCODE.FORMERR, reason: 'a response, not a query' };
  const opcode = (flags >> 11) & 0xf;
  if (opcode !== 0) return { ok: false, id, flags, rcode: RCODE.NOTIMP, reason: `opcode ${opcode}` };
  if (buf.readUInt16BE(4) !== 1) return { ok: false, id, flags, rcode: RCODE.FORMERR, reason: `${buf.readUInt16BE(4)} questions` };
  if (buf.readUInt16BE(6) !== 0 || buf.readUInt16BE(8) !== 0 || buf.readUInt16BE(10) > 1) {
    return { ok: false, id, flags, rcode: RCODE.FORMERR, reason: 'records besides the question and one OPT' };
  }
  let packet: DecodedPacket;
  try {
    packet = dnsPacket.decode(buf);
  } catch (err) {
    return { ok: false, id, flags, rcode: RCODE.FORMERR, reason: `undecodable: ${(err as Error).message}` };
  }
  // trailing bytes past the message, or a message longer than its records: not a query we trust
  if (dnsPacket.decode.bytes !== buf.length) return { ok: false, id, flags, rcode: RCODE.FORMERR, reason: 'trailing bytes' };
  const q = packet.questions?.[0];
  if (!q) return { ok: false, id, flags, rcode: RCODE.FORMERR, reason: 'no question' };
  let edns: Edns | undefined;
  const add = packet.additionals?.[0];
  if (add) {
    if (add.type !== 'OPT' || add.name !== '.' && add.name !== '') return { ok: false, id, flags, rcode: RCODE.FORMERR, reason: 'an additional record that is not OPT' };
    const opt = add as OptAnswer;
    edns = { udpSize: Math.max(PLAIN_UDP_SIZE, opt.udpPayloadSize), version: opt.ednsVersion, do: opt.flag_do };
  }
  const question: Required<Question> = { name: q.name, type: q.type, class: q.class ?? 'IN' };
  const name = q.name.toLowerCase().replace(/\.$/, '');
  return { ok: true, query: { id, flags, question, name, edns } };
}

/** What an answer is made of (everything but the header bits the query decides). */
export interface AnswerParts {
  rcode: number;
  authoritative?: boolean;
  /** the upstream's AD bit, passed on for forwarded answers */
  authenticData?: boolean;
  answers?: Answer[];
  authorities?: Answer[];
  additionals?: Answer[];
}

/** The largest answer the client takes over UDP. */
export function udpLimit(edns: Edns | undefined): number {
  return edns ? Math.min(Math.max(edns.udpSize, PLAIN_UDP_SIZE), EDNS_UDP_SIZE) : PLAIN_UDP_SIZE;
}

function optRecord(extendedRcode: number, dnssecOk: boolean): OptAnswer {
  return {
    type: 'OPT', name: '.', udpPayloadSize: EDNS_UDP_SIZE, extendedRcode, ednsVersion: 0,
    flags: dnssecOk ? dnsPacket.DNSSEC_OK : 0, flag_do: dnssecOk, options: [],
  };
}

/**
 * Encodes the answer to `query`: its ID, its question (as the client spelled it: 0x20 case
 * randomisation survives), RD and CD echoed, RA set, an OPT record when the query had one.
 * `limit`: the size allowed (udpLimit() over UDP, 65535 over TCP); a larger answer goes out
 * truncated — header, question and OPT, TC set.
 */
export function encodeAnswer(query: Pick<Query, 'id' | 'flags' | 'question' | 'edns'>, parts: AnswerParts, limit = 65535): Buffer {
  const rcode = parts.rcode & 0xf;
  let flags = FLAG_QR | FLAG_RA | (query.flags & (FLAG_RD | FLAG_CD)) | rcode;
  if (parts.authoritative) flags |= FLAG_AA;
  if (parts.authenticData) flags |= FLAG_AD;
  const opt = query.edns ? [optRecord(parts.rcode >> 4, query.edns.do)] : [];
  const packet = {
    id: query.id, type: 'response' as const, flags, questions: [query.question],
    answers: parts.answers ?? [], authorities: parts.authorities ?? [], additionals: [...(parts.additionals ?? []), ...opt],
  };
  const out = dnsPacket.encode(packet);
  if (out.length <= limit) return out;
  return dnsPacket.encode({ ...packet, flags: flags | FLAG_TC, answers: [], authorities: [], additionals: opt });
}

/** A header-only answer (FORMERR, NOTIMP) to what could not be decoded: ID and flags echoed. */
export function encodeHeaderOnly(id: number, queryFlags: number, rcode: number): Buffer {
  const b = Buffer.alloc(12);
  b.writeUInt16BE(id, 0);
  b.writeUInt16BE(FLAG_QR | FLAG_RA | (queryFlags & (0x7800 | FLAG_RD | FLAG_CD)) | (rcode & 0xf), 2);
  return b;
}

export function isType(q: Query, type: RecordType): boolean {
  return q.question.type === type;
}

export function isClass(q: Query, cls: RecordClass): boolean {
  return q.question.class === cls;
}

export const FLAGS = { QR: FLAG_QR, AA: FLAG_AA, TC: FLAG_TC, RD: FLAG_RD, RA: FLAG_RA, AD: FLAG_AD, CD: FLAG_CD };
