// GET /v1/events: the audit trail (action events.list: root, and whom a rule allows).
import { z } from 'zod';
import { zodToApiError } from '../api/errors.js';
import { sessionRef } from '../api/schemas.js';
import { sendJson } from './http.js';
import type { Route } from './route.js';

export const eventsQuery = z
  .object({
    session: sessionRef.optional(),
    /** ISO 8601 time: events at or after it. */
    since: z.iso.datetime({ offset: true, message: 'must be an ISO 8601 time like 2026-12-02T10:00:00Z' }).optional(),
    limit: z.coerce.number().int().min(1).max(10_000).default(1000),
  })
  .strict();

export const EVENT_ROUTES: Route[] = [
  {
    method: 'GET',
    path: /^\/v1\/events$/,
    handle: (ctx, { res, url, caller }) => {
      const q = eventsQuery.safeParse(Object.fromEntries(url.searchParams.entries()));
      if (!q.success) throw zodToApiError(q.error, 'events query');
      ctx.access.check(caller, 'events.list');
      // A session is named by id or name; a name means its most recent session.
      const session = q.data.session === undefined ? undefined : ctx.sessions.resolve(q.data.session).id;
      const since = q.data.since === undefined ? undefined : new Date(q.data.since).toISOString();
      sendJson(res, 200, { events: ctx.audit.list({ session, since, limit: q.data.limit }) });
    },
  },
];
