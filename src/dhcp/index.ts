// Public API of the DHCPv4 server, for the sidecar and the dhcp-serve command.
export { DhcpServer } from './server.js';
export type { DhcpServerOptions, DhcpEvent, LeaseInfo, DhcpStats } from './server.js';
export type { InterfaceConfig, Reservation } from './config.js';
export { resolveInterfaceConfig } from './config.js';
export type { Durability, LeaseStore } from './journal.js';
export { FileLeaseStore, MemoryLeaseStore, LeaseFileError } from './journal.js';
export type { DhcpTransport, InboundFrame, OutboundFrame } from './transport.js';
export { PacketTransport } from './transport.js';
