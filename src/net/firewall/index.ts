// The firewall of the network subsystem: masquerade and port forwarding in our own nftables table.
export { Firewall, NftError } from './nft.js';
export { ListingUnsettledError } from './settle.js';
export type { FirewallBlocker, FirewallOptions, HostPort, NftErrno, NftRunner, ReconcileOptions, ReconcileResult } from './nft.js';
export { DEFAULT_TABLE, describeMapping, describeState, portForwardMappings } from './rules.js';
export type { FirewallState, FwElement, MasqueradeEntry, PortMapping, Protocol } from './rules.js';
