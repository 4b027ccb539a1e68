// The fleet's drain leaves the old copy of a moved session as an ended row
// that says where it went (migration 019); only such a row is dropped when
// the session moves back under its id (src/fleet/worker.ts).
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
  const create = () =>
    store.insertCreating({ id: `s-${(++n).toString(16).padStart(10, '0')}`, name: null, hostname: 'h', limits, slots: 100, objects: [], addresses: undefined, ownerUid: 0, profile: 'strict' });

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
    store.markMovedAway(moved.id, 'node-b');
    expect(store.get(moved.id)?.moved_to).toBe('node-b');
    expect(store.dropMovedAway(other.id)).toBe(false);
    expect(store.stateOf(other.id)).toBe('destroyed');
    expect(store.dropMovedAway(moved.id)).toBe(true);
    expect(store.get(moved.id)).toBeUndefined();
    expect(plans()).toBe(0);
    expect(store.dropMovedAway(moved.id)).toBe(false);
  });

  it('is never a live row: marking one that runs does nothing, and it is not dropped', () => {
    const live = create();
    store.markMovedAway(live.id, 'node-b');
    expect(store.get(live.id)?.moved_to).toBeNull();
    expect(store.dropMovedAway(live.id)).toBe(false);
    expect(store.stateOf(live.id)).toBe('creating');
  });
});
