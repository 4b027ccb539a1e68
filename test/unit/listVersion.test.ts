// The version of what a session list shows (migrations/021, src/store/
// listVersion.ts), which a node's list tag is made of: it moves with every
// write to a table the list reads, by any connection, and with no other
// write; and every table the list's statements read (found from their
// compiled programs, not from a list written by hand) has the triggers
// that move it, so a list never keeps a tag its rows outgrew.
import { describe, expect, it } from 'vitest';
import Database from 'better-sqlite3';
import { join } from 'node:path';
import { SessionStore } from '../../src/store/sessionStore.js';
import { LISTED_TABLES } from '../../src/store/listVersion.js';
import { AuditLog } from '../../src/access/audit.js';
import { sessionDb } from './fixtures/sessionDb.js';

describe('the list version', () => {
  const t = sessionDb('lv');
  const { create } = t;

  it('moves with each write a list shows, by this connection or another, and with no write it does not read', () => {
    const step = (what: string, f: () => void, moves: boolean) => {
      const before = t.store.listVersion();
      // Read whole, by a store that kept nothing (t.store's list is kept by the version: src/store/listedRows.ts).
      const whole = () => JSON.stringify(new SessionStore(t.db).list(true));
      const list = whole();
      f();
      expect(t.store.listVersion() !== before, what).toBe(moves);
      // Equal versions, equal lists.
      if (!moves) expect(whole(), what).toBe(list);
    };
    const s = create().id;
    step('a session running', () => t.store.markRunning(s, 4242, '123'), true);
    step('a list', () => t.store.list(false), false);
    step('a lease given', () => t.db.prepare('INSERT INTO ip_leases (session_id, address) VALUES (?, ?)').run(s, 167772170), true);
    const audit = new AuditLog(t.db, 5);
    step('the audit trail, 1200 calls (pruned too)', () => {
      for (let i = 0; i < 1200; i++) audit.record({ caller_uid: 0, caller_gid: 0, caller_pid: 1, via: 'socket', action: 'session.show', session_id: s, object_owner: 0, decision: 'allow', rule: 'root', detail: null });
      audit.setSession(audit.lastId, s);
    }, false);
    step('an update of no row', () => t.store.markRunning('s-none', 1, '1'), false);
    step('a rolled-back failure', () => {
      try {
        t.db.transaction(() => {
          t.store.settle(s, 'failed', 'undone');
          throw new Error('undo');
        })();
      } catch {
        /* rolled back: the version with it */
      }
    }, false);
    const other = new Database(join(t.dir, 'enclave.db'), { fileMustExist: true });
    try {
      step("another connection's write", () => other.prepare("UPDATE sessions SET state = 'stopped' WHERE id = ?").run(s), true);
      step("another connection's read", () => other.prepare('SELECT * FROM sessions').all(), false);
    } finally {
      other.close();
    }
    // Each table the list reads: an insert, an update and a delete each move it; a column of
    // volumes that no list reads (its size) does not.
    const run = (sql: string, ...args: unknown[]) => () => void t.db.prepare(sql).run(...args);
    step('a port published', run("INSERT INTO published_ports (host_ip, host_port, session_id, session_port) VALUES ('0.0.0.0', 8080, ?, 80)", s), true);
    step('a port changed', run('UPDATE published_ports SET session_port = 81'), true);
    step('a port gone', run('DELETE FROM published_ports'), true);
    step('a secret held', run("INSERT INTO session_secrets (session_id, name, kind, version, owner_uid) VALUES (?, 'tok', 'env', 1, 0)", s), true);
    step('a held secret changed', run("UPDATE session_secrets SET kind = 'provider'"), true);
    step('a held secret gone', run('DELETE FROM session_secrets'), true);
    step('a volume made', run("INSERT INTO volumes (id, name, state, size_mb, owner_uid, created_at) VALUES ('v1', 'data', 'ready', 10, 0, 'now')"), true);
    step('a volume mounted', run("INSERT INTO session_volumes (session_id, volume, target, readonly) VALUES (?, 'v1', '/data', 0)", s), true);
    step('a mount changed', run('UPDATE session_volumes SET readonly = 1'), true);
    step("a mounted volume's size (no list shows it)", run('UPDATE volumes SET size_mb = 20'), false);
    step('a mounted volume renamed', run("UPDATE volumes SET name = 'data2'"), true);
    step('a mount gone', run('DELETE FROM session_volumes'), true);
    step('a volume gone', run('DELETE FROM volumes'), true);
    step('a lease changed', run('UPDATE ip_leases SET address = address + 1'), true);
    step('a lease gone', run('DELETE FROM ip_leases'), true);
    step('a session destroyed', () => t.store.settle(s, 'destroyed'), true);
  });

  it("has triggers on every table the list's statements read, and on no other", () => {
    // The statements list(), listTable() and detailsOfAll() run, as the t.store compiles them.
    const prepared: string[] = [];
    const prepare = t.db.prepare.bind(t.db);
    let capturing = true;
    t.db.prepare = ((sql: string) => (capturing && prepared.push(sql), prepare(sql))) as typeof t.db.prepare;
    /** A write between the lists, its own statements not among theirs. */
    const write = <T>(f: () => T): T => {
      capturing = false;
      try {
        return f();
      } finally {
        capturing = true;
      }
    };
    const fresh = new SessionStore(t.db);
    const lists = () => {
      for (const all of [false, true]) {
        fresh.list(all);
        fresh.listTable(all);
      }
    };
    // Read whole, then (a session new to them) whole again, then brought up to date from its change
    // alone (src/store/listedRows.ts): each of their statements compiled.
    lists();
    const s = write(() => create().id);
    lists();
    write(() => t.store.markRunning(s, 4242, '123'));
    lists();
    fresh.detailsOfAll();
    t.db.prepare = prepare;
    const reading = prepared.filter((sql) => /^\s*(SELECT|WITH)\b/i.test(sql));
    expect(reading.length).toBeGreaterThanOrEqual(8);
    // The patch's statements were run too (a session's row by id, and its details), not only the whole reads.
    expect(reading.filter((sql) => /\bid = \?$/.test(sql)).length, 'the rows by id').toBe(4);
    expect(reading.filter((sql) => /WHERE (h\.|v\.)?session_id = \?/.test(sql)).length, 'the details of one').toBeGreaterThanOrEqual(4);
    // Each table or index by its root page (an index's table is its tbl_name): what the compiled programs open,
    // and each column they read, by cursor (a table's by its position, an index's by the index's).
    const objects = new Map((t.db.prepare('SELECT rootpage, name, type, tbl_name FROM sqlite_master WHERE rootpage > 0').all() as { rootpage: number; name: string; type: string; tbl_name: string }[]).map((r) => [r.rootpage, r]));
    const tableOf = (root: number) => objects.get(root)?.tbl_name;
    const columnOf = (root: number, i: number): string | null => {
      const o = objects.get(root)!;
      const cols = o.type === 'table' ? (t.db.prepare('SELECT name FROM pragma_table_info(?) ORDER BY cid').pluck().all(o.name) as string[]) : (t.db.prepare('SELECT name FROM pragma_index_xinfo(?) ORDER BY seqno').pluck().all(o.name) as (string | null)[]);
      return cols[i] ?? null;
    };
    const read = new Set<string>();
    const columns = new Map<string, Set<string>>();
    for (const sql of reading) {
      const cursors = new Map<number, number>();
      const params = Array.from(sql.matchAll(/\?/g), () => null);
      for (const op of t.db.prepare(`EXPLAIN ${sql}`).all(...params) as { opcode: string; p1: number; p2: number }[]) {
        expect(['OpenWrite', 'VOpen', 'ReopenIdx'], sql).not.toContain(op.opcode);
        if (op.opcode === 'OpenRead') {
          const table = tableOf(op.p2);
          expect(table, `a root page ${op.p2} of no table, in ${sql}`).toBeDefined();
          read.add(table!);
          cursors.set(op.p1, op.p2);
        } else if (op.opcode === 'Column' && cursors.has(op.p1)) {
          const root = cursors.get(op.p1)!;
          const name = columnOf(root, op.p2);
          if (name !== null) columns.set(tableOf(root)!, (columns.get(tableOf(root)!) ?? new Set()).add(name));
        }
      }
    }
    // (The t.store's constructor compiles the version's own read, too.)
    read.delete('list_version');
    read.delete('list_changes');
    expect([...read].sort()).toEqual([...LISTED_TABLES].sort());
    // Three triggers on each (insert, update, delete), each moving the version; none elsewhere.
    const triggers = t.db.prepare("SELECT name, tbl_name, sql FROM sqlite_master WHERE type = 'trigger'").all() as { name: string; tbl_name: string; sql: string }[];
    for (const table of LISTED_TABLES) {
      const on = triggers.filter((x) => x.tbl_name === table);
      expect(on.map((x) => /AFTER\s+(INSERT|UPDATE|DELETE)/i.exec(x.sql)?.[1]?.toUpperCase()).sort(), table).toEqual(['DELETE', 'INSERT', 'UPDATE']);
      // Each moves the version and records the session its row is of (a volume's: any session, '*'):
      // an insert its new row's, a delete its old row's, an update both (migrations/023).
      const recorded = table === 'volumes' ? "'*'" : table === 'sessions' ? 'id' : 'session_id';
      const record = (row: 'NEW' | 'OLD') => `INSERT INTO list_changes (session_id, n) SELECT ${recorded === "'*'" ? recorded : `${row}.${recorded}`}, n FROM list_version WHERE id = 1 ON CONFLICT (session_id) DO UPDATE SET n = excluded.n; `;
      for (const x of on) {
        const event = /AFTER\s+(INSERT|UPDATE|DELETE)/i.exec(x.sql)![1]!.toUpperCase();
        const records = recorded === "'*'" ? [record('NEW')] : event === 'INSERT' ? [record('NEW')] : event === 'DELETE' ? [record('OLD')] : [record('OLD'), record('NEW')];
        expect(x.sql, x.name).toMatch(new RegExp(`BEGIN UPDATE list_version SET n = n \\+ 1; ${records.map((r) => r.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('')}END$`));
      }
      // Fires always: no WHEN; an update trigger that names its columns names every column a list reads of the table.
      for (const x of on) expect(x.sql, x.name).not.toMatch(/\bWHEN\b/i);
      const of = /AFTER UPDATE OF ([\w, ]+) ON/i.exec(on.find((x) => /AFTER\s+UPDATE/i.test(x.sql))!.sql)?.[1]?.split(',').map((c) => c.trim());
      if (of) expect(of, table).toEqual(expect.arrayContaining([...(columns.get(table) ?? [])]));
    }
    // The volumes trigger does name its columns, and the list reads some of volumes' columns through it.
    expect([...(columns.get('volumes') ?? [])].sort()).toEqual(['name', 'owner_uid']);
    expect(triggers.filter((x) => !(LISTED_TABLES as readonly string[]).includes(x.tbl_name))).toEqual([]);
  });
});
