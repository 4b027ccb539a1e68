// Opens the daemon's SQLite database: a root-owned 0700 state dir, 0600
// files, WAL mode, integrity checked, schema migrated to the current version.
// State on disk is not trusted blindly: a state dir or database that someone
// other than root owns or can write is refused, never "fixed" and used, and a
// corrupt database stops the daemon instead of answering 500 forever.
import Database from 'better-sqlite3';
import { chmodSync, existsSync, lstatSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { repoRoot } from '../native/addon.js';
import { migrate, readMigrations } from './migrations.js';
import { diskFullMessage, isDiskFull } from './diskFull.js';

export const migrationsDir = join(repoRoot, 'migrations');

export class StateError extends Error {}

/** Root-owned and writable by nobody else, or a StateError naming the path. */
function checkOwnership(path: string, kind: 'directory' | 'file'): void {
  const st = lstatSync(path);
  if (kind === 'directory' ? !st.isDirectory() : !st.isFile()) throw new StateError(`${path}: expected a ${kind}, not a symlink or anything else`);
  if (st.uid !== 0) throw new StateError(`${path}: owned by uid ${st.uid}, not root; refusing to trust it (chown it to root after checking its contents)`);
  if (st.mode & 0o022) throw new StateError(`${path}: writable by group or others (mode ${(st.mode & 0o7777).toString(8)}); refusing to trust it (chmod go-w after checking its contents)`);
}

export function openDatabase(stateDir: string): Database.Database {
  if (existsSync(stateDir)) checkOwnership(stateDir, 'directory');
  else mkdirSync(stateDir, { recursive: true, mode: 0o700 });
  chmodSync(stateDir, 0o700); // narrowing a root-owned dir is safe
  const path = join(stateDir, 'enclave.db');
  for (const f of [path, `${path}-wal`, `${path}-shm`]) {
    if (!existsSync(f)) continue;
    checkOwnership(f, 'file');
  }
  let db: Database.Database | undefined;
  try {
    db = new Database(path);
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = NORMAL');
    db.pragma('foreign_keys = ON');
    // An INSERT OR REPLACE's implied delete fires delete triggers only so: the list's change records
    // (migrations/023) must hear of the row it replaced. No trigger here writes a table with triggers.
    // Per connection: another writer (an operator's sqlite3 shell) that replaces a row of a listed table
    // without it leaves the replaced row's session unrecorded; the daemon itself replaces none of them.
    db.pragma('recursive_triggers = ON');
    db.pragma('busy_timeout = 5000');
    const check = db.pragma('quick_check', { simple: false }) as { quick_check: string }[];
    const problems = check.map((r) => r.quick_check).filter((m) => m !== 'ok');
    if (problems.length > 0) throw new StateError(problems.slice(0, 3).join('; '));
  } catch (e) {
    db?.close();
    const message = (e as Error).message;
    const full = isDiskFull(e, stateDir) ? diskFullMessage(stateDir) : message;
    throw new StateError(`${path}: ${full}. The daemon will not start on it: restore a backup, or move it aside to start with empty state (its sessions are then not re-adopted; \`enclave doctor --repair\` removes their cgroups and links, which nothing owns any more)`);
  }
  // New files (the database, its WAL and shared memory) are created by us: root's only.
  for (const f of [path, `${path}-wal`, `${path}-shm`]) if (existsSync(f)) chmodSync(f, 0o600);
  try {
    migrate(db, readMigrations(migrationsDir));
  } catch (e) {
    db.close();
    if (isDiskFull(e, stateDir)) throw new StateError(`${path}: ${diskFullMessage(stateDir)}. The daemon will not start until it can write its state`);
    throw e;
  }
  return db;
}
