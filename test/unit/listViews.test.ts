// A list's rows and views are kept between lists (src/store/checkedRows.ts,
// src/sessions/view.ts ListViews, src/daemon/listJson.ts): a row or view
// kept is the one that would be made, and one whose inputs changed is made
// again. Each input changed here on its own must show in the next list.
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { CheckedRows } from '../../src/store/checkedRows.js';
import { ListViews, toApi, type ConsoleInfo, type ViewDeps } from '../../src/sessions/view.js';
import { sessionDb } from './fixtures/sessionDb.js';

describe('checked rows', () => {
  const schema = z.array(z.object({ id: z.string(), n: z.number(), j: z.string().nullable() }));
  type Row = z.infer<typeof schema>[number];
  /** The schema, counting the rows it is asked to check. */
  const counting = () => {
    const seen: Row[] = [];
    const s = z.array(z.unknown()).transform((rows) => {
      const checked = schema.parse(rows);
      seen.push(...checked);
      return checked;
    });
    return { rows: new CheckedRows<Row>(s, ['id', 'n', 'j']), seen };
  };

  it('are the same frozen objects while every column is the same, and checked again (only they) once one changed', () => {
    const { rows, seen } = counting();
    const first = rows.check([['a', 1, null], ['b', 2, '{"x":1}']]);
    expect(first).toEqual([{ id: 'a', n: 1, j: null }, { id: 'b', n: 2, j: '{"x":1}' }]);
    expect(Object.isFrozen(first[0])).toBe(true);
    expect(seen).toHaveLength(2);
    // b's JSON text changed, a did not; c is new: a is the object it was, b and c are checked (and only they).
    const second = rows.check([['a', 1, null], ['b', 2, '{"x":2}'], ['c', 3, 'null']]);
    expect(second[0]).toBe(first[0]);
    expect(second.slice(1)).toEqual([{ id: 'b', n: 2, j: '{"x":2}' }, { id: 'c', n: 3, j: 'null' }]);
    expect(seen.map((r) => r.id)).toEqual(['a', 'b', 'b', 'c']);
    // A null and the text "null" differ; so do a number and its text.
    const third = rows.check([['a', 1, 'null'], ['c', 3, null]]);
    expect(third.map((r) => r.j)).toEqual(['null', null]);
    expect(() => rows.check([['a', '1', 'null']])).toThrow();
  });

  it('are checked as the arrays they were read as when no column names are given, their id first', () => {
    const tuples = z.array(z.tuple([z.string(), z.number()])).transform((rs) => rs.map(([id, n]) => ({ id, n })));
    const rows = new CheckedRows(tuples);
    const first = rows.check([['a', 1], ['b', 2]]);
    expect(first).toEqual([{ id: 'a', n: 1 }, { id: 'b', n: 2 }]);
    const second = rows.check([['a', 1], ['b', 3]]);
    expect(second[0]).toBe(first[0]);
    expect(second[1]).toEqual({ id: 'b', n: 3 });
    expect(() => rows.check([['a', 'x']])).toThrow();
  });

  it('refuse a row that does not check, and keep only the last listing', () => {
    const { rows, seen } = counting();
    expect(() => rows.check([['a', 'one', null]])).toThrow();
    rows.check([['a', 1, null]]);
    rows.check([['b', 1, null]]);
    seen.length = 0;
    rows.check([['a', 1, null]]);
    expect(seen).toHaveLength(1);
    expect(() => new CheckedRows(schema, ['n', 'j'])).toThrow(/id column/);
  });
});

describe("a session list's views", () => {
  const t = sessionDb('views');
  let named = 0;
  const create = () => t.create({ name: `n${++named}` });
  const deps: ViewDeps = { ids: { base: 100000, size: 65536, slots: 100 }, gateway: 0x0a000001 };
  let viewers = 0;
  const consoles: ConsoleInfo = () => ({ running: true, viewers });

  it('are kept while nothing they show changed, and each one made again, as toApi makes it, when any input changed', () => {
    const a = create();
    const b = create();
    t.store.markRunning(a.id, 4242, '123');
    t.store.markRunning(b.id, 4343, '124');
    const views = new ListViews();
    /** The list as the views kept give it, and as made afresh from the same inputs. */
    const list = (d: ViewDeps = deps, node?: string) => {
      const { rows, details } = t.store.listing(false);
      const kept = views.list(rows, details, d, consoles, node);
      const made = rows.map((r) => (node === undefined ? toApi(r, details(r.id), d, consoles) : { ...toApi(r, details(r.id), d, consoles), node }));
      expect(kept).toEqual(made);
      return kept;
    };
    const first = list();
    expect(Object.isFrozen(first[0]!.network)).toBe(true);
    expect(list()).toEqual(first);
    expect(list()[1]).toBe(first[1]);
    const changes: Array<[string, () => void, ViewDeps?, string?]> = [
      ['a column of its row', () => t.store.settleStopped(a.id, { linkPending: false })],
      ['a published port', () => t.store.addPort(b.id, { host_ip: '127.0.0.1', host_port: 8080, session_port: 80 })],
      ["its console's viewers", () => (viewers = 2)],
      ['the gateway', () => undefined, { ...deps, gateway: 0x0a000101 }],
      ['the node', () => undefined, deps, 'node-b'],
    ];
    let before = list();
    for (const [what, change, d, node] of changes) {
      change();
      const after = list(d, node);
      expect(after.some((v, i) => v !== before[i]), what).toBe(true);
      before = after;
    }
  });
});
