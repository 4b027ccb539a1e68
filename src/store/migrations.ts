// Applies migrations/NNN_name.sql in order, each exactly once, each inside a
// transaction, and refuses a database written by a newer Enclave.
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
  for (const mig of migrations.slice(current)) {
    db.transaction(() => {
      db.exec(mig.sql);
      record.run(mig.version, mig.name, new Date().toISOString());
    }).immediate();
    applied.push(mig.version);
  }
  return applied;
}
