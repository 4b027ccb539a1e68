// The daemon's secret store. A secret belongs to the uid that set it: its
// value is a file under <state_dir>/secrets/UID/NAME, root-owned and 0600 from
// the moment it exists (created 0600 with O_EXCL, then renamed into place);
// its index (kind, version, shared, when) is in SQLite. Root may share one
// of its own: others may then have it delivered into their sessions, and
// never read, list, replace or remove it. Not encrypted at rest: the key
// would have to sit beside the values, readable by the same root, so it would
// protect nothing the file modes and the state dir's checks do not; use disk
// encryption for that. A store someone else owns or can read is refused.
import { closeSync, existsSync, fsyncSync, lstatSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import type Database from 'better-sqlite3';
import { StateError } from '../store/db.js';
import { ACTIVE_SQL, LIVE_SQL } from '../vocab/states.js';
import { kindOf, type SecretKind } from '../vocab/names.js';

export interface SecretInfo {
  owner_uid: number;
  name: string;
  kind: SecretKind;
  version: number;
  shared: boolean;
  created_at: string;
  updated_at: string;
}

/** A session's declared secret, whose it is, and the version of its value that it holds. */
export interface HeldSecret {
  session_id: string;
  owner_uid: number;
  name: string;
  kind: SecretKind;
  version: number;
  /** Users inside the session its file is readable by, as JSON (null: root only). */
  users: string | null;
}

export interface SessionRef {
  id: string;
  name: string | null;
  owner_uid: number | null;
}

function checkPrivate(path: string, kind: 'directory' | 'file'): void {
  const st = lstatSync(path);
  if (kind === 'directory' ? !st.isDirectory() : !st.isFile()) throw new StateError(`${path}: expected a ${kind} in the secret store, found something else`);
  if (st.uid !== 0) throw new StateError(`${path}: owned by uid ${st.uid}, not root; the secret store must be root's alone`);
  if (st.mode & 0o077) throw new StateError(`${path}: mode ${(st.mode & 0o7777).toString(8)} lets group or others in; the secret store must be 0700 (directories) and 0600 (files)`);
}

const INFO = 'SELECT owner_uid, name, kind, version, shared = 1 AS shared, created_at, updated_at FROM secrets';
const toInfo = (r: unknown): SecretInfo => ({ ...(r as SecretInfo), shared: (r as { shared: number }).shared === 1 });
const LIVE = LIVE_SQL;
/** A value of an earlier daemon on its way into its owner's directory. */
const LEGACY = '.legacy.';

export class SecretStore {
  readonly dir: string;

  private constructor(
    private readonly db: Database.Database,
    stateDir: string,
  ) {
    this.dir = join(stateDir, 'secrets');
  }

  /**
   * Open (creating if missing) and check every file; a leftover temporary is
   * removed, and a value of an earlier daemon (secrets/NAME) moves to its
   * owner's directory, as the database says (migration 011), through a
   * temporary name: a secret called "0" is a file where root's directory goes.
   */
  static open(db: Database.Database, stateDir: string): SecretStore {
    const s = new SecretStore(db, stateDir);
    if (!existsSync(s.dir)) mkdirSync(s.dir, { mode: 0o700 });
    checkPrivate(s.dir, 'directory');
    const legacy: string[] = [];
    for (const e of readdirSync(s.dir)) {
      const path = join(s.dir, e);
      if (/^\d+$/.test(e) && lstatSync(path).isDirectory()) {
        checkPrivate(path, 'directory');
        for (const f of readdirSync(path)) {
          checkPrivate(join(path, f), 'file');
          if (f.startsWith('.')) rmSync(join(path, f), { force: true });
        }
        continue;
      }
      checkPrivate(path, 'file');
      const name = e.startsWith(LEGACY) ? e.slice(LEGACY.length) : e;
      if (e.startsWith('.') && !e.startsWith(LEGACY)) rmSync(path, { force: true });
      else if (!kindOf(name)) rmSync(path, { force: true });
      else {
        if (e === name) renameSync(path, join(s.dir, `${LEGACY}${name}`));
        legacy.push(name);
      }
    }
    for (const name of legacy) {
      const owner = (db.prepare('SELECT owner_uid FROM secrets WHERE name = ? ORDER BY owner_uid LIMIT 1').get(name) as { owner_uid: number } | undefined)?.owner_uid ?? 0;
      renameSync(join(s.dir, `${LEGACY}${name}`), join(s.ownerDir(owner), name));
    }
    return s;
  }

  private ownerDir(owner: number): string {
    const d = join(this.dir, String(owner));
    if (!existsSync(d)) mkdirSync(d, { mode: 0o700 });
    return d;
  }

  private file(owner: number, name: string): string {
    if (!kindOf(name) || !Number.isInteger(owner) || owner < 0) throw new Error(`not a secret: ${owner}:${name}`); // validated before they get here
    return join(this.ownerDir(owner), name);
  }

  /** One owner's secrets. */
  listOf(owner: number): SecretInfo[] {
    return this.db.prepare(`${INFO} WHERE owner_uid = ? ORDER BY name`).all(owner).map(toInfo);
  }

  /** Every owner's (root, or a caller allowed to see all). */
  listAll(): SecretInfo[] {
    return this.db.prepare(`${INFO} ORDER BY owner_uid, name`).all().map(toInfo);
  }

  /** How many secrets an owner has, and their values' bytes (its budget). */
  usageOf(owner: number): { count: number; bytes: number } {
    let bytes = 0;
    const names = this.listOf(owner).map((s) => s.name);
    for (const n of names) {
      try {
        bytes += statSync(this.file(owner, n)).size;
      } catch {
        /* gone meanwhile */
      }
    }
    return { count: names.length, bytes };
  }

  /** The size of one value, 0 if there is none. */
  sizeOf(owner: number, name: string): number {
    try {
      return statSync(this.file(owner, name)).size;
    } catch {
      return 0;
    }
  }

  info(owner: number, name: string): SecretInfo | undefined {
    const r = this.db.prepare(`${INFO} WHERE owner_uid = ? AND name = ?`).get(owner, name);
    return r === undefined ? undefined : toInfo(r);
  }

  /** The value, or undefined when the owner has no such secret. */
  get(owner: number, name: string): { value: Buffer; version: number; shared: boolean } | undefined {
    const info = this.info(owner, name);
    if (!info) return undefined;
    try {
      return { value: readFileSync(this.file(owner, name)), version: info.version, shared: info.shared };
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw e;
    }
  }

  /**
   * Store a value (new, or a rotation: its version goes up); `shared` is root's to set (undefined: as it was, else
   * not shared). `movedFor`: stored by a drain's move of that session (migration 025); any other set makes it
   * the owner's own.
   */
  set(owner: number, name: string, value: Buffer, shared: boolean | undefined, movedFor?: string): SecretInfo {
    const kind = kindOf(name)!;
    const path = this.file(owner, name);
    const tmp = join(this.ownerDir(owner), `.${name}.new`);
    rmSync(tmp, { force: true });
    const fd = openSync(tmp, 'wx', 0o600);
    try {
      writeSync(fd, value);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, path);
    const dfd = openSync(this.ownerDir(owner), 'r');
    try {
      fsyncSync(dfd);
    } finally {
      closeSync(dfd);
    }
    const now = new Date().toISOString();
    this.db
      .prepare(
        `INSERT INTO secrets (owner_uid, name, kind, version, shared, created_at, updated_at, moved_for) VALUES (?, ?, ?, 1, ?, ?, ?, ?)
         ON CONFLICT (owner_uid, name) DO UPDATE SET version = version + 1, shared = coalesce(?, shared), updated_at = excluded.updated_at, moved_for = excluded.moved_for`,
      )
      .run(owner, name, kind, shared ? 1 : 0, now, now, movedFor ?? null, shared === undefined ? null : shared ? 1 : 0);
    return this.info(owner, name)!;
  }

  remove(owner: number, name: string): boolean {
    const gone = this.db.prepare('DELETE FROM secrets WHERE owner_uid = ? AND name = ?').run(owner, name).changes > 0;
    rmSync(this.file(owner, name), { force: true });
    return gone;
  }

  /** Record what a session declared and holds (whose, which version), before its files are written. */
  recordHeld(sessionId: string, held: { owner: number; name: string; version: number; users?: string[] | undefined }[]): void {
    const ins = this.db.prepare(
      `INSERT INTO session_secrets (session_id, owner_uid, name, kind, version, users) VALUES (?, ?, ?, ?, ?, ?)
       ON CONFLICT (session_id, name) DO UPDATE SET version = excluded.version`,
    );
    this.db.transaction(() => held.forEach((h) => ins.run(sessionId, h.owner, h.name, kindOf(h.name)!, h.version, h.users?.length ? JSON.stringify(h.users) : null)))();
  }

  heldBy(sessionId: string): HeldSecret[] {
    return this.db.prepare('SELECT session_id, owner_uid, name, kind, version, users FROM session_secrets WHERE session_id = ? ORDER BY rowid').all(sessionId) as HeldSecret[];
  }

  /** Sessions with processes holding an older version of the owner's `name` than the store's (a stopped one gets the new one when it starts). */
  staleHolders(owner: number, name: string): SessionRef[] {
    return this.db
      .prepare(
        `SELECT s.id, s.name, s.owner_uid FROM session_secrets h JOIN sessions s ON s.id = h.session_id JOIN secrets k ON k.owner_uid = h.owner_uid AND k.name = h.name
         WHERE h.owner_uid = ? AND h.name = ? AND h.version < k.version AND s.state IN ${ACTIVE_SQL} ORDER BY s.created_at`,
      )
      .all(owner, name) as SessionRef[];
  }

  /** The secrets drains' moves stored here whose moves this node has not yet seen over (migration 025). */
  madeForMoves(): Array<{ owner_uid: number; name: string; moved_for: string; updated_at: string }> {
    return this.db.prepare('SELECT owner_uid, name, moved_for, updated_at FROM secrets WHERE moved_for IS NOT NULL ORDER BY moved_for, owner_uid, name').all() as Array<{ owner_uid: number; name: string; moved_for: string; updated_at: string }>;
  }

  /** The session whose move stored the owner's `name` here, if one did and the move is not over here. */
  markedFor(owner: number, name: string): string | undefined {
    return (this.db.prepare('SELECT moved_for FROM secrets WHERE owner_uid = ? AND name = ?').get(owner, name) as { moved_for: string | null } | undefined)?.moved_for ?? undefined;
  }

  /** A move to here is over (committed, or undone): the secrets it stored are their owner's like any other. */
  clearMovedFor(sessionId: string): void {
    this.db.prepare('UPDATE secrets SET moved_for = NULL WHERE moved_for = ?').run(sessionId);
  }

  /**
   * The secrets a move of session `sessionId` stored here, removed (its move
   * undone, or its create here failed): each unless a live session declares
   * it, which makes it its owner's (the moving session's own copy too: one
   * running after all keeps what it holds). The names removed.
   */
  dropMovedFor(sessionId: string): string[] {
    const rows = this.db.prepare('SELECT owner_uid, name FROM secrets WHERE moved_for = ?').all(sessionId) as Array<{ owner_uid: number; name: string }>;
    const removed: string[] = [];
    for (const r of rows) {
      if (this.liveHolders(r.owner_uid, r.name).length > 0) {
        this.db.prepare('UPDATE secrets SET moved_for = NULL WHERE owner_uid = ? AND name = ?').run(r.owner_uid, r.name);
        continue;
      }
      this.remove(r.owner_uid, r.name);
      removed.push(r.name);
    }
    return removed;
  }

  /** Live sessions (stopped ones too) that declared the owner's `name`. */
  liveHolders(owner: number, name: string): SessionRef[] {
    return this.db
      .prepare(
        `SELECT s.id, s.name, s.owner_uid FROM session_secrets h JOIN sessions s ON s.id = h.session_id
         WHERE h.owner_uid = ? AND h.name = ? AND s.state IN ${LIVE} ORDER BY s.created_at`,
      )
      .all(owner, name) as SessionRef[];
  }
}
