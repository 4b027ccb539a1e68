// A state dir of a daemon before tenants (migration 011): its secrets were
// one store for every caller, files under secrets/NAME. Each goes to
// whoever set it last, as the audit trail says (root's when the trail has
// nothing), and its file moves into that owner's directory, a secret
// called "0" included (a file where root's directory goes). Root-owned
// files are what the store trusts, so this runs as root.
import { afterEach, describe, expect, it } from 'vitest';
import Database from 'better-sqlite3';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { migrate, readMigrations } from '../../src/store/migrations.js';
import { migrationsDir } from '../../src/store/db.js';
import { SecretStore } from '../../src/secrets/store.js';
import { isRoot } from './harness.js';

describe.skipIf(!isRoot)('secret store upgrade to owners (root)', () => {
  let dir: string;
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('moves every old value to its owner, as the trail says, through a temporary name', () => {
    dir = mkdtempSync(join(tmpdir(), 'enclave-upgrade-'));
    chmodSync(dir, 0o700);
    const db = new Database(join(dir, 'enclave.db'));
    const all = readMigrations(migrationsDir);
    migrate(db, all.filter((m) => m.version <= 10));
    const now = '2026-12-01T00:00:00Z';
    for (const name of ['github', '0', 'npm']) db.prepare(`INSERT INTO secrets (name, kind, version, created_at, updated_at) VALUES (?, 'provider', 1, ?, ?)`).run(name, now, now);
    // npm was last set by uid 1000; the trail no longer knows who set github or 0.
    db.prepare(`INSERT INTO events (time, caller_uid, via, action, decision, rule, detail) VALUES (?, 0, 'socket', 'auth.set', 'allow', 'root', 'npm')`).run(now);
    db.prepare(`INSERT INTO events (time, caller_uid, via, action, decision, rule, detail) VALUES (?, 1000, 'socket', 'auth.set', 'allow', 'devs', 'npm')`).run(now);
    const store = join(dir, 'secrets');
    mkdirSync(store, { mode: 0o700 });
    for (const name of ['github', '0', 'npm']) writeFileSync(join(store, name), `value-of-${name}`, { mode: 0o600 });
    migrate(db, all);
    SecretStore.open(db, dir);
    expect(readFileSync(join(store, '0', 'github'), 'utf8')).toBe('value-of-github');
    expect(readFileSync(join(store, '0', '0'), 'utf8')).toBe('value-of-0');
    expect(readFileSync(join(store, '1000', 'npm'), 'utf8')).toBe('value-of-npm');
    expect(existsSync(join(store, 'npm'))).toBe(false);
    expect(db.prepare('SELECT owner_uid, name FROM secrets ORDER BY name').all()).toEqual([
      { owner_uid: 0, name: '0' },
      { owner_uid: 0, name: 'github' },
      { owner_uid: 1000, name: 'npm' },
    ]);
    db.close();
  });
});
