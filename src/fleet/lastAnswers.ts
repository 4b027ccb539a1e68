// The last list each node gave, by its tag (src/daemon/listTag.ts: equal
// tags, equal lists). Asked again with If-None-Match, a node whose list is
// unchanged answers 304 and the copy here is used: parsed and checked once,
// not on every list. A node whose list changed sends the rows that changed
// since (src/daemon/madeLists.ts), put together here with the rows held:
// only those are parsed and checked. One entry per node and path (a list's
// four paths), and a node gone from the fleet is forgotten.
import type { z } from 'zod';
import type { RowsDelta } from '../api/fleetSchemas.js';
import { deepFreeze } from '../vocab/frozen.js';

/** A list of sessions (or of their table rows), each with its id. */
export type ListSchema = z.ZodType<{ sessions: Array<{ id: string }> }, unknown>;

interface Entry {
  schema: z.ZodType;
  etag: string;
  value: { sessions: ReadonlyArray<{ id: string }> };
  /** The rows by id, made when a delta first needs them. */
  byId?: Map<string, { id: string }>;
}

/** An ETag as a node writes it (src/daemon/listTag.ts), and no other: it goes back in a header. */
const ETAG = /^"[A-Za-z0-9_.-]{1,120}"$/;

export class LastAnswers {
  private readonly entries = new Map<string, Entry>();
  /** How the lists asked for were answered (the daemon's /metrics). */
  readonly counts = { sent: 0, unchanged: 0, delta: 0 };

  /** The copy of `path` from `node`, if it was checked with `schema`. */
  kept<S extends ListSchema>(node: string, path: string, schema: S): { etag: string; value: z.output<S> } | undefined {
    const e = this.entries.get(`${node} ${path}`);
    // Checked with this schema when kept (sent()): the value is its output.
    return e && e.schema === schema ? { etag: e.etag, value: e.value as z.output<S> } : undefined;
  }

  /**
   * `node` sent the rows of `path` that changed since `kept` (its ids in
   * order, and the rows it holds otherwise): the list now, kept with `etag`
   * unless another list asked at the same time kept a newer one already.
   * Only the rows sent are checked (with `schema`, as a list of their own);
   * an id neither sent nor held, or sent twice, is an answer that does not
   * parse, and the copy is dropped.
   */
  patched<S extends ListSchema>(node: string, path: string, schema: S, kept: { etag: string; value: z.output<S> }, etag: string | undefined, delta: RowsDelta): z.output<S> {
    const k = `${node} ${path}`;
    const e = this.entries.get(k);
    // Two lists at once may both hold `kept` and be sent the same rows: each is put together from what it held.
    const current = e !== undefined && e.etag === kept.etag ? e : undefined;
    try {
      const byId = current ? (current.byId ??= byIdOf(kept.value.sessions)) : byIdOf(kept.value.sessions);
      const sent = new Map(schema.parse({ sessions: delta.rows }).sessions.map((r) => [r.id, r]));
      if (sent.size !== delta.rows.length) throw new Error('a row was sent twice');
      const ids = new Set(delta.ids);
      if (ids.size !== delta.ids.length) throw new Error('an id was listed twice');
      for (const id of sent.keys()) if (!ids.has(id)) throw new Error(`row ${id.slice(0, 64)} was sent but not listed`);
      const sessions = delta.ids.map((id) => {
        const row = sent.get(id) ?? byId.get(id);
        if (!row) throw new Error(`row ${id.slice(0, 64)} was neither sent nor held`);
        return row;
      });
      // The whole list's shape: the held rows passed its schema, the sent ones just did.
      const value = { ...kept.value, sessions } as z.output<S>;
      this.counts.delta++;
      if (e === undefined || current) this.keepAs(k, schema, etag, value);
      return value;
    } catch (err) {
      this.drop(node, path, kept.etag);
      throw err;
    }
  }

  /** Forget the copy of `path` from `node` if it is still the one tagged `etag` (its node answered what does not fit it). */
  drop(node: string, path: string, etag: string): void {
    const k = `${node} ${path}`;
    if (this.entries.get(k)?.etag === etag) this.entries.delete(k);
  }

  /**
   * `node` sent `value` (checked with `schema`) for `path`: kept, with its tag. Frozen:
   * every list made of it shares it, and one that changed it would change the next.
   */
  sent<S extends ListSchema>(node: string, path: string, schema: S, etag: string | undefined, value: z.output<S>): void {
    this.counts.sent++;
    this.keepAs(`${node} ${path}`, schema, etag, value);
  }

  private keepAs(k: string, schema: ListSchema, etag: string | undefined, value: { sessions: ReadonlyArray<{ id: string }> }): void {
    if (etag === undefined || !ETAG.test(etag)) return void this.entries.delete(k);
    this.entries.set(k, { schema, etag, value: deepFreeze(value) });
  }

  /** `node` answered 304 to the tag of `kept`: its value is the answer. */
  unchanged<T>(kept: { value: T }): T {
    this.counts.unchanged++;
    return kept.value;
  }

  /** Only the answers of `nodes` are kept. */
  keep(nodes: ReadonlySet<string>): void {
    for (const k of this.entries.keys()) if (!nodes.has(k.slice(0, k.indexOf(' ')))) this.entries.delete(k);
  }
}

const byIdOf = <R extends { id: string }>(rows: readonly R[]): Map<string, R> => new Map(rows.map((r) => [r.id, r]));
