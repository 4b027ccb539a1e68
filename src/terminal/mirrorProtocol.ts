// Messages between the daemon and the screen-mirror worker (one thread, many
// terminals, keyed by id). Both ends are our code; no outside input crosses here.
export type MirrorRequest =
  | { op: 'open'; id: number; cols: number; rows: number; scrollback: number }
  | { op: 'data'; id: number; bytes: Uint8Array }
  | { op: 'resize'; id: number; cols: number; rows: number }
  | { op: 'reset'; id: number }
  | { op: 'snapshot'; id: number; req: number }
  /** Report progress once everything posted so far is parsed. */
  | { op: 'progress'; id: number }
  | { op: 'close'; id: number };

export type MirrorReply =
  | { op: 'progress'; id: number; epoch: number; processed: number }
  /** data is null when a reset overtook the request. */
  | { op: 'snapshot'; id: number; req: number; data: string | null; cols?: number; rows?: number };
