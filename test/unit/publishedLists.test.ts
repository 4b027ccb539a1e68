// The other nodes' lists as they wrote them to etcd, read from the watched
// copy (src/fleet/publishedLists.ts): in each node's order, each row parsed
// once and the same array served while nothing of that node changed; a
// node with a row that does not check (not JSON, not a session, another id
// or node than its key names) not given, logged; a node's listing current only for the
// registration its member record names.
import { describe, expect, it } from 'vitest';
import pino from 'pino';
import { PublishedLists } from '../../src/fleet/publishedLists.js';
import { pendingView } from '../../src/fleet/views.js';
import type { Session } from '../../src/api/schemas.js';

const LIMITS = { memory_mb: 128, pids: 64, cpu_percent: 100, tmp_mb: 16, home_mb: 16, root_mb: 16 };

function session(id: string, node: string, created: string, state: Session['state'] = 'running'): Session {
  const p = pendingView({ id, owner_uid: 0, owner_gids: [], request: {}, memory_mb: 128, limits: LIMITS, entry: node, reason: '', since: created });
  return { ...p, state, node, last_error: null };
}
const k = (node: string, id: string) => `/enclave/listed/${node}/${id}`;
const put = (m: Map<string, string>, s: Session) => m.set(k(s.node!, s.id), JSON.stringify(s));

function withWarnings() {
  const warned: string[] = [];
  const log = pino({ level: 'warn' }, { write: (line: string) => void warned.push(String((JSON.parse(line) as { key: string }).key)) });
  return { lists: new PublishedLists(log), warned };
}

