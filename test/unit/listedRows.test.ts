// A listing kept between reads and brought up to date from the sessions
// changed since (migrations/023_list_changes.sql, src/store/listedRows.ts,
// src/store/listings.ts): read again where a session changed, whole where
// it cannot be patched, and always what a whole read of the same database
// gives, whichever write came in between and whichever connection made it.
import { describe, expect, it } from 'vitest';
import Database from 'better-sqlite3';
import { join } from 'node:path';
import { SessionStore } from '../../src/store/sessionStore.js';
import { CheckedRows } from '../../src/store/checkedRows.js';
import { FEW, ListChanges, ListedRows } from '../../src/store/listedRows.js';
import { SUMMARY_COLUMNS, summariesSchema } from '../../src/store/sessionRows.js';
import { sessionDb } from './fixtures/sessionDb.js';

/** mulberry32: a seeded draw from 0 to n - 1. */
function seeded(seed: number): (n: number) => number {
  return (n) => {
    seed = (seed + 0x6d2b79f5) | 0;
    let x = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x;
    return ((x ^ (x >>> 14)) >>> 0) % n;
  };
}

describe('a kept listing', () => {
  const t = sessionDb('listed');
  const create = () => t.create({ slots: 1000 }).id;

  /** `kept`'s listings (rows, details, table; with and without destroyed sessions) as a store that reads whole gives them. */
  const expectWhole = (kept: SessionStore, what: string) => {
    const fresh = new SessionStore(t.db);
    for (const all of [false, true]) {
      const listing = kept.listing(all);
      const made = fresh.listing(all);
      expect(listing.rows, `${what}, all=${all}`).toEqual(made.rows);
      for (const r of made.rows) expect(listing.details(r.id), `${what}: details of ${r.id}`).toEqual(made.details(r.id));
      expect(kept.listTable(all), `${what}: table`).toEqual(fresh.listTable(all));
    }
  };

  /** The API's listing without destroyed sessions, as listings.ts reads it, counting its whole reads and its reads of one. */
  const counted = () => {
    const from = `SELECT ${SUMMARY_COLUMNS} FROM sessions WHERE pool IS NULL AND state != 'destroyed'`;
    const n = { whole: 0, one: 0 };
    const rows = new ListedRows(
      new CheckedRows(summariesSchema, SUMMARY_COLUMNS.split(', ')),
      () => (n.whole++, t.db.prepare(`${from} ORDER BY created_at, rowid`).raw(true).all() as unknown[][]),
      (id) => (n.one++, t.db.prepare(`${from} AND id = ?`).raw(true).get(id) as unknown[] | undefined),
    );
    const changes = new ListChanges(t.db);
    const read = () => t.db.transaction(() => rows.read(changes))();
    const whole = () => new SessionStore(t.db).list(false);
    return { read, n, whole };
  };

  it('reads again only the sessions changed since, and reads whole where a patch cannot say', () => {
    const ids = Array.from({ length: 5 }, create);
    const { read, n, whole } = counted();
    const first = read();
    expect(first.changed).toBeUndefined();
    expect(n).toEqual({ whole: 1, one: 0 });
    // Nothing changed: the same rows, not read again.
    const same = read();
    expect(same.rows).toBe(first.rows);
    expect([...same.changed!]).toEqual([]);
    expect(n).toEqual({ whole: 1, one: 0 });
    // One session changed: its row alone read again, in its place; the others the same objects.
    t.store.markRunning(ids[2]!, 4242, '1');
    const one = read();
    expect(n).toEqual({ whole: 1, one: 1 });
    expect([...one.changed!]).toEqual([ids[2]]);
    expect(one.rows).toEqual(whole());
    expect(one.rows[2]!.state).toBe('running');
    expect(one.rows[0]).toBe(first.rows[0]);
    // A lease (another table) is a change of its session; a write by another connection is seen too.
    const other = new Database(join(t.dir, 'enclave.db'), { fileMustExist: true });
    try {
      other.prepare('INSERT INTO ip_leases (session_id, address) VALUES (?, ?)').run(ids[3], 167772170);
      expect([...read().changed!]).toEqual([ids[3]]);
      // Destroyed: gone from the listing without destroyed ones, read as one.
      other.prepare("UPDATE sessions SET state = 'destroyed' WHERE id = ?").run(ids[1]);
    } finally {
      other.close();
    }
    const gone = read();
    expect(n).toEqual({ whole: 1, one: 3 });
    expect(gone.rows.map((r) => r.id)).toEqual([ids[0], ids[2], ids[3], ids[4]]);
    expect(gone.rows).toEqual(whole());
    // A session new to the listing: its place is the whole query's to say.
    const added = create();
    expect(read().changed).toBeUndefined();
    expect(n.whole).toBe(2);
    expect(read().rows.at(-1)!.id).toBe(added);
    // A volume renamed can change any session's view ('*'): whole.
    t.db.prepare("INSERT INTO volumes (id, name, state, size_mb, owner_uid, created_at) VALUES ('v1', 'data', 'ready', 10, 0, 'now')").run();
    expect(read().changed).toBeUndefined();
    expect(n.whole).toBe(3);
    // More than FEW sessions changed: whole (the '*' record above is older than this read's version, so only these count).
    const many = Array.from({ length: FEW + 1 }, create);
    read();
    for (const id of many) t.store.markRunning(id, 1, '1');
    const before = n.whole;
    expect(read().changed).toBeUndefined();
    expect(n.whole).toBe(before + 1);
    // FEW changed: patched.
    for (const id of many.slice(0, FEW)) t.store.settle(id, 'failed', 'x');
    expect(read().changed!.size).toBe(FEW);
    expect(n.whole).toBe(before + 1);
    // Ended sessions pruned (their change records with them): the floor rises, and a listing kept from before it is read whole.
    for (const id of ids) t.store.settle(id, 'failed', 'x');
    read();
    // A prune that deletes nothing (one runs after every stop) leaves the floor where it was: still patched.
    t.store.settle(many[FEW]!, 'failed', 'y');
    expect(t.store.pruneHistory(1000)).toBe(0);
    expect([...read().changed!]).toEqual([many[FEW]]);
    // A listing kept from before any prune, not read again until the end (the sessions ended below made before it).
    const later = [create(), create()];
    read();
    const old = counted();
    old.read();
    // A prune (of fewer than FEW): the sessions it deleted leave the listing as a patch (their change records stay until the next prune).
    expect(t.store.pruneHistory(20)).toBe(38 - 20);
    const pruned = read();
    expect(pruned.changed).toBeDefined();
    expect(pruned.rows).toEqual(whole());
    // The next prune deletes those records and raises the floor to their version: a listing read since the
    // first prune is still patched; the one kept from before it is read whole.
    for (const id of later) t.store.settle(id, 'failed', 'z');
    read();
    expect(t.store.pruneHistory(20)).toBe(2);
    expect(read().changed).toBeDefined();
    expect(read().rows).toEqual(whole());
    expect(old.read().changed).toBeUndefined();
    expect(old.read().rows).toEqual(whole());
  });

  it("is forgotten after a read that failed part way, or that ran inside a caller's transaction, and read whole next", () => {
    const [a, b] = [create(), create()];
    t.db.prepare('INSERT INTO ip_leases (session_id, address) VALUES (?, ?)').run(a, 100);
    const fresh = () => new SessionStore(t.db);
    t.store.listing(false);
    // The details' read fails after the rows were read: nothing of that read is kept.
    t.db.prepare('INSERT INTO ip_leases (session_id, address) VALUES (?, ?)').run(b, 101);
    const real = t.store.detailsOf.bind(t.store);
    t.store.detailsOf = () => {
      throw new Error('SQLITE_IOERR (the test)');
    };
    expect(() => t.store.listing(false)).toThrow(/the test/);
    t.store.detailsOf = real;
    const after = t.store.listing(false);
    expect(after.rows).toEqual(fresh().list(false));
    expect(after.details(a).lease).toBe(100);
    expect(after.details(b).lease).toBe(101);
    // Read inside a transaction that rolls back, then a write that brings the version to the same number.
    try {
      t.db.transaction(() => {
        t.store.markRunning(a, 42, '1');
        expect(t.store.list(false).find((r) => r.id === a)!.init_pid).toBe(42);
        throw new Error('undo');
      })();
    } catch {
      // rolled back
    }
    t.store.settleStopped(a, { linkPending: false, storedBytes: 1 });
    expect(t.store.list(false)).toEqual(fresh().list(false));
    expect(t.store.list(false).find((r) => r.id === a)!.state).toBe('stopped');
  });

  it("hears of the row an INSERT OR REPLACE replaced (another session's address taken)", () => {
    const [a, b] = [create(), create()];
    t.db.prepare('INSERT INTO ip_leases (session_id, address) VALUES (?, ?)').run(a, 100);
    expect(t.store.listing(false).details(a).lease).toBe(100);
    t.db.prepare('INSERT OR REPLACE INTO ip_leases (session_id, address) VALUES (?, ?)').run(b, 100);
    const l = t.store.listing(false);
    expect(l.details(a).lease).toBeUndefined();
    expect(l.details(b).lease).toBe(100);
    expect(t.store.listTable(false)).toEqual(new SessionStore(t.db).listTable(false));
  });

  it('is, after any sequence of writes, what a whole read gives: rows, details and table', () => {
    // A seeded sequence: each step one write (or none), then every listing compared with a store that reads whole.
    const random = seeded(7);
    const live: string[] = [];
    t.db.prepare("INSERT INTO volumes (id, name, state, size_mb, owner_uid, created_at) VALUES ('v1', 'data', 'ready', 10, 0, 'now')").run();
    let port = 1000;
    let pruned = 0;
    const pick = () => live[random(live.length)]!;
    /** A session not ended (an ended one holds no port: settle() removed them). */
    const unended = (f: (id: string) => void) => () => {
      const id = live.length ? pick() : undefined;
      if (id !== undefined && !['failed', 'destroyed'].includes(t.store.stateOf(id)!)) f(id);
    };
    const writes: Array<() => void> = [
      () => live.push(create()),
      () => live.length && t.store.markRunning(pick(), random(9999) + 1, String(random(99))),
      () => live.length && t.store.settleStopped(pick(), { linkPending: false, storedBytes: random(1000) }),
      () => live.length && t.store.settle(pick(), random(2) ? 'destroyed' : 'failed', 'gone'),
      unended((id) => t.store.addPort(id, { host_ip: '127.0.0.1', host_port: port++, session_port: 80 })),
      // A small pool of addresses: a REPLACE often takes another session's (its row deleted, not updated).
      () => live.length && t.db.prepare('INSERT OR REPLACE INTO ip_leases (session_id, address) VALUES (?, ?)').run(pick(), 167772170 + random(8)),
      () => t.db.prepare('DELETE FROM ip_leases WHERE rowid IN (SELECT rowid FROM ip_leases LIMIT 1)').run(),
      () => live.length && t.db.prepare("INSERT OR IGNORE INTO session_secrets (session_id, name, kind, version, owner_uid) VALUES (?, ?, 'env', 1, 0)").run(pick(), `tok${random(3)}`),
      () => live.length && t.db.prepare("INSERT OR IGNORE INTO session_volumes (session_id, volume, target, readonly) VALUES (?, 'v1', ?, 0)").run(pick(), `/d${random(3)}`),
      () => t.db.prepare('UPDATE volumes SET name = ?').run(`data${random(9)}`),
      () => {
        pruned += t.store.pruneHistory(random(10));
        live.splice(0, live.length, ...live.filter((id) => t.store.stateOf(id) !== undefined));
      },
      () => undefined,
    ];
    for (let step = 0; step < 400; step++) {
      const w = random(writes.length);
      writes[w]!();
      expectWhole(t.store, `step ${step} (write ${w})`);
    }
    // The sequence did prune ended sessions (the floor), and left sessions listed.
    expect(pruned).toBeGreaterThan(0);
    expect(t.store.list(true).length).toBeGreaterThan(0);
  });

  it('are, kept by several stores read at random over 1,500 writes, what a whole read gives: moved copies dropped and their ids made again, reads inside committed transactions, another connection writing', () => {
    const random = seeded(12345);
    const stores = Array.from({ length: 4 }, () => new SessionStore(t.db));
    const other = new Database(join(t.dir, 'enclave.db'), { fileMustExist: true });
    t.db.prepare("INSERT INTO volumes (id, name, state, size_mb, owner_uid, created_at) VALUES ('v1', 'data', 'ready', 10, 0, 'now')").run();
    const ids: string[] = [];
    const pick = () => ids[random(ids.length)]!;
    const ended = (id: string) => ['failed', 'destroyed', 'stopped'].includes(t.store.stateOf(id) ?? '');
    /** `f` on a session picked at random, if it still exists (a prune or a drop may have deleted it). */
    const onOne = (f: (id: string) => unknown) => () => {
      const id = pick();
      if (t.store.stateOf(id) !== undefined) f(id);
    };
    let port = 2000;
    const stats = { pruned: 0, dropped: 0, reused: 0 };
    const writes: Array<() => void> = [
      () => ids.push(create()),
      onOne((id) => t.store.markRunning(id, random(9999) + 1, '1')),
      onOne((id) => t.store.settle(id, random(2) ? 'destroyed' : 'failed', 'x')),
      onOne((id) => ended(id) || t.store.addPort(id, { host_ip: '127.0.0.1', host_port: port++, session_port: 80 })),
      // A name of its own each time (names are unique per owner).
      onOne((id) => other.prepare('UPDATE sessions SET name = ? WHERE id = ?').run(`n${port++}`, id)),
      onOne((id) => other.prepare('INSERT OR IGNORE INTO ip_leases (session_id, address) VALUES (?, ?)').run(id, 5000 + random(50))),
      () => other.prepare('DELETE FROM ip_leases WHERE rowid IN (SELECT rowid FROM ip_leases ORDER BY random() LIMIT 1)').run(),
      onOne((id) => t.db.prepare("INSERT OR IGNORE INTO session_volumes (session_id, volume, target, readonly) VALUES (?, 'v1', ?, 0)").run(id, `/d${random(3)}`)),
      onOne((id) => t.db.prepare("INSERT OR IGNORE INTO session_secrets (session_id, name, kind, version, owner_uid) VALUES (?, ?, 'env', 1, 0)").run(id, `tok${random(3)}`)),
      () => t.db.prepare('UPDATE volumes SET name = ?').run(`data${random(9)}`),
      () => void (stats.pruned += t.store.pruneHistory(random(6))),
      // A drain's old copy dropped, and the session moved back under its id.
      onOne((id) => {
        t.db.prepare('DELETE FROM ip_leases WHERE session_id = ?').run(id);
        t.store.settle(id, 'failed', 'moved');
        t.store.fleet.markMovedAway(id, 'B');
        if (t.store.fleet.dropMovedAway(id)) stats.dropped++;
        if (random(2)) {
          t.create({ slots: 1000, id });
          stats.reused++;
        }
      }),
      // A listing read inside a caller's transaction that commits.
      () =>
        t.db.transaction(() => {
          t.store.markRunning(pick(), 7, '7');
          stores[random(stores.length)]!.listing(random(2) === 1);
        })(),
    ];
    for (let step = 0; step < 1500; step++) {
      const w = random(writes.length);
      if (ids.length || w === 0) writes[w]!();
      // A random few of the kept stores read, each from the version it last read at.
      for (const kept of stores) if (random(4) === 0) expectWhole(kept, `step ${step} (write ${w})`);
    }
    other.close();
    // The sequence did each of the rare writes.
    expect(stats.pruned).toBeGreaterThan(0);
    expect(stats.dropped).toBeGreaterThan(0);
    expect(stats.reused).toBeGreaterThan(0);
    // 1,500 steps, each maybe four stores compared with a whole read: seconds, not the default 5.
  }, 60_000);
});
