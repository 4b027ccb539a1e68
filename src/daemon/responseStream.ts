// A Writable onto an HTTP response whose status goes out with the first
// byte: until then a failure can still be a JSON error reply. When the
// client goes away it is destroyed ('close'), never left waiting for a
// 'drain' that will not come, and it never throws an 'error' at a daemon
// that has no listener for it.
import type { OutgoingHttpHeaders, ServerResponse } from 'node:http';
import { Writable } from 'node:stream';
import { finished } from 'node:stream/promises';

export { EXPORT_TRAILER, SNAPSHOT_TRAILER } from '../api/protocol.js';

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

/**
 * Stream what `produce` writes as the reply, with `trailer: complete BYTES`
 * only when it is whole. Before the first byte a failure is a JSON error
 * reply (thrown); after it, the stream is cut and the client sees no trailer.
 */
export async function streamWithTrailer(res: ServerResponse, contentType: string, trailer: string, produce: (out: Writable) => Promise<number>): Promise<void> {
  const out = new ResponseStream(res, { 'content-type': contentType, trailer });
  try {
    const bytes = await produce(out);
    out.end();
    // Settles however out ends (end()'s own callback never comes for a destroyed stream).
    const flushed = await finished(out).then(
      () => out.writableFinished,
      () => false,
    );
    // The client went away while the last bytes went out: nothing to complete.
    if (!flushed || res.destroyed) return;
    res.addTrailers({ [trailer]: `complete ${bytes}` });
    res.end();
  } catch (e) {
    if (out.started) res.destroy();
    else throw e;
  }
}
