// Applies migrations/NNN_name.sql in order, each exactly once, each inside a
// transaction, and refuses a database written by a newer Enclave. Foreign
// keys are off while a migration runs (SQLite's way to rebuild a table that
// others refer to) and checked before it commits.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type Database from 'better-sqlite3';

export interface Migration {
  version: number;
  name: string;
  sql: string;
}

const FILE = /^(\d{3})_([a-z0-9_]+)\.sql$/;

export class MigrationError extends Error {}

export function readMigrations(dir: string): Migration[] {
  const out: Migration[] = [];
  for (const file of readdirSync(dir).sort()) {
    const m = FILE.exec(file);
    if (!m) {
      if (file.endsWith('.sql')) throw new MigrationError(`${join(dir, file)}: migration files are named NNN_name.sql`);
      continue;
    }
    out.push({ version: Number(m[1]), name: m[2]!, sql: readFileSync(join(dir, file), 'utf8') });
  }
  out.forEach((mig, i) => {
    if (mig.version !== i + 1) throw new MigrationError(`${dir}: expected migration ${String(i + 1).padStart(3, '0')}, found ${String(mig.version).padStart(3, '0')}_${mig.name}`);
  });
  return out;
}

/** Returns the versions applied by this call. */
export function migrate(db: Database.Database, migrations: Migration[]): number[] {
  db.exec(`CREATE TABLE IF NOT EXISTS schema_migrations (
    version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL) STRICT`);
  const row = db.prepare('SELECT max(version) AS v FROM schema_migrations').get() as { v: number | null };
  const current = row.v ?? 0;
  const known = migrations.length;
  if (current > known) {
    throw new MigrationError(
      `database schema version ${current} is newer than this Enclave understands (${known}); ` +
        'run the Enclave version that wrote it, or restore a backup',
    );
  }
  const applied: number[] = [];
  const record = db.prepare('INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)');
  const pending = migrations.slice(current);
  if (pending.length === 0) return applied;
  // Not settable inside a transaction: around them all, restored after.
  const keys = db.pragma('foreign_keys', { simple: true }) as number;
  db.pragma('foreign_keys = OFF');
  try {
    for (const mig of pending) {
      db.transaction(() => {
        db.exec(mig.sql);
        const broken = db.pragma('foreign_key_check') as { table: string; parent: string }[];
        if (broken.length > 0) {
          const first = broken[0]!;
          throw new MigrationError(`migration ${mig.version}_${mig.name} leaves ${broken.length} rows of ${first.table} without their ${first.parent} row`);
        }
        record.run(mig.version, mig.name, new Date().toISOString());
      }).immediate();
      applied.push(mig.version);
    }
  } finally {
    db.pragma(`foreign_keys = ${keys ? 'ON' : 'OFF'}`);
  }
  return applied;
}
