// The session listings: the API's list (rows and each session's details:
// lease, ports, secrets, volumes) and the table of `session list`, each kept
// between reads and brought up to date from the sessions changed since
// (listedRows.ts), in one read transaction. A session's details are the
// same object while they are the same, as its row is (checkedRows.ts), so
// the view made of them is kept too (src/sessions/view.ts ListViews).
import type Database from 'better-sqlite3';
import { deepFreeze } from '../vocab/frozen.js';
import { CheckedRows } from './checkedRows.js';
import { ListChanges, ListedRows } from './listedRows.js';
import { SUMMARY_COLUMNS, summariesSchema, TABLE_COLUMNS, tableRowsSchema, type SessionDetails, type SessionSummary, type TableRow } from './sessionRows.js';

export interface Listing {
  rows: readonly SessionSummary[];
  /** Each listed session's details. */
  details: (id: string) => SessionDetails;
}

interface DetailsSource {
  detailsOf(id: string): SessionDetails;
  detailsOfAll(): (id: string) => SessionDetails;
}

const NONE: SessionDetails = deepFreeze({ lease: undefined, ports: [], secrets: { auth: [], env_tokens: [] }, volumes: [] });
const listed = (all: boolean, s = '') => `${s}pool IS NULL${all ? '' : ` AND ${s}state != 'destroyed'`}`;

export class Listings {
  private readonly changes: ListChanges;
  /** By `all` (0: without destroyed sessions, 1: with). */
  private readonly lists: Array<ListedRows<SessionSummary>>;
  private readonly tables: Array<ListedRows<TableRow>>;
  private readonly details = [new Map<string, SessionDetails>(), new Map<string, SessionDetails>()];
  private readonly readList: (all: boolean) => Listing;
  private readonly readTable: (all: boolean) => readonly TableRow[];

  constructor(
    private readonly db: Database.Database,
    q: (sql: string) => Database.Statement,
    private readonly source: DetailsSource,
  ) {
    this.changes = new ListChanges(db);
    const raw = (sql: string) => q(sql).raw(true);
    this.lists = [false, true].map((all) => {
      const from = `SELECT ${SUMMARY_COLUMNS} FROM sessions WHERE ${listed(all)}`;
      return new ListedRows(new CheckedRows(summariesSchema, SUMMARY_COLUMNS.split(', ')), () => raw(`${from} ORDER BY created_at, rowid`).all() as unknown[][], (id) => raw(`${from} AND id = ?`).get(id) as unknown[] | undefined);
    });
    this.tables = [false, true].map((all) => {
      const from = `SELECT ${TABLE_COLUMNS} FROM sessions s LEFT JOIN ip_leases l ON l.session_id = s.id WHERE ${listed(all, 's.')}`;
      return new ListedRows(new CheckedRows(tableRowsSchema), () => raw(`${from} ORDER BY s.created_at, s.rowid`).all() as unknown[][], (id) => raw(`${from} AND s.id = ?`).get(id) as unknown[] | undefined);
    });
    this.readList = db.transaction((all: boolean) => this.list(all));
    this.readTable = db.transaction((all: boolean) => this.tables[all ? 1 : 0]!.read(this.changes).rows);
  }

  /** The version of what a list shows (migration 021's counter; listVersion.ts). */
  version(): number {
    return this.changes.version().n;
  }

  /** The API's list: every listed session's row and details, one snapshot. */
  listing(all: boolean): Listing {
    const i = all ? 1 : 0;
    return this.kept(() => this.readList(all), () => (this.lists[i]!.forget(), (this.details[i] = new Map())));
  }

  /** What `session list` shows of each (?format=text): its table's columns and lease, no JSON column parsed. */
  table(all: boolean): readonly TableRow[] {
    return this.kept(() => this.readTable(all), () => this.tables[all ? 1 : 0]!.forget());
  }

  /**
   * `read()`, the listing kept only from a committed read: one that
   * failed part way, or ran inside a caller's transaction (a savepoint that
   * may roll back, and whose version a later write can reach again), is
   * forgotten, and the next is read whole.
   */
  private kept<T>(read: () => T, forget: () => void): T {
    const nested = this.db.inTransaction;
    try {
      return read();
    } catch (e) {
      forget();
      throw e;
    } finally {
      if (nested) forget();
    }
  }

  private list(all: boolean): Listing {
    const i = all ? 1 : 0;
    const { rows, changed } = this.lists[i]!.read(this.changes);
    const kept = this.details[i]!;
    if (changed === undefined) {
      const of = this.source.detailsOfAll();
      const next = new Map(rows.map((r) => [r.id, same(kept.get(r.id), of(r.id))]));
      this.details[i] = next;
    } else if (changed.size > 0) {
      const now = new Set(rows.map((r) => r.id));
      for (const id of changed) {
        if (now.has(id)) kept.set(id, same(kept.get(id), this.source.detailsOf(id)));
        else kept.delete(id);
      }
    }
    const details = this.details[i]!;
    return { rows, details: (id) => details.get(id) ?? NONE };
  }
}

/** The details kept when they are the same as read now (a view of them is then kept too), else those read, frozen. */
function same(kept: SessionDetails | undefined, now: SessionDetails): SessionDetails {
  return kept !== undefined && JSON.stringify(kept) === JSON.stringify(now) ? kept : deepFreeze(now);
}
