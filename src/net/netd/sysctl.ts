// Forwarding: what systemd-networkd's IPMasquerade= implies (since v256 again: systemd#33004) —
// net.ipv4.ip_forward=1, without which masqueraded containers reach nothing past the host.
//
// Unlike networkd we put it back: the value before we turned it on is kept in the state file, and
// when the last link we serve goes away (the last container ended), ip_forward returns to it — a
// laptop that ran one container is not left a router. If someone else changed it meanwhile (it is no
// longer 1), we leave their value alone. Writing ip_forward sets `forwarding` of every interface
// (the kernel's devinet_sysctl_forward), so per-link values need no separate handling. /proc/sys/net
// is per network namespace: this acts in the caller's.
import { readFileSync, writeFileSync } from 'node:fs';

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
