// Output replay ring: the last `capacity` bytes of a console, addressed by a
// running offset (bytes ever written), so a client can resume exactly. A
// console's ring lives in shared memory (a memfd the session's init keeps,
// native/src/agent.h), so its bytes and its offset outlive the daemon: the
// next daemon maps the same pages and shows the same screen.
import { addon } from '../native/addon.js';
import { RING_CAPACITY_AT, RING_HEADER, RING_WRITTEN_AT } from '../native/contract.gen.js';

export class ByteRing {
  private readonly buf: Buffer;
  /** The shared header, when the ring is a mapping. */
  private readonly header: Buffer | undefined;
  private written = 0; // running offset of the next byte

  /** In this process's memory, or over a mapping (header, then data: RING_* in agent.h). */
  constructor(
    readonly capacity: number,
    mapping?: Buffer,
  ) {
    if (!Number.isInteger(capacity) || capacity <= 0) throw new RangeError('ring capacity must be a positive integer');
    if (!mapping) {
      this.buf = Buffer.alloc(capacity);
      return;
    }
    if (mapping.length !== RING_HEADER + capacity) throw new RangeError('a ring mapping must hold its header and capacity');
    this.header = mapping.subarray(0, RING_HEADER);
    this.buf = mapping.subarray(RING_HEADER);
    this.written = Number(this.header.readBigUInt64LE(RING_WRITTEN_AT));
  }

  /** A new ring in shared memory, and its memfd (the caller's to hand over and close). */
  static shared(capacity: number): { ring: ByteRing; fd: number } {
    const { fd, buffer } = addon().ringCreate(capacity);
    return { ring: new ByteRing(capacity, buffer), fd };
  }

  /**
   * A ring a session's init kept: its bytes and its offset as the last writer
   * left them (the fd stays the caller's). It came from a session, so its
   * size is held to ours (`maxCapacity`) and its offset to what a number holds.
   */
  static mapped(fd: number, maxCapacity: number): ByteRing {
    const buffer = addon().ringMap(fd);
    const capacity = Number(buffer.readBigUInt64LE(RING_CAPACITY_AT));
    if (capacity > maxCapacity) throw new RangeError(`the ring holds ${capacity} bytes, more than terminal.ring_bytes (${maxCapacity})`);
    if (buffer.readBigUInt64LE(RING_WRITTEN_AT) > BigInt(Number.MAX_SAFE_INTEGER)) throw new RangeError('the ring\'s offset is past what an offset can be');
    return new ByteRing(capacity, buffer);
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
    // The bytes first, then the offset that says they are there.
    this.header?.writeBigUInt64LE(BigInt(this.written), RING_WRITTEN_AT);
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
