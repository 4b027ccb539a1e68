// The audit trail, listed and streamed. A caller whose rule reaches only its
// own objects sees its own calls and the calls on its objects, nothing of
// anyone else's; the stream adds the sessions it may see as they change.
import { z } from 'zod';
import { ApiError } from '../../vocab/errors.js';
import { sessionRefOf } from '../../vocab/names.js';
import type { Handlers } from '../dispatch.js';
import { notFound } from '../objects.js';

/** A browser's EventSource resumes with the id of the last event it got. */
const lastEventId = z.coerce.number().int().min(0);

export const eventHandlers: Pick<Handlers, 'eventList' | 'eventStream'> = {
  eventList: (ctx, { caller, query, scope }) => {
    const of = scope === 'self' ? caller.uid : undefined;
    let session: string | undefined;
    if (query.session !== undefined) {
      const ref = sessionRefOf(query.session);
      if (!ref) throw new ApiError('invalid_request', `invalid session reference '${query.session}'`, 'session');
      const row = ctx.objects.session(ref, caller);
      if (of !== undefined && row.owner_uid !== of && ref.kind === 'name') throw notFound('session', ref);
      session = row.id;
    }
    const since = query.since === undefined ? undefined : new Date(query.since).toISOString();
    const events = ctx.audit.list({ session, since, limit: query.limit, of, uid: query.uid, action: query.action, reads: query.reads });
    // A self-scoped caller's own calls on others' objects: whose they were is not for it to learn.
    return { events: of === undefined ? events : events.map((e) => (e.object_owner !== null && e.object_owner !== of ? { ...e, object_owner: null } : e)) };
  },

  eventStream: (ctx, { caller, query, scope, req }, res) => {
    const header = req.headers['last-event-id'];
    let after = query.after;
    if (header !== undefined) {
      const r = lastEventId.safeParse(header);
      if (!r.success) throw new ApiError('invalid_request', `Last-Event-ID '${String(header).slice(0, 40)}' is not an event id (a whole number)`, 'Last-Event-ID');
      after = r.data;
    }
    ctx.feed.subscribe({ caller, of: scope === 'self' ? caller.uid : undefined, reads: query.reads ?? false }, res, after);
  },
};
