// A session's console: one pty (a login shell the session's init started), a
// replay ring, a screen mirror, and any number of attached WebSocket clients.
// Output is never decoded here: pty bytes go to the ring, to the mirror's
// worker and to each client's bounded queue. A client that cannot keep up is
// cut off (it can resume from its offset); it never slows the pty or anyone
// else. A client without a resumable offset gets a snapshot of the screen.
import type { Logger } from 'pino';
import type { WebSocket } from 'ws';
import { ByteRing } from './ring.js';
import { clampSize, parseResize, type Size } from './size.js';
import { Channel, encodeFrame, exitStatusFor } from './channels.js';
import type { Snapshot } from './mirror.js';
import type { TerminalProcess } from './sessionPty.js';
import { ACK_WINDOW, COALESCE_AFTER_MS, COALESCE_BYTES, COALESCE_MS, Client, FLOOD_FRAME, SOCKET_HIGH, type Role } from './viewer.js';

export { ATTACH_PROTOCOL } from '../api/protocol.js';
export const EVENTS_CHANNEL = Channel.events;
export const ACK_CHANNEL = Channel.ack;
export const SNAPSHOT_CHANNEL = Channel.snapshot;
export type { Size } from './size.js';
/** What a plain k8s client gets before a snapshot: it has no snapshot channel. */
const CLEAR_SCREEN = Buffer.from('\x1b[0m\x1b[H\x1b[2J\x1b[3J');

const RESIZE_DEBOUNCE_MS = 25;
/** After the shell exits, the pty is drained until it has been quiet this long. */
const EXIT_QUIET_MS = 30;
const EXIT_DRAIN_MAX_MS = 2000;

export type { Role } from './viewer.js';
export type ResizePolicy = 'latest' | 'smallest';

export interface ConsoleOptions {
  sessionId: string;
  pty: TerminalProcess & { close?: () => void; detach?: () => void };
  ringBytes: number;
  /** Its output ring, when it is not a new one in this process's memory (a console's, shared with its session's init). */
  ring?: ByteRing;
  size: Size;
  policy: ResizePolicy;
  /** A client this far behind is cut off whatever it does (memory bound). */
  maxLagBytes: number;
  /** A client with output waiting and no progress for this long is cut off. */
  stallMs: number;
  log: Logger;
  onEnd: () => void;
  /** One-off terminals (exec --tty): the command ends when its last client leaves. */
  endWhenAlone?: boolean;
  /** Makes the headless copy of the screen, for clients that cannot resume from the ring. */
  mirror?: (ring: ByteRing, size: Size) => ScreenSource;
}

/** What a console needs of a screen mirror (ScreenMirror; a fake in tests). */
export interface ScreenSource {
  write(data: Buffer): void;
  resize(size: Size): void;
  /** The screen as of an offset at or after the ring's end when asked. */
  snapshot(): Promise<Snapshot>;
  close(): void;
}

export class SessionConsole {
  readonly ring: ByteRing;
  private readonly clients = new Set<Client>();
  private size: Size;
  private exit: { code: number | null; signal: number | null } | undefined;
  private finished = false;
  private resizeTimer: NodeJS.Timeout | undefined;
  private drainTimer: NodeJS.Timeout | undefined;
  private exitedAt = 0;
  private lastDataAt = 0;
  private readonly mirror: ScreenSource | undefined;

  constructor(private readonly o: ConsoleOptions) {
    this.ring = o.ring ?? new ByteRing(o.ringBytes);
    this.size = clampSize(o.size);
    this.mirror = o.mirror?.(this.ring, this.size);
    o.pty.onData((data: string | Buffer) => this.output(typeof data === 'string' ? Buffer.from(data) : data));
    o.pty.onExit(({ exitCode, signal }) => {
      this.exit = signal ? { code: null, signal } : { code: exitCode, signal: null };
      this.exitedAt = Date.now();
      this.o.log.debug({ session: this.o.sessionId, bytes: this.ring.end, ms_after_last_data: this.exitedAt - this.lastDataAt }, 'pty exited');
      this.armDrain();
    });
  }

  get viewers(): number {
    return this.clients.size;
  }

  private output(data: Buffer): void {
    this.lastDataAt = Date.now();
    this.ring.write(data);
    // The viewers first: a keystroke's echo is on its way before the mirror sees it.
    for (const c of this.clients) this.push(c, data);
    this.mirror?.write(data);
    if (this.exit) this.armDrain();
  }

  // ---- flow control per client ------------------------------------------

