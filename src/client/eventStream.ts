// The event stream (GET /v1/events/stream) for programs: its server-sent
// events parsed, each checked against its schema, one typed event at a time.
// Events of names this library does not know are skipped (a newer daemon's).
import type { IncomingMessage } from 'node:http';
import { streamEventSchemas, type AuditEvent } from '../api/eventSchemas.js';
import type { Session } from '../api/schemas.js';
import { ProtocolError } from './errors.js';
import { SseReader } from './sseReader.js';

export type StreamEvent =
  /** At (re)connection: the sessions the caller may see; `place`: where the reader is in the trail(s) now. */
  | { type: 'sessions'; sessions: Session[]; place?: string }
  /** One of them changed state or ports. */
  | { type: 'session'; session: Session }
  /**
   * An audit event, filtered as events() filters them. `place` resumes a
   * stream (`after`): the event's id, or in a fleet the reader's place in
   * every node's trail (NODE:ID,...).
   */
  | { type: 'audit'; event: AuditEvent; place?: string };

function parse(name: string, data: string, place: string | undefined): StreamEvent | undefined {
  if (!(name in streamEventSchemas)) return undefined;
  let json: unknown;
  try {
    json = JSON.parse(data);
  } catch {
    throw new ProtocolError(`the event stream sent a ${name} event that is not JSON`, 200);
  }
  const fail = () => new ProtocolError(`the event stream sent a ${name} event of the wrong shape`, 200);
  if (name === 'sessions') {
    const r = streamEventSchemas.sessions.safeParse(json);
    if (!r.success) throw fail();
    return { type: 'sessions', sessions: r.data.sessions, ...(place === undefined ? {} : { place }) };
  }
  if (name === 'session') {
    const r = streamEventSchemas.session.safeParse(json);
    if (!r.success) throw fail();
    return { type: 'session', session: r.data };
  }
  const r = streamEventSchemas.audit.safeParse(json);
  if (!r.success) throw fail();
  return { type: 'audit', event: r.data, ...(place === undefined ? {} : { place }) };
}

/** The events of a text/event-stream reply until it ends or the loop stops (which closes it). */
export async function* streamEvents(res: IncomingMessage): AsyncGenerator<StreamEvent, void, undefined> {
  const ready: StreamEvent[] = [];
  const reader = new SseReader((name, data, place) => {
    const e = parse(name, data, place);
    if (e) ready.push(e);
  });
  res.setEncoding('utf8');
  try {
    for await (const text of res as AsyncIterable<string>) {
      let failed: unknown;
      try {
        reader.push(text);
      } catch (e) {
        failed = e;
      }
      // The events before a bad one come first, as they were sent.
      yield* ready.splice(0);
      // An event of the wrong shape (already a ProtocolError), or the reader's refusal of one past its bound.
      if (failed !== undefined) throw failed instanceof ProtocolError ? failed : new ProtocolError(`the event stream sent ${(failed as Error).message}`, 200);
    }
  } finally {
    res.destroy();
  }
}
