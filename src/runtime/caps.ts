// Capabilities of the container's processes: the bounding set systemd-nspawn keeps by default
// (arg_caps_retain in src/nspawn/nspawn.c, v252), plus CAP_NET_ADMIN only with a private network.
// Numbers from uapi linux/capability.h.

export const CAPS = {
  CAP_CHOWN: 0, CAP_DAC_OVERRIDE: 1, CAP_DAC_READ_SEARCH: 2, CAP_FOWNER: 3, CAP_FSETID: 4,
  CAP_KILL: 5, CAP_SETGID: 6, CAP_SETUID: 7, CAP_SETPCAP: 8, CAP_LINUX_IMMUTABLE: 9,
  CAP_NET_BIND_SERVICE: 10, CAP_NET_BROADCAST: 11, CAP_NET_ADMIN: 12, CAP_NET_RAW: 13,
  CAP_IPC_LOCK: 14, CAP_IPC_OWNER: 15, CAP_SYS_MODULE: 16, CAP_SYS_RAWIO: 17, CAP_SYS_CHROOT: 18,
  CAP_SYS_PTRACE: 19, CAP_SYS_PACCT: 20, CAP_SYS_ADMIN: 21, CAP_SYS_BOOT: 22, CAP_SYS_NICE: 23,
  CAP_SYS_RESOURCE: 24, CAP_SYS_TIME: 25, CAP_SYS_TTY_CONFIG: 26, CAP_MKNOD: 27, CAP_LEASE: 28,
  CAP_AUDIT_WRITE: 29, CAP_AUDIT_CONTROL: 30, CAP_SETFCAP: 31, CAP_MAC_OVERRIDE: 32,
  CAP_MAC_ADMIN: 33, CAP_SYSLOG: 34, CAP_WAKE_ALARM: 35, CAP_BLOCK_SUSPEND: 36, CAP_AUDIT_READ: 37,
  CAP_PERFMON: 38, CAP_BPF: 39, CAP_CHECKPOINT_RESTORE: 40,
} as const;
export type CapName = keyof typeof CAPS;

/** systemd-nspawn's default bounding set (without CAP_NET_ADMIN). */
export const NSPAWN_RETAINED_CAPS: readonly CapName[] = [
  'CAP_AUDIT_CONTROL', 'CAP_AUDIT_WRITE', 'CAP_CHOWN', 'CAP_DAC_OVERRIDE', 'CAP_DAC_READ_SEARCH',
  'CAP_FOWNER', 'CAP_FSETID', 'CAP_IPC_OWNER', 'CAP_KILL', 'CAP_LEASE', 'CAP_LINUX_IMMUTABLE',
  'CAP_MKNOD', 'CAP_NET_BIND_SERVICE', 'CAP_NET_BROADCAST', 'CAP_NET_RAW', 'CAP_SETFCAP',
  'CAP_SETGID', 'CAP_SETPCAP', 'CAP_SETUID', 'CAP_SYS_ADMIN', 'CAP_SYS_BOOT', 'CAP_SYS_CHROOT',
  'CAP_SYS_NICE', 'CAP_SYS_PTRACE', 'CAP_SYS_RESOURCE', 'CAP_SYS_TTY_CONFIG',
];

export function capMask(names: readonly CapName[]): bigint {
  let m = 0n;
  for (const n of names) m |= 1n << BigInt(CAPS[n]);
  return m;
}

export function capNames(mask: bigint): CapName[] {
  return (Object.keys(CAPS) as CapName[]).filter((n) => (mask >> BigInt(CAPS[n])) & 1n);
}

/** The bounding set of a container's processes. */
export function containerCaps(opts: { privateNetwork: boolean }): bigint {
  let m = capMask(NSPAWN_RETAINED_CAPS);
  if (opts.privateNetwork) m |= 1n << BigInt(CAPS.CAP_NET_ADMIN);
  return m;
}

/** The capability sets of the launcher process itself (what the container can keep at most). */
export function readOwnBoundingSet(status: string): bigint | undefined {
  const m = /^CapBnd:\s*([0-9a-f]+)$/m.exec(status);
  return m ? BigInt('0x' + m[1]) : undefined;
}
