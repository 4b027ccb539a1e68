// The audit trail: one row per access decision, in SQLite. Retention is per
// caller (access.keep_events, the newest of each uid's): one user flooding
// the trail with calls prunes only its own rows, never another's. Statements
// are prepared once; old rows go in batches, by the (caller_uid, id) index.
import type Database from 'better-sqlite3';
import type { AuditEvent } from '../api/schemas.js';

const PRUNE_EVERY = 1000;

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

  record(e: Omit<AuditEvent, 'id' | 'time'>): void {
    this.insert.run({ ...e, time: new Date().toISOString(), detail: e.detail === null ? null : e.detail.slice(0, 1024) });
    const n = (this.sincePrune.get(e.caller_uid) ?? 0) + 1;
    this.sincePrune.set(e.caller_uid, n < PRUNE_EVERY ? n : 0);
    if (n >= PRUNE_EVERY) this.prune.run(e.caller_uid, e.caller_uid, this.keep);
  }

  /** `of`: only this uid's calls and calls on its objects (a self-scoped caller's view). */
  list(filter: { session?: string | undefined; since?: string | undefined; limit: number; of?: number | undefined }): AuditEvent[] {
    const where: string[] = [];
    const args: (string | number)[] = [];
    if (filter.of !== undefined) where.push('id IN (SELECT id FROM events WHERE caller_uid = ? UNION SELECT id FROM events WHERE object_owner = ?)'), args.push(filter.of, filter.of);
    if (filter.session) where.push('session_id = ?'), args.push(filter.session);
    if (filter.since) where.push('time >= ?'), args.push(filter.since);
    const sql = `SELECT * FROM (SELECT * FROM events ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY id DESC LIMIT ?) ORDER BY id`;
    return this.db.prepare(sql).all(...args, filter.limit) as AuditEvent[];
  }
}
