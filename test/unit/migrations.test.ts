import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import Database from 'better-sqlite3';
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { migrate, MigrationError, readMigrations, type Migration } from '../../src/store/migrations.js';
import { migrationsDir, openDatabase } from '../../src/store/db.js';

const m = (version: number, sql: string): Migration => ({ version, name: `m${version}`, sql });

describe('migration runner', () => {
  let db: Database.Database;
  beforeEach(() => {
    db = new Database(':memory:');
  });
  afterEach(() => db.close());

  it('applies migrations in order, exactly once, and records them', () => {
    const migs = [m(1, 'CREATE TABLE a (x INTEGER)'), m(2, 'ALTER TABLE a ADD COLUMN y INTEGER')];
    expect(migrate(db, migs)).toEqual([1, 2]);
    expect(migrate(db, migs)).toEqual([]);
    const rows = db.prepare('SELECT version, name FROM schema_migrations ORDER BY version').all();
    expect(rows).toEqual([{ version: 1, name: 'm1' }, { version: 2, name: 'm2' }]);
    db.prepare('INSERT INTO a (x, y) VALUES (1, 2)').run();
  });

  it('rolls a failing migration back whole and records nothing for it', () => {
    migrate(db, [m(1, 'CREATE TABLE a (x INTEGER)')]);
    expect(() => migrate(db, [m(1, ''), m(2, 'CREATE TABLE b (x INTEGER); INSERT INTO nope VALUES (1);')])).toThrow();
    expect(db.prepare(`SELECT count(*) AS n FROM sqlite_master WHERE name = 'b'`).get()).toEqual({ n: 0 });
    expect(db.prepare('SELECT max(version) AS v FROM schema_migrations').get()).toEqual({ v: 1 });
  });

  it('refuses a database written by a newer version', () => {
    migrate(db, [m(1, 'CREATE TABLE a (x INTEGER)'), m(2, 'CREATE TABLE b (x INTEGER)')]);
    expect(() => migrate(db, [m(1, 'CREATE TABLE a (x INTEGER)')])).toThrow(MigrationError);
    expect(() => migrate(db, [m(1, 'CREATE TABLE a (x INTEGER)')])).toThrow(/schema version 2 is newer than this Enclave understands \(1\)/);
  });

  it('reads NNN_name.sql files and refuses gaps', () => {
    const dir = mkdtempSync(join(tmpdir(), 'enclave-mig-'));
    try {
      writeFileSync(join(dir, '001_first.sql'), 'SELECT 1;');
      writeFileSync(join(dir, '003_third.sql'), 'SELECT 1;');
      expect(() => readMigrations(dir)).toThrow(/expected migration 002, found 003_third/);
    } finally {
      rmSync(dir, { recursive: true });
    }
  });

  it('ships migrations that apply cleanly to an empty database', () => {
    const all = readMigrations(migrationsDir);
    expect(all.length).toBeGreaterThan(0);
    expect(migrate(db, all)).toEqual(all.map((x) => x.version));
  });

  it('011 gives every object an owner and per-owner names, keeping what was there', () => {
    db.pragma('foreign_keys = ON');
    const all = readMigrations(migrationsDir);
    const upTo = (v: number) => all.filter((x) => x.version <= v);
    migrate(db, upTo(10));
    const now = '2026-12-01T00:00:00Z';
    db.exec(`INSERT INTO sessions (id, name, state, hostname, limits, created_at, updated_at) VALUES ('s-0000000001', 'web', 'running', 'web', '{}', '${now}', '${now}')`);
    db.exec(`INSERT INTO volumes (name, state, size_mb, owner_uid, created_at) VALUES ('code', 'ready', 64, 1000, '${now}')`);
    db.exec(`INSERT INTO session_volumes (session_id, volume, target, readonly) VALUES ('s-0000000001', 'code', '/code', 0)`);
    db.exec(`INSERT INTO secrets (name, kind, version, created_at, updated_at) VALUES ('github', 'provider', 2, '${now}', '${now}')`);
    db.exec(`INSERT INTO session_secrets (session_id, name, kind, version) VALUES ('s-0000000001', 'github', 'provider', 2)`);
    db.exec(`INSERT INTO events (time, caller_uid, via, action, session_id, decision, rule) VALUES ('${now}', 0, 'socket', 'session.exec', 's-0000000001', 'allow', 'root')`);
    expect(migrate(db, all)).toEqual(all.filter((x) => x.version > 10).map((x) => x.version));
    expect(db.prepare('SELECT owner_uid FROM sessions').get()).toEqual({ owner_uid: 0 });
    expect(db.prepare('SELECT id, name, owner_uid FROM volumes').get()).toEqual({ id: 'code', name: 'code', owner_uid: 1000 });
    expect(db.prepare('SELECT volume FROM session_volumes').get()).toEqual({ volume: 'code' });
    expect(db.prepare('SELECT owner_uid, name, version, shared FROM secrets').get()).toEqual({ owner_uid: 0, name: 'github', version: 2, shared: 0 });
    expect(db.prepare('SELECT owner_uid FROM session_secrets').get()).toEqual({ owner_uid: 0 });
    expect(db.prepare('SELECT object_owner FROM events').get()).toEqual({ object_owner: 0 });
    expect(db.pragma('foreign_key_check')).toEqual([]);
    // Names are per owner now: another owner's live "web" and "code" are fine, a second one of the same owner's is not.
    db.exec(`INSERT INTO sessions (id, name, state, hostname, limits, created_at, updated_at, owner_uid) VALUES ('s-0000000002', 'web', 'running', 'web', '{}', '${now}', '${now}', 1000)`);
    expect(() => db.exec(`INSERT INTO sessions (id, name, state, hostname, limits, created_at, updated_at, owner_uid) VALUES ('s-0000000003', 'web', 'running', 'web', '{}', '${now}', '${now}', 1000)`)).toThrow(/UNIQUE/);
    db.exec(`INSERT INTO volumes (id, name, state, size_mb, owner_uid, created_at) VALUES ('v-0123456789', 'code', 'ready', 64, 0, '${now}')`);
    expect(() => db.exec(`INSERT INTO session_volumes (session_id, volume, target, readonly) VALUES ('s-0000000001', 'nope', '/x', 0)`)).toThrow(/FOREIGN KEY/);
  });

  it('012 rebuilds sessions for stop and start: destroyed rows say so, the rows that refer to a session keep it, foreign keys hold', () => {
    db.pragma('foreign_keys = ON');
    const all = readMigrations(migrationsDir);
    migrate(db, all.filter((x) => x.version <= 11));
    const now = '2026-12-01T00:00:00Z';
    const add = (id: string, state: string, name: string | null) =>
      db.exec(`INSERT INTO sessions (id, name, state, hostname, limits, created_at, updated_at, owner_uid) VALUES ('${id}', ${name ? `'${name}'` : 'NULL'}, '${state}', 'h', '{}', '${now}', '${now}', 0)`);
    add('s-0000000001', 'running', 'web');
    add('s-0000000002', 'stopped', 'web');
    add('s-0000000003', 'stopping', null);
    db.exec(`INSERT INTO ip_leases (address, session_id) VALUES (1, 's-0000000001')`);
    db.exec(`INSERT INTO session_plans (session_id, plan) VALUES ('s-0000000002', '{}')`);
    expect(migrate(db, all)).toEqual(all.filter((x) => x.version > 11).map((x) => x.version));
    expect(db.prepare('SELECT id, state FROM sessions ORDER BY id').all()).toEqual([
      { id: 's-0000000001', state: 'running' },
      { id: 's-0000000002', state: 'destroyed' },
      { id: 's-0000000003', state: 'destroying' },
    ]);
    expect(db.pragma('foreign_key_check')).toEqual([]);
    expect(db.pragma('foreign_keys', { simple: true })).toBe(1);
    expect(db.prepare('SELECT session_id FROM ip_leases').get()).toEqual({ session_id: 's-0000000001' });
    // A stopped session keeps its name; a destroyed one's is free.
    expect(() => add('s-0000000004', 'stopped', 'web')).toThrow(/UNIQUE/);
    db.exec(`UPDATE sessions SET state = 'destroyed' WHERE id = 's-0000000001'`);
    add('s-0000000004', 'stopped', 'web');
    expect(() => db.exec(`INSERT INTO ip_leases (address, session_id) VALUES (2, 's-0000000099')`)).toThrow(/FOREIGN KEY/);
  });

  it('a migration that leaves a row without its parent is refused whole', () => {
    db.pragma('foreign_keys = ON');
    migrate(db, [m(1, 'CREATE TABLE p (id INTEGER PRIMARY KEY); CREATE TABLE c (p INTEGER REFERENCES p (id)); INSERT INTO p VALUES (1); INSERT INTO c VALUES (1)')]);
    expect(() => migrate(db, [m(1, ''), m(2, 'DELETE FROM p')])).toThrow(/leaves 1 rows of c without their p row/);
    expect(db.prepare('SELECT count(*) AS n FROM p').get()).toEqual({ n: 1 });
    expect(db.pragma('foreign_keys', { simple: true })).toBe(1);
  });

  it('013 records OOM kills, and lets the audit trail hold what the kernel or the daemon did, keeping every event and its id', () => {
    const all = readMigrations(migrationsDir);
    migrate(db, all.filter((x) => x.version <= 12));
    const now = '2026-12-01T00:00:00Z';
    db.exec(`INSERT INTO sessions (id, name, state, hostname, limits, created_at, updated_at, owner_uid) VALUES ('s-0000000001', 'web', 'running', 'web', '{}', '${now}', '${now}', 1000)`);
    db.exec(`INSERT INTO events (id, time, caller_uid, via, action, session_id, decision, rule, object_owner) VALUES (7, '${now}', 1000, 'socket', 'session.exec', 's-0000000001', 'allow', 'devs', 1000)`);
    expect(() => db.exec(`INSERT INTO events (time, caller_uid, via, action, decision, rule) VALUES ('${now}', 0, 'kernel', 'session.oom', 'none', 'x')`)).toThrow(/CHECK/);
    expect(migrate(db, all)).toEqual(all.filter((x) => x.version > 12).map((x) => x.version));
    expect(db.prepare('SELECT oom_kills, oom_kills_before, oom_victim, oom_victim_pid, oom_at FROM sessions').get()).toEqual({ oom_kills: 0, oom_kills_before: 0, oom_victim: null, oom_victim_pid: null, oom_at: null });
    expect(db.prepare('SELECT id, caller_uid, via, action, decision, rule, object_owner FROM events').get()).toEqual({ id: 7, caller_uid: 1000, via: 'socket', action: 'session.exec', decision: 'allow', rule: 'devs', object_owner: 1000 });
    db.exec(`INSERT INTO events (time, caller_uid, via, action, session_id, decision, rule, object_owner) VALUES ('${now}', 1000, 'kernel', 'session.oom', 's-0000000001', 'none', 'limits.memory_mb', 1000)`);
    expect(db.prepare(`SELECT id FROM events WHERE via = 'kernel'`).get()).toEqual({ id: 8 });
    db.exec(`INSERT INTO events (time, caller_uid, via, action, session_id, decision, rule, object_owner) VALUES ('${now}', 1000, 'daemon', 'session.stop', 's-0000000001', 'none', 'idle_timeout_s', 1000)`);
    expect(() => db.exec(`INSERT INTO events (time, caller_uid, via, action, decision, rule) VALUES ('${now}', 0, 'pipe', 'x', 'allow', 'x')`)).toThrow(/CHECK/);
    expect((db.prepare(`SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'events' ORDER BY name`).all() as { name: string }[]).map((r) => r.name)).toEqual([
      'events_caller',
      'events_object_owner',
      'events_session',
      'events_time',
    ]);
  });

  it('023 records which session each listed write touched, from the version it starts at, on a database that had sessions', () => {
    const all = readMigrations(migrationsDir);
    migrate(db, all.filter((x) => x.version <= 22));
    const now = '2026-12-01T00:00:00Z';
    db.exec(`INSERT INTO sessions (id, name, state, hostname, limits, created_at, updated_at, owner_uid) VALUES ('s-0000000001', 'web', 'running', 'web', '{}', '${now}', '${now}', 1000)`);
    const before = (db.prepare('SELECT n FROM list_version').get() as { n: number }).n;
    expect(migrate(db, all)).toEqual(all.filter((x) => x.version > 22).map((x) => x.version));
    // Nothing recorded for what was there (a listing starts whole), the version and a floor of 0 kept.
    expect(db.prepare('SELECT n, floor FROM list_version').get()).toEqual({ n: before, floor: 0 });
    expect(db.prepare('SELECT count(*) AS c FROM list_changes').get()).toEqual({ c: 0 });
    db.exec(`UPDATE sessions SET state = 'stopped' WHERE id = 's-0000000001'`);
    db.exec(`INSERT INTO ip_leases (session_id, address) VALUES ('s-0000000001', 167772170)`);
    db.exec(`INSERT INTO volumes (id, name, state, size_mb, owner_uid, created_at) VALUES ('v1', 'data', 'ready', 10, 0, '${now}')`);
    expect(db.prepare('SELECT session_id, n FROM list_changes ORDER BY n').all()).toEqual([
      { session_id: 's-0000000001', n: before + 2 },
      { session_id: '*', n: before + 3 },
    ]);
  });

  it('opens the state dir 0700 and the database 0600 in WAL mode', () => {
    const dir = join(mkdtempSync(join(tmpdir(), 'enclave-db-')), 'state');
    const conn = openDatabase(dir);
    try {
      expect(statSync(dir).mode & 0o777).toBe(0o700);
      expect(statSync(join(dir, 'enclave.db')).mode & 0o777).toBe(0o600);
      expect(conn.pragma('journal_mode', { simple: true })).toBe('wal');
    } finally {
      conn.close();
      rmSync(join(dir, '..'), { recursive: true });
    }
  });
});
