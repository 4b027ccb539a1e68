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
const OPEN = Buffer.from('{"sessions":[');
const COMMA = Buffer.from(',');
const CLOSE = Buffer.from(']}');

/**
 * The list's JSON as the bytes sent: the rows' kept encodings copied into one
 * buffer (a 900-row list is 600 KiB: as one string it was joined, then
 * measured and encoded again to be sent, each a pass over all of it).
 */
export function listJson(rows: ReadonlyArray<object>): Buffer {
  const parts: Buffer[] = [OPEN];
  for (let i = 0; i < rows.length; i++) {
    if (i > 0) parts.push(COMMA);
    parts.push(rowBytes(rows[i]!));
  }
  parts.push(CLOSE);
  return Buffer.concat(parts);
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
