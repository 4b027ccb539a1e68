// Per-user budgets: what one non-root user may hold, so no user can take the
// host from another. For every limit of the limits table, a ceiling per
// session and a total over the user's live sessions; volume bytes (per
// volume and in all), viewers, exec streams, live sessions, and which host
// addresses and ports it may publish. `[access.budget]` is everyone's;
// `[[access.budgets]]` entries override it for the uids and gids they name
// (the first that matches). Root has no budget. Pure: the callers hold the
// counts and the transaction that makes a check and its effect one step.
import { z } from 'zod';
import { ApiError } from '../vocab/errors.js';
import { LIMITS, limitValue, type LimitKey, type Limits, type Usage } from '../vocab/limits.js';
import type { Principal } from './policy.js';

const id = z.number().int().min(0).max(4294967294);
const count = z.number().int().min(0).max(1_000_000_000);

/** A limit's budget: each field defaults to the table's row. */
const limitBudget = (row: (typeof LIMITS)[number]) =>
  z.object({ session: limitValue(row).default(row.budget.session), total: count.default(row.budget.total) }).strict().prefault({});

const loopback = z.string().regex(/^127\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/, 'must be a loopback address (127.x.y.z)');

const extras = {
  /** Volume sizes, MiB: the largest one volume, and all of the user's together. */
  volume_mb: z.object({ volume: z.number().int().min(16).max(1024 * 1024).default(16384), total: count.default(32768) }).strict().prefault({}),
  /** Attached console viewers at once, over all the user's sessions. */
  viewers: z.object({ total: count.default(16) }).strict().prefault({}),
  /** Exec and attach streams at once (default: api.max_exec_streams_per_caller). */
  exec_streams: z.object({ total: count.optional() }).strict().prefault({}),
  /** Live sessions (default: access.max_sessions_per_uid). */
  sessions: z.object({ total: count.optional() }).strict().prefault({}),
  /** Secrets in the store: how many, and their values' bytes together. */
  secrets: z.object({ count: count.default(64), bytes: count.default(1024 * 1024) }).strict().prefault({}),
  /** Host addresses and the lowest host port it may publish on. */
  publish: z.object({ addresses: z.array(loopback).max(64).default(['127.0.0.1']), min_port: z.number().int().min(1).max(65535).default(1024) }).strict().prefault({}),
};

export const budgetSchema = z
  .object({ ...(Object.fromEntries(LIMITS.map((r) => [r.key, limitBudget(r)])) as { [K in LimitKey]: ReturnType<typeof limitBudget> }), ...extras })
  .strict();
export type Budget = z.infer<typeof budgetSchema>;

/** An override: any field of a budget, for the uids and gids it names. */
export const budgetRuleSchema = z
  .object({
    name: z.string().regex(/^[A-Za-z0-9_.-]{1,64}$/, 'must be 1-64 of [A-Za-z0-9_.-]'),
    uids: z.array(id).max(1024).default([]),
    gids: z.array(id).max(1024).default([]),
    ...Object.fromEntries(LIMITS.map((r) => [r.key, z.object({ session: limitValue(r).optional(), total: count.optional() }).strict().optional()])),
    volume_mb: z.object({ volume: z.number().int().min(16).max(1024 * 1024).optional(), total: count.optional() }).strict().optional(),
    viewers: z.object({ total: count.optional() }).strict().optional(),
    exec_streams: z.object({ total: count.optional() }).strict().optional(),
    sessions: z.object({ total: count.optional() }).strict().optional(),
    secrets: z.object({ count: count.optional(), bytes: count.optional() }).strict().optional(),
    publish: z.object({ addresses: z.array(loopback).max(64).optional(), min_port: z.number().int().min(1).max(65535).optional() }).strict().optional(),
  })
  .strict()
  .refine((r) => r.uids.length + r.gids.length > 0, 'names no uid and no gid: it would match nobody');
export type BudgetRule = z.infer<typeof budgetRuleSchema>;

/** A user's budget, and the config path that names it in messages. */
export interface Effective {
  budget: Budget;
  /** access.budget, or access.budgets[NAME]. */
  source: string;
  sessions: number;
  execStreams: number;
}


/** A refusal decided inside a transaction: recorded after it rolls back. */
export class BudgetRefusal extends Error {
  constructor(
    readonly rule: string,
    readonly error: ApiError,
  ) {
    super(error.message);
  }
}

export interface BudgetConfig {
  budget: Budget;
  budgets: BudgetRule[];
  max_sessions_per_uid: number;
  max_exec_streams_per_caller: number;
}

type Pair = { session?: number | undefined; total?: number | undefined };

export class Budgets {
  constructor(private readonly config: BudgetConfig) {}

  /** The caller's budget; undefined for root. */
  of(who: Principal): Effective | undefined {
    if (who.uid === 0) return undefined;
    const c = this.config;
    const rule = c.budgets.find((r) => r.uids.includes(who.uid) || r.gids.some((g) => who.gids.includes(g)));
    const budget = structuredClone(c.budget);
    if (rule) {
      const b = budget as unknown as Record<string, Record<string, unknown>>;
      for (const [k, v] of Object.entries(rule)) {
        if (k === 'name' || k === 'uids' || k === 'gids' || v === undefined) continue;
        for (const [f, x] of Object.entries(v as Record<string, unknown>)) if (x !== undefined) b[k]![f] = x;
      }
    }
    return {
      budget,
      source: rule ? `access.budgets[${rule.name}]` : 'access.budget',
      sessions: budget.sessions.total ?? c.max_sessions_per_uid,
      execStreams: budget.exec_streams.total ?? c.max_exec_streams_per_caller,
    };
  }

