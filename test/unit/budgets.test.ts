// Per-user budgets, as pure checks: the default budget and overrides by uid
// and gid, per-session ceilings for every limit of the table, totals over a
// user's live sessions, volume bytes, published ports; root has none.
import { describe, expect, it } from 'vitest';
import { budgetRuleSchema, budgetSchema, Budgets } from '../../src/access/budgets.js';
import { LIMITS, type Limits, type Usage } from '../../src/vocab/limits.js';

const budgets = (over: Record<string, unknown>[] = [], budget: Record<string, unknown> = {}) =>
  new Budgets({ budget: budgetSchema.parse(budget), budgets: over.map((o) => budgetRuleSchema.parse(o)), max_sessions_per_uid: 16, max_exec_streams_per_caller: 256 });
const tenant = { uid: 1000, gids: [1000, 2000] };
const small: Limits = { memory_mb: 256, pids: 64, cpu_percent: 50, tmp_mb: 64, home_mb: 64, root_mb: 64 };
const none = { sessions: 0, ...Object.fromEntries(LIMITS.map((r) => [r.key, 0])) } as Usage;

describe('budgets', () => {
  it('gives root none, and every other user the default from the limits table', () => {
    const b = budgets();
    expect(b.of({ uid: 0, gids: [0] })).toBeUndefined();
    const e = b.of(tenant)!;
    expect(e.source).toBe('access.budget');
    for (const r of LIMITS) expect(e.budget[r.key]).toEqual(r.budget);
    expect(e.sessions).toBe(16);
    expect(e.execStreams).toBe(256);
    expect(e.budget.publish).toEqual({ addresses: ['127.0.0.1'], min_port: 1024 });
  });

  it('applies the first override that names the uid or one of its gids, field by field', () => {
    const b = budgets([
      { name: 'big', gids: [2000], memory_mb: { total: 65536 }, sessions: { total: 3 } },
      { name: 'never', uids: [1000], memory_mb: { total: 1 } },
    ]);
    const e = b.of(tenant)!;
    expect(e.source).toBe('access.budgets[big]');
    expect(e.budget.memory_mb).toEqual({ session: 4096, total: 65536 });
    expect(e.sessions).toBe(3);
    expect(b.of({ uid: 1001, gids: [] })!.source).toBe('access.budget');
  });

  it('refuses a request over any per-session ceiling with a 403 naming it', () => {
    const b = budgets();
    expect(b.requestProblem(tenant, small, [])).toBeUndefined();
    for (const r of LIMITS) {
      const p = b.requestProblem(tenant, { ...small, [r.key]: r.budget.session + 1 }, [])!;
      expect(p.rule).toBe(`access.budget.${r.key}.session`);
      expect(p.error.status).toBe(403);
      expect(p.error.message).toContain(`${r.key} ${r.budget.session + 1}`);
    }
    expect(b.requestProblem({ uid: 0, gids: [] }, { ...small, memory_mb: 1024 * 1024 }, [])).toBeUndefined();
  });

  it('counts totals over the user\'s live sessions, the new one included', () => {
    const b = budgets([], { memory_mb: { total: 768 } });
    expect(b.totalsProblem(tenant, small, { ...none, sessions: 2, memory_mb: 512 })).toBeUndefined();
    const p = b.totalsProblem(tenant, small, { ...none, sessions: 3, memory_mb: 513 })!;
    expect(p.rule).toBe('access.budget.memory_mb.total');
    expect(p.error.status).toBe(429);
    // The session count: the config's per-uid cap unless the budget sets one.
    expect(b.totalsProblem(tenant, small, { ...none, sessions: 16 })!.rule).toBe('access.max_sessions_per_uid');
    expect(budgets([], { sessions: { total: 2 } }).totalsProblem(tenant, small, { ...none, sessions: 2 })!.rule).toBe('access.budget.sessions.total');
    expect(b.totalsProblem({ uid: 0, gids: [] }, small, { ...none, sessions: 1000, memory_mb: 1e9 })).toBeUndefined();
  });

  it('bounds one volume and the user\'s volumes together', () => {
    const b = budgets([], { volume_mb: { volume: 64, total: 96 } });
    expect(b.volumeProblem(tenant, 64, 32)).toBeUndefined();
    expect(b.volumeProblem(tenant, 65, 0)!.rule).toBe('access.budget.volume_mb.volume');
    expect(b.volumeProblem(tenant, 64, 33)!.rule).toBe('access.budget.volume_mb.total');
    // A grow adds what it grows by; the ceiling is on the new size.
    expect(b.volumeProblem(tenant, 64, 64, { name: 'v', fromMb: 32 })).toBeUndefined();
    expect(b.volumeProblem(tenant, 64, 65, { name: 'v', fromMb: 32 })!.error.message).toMatch(/32 MiB more would pass the total/);
    expect(b.volumeProblem(tenant, 65, 0, { name: 'v', fromMb: 32 })!.error.message).toMatch(/may not grow volume v to 65 MiB/);
  });

  it('lets a tenant publish on its addresses from its lowest port only', () => {
    const b = budgets();
    expect(b.publishProblem(tenant, { host_ip: '127.0.0.1', host_port: 1024 })).toBeUndefined();
    for (const p of [{ host_ip: '127.0.0.1', host_port: 443 }, { host_ip: '127.0.0.2', host_port: 8080 }, { host_ip: '127.1.2.3', host_port: 1 }]) {
      expect(b.publishProblem(tenant, p)!.rule).toBe('access.budget.publish');
    }
    expect(b.publishProblem({ uid: 0, gids: [] }, { host_ip: '127.0.0.2', host_port: 22 })).toBeUndefined();
    expect(budgets([{ name: 'web', uids: [1000], publish: { min_port: 80, addresses: ['127.0.0.1', '127.0.0.5'] } }]).publishProblem(tenant, { host_ip: '127.0.0.5', host_port: 80 })).toBeUndefined();
  });

  it('refuses budget entries that match nobody, and unknown fields', () => {
    expect(budgetRuleSchema.safeParse({ name: 'x', memory_mb: { total: 1 } }).success).toBe(false);
    expect(budgetSchema.safeParse({ memory_mb: { sesion: 1 } }).success).toBe(false);
    expect(budgetSchema.safeParse({ publish: { addresses: ['0.0.0.0'] } }).success).toBe(false);
  });
});
