// What a fleet node keeps on its rows (src/store/fleetRows.ts). The fleet's
// drain leaves the old copy of a moved session as an ended row that says
// where it went (migration 019); only such a row is dropped when the session
// moves back under its id (src/fleet/worker.ts). A row made for a placement
// says so (migration 022): a start of it checks that etcd still places it
// there; rows an older version made are marked by the ids the fleet names.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type Database from 'better-sqlite3';
import { openDatabase } from '../../src/store/db.js';
import { SessionStore } from '../../src/store/sessionStore.js';

const limits = { memory_mb: 64, pids: 64, cpu_percent: 100, tmp_mb: 8, home_mb: 8 };

describe('the old copy of a session a drain moved away', () => {
  let dir: string;
  let db: Database.Database;
  let store: SessionStore;
  let n = 0;
  const create = (placed?: boolean) =>
    store.insertCreating({ id: `s-${(++n).toString(16).padStart(10, '0')}`, name: null, hostname: 'h', limits, slots: 100, objects: [], addresses: undefined, ownerUid: 0, profile: 'strict', ...(placed === undefined ? {} : { placed }) });

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'enclave-moved-'));
    db = openDatabase(dir);
    store = new SessionStore(db);
  });
  afterEach(() => {
    db.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('is dropped with its plan once marked; a row ended any other way is kept', () => {
    const moved = create();
    const other = create();
    store.setPlan(moved.id, '{}');
    for (const s of [moved, other]) store.settle(s.id, 'destroyed');
    const plans = () => (db.prepare('SELECT count(*) AS n FROM session_plans WHERE session_id = ?').get(moved.id) as { n: number }).n;
    expect(plans()).toBe(1);
    store.fleet.markMovedAway(moved.id, 'node-b');
    expect(store.get(moved.id)?.moved_to).toBe('node-b');
    expect(store.fleet.dropMovedAway(other.id)).toBe(false);
    expect(store.stateOf(other.id)).toBe('destroyed');
    expect(store.fleet.dropMovedAway(moved.id)).toBe(true);
    expect(store.get(moved.id)).toBeUndefined();
    expect(plans()).toBe(0);
    expect(store.fleet.dropMovedAway(moved.id)).toBe(false);
  });

  it('is never a live row: marking one that runs does nothing, and it is not dropped', () => {
    const live = create();
    store.fleet.markMovedAway(live.id, 'node-b');
    expect(store.get(live.id)?.moved_to).toBeNull();
    expect(store.fleet.dropMovedAway(live.id)).toBe(false);
    expect(store.stateOf(live.id)).toBe('creating');
  });

  it('says whether a row was made for a placement; rows the fleet names are marked, others are not', () => {
    const fleetMade = create(true);
    const older = create(); // made for a placement by a version before the mark
    const preFleet = create();
    expect([fleetMade, older, preFleet].map((s) => store.get(s.id)?.placed)).toEqual([true, false, false]);
    expect(store.fleet.markPlaced(new Set([older.id, fleetMade.id, 's-elsewhere']))).toBe(1);
    expect([fleetMade, older, preFleet].map((s) => store.get(s.id)?.placed)).toEqual([true, true, false]);
    expect(store.fleet.markPlaced(new Set([older.id]))).toBe(0);
  });
});
