// The host's byte order, for DataView calls on host-endian data (netlink, BPF programs, ucred).
// Probed with a typed array rather than node:os endianness(): node:os is a module the per-call
// nspawn-cni would otherwise load and compile just for this.

/** True on little-endian hosts: DataView calls take this as their littleEndian argument. */
export const HOST_LE = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;
