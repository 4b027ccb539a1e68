// A session's console as a Node duplex stream: what is written goes to the
// shell's input (channel 0), what the shell prints is read (channel 1), and
// resize() sends channel 4. Speaks the attach protocol
// (v1.attach.enclave.dev): server events (channel 5) are parsed and emitted,
// the screen snapshot (channel 7) is emitted as 'snapshot', and output is
// acknowledged (channel 6) as the reader takes it, so a reader that keeps up
// is never dropped as too slow. Events: 'event' (AttachEvent), 'snapshot'
// (Buffer: the screen to draw before live output).
import { Duplex } from 'node:stream';
import type WebSocket from 'ws';
import { z } from 'zod';
import { Channel } from '../api/protocol.js';
import { decodeFrame, encodeFrame, exitCodeOf } from '../api/frames.js';
import { EnclaveError, ProtocolError } from './errors.js';
import { parseStatus } from './exec.js';

const size = { cols: z.number().int(), rows: z.number().int() };
/** Channel 5: what the console tells its viewers. */
export const attachEventSchema = z.discriminatedUnion('type', [
  z.object({
    type: z.literal('hello'),
    session: z.string(),
    role: z.enum(['rw', 'ro']),
    ...size,
    /** The output offset live output continues from (resume=OFFSET reconnects here). */
    offset: z.number().int(),
    /** The resume offset was honoured: exactly the missing bytes follow. */
    resumed: z.boolean(),
    /** A screen snapshot ('snapshot' event) comes before live output. */
    snapshot: z.boolean(),
    viewers: z.number().int(),
  }),
  z.object({ type: z.literal('resize'), ...size }),
  z.object({ type: z.literal('viewers'), viewers: z.number().int() }),
]);
export type AttachEvent = z.infer<typeof attachEventSchema>;
export type AttachHello = Extract<AttachEvent, { type: 'hello' }>;

/** Acknowledge output in batches of this many bytes (the daemon allows 4 MiB unacknowledged). */
const ACK_EVERY = 256 * 1024;

export class AttachStream extends Duplex {
  /** Output bytes received so far, counted as the daemon does (reconnect with resume=offset). */
  offset = 0;
  /** The hello (role, size, offset, whether a snapshot came), once it and its snapshot are here. */
  readonly ready: Promise<AttachHello>;
  /** The screen as it was at attach (channel 7), when the hello said one comes: draw it before the output. */
  screen: Buffer | undefined;
  /** The shell's exit code when it exits; undefined when the stream ends otherwise (closed, dropped). */
  readonly exit: Promise<number | undefined>;
  private acked = 0;
  private held = false;
  private code: number | undefined;

  constructor(
    private readonly ws: WebSocket,
    readonly role: 'rw' | 'ro',
  ) {
    super({ allowHalfOpen: true, readableHighWaterMark: 1024 * 1024 });
    let hello: (h: AttachHello) => void = () => undefined;
    let refused: (e: Error) => void = () => undefined;
    let waiting: AttachHello | undefined;
    this.ready = new Promise<AttachHello>((resolve, reject) => {
      hello = resolve;
      refused = reject;
    });
    this.ready.catch(() => undefined);
    this.exit = new Promise((resolve) => {
      ws.on('close', (closeCode: number, reason: Buffer) => {
        refused(new ProtocolError(`the console connection closed before its hello (${closeCode}${reason.length ? `: ${reason.toString()}` : ''})`));
        this.push(null);
        resolve(this.code);
      });
    });
    ws.on('message', (data: Buffer) => {
      const f = decodeFrame(data);
      if (!f) return;
      if (f.channel === Channel.stdout) {
        this.offset += f.payload.length;
        if (!this.push(f.payload)) {
          // The reader is behind: stop reading the socket until it asks for more (_read).
          this.held = true;
          ws.pause();
        } else this.ack(false);
      } else if (f.channel === Channel.snapshot) {
        this.screen = f.payload;
        this.emit('snapshot', f.payload);
        if (waiting) hello(waiting);
      } else if (f.channel === Channel.events) {
        const e = parseEvent(f.payload);
        if (!e) return;
        if (e.type === 'hello') {
          this.offset = this.acked = e.offset;
          // With a snapshot to come, ready once it is here (screen holds it).
          if (e.snapshot) waiting = e;
          else hello(e);
        }
        this.emit('event', e);
      } else if (f.channel === Channel.status) {
        const st = parseStatus(f.payload);
        this.code = st ? exitCodeOf(st) : undefined;
      }
    });
  }

  /** Tell the daemon what the reader has taken (every ACK_EVERY bytes, or now). */
  private ack(now: boolean): void {
    if (this.offset === this.acked || (!now && this.offset - this.acked < ACK_EVERY)) return;
    if (this.ws.readyState !== this.ws.OPEN) return;
    this.acked = this.offset;
    this.ws.send(encodeFrame(Channel.ack, Buffer.from(String(this.offset))));
  }

  override _read(): void {
    if (!this.held) return;
    this.held = false;
    this.ack(true);
    this.ws.resume();
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, done: (e?: Error | null) => void): void {
    if (this.role === 'ro') return done(new EnclaveError('read_only', 0, 'a read-only viewer cannot write to the console'));
    if (this.ws.readyState !== this.ws.OPEN) return done(new ProtocolError('the console connection is closed'));
    this.ws.send(encodeFrame(Channel.stdin, chunk), (e) => done(e ?? null));
  }

  /** Ask for a terminal size (rw viewers; the console's size policy decides, and a 'resize' event says what it became). */
  resize(cols: number, rows: number): void {
    if (this.ws.readyState !== this.ws.OPEN) return;
    this.ws.send(encodeFrame(Channel.resize, Buffer.from(JSON.stringify({ Width: cols, Height: rows }))));
  }

  /** Detach: the shell keeps running; attach again (with resume: offset) to return. */
  close(): void {
    if (this.ws.readyState === this.ws.OPEN) this.ws.close(1000, 'detached');
    else if (this.ws.readyState === this.ws.CONNECTING) this.ws.terminate();
  }

  override _destroy(err: Error | null, done: (e: Error | null) => void): void {
    this.close();
    done(err);
  }
}

function parseEvent(payload: Buffer): AttachEvent | undefined {
  let v: unknown;
  try {
    v = JSON.parse(payload.toString('utf8'));
  } catch {
    return undefined;
  }
  const e = attachEventSchema.safeParse(v);
  return e.success ? e.data : undefined;
}
