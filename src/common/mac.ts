// MAC addresses as text: one parser for the network library (naming.ts, the sidecar's API) and the
// DHCP server (its configuration and reservations).

/** Six hex bytes with ':' or '-' between them, the same separator throughout. */
const MAC = /^([0-9a-fA-F]{2})([:-])([0-9a-fA-F]{2})\2([0-9a-fA-F]{2})\2([0-9a-fA-F]{2})\2([0-9a-fA-F]{2})\2([0-9a-fA-F]{2})$/;

/** The six bytes of "aa:bb:cc:dd:ee:ff" (or with '-'); undefined when `text` is not one. */
export function macBytes(text: string): Uint8Array | undefined {
  const m = MAC.exec(text);
  if (!m) return undefined;
  return Uint8Array.from([m[1], m[3], m[4], m[5], m[6], m[7]].map((x) => parseInt(x as string, 16)));
}
