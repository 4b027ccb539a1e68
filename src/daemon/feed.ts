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

/** Open streams: per uid and in all (each holds a socket). */
const MAX_PER_UID = 32;
const MAX_TOTAL = 256;
/** Unsent bytes past which a subscriber is dropped (it reconnects and gets the list afresh). */
const MAX_BACKLOG = 1024 * 1024;
/** A comment now and then finds connections whose peer went without a word. */
const HEARTBEAT_MS = 30_000;
/** What a reconnecting subscriber is replayed at most. */
const REPLAY_LIMIT = 1000;

interface Subscriber {
  caller: Caller;
  /** Self-scoped: only this uid's calls and calls on its objects. */
  of: number | undefined;
  reads: boolean;
  res: ServerResponse;
}

export interface FeedParts {
  sessions: SessionManager;
  access: AccessGuard;
  audit: AuditLog;
  consoles: Consoles;
  log: Logger;
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
      for (const s of this.subs) if (this.parts.access.visible(s.caller, row)) this.send(s, 'session', view);
    }
  }

  private passes(e: AuditEvent, s: Subscriber): boolean {
    if (!s.reads && isAllowedRead(e)) return false;
    return s.of === undefined || e.caller_uid === s.of || e.object_owner === s.of;
  }

  /** A self-scoped subscriber's own calls on others' objects: whose they were is not for it to learn (as in the list). */
  private shown(e: AuditEvent, s: Subscriber): AuditEvent {
    return s.of !== undefined && e.object_owner !== null && e.object_owner !== s.of ? { ...e, object_owner: null } : e;
  }

  private recorded(e: AuditEvent): void {
    let named: AuditEvent | undefined;
    for (const s of this.subs) {
      if (!this.passes(e, s)) continue;
      named ??= { ...e, session_name: e.session_id === null ? null : (this.parts.sessions.find(e.session_id)?.name ?? null) };
      this.send(s, 'audit', this.shown(named, s), e.id);
    }
  }

  private send(s: Subscriber, event: string, data: unknown, id?: number): void {
    if (s.res.destroyed || s.res.writableEnded) return; // gone; its 'close' is on its way
    if (s.res.writableLength > MAX_BACKLOG) {
      this.parts.log.debug({ uid: s.caller.uid }, 'event stream subscriber too far behind: closed');
      s.res.destroy();
      return;
    }
    s.res.write(`event: ${event}\n${id === undefined ? '' : `id: ${id}\n`}data: ${JSON.stringify(data)}\n\n`);
  }

  /**
   * Start a stream on `res`: the sessions the caller may see, then the audit
   * events after `after` (a reconnect), then what happens, until it goes.
   * All at once, in one turn: nothing recorded in between is missed.
   */
  subscribe(s: Omit<Subscriber, 'res'>, res: ServerResponse, after: number | undefined): void {
    const mine = [...this.subs].filter((x) => x.caller.uid === s.caller.uid).length;
    if (mine >= MAX_PER_UID) throw new ApiError('too_many', `uid ${s.caller.uid} already has ${mine} event streams open`);
    if (this.subs.size >= MAX_TOTAL) throw new ApiError('too_many', `the daemon already serves ${this.subs.size} event streams`);
    const sub = { ...s, res };
    // A write to a connection the peer reset fails here, not as an uncaught error.
    res.on('error', (e) => this.parts.log.debug({ err: e.message }, 'event stream write failed'));
    res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-store', 'x-content-type-options': 'nosniff' });
    res.write('retry: 2000\n\n');
    const sessions = this.parts.sessions.list(false, this.consoleInfo).filter((v) => this.parts.access.visible(s.caller, v));
    this.send(sub, 'sessions', { sessions });
    if (after !== undefined) {
      const missed = this.parts.audit.list({ after, limit: REPLAY_LIMIT, of: s.of, reads: s.reads });
      for (const e of missed) this.send(sub, 'audit', this.shown(e, sub), e.id);
    }
    this.subs.add(sub);
    res.once('close', () => {
      this.subs.delete(sub);
      if (this.subs.size === 0) this.stopHeartbeat();
    });
    this.heartbeat ??= setInterval(() => {
      for (const x of this.subs) if (!x.res.destroyed && !x.res.writableEnded) x.res.write(': keep-alive\n\n');
    }, HEARTBEAT_MS).unref();
  }

  private stopHeartbeat(): void {
    clearInterval(this.heartbeat);
    this.heartbeat = undefined;
  }

  /** Daemon shutdown: every stream ends (their clients reconnect to the next daemon). */
  close(): void {
    for (const s of this.subs) s.res.end();
    this.subs.clear();
    this.stopHeartbeat();
  }
}
