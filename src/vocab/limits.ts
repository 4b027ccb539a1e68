// The limits table as schemas: what a session stores and reports, and what a
// create may ask for. The table itself is src/vocab/limitTable.ts.
import { z } from 'zod';
import { LIMITS, type LimitKey, type LimitRow, type Limits } from './limitTable.js';

export { LIMITS, FLAG_OF, limitRow, type LimitKey, type LimitRow, type Limits, type Usage } from './limitTable.js';

export const limitValue = (row: LimitRow) => z.number().int().min(row.min).max(row.max);

/** The stored and reported limits of a session. */
export const limitsSchema = z
  .object(Object.fromEntries(LIMITS.map((r) => [r.key, 'optional' in r ? limitValue(r).optional() : limitValue(r)])))
  .strict() as unknown as z.ZodType<Limits>;

/** The request's optional limit fields (create). */
export const limitRequestShape = Object.fromEntries(LIMITS.map((r) => [r.key, limitValue(r).optional()])) as unknown as { [K in LimitKey]: z.ZodOptional<z.ZodNumber> };
