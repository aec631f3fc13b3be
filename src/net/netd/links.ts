// Which links the network subsystem serves, and for whom — decided from a link's name, kind and
// alternative names alone (pure), exactly as systemd-networkd's container files match them:
//
//   80-container-ve.network  Name=ve-*  Driver=veth    → a /28 for the machine, DHCP, masquerade
//   80-container-vz.network  Name=vz-*  Driver=bridge  → a /24 for the zone, DHCP, masquerade
//   vb-*                                               → a zone member's port: never configured;
//                                                        only read to reserve its machine's address
//
// A ve-/vb- name longer than 15 characters was shortened by whoever made the link (systemd-nspawn
// or our launcher: 11 characters + 4 of hash) and the full name set as an alternative name, so the
// machine name comes from that altname when there is one. Without one (old naming schemes truncate
// and set no altname) the visible rest of the name is the best key there is: still stable.
import { ifnameValid, shortenIfname } from '../naming.js';

export type ServedKind = 'veth' | 'zone';

export type LinkRole =
  /** ve-MACHINE: served, keyed by the machine name */
  | { role: 'veth'; ifname: string; machine: string }
  /** vz-ZONE: served, keyed by the zone name */
  | { role: 'zone'; ifname: string; zone: string }
  /** vb-MACHINE: a bridge port (served only through its zone bridge, never touched) */
  | { role: 'port'; ifname: string; machine: string };

export interface LinkFacts {
  name: string;
  /** IFLA_INFO_KIND */
  kind: string | undefined;
  altnames?: readonly string[];
}

/** The machine name behind a `PREFIX-…` link name: from the full-name altname when shortened. */
export function machineFromIfname(prefix: 've-' | 'vb-', name: string, altnames: readonly string[] = []): string | undefined {
  if (!name.startsWith(prefix)) return undefined;
  // the altname that shortens to the visible name is the unshortened one (either naming scheme)
  const full = altnames.find((a) => a.startsWith(prefix) && a.length > name.length &&
    (shortenIfname(a).name === name || shortenIfname(a, { longHash: false }).name === name));
  const machine = (full ?? name).slice(prefix.length);
  return machine.length > 0 ? machine : undefined;
}

/** What the subsystem should do with a link; undefined: leave it alone. */
export function classifyLink(link: LinkFacts): LinkRole | undefined {
  const { name, kind } = link;
  if (!ifnameValid(name)) return undefined;
  if (name.startsWith('ve-') && kind === 'veth') {
    const machine = machineFromIfname('ve-', name, link.altnames);
    return machine ? { role: 'veth', ifname: name, machine } : undefined;
  }
  if (name.startsWith('vz-') && kind === 'bridge' && name.length > 3) {
    return { role: 'zone', ifname: name, zone: name.slice(3) };
  }
  if (name.startsWith('vb-') && kind === 'veth') {
    const machine = machineFromIfname('vb-', name, link.altnames);
    return machine ? { role: 'port', ifname: name, machine } : undefined;
  }
  return undefined;
}

/** Firewall owner of a served link's masquerade entry: "ve:MACHINE" or "vz:ZONE". */
export function masqueradeOwner(kind: ServedKind, key: string): string {
  return `${kind === 'veth' ? 've' : 'vz'}:${key}`;
}

/** Whether a firewall owner is one of ours (masquerade of a served link). */
export function isMasqueradeOwner(owner: string | undefined): boolean {
  return owner !== undefined && (owner.startsWith('ve:') || owner.startsWith('vz:'));
}
