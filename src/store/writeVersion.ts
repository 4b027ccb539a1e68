// A version of everything in the database, read without reading any table:
// total_changes() counts every row this connection inserted, updated or
// deleted (rolled back ones too), and PRAGMA data_version moves with every
// commit of another connection. Whatever is made only of the database's
// rows is unchanged while both are; a part of the database a reader does not
// read (the audit trail, for a list) is taken out by counting its own writes
// (src/daemon/listTag.ts).
import type Database from 'better-sqlite3';

export interface WriteVersion {
  /** Rows this connection changed. */
  changes: number;
  /** Moves when another connection commits. */
  others: number;
}

export function writeVersion(db: Database.Database): () => WriteVersion {
  const changes = db.prepare('SELECT total_changes()').pluck();
  return () => ({ changes: Number(changes.get()), others: Number(db.pragma('data_version', { simple: true })) });
}
