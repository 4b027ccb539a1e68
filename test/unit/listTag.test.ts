// What a node's list tag is made of, and the copy of each node's list
// kept by its tag: the database's write version moves with every write
// (this connection's and another's) and with nothing else; a kept list is
// used only for its own node, path and schema, is frozen, and is dropped
// with a tag it cannot send back or a node gone from the fleet.
import { describe, expect, it } from 'vitest';
import Database from 'better-sqlite3';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { repoRoot } from '../../src/native/addon.js';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { z } from 'zod';
import { writeVersion } from '../../src/store/writeVersion.js';
import { LastAnswers } from '../../src/fleet/lastAnswers.js';
import { openDatabase } from '../../src/store/db.js';
import { AuditLog } from '../../src/access/audit.js';

describe('the database write version', () => {
  it('moves with every write of this connection or another, and not with reads', () => {
    const dir = mkdtempSync(join(tmpdir(), 'enclave-wv-'));
    try {
      const path = join(dir, 'db');
      const db = new Database(path);
      db.pragma('journal_mode = WAL');
      db.exec('CREATE TABLE t (k TEXT PRIMARY KEY, v INTEGER)');
      const read = writeVersion(db);
      const version = () => JSON.stringify(read());
      const seen = new Set<string>();
      const step = (what: string, f: () => void, moves: boolean) => {
        const before = version();
        f();
        expect(version() !== before, what).toBe(moves);
        seen.add(version());
      };
      step('insert', () => db.prepare('INSERT INTO t VALUES (?, ?)').run('a', 1), true);
      step('a read', () => db.prepare('SELECT * FROM t').all(), false);
      step('an update to the same value', () => db.prepare('UPDATE t SET v = 1 WHERE k = ?').run('a'), true);
      step('an update of no row', () => db.prepare('UPDATE t SET v = 2 WHERE k = ?').run('none'), false);
      step('a delete', () => db.prepare('DELETE FROM t WHERE k = ?').run('a'), true);
      step('a rolled-back insert', () => {
        try {
          db.transaction(() => {
            db.prepare('INSERT INTO t VALUES (?, ?)').run('b', 1);
            throw new Error('undo');
          })();
        } catch {
          /* rolled back */
        }
      }, true);
      const other = new Database(path);
      step("another connection's commit", () => other.prepare('INSERT INTO t VALUES (?, ?)').run('c', 3), true);
      step("another connection's read", () => other.prepare('SELECT * FROM t').all(), false);
      expect(seen.size).toBe(5);
      other.close();
      db.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

/** `f` on a daemon's database (migrated, as openDatabase makes it) in a temp state dir, removed after. */
function withStateDb(f: (db: Database.Database) => void): void {
  const dir = mkdtempSync(join(tmpdir(), 'enclave-wv-'));
  const db = openDatabase(dir);
  try {
    f(db);
  } finally {
    db.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

describe('the audit trail', () => {
  it('counts every row it writes, so that a version without them stands still while only it writes', () => {
    withStateDb((db) => {
      // Kept small, so that its pruning (every 1000 rows of a uid) runs too.
      const audit = new AuditLog(db, 5);
      const read = writeVersion(db);
      const unaudited = () => read().changes - audit.changes;
      const start = unaudited();
      for (let i = 0; i < 2100; i++) audit.record({ caller_uid: i % 2, caller_gid: 0, caller_pid: 1, via: 'socket', action: 'session.create', session_id: null, object_owner: null, decision: 'allow', rule: 'root', detail: null });
      audit.setSession(audit.lastId, 's-0123456789');
      const rows = Number(db.prepare('SELECT COUNT(*) FROM events').pluck().get());
      expect(rows).toBeLessThan(2100 - 1000); // pruned
      // Each insert, each pruned row and the update, and nothing else.
      expect(audit.changes).toBe(2100 + (2100 - rows) + 1);
      expect(unaudited()).toBe(start);
      db.exec('CREATE TABLE t (x)');
      db.prepare('INSERT INTO t VALUES (1)').run();
      expect(unaudited()).toBe(start + 1);
    });
  });
});

describe('what the list tag leaves out', () => {
  it('is the audit trail alone, which no list reads and nothing writes beside it: no trigger, no foreign key, no view on it', () => {
    withStateDb((db) => {
      const schema = db.prepare("SELECT type, name, tbl_name, sql FROM sqlite_master WHERE sql IS NOT NULL").all() as { type: string; name: string; tbl_name: string; sql: string }[];
      expect(schema.filter((o) => o.type === 'trigger')).toEqual([]);
      expect(schema.filter((o) => o.type === 'view')).toEqual([]);
      expect(db.prepare("SELECT * FROM pragma_foreign_key_list('events')").all()).toEqual([]);
      // No other table refers to the trail.
      const refs = schema.filter((o) => o.type === 'table' && o.name !== 'events' && /REFERENCES\s+events\b/i.test(o.sql));
      expect(refs).toEqual([]);
    });
    // The session store (what the lists read) names no audit table.
    const store = ['src/store/sessionStore.ts', 'src/store/sessionRows.ts', 'src/sessions/view.ts'].map((f) => readFileSync(join(repoRoot, f), 'utf8')).join('\n');
    expect(store).not.toMatch(/\bFROM\s+events\b|\bJOIN\s+events\b/i);
  });
});

describe("each node's last list", () => {
  const schema = z.object({ sessions: z.array(z.object({ id: z.string(), network: z.object({ address: z.string().nullable() }) })) });
  const other = z.object({ sessions: z.array(z.object({ id: z.string() })) });
  const list = () => schema.parse({ sessions: [{ id: 's-1', network: { address: '10.0.0.2' } }] });

  it('is kept by its tag for its node, path and schema alone, and frozen', () => {
    const a = new LastAnswers();
    a.sent('node-b', '/v1/sessions', schema, '"x.list.3-1-none.abc"', list());
    const kept = a.kept('node-b', '/v1/sessions', schema);
    expect(kept?.etag).toBe('"x.list.3-1-none.abc"');
    expect(a.kept('node-c', '/v1/sessions', schema)).toBeUndefined();
    expect(a.kept('node-b', '/v1/sessions?all=1', schema)).toBeUndefined();
    expect(a.kept('node-b', '/v1/sessions', other)).toBeUndefined();
    // A list built from it that changed it would change every list after it.
    expect(() => {
      (kept!.value.sessions[0]!.network as { address: string | null }).address = null;
    }).toThrow(TypeError);
    expect(a.unchanged(kept!)).toBe(kept!.value);
    expect(a.counts).toEqual({ sent: 1, unchanged: 1 });
  });

  it('is dropped when the node sends no tag or one it could not send back, and when the node leaves the fleet', () => {
    const a = new LastAnswers();
    for (const bad of [undefined, 'x', '"a b"', '"a"\r\nx: y', `"${'a'.repeat(121)}"`]) {
      a.sent('node-b', '/v1/sessions', schema, '"good"', list());
      a.sent('node-b', '/v1/sessions', schema, bad, list());
      expect(a.kept('node-b', '/v1/sessions', schema), String(bad)).toBeUndefined();
    }
    a.sent('node-b', '/v1/sessions', schema, '"b"', list());
    a.sent('node-c', '/v1/sessions', schema, '"c"', list());
    a.keep(new Set(['node-a', 'node-c']));
    expect(a.kept('node-b', '/v1/sessions', schema)).toBeUndefined();
    expect(a.kept('node-c', '/v1/sessions', schema)?.etag).toBe('"c"');
  });
});
