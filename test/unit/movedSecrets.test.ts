// A secret a drain's move stored on the receiving node (migration 025,
// secrets.moved_for): removed when the move is undone or the session's create
// there fails, unless another live session there declares it; the owner's
// like any other once the move is over or the owner sets it.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { pino } from 'pino';
import { localNode } from '../../src/daemon/fleetNode.js';
import { adoptKit, dropMadeFor, madeForMoveDone, madeForMoves } from '../../src/daemon/moveKitHere.js';
import type { Config } from '../../src/config/schema.js';
import type { Budgets } from '../../src/access/budgets.js';
import type { Consoles } from '../../src/daemon/attach.js';
import { ApiError } from '../../src/vocab/errors.js';
import { SecretStore } from '../../src/secrets/store.js';
import type { SessionManager } from '../../src/sessions/manager.js';
import { sessionDb } from './fixtures/sessionDb.js';

describe('a secret stored for a move', () => {
  const t = sessionDb('moved-secret');
  const value = Buffer.from('tok');

  it('is removed with its undone move, with its file; the owner\'s own secrets stay', () => {
    const store = SecretStore.open(t.db, t.dir);
    const moving = t.create({ ownerUid: 1000 });
    store.set(1000, 'github', value, false, moving.id);
    store.set(1000, 'npm', value, false);
    store.recordHeld(moving.id, [{ owner: 1000, name: 'github', version: 1 }, { owner: 1000, name: 'npm', version: 1 }]);
    expect(store.madeForMoves()).toEqual([expect.objectContaining({ owner_uid: 1000, name: 'github', moved_for: moving.id })]);
    // Its copy here still live (it runs after all: a create that failed after it started): it keeps what it holds.
    expect(store.dropMovedFor(moving.id)).toEqual([]);
    expect(store.markedFor(1000, 'github')).toBeUndefined();
    store.set(1000, 'github', value, false, moving.id);
    expect(store.markedFor(1000, 'github')).toBe(moving.id);
    // Ended (the undo destroyed it): what its move stored goes.
    t.store.settle(moving.id, 'destroyed');
    expect(store.dropMovedFor(moving.id)).toEqual(['github']);
    expect(store.info(1000, 'github')).toBeUndefined();
    expect(existsSync(join(store.dir, '1000', 'github'))).toBe(false);
    expect(store.info(1000, 'npm')).toBeDefined();
    expect(store.madeForMoves()).toEqual([]);
  });

  it('stays, the owner\'s, when another live session of the node declares it; goes when that one has ended', () => {
    const store = SecretStore.open(t.db, t.dir);
    const moving = t.create({ ownerUid: 1000 });
    const other = t.create({ ownerUid: 1000 });
    store.set(1000, 'API_TOKEN', value, false, moving.id);
    store.recordHeld(other.id, [{ owner: 1000, name: 'API_TOKEN', version: 1 }]);
    expect(store.dropMovedFor(moving.id)).toEqual([]);
    expect(store.get(1000, 'API_TOKEN')?.value).toEqual(value);
    expect(store.madeForMoves()).toEqual([]);

    store.set(1000, 'npm', value, false, moving.id);
    t.store.settle(other.id, 'destroyed');
    store.recordHeld(other.id, [{ owner: 1000, name: 'npm', version: 1 }]);
    expect(store.dropMovedFor(moving.id)).toEqual(['npm']);
  });

  it('is the owner\'s once set again by them, or once the move is over', () => {
    const store = SecretStore.open(t.db, t.dir);
    store.set(1000, 'github', value, false, 's-00000000a1');
    store.set(1000, 'github', Buffer.from('rotated'), undefined);
    expect(store.madeForMoves()).toEqual([]);
    expect(store.dropMovedFor('s-00000000a1')).toEqual([]);
    expect(store.get(1000, 'github')?.version).toBe(2);

    store.set(1000, 'npm', value, false, 's-00000000a2');
    store.set(0, 'npm', value, false, 's-00000000a3');
    store.clearMovedFor('s-00000000a2');
    expect(store.madeForMoves().map((s) => [s.owner_uid, s.moved_for])).toEqual([[0, 's-00000000a3']]);
    expect(store.dropMovedFor('s-00000000a2')).toEqual([]);
    expect(store.info(1000, 'npm')).toBeDefined();
  });

  it('a kit stores only what the owner has none of, marked for its session; an undone move takes those away, a finished one leaves them the owner\'s', async () => {
    const store = SecretStore.open(t.db, t.dir);
    // The node's sessions as the kit's steps use them: its secret store, and no volumes (the kit brings none).
    const sessions = { secrets: { store }, volumes: { get: () => undefined, byName: () => undefined, mountedBy: () => 0, movedFor: () => [], madeForMoves: () => [], clearMovedFor: () => undefined }, find: () => undefined } as unknown as SessionManager;
    const log = pino({ level: 'silent' });
    store.set(1000, 'npm', value, false);
    const kit = { secrets: ['github', 'npm'].map((name) => ({ name, value_base64: value.toString('base64'), shared: false })), volumes: [] };
    await adoptKit(sessions, kit, 1000, 's-00000000a1', 'b', log);
    expect([...madeForMoves(sessions).entries()]).toEqual([['s-00000000a1', expect.objectContaining({ secrets: ['github'], volumes: [], row: 'none', settled: false })]]);
    // Another try of the same move, the value rotated on the drained node meanwhile: stored again, not refused.
    const rotated = { ...kit, secrets: kit.secrets.map((x) => (x.name === 'github' ? { ...x, value_base64: Buffer.from('new').toString('base64') } : x)) };
    await adoptKit(sessions, rotated, 1000, 's-00000000a1', 'b', log);
    expect(store.get(1000, 'github')?.value.toString()).toBe('new');
    expect(store.markedFor(1000, 'github')).toBe('s-00000000a1');
    // Another move's kit with another value of it is refused (that value is this move's, not to be replaced by another's).
    await expect(adoptKit(sessions, kit, 1000, 's-00000000a2', 'b', log)).rejects.toThrow(/holds another value of uid 1000's secret github/);
    // Aged by the last store: settled a minute after it, stale ten minutes after it.
    const later = Date.parse(store.info(1000, 'github')!.updated_at);
    expect(madeForMoves(sessions, later + 61_000).get('s-00000000a1')).toMatchObject({ settled: true, stale: false });
    expect(madeForMoves(sessions, later + 601_000).get('s-00000000a1')).toMatchObject({ settled: true, stale: true });
    await dropMadeFor(sessions, 's-00000000a1', log);
    expect(store.listOf(1000).map((x) => x.name)).toEqual(['npm']);

    await adoptKit(sessions, kit, 1000, 's-00000000a1', 'b', log);
    madeForMoveDone(sessions, 's-00000000a1');
    expect(madeForMoves(sessions).size).toBe(0);
    await dropMadeFor(sessions, 's-00000000a1', log);
    expect(store.listOf(1000).map((x) => x.name)).toEqual(['github', 'npm']);
  });

  it("takes a kit's volume named `with` another session of the move only as that one's kit made it here, and makes nothing of it; stores a carried secret unshared, root's too", async () => {
    const store = SecretStore.open(t.db, t.dir);
    const row = { id: 'v-00000000aa', name: 'pair', owner_uid: 1000, moved_for: 's-00000000a1' };
    let here: typeof row | undefined = row;
    const created: string[] = [];
    const sessions = {
      secrets: { store },
      volumes: { get: () => here, byName: () => undefined, mountedBy: () => 1, create: async (name: string) => void created.push(name), remove: async () => undefined },
      find: () => undefined,
    } as unknown as SessionManager;
    const log = pino({ level: 'silent' });
    const kit = (w: string) => ({ secrets: [], volumes: [{ id: 'v-00000000aa', name: 'pair', size_mb: 64, with: w }] });
    await adoptKit(sessions, kit('s-00000000a1'), 1000, 's-00000000a2', 'b', log);
    expect(created).toEqual([]);
    await expect(adoptKit(sessions, kit('s-00000000a3'), 1000, 's-00000000a2', 'b', log)).rejects.toThrow(/volume pair is not on node b as made for session s-00000000a3/);
    await expect(adoptKit(sessions, kit('s-00000000a1'), 1001, 's-00000000a2', 'b', log)).rejects.toThrow(/not on node b as made for session s-00000000a1/);
    here = undefined;
    await expect(adoptKit(sessions, kit('s-00000000a1'), 1000, 's-00000000a2', 'b', log)).rejects.toThrow(/not on node b/);
    // A kit that says shared (an older node's) is not root's word for this node.
    await adoptKit(sessions, { secrets: [{ name: 'npm', value_base64: value.toString('base64'), shared: true }], volumes: [] }, 0, 's-00000000a4', 'b', log);
    expect(store.info(0, 'npm')?.shared).toBe(false);
  });

  it("the node's steps: a create of the moving session that fails, and a copy dropped, take the move's secrets along; a copy that moved on leaves them the owner's", async () => {
    const store = SecretStore.open(t.db, t.dir);
    const ended = new Set<string>();
    // The node's sessions as these steps use them: a create that fails after the kit is taken, a destroy that ends the row.
    const sessions = {
      secrets: { store },
      volumes: { get: () => undefined, byName: () => undefined, mountedBy: () => 0, movedFor: () => [], madeForMoves: () => [], clearMovedFor: () => undefined },
      find: () => undefined,
      limitsFor: () => ({}),
      create: async () => {
        throw new ApiError('conflict', 'no room');
      },
      destroy: async (id: string) => void ended.add(id),
      fleetRows: { markMovedAway: () => undefined },
      volumeMountsOf: () => [],
    } as unknown as SessionManager;
    const node = localNode({ cluster: { node: 'a' }, sessions: { rootfs: 'minimal' } } as Config, sessions, {} as Consoles, {} as Budgets, () => undefined, pino({ level: 'silent' }));
    // A layered root stages read-only volumes (locked), the host's root does not: what a drain may send it (moveKit.ts featuresNeeded).
    expect(node.features).toEqual(['staged-ro-volumes']);
    expect(localNode({ cluster: { node: 'a' }, sessions: { rootfs: '/' } } as Config, sessions, {} as Consoles, {} as Budgets, () => undefined, pino({ level: 'silent' })).features).toEqual([]);
    const kit = { secrets: [{ name: 'github', value_base64: value.toString('base64'), shared: false }], volumes: [] };
    await expect(node.create('s-00000000a1', { profile: 'workspace' } as never, { uid: 1000, gids: [] }, kit)).rejects.toThrow(/no room/);
    expect(store.info(1000, 'github')).toBeUndefined();

    store.set(1000, 'npm', value, false, 's-00000000a2');
    await node.discard('s-00000000a2', 'b');
    expect(ended.has('s-00000000a2')).toBe(true);
    expect(store.info(1000, 'npm')).toBeUndefined();

    store.set(1000, 'pypi', value, false, 's-00000000a3');
    await node.forget('s-00000000a3', 'b');
    expect(store.info(1000, 'pypi')).toBeDefined();
    expect(store.markedFor(1000, 'pypi')).toBeUndefined();
  });
});
