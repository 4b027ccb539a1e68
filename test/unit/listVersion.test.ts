// The version of what a session list shows (migrations/021, src/store/
// listVersion.ts), which a node's list tag is made of: it moves with every
// write to a table the list reads, by any connection, and with no other
// write; and every table the list's statements read (found from their
// compiled programs, not from a list written by hand) has the triggers
// that move it, so a list never keeps a tag its rows outgrew.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import Database from 'better-sqlite3';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openDatabase } from '../../src/store/db.js';
import { SessionStore } from '../../src/store/sessionStore.js';
import { LISTED_TABLES } from '../../src/store/listVersion.js';
import { AuditLog } from '../../src/access/audit.js';

const limits = { memory_mb: 64, pids: 64, cpu_percent: 100, tmp_mb: 8, home_mb: 8 };

describe('the list version', () => {
  let dir: string;
  let db: Database.Database;
  let store: SessionStore;
  let n = 0;
  const create = () =>
    store.insertCreating({ id: `s-${(++n).toString(16).padStart(10, '0')}`, name: null, hostname: 'h', limits, slots: 100, objects: [], addresses: undefined, ownerUid: 0, profile: 'strict' });

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'enclave-lv-'));
    db = openDatabase(dir);
    store = new SessionStore(db);
  });
  afterEach(() => {
    db.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('moves with each write a list shows, by this connection or another, and with no write it does not read', () => {
    const step = (what: string, f: () => void, moves: boolean) => {
      const before = store.listVersion();
      const list = JSON.stringify(store.list(true));
      f();
      expect(store.listVersion() !== before, what).toBe(moves);
      // Equal versions, equal lists.
      if (!moves) expect(JSON.stringify(store.list(true)), what).toBe(list);
    };
    const s = create().id;
    step('a session running', () => store.markRunning(s, 4242, '123'), true);
    step('a list', () => store.list(false), false);
    step('a lease given', () => db.prepare('INSERT INTO ip_leases (session_id, address) VALUES (?, ?)').run(s, 167772170), true);
    const audit = new AuditLog(db, 5);
    step('the audit trail, 1200 calls (pruned too)', () => {
      for (let i = 0; i < 1200; i++) audit.record({ caller_uid: 0, caller_gid: 0, caller_pid: 1, via: 'socket', action: 'session.show', session_id: s, object_owner: 0, decision: 'allow', rule: 'root', detail: null });
      audit.setSession(audit.lastId, s);
    }, false);
    step('an update of no row', () => store.markRunning('s-none', 1, '1'), false);
    step('a rolled-back failure', () => {
      try {
        db.transaction(() => {
          store.settle(s, 'failed', 'undone');
          throw new Error('undo');
        })();
      } catch {
        /* rolled back: the version with it */
      }
    }, false);
    const other = new Database(join(dir, 'enclave.db'), { fileMustExist: true });
    try {
      step("another connection's write", () => other.prepare("UPDATE sessions SET state = 'stopped' WHERE id = ?").run(s), true);
      step("another connection's read", () => other.prepare('SELECT * FROM sessions').all(), false);
    } finally {
      other.close();
    }
    step('a session destroyed', () => store.settle(s, 'destroyed'), true);
  });

  it("has triggers on every table the list's statements read, and on no other", () => {
    // The statements list(), listTable() and detailsOfAll() run, as the store compiles them.
    const prepared: string[] = [];
    const prepare = db.prepare.bind(db);
    db.prepare = ((sql: string) => (prepared.push(sql), prepare(sql))) as typeof db.prepare;
    const fresh = new SessionStore(db);
    for (const all of [false, true]) {
      fresh.list(all);
      fresh.listTable(all);
    }
    fresh.detailsOfAll();
    db.prepare = prepare;
    const reading = prepared.filter((sql) => /^\s*SELECT/i.test(sql));
    expect(reading.length).toBeGreaterThanOrEqual(8);
    // Each table (or index of a table) the compiled programs open for reading, by its root page.
    const byRoot = new Map((db.prepare('SELECT rootpage, tbl_name FROM sqlite_master WHERE rootpage > 0').all() as { rootpage: number; tbl_name: string }[]).map((r) => [r.rootpage, r.tbl_name]));
    const read = new Set<string>();
    for (const sql of reading) {
      for (const op of db.prepare(`EXPLAIN ${sql}`).all() as { opcode: string; p2: number }[]) {
        if (op.opcode !== 'OpenRead') continue;
        const t = byRoot.get(op.p2);
        expect(t, `a root page ${op.p2} of no table, in ${sql}`).toBeDefined();
        read.add(t!);
      }
    }
    // (The store's constructor compiles the version's own read, too.)
    read.delete('list_version');
    expect([...read].sort()).toEqual([...LISTED_TABLES].sort());
    // Three triggers on each (insert, update, delete), each moving the version; none elsewhere.
    const triggers = db.prepare("SELECT name, tbl_name, sql FROM sqlite_master WHERE type = 'trigger'").all() as { name: string; tbl_name: string; sql: string }[];
    for (const t of LISTED_TABLES) {
      const on = triggers.filter((x) => x.tbl_name === t);
      expect(on.map((x) => /AFTER\s+(INSERT|UPDATE|DELETE)/i.exec(x.sql)?.[1]?.toUpperCase()).sort(), t).toEqual(['DELETE', 'INSERT', 'UPDATE']);
      for (const x of on) expect(x.sql, x.name).toMatch(/UPDATE list_version SET n = n \+ 1/);
    }
    expect(triggers.filter((x) => !(LISTED_TABLES as readonly string[]).includes(x.tbl_name))).toEqual([]);
  });
});
