// The embedded DNS server of the network library (issue 15): machine names per served link,
// everything else forwarded to the host's resolvers. See docs/dns.md.
export { DnsServer, type DnsServerOptions } from './server.js';
export { NameTable, type DnsLink, DEFAULT_MACHINE_DOMAIN, validMachineDomain } from './names.js';
export { Forwarder, hostUpstreams, parseUpstream, type Upstream, UpstreamError } from './upstream.js';
