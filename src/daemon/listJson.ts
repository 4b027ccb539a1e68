// A list's JSON, each frozen row serialized once. The rows of another
// node's list that a node keeps (src/fleet/lastAnswers.ts: deep-frozen, the
// same objects while that node answers 304 or sends only the rows that
// changed) and this node's own views (src/sessions/view.ts ListViews: the same
// objects while they show the same) go out list after list as they are: a
// row is serialized the first time it is sent, and its text is kept with it
// (a WeakMap: the text goes with the row). Kubernetes' watch cache keeps an
// object's encoding with it for the same reason. A row not frozen (made for
// this list: a pending or unreachable one) is serialized each time.
const serialized = new WeakMap<object, string>();

const encoded = new WeakMap<object, Buffer>();
/** A run's rows encoded as one block, comma-separated, kept with the (frozen) array; 'seen': sent once, row by row. */
const blocks = new WeakMap<ReadonlyArray<object>, Buffer | 'seen'>();
const OPEN = Buffer.from('{"sessions":[');
const COMMA = Buffer.from(',');
const CLOSE = Buffer.from(']}');
/** Shorter runs go row by row: a block saves a copy a row, not worth a block kept for a few. */
const MIN_RUN = 16;

/**
 * The list's JSON as the bytes sent: the rows' kept encodings copied into one
 * buffer (a 900-row list is 600 KiB: as one string it was joined, then
 * measured and encoded again to be sent, each a pass over all of it).
 * `runs`: frozen arrays of rows that may stand whole, in order, in `rows`
 * (another node's list as this node keeps it: the same array while its rows
 * are the same); where one does, its rows go out as one block encoded once
 * for the array (a copy, not one a row), from the second list that sends
 * it: a list that changes at every call (a node whose sessions keep
 * changing) would make a block each time and send it once.
 */
export function listJson(rows: ReadonlyArray<object>, runs: ReadonlyArray<ReadonlyArray<object>> = []): Buffer {
  return Buffer.concat(listParts(rows, runs));
}

/**
 * listJson()'s bytes as the few buffers they are sent as (one writev): the
 * rows that go one by one copied into one buffer between blocks, each block
 * as it is kept (another node's list, 200 KiB, not copied again per list).
 */
export function listParts(rows: ReadonlyArray<object>, runs: ReadonlyArray<ReadonlyArray<object>> = []): Buffer[] {
  const starts = new Map<object, ReadonlyArray<object>>();
  for (const r of runs) if (r.length >= MIN_RUN && Object.isFrozen(r)) starts.set(r[0]!, r);
  const out: Buffer[] = [];
  let parts: Buffer[] = [OPEN];
  for (let i = 0; i < rows.length; ) {
    if (i > 0) parts.push(COMMA);
    const run = starts.get(rows[i]!);
    const block = run !== undefined && standsAt(rows, i, run) ? blockBytes(run) : undefined;
    if (block !== undefined) {
      out.push(Buffer.concat(parts), block);
      parts = [];
      i += run!.length;
    } else parts.push(rowBytes(rows[i++]!));
  }
  parts.push(CLOSE);
  out.push(Buffer.concat(parts));
  return out;
}

/** Whether `run` stands whole at `at` in `rows` (the same rows, by identity: a row filtered out or added breaks it). */
function standsAt(rows: ReadonlyArray<object>, at: number, run: ReadonlyArray<object>): boolean {
  if (at + run.length > rows.length) return false;
  for (let j = 0; j < run.length; j++) if (rows[at + j] !== run[j]) return false;
  return true;
}

/** The run's block; undefined the first time it is sent (then row by row). */
function blockBytes(run: ReadonlyArray<object>): Buffer | undefined {
  let bytes = blocks.get(run);
  if (bytes === undefined) blocks.set(run, 'seen');
  else if (bytes === 'seen') {
    const parts: Buffer[] = [];
    for (let j = 0; j < run.length; j++) {
      if (j > 0) parts.push(COMMA);
      parts.push(rowBytes(run[j]!));
    }
    blocks.set(run, (bytes = Buffer.concat(parts)));
  }
  return bytes;
}

/** One row's JSON encoded, kept with it when it is frozen (as its text is). */
function rowBytes(r: object): Buffer {
  if (!Object.isFrozen(r)) return Buffer.from(JSON.stringify(r));
  let bytes = encoded.get(r);
  if (bytes === undefined) encoded.set(r, (bytes = ownBytes(rowJson(r))));
  return bytes;
}

/** `text` encoded in a buffer of its own: a small Buffer.from() is a slice of a shared 8 KiB pool, which a kept row would hold whole. */
function ownBytes(text: string): Buffer {
  const bytes = Buffer.allocUnsafeSlow(Buffer.byteLength(text));
  bytes.write(text);
  return bytes;
}

/** One row's JSON: kept with it when it is frozen (deep-frozen, as every shared row is: src/vocab/frozen.ts). */
export function rowJson(r: object): string {
  if (!Object.isFrozen(r)) return JSON.stringify(r);
  let text = serialized.get(r);
  if (text === undefined) serialized.set(r, (text = JSON.stringify(r)));
  return text;
}
