// -p/--port= and Port= values: `[tcp:|udp:]HOSTPORT[:CONTAINERPORT]`, exactly as systemd-nspawn's
// expose_port_parse() (src/nspawn/nspawn-expose-ports.c) reads them: protocol prefix optional (tcp),
// container port defaults to the host port, decimal ports 1–65535 (parse_ip_port refuses 0 and
// leading whitespace), no ranges, no bind address, no sctp; the same protocol + host port twice is
// a duplicate. The error texts are systemd's, followed by what is allowed.
import { ConfigError } from '../errors.js';
import type { PortForward } from './model.js';

export const PORT_SPEC_SYNTAX = '[tcp:|udp:]HOSTPORT[:CONTAINERPORT] with ports 1-65535 (e.g. 8080, 8080:80, udp:53)';

export class PortSpecError extends ConfigError {
  /** EINVAL: malformed; EEXIST: duplicate of an earlier port. */
  readonly reason: 'EINVAL' | 'EEXIST';

  constructor(message: string, reason: 'EINVAL' | 'EEXIST') {
    super(message, { code: reason === 'EEXIST' ? 'CFG_PORT_DUPLICATE' : 'CFG_PORT_INVALID' });
    this.reason = reason;
  }
}

/** parse_ip_port(): a decimal u16 other than 0, nothing before or after the digits. */
function parseIpPort(s: string): number | undefined {
  if (!/^[0-9]+$/.test(s)) return undefined;
  const n = Number(s);
  return n >= 1 && n <= 65535 ? n : undefined;
}

/** Parses one port spec. Throws PortSpecError (systemd's "Failed to parse host port …"). */
export function parsePortSpec(spec: string): PortForward {
  let protocol: 'tcp' | 'udp' = 'tcp';
  let rest = spec;
  if (spec.startsWith('tcp:')) rest = spec.slice(4);
  else if (spec.startsWith('udp:')) {
    protocol = 'udp';
    rest = spec.slice(4);
  }
  const colon = rest.indexOf(':');
  const hostPort = parseIpPort(colon >= 0 ? rest.slice(0, colon) : rest);
  const containerPort = colon >= 0 ? parseIpPort(rest.slice(colon + 1)) : hostPort;
  if (hostPort === undefined || containerPort === undefined) {
    throw new PortSpecError(`Failed to parse host port ${spec}: Invalid argument (expected ${PORT_SPEC_SYNTAX})`, 'EINVAL');
  }
  return { protocol, hostPort, hostPortEnd: hostPort, containerPort, containerPortEnd: containerPort };
}

/** The canonical text of a port forward (what parsePortSpec reads back to the same value). */
export function formatPortSpec(p: PortForward): string {
  return `${p.protocol}:${p.hostPort}:${p.containerPort}`;
}

/**
 * Parses `spec` and appends it to `list`, refusing a second mapping of the same protocol and host
 * port with systemd's "Duplicate port specification: SPEC".
 */
export function addPortSpec(list: PortForward[], spec: string): PortForward {
  const p = parsePortSpec(spec);
  if (list.some((q) => q.protocol === p.protocol && q.hostPort === p.hostPort)) {
    throw new PortSpecError(`Duplicate port specification: ${spec} (${p.protocol} port ${p.hostPort} is already forwarded)`, 'EEXIST');
  }
  list.push(p);
  return p;
}
