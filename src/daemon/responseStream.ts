// A Writable onto an HTTP response whose status goes out with the first
// byte: until then a failure can still be a JSON error reply.
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
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, done: (e?: Error | null) => void): void {
    if (!this.started) {
      this.res.writeHead(200, this.headers);
      this.started = true;
    }
    if (this.res.write(chunk)) done();
    else this.res.once('drain', () => done());
  }
}
