// A client of a session's console over the attach WebSocket, for tests:
// it collects output, events, the screen snapshot and the exit status.
import WebSocket from 'ws';
import { ACK_CHANNEL, ATTACH_PROTOCOL, EVENTS_CHANNEL, SNAPSHOT_CHANNEL } from '../../src/terminal/console.js';
import { Channel, encodeFrame } from '../../src/terminal/channels.js';
import type { TestDaemon } from './harness.js';

export class Viewer {
  readonly ws: WebSocket;
  private chunks: Buffer[] = [];
  bytes = 0;
  events: { type: string; [k: string]: unknown }[] = [];
  /** The screen snapshot, when the server sent one instead of replaying bytes. */
  snapshot: Buffer | undefined;
  status: { status: string; details?: { causes?: { reason: string; message: string }[] } } | undefined;
  closed: Promise<{ code: number; reason: string }>;
  closeInfo: { code: number; reason: string } | undefined;
  /** Open, and for our protocol the hello received. */
  opened: Promise<void>;

  constructor(d: TestDaemon, session: string, q: Record<string, string> = {}, protocol = ATTACH_PROTOCOL, private readonly ack = true) {
    this.ws = new WebSocket(`ws+unix://${d.socket}:/v1/sessions/${session}/attach?${new URLSearchParams(q)}`, [protocol]);
    let hello!: () => void;
    const helloSeen = new Promise<void>((r) => (hello = r));
    this.opened = new Promise((r, j) => {
      this.ws.once('open', () => (protocol === ATTACH_PROTOCOL ? helloSeen.then(r) : r()));
      this.ws.once('error', j);
    });
    this.closed = new Promise((r) =>
      this.ws.once('close', (code, reason) => {
        this.closeInfo = { code, reason: reason.toString() };
        r(this.closeInfo);
      }),
    );
    this.ws.on('message', (m: Buffer) => {
      const ch = m[0]!;
      const p = m.subarray(1);
      if (ch === Channel.stdout) {
        this.chunks.push(Buffer.from(p));
        this.bytes += p.length;
        if (this.ack) this.ws.send(encodeFrame(ACK_CHANNEL, Buffer.from(String(this.offset))));
      } else if (ch === EVENTS_CHANNEL) {
        const e = JSON.parse(p.toString()) as { type: string };
        this.events.push(e);
        if (e.type === 'hello') hello();
      } else if (ch === SNAPSHOT_CHANNEL) this.snapshot = Buffer.from(p);
      else if (ch === Channel.status) this.status = JSON.parse(p.toString());
    });
  }

  get hello(): { offset: number; resumed?: boolean; snapshot?: boolean; cols: number; rows: number } {
    return this.events.find((e) => e.type === 'hello') as unknown as { offset: number; resumed?: boolean; snapshot?: boolean; cols: number; rows: number };
  }

  /** The snapshot frame follows the hello. */
  async snapshotSeen(): Promise<Buffer> {
    for (let i = 0; i < 200 && !this.snapshot; i++) await new Promise((r) => setTimeout(r, 10));
    if (!this.snapshot) throw new Error('no snapshot frame after the hello');
    return this.snapshot;
  }

  get offset(): number {
    return (this.hello?.offset ?? 0) + this.bytes;
  }

  output(): Buffer {
    if (this.chunks.length > 1) this.chunks = [Buffer.concat(this.chunks)];
    return this.chunks[0] ?? Buffer.alloc(0);
  }

  type(text: string): void {
    this.ws.send(encodeFrame(Channel.stdin, Buffer.from(text)));
  }

  resize(cols: number, rows: number): void {
    this.ws.send(encodeFrame(Channel.resize, Buffer.from(JSON.stringify({ Width: cols, Height: rows }))));
  }

  /** Wait until `needle` appears: one pass over the chunks, then each new one. */
  async waitFor(needle: string | Buffer, ms = 20_000): Promise<void> {
    const deadline = Date.now() + ms;
    const n = typeof needle === 'string' ? Buffer.from(needle) : needle;
    let index = 0;
    let carry = Buffer.alloc(0);
    for (;;) {
      // Chunks are only ever merged by output(), which keeps their order.
      const chunks = this.chunks;
      for (; index < chunks.length; index++) {
        const window = Buffer.concat([carry, chunks[index]!]);
        if (window.includes(n)) return;
        carry = window.subarray(Math.max(0, window.length - n.length + 1));
      }
      if (Date.now() > deadline || this.closeInfo) {
        throw new Error(`no ${JSON.stringify(n.toString())} after ${this.bytes} bytes; ${this.closeInfo ? `closed ${this.closeInfo.code} ${this.closeInfo.reason}` : 'still open'}; tail ${JSON.stringify(carry.toString())}`);
      }
      await new Promise((r) => setTimeout(r, 20));
      if (this.chunks !== chunks) index = 0; // output() merged them: rescan
    }
  }
}

