// A volume a drain's move made on the receiving node (migration 024,
// volumes.moved_for): the moving session's alone until its files are in,
// then the owner's like any other.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { pino } from 'pino';
import type Database from 'better-sqlite3';
import { openDatabase } from '../../src/store/db.js';
import { VolumeStore } from '../../src/store/volumeStore.js';
import { Volumes } from '../../src/volumes/volumes.js';

describe('a volume made for a move', () => {
  let dir: string;
  let db: Database.Database;
  let volumes: Volumes;
  const MOVING = 's-00000000a1';
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'moved-vol-'));
    db = openDatabase(dir);
    const store = new VolumeStore(db);
    volumes = new Volumes(store, dir, { default_size_mb: 64, reserve_mb: 0 }, pino({ level: 'silent' }));
    store.insertCreating('v-00000000b1', 'code', 64, 1000, undefined, MOVING);
    store.markReady('v-00000000b1');
    store.insertCreating('v-00000000b2', 'other', 64, 1000);
    store.markReady('v-00000000b2');
  });
  afterEach(() => {
    db.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it("is mounted by the moving session alone until its files are in, then by any of the owner's", () => {
    expect(volumes.movedFor(MOVING)).toEqual(['v-00000000b1']);
    expect(volumes.get('v-00000000b1')?.moved_for).toBe(MOVING);
    expect(volumes.mountRefusal('v-00000000b1', 'code', false, 's-00000000a2')).toMatch(/being moved here with session s-00000000a1/);
    expect(volumes.mountRefusal('v-00000000b1', 'code', true, 's-00000000a2')).toMatch(/being moved here/);
    expect(volumes.mountRefusal('v-00000000b1', 'code', false, MOVING)).toBeUndefined();
    expect(volumes.mountRefusal('v-00000000b2', 'other', false, 's-00000000a2')).toBeUndefined();
    // A session moved with it (its kit names the volume `with` MOVING: CreateExtra.joins) mounts it; naming another, it does not.
    expect(volumes.mountRefusal('v-00000000b1', 'code', false, 's-00000000a2', MOVING)).toBeUndefined();
    expect(volumes.mountRefusal('v-00000000b1', 'code', false, 's-00000000a2', 's-00000000a3')).toMatch(/being moved here with session s-00000000a1/);
    volumes.clearMovedFor(MOVING);
    expect(volumes.movedFor(MOVING)).toEqual([]);
    expect(volumes.get('v-00000000b1')?.moved_for).toBeNull();
    expect(volumes.mountRefusal('v-00000000b1', 'code', false, 's-00000000a2')).toBeUndefined();
  });
});
