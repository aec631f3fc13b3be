// Types for the subset of libnftables' JSON schema (libnftables-json(5), schema version 1) that
// the firewall builds and reads back. Commands go in as {"nftables": [command, …]}, one document =
// one transaction; `nft -j list …` answers with {"nftables": [{"metainfo": …}, object, …]}.

export type NftFamily = 'ip' | 'ip6' | 'inet' | 'arp' | 'bridge' | 'netdev';
export type NftVerdictPolicy = 'accept' | 'drop';
export type NftHook = 'prerouting' | 'input' | 'forward' | 'output' | 'postrouting' | 'ingress';

/** Expressions: immediates (strings name symbols like "tcp", "local", or addresses), and objects. */
export type NftExpr =
  | string
  | number
  | boolean
  | NftExpr[]
  | { concat: NftExpr[] }
  | { prefix: { addr: NftExpr; len: number } }
  | { range: [NftExpr, NftExpr] }
  | { set: NftExpr[] }
  | { payload: { protocol: string; field: string } }
  | { meta: { key: string } }
  | { ct: { key: string; dir?: 'original' | 'reply'; family?: 'ip' | 'ip6' } }
  | { fib: { result: 'oif' | 'oifname' | 'type'; flags: Array<'saddr' | 'daddr' | 'mark' | 'iif' | 'oif'> } }
  | { map: { key: NftExpr; data: NftExpr } }
  | { elem: NftElemWrapper };

/** An element with per-element attributes (we only use the comment: it carries the owner). */
export interface NftElemWrapper {
  val: NftExpr;
  comment?: string;
  timeout?: number;
  expires?: number;
}

/** 'in': the flags are set (ct status dnat); '!': none of them is. */
export type NftMatchOp = '==' | '!=' | '<' | '>' | '<=' | '>=' | 'in' | '!';

export type NftStatement =
  | { match: { op: NftMatchOp; left: NftExpr; right: NftExpr } }
  | { accept: null }
  | { drop: null }
  | { return: null }
  | { jump: { target: string } }
  | { counter: null | { packets: number; bytes: number } }
  | { masquerade: null | { port?: NftExpr; flags?: string[] } }
  | { dnat: { family?: 'ip' | 'ip6'; addr?: NftExpr; port?: NftExpr; flags?: string[] } }
  | { snat: { family?: 'ip' | 'ip6'; addr?: NftExpr; port?: NftExpr; flags?: string[] } };

export interface NftTable {
  family: NftFamily;
  name: string;
  handle?: number;
  comment?: string;
}

export interface NftChain {
  family: NftFamily;
  table: string;
  name: string;
  handle?: number;
  type?: 'filter' | 'nat' | 'route';
  hook?: NftHook;
  prio?: number;
  policy?: NftVerdictPolicy;
  comment?: string;
}

/** A set element as listed or given: a bare value, or {elem: {val, comment}}. */
export type NftSetElem = NftExpr;
/** A map element: [key (bare or {elem}), data]. */
export type NftMapElem = [NftExpr, NftExpr];

export interface NftSet {
  family: NftFamily;
  table: string;
  name: string;
  handle?: number;
  /** one type name, or the parts of a concatenation */
  type: string | string[];
  flags?: Array<'constant' | 'interval' | 'timeout' | 'dynamic'>;
  elem?: NftSetElem[];
  comment?: string;
}

export interface NftMap extends Omit<NftSet, 'elem'> {
  /** data type: one name, or the parts of a concatenation */
  map: string | string[];
  elem?: NftMapElem[];
}

export interface NftElement {
  family: NftFamily;
  table: string;
  /** the set or map */
  name: string;
  elem: Array<NftSetElem | NftMapElem>;
}

export interface NftRule {
  family: NftFamily;
  table: string;
  chain: string;
  handle?: number;
  expr: NftStatement[];
  comment?: string;
}

export interface NftMetainfo {
  version?: string;
  release_name?: string;
  json_schema_version?: number;
}

export type NftObject =
  | { table: NftTable }
  | { chain: NftChain }
  | { set: NftSet }
  | { map: NftMap }
  | { rule: NftRule }
  | { element: NftElement };

export type NftCommand =
  | { add: NftObject }
  | { create: NftObject }
  | { delete: NftObject }
  | { flush: NftObject }
  | { destroy: NftObject };

/** A batch given to libnftables: applied as one transaction, all or nothing. */
export interface NftDocument {
  nftables: NftCommand[];
}

/** What `nft -j list …` returns. */
export interface NftListing {
  nftables: Array<NftObject | { metainfo: NftMetainfo }>;
}