  private push(c: Client, data: Buffer): void {
    if (c.closed || data.length === 0) return;
    if (c.pending) return this.hold(c, data);
    // Nothing owed until now (the socket's, or a queue the client holds up:
    // output waiting for our own coalescing timer is not the client's doing):
    // the stall clock starts here.
    if ((c.queue.length === 0 || c.coalesce) && c.ws.bufferedAmount === 0) c.progress = Date.now();
    c.queue.push(data);
    c.queued += data.length;
    // Slower than the pty is fine while it makes progress; stuck, or behind by
    // more than the memory bound, it is cut off (it may resume from its offset).
    const stalled = Date.now() - c.progress > this.o.stallMs;
    if (c.queued + c.ws.bufferedAmount > this.o.maxLagBytes || stalled) {
      this.o.log.warn({ session: this.o.sessionId, queued: c.queued, stalled }, 'attach client too slow; disconnecting it');
      this.drop(c, 4008, `too slow: reconnect with resume=${c.sent}`);
      return;
    }
    if (c.coalesce && c.queued < COALESCE_BYTES) return; // goes with the frame already waiting
    if (!c.coalesce && c.queued < COALESCE_BYTES && c.lastFrame >= FLOOD_FRAME && Date.now() - c.lastSend < COALESCE_AFTER_MS) {
      c.coalesce = setTimeout(() => this.flush(c), COALESCE_MS);
      return;
    }
    this.flush(c);
  }

  /** Output while a client waits for its snapshot: kept for it, not sent. */
  private hold(c: Client, data: Buffer): void {
    c.held.push(data);
    c.heldBytes += data.length;
    if (c.heldBytes > this.o.maxLagBytes) {
      this.o.log.warn({ session: this.o.sessionId, held: c.heldBytes }, 'attach client fell max_lag_bytes behind while its snapshot was made; disconnecting it');
      this.drop(c, 4008, 'too slow: output outran the screen snapshot; reconnect');
    }
  }

  private flush(c: Client): void {
    clearTimeout(c.coalesce);
    c.coalesce = undefined;
    if (c.closed || c.queue.length === 0) return;
    // Idle socket: send now. Backed up: leave it queued; the next send
    // callback sends everything queued by then as one frame.
    if (c.ws.bufferedAmount > SOCKET_HIGH || (c.enclave && c.sent - c.acked > ACK_WINDOW)) return;
    const data = c.queue.length === 1 ? c.queue[0]! : Buffer.concat(c.queue, c.queued);
    c.queue = [];
    c.queued = 0;
    c.sent += data.length;
    c.lastSend = Date.now();
    c.lastFrame = data.length;
    c.ws.send(encodeFrame(Channel.stdout, data), () => {
      c.progress = Date.now();
      this.flush(c);
    });
  }

  private drop(c: Client, code: number, reason: string): void {
    if (c.closed) return;
    c.closed = true;
    clearTimeout(c.coalesce);
    this.clients.delete(c);
    c.ws.close(code, reason);
    this.broadcastViewers();
    this.applyPolicy();
  }

  // ---- clients --------------------------------------------------------------

  /**
   * Attach a client. With `resume` inside the ring it gets exactly the bytes
   * since then; otherwise a snapshot of the screen (or, with no mirror, the
   * whole ring), then live output.
   */
  attach(ws: WebSocket, role: Role, enclave: boolean, resume: number | undefined, size: Size | undefined): void {
    const resumable = resume !== undefined && this.ring.since(resume) !== undefined;
    const c = new Client(ws, role, enclave, resumable ? resume : this.ring.start);
    this.clients.add(c);
    if (resumable || !this.mirror) this.start(c, resumable, undefined);
    else {
      c.pending = true;
      c.heldFrom = this.ring.end;
      void this.startFromSnapshot(c, this.mirror);
    }
    this.broadcastViewers();
    if (size && role === 'rw') this.requestResize(c, size);

    ws.on('message', (data: Buffer, isBinary: boolean) => {
      if (!isBinary || data.length === 0) return;
      const ch = data[0]!;
      const payload = data.subarray(1);
      if (ch === Channel.stdin) {
        // Read-only viewers never reach the shell's input.
        if (c.role === 'rw' && !this.exit) this.o.pty.write(payload);
      } else if (ch === Channel.resize) {
        const parsed = parseResize(payload);
        if (parsed && c.role === 'rw') this.requestResize(c, parsed);
      } else if (ch === ACK_CHANNEL && c.enclave) {
        const n = Number(payload.toString('ascii'));
        if (Number.isSafeInteger(n) && n > c.acked && n <= c.sent) {
          c.acked = n;
          c.progress = Date.now();
          this.flush(c);
        }
      }
    });
    ws.on('close', () => {
      clearTimeout(c.coalesce);
      if (c.closed) return;
      c.closed = true;
      this.clients.delete(c);
      this.broadcastViewers();
      this.applyPolicy();
      if (this.o.endWhenAlone && this.clients.size === 0) this.kill();
    });
  }

  /** Hello, then the snapshot if any, then the output from the client's offset on. */
  private start(c: Client, resumed: boolean, snap: Snapshot | undefined, backlog?: Buffer): void {
    c.pending = false;
    c.held = [];
    c.heldBytes = 0;
    c.sent = c.acked = snap ? snap.offset : c.sent;
    c.event({
      type: 'hello',
      session: this.o.sessionId,
      role: c.role,
      cols: this.size.cols,
      rows: this.size.rows,
      offset: c.sent,
      resumed,
      snapshot: snap !== undefined,
      viewers: this.clients.size,
    });
    if (snap) {
      // Not part of the byte stream: it does not move the client's offset.
      if (c.enclave) c.ws.send(encodeFrame(SNAPSHOT_CHANNEL, snap.data));
      else c.ws.send(encodeFrame(Channel.stdout, Buffer.concat([CLEAR_SCREEN, snap.data])));
    }
    this.push(c, backlog ?? this.ring.since(c.sent)!);
    if (this.finished) this.sendStatus(c);
  }

