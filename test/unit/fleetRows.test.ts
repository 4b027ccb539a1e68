// What a fleet node keeps on its rows (src/store/fleetRows.ts). The fleet's
// drain leaves the old copy of a moved session as an ended row that says
// where it went (migration 019); only such a row is dropped when the session
// moves back under its id (src/fleet/worker.ts). A row made for a placement
// says so (migration 022): a start of it checks that etcd still places it
// there; rows an older version made are marked by the ids the fleet names.
import { describe, expect, it } from 'vitest';
import { sessionDb } from './fixtures/sessionDb.js';

describe('the old copy of a session a drain moved away', () => {
  const t = sessionDb('moved');
  const create = (placed?: boolean) => t.create(placed === undefined ? {} : { placed });

  it('is dropped with its plan once marked; a row ended any other way is kept', () => {
    const moved = create();
    const other = create();
    t.store.setPlan(moved.id, '{}');
    for (const s of [moved, other]) t.store.settle(s.id, 'destroyed');
    const plans = () => (t.db.prepare('SELECT count(*) AS n FROM session_plans WHERE session_id = ?').get(moved.id) as { n: number }).n;
    expect(plans()).toBe(1);
    t.store.fleet.markMovedAway(moved.id, 'node-b');
    expect(t.store.get(moved.id)?.moved_to).toBe('node-b');
    expect(t.store.fleet.dropMovedAway(other.id)).toBe(false);
    expect(t.store.stateOf(other.id)).toBe('destroyed');
    expect(t.store.fleet.dropMovedAway(moved.id)).toBe(true);
    expect(t.store.get(moved.id)).toBeUndefined();
    expect(plans()).toBe(0);
    expect(t.store.fleet.dropMovedAway(moved.id)).toBe(false);
  });

  it('is never a live row: marking one that runs does nothing, and it is not dropped', () => {
    const live = create();
    t.store.fleet.markMovedAway(live.id, 'node-b');
    expect(t.store.get(live.id)?.moved_to).toBeNull();
    expect(t.store.fleet.dropMovedAway(live.id)).toBe(false);
    expect(t.store.stateOf(live.id)).toBe('creating');
  });

  it('says whether a row was made for a placement; rows the fleet names are marked, others are not', () => {
    const fleetMade = create(true);
    const older = create(); // made for a placement by a version before the mark
    const preFleet = create();
    expect([fleetMade, older, preFleet].map((s) => t.store.get(s.id)?.placed)).toEqual([true, false, false]);
    expect(t.store.fleet.markPlaced(new Set([older.id, fleetMade.id, 's-elsewhere']))).toBe(1);
    expect([fleetMade, older, preFleet].map((s) => t.store.get(s.id)?.placed)).toEqual([true, true, false]);
    expect(t.store.fleet.markPlaced(new Set([older.id]))).toBe(0);
  });
});
