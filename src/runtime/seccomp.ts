// The container's system call filter: the calls systemd-nspawn (v252, src/nspawn/nspawn-seccomp.c)
// "knowingly excludes" from its allow list — host-global or kernel-level operations that namespaces
// do not confine (kexec, modules, swap, keyrings, open_by_handle_at, bpf, perf, clock setting, …)
// — fail with EPERM. The rest is allowed (nspawn's allow list covers everything else a normal OS
// uses). Built here as classic BPF bytes; the clone child installs it just before exec.
//
// Syscall numbers: uapi asm/unistd_64.h (x86-64; x32 shares them with bit 30 set) and
// asm/unistd_32.h (i386 binaries on an x86-64 kernel).
import { CAPS, type CapName } from './caps.js';

const AUDIT_ARCH_X86_64 = 0xc000003e;
const AUDIT_ARCH_I386 = 0x40000003;
const X32_SYSCALL_BIT = 0x40000000;
const SECCOMP_RET_ALLOW = 0x7fff0000;
const SECCOMP_RET_ERRNO = 0x00050000;
const EPERM = 1;

const BPF_LD_W_ABS = 0x20;
const BPF_JEQ_K = 0x15;
const BPF_RET_K = 0x06;
const BPF_AND_K = 0x54;

/** [x86-64, i386] numbers; null where the architecture has no such call. */
type Numbers = readonly [number | null, number | null];

/** Always refused: not namespaced, or a way around the container's confinement. */
const DENIED: Record<string, Numbers> = {
  kexec_load: [246, 283], kexec_file_load: [320, null], open_by_handle_at: [304, 342],
  swapon: [167, 87], swapoff: [168, 115], bpf: [321, 357], perf_event_open: [298, 336],
  add_key: [248, 286], keyctl: [250, 288], request_key: [249, 287], lookup_dcookie: [212, 253],
  quotactl: [179, 131], quotactl_fd: [443, 443], nfsservctl: [180, 169], fanotify_init: [300, 338],
  // @cpu-emulation, @pkey
  modify_ldt: [154, 123], vm86: [null, 166], vm86old: [null, 113],
  pkey_alloc: [330, 381], pkey_free: [331, 382], pkey_mprotect: [329, 380],
  // @obsolete
  uselib: [134, 86], _sysctl: [156, 149], sysfs: [139, 135], ustat: [136, 62],
  create_module: [174, 127], get_kernel_syms: [177, 130], query_module: [178, 167],
  afs_syscall: [183, 137], tuxcall: [184, null], security: [185, null], getpmsg: [181, 188],
  putpmsg: [182, 189], vserver: [236, 273], bdflush: [null, 134], break: [null, 17],
  ftime: [null, 35], gtty: [null, 32], idle: [null, 112], lock: [null, 53], mpx: [null, 56],
  prof: [null, 44], profil: [null, 98], sgetmask: [null, 68], ssetmask: [null, 69],
  stty: [null, 31], ulimit: [null, 58],
};

/** Refused unless the container keeps the capability that makes them meaningful. */
const DENIED_WITHOUT_CAP: ReadonlyArray<[CapName, Record<string, Numbers>]> = [
  ['CAP_SYS_TIME', {
    settimeofday: [164, 79], clock_settime: [227, 264], clock_settime64: [null, 404],
    clock_adjtime: [305, 343], clock_adjtime64: [null, 405], adjtimex: [159, 124], stime: [null, 25],
  }],
  ['CAP_SYS_MODULE', { init_module: [175, 128], finit_module: [313, 350], delete_module: [176, 129] }],
  ['CAP_SYS_RAWIO', { iopl: [172, 110], ioperm: [173, 101] }],
  ['CAP_SYS_PACCT', { acct: [163, 51] }],
  ['CAP_SYSLOG', { syslog: [103, 103] }],
];

/** Names of the calls refused for a container with bounding set `caps`. */
export function deniedSyscalls(caps: bigint): string[] {
  const names = Object.keys(DENIED);
  for (const [cap, calls] of DENIED_WITHOUT_CAP) {
    if (!((caps >> BigInt(CAPS[cap])) & 1n)) names.push(...Object.keys(calls));
  }
  return names.sort();
}

function numbersOf(name: string): Numbers {
  const n = DENIED[name] ?? DENIED_WITHOUT_CAP.map(([, c]) => c[name]).find((x) => x !== undefined);
  if (!n) throw new Error(`unknown system call ${name}`);
  return n;
}

function insn(code: number, jt: number, jf: number, k: number): number[] {
  return [code, jt, jf, k >>> 0];
}

/**
 * The filter as `struct sock_filter[]` bytes (little-endian, x86-64 hosts). Each call: a compare
 * that jumps over the following "return EPERM" when it does not match, so no jump is long.
 */
export function buildSeccompFilter(caps: bigint): Uint8Array {
  const names = deniedSyscalls(caps);
  const x64 = names.map((n) => numbersOf(n)[0]).filter((n): n is number => n !== null);
  const i386 = names.map((n) => numbersOf(n)[1]).filter((n): n is number => n !== null);
  const prog: number[][] = [];
  const deny = insn(BPF_RET_K, 0, 0, SECCOMP_RET_ERRNO | EPERM);
  const allow = insn(BPF_RET_K, 0, 0, SECCOMP_RET_ALLOW);
  const block = (nrs: number[], mask: boolean): number[][] => {
    const b: number[][] = [insn(BPF_LD_W_ABS, 0, 0, 0)];
    if (mask) b.push(insn(BPF_AND_K, 0, 0, ~X32_SYSCALL_BIT));
    for (const nr of nrs) b.push(insn(BPF_JEQ_K, 0, 1, nr), deny);
    b.push(allow);
    return b;
  };
  const x64Block = block(x64, true);
  const i386Block = block(i386, false);
  prog.push(insn(BPF_LD_W_ABS, 0, 0, 4)); // seccomp_data.arch
  prog.push(insn(BPF_JEQ_K, 0, x64Block.length, AUDIT_ARCH_X86_64), ...x64Block);
  prog.push(insn(BPF_JEQ_K, 0, i386Block.length, AUDIT_ARCH_I386), ...i386Block);
  prog.push(allow);
  if (prog.some(([, jt, jf]) => (jt as number) > 255 || (jf as number) > 255)) throw new Error('seccomp filter jump too long');
  const out = new Uint8Array(prog.length * 8);
  const dv = new DataView(out.buffer);
  prog.forEach(([code, jt, jf, k], i) => {
    dv.setUint16(i * 8, code as number, true);
    dv.setUint8(i * 8 + 2, jt as number);
    dv.setUint8(i * 8 + 3, jf as number);
    dv.setUint32(i * 8 + 4, k as number, true);
  });
  return out;
}

/** Whether this filter applies here (it is written for x86-64 kernels). */
export function seccompSupported(arch: string = process.arch): boolean {
  return arch === 'x64';
}
