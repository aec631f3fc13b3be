// Errors of the netlink layer, kept apart so "the kernel said no" (NetlinkError, with errno and the
// kernel's extended-ACK text), "we could not parse what came back" (NetlinkDecodeError) and "the
// caller asked for something unencodable" (NetlinkEncodeError) never mix.
import { NspawnError } from '../../errors.js';
import { SysError } from '../../native.js';
import { errnoName, errnoText } from './errno.js';

/** Bytes that are not a well-formed netlink message. Decoding raises only this. */
export class NetlinkDecodeError extends NspawnError {
  /** Byte offset in the buffer being decoded where the problem was found. */
  readonly offset: number;

  constructor(message: string, offset: number) {
    super('NL_DECODE', `malformed netlink data at byte ${offset}: ${message}`);
    this.offset = offset;
  }
}

/** A value that cannot be put on the wire (an interface name too long, a bad MAC, an out-of-range number). */
export class NetlinkEncodeError extends NspawnError {
  constructor(message: string) {
    super('NL_INVALID', message);
  }
}

/** The kernel's extended ACK (NETLINK_EXT_ACK), when it sent one. */
export interface ExtAck {
  /** NLMSGERR_ATTR_MSG: the kernel's own words, e.g. "Unknown device type". */
  msg?: string;
  /** NLMSGERR_ATTR_OFFS: offset in the request of the attribute it objected to. */
  offset?: number;
  /** NLMSGERR_ATTR_MISS_TYPE: the attribute type that was missing. */
  missType?: number;
  /** NLMSGERR_ATTR_MISS_NEST: offset of the nest the missing attribute belongs in. */
  missNest?: number;
  cookie?: Uint8Array;
  /** NLMSGERR_ATTR_POLICY, undecoded. */
  policy?: Uint8Array;
}

/**
 * The kernel rejected a netlink request. `code`/`errno` are the kernel's (EEXIST, 17), `request` says
 * what was asked in words (`create veth "ve-foo"`), `extack` carries the kernel's explanation. The message
 * reads like `RTNETLINK: cannot create veth "ve-foo": File exists (EEXIST)`.
 */
export class NetlinkError extends SysError {
  readonly request: string;
  readonly extack: ExtAck | undefined;

  constructor(errno: number, request: string, extack?: ExtAck, options?: { cause?: unknown; syscall?: string }) {
    const code = errnoName(errno);
    const why = extack?.msg ? `: ${extack.msg}` : '';
    super(errno, code, options?.syscall ?? 'rtnetlink',
      `RTNETLINK: cannot ${request}: ${errnoText(errno)} (${code})${why}`, options);
    this.request = request;
    this.extack = extack;
  }
}

/** The socket was closed (or failed) while a request was outstanding. */
export class NetlinkClosedError extends NspawnError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('NL_CLOSED', message, options);
  }
}
