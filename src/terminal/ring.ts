// Output replay ring: the last `capacity` bytes of a console, addressed by a
// running offset (bytes ever written), so a client can resume exactly.
export class ByteRing {
  private readonly buf: Buffer;
  private written = 0; // running offset of the next byte

  constructor(readonly capacity: number) {
    if (!Number.isInteger(capacity) || capacity <= 0) throw new RangeError('ring capacity must be a positive integer');
    this.buf = Buffer.alloc(capacity);
  }

  /** Offset of the next byte written (= total bytes ever written). */
  get end(): number {
    return this.written;
  }

  /** Oldest offset still held. */
  get start(): number {
    return Math.max(0, this.written - this.capacity);
  }

  write(data: Uint8Array): void {
    let src = data;
    if (src.length >= this.capacity) src = src.subarray(src.length - this.capacity);
    const skipped = data.length - src.length;
    let pos = (this.written + skipped) % this.capacity;
    const first = Math.min(src.length, this.capacity - pos);
    this.buf.set(src.subarray(0, first), pos);
    if (first < src.length) this.buf.set(src.subarray(first), 0);
    pos = (pos + src.length) % this.capacity;
    this.written += data.length;
  }

  /** Bytes from `offset` to the end, or undefined if `offset` is no longer (or not yet) held. */
  since(offset: number): Buffer | undefined {
    if (!Number.isInteger(offset) || offset < this.start || offset > this.written) return undefined;
    const len = this.written - offset;
    const out = Buffer.allocUnsafe(len);
    const from = offset % this.capacity;
    const first = Math.min(len, this.capacity - from);
    this.buf.copy(out, 0, from, from + first);
    if (first < len) this.buf.copy(out, first, 0, len - first);
    return out;
  }
}
