// The event stream (GET /v1/events/stream) for programs: its server-sent
// events parsed, each checked against its schema, one typed event at a time.
// Events of names this library does not know are skipped (a newer daemon's).
import type { IncomingMessage } from 'node:http';
import { createInterface } from 'node:readline';
import { streamEventSchemas, type AuditEvent } from '../api/eventSchemas.js';
import type { Session } from '../api/schemas.js';
import { ProtocolError } from './errors.js';

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
  let name = 'message';
  let data: string[] = [];
  let place: string | undefined;
  try {
    for await (const line of createInterface({ input: res, crlfDelay: Infinity })) {
      if (line === '') {
        const e = data.length > 0 ? parse(name, data.join('\n'), place) : undefined;
        name = 'message';
        data = [];
        if (e) yield e;
        continue;
      }
      if (line.startsWith(':')) continue; // a keep-alive comment
      const colon = line.indexOf(':');
      const field = colon < 0 ? line : line.slice(0, colon);
      const value = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
      if (field === 'event') name = value;
      else if (field === 'data') data.push(value);
      else if (field === 'id') place = value;
    }
  } finally {
    res.destroy();
  }
}
