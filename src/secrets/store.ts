// The daemon's secret store. Values are files under <state_dir>/secrets, one
// per name, root-owned and 0600 from the moment they exist (created 0600
// with O_EXCL, then renamed into place); their index (kind, version, when)
// is in SQLite. Not encrypted at rest: the key would have to sit beside the
// values, readable by the same root, so it would protect nothing the file
// modes and the state dir's checks do not; use disk encryption for that.
// A store that someone else owns or can read is refused, naming the file.
import { closeSync, existsSync, fsyncSync, lstatSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, rmSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import type Database from 'better-sqlite3';
import { StateError } from '../store/db.js';
import { kindOf, type SecretKind } from './names.js';

export interface SecretInfo {
  name: string;
  kind: SecretKind;
  version: number;
  created_at: string;
  updated_at: string;
}

/** A session's declared secret and the version of its value that it holds. */
export interface HeldSecret {
  session_id: string;
  name: string;
  kind: SecretKind;
  version: number;
}

function checkPrivate(path: string, kind: 'directory' | 'file'): void {
  const st = lstatSync(path);
  if (kind === 'directory' ? !st.isDirectory() : !st.isFile()) throw new StateError(`${path}: expected a ${kind} in the secret store, found something else`);
  if (st.uid !== 0) throw new StateError(`${path}: owned by uid ${st.uid}, not root; the secret store must be root's alone`);
  if (st.mode & 0o077) throw new StateError(`${path}: mode ${(st.mode & 0o7777).toString(8)} lets group or others in; the secret store must be 0700 (directory) and 0600 (files)`);
}

export class SecretStore {
  readonly dir: string;

  private constructor(
    private readonly db: Database.Database,
    stateDir: string,
  ) {
    this.dir = join(stateDir, 'secrets');
  }

  /** Open (creating if missing) and check every file; a leftover temporary is removed. */
  static open(db: Database.Database, stateDir: string): SecretStore {
    const s = new SecretStore(db, stateDir);
    if (!existsSync(s.dir)) mkdirSync(s.dir, { mode: 0o700 });
    checkPrivate(s.dir, 'directory');
    for (const e of readdirSync(s.dir)) {
      const path = join(s.dir, e);
      checkPrivate(path, 'file');
      if (e.startsWith('.')) rmSync(path, { force: true });
    }
    return s;
  }

  private file(name: string): string {
    if (!kindOf(name)) throw new Error(`not a secret name: ${name}`); // names are validated before they get here
    return join(this.dir, name);
  }

  list(): SecretInfo[] {
    return this.db.prepare('SELECT name, kind, version, created_at, updated_at FROM secrets ORDER BY name').all() as SecretInfo[];
  }

  info(name: string): SecretInfo | undefined {
    return this.db.prepare('SELECT name, kind, version, created_at, updated_at FROM secrets WHERE name = ?').get(name) as SecretInfo | undefined;
  }

  /** The value, or undefined when the name is not in the store. */
  get(name: string): { value: Buffer; version: number } | undefined {
    const info = this.info(name);
    if (!info) return undefined;
    try {
      return { value: readFileSync(this.file(name)), version: info.version };
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw e;
    }
  }

  /** Store a value (new, or a rotation: its version goes up). */
  set(name: string, value: Buffer): SecretInfo {
    const kind = kindOf(name)!;
    const path = this.file(name);
    const tmp = join(this.dir, `.${name}.new`);
    rmSync(tmp, { force: true });
    const fd = openSync(tmp, 'wx', 0o600);
    try {
      writeSync(fd, value);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, path);
    const dfd = openSync(this.dir, 'r');
    try {
      fsyncSync(dfd);
    } finally {
      closeSync(dfd);
    }
    const now = new Date().toISOString();
    this.db
      .prepare(
        `INSERT INTO secrets (name, kind, version, created_at, updated_at) VALUES (?, ?, 1, ?, ?)
         ON CONFLICT (name) DO UPDATE SET version = version + 1, updated_at = excluded.updated_at`,
      )
      .run(name, kind, now, now);
    return this.info(name)!;
  }

  remove(name: string): boolean {
    const gone = this.db.prepare('DELETE FROM secrets WHERE name = ?').run(name).changes > 0;
    rmSync(this.file(name), { force: true });
    return gone;
  }

  /** Record what a session declared and holds, before its files are written. */
  recordHeld(sessionId: string, held: { name: string; version: number }[]): void {
    const ins = this.db.prepare(
      `INSERT INTO session_secrets (session_id, name, kind, version) VALUES (?, ?, ?, ?)
       ON CONFLICT (session_id, name) DO UPDATE SET version = excluded.version`,
    );
    this.db.transaction(() => held.forEach((h) => ins.run(sessionId, h.name, kindOf(h.name)!, h.version)))();
  }

  heldBy(sessionId: string): HeldSecret[] {
    return this.db.prepare('SELECT session_id, name, kind, version FROM session_secrets WHERE session_id = ? ORDER BY rowid').all(sessionId) as HeldSecret[];
  }

  /** Live sessions holding an older version of `name` than the store's. */
  staleHolders(name: string): { id: string; name: string | null }[] {
    return this.db
      .prepare(
        `SELECT s.id, s.name FROM session_secrets h JOIN sessions s ON s.id = h.session_id JOIN secrets k ON k.name = h.name
         WHERE h.name = ? AND h.version < k.version AND s.state IN ('creating','running','stopping') ORDER BY s.created_at`,
      )
      .all(name) as { id: string; name: string | null }[];
  }

  /** Live sessions that declared `name`. */
  liveHolders(name: string): { id: string; name: string | null }[] {
    return this.db
      .prepare(
        `SELECT s.id, s.name FROM session_secrets h JOIN sessions s ON s.id = h.session_id
         WHERE h.name = ? AND s.state IN ('creating','running','stopping') ORDER BY s.created_at`,
      )
      .all(name) as { id: string; name: string | null }[];
  }
}
