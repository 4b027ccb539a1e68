// A node's fence (src/fleet/failure.ts) against a real etcd (one member of
// Debian's etcd-server): a session the fleet declared lost while the node
// was away is removed here and marked fenced, also when etcd did not take
// the first mark (the fence is tried again once the session is no longer held).
import { describe, expect, it } from 'vitest';
import type { Etcd3 } from 'etcd3';
import { pino } from 'pino';
import { Failure, type FenceTarget } from '../../src/fleet/failure.js';
import { AwayMoves } from '../../src/fleet/awayMoves.js';
import { key, type Lost, type Status } from '../../src/fleet/keys.js';
import type { Registry } from '../../src/fleet/registry.js';
import type { ClusterConfig } from '../../src/fleet/etcd.js';
import type { SessionState } from '../../src/api/schemas.js';
import { commitsThrough, oneEtcd } from './fixtures/etcd.js';

describe('fencing against etcd', () => {
  const e = oneEtcd('fence', 8);
  const c = { node: 'nb', grace_s: 5 } as ClusterConfig;
  const registry = { live: true, generation: 1 } as Registry;

  /** This node's sessions: a map of states; remove() ends one (failed, its reason kept); forget() as `forget` says. */
  const target = (states: Map<string, SessionState>, forget: (id: string, to: string) => Promise<void> = async () => undefined, discarded: string[] = []): FenceTarget => ({
    held: () => [...states].filter(([, s]) => s !== 'failed' && s !== 'destroyed').map(([id]) => id),
    stateOf: (id) => states.get(id),
    remove: async (id) => void states.set(id, 'failed'),
    forget,
    discard: async (id, livesOn) => void (discarded.push(`${id} lives on ${livesOn}`), states.set(id, 'destroyed')),
  });

  /** The client, failing the first transaction that writes a session's fenced status (etcd did not take it). */
  const firstMarkFails = (etcd: Etcd3): Etcd3 => {
    let failed = false;
    return commitsThrough(etcd, (commit, [k]) => {
      if (failed || !String(k).startsWith('/enclave/lost/')) return commit();
      failed = true;
      return Promise.reject(new Error('14 UNAVAILABLE: etcdserver: no leader'));
    });
  };

  it('marks a session it removed fenced, on the next try when etcd did not take the first mark', async () => {
    const etcd = e.client;
    await etcd.delete().prefix('/enclave/');
    const id = 's-00000000f1';
    const since = '2026-12-06T00:00:00.000Z';
    const lost: Lost = { id, node: 'nb', owner_uid: 1000, name: null, since };
    const status: Status = { id, node: 'nb', state: 'lost', since };
    await etcd.put(key.lost(id)).value(JSON.stringify(lost));
    await etcd.put(key.status(id)).value(JSON.stringify(status));
    const states = new Map<string, SessionState>([[id, 'stopped']]);
    const f = new Failure(firstMarkFails(etcd), c, registry, target(states), pino({ level: 'silent' }));
    await expect(f.fence()).rejects.toThrow(/no leader/);
    // Removed here, still lost in etcd, and no longer held: the next fence marks it.
    expect(states.get(id)).toBe('failed');
    expect(f.open()).toBe(false);
    await f.fence();
    expect(f.open()).toBe(true);
    expect(JSON.parse((await etcd.get(key.status(id)).string())!)).toMatchObject({ id, node: 'nb', state: 'fenced' });
    expect(JSON.parse((await etcd.get(key.lost(id)).string())!)).toMatchObject({ id, fenced_at: expect.any(String) });
    f.close();
  });

  it('leaves alone a lost session it has no copy of, and one placed on it again', async () => {
    const etcd = e.client;
    await etcd.delete().prefix('/enclave/');
    const since = '2026-12-06T00:00:00.000Z';
    for (const id of ['s-00000000f2', 's-00000000f3']) {
      await etcd.put(key.lost(id)).value(JSON.stringify({ id, node: 'nb', owner_uid: 1000, name: null, since } satisfies Lost));
      await etcd.put(key.status(id)).value(JSON.stringify({ id, node: 'nb', state: 'lost', since } satisfies Status));
    }
    // f3 is placed here again (made anew on this node): not this fence's to mark.
    await etcd.put(key.desired('nb', 's-00000000f3')).value('{}');
    const f = new Failure(etcd, c, registry, target(new Map([['s-00000000f3', 'failed']])), pino({ level: 'silent' }));
    await f.fence();
    for (const id of ['s-00000000f2', 's-00000000f3']) expect(JSON.parse((await etcd.get(key.status(id)).string())!)).toMatchObject({ state: 'lost' });
    f.close();
  });

  it('ends, and tries again to end, its old copy of a session placed on other nodes alone (moving on between two others too); not one placed here, nor one a move here or from here is about', async () => {
    const etcd = e.client;
    await etcd.delete().prefix('/enclave/');
    const [moved, here, moving, before, between] = ['s-00000000f4', 's-00000000f5', 's-00000000f6', 's-00000000f7', 's-00000000fb'];
    await etcd.put(key.desired('nc', moved)).value('{}');
    // `between`: moved away, and moving on from na to nc (another node's move): this copy is old all the same.
    for (const n of ['na', 'nc']) await etcd.put(key.desired(n, between)).value('{}');
    await etcd.put(key.move(between)).value(JSON.stringify({ id: between, from: 'na', to: 'nc', phase: 'copying' }));
    await etcd.put(key.desired('nb', here)).value('{}');
    await etcd.put(key.desired('nc', moving)).value('{}');
    await etcd.put(key.move(moving)).value(JSON.stringify({ id: moving, from: 'nb', to: 'nc', phase: 'committed' }));
    // `before`: made before the node joined a fleet, placed nowhere: not the fleet's.
    const states = new Map<string, SessionState>([moved, here, moving, before, between].map((id) => [id, 'stopped']));
    const ended: string[] = [];
    let fails = 1;
    const forget = async (id: string, to: string) => {
      ended.push(`${id} to ${to}`);
      if (fails-- > 0) throw new Error('the kernel did not let go');
      states.set(id, 'destroyed');
    };
    // Looked for again every 200 ms here (30 s by default), on a timer of its own.
    const f = new Failure(etcd, c, registry, target(states, forget), pino({ level: 'silent' }), 200);
    await f.start();
    // The first end failed: the fence opens all the same, and the old copy is still here.
    expect(f.open()).toBe(true);
    expect(ended).toEqual([`${moved} to nc`, `${between} to na`]);
    expect(states.get(moved)).toBe('stopped');
    const deadline = Date.now() + 5000;
    while (states.get(moved) !== 'destroyed' && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    expect(ended).toEqual([`${moved} to nc`, `${between} to na`, `${moved} to nc`]);
    expect([...states]).toEqual([[moved, 'destroyed'], [here, 'stopped'], [moving, 'stopped'], [before, 'stopped'], [between, 'destroyed']]);
    f.close();
  });

  /** The client, running `after` once etcd has answered the sweep's read of the fleet (a transaction of two ranges), before the sweep goes on. */
  const afterRead = (etcd: Etcd3, after: () => Promise<void>): Etcd3 =>
    new Proxy(etcd, {
      get(t, prop, receiver) {
        if (prop !== 'kv') return Reflect.get(t, prop, receiver);
        const kv = t.kv;
        return new Proxy(kv, {
          get(k, p, r) {
            if (p !== 'txn') return Reflect.get(k, p, r);
            return async (...args: Parameters<typeof kv.txn>) => {
              const res = await kv.txn(...args);
              await after();
              return res;
            };
          },
        });
      },
    });

  it('takes its sessions before it reads the fleet, ends stopped copies alone, and reads each again just before: a move of it begun since keeps it', async () => {
    const etcd = e.client;
    await etcd.delete().prefix('/enclave/');
    const [old, late, running] = ['s-00000000f8', 's-00000000f9', 's-00000000fa'];
    for (const id of [old, late, running]) await etcd.put(key.desired('nc', id)).value('{}');
    const states = new Map<string, SessionState>([[old, 'stopped'], [running, 'running']]);
    const ended: string[] = [];
    let after = async () => {};
    const forget = async (x: string) => {
      ended.push(x);
      states.set(x, 'destroyed');
    };
    const f = new Failure(afterRead(etcd, () => after()), c, registry, target(states, forget), pino({ level: 'silent' }));
    // Read: all three on nc alone. Since: `late` made here (after the sessions were taken), `old` placed here again.
    after = async () => {
      states.set(late, 'stopped');
      await etcd.put(key.desired('nb', old)).value('{}');
    };
    await f.endOldCopies();
    expect(ended).toEqual([]);
    // Since the next read: a move of `old` recorded. `late`, among the sessions taken now, goes.
    after = async () => {
      await etcd.delete().key(key.desired('nb', old));
      await etcd.put(key.move(old)).value(JSON.stringify({ id: old, from: 'nb', to: 'nc', phase: 'copying' }));
    };
    await f.endOldCopies();
    expect(ended).toEqual([late]);
    // Nothing since: `old` goes too; the running one stays.
    await etcd.delete().key(key.move(old));
    after = async () => {};
    await f.endOldCopies();
    expect(ended).toEqual([late, old]);
    f.close();
  });

  describe('a move to a node away past the grace that never committed', () => {
    const [moving, declared, only] = ['s-00000000e1', 's-00000000e3', 's-00000000e2'];
    const names: Record<string, string> = { [moving]: 'moving', [declared]: 'declared', [only]: 'only' };
    const member = (name: string) => JSON.stringify({ name, endpoint: '127.0.0.1:1', capacity: { slots: 4, memory_mb: 1024, disk_mb: 100 }, registered_at: '2026-12-06T00:00:00.000Z' });
    const placed = (id: string) => JSON.stringify({ id, owner_uid: 1000, owner_gids: [], request: { name: names[id] }, memory_mb: 256, entry: 'nc', placed_at: '2026-12-06T00:00:00.000Z' });
    const copying = (id: string) => JSON.stringify({ id, from: 'nc', to: 'nx', phase: 'copying' });
    // As nc's drain leaves it once its move failed and its undo cannot reach nx.
    const undoing = (id: string) => JSON.stringify({ id, from: 'nc', to: 'nx', phase: 'undoing' });
    const since = '2026-12-06T00:00:00.000Z';

    /** nb judges; nc was draining `moving` and `declared` to nx, away a minute now (past the 5 s grace). */
    const fleet = async (etcd: Etcd3, withOnly: boolean) => {
      await etcd.delete().prefix('/enclave/');
      for (const n of ['nb', 'nc', 'nx']) await etcd.put(key.member(n)).value(member(n));
      for (const n of ['nb', 'nc']) await etcd.put(key.alive(n)).value('{}');
      await etcd.put(key.down('nx')).value(JSON.stringify({ since: new Date(Date.now() - 60_000).toISOString(), seen_by: 'nb' }));
      await etcd.put(key.alloc('nx')).value(JSON.stringify({ sessions: { [moving]: { memory_mb: 256 }, ...(withOnly ? { [only]: { memory_mb: 256 } } : {}) } }));
      // `moving`: placed on both while copying, nx's report of its copy in.
      await etcd.put(key.desired('nc', moving)).value(placed(moving));
      await etcd.put(key.desired('nx', moving)).value(placed(moving));
      await etcd.put(key.status(moving)).value(JSON.stringify({ id: moving, node: 'nx', state: 'running', session: { id: moving } } satisfies Status));
      await etcd.put(key.move(moving)).value(copying(moving));
      // `declared`: a node of the version before this one declared it lost with nx already (placement gone, lost record).
      await etcd.put(key.desired('nc', declared)).value(placed(declared));
      await etcd.put(key.status(declared)).value(JSON.stringify({ id: declared, node: 'nx', state: 'lost', since } satisfies Status));
      await etcd.put(key.lost(declared)).value(JSON.stringify({ id: declared, node: 'nx', owner_uid: 1000, name: 'declared', since } satisfies Lost));
      await etcd.put(key.move(declared)).value(undoing(declared));
      // `only` lived on nx alone: lost with it.
      if (withOnly) await etcd.put(key.desired('nx', only)).value(placed(only));
    };

    it('keeps the session where it came from: not lost, nx\'s placement, report and a lost declaration of the copy gone, nx\'s allocation emptied', async () => {
      const etcd = e.client;
      // Nothing else on nx: its allocation is emptied by the release itself (no declaration of others does it).
      await fleet(etcd, false);
      const f = new Failure(etcd, c, registry, target(new Map()), pino({ level: 'silent' }));
      await f.start();
      const deadline = Date.now() + 8000;
      while ((await etcd.get(key.desired('nx', moving)).string()) !== null && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      // A judge's round more: the release, the declaration and the moves' follow-up are one round.
      await new Promise((r) => setTimeout(r, 1500));
      f.close();
      for (const id of [moving, declared]) {
        // Its files are on nc, where it stays placed; the record stays for nc's drain to undo (it cannot commit now).
        expect(await etcd.get(key.lost(id)).string(), id).toBeNull();
        expect(await etcd.get(key.status(id)).string(), id).toBeNull();
        expect(await etcd.get(key.desired('nx', id)).string(), id).toBeNull();
        expect(await etcd.get(key.desired('nc', id)).string(), id).toBe(placed(id));
      }
      expect(await etcd.get(key.move(moving)).string()).toBe(copying(moving));
      expect(await etcd.get(key.move(declared)).string()).toBe(undoing(declared));
      expect(JSON.parse((await etcd.get(key.alloc('nx')).string())!)).toEqual({ sessions: {} });
    }, 15_000);

    it('is not declared lost by a judge whose release did not apply (the record or report changed meanwhile)', async () => {
      const etcd = e.client;
      await fleet(etcd, true);
      const f = new Failure(etcd, c, registry, target(new Map()), pino({ level: 'silent' }));
      const moves = new Map([[key.move(moving), copying(moving)]]);
      await (f as unknown as { declareLost(node: string, moves: ReadonlyMap<string, string>): Promise<void> }).declareLost('nx', moves);
      expect(await etcd.get(key.lost(moving)).string()).toBeNull();
      expect(await etcd.get(key.desired('nx', moving)).string()).toBe(placed(moving));
      expect(JSON.parse((await etcd.get(key.status(only)).string())!)).toMatchObject({ state: 'lost' });
      f.close();
    });

    it('releases nothing while nx is back, or once the record changed since it was read', async () => {
      const etcd = e.client;
      await fleet(etcd, false);
      const away = new AwayMoves(etcd, 'nb', target(new Map()), pino({ level: 'silent' }));
      const before = async () => Promise.all([key.desired('nx', moving), key.status(moving)].map((k) => etcd.get(k).string()));
      const kept = await before();
      // Read before nc's drain marked it undoing: the record compare fails.
      await etcd.put(key.move(moving)).value(undoing(moving));
      await away.releaseTo('nx', new Map([[key.move(moving), copying(moving)]]));
      expect(await before()).toEqual(kept);
      // nx back (its alive key): nothing of its copy goes.
      await etcd.put(key.alive('nx')).value('{}');
      await away.releaseTo('nx', new Map([[key.move(moving), undoing(moving)]]));
      expect(await before()).toEqual(kept);
      expect(kept.every((v) => v !== null)).toBe(true);
      // Away again: released.
      await etcd.delete().key(key.alive('nx'));
      await away.releaseTo('nx', new Map([[key.move(moving), undoing(moving)]]));
      expect(await before()).toEqual([null, null]);
    });

    it('is ended by nx at its fence, back: its copy of a released move (placed there no more); not one of a move still placed there', async () => {
      const etcd = e.client;
      await etcd.delete().prefix('/enclave/');
      const nx = { ...c, node: 'nx' } as ClusterConfig;
      const kept = 's-00000000e4';
      // Released while nx was away (no placement there), and one nx came back to within the grace (placed there).
      await etcd.put(key.desired('nc', moving)).value(placed(moving));
      await etcd.put(key.move(moving)).value(copying(moving));
      for (const n of ['nc', 'nx']) await etcd.put(key.desired(n, kept)).value(placed(kept));
      await etcd.put(key.move(kept)).value(copying(kept));
      const states = new Map<string, SessionState>([[moving, 'running'], [kept, 'running']]);
      const forgotten: string[] = [];
      const discarded: string[] = [];
      const f = new Failure(etcd, nx, registry, target(states, async (id) => void forgotten.push(id), discarded), pino({ level: 'silent' }));
      await f.fence();
      expect(f.open()).toBe(true);
      // Ended as an undo ends a copy (with what the move's kit made here), marked the copy of nc's: no move on its trail.
      expect(discarded).toEqual([`${moving} lives on nc`]);
      expect(forgotten).toEqual([]);
      expect(states.get(kept)).toBe('running');
      // The records stay: nc's drain undoes both moves (nx confirms the ended one at once).
      expect(await etcd.get(key.move(moving)).string()).toBe(copying(moving));
      f.close();
    });
  });

  it("leaves a node away past the grace word of a committed move's old copy there, which it ends when back though the session is placed nowhere now", async () => {
    const etcd = e.client;
    await etcd.delete().prefix('/enclave/');
    const [gone, again, moving] = ['s-00000000d1', 's-00000000d2', 's-00000000d3'];
    // nc (away) committed the move of `gone` to na, then went; na's copy was destroyed meanwhile (placed nowhere).
    const rec = JSON.stringify({ id: gone, from: 'nc', to: 'na', phase: 'committed' });
    await etcd.put(key.move(gone)).value(rec);
    await new AwayMoves(etcd, 'nb', target(new Map()), pino({ level: 'silent' })).finishFrom('nc', new Map([[key.move(gone), rec]]));
    expect(await etcd.get(key.move(gone)).string()).toBeNull();
    expect(JSON.parse((await etcd.get(key.oldCopy('nc', gone)).string())!)).toEqual({ id: gone, to: 'na' });
    // Word of more: `again` placed on nc alone since (the word is stale: its copy there is the session now),
    // `booked` placed on nc and na (a move to nc being booked), `moving` being moved to nc now, `lost` lost on
    // na (nc's copy is the last of its files), `ended` whose copy here ended already, and one that does not parse.
    const [booked, lost, ended] = ['s-00000000d4', 's-00000000d5', 's-00000000d6'];
    const word = (id: string) => JSON.stringify({ id, to: 'na' });
    for (const id of [again, moving, booked, lost, ended]) await etcd.put(key.oldCopy('nc', id)).value(word(id));
    await etcd.put(key.oldCopy('nc', 'junk')).value('{"id":1}');
    await etcd.put(key.desired('nc', again)).value('{}');
    await etcd.put(key.move(moving)).value(JSON.stringify({ id: moving, from: 'na', to: 'nc', phase: 'copying' }));
    for (const n of ['na', 'nc']) for (const id of [moving, booked]) await etcd.put(key.desired(n, id)).value('{}');
    await etcd.put(key.lost(lost)).value(JSON.stringify({ id: lost, node: 'na', owner_uid: 1000, name: null, since: '2026-12-06T00:00:00.000Z' } satisfies Lost));
    // nc back: its fence ends the old copy of `gone` (the first try fails: the sweep tries again).
    const states = new Map<string, SessionState>([...[gone, again, moving, booked, lost].map((id): [string, SessionState] => [id, 'stopped']), [ended, 'destroyed']]);
    const forgotten: string[] = [];
    let fails = 1;
    const forget = async (id: string, to: string) => {
      forgotten.push(`${id} to ${to}`);
      if (fails-- > 0) throw new Error('the kernel did not let go');
      states.set(id, 'destroyed');
    };
    const f = new Failure(etcd, { ...c, node: 'nc' } as ClusterConfig, registry, target(states, forget), pino({ level: 'silent' }), 200);
    await f.start();
    expect(f.open()).toBe(true);
    expect(await etcd.get(key.oldCopy('nc', gone)).string()).not.toBeNull();
    const deadline = Date.now() + 5000;
    while ((await etcd.get(key.oldCopy('nc', gone)).string()) !== null && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    f.close();
    expect(forgotten).toEqual([`${gone} to na`, `${gone} to na`]);
    expect([...states].filter(([, st]) => st === 'destroyed').map(([id]) => id).sort()).toEqual([gone, ended].sort());
    const words = (await etcd.getAll().prefix(key.oldCopiesOf('nc')).keys()).map((k) => k.slice(key.oldCopiesOf('nc').length)).sort();
    expect(words).toEqual([moving, booked, lost].sort());
  });

  it('ends, back after it was removed from the fleet, its copies of moves undone without it (words under undone/) in any state, as an undo ends them: not one lost where it lives, nor one placed here', async () => {
    const etcd = e.client;
    await etcd.delete().prefix('/enclave/');
    const [running, stopped, lost, placedHere, gone] = ['s-00000000c1', 's-00000000c2', 's-00000000c3', 's-00000000c4', 's-00000000c5'];
    for (const id of [running, stopped, lost, placedHere, gone]) await etcd.put(key.undone('nb', id)).value(JSON.stringify({ id, to: 'na' }));
    for (const id of [running, stopped, lost]) await etcd.put(key.desired('na', id)).value('{}');
    await etcd.put(key.desired('nb', placedHere)).value('{}');
    await etcd.put(key.lost(lost)).value(JSON.stringify({ id: lost, node: 'na', owner_uid: 1000, name: null, since: '2026-12-06T00:00:00.000Z' } satisfies Lost));
    const states = new Map<string, SessionState>([
      [running, 'running'],
      [stopped, 'stopped'],
      [lost, 'stopped'],
      [placedHere, 'running'],
    ]);
    const discarded: string[] = [];
    const forgotten: string[] = [];
    const t = target(states, async (id) => void forgotten.push(id), discarded);
    await new AwayMoves(etcd, 'nb', t, pino({ level: 'silent' })).endMarked();
    expect(discarded.sort()).toEqual([`${running} lives on na`, `${stopped} lives on na`].sort());
    expect(forgotten).toEqual([]);
    const words = (await etcd.getAll().prefix(key.undoneOf('nb')).keys()).map((k) => k.slice(key.undoneOf('nb').length)).sort();
    // Ended (and the one with no copy here) go; the lost one waits; the one placed here alone is stale and goes.
    expect(words).toEqual([lost]);
    expect(states.get(placedHere)).toBe('running');
  });
});
