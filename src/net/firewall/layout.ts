// The table layout of rules.ts's header: chains and their rules, sets and maps, as nft JSON and
// as the script that makes the maps.
import type { NftChain, NftCommand, NftDocument, NftExpr, NftMap, NftRule, NftStatement } from './nft-json.js';
import { ConfigError } from '../../errors.js';
import { CHAIN_NAMES, DEFAULT_TABLE, LAYOUT_VERSION, TABLE_FAMILY } from './model.js';

function rule(table: string, chain: string, expr: NftStatement[]): NftCommand {
  return { add: { rule: { family: TABLE_FAMILY, table, chain, expr } satisfies NftRule } };
}

const match = (left: NftExpr, right: NftExpr, op: '==' | '!=' | 'in' | '!' = '=='): NftStatement => ({ match: { op, left, right } });
const nfproto = (p: 'ipv4' | 'ipv6'): NftStatement => match({ meta: { key: 'nfproto' } }, p);
const payload = (protocol: string, field: string): NftExpr => ({ payload: { protocol, field } });
const portKeyExpr: NftExpr = { concat: [{ meta: { key: 'l4proto' } }, { payload: { protocol: 'th', field: 'dport' } }] };
const dnatVia = (family: 'ip' | 'ip6', map: string): NftStatement => ({ dnat: { family, addr: { map: { key: portKeyExpr, data: `@${map}` } } } });
const ctDnat: NftStatement = match({ ct: { key: 'status' } }, 'dnat', 'in');

/** The chains with their hooks and priorities (systemd's: dstnat+1 / -99 / srcnat+1). */
export function chainObjects(table = DEFAULT_TABLE): NftChain[] {
  const base = { family: TABLE_FAMILY, table } as const;
  return [
    { ...base, name: 'prerouting', type: 'nat', hook: 'prerouting', prio: -99, policy: 'accept' },
    { ...base, name: 'output', type: 'nat', hook: 'output', prio: -99, policy: 'accept' },
    { ...base, name: 'postrouting', type: 'nat', hook: 'postrouting', prio: 101, policy: 'accept' },
    { ...base, name: 'forward', type: 'filter', hook: 'forward', prio: 0, policy: 'accept' },
    { ...base, name: 'input', type: 'filter', hook: 'input', prio: 0, policy: 'accept' },
  ];
}

/** The rules of each chain, in order. */
export function ruleCommands(table = DEFAULT_TABLE): NftCommand[] {
  const loopback4: NftExpr = { prefix: { addr: '127.0.0.0', len: 8 } };
  return [
    rule(table, 'prerouting', [nfproto('ipv4'), match({ fib: { result: 'type', flags: ['daddr'] } }, 'local'), dnatVia('ip', 'ports4')]),
    rule(table, 'prerouting', [nfproto('ipv6'), match({ fib: { result: 'type', flags: ['daddr'] } }, 'local'), dnatVia('ip6', 'ports6')]),
    rule(table, 'output', [nfproto('ipv4'), match({ meta: { key: 'oif' } }, 'lo'), match(payload('ip', 'daddr'), loopback4, '!='), dnatVia('ip', 'ports4')]),
    rule(table, 'output', [nfproto('ipv6'), match({ meta: { key: 'oif' } }, 'lo'), match(payload('ip6', 'daddr'), '::1', '!='), dnatVia('ip6', 'ports6')]),
    rule(table, 'output', [nfproto('ipv4'), match({ meta: { key: 'oif' } }, 'lo'), match(payload('ip', 'daddr'), '127.0.0.1'), dnatVia('ip', 'ports_lo4')]),
    // not through lo: the host talking to its own link address (a query to the DNS server there) has
    // no address to be masqueraded to on lo, and the kernel would drop it
    rule(table, 'postrouting', [match({ meta: { key: 'oif' } }, 'lo', '!='), match(payload('ip', 'saddr'), '@masq4'), { masquerade: null }]),
    rule(table, 'postrouting', [match({ meta: { key: 'oif' } }, 'lo', '!='), match(payload('ip6', 'saddr'), '@masq6'), { masquerade: null }]),
    rule(table, 'postrouting', [ctDnat, match({ concat: [payload('ip', 'saddr'), payload('ip', 'daddr')] }, '@hairpin4'), { masquerade: null }]),
    rule(table, 'postrouting', [ctDnat, match({ concat: [payload('ip6', 'saddr'), payload('ip6', 'daddr')] }, '@hairpin6'), { masquerade: null }]),
    rule(table, 'postrouting', [ctDnat, match({ meta: { key: 'oif' } }, 'lo', '!='), match(payload('ip', 'saddr'), loopback4), { masquerade: null }]),
    rule(table, 'forward', [match(payload('ip', 'saddr'), '@masq4'), { accept: null }]),
    rule(table, 'forward', [match(payload('ip', 'daddr'), '@masq4'), { accept: null }]),
    rule(table, 'forward', [match(payload('ip6', 'saddr'), '@masq6'), { accept: null }]),
    rule(table, 'forward', [match(payload('ip6', 'daddr'), '@masq6'), { accept: null }]),
    rule(table, 'forward', [ctDnat, { accept: null }]),
    rule(table, 'input', [nfproto('ipv4'), match({ meta: { key: 'iif' } }, 'lo', '!='), match(payload('ip', 'daddr'), loopback4),
      match({ ct: { key: 'state' } }, { set: ['established', 'related'] }, '!='), match({ ct: { key: 'status' } }, 'dnat', '!'), { drop: null }]),
  ];
}

