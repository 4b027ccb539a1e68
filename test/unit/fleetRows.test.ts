// What a fleet node keeps on its rows (src/store/fleetRows.ts). The fleet's
// drain leaves the old copy of a moved session as an ended row that says
// where it went (migration 019); only such a row is dropped when the session
// moves back under its id (src/fleet/worker.ts). A row made for a placement
// says so (migration 022): a start of it checks that etcd still places it
// there; rows an older version made are marked by the ids the fleet names.
import { describe, expect, it } from 'vitest';
import { sessionDb } from './fixtures/sessionDb.js';
import { failedCreate, LIVE_STATES_SQL } from '../../src/store/fleetRows.js';

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

describe("each session's state and memory, as a node's settle reads them once a second", () => {
  const t = sessionDb('states');

  it('are every tenant row not ended, with its memory: no ended row (history), no pool member, no row that does not check', () => {
    const running = t.create({ limits: { ...t.create().limits, memory_mb: 96 } });
    t.store.markRunning(running.id, 4242, '1');
    const ended = t.create();
    t.store.settle(ended.id, 'destroyed');
    const member = t.create({ pool: 'warm' });
    const broken = t.create();
    t.db.prepare("UPDATE sessions SET limits = json_set(limits, '$.memory_mb', 'lots') WHERE id = ?").run(broken.id);
    const bad: string[] = [];
    const got = t.store.fleet.liveStatesAndMemory((id) => void bad.push(id));
    expect(got.get(running.id)).toEqual({ state: 'running', memory_mb: 96, placed: false });
    for (const id of [ended.id, member.id, broken.id]) expect(got.has(id), id).toBe(false);
    expect(bad).toEqual([broken.id]);
    // Its state alone still reads (settle asks it of a placement not among these); a pool member's does not.
    expect([t.store.fleet.stateOf(broken.id), t.store.fleet.stateOf(ended.id), t.store.fleet.stateOf(member.id)]).toEqual(['creating', 'destroyed', undefined]);
    // Through the state index: the history (ended rows, up to keep_history) is not scanned once a second.
    const plan = t.db.prepare(`EXPLAIN QUERY PLAN ${LIVE_STATES_SQL}`).all() as { detail: string }[];
    expect(plan.map((p) => p.detail).join('; ')).toMatch(/USING INDEX sessions_state/);
    // As the rows say, each one: the same as reading them one by one.
    for (const [id, s] of got) expect(s).toEqual({ state: t.store.get(id)!.state, memory_mb: t.store.get(id)!.limits.memory_mb, placed: t.store.get(id)!.placed });
    // Made for a placement: said so (settle ends such a copy once it is placed here no more).
    t.store.fleet.markPlaced(new Set([running.id]));
    expect(t.store.fleet.liveStatesAndMemory().get(running.id)).toEqual({ state: 'running', memory_mb: 96, placed: true });
  });
});

describe('a create made for a placement that failed before its session ever ran', () => {
  const t = sessionDb('failedcreate');
  const row = (id: string) => t.store.get(id);

  it('is told apart from every other failed or placed row by what the row recorded', () => {
    // Failed while creating: the reason its row keeps.
    const failed = t.create({ placed: true }).id;
    t.store.settle(failed, 'failed', 'no room for its root');
    expect(failedCreate(row(failed))).toBe('no room for its root');
    // Not made for a placement (a session from before the fleet), or not failed (destroyed, still creating): none.
    const local = t.create().id;
    t.store.settle(local, 'failed', 'x');
    const destroyed = t.create({ placed: true }).id;
    t.store.settle(destroyed, 'destroyed');
    const creating = t.create({ placed: true }).id;
    // Ran, then failed (its init start recorded); ran and exited, then failed; stopped (the stop clears the init
    // start, its reason stays), then failed.
    const ran = t.create({ placed: true }).id;
    t.store.markRunning(ran, 4242, '123');
    t.store.settle(ran, 'failed', 'out of memory');
    // Its init exited and it settled stopped with no stop asked (the init start cleared, no stop reason): its exit says it ran.
    const exited = t.create({ placed: true }).id;
    t.store.markRunning(exited, 4243, '124');
    t.store.recordExit(exited, 1, null);
    t.store.settleStopped(exited, { linkPending: false });
    t.store.settle(exited, 'failed', 'exited');
    expect(row(exited)).toMatchObject({ init_start_time: null, stopped_because: null, exit_code: 1 });
    const stopped = t.create({ placed: true }).id;
    t.store.markRunning(stopped, 4244, '125');
    t.store.markStopping(stopped, 'caller');
    t.store.settleStopped(stopped, { linkPending: false });
    expect(row(stopped)?.init_start_time).toBeNull();
    t.store.settle(stopped, 'failed', 'its owner destroyed it, failing');
    for (const id of [local, destroyed, creating, ran, exited, stopped]) expect(failedCreate(row(id)), id).toBeUndefined();
    expect(failedCreate(undefined)).toBeUndefined();
  });
});
