// The CLI's end of a copy stream (GET /v1/sessions/{s}/cp, Kubernetes v5
// framing): bytes in and out of the session's command, its messages, and
// its exit code. What the session writes on stderr is shown, bounded and
// without control characters: it is the session's, not the caller's.
import WebSocket from 'ws';
import { execStatusSchema, type CpQuery } from '../api/schemas.js';
import { Channel, K8S_V5_PROTOCOL } from '../api/protocol.js';
import { decodeFrame, encodeFrame, exitCodeOf } from '../terminal/channels.js';
import { ROUTES } from '../api/routes.js';
import { CliError, onUpgradeFailure, routePath } from './client.js';

const HIGH_WATER = 1024 * 1024;
const LOW_WATER = 256 * 1024;
/** The session's messages shown at most. */
const MAX_SHOWN = 64 * 1024;

type CpInput = { direction: CpQuery['direction']; path: string; archive: boolean };

export class CopyStream {
  /** Where the session command's stdout goes; until it is set, it is held (frames can come with the upgrade). */
  private reader: ((chunk: Buffer) => void) | undefined;
  private held: Buffer[] = [];
  /** Resolves with the command's exit code once the stream is over (undefined: no status came). */
  readonly closed: Promise<number | undefined>;
  private code: number | undefined;
  private shown = 0;
  private hidden = 0;

  private constructor(private readonly ws: WebSocket) {
    this.closed = new Promise((resolve) => ws.on('close', () => resolve(this.code)));
    ws.on('message', (data: Buffer) => this.onFrame(data));
  }

  static open(socket: string, session: string, q: CpInput): Promise<CopyStream> {
    const path = routePath(ROUTES.cp, { params: { session }, query: { direction: q.direction, path: q.path, archive: q.archive ? '1' : '0' } });
    const ws = new WebSocket(`ws+unix://${socket}:${path}`, [K8S_V5_PROTOCOL], { perMessageDeflate: false, maxPayload: 4 * 1024 * 1024 });
    const s = new CopyStream(ws);
    return new Promise((resolve, reject) => {
      onUpgradeFailure(ws, socket, 'copy connection', reject);
      ws.on('open', () => resolve(s));
    });
  }

  /** Read the command's stdout from now on, what came before first. */
  set onStdout(fn: (chunk: Buffer) => void) {
    this.reader = fn;
    while (this.held.length && this.reader === fn) fn(this.held.shift()!);
  }

  private onFrame(data: Buffer): void {
    const f = decodeFrame(data);
    if (!f) return;
    if (f.channel === Channel.stdout) {
      if (this.reader) this.reader(f.payload);
      else this.held.push(f.payload);
    }
    else if (f.channel === Channel.stderr) this.show(f.payload);
    else if (f.channel === Channel.status) {
      let parsed: unknown;
      try {
        parsed = JSON.parse(f.payload.toString('utf8'));
      } catch {
        parsed = undefined;
      }
      const st = execStatusSchema.safeParse(parsed);
      this.code = st.success ? exitCodeOf(st.data) : undefined;
    }
  }

  /** The session's stderr on ours: at most MAX_SHOWN bytes, control characters (but newlines and tabs) as '?'. */
  private show(chunk: Buffer): void {
    const room = Math.max(0, MAX_SHOWN - this.shown);
    const part = chunk.subarray(0, room);
    this.shown += part.length;
    this.hidden += chunk.length - part.length;
    if (part.length) process.stderr.write(part.toString('utf8').replace(/[\x00-\x08\x0b-\x1f\x7f\x9b]/g, '?'));
  }

  /** Say how much of the session's stderr was not shown. */
  summary(): void {
    if (this.hidden) process.stderr.write(`\n(${this.hidden} more bytes from the session not shown)\n`);
  }

  /** Send to the command's stdin, waiting while the socket is backed up. */
  async send(chunk: Buffer): Promise<void> {
    if (this.ws.readyState !== WebSocket.OPEN) throw new CliError('the copy stream closed while sending');
    this.ws.send(encodeFrame(Channel.stdin, chunk));
    if (this.ws.bufferedAmount <= HIGH_WATER) return;
    await new Promise<void>((resolve) => {
      const wait = setInterval(() => {
        if (this.ws.bufferedAmount < LOW_WATER || this.ws.readyState !== WebSocket.OPEN) {
          clearInterval(wait);
          resolve();
        }
      }, 5);
    });
  }

  /** No more input: the command sees end of file. */
  endInput(): void {
    if (this.ws.readyState === WebSocket.OPEN) this.ws.send(Buffer.from([Channel.close, Channel.stdin]));
  }

  pause(): void {
    this.ws.pause();
  }

  resume(): void {
    this.ws.resume();
  }

  /** Give up: the daemon then ends the session's command. */
  abort(): void {
    this.ws.terminate();
  }
}
