// A listing's rows, each checked once: a row read again with every column
// as it was is the row checked before, the same frozen object. A list of
// sessions that mostly did not change then checks only those that did, and
// what is made of a row (its view, src/sessions/view.ts ListViews; its
// JSON, src/daemon/listJson.ts) is kept by the row's identity. Rows are
// read as arrays (better-sqlite3 builds no object per row) and compared
// column by column with the row read last time; those that changed are
// checked as one array (one parse of N rows costs about half of N parses of
// one). Only the rows of the last listing are kept; a listing brought up to
// date from the rows that changed (listedRows.ts) updates those alone.
import type { z } from 'zod';
import { deepFreeze } from '../vocab/frozen.js';

export class CheckedRows<T> {
  private rows = new Map<unknown, { columns: readonly unknown[]; row: T }>();
  private readonly id: number;

  /**
   * `columns`: the names of the columns as the query reads them, `id` among
   * them: each row is checked as an object of those. Without, each is
   * checked as the array it was read as, its id first.
   */
  constructor(
    private readonly schema: z.ZodType<T[]>,
    private readonly columns?: readonly string[],
  ) {
    this.id = columns ? columns.indexOf('id') : 0;
    if (this.id < 0) throw new Error('a checked row needs its id column');
  }

  /** A whole listing's rows, in its order: those kept are every row kept. */
  check(raw: ReadonlyArray<readonly unknown[]>): T[] {
    const rows = this.checked(raw);
    this.rows = new Map(rows.map((row, i) => [raw[i]![this.id], { columns: raw[i]!, row }]));
    return rows;
  }

  /** Some rows of the listing, read again (each kept in place of its old one), and the ids of rows gone from it. */
  update(raw: ReadonlyArray<readonly unknown[]>, gone: Iterable<unknown>): T[] {
    const rows = this.checked(raw);
    for (const id of gone) this.rows.delete(id);
    rows.forEach((row, i) => this.rows.set(raw[i]![this.id], { columns: raw[i]!, row }));
    return rows;
  }

  private checked(raw: ReadonlyArray<readonly unknown[]>): T[] {
    const out: Array<T | undefined> = raw.map((r) => {
      const kept = this.rows.get(r[this.id]);
      return kept !== undefined && same(kept.columns, r) ? kept.row : undefined;
    });
    const missed = out.flatMap((r, i) => (r === undefined ? [i] : []));
    if (missed.length > 0) {
      const columns = this.columns;
      const checked = this.schema.parse(missed.map((i) => (columns ? Object.fromEntries(columns.map((c, j) => [c, raw[i]![j]])) : raw[i])));
      missed.forEach((i, j) => (out[i] = deepFreeze(checked[j]!)));
    }
    return out as T[];
  }
}

/** Columns are numbers, strings (JSON text too) and nulls: equal when each is the same value. */
function same(a: readonly unknown[], b: readonly unknown[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
