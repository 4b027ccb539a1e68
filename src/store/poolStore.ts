// The pool's queries (src/sessions/pool.ts): its members are session rows
// with `pool` set, nobody's until a hand-out gives one an owner in one
// transaction with the owner's budget, as a create's reservation does.
import type Database from 'better-sqlite3';
import { LIVE_SQL } from '../vocab/states.js';
import type { Usage } from '../vocab/limits.js';
import type { SessionStore } from './sessionStore.js';

export class PoolStore {
  constructor(
    private readonly db: Database.Database,
    private readonly sessions: SessionStore,
  ) {}

  /** Live members (any shape, any state): what a sweep discards. */
  live(): string[] {
    return (this.db.prepare(`SELECT id FROM sessions WHERE pool IS NOT NULL AND state IN ${LIVE_SQL} ORDER BY rowid`).all() as { id: string }[]).map((r) => r.id);
  }

  /** ID slots free below `slots`. */
  freeSlots(slots: number): number {
    return slots - (this.db.prepare('SELECT count(*) AS n FROM id_slots WHERE slot < ?').get(slots) as { n: number }).n;
  }

  /**
   * Hand a running member to its owner: the row's owner fields set and its
   * pool cleared, with the owner's budget checked, in one transaction; false
   * if it is no running member of that shape (any more). A name another
   * live session of the owner has fails on the unique index, as an insert does.
   */
  claim(
    id: string,
    shape: string,
    to: { owner: number; name: string | null; keepConsole: boolean; idleTimeoutS: number | undefined; admit?: ((usage: Usage) => void) | undefined },
    /** Its hostname and stored plan when a name gave it another (the kernel's was set first). */
    renamed?: { hostname: string; plan: string },
  ): boolean {
    const now = new Date().toISOString();
    return this.db
      .transaction(() => {
        const row = this.db.prepare('SELECT state, pool FROM sessions WHERE id = ?').get(id) as { state: string; pool: string | null } | undefined;
        if (row?.state !== 'running' || row.pool !== shape) return false;
        to.admit?.(this.sessions.usageOf(to.owner));
        this.db
          .prepare('UPDATE sessions SET pool = NULL, owner_uid = ?, name = ?, keep_console = ?, idle_timeout_s = ?, created_at = ?, updated_at = ? WHERE id = ?')
          .run(to.owner, to.name, to.keepConsole ? 1 : 0, to.idleTimeoutS ?? null, now, now, id);
        if (renamed) {
          this.db.prepare('UPDATE sessions SET hostname = ? WHERE id = ?').run(renamed.hostname, id);
          this.db.prepare('UPDATE session_plans SET plan = ? WHERE session_id = ?').run(renamed.plan, id);
        }
        return true;
      })
      .immediate();
  }
}
