// A secret a drain's move stored on the receiving node (migration 025,
// secrets.moved_for): removed when the move is undone or the session's create
// there fails, unless another live session there declares it; the owner's
// like any other once the move is over or the owner sets it.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { pino } from 'pino';
import { adoptKit, dropMadeFor, madeForMoveDone, madeForMoves } from '../../src/daemon/moveKitHere.js';
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
    // The moving session's own copy declares it: not another holder.
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
    expect([...madeForMoves(sessions).entries()]).toEqual([['s-00000000a1', expect.objectContaining({ secrets: ['github'], volumes: [], row: false })]]);
    expect(await dropMadeFor(sessions, 's-00000000a1', log)).toEqual([]);
    expect(store.listOf(1000).map((x) => x.name)).toEqual(['npm']);

    await adoptKit(sessions, kit, 1000, 's-00000000a1', 'b', log);
    madeForMoveDone(sessions, 's-00000000a1');
    expect(madeForMoves(sessions).size).toBe(0);
    await dropMadeFor(sessions, 's-00000000a1', log);
    expect(store.listOf(1000).map((x) => x.name)).toEqual(['github', 'npm']);
  });
});
