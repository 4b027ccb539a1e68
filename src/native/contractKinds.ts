// How the daemon represents each argument kind of the op table (ops.h) and
// each field kind of the control channel (agent.h): the TypeScript type, and
// for op arguments the string the plan carries. The kinds themselves, and
// what enclave-init requires of them, are the C's (contract.gen.ts lists
// them, and does not compile if a kind has no entry here).

export type MountFlag = 'nosuid' | 'nodev' | 'noexec' | 'ro';

/** The TypeScript type of an op argument, by kind letter. */
export interface Arg {
  /** An absolute clean path (host). */
  A: string;
  /** A clean relative path (below the new root). */
  R: string;
  /** Text (a link target). */
  T: string;
  /** A decimal number. */
  N: number;
  /** An octal mode (the plan carries four octal digits). */
  M: number;
  /** Mount flags; none is "-". */
  F: readonly MountFlag[];
  /** Mount data: k=v,k=v. */
  D: string;
  /** An interface name. */
  I: string;
  /** A MAC address. */
  E: string;
  /** An IPv4 address. */
  P: string;
  G: 'allow' | 'deny';
  /** A DNS label. */
  H: string;
  /** An rlimit name (NOFILE, ...). */
  L: string;
  /** An rlimit value. */
  V: number | 'unlimited';
  /** Capabilities kept: a hex mask within CAPS_KEEP_MAX. */
  K: string;
  /** A seccomp program (struct sock_filter array); the plan carries its hex. */
  X: Buffer;
  /** A blob index. */
  B: number;
  /** An environment variable name. */
  S: string;
  /** An environment variable value (may be empty). */
  W: string;
}

export interface Codec<T> {
  encode(v: T): string;
  /** Throws a RangeError for what this kind cannot hold. */
  decode(s: string): T;
}

const text: Codec<string> = { encode: (v) => v, decode: (s) => s };

function decimal(s: string): number {
  if (!/^\d{1,18}$/.test(s)) throw new RangeError(`not a decimal number: ${JSON.stringify(s.slice(0, 40))}`);
  return Number(s);
}

const number: Codec<number> = { encode: (v) => String(v), decode: decimal };

export const argKinds: { [K in keyof Arg]: Codec<Arg[K]> } = {
  A: text,
  R: text,
  T: text,
  N: number,
  M: {
    encode: (v) => v.toString(8).padStart(4, '0'),
    decode: (s) => {
      if (!/^[0-7]{1,4}$/.test(s)) throw new RangeError(`not an octal mode: ${JSON.stringify(s.slice(0, 40))}`);
      return parseInt(s, 8);
    },
  },
  F: {
    encode: (v) => (v.length === 0 ? '-' : v.join(',')),
    decode: (s) => {
      if (s === '-') return [];
      const flags = s.split(',');
      for (const f of flags) if (!['nosuid', 'nodev', 'noexec', 'ro'].includes(f)) throw new RangeError(`not a mount flag: ${JSON.stringify(f.slice(0, 40))}`);
      return flags as MountFlag[];
    },
  },
  D: text,
  I: text,
  E: text,
  P: text,
  G: {
    encode: (v) => v,
    decode: (s) => {
      if (s !== 'allow' && s !== 'deny') throw new RangeError(`not allow or deny: ${JSON.stringify(s.slice(0, 40))}`);
      return s;
    },
  },
  H: text,
  L: text,
  V: { encode: (v) => String(v), decode: (s) => (s === 'unlimited' ? s : decimal(s)) },
  K: text,
  X: {
    encode: (v) => v.toString('hex'),
    decode: (s) => {
      if (!/^([0-9a-f]{2})*$/.test(s)) throw new RangeError('not a hex seccomp program');
      return Buffer.from(s, 'hex');
    },
  },
  B: number,
  S: text,
  W: text,
};

/** The TypeScript type of a control message field, by kind. */
export interface Field {
  /** An exec id. */
  ID: string;
  /** "0" or "1" on the wire. */
  FLAG: boolean;
  NUM: number;
  PATH: string;
  TEXT: string;
  /** A count, then the items. */
  LIST: readonly string[];
  /** Octal on the wire. */
  MODE: number;
  /** A file's content, byte for byte. */
  BYTES: string | Buffer;
}