describe('PublishedLists', () => {
  it("gives each node asked its rows in the node's order (created, then id), frozen, and the same array while none of them changed", () => {
    const { lists } = withWarnings();
    const m = new Map<string, string>();
    const [late, early, tie] = [session('s-cccccccccc', 'n2', '2026-01-02T00:00:00.000Z'), session('s-bbbbbbbbbb', 'n2', '2026-01-01T00:00:00.000Z'), session('s-aaaaaaaaaa', 'n2', '2026-01-02T00:00:00.000Z')];
    for (const s of [late, early, tie, session('s-dddddddddd', 'n3', '2026-01-01T00:00:00.000Z'), session('s-eeeeeeeeee', 'n4', '2026-01-01T00:00:00.000Z')]) put(m, s);
    const first = lists.of(m, new Set(['n2', 'n3', 'n5']));
    expect(first.get('n2')!.map((s) => s.id)).toEqual([early.id, tie.id, late.id]);
    expect(first.get('n3')!.map((s) => s.id)).toEqual(['s-dddddddddd']);
    expect(first.get('n5')).toEqual([]);
    expect(first.has('n4')).toBe(false);
    expect(Object.isFrozen(first.get('n2')) && Object.isFrozen(first.get('n2')![0]) && Object.isFrozen(first.get('n2')![0]!.network)).toBe(true);
    expect(first.get('n2')![0]).toEqual(early);
    // Nothing of n2's changed (n3's did): n2's array is the one given before.
    put(m, session('s-dddddddddd', 'n3', '2026-01-01T00:00:00.000Z', 'stopped'));
    const second = lists.of(m, new Set(['n2', 'n3']));
    expect(second.get('n2')).toBe(first.get('n2'));
    expect(second.get('n3')).not.toBe(first.get('n3'));
    expect(second.get('n3')![0]!.state).toBe('stopped');
    // One row of n2's changed: a new array, the unchanged rows the same objects.
    put(m, { ...late, state: 'stopped' });
    const third = lists.of(m, new Set(['n2']));
    expect(third.get('n2')).not.toBe(first.get('n2'));
    expect(third.get('n2')![0]).toBe(first.get('n2')![0]);
    expect(third.get('n2')![2]!.state).toBe('stopped');
  });

  it('gives no node with a row that does not check (its caller asks it), logged once for as long as its value stands', () => {
    const { lists, warned } = withWarnings();
    const m = new Map<string, string>();
    const good = session('s-aaaaaaaaaa', 'n2', '2026-01-01T00:00:00.000Z');
    put(m, good);
    put(m, session('s-0123456789', 'n3', '2026-01-01T00:00:00.000Z'));
    m.set(k('n2', 's-bbbbbbbbbb'), '{not json');
    m.set(k('n2', 's-cccccccccc'), JSON.stringify({ ...good, id: 's-cccccccccc', state: 'sleeping' }));
    m.set(k('n2', 's-dddddddddd'), JSON.stringify({ ...good, id: 's-eeeeeeeeee' }));
    m.set(k('n2', 's-ffffffffff'), JSON.stringify({ ...good, id: 's-ffffffffff', node: 'n3' }));
    for (let i = 0; i < 2; i++) {
      const got = lists.of(m, new Set(['n2', 'n3']));
      expect(got.has('n2')).toBe(false);
      expect(got.get('n3')!.map((s) => s.id)).toEqual(['s-0123456789']);
    }
    expect(warned.sort()).toEqual(['s-bbbbbbbbbb', 's-cccccccccc', 's-dddddddddd', 's-ffffffffff'].map((id) => k('n2', id)));
    // Its bad rows gone (written again right): given again.
    for (const id of ['s-bbbbbbbbbb', 's-cccccccccc', 's-dddddddddd', 's-ffffffffff']) m.delete(k('n2', id));
    expect(lists.of(m, new Set(['n2'])).get('n2')!.map((s) => s.id)).toEqual([good.id]);
  });

  it('forgets rows whose keys went (a row written again is parsed again)', () => {
    const { lists } = withWarnings();
    const m = new Map<string, string>();
    const s = session('s-aaaaaaaaaa', 'n2', '2026-01-01T00:00:00.000Z');
    put(m, s);
    put(m, session('s-bbbbbbbbbb', 'n2', '2026-01-01T00:00:00.000Z'));
    const row = lists.of(m, new Set(['n2'])).get('n2')![0]!;
    expect(lists.of(m, new Set(['n2'])).get('n2')![0]).toBe(row);
    m.delete(k('n2', s.id));
    expect(lists.of(m, new Set(['n2'])).get('n2')!.map((x) => x.id)).toEqual(['s-bbbbbbbbbb']);
    put(m, s);
    const again = lists.of(m, new Set(['n2'])).get('n2')!;
    expect(again.map((x) => x.id)).toEqual([s.id, 's-bbbbbbbbbb']);
    expect(again[0]).not.toBe(row);
    expect(again[0]).toEqual(row);
  });

  it("answers as last time while the copy's listed part keeps its version and the same nodes are asked, and makes it again when either moves", () => {
    const { lists } = withWarnings();
    const m = new Map<string, string>();
    const a = session('s-aaaaaaaaa1', 'n2', '2026-01-01T00:00:00.000Z');
    put(m, a);
    const first = lists.of(m, new Set(['n2']), 7);
    // Version 7 is the same keys and values (watched.ts): a row put meanwhile under the same version is not read.
    put(m, session('s-aaaaaaaaa2', 'n2', '2026-01-01T00:00:01.000Z'));
    expect(lists.of(m, new Set(['n2']), 7)).toBe(first);
    expect(lists.of(m, new Set(['n2']), 8).get('n2')!.map((s) => s.id)).toEqual(['s-aaaaaaaaa1', 's-aaaaaaaaa2']);
    put(m, session('s-bbbbbbbbb1', 'n3', '2026-01-01T00:00:00.000Z'));
    expect([...lists.of(m, new Set(['n2', 'n3']), 8).keys()].sort()).toEqual(['n2', 'n3']);
    // No version (rows read from etcd, not the copy): made each time.
    m.delete(k('n2', 's-aaaaaaaaa2'));
    expect(lists.of(m, new Set(['n2'])).get('n2')!.map((s) => s.id)).toEqual(['s-aaaaaaaaa1']);
  });

  it("takes a node's listing as current only when it names the registration the node's member record names", () => {
    const { lists } = withWarnings();
    const listing = new Map([
      ['/enclave/listing/n2', JSON.stringify({ registered_at: '2026-01-01T00:00:00.000Z' })],
      ['/enclave/listing/n3', '{"registered_at": 7}'],
      ['/enclave/listing/n4', 'not json'],
    ]);
    expect(lists.current(listing, 'n2', '2026-01-01T00:00:00.000Z')).toBe(true);
    expect(lists.current(listing, 'n2', '2026-01-01T00:00:01.000Z')).toBe(false);
    expect(lists.current(listing, 'n3', '7')).toBe(false);
    expect(lists.current(listing, 'n4', '')).toBe(false);
    expect(lists.current(listing, 'n5', '2026-01-01T00:00:00.000Z')).toBe(false);
  });
});
