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
