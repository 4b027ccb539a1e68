// What list and show say of a fleet session no node answers for
// (src/fleet/views.ts): every view is a valid Session (the API's schema
// parses it), unreachable keeps what its node last reported, lost says
// whether its node came back and removed it, and a session its node never
// reported is shown from its placement when the placement carries limits.
import { describe, expect, it } from 'vitest';
import { sessionSchema, type Session } from '../../src/api/schemas.js';
import { lostView, pendingView, reportedOrPlaced, unreachableView } from '../../src/fleet/views.js';
import type { Desired } from '../../src/fleet/keys.js';
import { LIMITS as LIM, limitsSchema } from '../../src/vocab/limits.js';

// Every limit at its least allowed value: a valid set whatever the table holds.
const LIMITS = limitsSchema.parse(Object.fromEntries(LIM.map((r) => [r.key, r.min])));
const placed = (limits?: Session['limits']): Desired => ({
  id: 's-00000000f1',
  owner_uid: 1000,
  owner_gids: [],
  request: { name: 'web', network: 'none' },
  memory_mb: 256,
  ...(limits ? { limits } : {}),
  entry: 'a',
  placed_at: '2026-01-01T00:00:00.000Z',
});

describe('fleet views', () => {
  const base = pendingView({ ...placed(LIMITS), limits: LIMITS, reason: 'no node fits', since: '2026-01-01T00:00:00.000Z' });

  it('a pending session is a valid session, its reason as last_error', () => {
    expect(sessionSchema.parse(base)).toMatchObject({ state: 'pending', name: 'web', owner_uid: 1000, last_error: 'no node fits', node: null });
  });

  it('an unreachable one keeps what its node reported, with no live console, and says since when', () => {
    const reported = { ...base, state: 'running' as const, init_pid: 4242, hostname: 'web', console: { keep: true, running: true, viewers: 2 } };
    const v = sessionSchema.parse(unreachableView(reported, 'c', '2026-01-02T00:00:00.000Z'));
    expect(v).toMatchObject({ state: 'unreachable', node: 'c', init_pid: 4242, hostname: 'web', console: { keep: true, running: false, viewers: 0 } });
    expect(v.last_error).toMatch(/^node c unreachable since 2026-01-02T00:00:00.000Z \(its lease lapsed\)/);
  });

  it('a lost one says whether its node came back and removed it, with its owner from the record', () => {
    const rec = { id: base.id, node: 'c', owner_uid: 1000, name: 'web', since: '2026-01-03T00:00:00.000Z', session: { ...base, state: 'running', owner_uid: 7 } };
    const lost = sessionSchema.parse(lostView(rec));
    expect(lost).toMatchObject({ state: 'lost', node: 'c', owner_uid: 1000, init_pid: null });
    expect(lost.last_error).toMatch(/declared lost at 2026-01-03T00:00:00.000Z; if the node comes back it removes it/);
    const fenced = lostView({ ...rec, fenced_at: '2026-01-04T00:00:00.000Z' });
    expect(fenced?.last_error).toMatch(/the node came back at 2026-01-04T00:00:00.000Z and removed it/);
    // What does not parse as a session is not shown as one.
    expect(lostView({ ...rec, session: { id: base.id } })).toBeUndefined();
  });

  it('a session its node never reported is shown from its placement, when that carries limits', () => {
    const reported = { ...base, state: 'running' as const };
    expect(reportedOrPlaced(reported, placed(), 'now')).toEqual(reported);
    const fromPlacement = reportedOrPlaced(undefined, placed(LIMITS), '2026-01-05T00:00:00.000Z');
    expect(sessionSchema.parse(fromPlacement)).toMatchObject({ id: 's-00000000f1', state: 'creating', name: 'web', owner_uid: 1000, created_at: '2026-01-01T00:00:00.000Z' });
    expect(reportedOrPlaced(undefined, placed(), 'now')).toBeUndefined();
  });
});
