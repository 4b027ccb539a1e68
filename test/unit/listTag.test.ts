// The copy of each node's list kept by its tag (what the tag is made of:
// test/unit/listVersion.test.ts): a kept list is
// used only for its own node, path and schema, is frozen, and is dropped
// with a tag it cannot send back or a node gone from the fleet.
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { LastAnswers } from '../../src/fleet/lastAnswers.js';
import { MadeLists } from '../../src/daemon/madeLists.js';
import { Serialized, Unchanged } from '../../src/daemon/dispatch.js';
import { rowsDelta } from '../../src/api/fleetSchemas.js';
import { listJson, listParts } from '../../src/daemon/listJson.js';
import type { IncomingMessage } from 'node:http';

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
    expect(a.counts).toEqual({ sent: 1, unchanged: 1, delta: 0 });
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

describe('a list sent as the rows that changed (226)', () => {
  const schema = z.object({ sessions: z.array(z.object({ id: z.string(), state: z.enum(['running', 'stopped']) })) });
  type Row = z.infer<typeof schema>['sessions'][number];
  /** A node's answer to an ask holding `held` (with A-IM `im`, or none when null), as its bytes and headers. */
  const ask = (m: MadeLists, rows: Row[], tag: string, held?: string, im: string | readonly string[] | null = 'rows') => {
    const headers: Record<string, string | string[]> = {};
    if (held !== undefined) headers['if-none-match'] = held;
    if (im !== null) headers['a-im'] = [...[im].flat()];
    let made = 0;
    const out = m.answer({ headers } as unknown as IncomingMessage, 'list', tag, () => (made++, rows));
    return { out, made };
  };
  const r1: Row[] = [{ id: 's-1', state: 'running' }, { id: 's-2', state: 'running' }, { id: 's-3', state: 'running' }];
  const r2: Row[] = [{ id: 's-1', state: 'running' }, { id: 's-2', state: 'stopped' }, { id: 's-4', state: 'running' }];

  it('is answered by the asked node with every id in order and the rows that differ from the ones the asking node holds, made once per tag', () => {
    const m = new MadeLists();
    const first = ask(m, r1, '"t1"');
    expect(first.out).toBeInstanceOf(Serialized);
    expect(JSON.parse((first.out as Serialized).json.toString())).toEqual({ sessions: r1 });
    expect((first.out as Serialized).headers).toEqual({ etag: '"t1"' });
    // Held and current: 304, nothing made.
    const same = ask(m, r1, '"t1"', '"t1"');
    expect(same.out).toBeInstanceOf(Unchanged);
    expect(same.made).toBe(0);
    const delta = ask(m, r2, '"t2"', '"t1"');
    const d = delta.out as Serialized;
    expect(d.status).toBe(226);
    expect(d.headers).toEqual({ etag: '"t2"', im: 'rows', 'delta-base': '"t1"' });
    expect(JSON.parse(d.json.toString())).toEqual({ ids: ['s-1', 's-2', 's-4'], rows: [r2[1], r2[2]] });
    // A second node asking from the same tag: the same answer, not made again.
    const again = ask(m, r2, '"t2"', '"t1"');
    expect(again.made).toBe(0);
    expect((again.out as Serialized).json).toBe(d.json);
    // A node that does not ask for rows (an older version), or holds a tag not kept, gets the whole list.
    for (const [held, im] of [['"t1"', null], ['"t0"', 'rows'], ['"t1"', 'gzip'], ['"t1"', ['vcdiff', 'x;q=1']]] as const) {
      const whole = ask(m, r2, '"t2"', held, im).out as Serialized;
      expect([whole.status, JSON.parse(whole.json.toString())], `${held} ${String(im)}`).toEqual([200, { sessions: r2 }]);
    }
    expect((ask(m, r2, '"t2"', '"t1"', ['gzip', 'rows;x=1']).out as Serialized).status).toBe(226);
  });

  it('keeps the last four lists of a kind: a node holding an older one gets the whole list', () => {
    const m = new MadeLists();
    for (let i = 1; i <= 5; i++) ask(m, r1, `"t${i}"`);
    expect((ask(m, r1, '"t6"', '"t3"').out as Serialized).status).toBe(226);
    expect((ask(m, r1, '"t6"', '"t2"').out as Serialized).status).toBe(200);
  });

  it('is made against the list the asking node holds, not the one made last: a node two writes behind gets every row changed since', () => {
    const m = new MadeLists();
    const t1: Row[] = [{ id: 's-1', state: 'running' }, { id: 's-2', state: 'running' }, { id: 's-3', state: 'running' }];
    const t2: Row[] = [{ id: 's-1', state: 'running' }, { id: 's-2', state: 'stopped' }, { id: 's-3', state: 'running' }];
    const t3: Row[] = [{ id: 's-1', state: 'running' }, { id: 's-2', state: 'stopped' }, { id: 's-3', state: 'stopped' }];
    ask(m, t1, '"t1"');
    expect(JSON.parse((ask(m, t2, '"t2"', '"t1"').out as Serialized).json.toString()).rows).toEqual([t2[1]]);
    // Node C still holds t1 (it did not ask at t2): both rows, not only the one changed since t2.
    const behind = ask(m, t3, '"t3"', '"t1"').out as Serialized;
    expect(behind.headers['delta-base']).toBe('"t1"');
    expect(JSON.parse(behind.json.toString())).toEqual({ ids: ['s-1', 's-2', 's-3'], rows: [t3[1], t3[2]] });
    expect(JSON.parse((ask(m, t3, '"t3"', '"t2"').out as Serialized).json.toString()).rows).toEqual([t3[2]]);
  });

  it('is put together by each of two lists asked at once from the same held list, the newer copy kept', () => {
    const a = new LastAnswers();
    a.sent('node-b', '/v1/sessions', schema, '"t1"', schema.parse({ sessions: r1 }));
    const kept = a.kept('node-b', '/v1/sessions', schema)!;
    const delta = { ids: ['s-1', 's-2', 's-4'], rows: [r2[1], r2[2]] };
    expect(a.patched('node-b', '/v1/sessions', schema, kept, '"t2"', delta)).toEqual({ sessions: r2 });
    // The second answer to the same ask: put together from what it held, and the copy now kept (t2) stays.
    expect(a.patched('node-b', '/v1/sessions', schema, kept, '"t2"', delta)).toEqual({ sessions: r2 });
    expect(a.kept('node-b', '/v1/sessions', schema)?.etag).toBe('"t2"');
    // A bad answer to an older ask does not drop the newer copy either.
    expect(() => a.patched('node-b', '/v1/sessions', schema, kept, '"t3"', { ids: ['s-9'], rows: [] })).toThrow();
    expect(a.kept('node-b', '/v1/sessions', schema)?.etag).toBe('"t2"');
    // Dropped by a node that left (keep()) while asked: the answer still makes the list, and is kept.
    a.keep(new Set());
    expect(a.patched('node-b', '/v1/sessions', schema, kept, '"t2"', delta)).toEqual({ sessions: r2 });
    expect(a.kept('node-b', '/v1/sessions', schema)?.etag).toBe('"t2"');
  });

  it('is put together by the asking node from the rows it holds and those sent, checking only those sent', () => {
    const a = new LastAnswers();
    a.sent('node-b', '/v1/sessions', schema, '"t1"', schema.parse({ sessions: r1 }));
    const kept = a.kept('node-b', '/v1/sessions', schema)!;
    const held = kept.value.sessions[0];
    const value = a.patched('node-b', '/v1/sessions', schema, kept, '"t2"', { ids: ['s-1', 's-2', 's-4'], rows: [r2[1], r2[2]] });
    expect(value).toEqual({ sessions: r2 });
    // The held row is reused as it was (checked when sent), and the result kept frozen under the new tag.
    expect(value.sessions[0]).toBe(held);
    expect(a.kept('node-b', '/v1/sessions', schema)?.etag).toBe('"t2"');
    expect(Object.isFrozen(value.sessions[2])).toBe(true);
    expect(a.counts).toEqual({ sent: 1, unchanged: 0, delta: 1 });
  });

  it('is refused, and the copy dropped, when a row sent does not check, or an id is neither sent nor held, or is sent or listed twice', () => {
    const bad: Array<[string, { ids: string[]; rows: unknown[] }]> = [
      ['a row that does not check', { ids: ['s-1', 's-2'], rows: [{ id: 's-2', state: 'gone' }] }],
      ['an id neither sent nor held', { ids: ['s-1', 's-9'], rows: [] }],
      ['a row sent twice', { ids: ['s-1', 's-2'], rows: [r2[1], r2[1]] }],
      ['an id listed twice', { ids: ['s-1', 's-1'], rows: [] }],
      ['a row sent but not listed', { ids: ['s-1'], rows: [r2[2]] }],
    ];
    for (const [what, delta] of bad) {
      const a = new LastAnswers();
      a.sent('node-b', '/v1/sessions', schema, '"t1"', schema.parse({ sessions: r1 }));
      const kept = a.kept('node-b', '/v1/sessions', schema)!;
      expect(() => a.patched('node-b', '/v1/sessions', schema, kept, '"t2"', delta), what).toThrow();
      expect(a.kept('node-b', '/v1/sessions', schema), what).toBeUndefined();
    }
  });

  it('goes from one node to another and back as the whole list would: every change of rows in a random walk', () => {
    const m = new MadeLists();
    const a = new LastAnswers();
    let rows: Row[] = [];
    let n = 0;
    const random = (() => {
      let x = 7;
      return () => ((x = (x * 1103515245 + 12345) % 2 ** 31), x / 2 ** 31);
    })();
    for (let step = 1; step <= 200; step++) {
      // Add, remove, change or reorder rows.
      const r = random();
      if (r < 0.3 || rows.length === 0) rows = [...rows, { id: `s-${++n}`, state: 'running' }];
      else if (r < 0.5) rows = rows.filter((_, i) => i !== Math.floor(random() * rows.length));
      else if (r < 0.8) rows = rows.map((x, i) => (i === Math.floor(random() * rows.length) ? { ...x, state: x.state === 'running' ? 'stopped' : 'running' } : x));
      else rows = [...rows].reverse();
      const kept = a.kept('node-b', '/v1/sessions', schema);
      const out = ask(m, rows, `"t${step}"`, kept?.etag).out as Serialized;
      const body: unknown = JSON.parse(out.json.toString());
      const got = out.status === 226 ? a.patched('node-b', '/v1/sessions', schema, kept!, out.headers.etag, rowsDelta.parse(body)) : schema.parse(body);
      if (out.status === 200) a.sent('node-b', '/v1/sessions', schema, out.headers.etag, got);
      expect(got, `step ${step}`).toEqual({ sessions: rows });
      expect(out.status, `step ${step}`).toBe(step === 1 ? 200 : 226);
    }
  });
});

