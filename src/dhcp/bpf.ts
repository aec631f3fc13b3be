// Classic BPF (the SO_ATTACH_FILTER kind): a small assembler with labels, the DHCP server's filter,
// and an interpreter for the instructions that filter uses, so the program is tested in unit tests
// as well as by the kernel.
import { HOST_LE } from '../common/endian.js';

export const BPF = {
  LD: 0x00, LDX: 0x01, ALU: 0x04, JMP: 0x05, RET: 0x06,
  W: 0x00, H: 0x08, B: 0x10,
  IMM: 0x00, ABS: 0x20, IND: 0x40, MSH: 0xa0,
  JA: 0x00, JEQ: 0x10, JGT: 0x20, JGE: 0x30, JSET: 0x40,
  K: 0x00, X: 0x08,
} as const;

/** Ancillary data offsets (linux/filter.h): loads at SKF_AD_OFF + n read packet metadata. */
export const SKF_AD_OFF = -0x1000;
export const SKF_AD_PROTOCOL = 0;
export const SKF_AD_PKTTYPE = 4;
export const PACKET_OUTGOING = 4;

export interface Insn {
  code: number;
  /** Jump targets: an instruction count, or a label. */
  jt?: number | string;
  jf?: number | string;
  k?: number;
}
export type Line = Insn | { label: string };

/** Resolves labels and encodes struct sock_filter records in host byte order. */
export function assemble(lines: readonly Line[]): Uint8Array {
  const labels = new Map<string, number>();
  const insns: Insn[] = [];
  for (const l of lines) {
    if ('label' in l) labels.set(l.label, insns.length);
    else insns.push(l);
  }
  const out = new Uint8Array(insns.length * 8);
  const dv = new DataView(out.buffer);
  const le = HOST_LE;
  insns.forEach((ins, i) => {
    const target = (t: number | string | undefined): number => {
      if (t === undefined) return 0;
      if (typeof t === 'number') return t;
      const at = labels.get(t);
      if (at === undefined) throw new Error(`BPF label "${t}" is not defined`);
      const off = at - i - 1;
      if (off < 0 || off > 255) throw new Error(`BPF jump to "${t}" from ${i} is out of range`);
      return off;
    };
    dv.setUint16(i * 8, ins.code, le);
    dv.setUint8(i * 8 + 2, target(ins.jt));
    dv.setUint8(i * 8 + 3, target(ins.jf));
    dv.setUint32(i * 8 + 4, (ins.k ?? 0) >>> 0, le);
  });
  return out;
}

/**
 * The DHCP server's filter for a SOCK_DGRAM AF_PACKET socket (data starts at the network header) of
 * ETH_P_IP or ETH_P_ALL: IPv4 (the frame's EtherType, checked first: an ETH_P_ALL socket sees every
 * protocol), UDP to port 67, unfragmented, not sent by this host. Everything else stays in the kernel.
 */
export function dhcpServerFilter(port = 67): Uint8Array {
  const { LD, LDX, JMP, RET, W, H, B, ABS, IND, MSH, JEQ, JSET, K } = BPF;
  return assemble([
    { code: LD | W | ABS, k: SKF_AD_OFF + SKF_AD_PROTOCOL },
    { code: JMP | JEQ | K, k: 0x0800, jt: 0, jf: 'drop' },
    { code: LD | W | ABS, k: SKF_AD_OFF + SKF_AD_PKTTYPE },
    { code: JMP | JEQ | K, k: PACKET_OUTGOING, jt: 'drop', jf: 0 },
    { code: LD | B | ABS, k: 9 }, // protocol
    { code: JMP | JEQ | K, k: 17, jt: 0, jf: 'drop' },
    { code: LD | H | ABS, k: 6 }, // flags and fragment offset
    { code: JMP | JSET | K, k: 0x3fff, jt: 'drop', jf: 0 }, // MF or an offset: a fragment
    { code: LDX | B | MSH, k: 0 }, // X = IHL * 4
    { code: LD | H | IND, k: 2 }, // UDP destination port
    { code: JMP | JEQ | K, k: port, jt: 0, jf: 'drop' },
    { code: RET | K, k: 0x40000 },
    { label: 'drop' },
    { code: RET | K, k: 0 },
  ]);
}

/** A filter that accepts nothing (for a socket that must exist but never read). */
export function dropAllFilter(): Uint8Array {
  return assemble([{ code: BPF.RET | BPF.K, k: 0 }]);
}

/**
 * Runs a program over `pkt` like the kernel would, for the instructions above (loads, MSH, jumps,
 * returns). Returns the accepted length (0 = dropped). A load outside the packet drops, as in the
 * kernel. `protocol`: the frame's EtherType (default IPv4).
 */
export function runFilter(program: Uint8Array, pkt: Uint8Array, meta: { pkttype: number; protocol?: number }): number {
  const dv = new DataView(program.buffer, program.byteOffset, program.byteLength);
  const le = HOST_LE;
  const n = program.length / 8;
  let a = 0;
  let x = 0;
  const load = (off: number, size: number): number | undefined => {
    if (off === SKF_AD_OFF + SKF_AD_PKTTYPE) return meta.pkttype;
    if (off === SKF_AD_OFF + SKF_AD_PROTOCOL) return meta.protocol ?? 0x0800; // EtherType, host order
    if (off < 0 || off + size > pkt.length) return undefined;
    let v = 0;
    for (let i = 0; i < size; i++) v = (v << 8) | (pkt[off + i] as number);
    return v >>> 0;
  };
  for (let pc = 0; pc < n; pc++) {
    const code = dv.getUint16(pc * 8, le);
    const jt = dv.getUint8(pc * 8 + 2);
    const jf = dv.getUint8(pc * 8 + 3);
    const k = dv.getUint32(pc * 8 + 4, le);
    const cls = code & 0x07;
    if (cls === BPF.RET) return k;
    if (cls === BPF.LD) {
      const size = (code & 0x18) === BPF.B ? 1 : (code & 0x18) === BPF.H ? 2 : 4;
      const mode = code & 0xe0;
      const off = mode === BPF.ABS ? (k | 0) : mode === BPF.IND ? x + (k | 0) : NaN;
      const v = load(off, size);
      if (v === undefined) return 0;
      a = v;
    } else if (cls === BPF.LDX && (code & 0xe0) === BPF.MSH) {
      const v = load(k, 1);
      if (v === undefined) return 0;
      x = (v & 0xf) * 4;
    } else if (cls === BPF.JMP) {
      const op = code & 0xf0;
      const cmp = (code & 0x08) === BPF.X ? x : k;
      if (op === BPF.JA) {
        pc += k;
        continue;
      }
      const taken = op === BPF.JEQ ? a === cmp : op === BPF.JGT ? a > cmp : op === BPF.JGE ? a >= cmp : (a & cmp) !== 0;
      pc += taken ? jt : jf;
    } else {
      throw new Error(`BPF instruction 0x${code.toString(16)} is not supported by this interpreter`);
    }
  }
  return 0;
}
