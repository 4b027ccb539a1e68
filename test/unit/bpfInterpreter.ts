// A classic-BPF interpreter for the instructions the seccomp builder emits,
// run against a synthetic struct seccomp_data, so tests check behaviour.
import { BPF, DATA, type Insn } from '../../src/isolation/bpf.js';

export interface Call {
  arch: number;
  nr: number;
  args?: bigint[];
}

export function seccompData(c: Call): Buffer {
  const b = Buffer.alloc(64);
  b.writeInt32LE(c.nr, DATA.nr);
  b.writeUInt32LE(c.arch, DATA.arch);
  (c.args ?? []).forEach((a, i) => b.writeBigUInt64LE(BigInt.asUintN(64, a), 16 + 8 * i));
  return b;
}

/** Returns the filter's verdict (SECCOMP_RET_*) for the call. */
export function runBpf(prog: Insn[], call: Call): number {
  const data = seccompData(call);
  let a = 0;
  for (let pc = 0, steps = 0; pc < prog.length; pc++) {
    if (++steps > 100_000) throw new Error('runaway program');
    const i = prog[pc]!;
    switch (i.code) {
      case BPF.LD_W_ABS:
        if (i.k + 4 > data.length) throw new Error(`load out of bounds at ${pc}`);
        a = data.readUInt32LE(i.k);
        break;
      case BPF.JMP_JA:
        pc += i.k;
        break;
      case BPF.JMP_JEQ_K:
        pc += a === i.k ? i.jt : i.jf;
        break;
      case BPF.JMP_JGT_K:
        pc += a > i.k ? i.jt : i.jf;
        break;
      case BPF.JMP_JSET_K:
        pc += (a & i.k) !== 0 ? i.jt : i.jf;
        break;
      case BPF.RET_K:
        return i.k >>> 0;
      default:
        throw new Error(`unknown opcode 0x${i.code.toString(16)} at ${pc}`);
    }
    if (pc + 1 > prog.length) throw new Error(`jump past the end at ${pc}`);
  }
  throw new Error('fell off the end of the program');
}
