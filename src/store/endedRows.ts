// Ended sessions' rows going for good, with what refers to them: the oldest
// past sessions.keep_history, and in fleet mode the old copy of a session a
// drain moved away, when it moves back here under its id.
import type Database from 'better-sqlite3';

/** Delete the sessions `ids` selects (a query of ended ones, one parameter) and their rows elsewhere; how many sessions went. */
export function deleteEnded(db: Database.Database, q: (sql: string) => Database.Statement, ids: string, param: string | number): number {
  return db
    .transaction(() => {
      const before = q('SELECT n FROM list_version WHERE id = 1').pluck().get() as number;
      q(`DELETE FROM kernel_objects WHERE session_id IN (${ids})`).run(param);
      q(`DELETE FROM session_volumes WHERE session_id IN (${ids})`).run(param);
      q(`DELETE FROM session_plans WHERE session_id IN (${ids})`).run(param);
      const n = q(`DELETE FROM sessions WHERE id IN (${ids})`).run(param).changes;
      // The change records of sessions deleted by earlier prunes go (migrations/023), and the floor rises to
      // the newest of them: a listing kept from before it is read whole, not patched from records that are
      // gone (src/store/listedRows.ts). Those of the sessions deleted now stay until the next prune, so the
      // listings kept now are patched, not read whole after every prune. Only when any went: a prune runs
      // after every stop.
      if (n > 0) {
        const stale = "FROM list_changes WHERE session_id != '*' AND n <= ? AND session_id NOT IN (SELECT id FROM sessions)";
        const top = q(`SELECT max(n) ${stale}`).pluck().get(before) as number | null;
        if (top !== null) {
          q(`DELETE ${stale}`).run(before);
          q('UPDATE list_version SET floor = max(floor, ?)').run(top);
        }
      }
      return n;
    })
    .immediate();
}