  private async startFromSnapshot(c: Client, mirror: ScreenSource): Promise<void> {
    let snap: Snapshot | undefined;
    try {
      snap = await mirror.snapshot();
    } catch (e) {
      this.o.log.warn({ session: this.o.sessionId, err: (e as Error).message }, 'no screen snapshot; replaying the ring instead');
    }
    if (c.closed) return;
    // The snapshot covers output up to snap.offset (at or after the attach:
    // the mirror is fed everything the ring is); what came after it is in the
    // client's held output, even if the ring has moved past it meanwhile.
    if (snap && snap.offset >= c.heldFrom && snap.offset <= c.heldFrom + c.heldBytes) {
      const held = Buffer.concat(c.held, c.heldBytes);
      return this.start(c, false, snap, held.subarray(snap.offset - c.heldFrom));
    }
    c.sent = this.ring.start;
    this.start(c, false, undefined);
  }

  private broadcastViewers(): void {
    for (const c of this.clients) c.event({ type: 'viewers', viewers: this.clients.size });
  }

  // ---- size -------------------------------------------------------------------

  private requestResize(c: Client, s: Size): void {
    c.size = clampSize(s);
    c.lastResize = Date.now();
    this.applyPolicy();
  }

  /** latest: the last rw client that resized; smallest: fits every rw client. */
  private applyPolicy(): void {
    const writers = [...this.clients].filter((c) => c.role === 'rw' && c.size);
    if (writers.length === 0) return;
    let want: Size;
    if (this.o.policy === 'smallest') {
      want = { cols: Math.min(...writers.map((c) => c.size!.cols)), rows: Math.min(...writers.map((c) => c.size!.rows)) };
    } else {
      want = writers.reduce((a, b) => (b.lastResize >= a.lastResize ? b : a)).size!;
    }
    if (want.cols === this.size.cols && want.rows === this.size.rows) return;
    clearTimeout(this.resizeTimer);
    this.resizeTimer = setTimeout(() => {
      if (this.exit) return;
      this.size = want;
      this.o.pty.resize(want.cols, want.rows);
      this.mirror?.resize(want);
      for (const c of this.clients) c.event({ type: 'resize', cols: want.cols, rows: want.rows });
    }, RESIZE_DEBOUNCE_MS);
  }

  // ---- exit ---------------------------------------------------------------------

  /** After exit, finish once the pty has been quiet a moment: no tail is lost. */
  private armDrain(): void {
    if (!this.exit || this.finished) return;
    clearTimeout(this.drainTimer);
    const late = Date.now() - this.exitedAt > EXIT_DRAIN_MAX_MS;
    this.drainTimer = setTimeout(() => this.finish(), late ? 0 : EXIT_QUIET_MS);
  }

  private sendStatus(c: Client): void {
    // A client still waiting for its snapshot gets the status from start().
    if (c.pending) return;
    const status = exitStatusFor(this.exit!.code, this.exit!.signal);
    const close = () => {
      if (c.closed) return;
      c.ws.send(encodeFrame(Channel.status, Buffer.from(JSON.stringify(status))));
      c.closed = true;
      c.ws.close(1000);
    };
    // Everything queued for it goes out before the status; a client stuck
    // for long is cut off instead.
    const since = Date.now();
    const wait = () => {
      if (c.closed) return;
      if (c.queue.length === 0) return close();
      if (Date.now() - since > EXIT_DRAIN_MAX_MS) return this.drop(c, 4008, `too slow: reconnect with resume=${c.sent}`);
      this.flush(c);
      setTimeout(wait, 5);
    };
    wait();
  }

  private finish(): void {
    if (this.finished) return;
    this.finished = true;
    clearTimeout(this.resizeTimer);
    this.o.log.info({ session: this.o.sessionId, exit: this.exit }, 'console ended');
    for (const c of [...this.clients]) this.sendStatus(c);
    this.mirror?.close();
    this.o.pty.close?.();
    this.o.onEnd();
  }

  /**
   * The daemon is going away, the session is not: let go of the terminal
   * without ending its command (its init keeps the pty and the ring for the
   * next daemon). Viewers are told to come back (1012, service restart).
   */
  detach(): void {
    if (this.finished) return;
    this.finished = true;
    clearTimeout(this.resizeTimer);
    clearTimeout(this.drainTimer);
    for (const c of [...this.clients]) {
      c.closed = true;
      c.ws.close(1012, 'the daemon is restarting: attach again');
    }
    this.clients.clear();
    this.mirror?.close();
    this.o.pty.detach?.();
  }

  /** The session is going away: end the shell (its exit status follows). */
  kill(): void {
    if (this.exit) return;
    this.o.pty.kill('SIGHUP');
    // A shell that ignores SIGHUP does not keep its terminal (or the session) alive.
    setTimeout(() => {
      if (!this.exit) this.o.pty.kill('SIGKILL');
    }, 2000).unref();
  }
}
