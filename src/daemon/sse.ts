// One server-sent-events reply: its head, its events, its comments, and a
// bound on what it may hold unsent. A reader too far behind is closed (it
// reconnects and is given the current state afresh), so no subscriber holds
// the daemon's memory however slowly it reads.
import type { ServerResponse } from 'node:http';
import type { Logger } from 'pino';

/** Unsent bytes past which a reader is dropped. */
const MAX_BACKLOG = 1024 * 1024;

export class SseOut {
  /** Unsent bytes of the first event (a whole list), which the backlog bound leaves out until they are sent. */
  private floor = 0;

  constructor(
    private readonly res: ServerResponse,
    private readonly log: Logger,
  ) {
    // A write to a connection the peer reset fails here, not as an uncaught error.
    res.on('error', (e) => log.debug({ err: e.message }, 'event stream write failed'));
    res.on('drain', () => (this.floor = 0));
    res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-store', 'x-content-type-options': 'nosniff' });
    // 2-4 s: readers whose streams end together (a node came back) do not all come back at once.
    res.write(`retry: ${2000 + Math.floor(Math.random() * 2000)}\n\n`);
  }

  get gone(): boolean {
    return this.res.destroyed || this.res.writableEnded;
  }

  /** One event; `id` is what the reader sends back as Last-Event-ID. */
  send(event: string, data: unknown, id?: number | string): void {
    if (this.gone) return; // its 'close' is on its way
    if (this.res.writableLength - this.floor > MAX_BACKLOG) {
      this.log.debug('event stream reader too far behind: closed');
      this.res.destroy();
      return;
    }
    this.res.write(`event: ${event}\n${id === undefined ? '' : `id: ${id}\n`}data: ${JSON.stringify(data)}\n\n`);
    // The list a stream starts with may be larger than the bound by itself: the events after it are bounded.
    if (event === 'sessions') this.startsHere();
  }

  /** What is unsent now is the stream's start (its list, and what came with it): the backlog bound counts from here. */
  startsHere(): void {
    this.floor = this.res.writableLength;
  }

  /** A comment: finds connections whose reader went without a word. */
  keepAlive(): void {
    if (!this.gone) this.res.write(': keep-alive\n\n');
  }

  onClose(f: () => void): void {
    this.res.once('close', f);
  }

  end(): void {
    this.res.end();
  }
}
