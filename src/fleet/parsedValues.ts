// Values of the fleet's keys parsed once each: the watched copy (watched.ts)
// hands every list and every settle the same strings until a key is written
// again, so a value is parsed (JSON and its schema) only when it is a new
// string. What is kept is frozen: every reader shares it.
import type { z } from 'zod';
import { deepFreeze } from '../vocab/frozen.js';
import { parseValue } from './keys.js';

export class ParsedValues<S extends z.ZodType> {
  private readonly kept = new Map<string, { value: string; parsed: Readonly<z.output<S>> }>();

  constructor(private readonly schema: S) {}

  /** `value` of key `k` parsed as parseValue() does (it throws as that does), or as kept when it is the same string. */
  get(k: string, value: string): Readonly<z.output<S>> {
    const kept = this.kept.get(k);
    if (kept?.value === value) return kept.parsed;
    const parsed = deepFreeze(parseValue(this.schema, k, value));
    this.kept.set(k, { value, parsed });
    return parsed;
  }

  /** Forget the keys not in `present` (gone from etcd): what is kept stays bounded by what etcd holds. */
  keepOnly(present: ReadonlyMap<string, unknown>): void {
    if (this.kept.size > present.size) for (const k of this.kept.keys()) if (!present.has(k)) this.kept.delete(k);
  }
}
