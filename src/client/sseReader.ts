// Server-sent events read as they come, bounded: a line or an event's data
// past MAX_EVENT_BYTES ends the stream (the reader connects again), so what
// a daemon sends costs its reader bounded memory. The client library's
// event stream reads with it, and so does a node reading another node's
// (src/daemon/fleetStream.ts). Comments and retry fields are skipped; an
// event comes with the last id the stream set (SSE's last event id).

/** The largest event taken: a stream's first event lists its sessions (500 are ~1 MiB). */
export const MAX_EVENT_BYTES = 32 * 1024 * 1024;

export class SseReader {
  /** The line not ended yet, in pieces (joined once it ends: each byte is looked at once). */
  private partial: string[] = [];
  private partialSize = 0;
  private name = 'message';
  private data: string[] = [];
  private size = 0;
  private id: string | undefined;

  constructor(private readonly onEvent: (name: string, data: string, id: string | undefined) => void) {}

  /** The next bytes of the stream (utf-8 text, split anywhere); throws when an event is too large. */
  push(text: string): void {
    let from = 0;
    for (let nl = text.indexOf('\n'); nl >= 0; nl = text.indexOf('\n', from)) {
      this.partial.push(text.slice(from, nl));
      const raw = this.partial.length === 1 ? this.partial[0]! : this.partial.join('');
      this.partial = [];
      this.partialSize = 0;
      from = nl + 1;
      this.line(raw.endsWith('\r') ? raw.slice(0, -1) : raw);
    }
    if (from < text.length) {
      this.partialSize += text.length - from;
      if (this.partialSize + this.size > MAX_EVENT_BYTES) throw new Error(`a line of more than ${MAX_EVENT_BYTES} bytes`);
      this.partial.push(text.slice(from));
    }
  }

  private line(line: string): void {
    if (line === '') {
      const { name, data } = this;
      this.name = 'message';
      this.data = [];
      this.size = 0;
      if (data.length > 0) this.onEvent(name, data.join('\n'), this.id);
      return;
    }
    if (line.startsWith(':')) return;
    const colon = line.indexOf(':');
    const field = colon < 0 ? line : line.slice(0, colon);
    const value = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
    if (field === 'event') this.name = value;
    else if (field === 'id' && value.length <= 8192) this.id = value;
    else if (field === 'data') {
      this.size += value.length + 1;
      if (this.size > MAX_EVENT_BYTES) throw new Error(`an event of more than ${MAX_EVENT_BYTES} bytes`);
      this.data.push(value);
    }
  }
}
