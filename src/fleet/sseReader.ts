// Server-sent events read from another node's event stream, bounded: a
// line or an event's data past MAX_EVENT_BYTES ends the stream (the reader
// connects again), so what a node sends costs this one bounded memory.
// Comments and retry fields are skipped; an event comes with the last id
// the stream set (SSE's last event id).

/** The largest event taken: a node's first event lists its sessions (500 are ~1 MiB). */
export const MAX_EVENT_BYTES = 32 * 1024 * 1024;

export class SseReader {
  private partial = '';
  private name = 'message';
  private data: string[] = [];
  private size = 0;
  private id: string | undefined;

  constructor(private readonly onEvent: (name: string, data: string, id: string | undefined) => void) {}

  /** The next bytes of the stream (utf-8 text, split anywhere); throws when an event is too large. */
  push(text: string): void {
    const lines = (this.partial + text).split('\n');
    this.partial = lines.pop()!;
    if (this.partial.length > MAX_EVENT_BYTES) throw new Error(`a line of more than ${MAX_EVENT_BYTES} bytes`);
    for (const raw of lines) this.line(raw.endsWith('\r') ? raw.slice(0, -1) : raw);
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
