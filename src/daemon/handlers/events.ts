// The audit trail, listed and streamed. A caller whose rule reaches only its
// own objects sees its own calls and the calls on its objects, nothing of
// anyone else's; the stream adds the sessions it may see as they change.
import { z } from 'zod';
import { ApiError } from '../../vocab/errors.js';
import { sessionRefOf } from '../../vocab/names.js';
import type { Handlers } from '../dispatch.js';
import type { Context } from '../route.js';
import type { AuditEvent } from '../../api/eventSchemas.js';
import type { Caller } from '../../access/guard.js';
import type { Reach } from '../../fleet/reach.js';
import { notFound } from '../objects.js';
import { FleetStream, parseCursor, type Cursor } from '../fleetStream.js';
import { SseOut } from '../sse.js';
import { sessionsFor } from './sessions.js';
import type { Session } from '../../api/schemas.js';

/**
 * The id of the session a filter names, as the caller may name it: a name
 * of another owner's is not found for a self-scoped caller. Fleet mode: one
 * this node does not hold is looked up where the fleet has it.
 */
async function sessionOf(ctx: Context, text: string, caller: Caller, of: number | undefined, reach: Reach | undefined): Promise<string> {
  const ref = sessionRefOf(text);
  if (!ref) throw new ApiError('invalid_request', `invalid session reference '${text}'`, 'session');
  let found: { id: string; owner_uid: number | null };
  try {
    found = ctx.objects.session(ref, caller);
  } catch (e) {
    const to = reach && e instanceof ApiError && e.code === 'not_found' ? await reach.locate(ref.kind === 'id' ? ref : { kind: 'name', name: ref.name, owner: ref.owner ?? caller.uid }) : undefined;
    if (!to) throw e;
    found = to;
  }
  if (of !== undefined && found.owner_uid !== of && ref.kind === 'name') throw notFound('session', ref);
  return found.id;
}

/** A browser's EventSource resumes with the id of the last event it got. */
const lastEventId = z.coerce.number().int().min(0);

export const eventHandlers: Pick<Handlers, 'eventList' | 'eventStream'> = {
  eventList: async (ctx, { caller, query, scope }) => {
    const of = scope === 'self' ? caller.uid : undefined;
    // Fleet mode: every node's trail (a call on another node's session is audited where its caller reached).
    const reach = caller.via === 'peer' ? undefined : ctx.fleet?.reach;
    const session = query.session === undefined ? undefined : await sessionOf(ctx, query.session, caller, of, reach);
    const since = query.since === undefined ? undefined : new Date(query.since).toISOString();
    let events = ctx.audit.list({ session, since, limit: query.limit, of, uid: query.uid, action: query.action, reads: query.reads });
    let unanswered: string[] = [];
    if (reach) {
      const q = new URLSearchParams();
      const put = (k: string, v: string | number | boolean | undefined) => v !== undefined && v !== false && q.set(k, v === true ? '1' : String(v));
      put('session', session);
      put('since', since);
      put('limit', query.limit);
      put('action', query.action);
      // A self-scoped caller's filter goes along (the other node does not know its scope); kept here too, below.
      put('uid', query.uid ?? of);
      put('reads', query.reads);
      const far = await reach.eventsOf(`/v1/events?${q.toString()}`);
      unanswered = far.unanswered;
      const here = ctx.fleet!.node;
      const mine = (e: AuditEvent) => of === undefined || e.caller_uid === of || e.object_owner === of;
      events = [...events.map((e) => ({ ...e, node: here })), ...far.events.filter(mine)]
        .sort((a, b) => (a.time < b.time ? -1 : a.time > b.time ? 1 : a.node! < b.node! ? -1 : a.node! > b.node! ? 1 : a.id - b.id))
        .slice(-query.limit);
    }
    // A self-scoped caller's own calls on others' objects: whose they were is not for it to learn.
    if (of !== undefined) events = events.map((e) => (e.object_owner !== null && e.object_owner !== of ? { ...e, object_owner: null } : e));
    return { events, ...(unanswered.length ? { unanswered } : {}) };
  },

  eventStream: async (ctx, { caller, query, scope, req }, res) => {
    // Gone while it was let in (a peer's identity may be looked up first): nothing is held for it.
    if (res.destroyed || req.socket.destroyed) return;
    if (scope === 'self' && query.uid !== undefined && query.uid !== caller.uid) throw new ApiError('forbidden', `uid=${query.uid}: a caller whose rule reaches only its own objects sees only its own events`, 'uid');
    const header = req.headers['last-event-id'];
    const sub = { caller, of: scope === 'self' ? caller.uid : query.uid, reads: query.reads ?? false };
    const reach = caller.via === 'peer' ? undefined : ctx.fleet?.reach;
    if (!reach) {
      let after = query.after;
      if (typeof after === 'string') throw new ApiError('invalid_request', `after=${after.slice(0, 40)}: a place in a fleet's trails; this node streams its own events alone (a number)`, 'after');
      if (header !== undefined) {
        const r = lastEventId.safeParse(header);
        if (!r.success) throw new ApiError('invalid_request', `Last-Event-ID '${String(header).slice(0, 40)}' is not an event id (a whole number)`, 'Last-Event-ID');
        after = r.data;
      }
      return ctx.feed.subscribe(sub, res, after);
    }
    // Fleet mode: every node's events, each with its node; a place in each node's trail to resume from.
    const self = ctx.fleet!.node;
    const given = header ?? (query.after === undefined ? undefined : String(query.after));
    let cursor: Cursor = new Map();
    if (given !== undefined) {
      const c = typeof given === 'string' ? parseCursor(given, self) : undefined;
      if (!c) throw new ApiError('invalid_request', `Last-Event-ID '${String(given).slice(0, 40)}' is not an event id (NODE:ID,... or a whole number)`, 'Last-Event-ID');
      cursor = c;
    }
    ctx.feed.check(caller);
    const deps = { self, reach, feed: ctx.feed, visible: (s: Session) => ctx.access.visible(caller, s), sessions: () => sessionsFor(ctx, caller, false, true), log: ctx.log };
    await new FleetStream(deps, sub, new SseOut(res, ctx.log), cursor).start();
  },
};
