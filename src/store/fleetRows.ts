// What a fleet node keeps on its own session rows about the fleet: the old
// copy a drain moved away (moved_to, migration 019), and whether a row was
// made for one of the fleet's placements (placed, migration 022).
import type Database from 'better-sqlite3';
import { z } from 'zod';
import { ENDED_SQL, LIVE_SQL } from '../vocab/states.js';
import { deleteEnded } from './endedRows.js';
import { rowSchema, type SessionRow } from './sessionRows.js';

/** settle()'s read of every live row (exported for the test of its query plan: through the state index). */
export const LIVE_STATES_SQL = `SELECT id, state, json_extract(limits, '$.memory_mb') AS memory_mb, placed FROM sessions WHERE state IN ${LIVE_SQL} AND pool IS NULL`;
const stateRowSchema = z.object({ id: z.string(), state: rowSchema.shape.state, memory_mb: z.number().int().positive(), placed: z.union([z.literal(0), z.literal(1)]) });
/** A live row as settle() reads it: `placed`, made for one of the fleet's placements (not from before the node joined). */
export interface LiveRow {
  state: SessionRow['state'];
  memory_mb: number;
  placed: boolean;
}

/**
 * Why a create made for a placement failed, when its row failed before the
 * session ever ran: no init start recorded, no exit, never stopped (a stop
 * clears the init start). Undefined for any other row. The fleet's worker
 * reports such a failure after a restart (src/fleet/worker.ts unreported).
 */
export function failedCreate(row: SessionRow | undefined): string | undefined {
  if (!row || row.state !== 'failed' || !row.placed) return undefined;
  if (row.init_start_time !== null || row.exit_code !== null || row.exit_signal !== null || row.stopped_because !== null) return undefined;
  return row.last_error ?? 'the session could not be created';
}

export class FleetRows {
  /** `q`: the session store's statements, compiled once per SQL text. */
  constructor(
    private readonly db: Database.Database,
    private readonly q: (sql: string) => Database.Statement,
  ) {}

  /**
   * Every tenant session not ended, with its state, its memory, MiB, and
   * whether it was made for a placement (pool members are nobody's), in one
   * read of four columns through the state
   * index: a node's settle asks this once a second of every session placed
   * on it (src/fleet/worker.ts; a full row parse each was most of its cost).
   * Ended rows (history, up to sessions.keep_history) are not read. A row
   * that does not check is left out and told to `bad` (its caller reads its
   * state alone, stateOf()).
   */
  liveStatesAndMemory(bad: (id: string, why: string) => void = () => undefined): Map<string, LiveRow> {
    const out = new Map<string, LiveRow>();
    for (const row of this.q(LIVE_STATES_SQL).all()) {
      const r = stateRowSchema.safeParse(row);
      if (r.success) out.set(r.data.id, { state: r.data.state, memory_mb: r.data.memory_mb, placed: r.data.placed === 1 });
      else bad(String((row as { id?: unknown }).id), r.error.issues[0]?.message ?? 'invalid');
    }
    return out;
  }

  /** A tenant session's state (its state column alone), or undefined when this node has no such row. */
  stateOf(id: string): SessionRow['state'] | undefined {
    const r = this.q('SELECT state FROM sessions WHERE id = ? AND pool IS NULL').get(id) as { state: string } | undefined;
    return r === undefined ? undefined : rowSchema.shape.state.parse(r.state);
  }

  /** This ended row is the old copy of a session a drain moved to `node`. */
  markMovedAway(id: string, node: string): void {
    this.q(`UPDATE sessions SET moved_to = ? WHERE id = ? AND state IN ${ENDED_SQL}`).run(node, id);
  }

  /** Drop the ended old copy of a session that moved away (it is moving back, under its id); false if there is none. */
  dropMovedAway(id: string): boolean {
    return deleteEnded(this.db, this.q, `SELECT id FROM sessions WHERE id = ? AND moved_to IS NOT NULL AND state IN ${ENDED_SQL} AND id NOT IN (SELECT session_id FROM ip_leases)`, id) === 1;
  }

  /**
   * Mark as made for a placement the rows of `fleetIds` (every id the fleet's
   * keys name) not marked yet: those an older daemon made before migration
   * 022 gave every row 0. A session made before this node joined a fleet is
   * named by no key, and stays unmarked. How many were marked.
   */
  markPlaced(fleetIds: ReadonlySet<string>): number {
    const unmarked = this.q('SELECT id FROM sessions WHERE placed = 0').pluck().all() as string[];
    const mark = this.q('UPDATE sessions SET placed = 1 WHERE id = ?');
    return this.db.transaction(() => unmarked.filter((id) => fleetIds.has(id)).reduce((n, id) => n + mark.run(id).changes, 0))();
  }
}
