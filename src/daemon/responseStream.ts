// A Writable onto an HTTP response whose status goes out with the first
// byte: until then a failure can still be a JSON error reply. When the
// client goes away it is destroyed ('close'), never left waiting for a
// 'drain' that will not come, and it never throws an 'error' at a daemon
// that has no listener for it.
import type { OutgoingHttpHeaders, ServerResponse } from 'node:http';
import { Writable } from 'node:stream';

/** Set, with the byte count, only when a snapshot stream is complete. */
export const SNAPSHOT_TRAILER = 'x-enclave-snapshot';

export class ResponseStream extends Writable {
  started = false;

  constructor(
    private readonly res: ServerResponse,
    private readonly headers: OutgoingHttpHeaders,
  ) {
    super({ highWaterMark: 1024 * 1024 });
    res.on('close', () => this.destroy());
    res.on('error', () => this.destroy());
    // Writers learn of a lost client from 'close'; an error here is never fatal.
    this.on('error', () => undefined);
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, done: (e?: Error | null) => void): void {
    if (this.res.destroyed) return done(new Error('the client went away'));
    if (!this.started) {
      this.res.writeHead(200, this.headers);
      this.started = true;
    }
    if (this.res.write(chunk)) done();
    else this.res.once('drain', () => done());
  }
}
