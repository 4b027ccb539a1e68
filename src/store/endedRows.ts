// Ended sessions' rows going for good, with what refers to them: the oldest
// past sessions.keep_history, and in fleet mode the old copy of a session a
// drain moved away, when it moves back here under its id.
import type Database from 'better-sqlite3';

/** Delete the sessions `ids` selects (a query of ended ones, one parameter) and their rows elsewhere; how many sessions went. */
export function deleteEnded(db: Database.Database, q: (sql: string) => Database.Statement, ids: string, param: string | number): number {
  return db
    .transaction(() => {
      q(`DELETE FROM kernel_objects WHERE session_id IN (${ids})`).run(param);
      q(`DELETE FROM session_volumes WHERE session_id IN (${ids})`).run(param);
      q(`DELETE FROM session_plans WHERE session_id IN (${ids})`).run(param);
      return q(`DELETE FROM sessions WHERE id IN (${ids})`).run(param).changes;
    })
    .immediate();
}
