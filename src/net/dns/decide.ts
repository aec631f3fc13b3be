// What the server does with a decoded query (pure): answer it from the link's machine names, refuse
// it, or forward it upstream.
//
//   machine names      NAME, NAME.<domain>: A and AAAA from the table, other types NODATA, unknown names
//                      NXDOMAIN — authoritative, with the domain's SOA (RFC 2308), never forwarded
//                      (a single-label name means nothing upstream: it would only leak)
//   reverse names      of the link's subnet and /64: PTR → NAME.<domain>, unknown addresses NXDOMAIN
//   ANY                answered minimally (RFC 8482): a machine's A and AAAA records, else one synthesized
//                      HINFO — the server is no amplifier
//   zone transfers,    REFUSED
//   classes but IN
//   everything else    forwarded (with the cache in front)
import type { Answer } from 'dns-packet';
import type { AnswerParts, Query } from './message.js';
import { RCODE } from './message.js';
import type { LinkNames, NameTable } from './names.js';

export type Decision = { kind: 'answer'; parts: AnswerParts } | { kind: 'forward' };

/** TTL of our own answers: 0, so a stopped machine's name is gone at once even behind a caching stub. */
export const DEFAULT_LOCAL_TTL = 0;

function soa(table: NameTable, ttl: number): Answer {
  return {
    type: 'SOA', name: table.domain, ttl, class: 'IN',
    data: { mname: `ns.${table.domain}`, rname: `hostmaster.${table.domain}`, serial: table.generation >>> 0, refresh: 3600, retry: 600, expire: 86400, minimum: ttl },
  };
}

function rfc8482(q: Query, ttl: number): AnswerParts {
  return { rcode: RCODE.NOERROR, answers: [{ type: 'HINFO', name: q.question.name, ttl, class: 'IN', data: { cpu: 'RFC8482', os: '' } }] };
}

export function decide(q: Query, link: LinkNames | undefined, table: NameTable, ttl = DEFAULT_LOCAL_TTL): Decision {
  const type = q.question.type;
  if (!link) return { kind: 'answer', parts: { rcode: RCODE.REFUSED } };
  if (q.question.class !== 'IN') return { kind: 'answer', parts: { rcode: RCODE.REFUSED } };
  if (type === 'AXFR' || type === 'IXFR') return { kind: 'answer', parts: { rcode: RCODE.REFUSED } };
  const name = q.name;
  const qname = q.question.name;
  const negative = (rcode: number): Decision => ({
    kind: 'answer', parts: { rcode, authoritative: true, authorities: name.endsWith(table.domain) ? [soa(table, ttl)] : [] },
  });

  if (table.isLocalName(name)) {
    if (name === table.domain) {
      if (type === 'SOA') return { kind: 'answer', parts: { rcode: RCODE.NOERROR, authoritative: true, answers: [soa(table, ttl)] } };
      return negative(RCODE.NOERROR);
    }
    const v4 = link.forward.get(name);
    const v6 = link.forward6.get(name);
    if (!v4 && !v6) return negative(RCODE.NXDOMAIN);
    const any = (type as string) === 'ANY';
    const answers: Answer[] = [
      ...(type === 'A' || any ? v4 ?? [] : []).map((a): Answer => ({ type: 'A', name: qname, ttl, class: 'IN', data: a })),
      ...(type === 'AAAA' || any ? v6 ?? [] : []).map((a): Answer => ({ type: 'AAAA', name: qname, ttl, class: 'IN', data: a })),
    ];
    // the name exists without records of this type: NODATA (RFC 2308), with the SOA
    if (answers.length === 0) return negative(RCODE.NOERROR);
    return { kind: 'answer', parts: { rcode: RCODE.NOERROR, authoritative: true, answers } };
  }

  if (link.ownsReverse(name)) {
    const target = link.reverse.get(name);
    if (!target) return { kind: 'answer', parts: { rcode: RCODE.NXDOMAIN, authoritative: true } };
    if (type !== 'PTR' && (type as string) !== 'ANY') return { kind: 'answer', parts: { rcode: RCODE.NOERROR, authoritative: true } };
    return { kind: 'answer', parts: { rcode: RCODE.NOERROR, authoritative: true, answers: [{ type: 'PTR', name: qname, ttl, class: 'IN', data: target }] } };
  }

  if ((type as string) === 'ANY') return { kind: 'answer', parts: rfc8482(q, 3600) };
  return { kind: 'forward' };
}
