// Compiles the seccomp policy into a classic BPF program (struct sock_filter
// array) without libseccomp. Layout, top to bottom:
//   architecture check (kill anything else) -> [x86_64: x32 bit -> kill] ->
//   number above the highest known -> ENOSYS -> one block per rule -> allow.
// Every conditional jump is local (0 or 1 instruction); distances go through
// BPF_JA, whose 32-bit offset has no practical limit, so lists of any length
// compile.
import { AARCH64_SYSCALLS, X86_64_SYSCALLS } from './syscallTable.js';
import { ENOSYS, SECCOMP_POLICY, type ArgTest, type Rule } from './seccompPolicy.js';
import { MAX_BPF_INSNS } from '../native/contract.gen.js';

export interface Insn {
  code: number;
  jt: number;
  jf: number;
  k: number;
}

export const BPF = {
  LD_W_ABS: 0x20,
  JMP_JA: 0x05,
  JMP_JEQ_K: 0x15,
  JMP_JGT_K: 0x25,
  JMP_JSET_K: 0x45,
  RET_K: 0x06,
} as const;

export const SECCOMP_RET = {
  KILL_PROCESS: 0x80000000,
  ERRNO: 0x00050000,
  ALLOW: 0x7fff0000,
} as const;

/** Offsets into struct seccomp_data. */
export const DATA = { nr: 0, arch: 4, argLow: (i: number) => 16 + 8 * i } as const;

export interface Arch {
  name: 'x86_64' | 'aarch64';
  audit: number;
  table: Readonly<Record<string, number>>;
  /** x86_64: numbers with this bit are the x32 ABI. */
  x32Bit?: number;
}

export const ARCHES: Record<'x86_64' | 'aarch64', Arch> = {
  x86_64: { name: 'x86_64', audit: 0xc000003e, table: X86_64_SYSCALLS, x32Bit: 0x40000000 },
  aarch64: { name: 'aarch64', audit: 0xc00000b7, table: AARCH64_SYSCALLS },
};

export function archForNode(nodeArch: string = process.arch): Arch {
  if (nodeArch === 'x64') return ARCHES.x86_64;
  if (nodeArch === 'arm64') return ARCHES.aarch64;
  throw new Error(`no seccomp policy for architecture ${nodeArch}: sessions cannot be confined here`);
}

/** What enclave-init takes (native/src/harden.h): the kernel's own BPF_MAXINSNS. */
const MAX_INSNS = MAX_BPF_INSNS;

const stmt = (code: number, k: number): Insn => ({ code, jt: 0, jf: 0, k: k >>> 0 });
const jump = (code: number, k: number, jt: number, jf: number): Insn => {
  if (jt > 255 || jf > 255) throw new RangeError(`BPF conditional jump too far (${jt}/${jf})`);
  return { code, jt, jf, k: k >>> 0 };
};
const ret = (v: number) => stmt(BPF.RET_K, v);
const errno = (e: number) => ret(SECCOMP_RET.ERRNO | e);

/** Body of a conditional rule; entered with A = nr, leaves with A = nr. */
function argBlock(test: ArgTest, action: Insn): Insn[] {
  const load = stmt(BPF.LD_W_ABS, DATA.argLow(test.arg));
  const reload = stmt(BPF.LD_W_ABS, DATA.nr);
  if ('anyBitOf' in test) {
    return [load, jump(BPF.JMP_JSET_K, test.anyBitOf, 0, 1), action, reload];
  }
  if ('oneOf' in test) {
    // match -> the action right after it; no match -> next value.
    return [load, ...test.oneOf.flatMap((v) => [jump(BPF.JMP_JEQ_K, v, 0, 1), action]), reload];
  }
  // noneOf: a listed value jumps (BPF_JA, any distance) to the reload; the
  // end of the list is the action.
  const n = test.noneOf.length;
  const body: Insn[] = [load];
  test.noneOf.forEach((v, i) => {
    const remaining = n - 1 - i; // pairs after this one
    body.push(jump(BPF.JMP_JEQ_K, v, 0, 1), stmt(BPF.JMP_JA, remaining * 2 + 1));
  });
  body.push(action, reload);
  return body;
}

function ruleBlocks(rule: Rule, arch: Arch): Insn[] {
  const out: Insn[] = [];
  const action = errno(rule.errno);
  for (const name of rule.syscalls) {
    const nr = arch.table[name];
    if (nr === undefined) continue; // not on this architecture
    if (!rule.when) {
      out.push(jump(BPF.JMP_JEQ_K, nr, 0, 1), action);
      continue;
    }
    const body = argBlock(rule.when, action);
    // Not this syscall: skip the body with BPF_JA (no 255 limit).
    out.push(jump(BPF.JMP_JEQ_K, nr, 1, 0), stmt(BPF.JMP_JA, body.length), ...body);
  }
  return out;
}

export function highestKnown(arch: Arch): number {
  return Math.max(...Object.values(arch.table));
}

export function compileSeccomp(arch: Arch, policy: readonly Rule[] = SECCOMP_POLICY): Insn[] {
  for (const rule of policy) {
    for (const name of rule.syscalls) {
      if (!(name in ARCHES.x86_64.table) && !(name in ARCHES.aarch64.table)) throw new Error(`seccomp policy names unknown syscall '${name}'`);
    }
  }
  const prog: Insn[] = [
    stmt(BPF.LD_W_ABS, DATA.arch),
    jump(BPF.JMP_JEQ_K, arch.audit, 1, 0),
    ret(SECCOMP_RET.KILL_PROCESS),
    stmt(BPF.LD_W_ABS, DATA.nr),
  ];
  if (arch.x32Bit) prog.push(jump(BPF.JMP_JSET_K, arch.x32Bit, 0, 1), ret(SECCOMP_RET.KILL_PROCESS));
  prog.push(jump(BPF.JMP_JGT_K, highestKnown(arch), 0, 1), errno(ENOSYS));
  for (const rule of policy) prog.push(...ruleBlocks(rule, arch));
  prog.push(ret(SECCOMP_RET.ALLOW));
  if (prog.length > MAX_INSNS) throw new RangeError(`seccomp program has ${prog.length} instructions, the kernel takes ${MAX_INSNS}`);
  return prog;
}

/** struct sock_filter[], little-endian as the kernel reads it on both arches. */
export function serializeBpf(prog: Insn[]): Buffer {
  const buf = Buffer.alloc(prog.length * 8);
  prog.forEach((insn, i) => {
    buf.writeUInt16LE(insn.code, i * 8);
    buf.writeUInt8(insn.jt, i * 8 + 2);
    buf.writeUInt8(insn.jf, i * 8 + 3);
    buf.writeUInt32LE(insn.k, i * 8 + 4);
  });
  return buf;
}