const TABLE_NAME_RE = /^[A-Za-z][A-Za-z0-9_.-]{0,63}$/;

export function assertTableName(table: string): void {
  if (!TABLE_NAME_RE.test(table)) {
    throw new ConfigError(`invalid nft table name "${table}": a letter, then up to 63 letters, digits, '_', '.', '-'`, { code: 'NFT_INVALID_TABLE' });
  }
}

/** Our three maps (their data is a concatenation). */
export function mapObjects(table = DEFAULT_TABLE): NftMap[] {
  const base = { family: TABLE_FAMILY, table } as const;
  return [
    { ...base, name: 'ports4', type: ['inet_proto', 'inet_service'], map: ['ipv4_addr', 'inet_service'] },
    { ...base, name: 'ports6', type: ['inet_proto', 'inet_service'], map: ['ipv6_addr', 'inet_service'] },
    { ...base, name: 'ports_lo4', type: ['inet_proto', 'inet_service'], map: ['ipv4_addr', 'inet_service'] },
  ];
}

const typeText = (t: string | string[]): string => (Array.isArray(t) ? t.join(' . ') : t);

/**
 * libnftables ≤ 1.0.6 cannot parse a concatenated map data type in JSON ("Invalid map type
 * 'ipv4_addr . inet_service'"; added in 1.0.7), and Debian 12 ships 1.0.6: so the maps are created
 * with the equivalent nft statements, rendered from the same typed objects. Everything else —
 * including elements of these maps — goes through JSON.
 */
export function renderAddMap(map: NftMap): string {
  assertTableName(map.table);
  if (!/^[A-Za-z][A-Za-z0-9_]*$/.test(map.name)) throw new ConfigError(`invalid map name "${map.name}"`, { code: 'NFT_INVALID_TABLE' });
  const flags = map.flags?.length ? ` flags ${map.flags.join(',')};` : '';
  return `add map ${map.family} ${map.table} ${map.name} { type ${typeText(map.type)} : ${typeText(map.map)};${flags} }`;
}

/** Step 1 of ensure-tables: the table and the maps, as nft statements (see renderAddMap). */
export function layoutMapsScript(table = DEFAULT_TABLE): string {
  assertTableName(table);
  return [`add table ${TABLE_FAMILY} ${table}`, ...mapObjects(table).map(renderAddMap)].join('\n') + '\n';
}

/**
 * Step 2 of ensure-tables, one transaction: add table, chains and sets (no-ops when present), then
 * flush our chains and add their rules. Idempotent (never duplicates a rule), atomic (no packet
 * sees a half-built chain), repairs a chain someone edited, and keeps every element (sets and
 * maps are never flushed) — so running it at every start, or after ENOENT, is safe.
 */
export function layoutDocument(table = DEFAULT_TABLE): NftDocument {
  assertTableName(table);
  const base = { family: TABLE_FAMILY, table } as const;
  const cmds: NftCommand[] = [
    { add: { table: { family: TABLE_FAMILY, name: table, comment: `nspawn-ts container NAT and port forwarding, layout ${LAYOUT_VERSION}` } } },
    ...chainObjects(table).map((chain): NftCommand => ({ add: { chain } })),
    { add: { set: { ...base, name: 'masq4', type: 'ipv4_addr', flags: ['interval'] } } },
    { add: { set: { ...base, name: 'masq6', type: 'ipv6_addr', flags: ['interval'] } } },
    { add: { set: { ...base, name: 'hairpin4', type: ['ipv4_addr', 'ipv4_addr'] } } },
    { add: { set: { ...base, name: 'hairpin6', type: ['ipv6_addr', 'ipv6_addr'] } } },
    ...CHAIN_NAMES.map((name): NftCommand => ({ flush: { chain: { ...base, name } } })),
    ...ruleCommands(table),
  ];
  return { nftables: cmds };
}

export function deleteTableDocument(table = DEFAULT_TABLE): NftDocument {
  return { nftables: [{ delete: { table: { family: TABLE_FAMILY, name: table } } }] };
}