  /** A session's limits and ports against the per-session ceilings: a 403 naming the ceiling. */
  requestProblem(who: Principal, limits: Limits, publish: readonly { host_ip: string; host_port: number }[]): BudgetRefusal | undefined {
    const e = this.of(who);
    if (!e) return undefined;
    for (const row of LIMITS) {
      const asked = limits[row.key];
      const ceiling = (e.budget[row.key] as Pair).session!;
      if (asked !== undefined && asked > ceiling) {
        const rule = `${e.source}.${row.key}.session`;
        return new BudgetRefusal(rule, new ApiError('forbidden', `uid ${who.uid} may not create a session with ${row.key} ${asked}: the per-session ceiling is ${row.show(ceiling)} (${rule})`, row.key));
      }
    }
    for (const p of publish) {
      const why = this.publishProblem(who, p);
      if (why) return why;
    }
    return undefined;
  }

  /** Whether the caller may publish this host address and port. */
  publishProblem(who: Principal, p: { host_ip: string; host_port: number }): BudgetRefusal | undefined {
    const e = this.of(who);
    if (!e) return undefined;
    const { addresses, min_port } = e.budget.publish;
    if (addresses.includes(p.host_ip) && p.host_port >= min_port) return undefined;
    const rule = `${e.source}.publish`;
    return new BudgetRefusal(rule, new ApiError('forbidden', `uid ${who.uid} may not publish ${p.host_ip}:${p.host_port}: it may publish on ${addresses.join(', ')} from port ${min_port} (${rule})`, 'publish'));
  }

  /**
   * The user's totals with one more session running: checked inside the
   * transaction that records it. `adding`: a new session (a start's is
   * counted already: a stopped session is the owner's).
   */
  totalsProblem(who: Principal, limits: Limits, usage: Usage, adding = true): BudgetRefusal | undefined {
    const e = this.of(who);
    if (!e) return undefined;
    if (adding && usage.sessions + 1 > e.sessions) {
      const rule = e.budget.sessions.total === undefined ? 'access.max_sessions_per_uid' : `${e.source}.sessions.total`;
      return new BudgetRefusal(rule, new ApiError('too_many', `uid ${who.uid} already owns ${usage.sessions} live sessions (${rule})`));
    }
    for (const row of LIMITS) {
      const asked = limits[row.key] ?? 0;
      const total = (e.budget[row.key] as Pair).total!;
      if (asked > 0 && usage[row.key] + asked > total) {
        const rule = `${e.source}.${row.key}.total`;
        return new BudgetRefusal(rule, new ApiError('too_many', `uid ${who.uid}'s live sessions already hold ${row.show(usage[row.key])} of ${row.key}; ${row.show(asked)} more would pass the total of ${row.show(total)} (${rule})`, row.key));
      }
    }
    return undefined;
  }

  /**
   * A volume of sizeMb against the per-volume ceiling and the user's total
   * (`used`: its volumes' sizes now). A new one adds sizeMb; a grow (`grow`:
   * its name and size now) adds what it grows by.
   */
  volumeProblem(who: Principal, sizeMb: number, used: number, grow?: { name: string; fromMb: number }): BudgetRefusal | undefined {
    const e = this.of(who);
    if (!e) return undefined;
    const { volume, total } = e.budget.volume_mb;
    const doing = grow ? `grow volume ${grow.name} to ${sizeMb} MiB` : `create a volume of ${sizeMb} MiB`;
    if (sizeMb > volume) {
      const rule = `${e.source}.volume_mb.volume`;
      return new BudgetRefusal(rule, new ApiError('forbidden', `uid ${who.uid} may not ${doing}: the largest is ${volume} MiB (${rule})`, 'size_mb'));
    }
    const more = sizeMb - (grow?.fromMb ?? 0);
    if (used + more > total) {
      const rule = `${e.source}.volume_mb.total`;
      return new BudgetRefusal(rule, new ApiError('too_many', `uid ${who.uid}'s volumes already hold ${used} MiB; ${more} MiB more would pass the total of ${total} MiB (${rule})`, 'size_mb'));
    }
    return undefined;
  }

  /** One more secret, or a new value of one (`replacing`: the bytes of the value it replaces), against the store's share. */
  secretProblem(who: Principal, now: { count: number; bytes: number }, adding: boolean, bytes: number, replacing: number): BudgetRefusal | undefined {
    const e = this.of(who);
    if (!e) return undefined;
    const { count: most, bytes: room } = e.budget.secrets;
    if (adding && now.count + 1 > most) {
      const rule = `${e.source}.secrets.count`;
      return new BudgetRefusal(rule, new ApiError('too_many', `uid ${who.uid} already has ${now.count} secrets (${rule})`));
    }
    if (now.bytes - replacing + bytes > room) {
      const rule = `${e.source}.secrets.bytes`;
      return new BudgetRefusal(rule, new ApiError('too_many', `uid ${who.uid}'s secrets would hold ${now.bytes - replacing + bytes} bytes, past ${room} (${rule})`, 'value_base64'));
    }
    return undefined;
  }

  /** Viewers the caller may hold at once, and the rule that says so; undefined for root. */
  viewers(who: Principal): { max: number; rule: string } | undefined {
    const e = this.of(who);
    return e && { max: e.budget.viewers.total, rule: `${e.source}.viewers.total` };
  }

  /** Exec and attach streams the caller may hold at once; undefined: the config's per-caller cap. */
  streams(who: Principal): { max: number; rule: string } | undefined {
    const e = this.of(who);
    return e && { max: e.execStreams, rule: e.budget.exec_streams.total === undefined ? 'api.max_exec_streams_per_caller' : `${e.source}.exec_streams.total` };
  }
}
