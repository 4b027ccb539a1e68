// The last list each node gave, by its tag (src/daemon/listTag.ts: equal
// tags, equal lists). Asked again with If-None-Match, a node whose list is
// unchanged answers 304 and the copy here is used: parsed and checked once,
// not on every list. One entry per node and path (a list's four paths), and
// a node gone from the fleet is forgotten.
import type { z } from 'zod';

interface Entry {
  schema: z.ZodType;
  etag: string;
  value: unknown;
}

/** An ETag as a node writes it (src/daemon/listTag.ts), and no other: it goes back in a header. */
const ETAG = /^"[A-Za-z0-9_.-]{1,120}"$/;

export class LastAnswers {
  private readonly entries = new Map<string, Entry>();
  /** How the lists asked for were answered (the daemon's /metrics). */
  readonly counts = { sent: 0, unchanged: 0 };

  /** The copy of `path` from `node`, if it was checked with `schema`. */
  kept<S extends z.ZodType>(node: string, path: string, schema: S): { etag: string; value: z.output<S> } | undefined {
    const e = this.entries.get(`${node} ${path}`);
    // Checked with this schema when kept (sent()): the value is its output.
    return e && e.schema === schema ? { etag: e.etag, value: e.value as z.output<S> } : undefined;
  }

  /**
   * `node` sent `value` (checked with `schema`) for `path`: kept, with its tag. Frozen:
   * every list made of it shares it, and one that changed it would change the next.
   */
  sent<S extends z.ZodType>(node: string, path: string, schema: S, etag: string | undefined, value: z.output<S>): void {
    this.counts.sent++;
    const k = `${node} ${path}`;
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

function deepFreeze<T>(v: T): T {
  if (typeof v === 'object' && v !== null && !Object.isFrozen(v)) {
    Object.freeze(v);
    for (const x of Object.values(v)) deepFreeze(x);
  }
  return v;
}
