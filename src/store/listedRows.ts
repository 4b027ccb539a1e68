// A listing kept between reads and brought up to date from the sessions
// changed since (migrations/023_list_changes.sql): after one session
// stopped, a list of 300 reads one row again, not 300. The version, the
// changes and the rows are read in one snapshot (the caller's read
// transaction). A listing is read whole the first time, when a session
// joins it (its place in the order is the whole query's to say), when a
// change touched every session ('*'), when its records were pruned since
// (the floor), and when more than FEW sessions changed.
import type Database from 'better-sqlite3';
import type { CheckedRows } from './checkedRows.js';

/** More sessions changed than this since the listing kept: one query of the whole beats this many of one. */
export const FEW = 32;

/** Where the list's version stands, and which sessions moved it since a version. */
export class ListChanges {
  private readonly at: Database.Statement;
  private readonly since: Database.Statement;

  constructor(db: Database.Database) {
    this.at = db.prepare('SELECT n, floor FROM list_version WHERE id = 1');
    this.since = db.prepare('SELECT session_id FROM list_changes WHERE n > ? LIMIT ?').pluck();
  }

  version(): { n: number; floor: number } {
    return this.at.get() as { n: number; floor: number };
  }

  /** The sessions changed after version `v`; undefined when that is not known one by one, or more than FEW. */
  after(v: number, floor: number): string[] | undefined {
    if (v < floor) return undefined;
    const ids = this.since.all(v, FEW + 1) as string[];
    return ids.length > FEW || ids.includes('*') ? undefined : ids;
  }
}

export interface Listed<T> {
  rows: readonly T[];
  /** The sessions read again since the last read (what a list shows of them may differ); undefined: read whole. */
  changed: ReadonlySet<string> | undefined;
}

export class ListedRows<T extends { id: string; created_at: string }> {
  private kept: { version: number; rows: readonly T[]; byId: Map<string, T> } | undefined;

  /** `whole`: the listing's query, in order; `one`: the same of one session (undefined: not in the listing). */
  constructor(
    private readonly checked: CheckedRows<T>,
    private readonly whole: () => unknown[][],
    private readonly one: (id: string) => unknown[] | undefined,
  ) {}

  /** The listing now. Call inside a read transaction: `changes` must see the snapshot the rows are read from. */
  read(changes: ListChanges): Listed<T> {
    const { n, floor } = changes.version();
    const k = this.kept;
    if (k?.version === n) return { rows: k.rows, changed: new Set() };
    const ids = k ? changes.after(k.version, floor) : undefined;
    const patched = k && ids ? this.patch(k, ids) : undefined;
    if (patched) {
      this.kept = { version: n, rows: patched, byId: new Map(patched.map((r) => [r.id, r])) };
      return { rows: patched, changed: new Set(ids) };
    }
    const rows = this.checked.check(this.whole());
    this.kept = { version: n, rows, byId: new Map(rows.map((r) => [r.id, r])) };
    return { rows, changed: undefined };
  }

  /** Keep nothing: the next read is whole (listings.ts: a read that failed, or was not committed). */
  forget(): void {
    this.kept = undefined;
  }

  /** The kept rows with `ids` read again in place (gone ones left out); undefined when the whole must be read. */
  private patch(k: NonNullable<typeof this.kept>, ids: readonly string[]): T[] | undefined {
    const raw: unknown[][] = [];
    const gone: string[] = [];
    for (const id of ids) {
      const r = this.one(id);
      if (r === undefined) gone.push(id);
      else if (!k.byId.has(id)) return undefined;
      else raw.push(r);
    }
    const fresh = this.checked.update(raw, gone);
    // A row whose place moved (its created_at: a pool member taken, made anew) is placed by the whole query.
    if (fresh.some((r) => k.byId.get(r.id)!.created_at !== r.created_at)) return undefined;
    const byId = new Map(fresh.map((r) => [r.id, r]));
    const changed = new Set(ids);
    return k.rows.flatMap((r) => {
      if (!changed.has(r.id)) return [r];
      const now = byId.get(r.id);
      return now ? [now] : [];
    });
  }
}
