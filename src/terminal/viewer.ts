// One viewer of a console (an attached WebSocket client): what it has been
// sent and acknowledged, its bounded queue, and the limits of its flow
// control. The console (console.ts) decides when to send; this holds the state.
import type { WebSocket } from 'ws';
import { Channel, encodeFrame } from './channels.js';
import type { Size } from './size.js';

/** Socket backlog above which output is queued (and coalesced) instead of sent. */
export const SOCKET_HIGH = 256 * 1024;
/** Unacknowledged bytes an ack-speaking client may have outstanding. */
export const ACK_WINDOW = 4 * 1024 * 1024;

/**
 * A flood: output within COALESCE_AFTER_MS of a frame of at least FLOOD_FRAME
 * bytes (the pty hands out up to 4 KiB a read; a full one means more waits).
 * It waits up to COALESCE_MS to go out as one frame with what follows it, or
 * until COALESCE_BYTES are queued: fewer frames, wake-ups and writes for the
 * client. Anything else (a keystroke's echo, even right after another one)
 * goes out at once.
 */
export const FLOOD_FRAME = 2048;
export const COALESCE_AFTER_MS = 2;
export const COALESCE_MS = 1;
export const COALESCE_BYTES = 64 * 1024;

export type Role = 'rw' | 'ro';

export class Client {
  queue: Buffer[] = [];
  queued = 0;
  sent = 0; // running offset of the next byte this client gets
  acked = 0;
  size: Size | undefined;
  lastResize = 0;
  closed = false;
  /** Waiting for its snapshot: output from `heldFrom` on is held for it
   * (bounded by max_lag_bytes), so none produced after the snapshot's offset
   * is lost however long the snapshot takes. */
  pending = false;
  held: Buffer[] = [];
  heldBytes = 0;
  heldFrom = 0;
  /** Last time its socket took data or it acknowledged some. */
  progress = Date.now();
  /** When it was last sent a frame and how big that was, and the timer of a coalesced one. */
  lastSend = 0;
  lastFrame = 0;
  coalesce: NodeJS.Timeout | undefined;

  constructor(
    readonly ws: WebSocket,
    readonly role: Role,
    readonly enclave: boolean,
    start: number,
  ) {
    this.sent = start;
    this.acked = start;
  }

  event(e: Record<string, unknown>): void {
    if (this.enclave && !this.closed && !this.pending) this.ws.send(encodeFrame(Channel.events, Buffer.from(JSON.stringify(e))));
  }
}

