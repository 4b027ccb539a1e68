// The audit trail's wire shapes (enclave events, GET /v1/events).
import { z } from 'zod';
import { flag, sessionListSchema, sessionRef, sessionSchema } from './schemas.js';

/** GET /v1/events. */
export const eventsQuery = z
  .object({
    session: sessionRef.optional(),
    /** ISO 8601 time: events at or after it. */
    since: z.iso.datetime({ offset: true, message: 'must be an ISO 8601 time like 2026-12-02T10:00:00Z' }).optional(),
    limit: z.coerce.number().int().min(1).max(10_000).default(1000),
    /** An action (session.exec) or a family (session.*). */
    action: z
      .string()
      .regex(/^[a-z-]+(\.([a-z-]+|\*))?$/, 'must be an action like session.exec or a family like session.*')
      .optional(),
    /** Calls by this uid, and events on its objects. */
    uid: z.coerce.number().int().min(0).max(4294967294).optional(),
    /** Include reads that were allowed (list, show, events): left out unless asked for, as they are most of the trail. */
    reads: flag.optional(),
  })
  .strict();

const NODE = '[a-z0-9][a-z0-9-]{0,62}';
/** A fleet stream's place in every node's trail: `node-a:120,node-b:44` (at most 256 nodes). */
export const STREAM_PLACE = new RegExp(`^${NODE}:\\d{1,15}(,${NODE}:\\d{1,15}){0,255}$`);

/** GET /v1/events/stream (server-sent events; docs/api.md, "Event stream"). */
export const eventStreamQuery = z
  .object({
    /**
     * Replay the audit events after this id first; a browser's EventSource sends Last-Event-ID instead.
     * In a fleet, an event's id is its place in every node's trail (NODE:ID,...), taken here too.
     */
    after: z.union([z.coerce.number().int().min(0).max(999_999_999_999_999), z.string().max(20_000).regex(STREAM_PLACE, 'must be an event id, or NODE:ID,... (a fleet stream\'s)')]).optional(),
    /** Include reads that were allowed, as in the list. */
    reads: flag.optional(),
    /** Calls by this uid, and events on its objects (a self-scoped caller: its own uid alone). */
    uid: z.coerce.number().int().min(0).max(4294967294).optional(),
  })
  .strict();

export const auditEventSchema = z.object({
  id: z.number().int(),
  time: z.string(),
  caller_uid: z.number().int(),
  caller_gid: z.number().int().nullable(),
  caller_pid: z.number().int().nullable(),
  /**
   * kernel: what the kernel did in a session (an OOM kill); daemon: what the daemon did of itself (an idle stop). No caller.
   * peer (fleet mode): a call another node forwarded for its caller, allowed there; rule "node NAME" says which node vouched.
   */
  via: z.enum(['socket', 'tcp', 'kernel', 'daemon', 'peer']),
  action: z.string(),
  session_id: z.string().nullable(),
  /** That session's name, if it has one (it may have ended since). */
  session_name: z.string().nullable(),
  /** The owner of the object acted on (a session, volume or secret), if any. */
  object_owner: z.number().int().nullable(),
  /** none: an event of the kernel's or the daemon's, which no access rule decided. */
  decision: z.enum(['allow', 'deny', 'none']),
  rule: z.string(),
  /** Exec: the command; attach: the role; create: the name; the secret store: the name. */
  detail: z.string().nullable(),
  /** Fleet mode: the node whose trail holds it (ids are per node). */
  node: z.string().optional(),
});
export type AuditEvent = z.infer<typeof auditEventSchema>;

export const eventListSchema = z.object({
  events: z.array(auditEventSchema),
  /** Fleet mode: the nodes whose trail is missing from this answer (unreachable, or no answer within 5 s). */
  unanswered: z.array(z.string()).optional(),
});

/** GET /v1/events/stream: the data of each server-sent event, by its name. */
export const streamEventSchemas = { sessions: sessionListSchema, session: sessionSchema, audit: auditEventSchema } as const;
