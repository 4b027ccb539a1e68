// ?format= replies: a route's result as the CLI prints it, rendered here by
// the same functions the Node CLI calls (src/api/render.ts), so the native
// front end (native/src/front.c) copies the body to its stdout and a table
// row is formatted in one place. `pretty` is the --json output: the reply
// checked by the route's schema (as the CLI's client checks it), indented.
import type { ServerResponse } from 'node:http';
import type { z } from 'zod';
import { json, sessionDetails, stateLine } from '../api/render.js';
import type { RouteName } from '../api/routes.js';
import type { PrintFormat, Session } from '../api/schemas.js';
import type { Caller } from '../access/guard.js';

type Text = (out: never, caller: Caller) => string;

/**
 * The human views of one session. A listing's text is rendered by its handler
 * (handlers/sessions.ts), which reads only the table's columns for it.
 */
const TEXT: Partial<Record<RouteName, Partial<Record<Exclude<PrintFormat, 'pretty'>, Text>>>> = {
  sessionShow: { text: (s: Session) => sessionDetails(s) },
  sessionStop: { text: (s: Session) => stateLine(s) },
  sessionStart: { text: (s: Session) => stateLine(s) },
};

/** The ?format= a parsed query asks for, if any. */
export function formatOf(query: unknown): PrintFormat | undefined {
  if (typeof query !== 'object' || query === null || !('format' in query)) return undefined;
  const f = query.format;
  return f === 'text' || f === 'ids' || f === 'pretty' ? f : undefined;
}

/** Send `out`, the handler's result of route `name`, as the CLI prints it. */
export function sendPrinted(res: ServerResponse, status: number, name: RouteName, format: PrintFormat, out: unknown, schema: z.ZodType, caller: Caller): void {
  let text: string;
  if (format === 'pretty') text = json(schema.parse(out));
  else {
    const view = TEXT[name]?.[format];
    if (!view) throw new Error(`route ${name} has no ${format} view`);
    // The handler's value has the route's reply type (dispatch.ts types it so).
    text = view(out as never, caller);
  }
  sendText(res, status, text);
}

export function sendText(res: ServerResponse, status: number, text: string): void {
  res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}