describe("a list's JSON", () => {
  it('is the rows as JSON.stringify gives them, a frozen row serialized once and its text kept with it', () => {
    const kept = Object.freeze({ id: 's-1', node: 'node-b', network: Object.freeze({ address: '10.0.0.2' }) });
    const own = { id: 's-2', node: 'node-a', state: 'running' };
    expect(listJson([own, kept]).toString()).toBe(JSON.stringify({ sessions: [own, kept] }));
    // A row not frozen may change between lists: serialized again each time.
    own.state = 'stopped';
    expect(listJson([own, kept]).toString()).toBe(JSON.stringify({ sessions: [own, kept] }));
    // A frozen row's text is kept: a stringify that would now give another text is not called again.
    const calls: unknown[] = [];
    const stringify = JSON.stringify;
    JSON.stringify = ((v: unknown, ...rest: []) => (calls.push(v), stringify(v, ...rest))) as typeof JSON.stringify;
    try {
      listJson([kept, own]);
    } finally {
      JSON.stringify = stringify;
    }
    expect(calls).toEqual([own]);
    expect(listJson([]).toString()).toBe('{"sessions":[]}');
  });

  it("sends another node's list standing whole as one block, and row by row where a row of it is left out", () => {
    const run = Object.freeze(Array.from({ length: 20 }, (_, i) => Object.freeze({ id: `s-${i}`, node: 'node-b' })));
    const own = Object.freeze({ id: 's-own', node: 'node-a' });
    const lost = { id: 's-lost', state: 'lost' };
    // The parts each Buffer.concat is given: one a row and a comma between, or a block for the run.
    const sizes: number[] = [];
    const concat = Buffer.concat;
    Buffer.concat = ((list: readonly Uint8Array[], n?: number) => (sizes.push(list.length), concat(list, n))) as typeof Buffer.concat;
    try {
      const whole = [own, ...run, lost];
      const sent = (rows: object[]) => {
        const parts = listParts(rows, [run]);
        expect(parts.map((b) => b.toString()).join('')).toBe(JSON.stringify({ sessions: rows }));
        return parts;
      };
      // Sent once: row by row (45 parts, one buffer), no block made for a list that may not be sent again.
      expect(sent(whole)).toHaveLength(1);
      expect(sizes).toEqual([45]);
      sizes.length = 0;
      // The block made once, the second time (39 parts); then open, own, comma (3), the block as kept, comma, lost, close (3).
      const second = sent(whole);
      expect(second).toHaveLength(3);
      expect(sizes).toEqual([39, 3, 3]);
      sizes.length = 0;
      // The third: the same block, not copied again (it is written as it is, beside the other two: one writev).
      const third = sent(whole);
      expect(sizes).toEqual([3, 3]);
      expect(third[1]).toBe(second[1]);
      // A row of it filtered out (a session the fleet declared lost, a caller's policy): row by row, still exact.
      sizes.length = 0;
      const broken = [own, ...run.slice(0, 5), ...run.slice(6), lost];
      expect(sent(broken)).toHaveLength(1);
      expect(sizes).toEqual([2 * broken.length + 1]);
      // At the end with a row short, and at the start: each exact; listJson is the same bytes in one buffer.
      for (const rows of [[own, ...run.slice(0, 19)], [...run, own]]) sent(rows);
      expect(listJson(whole, [run]).toString()).toBe(JSON.stringify({ sessions: whole }));
    } finally {
      Buffer.concat = concat;
    }
  });
});
