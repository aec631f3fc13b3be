// Forwarding: what systemd-networkd's IPMasquerade= implies (since v256 again: systemd#33004) —
// net.ipv4.ip_forward=1, without which masqueraded containers reach nothing past the host.
//
// Unlike networkd we put it back: the value before we turned it on is kept in the state file, and
// when the last link we serve goes away (the last container ended), ip_forward returns to it — a
// laptop that ran one container is not left a router. If someone else changed it meanwhile (it is no
// longer 1), we leave their value alone. Writing ip_forward sets `forwarding` of every interface
// (the kernel's devinet_sysctl_forward), so per-link values need no separate handling. /proc/sys/net
// is per network namespace: this acts in the caller's.
//
// Two kinds of users share the record: the served links (state.links) and the others by name
// (state.forwardingUsers: nspawn-cni's networks whose addresses an ipam plugin gives, which the
// subsystem does not serve). Forwarding goes back only when neither has anything left, whichever
// ends last.
import { readFileSync, writeFileSync } from 'node:fs';
import type { NetdState } from './state.js';

export const IP_FORWARD = '/proc/sys/net/ipv4/ip_forward';
export const IPV6_FORWARD = '/proc/sys/net/ipv6/conf/all/forwarding';

export interface SysctlIo {
  read(path: string): string;
  write(path: string, value: string): void;
}

export const procSys: SysctlIo = {
  read: (path) => readFileSync(path, 'utf8').trim(),
  write: (path, value) => writeFileSync(path, `${value}\n`),
};

/** Turns forwarding on (IPv4's, or the sysctl at `path`: IPv6's all/forwarding); returns the previous value when it was off (to record), else undefined. */
export function enableForwarding(io: SysctlIo = procSys, path = IP_FORWARD): string | undefined {
  const before = io.read(path);
  if (before === '1') return undefined;
  io.write(path, '1');
  return before;
}

/** Puts back `previous` unless someone changed the value since we set it. Returns whether it did. */
export function restoreForwarding(previous: string, io: SysctlIo = procSys, path = IP_FORWARD): boolean {
  if (io.read(path) !== '1') return false;
  io.write(path, previous);
  return true;
}

/** Turns forwarding on (IPv6's too with `v6`) and records in `st` the values before, unless recorded already. */
export function forwardingOn(st: NetdState, v6: boolean, io: SysctlIo = procSys): void {
  const before = enableForwarding(io);
  if (before !== undefined && st.ipForwardBefore === undefined) st.ipForwardBefore = before;
  if (!v6) return;
  const before6 = enableForwarding(io, IPV6_FORWARD);
  if (before6 !== undefined && st.ip6ForwardBefore === undefined) st.ip6ForwardBefore = before6;
}

/** Puts back the recorded values once `st` has no served link and no other user; returns what it did (to log). */
export function forwardingOffIfUnused(st: NetdState, io: SysctlIo = procSys): string[] {
  if (Object.keys(st.links).length > 0 || (st.forwardingUsers?.length ?? 0) > 0) return [];
  const done: string[] = [];
  if (st.ipForwardBefore !== undefined) {
    if (restoreForwarding(st.ipForwardBefore, io)) done.push(`net.ipv4.ip_forward set back to ${st.ipForwardBefore}`);
    delete st.ipForwardBefore;
  }
  if (st.ip6ForwardBefore !== undefined) {
    if (restoreForwarding(st.ip6ForwardBefore, io, IPV6_FORWARD)) done.push(`net.ipv6.conf.all.forwarding set back to ${st.ip6ForwardBefore}`);
    delete st.ip6ForwardBefore;
  }
  return done;
}
