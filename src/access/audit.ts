// The audit trail: one row per access decision, in SQLite. Retention is per
// caller (access.keep_events, the newest of each uid's): one user flooding
// the trail with calls prunes only its own rows, never another's. Statements
// are prepared once; old rows go in batches, by the (caller_uid, id) index.
import type Database from 'better-sqlite3';
import type { AuditEvent } from '../api/eventSchemas.js';

const PRUNE_EVERY = 1000;
/** Actions that only read: an allowed one is left out of a listing unless asked for (a denied one never is). */
const READS = ['session.list', 'session.show', 'volume.list', 'auth.list', 'events.list'];

/** An allowed read: left out of listings and streams unless asked for. */
export const isAllowedRead = (e: Pick<AuditEvent, 'decision' | 'action'>): boolean => e.decision === 'allow' && READS.includes(e.action);

export class AuditLog {
  private readonly insert: Database.Statement;
  private readonly prune: Database.Statement;
  /** Rows each uid wrote since its rows were last pruned. */
  private readonly sincePrune = new Map<number, number>();

  constructor(
    private readonly db: Database.Database,
    private readonly keep: number,
  ) {
    this.insert = db.prepare(
      `INSERT INTO events (time, caller_uid, caller_gid, caller_pid, via, action, session_id, object_owner, decision, rule, detail)
       VALUES (@time, @caller_uid, @caller_gid, @caller_pid, @via, @action, @session_id, @object_owner, @decision, @rule, @detail)`,
    );
    this.prune = db.prepare('DELETE FROM events WHERE caller_uid = ? AND id <= (SELECT id FROM events WHERE caller_uid = ? ORDER BY id DESC LIMIT 1 OFFSET ?)');
    for (const { uid } of db.prepare('SELECT DISTINCT caller_uid AS uid FROM events').all() as { uid: number }[]) this.prune.run(uid, uid, keep);
  }

  /** The id of the event recorded last (read right after a decision, it is that decision's). */
  lastId = 0;

  /** Who hears of each event once it is recorded (the daemon's event stream); its session_name is left null. */
  private readonly listeners: ((e: AuditEvent) => void)[] = [];

  onRecord(listener: (e: AuditEvent) => void): void {
    this.listeners.push(listener);
  }

  record(e: Omit<AuditEvent, 'id' | 'time' | 'session_name'>): void {
    const row = { ...e, time: new Date().toISOString(), detail: e.detail === null ? null : e.detail.slice(0, 1024) };
    const inserted = this.insert.run(row);
    this.lastId = Number(inserted.lastInsertRowid);
    for (const l of this.listeners) l({ ...row, id: this.lastId, session_name: null });
    const n = (this.sincePrune.get(e.caller_uid) ?? 0) + 1;
    this.sincePrune.set(e.caller_uid, n < PRUNE_EVERY ? n : 0);
    if (n >= PRUNE_EVERY) this.prune.run(e.caller_uid, e.caller_uid, this.keep);
  }

  /** The id of the newest event in the trail (0: none): a stream's place at its start. */
  latestId(): number {
    return Number(this.db.prepare('SELECT COALESCE(MAX(id), 0) FROM events').pluck().get());
  }

  /** A create's event names the session it made, once it exists. */
  setSession(eventId: number, session: string): void {
    this.db.prepare('UPDATE events SET session_id = ? WHERE id = ? AND session_id IS NULL').run(session, eventId);
  }

  /**
   * `of`: only this uid's calls and calls on its objects (a self-scoped
   * caller's view); `uid` the same for a filter; `action` one action or a
   * family (`session.*`); `after`: ids past it (a stream's resume); allowed
   * reads only with `reads`.
   */
  list(filter: { session?: string | undefined; since?: string | undefined; after?: number | undefined; limit: number; of?: number | undefined; uid?: number | undefined; action?: string | undefined; reads?: boolean | undefined }): AuditEvent[] {
    const where: string[] = [];
    const args: (string | number)[] = [];
    for (const who of [filter.of, filter.uid]) {
      if (who !== undefined) where.push('e.id IN (SELECT id FROM events WHERE caller_uid = ? UNION SELECT id FROM events WHERE object_owner = ?)'), args.push(who, who);
    }
    if (filter.session) where.push('e.session_id = ?'), args.push(filter.session);
    if (filter.since) where.push('e.time >= ?'), args.push(filter.since);
    if (filter.after !== undefined) where.push('e.id > ?'), args.push(filter.after);
    if (filter.action?.endsWith('.*')) where.push('e.action LIKE ?'), args.push(`${filter.action.slice(0, -1)}%`);
    else if (filter.action) where.push('e.action = ?'), args.push(filter.action);
    if (!filter.reads) where.push(`NOT (e.decision = 'allow' AND e.action IN (${READS.map(() => '?').join(',')}))`), args.push(...READS);
    const sql =
      `SELECT * FROM (SELECT e.*, s.name AS session_name FROM events e LEFT JOIN sessions s ON s.id = e.session_id ` +
      `${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY e.id DESC LIMIT ?) ORDER BY id`;
    return this.db.prepare(sql).all(...args, filter.limit) as AuditEvent[];
  }
}
