// The event stream (GET /v1/events/stream): server-sent events of what
// changes, pushed as it happens, so a page or a program learns of it
// without asking again and again. Three kinds:
//  - `sessions`: at (re)connection, the sessions the caller may see, as the
//    list route gives them;
//  - `session`: one of them changed state or ports (its view, as show gives it);
//  - `audit`: an event of the audit trail, with its id, filtered as the
//    events list filters it (a self-scoped caller: its own calls and the
//    calls on its objects; allowed reads only if asked for).
// Nothing runs per subscriber but its writes: a change is read once and
// written to those who may see it. A subscriber too far behind is closed and
// reconnects; Last-Event-ID (or ?after=) replays the audit events it missed.
import type { ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import type { AuditEvent } from '../api/eventSchemas.js';
import { isAllowedRead, type AuditLog } from '../access/audit.js';
import type { AccessGuard, Caller } from '../access/guard.js';
import type { SessionManager } from '../sessions/manager.js';
import { ApiError } from '../vocab/errors.js';
import type { Consoles } from './attach.js';
import { SseOut } from './sse.js';

/** Open streams: per uid and in all (each holds a socket). */
const MAX_PER_UID = 32;
const MAX_TOTAL = 256;
/** The streams other nodes hold here for their callers (one per caller's stream a node): in all. */
const MAX_PEER_TOTAL = 1024;
/** A comment now and then finds connections whose peer went without a word. */
const HEARTBEAT_MS = 30_000;
/** What a reconnecting subscriber is replayed at most. */
const REPLAY_LIMIT = 1000;

/**
 * Where a subscriber's events go: an SSE reply (sse.ts), or this node's part
 * of a fleet stream (src/fleet/fleetStream.ts), which tags each with the node.
 */
export interface FeedOut {
  send(event: 'sessions' | 'session' | 'audit', data: unknown, id?: number): void;
  keepAlive(): void;
  readonly gone: boolean;
  onClose(f: () => void): void;
  end(): void;
}

interface Subscriber {
  caller: Caller;
  /** Self-scoped: only this uid's calls and calls on its objects. */
  of: number | undefined;
  reads: boolean;
  out: FeedOut;
}

/** Whether a subscriber (self-scoped to `of`, with allowed reads or not) is shown an audit event. */
export function auditPasses(e: AuditEvent, of: number | undefined, reads: boolean): boolean {
  if (!reads && isAllowedRead(e)) return false;
  return of === undefined || e.caller_uid === of || e.object_owner === of;
}

/** A self-scoped subscriber's own calls on others' objects: whose they were is not for it to learn (as in the list). */
export function auditShown<E extends AuditEvent>(e: E, of: number | undefined): E {
  return of !== undefined && e.object_owner !== null && e.object_owner !== of ? { ...e, object_owner: null } : e;
}

export interface FeedParts {
  sessions: SessionManager;
  access: AccessGuard;
  audit: AuditLog;
  consoles: Consoles;
  log: Logger;
  /** Fleet mode: this node's name, which its sessions' views carry (as the list gives them). */
  node?: string;
}

export class EventFeed {
  private readonly subs = new Set<Subscriber>();
  private readonly pending = new Set<string>();
  private heartbeat: NodeJS.Timeout | undefined;

  constructor(private readonly parts: FeedParts) {
    parts.audit.onRecord((e) => this.recorded(e));
    parts.sessions.onKernelEvents({ changed: (id) => this.sessionChanged(id) });
  }

  private readonly consoleInfo = (id: string) => this.parts.consoles.info(id);

  /** A session changed: its view goes out once this turn of the event loop is done (several changes, one event). */
  sessionChanged(id: string): void {
    if (this.subs.size === 0) return;
    if (this.pending.size === 0) setImmediate(() => this.flush());
    this.pending.add(id);
  }

  private flush(): void {
    const ids = [...this.pending];
    this.pending.clear();
    for (const id of ids) {
      const row = this.parts.sessions.find(id);
      if (!row) continue;
      const view = this.parts.sessions.toApi(row, this.consoleInfo);
      for (const s of this.subs) if (this.sees(s.caller, row)) s.out.send('session', view);
    }
  }

  /**
   * Whether a subscriber is sent a session's events: as the policy lets it
   * see the session; another node's stream (src/daemon/fleetStream.ts), all
   * of them: that node applies its policy for its caller, as it does to a list.
   */
  private sees(caller: Caller, row: Parameters<AccessGuard['visible']>[1]): boolean {
    return caller.via === 'peer' || this.parts.access.visible(caller, row);
  }

  private recorded(e: AuditEvent): void {
    let named: AuditEvent | undefined;
    for (const s of this.subs) {
      if (!auditPasses(e, s.of, s.reads)) continue;
      named ??= { ...e, session_name: e.session_id === null ? null : (this.parts.sessions.find(e.session_id)?.name ?? null) };
      s.out.send('audit', auditShown(named, s.of), e.id);
    }
  }

  /** Start a stream on `res` (subscribe()'s, as an SSE reply). */
  subscribe(s: Omit<Subscriber, 'out'>, res: ServerResponse, after: number | undefined): void {
    this.check(s.caller);
    this.attach(s, new SseOut(res, this.parts.log), after);
  }

  /**
   * Refused (429) when the caller holds its share of the streams, or the
   * daemon all of them. Another node's streams (asked as their callers) count
   * apart, per node and uid, within a total of their own: a tenant's streams
   * on one node take none of the slots of the callers of this one.
   */
  check(caller: Caller): void {
    const peer = caller.via === 'peer';
    const alike = [...this.subs].filter((x) => (x.caller.via === 'peer') === peer);
    const mine = alike.filter((x) => x.caller.uid === caller.uid && x.caller.peer === caller.peer).length;
    if (mine >= MAX_PER_UID) throw new ApiError('too_many', `uid ${caller.uid} already has ${mine} event streams open${peer ? ` through node ${caller.peer ?? ''}` : ''}`);
    const total = peer ? MAX_PEER_TOTAL : MAX_TOTAL;
    if (alike.length >= total) throw new ApiError('too_many', `the daemon already serves ${alike.length} event streams${peer ? ' to other nodes' : ''}`);
  }

  /**
   * Start a stream on `out` (check() first): the sessions the caller may
   * see, then the audit events after `after` (a reconnect), then what
   * happens, until it goes. All at once, in one turn: nothing recorded in
   * between is missed.
   */
  attach(s: Omit<Subscriber, 'out'>, out: FeedOut, after: number | undefined): void {
    const sub = { ...s, out };
    // Another node's stream: that node reads the list itself (fleetStream.ts); its first event is only the place.
    const sessions = s.caller.via === 'peer' ? [] : this.parts.sessions.list(false, this.consoleInfo, this.parts.node).filter((v) => this.sees(s.caller, v));
    // With the reader's place in the trail (no further than the trail goes): a reader that reconnects before any audit event came misses none.
    const latest = this.parts.audit.latestId();
    out.send('sessions', { sessions }, after === undefined ? latest : Math.min(after, latest));
    if (after !== undefined) {
      const missed = this.parts.audit.list({ after, limit: REPLAY_LIMIT, of: s.of, reads: s.reads });
      for (const e of missed) out.send('audit', auditShown(e, s.of), e.id);
    }
    this.subs.add(sub);
    out.onClose(() => {
      this.subs.delete(sub);
      if (this.subs.size === 0) this.stopHeartbeat();
    });
    this.heartbeat ??= setInterval(() => {
      for (const x of this.subs) x.out.keepAlive();
    }, HEARTBEAT_MS).unref();
  }

  private stopHeartbeat(): void {
    clearInterval(this.heartbeat);
    this.heartbeat = undefined;
  }

  /** Daemon shutdown: every stream ends (their clients reconnect to the next daemon). */
  close(): void {
    for (const s of this.subs) s.out.end();
    this.subs.clear();
    this.stopHeartbeat();
  }
}
