// A drain's move records (src/fleet/move.ts) against a real etcd (Debian's
// etcd-server, one member started here): what a drained node does with a
// move its daemon did not finish. A copying move is undone on the node it
// was going to, which must confirm the destroy before that node's placement
// and report go; a committed one has its old copy here ended; another
// node's record is not this node's to touch. The node-to-node channel is a
// stand-in that answers the DELETE with a chosen status.
import { beforeEach, describe, expect, it } from 'vitest';
import { EventEmitter } from 'node:events';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Etcd3 } from 'etcd3';
import { pino } from 'pino';
import { commitMove, Mover, type MoveSource } from '../../src/fleet/move.js';
import { commitMoves } from '../../src/fleet/movePeers.js';
import { removeNode } from '../../src/fleet/nodeRemoval.js';
import { key, PREFIX, STAGED_RO_VOLUMES } from '../../src/fleet/keys.js';
import { groupPlan, type GroupPlan, type KitPlan, type MadeForMove } from '../../src/fleet/moveKit.js';
import { sharedMacs, type SharedRef } from '../../src/fleet/sharedHolders.js';
import type { PeerClient } from '../../src/fleet/peerClient.js';
import type { SessionState } from '../../src/vocab/states.js';
import { oneEtcd } from './fixtures/etcd.js';
import { getPrefix } from '../../src/fleet/etcd.js';

const SELF = 'c';

/** A logger whose lines the test reads. */
const logged = () => {
  const lines: Array<{ msg: string; err?: string }> = [];
  return { lines, log: pino({ level: 'info' }, { write: (l: string) => void lines.push(JSON.parse(l) as { msg: string; err?: string }) }) };
};

/** What node `responder` holding `values` (UID:NAME to value) shared answers node `asker` (sharedHolders.ts sharedMacs). */
const macsOf = (values: ReadonlyMap<string, string>, refs: readonly SharedRef[], nonce: string, asker: string, responder: string) =>
  sharedMacs((o, n) => (values.has(`${o}:${n}`) ? { value: Buffer.from(values.get(`${o}:${n}`)!), shared: true } : undefined), refs, nonce, asker, responder);
const ID = 's-00000000d1';

/** The channel to other nodes: records each request, answers with `status` (or what `answer` gives for it). */
class Peers {
  status = 404;
  answer: ((node: string, path: string) => { status: number; body: string } | undefined) | undefined;
  readonly asked: Array<{ node: string; method: string; path: string }> = [];
  request(node: string, _endpoint: string, o: { method: string; path: string }) {
    this.asked.push({ node, method: o.method, path: o.path });
    const req = new EventEmitter() as EventEmitter & { end(): void; destroy(e?: Error): void; write(): boolean };
    req.write = () => true; // a file piped to it (a move's upload)
    req.end = () =>
      setImmediate(() => {
        const a = this.answer?.(node, o.path);
        const res = Object.assign(new EventEmitter(), { statusCode: a?.status ?? this.status, headers: {}, resume: () => undefined });
        req.emit('response', res);
        setImmediate(() => {
          if (a?.body) res.emit('data', Buffer.from(a.body));
          res.emit('end');
        });
      });
    req.destroy = (e?: Error) => void req.emit('error', e ?? new Error('destroyed'));
    return req;
  }
}

class Local implements MoveSource {
  readonly states = new Map<string, SessionState>();
  readonly forgotten: string[] = [];
  stateOf(id: string): SessionState | undefined {
    return this.states.get(id);
  }
  stored(): { path: string; zstd: boolean } | undefined {
    return this.storedFile;
  }
  /** What follows a session (none unless set), and its stored files (none unless set). */
  readonly kits = new Map<string, KitPlan>();
  storedFile: { path: string; zstd: boolean } | undefined;
  kit(id: string): GroupPlan | { stays: string } | undefined {
    return this.states.has(id) ? groupPlan(id, (m) => this.kits.get(m) ?? { secrets: [], volumes: [], shared: [], with: [] }) : undefined;
  }
  /** Another owner's secrets shared here, by UID:NAME, with their values. */
  readonly shared = new Map<string, string>();
  sharedMacs(refs: readonly SharedRef[], nonce: string, responder: string): Map<string, string> {
    return macsOf(this.shared, refs, nonce, SELF, responder);
  }
  /** A volume's contents as a file (an empty one in the work dir), each export recorded. */
  readonly exported: string[] = [];
  async volumeFile(volumeId: string): Promise<{ path: string; zstd: boolean }> {
    this.exported.push(volumeId);
    const path = join(mkdtempSync(join(tmpdir(), 'enclave-move-')), 'v');
    writeFileSync(path, '');
    return { path, zstd: false };
  }
  /** Volumes and secrets made here for moves (moveKitHere.ts madeForMoves), those removed, and the moves seen over. */
  made = new Map<string, MadeForMove>();
  readonly dropped: string[] = [];
  /** Volumes whose removal fails (kept: returned by dropMadeFor). */
  readonly stuck = new Set<string>();
  readonly done: string[] = [];
  madeForMoves(): Map<string, MadeForMove> {
    return this.made;
  }
  moveDone(id: string): void {
    this.done.push(id);
    this.made.delete(id);
  }
  async dropMadeFor(id: string, volumes: readonly string[]): Promise<string[]> {
    const m = this.made.get(id);
    if (!m) return [];
    this.dropped.push(...m.secrets, ...volumes.filter((v) => !this.stuck.has(v)));
    m.secrets = [];
    m.volumes = m.volumes.filter((v) => !volumes.includes(v) || this.stuck.has(v));
    if (m.volumes.length === 0) this.made.delete(id);
    return volumes.filter((v) => this.stuck.has(v));
  }
  async forget(id: string): Promise<void> {
    this.forgotten.push(id);
    this.states.set(id, 'destroyed');
  }
}

describe('a drained node finishes the moves it left', () => {
  const e = oneEtcd('move', 13);
  let etcd: Etcd3;
  const c = (endpoints: string[]) => ({ endpoints, node: SELF, lease_ttl_s: 1, grace_s: 0, candidates: 3, create_timeout_ms: 1000, compact_interval_s: 0, list_interval_ms: 250 });
  const get = (k: string) => etcd.get(k).string();
  const setUp = async (rec: { from: string; to: string; phase: 'copying' | 'committed' }) => {
    await etcd.put(key.member('b')).value(JSON.stringify({ name: 'b', endpoint: '127.0.0.1:1', capacity: { slots: 4, memory_mb: 1024, disk_mb: 100 }, registered_at: '2026-01-01T00:00:00Z' }));
    await etcd.put(key.desired('b', ID)).value('{}');
    await etcd.put(key.status(ID)).value(JSON.stringify({ id: ID, node: 'b', state: 'running' }));
    await etcd.put(key.move(ID)).value(JSON.stringify({ id: ID, ...rec }));
  };

  beforeEach(async () => {
    etcd = e.client;
    await etcd.delete().prefix(PREFIX);
  });

  /** This node's Mover, the session stopped here, after one tick while b does not answer (500). */
  const tickUnanswered = async () => {
    const peers = new Peers();
    peers.status = 500;
    const local = new Local();
    local.states.set(ID, 'stopped');
    const m = new Mover(etcd, SELF, c(e.endpoints), peers as unknown as PeerClient, local, pino({ level: 'silent' }));
    await m.tick();
    return { peers, local, m };
  };

  it('undoes a copying move once the node it was going to confirms the destroy, and not before', async () => {
    await setUp({ from: SELF, to: 'b', phase: 'copying' });
    // A node of an older version declared it lost with b while b was away: not lost (its files are here).
    await etcd.put(key.lost(ID)).value(JSON.stringify({ id: ID, node: 'b', owner_uid: 1000, name: null, since: '2026-01-01T00:00:00Z' }));
    const { peers, local, m } = await tickUnanswered();
    expect(peers.asked).toEqual([{ node: 'b', method: 'DELETE', path: `/v1/sessions/${ID}?force=1` }]);
    // Not confirmed: everything stays, to try again; the record says it is being undone (b makes nothing more of it).
    expect(JSON.parse((await get(key.move(ID)))!)).toMatchObject({ phase: 'undoing' });
    expect(await get(key.desired('b', ID))).not.toBeNull();
    peers.status = 204;
    await m.tick();
    // Destroyed there, then marked as moved back here: a later move there may make it again.
    expect(peers.asked.slice(1)).toEqual([
      { node: 'b', method: 'DELETE', path: `/v1/sessions/${ID}?force=1` },
      { node: 'b', method: 'POST', path: `/v1/sessions/${ID}/moved-out?to=${SELF}` },
    ]);
    expect(await get(key.move(ID))).toBeNull();
    expect(await get(key.desired('b', ID))).toBeNull();
    expect(await get(key.status(ID))).toBeNull();
    expect(await get(key.lost(ID))).toBeNull();
    // Its copy here is untouched: it is still this node's, stopped.
    expect(local.forgotten).toEqual([]);
  });

  it('sweeps the volumes and secrets moves made here once no move to here runs: the owner\'s when the session came, removed when it never did or its copy was undone', async () => {
    const peers = new Peers();
    const local = new Local();
    const made = (volumes: string[], o: Partial<MadeForMove> = {}): MadeForMove => ({ volumes, secrets: [], row: 'none', stopped: false, settled: true, stale: true, ...o });
    local.made = new Map([
      [ID, made(['v-00000000a1'])],
      ['s-00000000b2', made(['v-00000000b2', 'v-00000000b3'])],
      ['s-00000000b4', made(['v-00000000b4'], { row: 'live' })],
      ['s-00000000b5', made(['v-00000000b5'], { stale: false })],
      ['s-00000000b6', made(['v-00000000b6'], { row: 'live', settled: false, stale: false })],
      // Secrets only: they go too. b8: its volume cannot be removed, its secret can.
      ['s-00000000b7', made([], { secrets: ['github'] })],
      ['s-00000000b8', made(['v-00000000b8'], { secrets: ['API_TOKEN'] })],
      // Live here but placed elsewhere (an undo that could not reach this node): left to settle, which drops them.
      ['s-00000000b9', made(['v-00000000b9'], { row: 'live', secrets: ['npm'] })],
      // Its copy undone here (marked moved away), fresh or not: what the undo could not drop goes now.
      ['s-00000000c1', made(['v-00000000c1'], { row: 'movedAway', stale: false })],
      // Ended here after a committed move: the owner's.
      ['s-00000000c2', made(['v-00000000c2'], { row: 'ended', secrets: ['pypi'] })],
      // Made a moment ago, its move over already (committed here; or its record gone, stopped and placed here alone): the
      // owner's at once (a session moved with it mounts it). c5: placed on its drained node too (its record on its way),
      // c6: placed here alone but running (empty: the fleet declared its drained node lost mid-move): left.
      ['s-00000000c3', made(['v-00000000c3'], { row: 'live', settled: false, stale: false })],
      ['s-00000000c4', made(['v-00000000c4'], { row: 'live', stopped: true, settled: false, stale: false })],
      ['s-00000000c5', made(['v-00000000c5'], { row: 'live', stopped: true, settled: false, stale: false })],
      ['s-00000000c6', made(['v-00000000c6'], { row: 'live', settled: false, stale: false })],
    ]);
    for (const id of ['s-00000000c3', 's-00000000c4', 's-00000000c5', 's-00000000c6']) await etcd.put(key.desired(SELF, id)).value('{}');
    await etcd.put(key.desired('b', 's-00000000c5')).value('{}');
    await etcd.put(key.move('s-00000000c3')).value(JSON.stringify({ id: 's-00000000c3', from: 'b', to: SELF, phase: 'committed' }));
    local.stuck.add('v-00000000b8');
    await etcd.put(key.desired(SELF, 's-00000000b4')).value('{}');
    // ID is being moved here (its record: to this node, copying): its volume stays the move's.
    await etcd.put(key.move(ID)).value(JSON.stringify({ id: ID, from: 'b', to: SELF, phase: 'copying' }));
    const m = new Mover(etcd, SELF, c(e.endpoints), peers as unknown as PeerClient, local, pino({ level: 'silent' }));
    await m.tick();
    // b2: never came, stale: removed. b4: came: the owner's. b5: not stale yet, b6: its record may be on its way: left.
    expect(local.dropped).toEqual(['v-00000000b2', 'v-00000000b3', 'github', 'API_TOKEN', 'v-00000000c1']);
    expect(local.done).toEqual(['s-00000000b4', 's-00000000c2', 's-00000000c3', 's-00000000c4']);
    // The volume that could not go is tried again 10 min later, not each tick (its secret went already).
    await m.tick();
    expect(local.dropped).toEqual(['v-00000000b2', 'v-00000000b3', 'github', 'API_TOKEN', 'v-00000000c1']);
    // Its move committed and it never came: its volume goes too.
    await etcd.put(key.move(ID)).value(JSON.stringify({ id: ID, from: 'b', to: SELF, phase: 'committed' }));
    local.made.delete('s-00000000b2');
    await m.tick();
    expect(local.dropped).toEqual(['v-00000000b2', 'v-00000000b3', 'github', 'API_TOKEN', 'v-00000000c1', 'v-00000000a1']);
    expect([...local.made.keys()].sort()).toEqual(['s-00000000b5', 's-00000000b6', 's-00000000b8', 's-00000000b9', 's-00000000c5', 's-00000000c6']);
  });

  it('takes a 404 as confirmed: the node never made it', async () => {
    await setUp({ from: SELF, to: 'b', phase: 'copying' });
    const peers = new Peers();
    const m = new Mover(etcd, SELF, c(e.endpoints), peers as unknown as PeerClient, new Local(), pino({ level: 'silent' }));
    await m.tick();
    expect(await get(key.move(ID))).toBeNull();
    expect(await get(key.desired('b', ID))).toBeNull();
  });

  it('ends the old copy of a committed move here, and leaves the session where it went', async () => {
    await setUp({ from: SELF, to: 'b', phase: 'committed' });
    const peers = new Peers();
    const local = new Local();
    local.states.set(ID, 'stopped');
    const m = new Mover(etcd, SELF, c(e.endpoints), peers as unknown as PeerClient, local, pino({ level: 'silent' }));
    await m.tick();
    expect(local.forgotten).toEqual([ID]);
    expect(peers.asked).toEqual([]);
    expect(await get(key.move(ID))).toBeNull();
    expect(await get(key.desired('b', ID))).toBe('{}');
    expect(JSON.parse((await get(key.status(ID)))!)).toMatchObject({ node: 'b', state: 'running' });
  });

  it('commits a move only while the session is still placed on the node it leaves: not once the fleet declared it lost there', async () => {
    const rec = { id: ID, from: SELF, to: 'b', phase: 'copying' } as const;
    await setUp(rec);
    await etcd.put(key.desired(SELF, ID)).value('{}');
    expect(await commitMove(etcd, rec)).toBe(true);
    expect(await get(key.desired(SELF, ID))).toBeNull();
    expect(JSON.parse((await get(key.move(ID)))!)).toEqual({ ...rec, phase: 'committed' });
    // The same commit again (the client's resend of one whose answer was lost): its own, done.
    expect(await commitMove(etcd, rec)).toBe(true);
    // Declared lost on SELF meanwhile (its placement there removed): nothing is committed.
    await setUp(rec);
    expect(await commitMove(etcd, rec)).toBe(false);
    expect(JSON.parse((await get(key.move(ID)))!)).toEqual(rec);
    expect(await get(key.desired('b', ID))).toBe('{}');
  });

  it('commits sessions moved together all or none: one whose placement there went keeps every record copying and every placement here', async () => {
    const ID2 = 's-00000000d2';
    const recs = [ID, ID2].map((id) => ({ id, from: SELF, to: 'b', phase: 'copying' }) as const);
    for (const r of recs) {
      await etcd.put(key.move(r.id)).value(JSON.stringify(r));
      await etcd.put(key.desired(SELF, r.id)).value('{}');
    }
    await etcd.put(key.desired('b', ID)).value('{}');
    // ID2's placement on b is gone (released, or never booked): neither commits.
    expect(await commitMoves(etcd, recs)).toBe(false);
    for (const r of recs) {
      expect(JSON.parse((await get(key.move(r.id)))!)).toEqual(r);
      expect(await get(key.desired(SELF, r.id))).toBe('{}');
    }
    await etcd.put(key.desired('b', ID2)).value('{}');
    expect(await commitMoves(etcd, recs)).toBe(true);
    for (const r of recs) {
      expect(JSON.parse((await get(key.move(r.id)))!)).toEqual({ ...r, phase: 'committed' });
      expect(await get(key.desired(SELF, r.id))).toBeNull();
      expect(await get(key.desired('b', r.id))).toBe('{}');
    }
    // Sent again (its answer lost): its own, done.
    expect(await commitMoves(etcd, recs)).toBe(true);
  });

  it('undoes a move to a node that never came back once it is removed from the fleet (node remove), asking it nothing more', async () => {
    await setUp({ from: SELF, to: 'b', phase: 'copying' });
    // b away past the grace: the fleet released its copy (awayMoves.ts releaseTo); it does not answer.
    await etcd.delete().key(key.desired('b', ID));
    await etcd.delete().key(key.status(ID));
    const { peers, local, m } = await tickUnanswered();
    expect(peers.asked).toHaveLength(1);
    expect(JSON.parse((await get(key.move(ID)))!)).toMatchObject({ phase: 'undoing' }); // held: b must confirm
    expect(await removeNode(etcd, 'b', SELF, 5)).toEqual({ node: 'b', lost: 0 });
    await m.tick();
    expect(peers.asked).toHaveLength(1);
    expect(await get(key.move(ID))).toBeNull();
    // b is left word to end its copy, as the undo would have, should it come back (awayMoves.ts endMarked).
    expect(JSON.parse((await get(key.undone('b', ID)))!)).toEqual({ id: ID, to: SELF });
    // Its copy here is untouched: stopped, this node's, free to move elsewhere.
    expect(local.forgotten).toEqual([]);
    expect(local.states.get(ID)).toBe('stopped');
  });

  it("leaves another node's move record alone", async () => {
    await setUp({ from: 'a', to: 'b', phase: 'copying' });
    const peers = new Peers();
    const m = new Mover(etcd, SELF, c(e.endpoints), peers as unknown as PeerClient, new Local(), pino({ level: 'silent' }));
    await m.tick();
    expect(peers.asked).toEqual([]);
    expect(await get(key.move(ID))).not.toBeNull();
    expect(await get(key.desired('b', ID))).toBe('{}');
  });
});

describe("a drain's move of a session that may remount with a read-only volume", () => {
  const e = oneEtcd('move-ro', 17);
  let etcd: Etcd3;
  const c = (endpoints: string[]) => ({ endpoints, node: SELF, lease_ttl_s: 1, grace_s: 0, candidates: 3, create_timeout_ms: 300, compact_interval_s: 0, list_interval_ms: 250 });
  const member = async (name: string, features: string[]) => {
    await etcd.put(key.member(name)).value(JSON.stringify({ name, endpoint: '127.0.0.1:1', capacity: { slots: 4, memory_mb: 4096, disk_mb: 100 }, registered_at: '2026-01-01T00:00:00Z' }));
    await etcd.put(key.alive(name)).value('{}');
    await etcd.put(key.features(name)).value(JSON.stringify(features));
  };
  /** Node c drained, with stopped session ID placed on it: a system session mounting volume ref read-only. */
  const drained = async (local: Local) => {
    await etcd.put(key.drain(SELF)).value('{}');
    const request = { profile: 'system', volumes: [{ name: 'ref', target: '/srv', readonly: true }] };
    await etcd.put(key.desired(SELF, ID)).value(JSON.stringify({ id: ID, owner_uid: 1000, owner_gids: [], request, memory_mb: 256, entry: SELF, placed_at: '2026-01-01T00:00:00Z' }));
    local.states.set(ID, 'stopped');
    local.kits.set(ID, { secrets: [], volumes: [{ id: 'v-00000000aa', name: 'ref', size_mb: 16 }], shared: [], with: [] });
    local.storedFile = { path: '/dev/null', zstd: false };
  };

  beforeEach(async () => {
    etcd = e.client;
    await etcd.delete().prefix(PREFIX);
  });

  it('stays while the only other node takes kits but mounts volumes unlocked (no staged-ro-volumes): placed nowhere, the reason logged', async () => {
    await member('a', ['move-kit']);
    const local = new Local();
    await drained(local);
    const peers = new Peers();
    const { lines, log } = logged();
    await new Mover(etcd, SELF, c(e.endpoints), peers as unknown as PeerClient, local, log).tick();
    expect(peers.asked).toEqual([]);
    expect(await etcd.get(key.desired('a', ID)).string()).toBeNull();
    expect(await etcd.get(key.move(ID)).string()).toBeNull();
    expect(lines.find((l) => l.msg === 'drain: session not moved; trying again later')?.err).toMatch(/stages a read-only volume of a session that may remount/);
  });

  it('goes to the node that stages read-only volumes, though the other has more room', async () => {
    await member('a', ['move-kit']);
    await member('b', ['move-kit', STAGED_RO_VOLUMES]);
    await etcd.put(key.member('a')).value(JSON.stringify({ name: 'a', endpoint: '127.0.0.1:1', capacity: { slots: 64, memory_mb: 65536, disk_mb: 100 }, registered_at: '2026-01-01T00:00:00Z' }));
    const local = new Local();
    await drained(local);
    const peers = new Peers();
    peers.status = 204;
    const { lines, log } = logged();
    // b never reports it made (no daemon here): the move is undone there after create_timeout_ms.
    await new Mover(etcd, SELF, c(e.endpoints), peers as unknown as PeerClient, local, log).tick();
    expect(lines.find((l) => l.msg === 'drain: session not moved; trying again later')?.err).toMatch(/^node b did not make it within 300 ms/);
    expect(peers.asked.map((a) => a.node)).toEqual(['b', 'b']);
    expect(await etcd.get(key.desired('a', ID)).string()).toBeNull();
    expect(await etcd.get(key.desired('b', ID)).string()).toBeNull();
  });
});

describe("a drain's move of a session that declares root's shared secrets", () => {
  const e = oneEtcd('move-shared', 19);
  let etcd: Etcd3;
  const c = (endpoints: string[]) => ({ endpoints, node: SELF, lease_ttl_s: 1, grace_s: 0, candidates: 3, create_timeout_ms: 300, compact_interval_s: 0, list_interval_ms: 250 });
  const member = async (name: string, slots: number) => {
    await etcd.put(key.member(name)).value(JSON.stringify({ name, endpoint: '127.0.0.1:1', capacity: { slots, memory_mb: 65536, disk_mb: 100 }, registered_at: '2026-01-01T00:00:00Z' }));
    await etcd.put(key.alive(name)).value('{}');
    await etcd.put(key.features(name)).value(JSON.stringify(['move-kit']));
  };
  /** Node c drained, with stopped session ID (uid 1000's) placed on it, declaring root's shared npm and GH_TOKEN. */
  const drained = async (local: Local) => {
    await etcd.put(key.drain(SELF)).value('{}');
    const request = { auth: ['0:npm'], env_tokens: ['0:GH_TOKEN'] };
    await etcd.put(key.desired(SELF, ID)).value(JSON.stringify({ id: ID, owner_uid: 1000, owner_gids: [], request, memory_mb: 256, entry: SELF, placed_at: '2026-01-01T00:00:00Z' }));
    local.states.set(ID, 'stopped');
    local.kits.set(ID, { secrets: [], volumes: [], shared: [{ owner_uid: 0, name: 'npm' }, { owner_uid: 0, name: 'GH_TOKEN' }], with: [] });
    local.storedFile = { path: '/dev/null', zstd: false };
    local.shared.set('0:npm', 'npm-value').set('0:GH_TOKEN', 'gh-value');
  };
  /** The channel, where each node holds `held[node]` shared (none: it answers 404, as a node of an older version). */
  const peersHolding = (held: Record<string, Record<string, string> | undefined>) => {
    const peers = new Peers();
    peers.status = 204;
    peers.answer = (node, path) => {
      if (!path.startsWith('/v1/node/shared-secrets?')) return undefined;
      const q = new URL(path, 'http://x').searchParams;
      const values = held[node];
      if (!values) return { status: 404, body: '{}' };
      const refs = q.get('refs')!.split(',').map((t) => ({ owner_uid: Number(t.split(':')[0]), name: t.split(':')[1]! }));
      return { status: 200, body: JSON.stringify({ secrets: [...macsOf(new Map(Object.entries(values)), refs, q.get('nonce')!, SELF, node)].map(([ref, mac]) => ({ ref, mac })) }) };
    };
    return peers;
  };

  beforeEach(async () => {
    etcd = e.client;
    await etcd.delete().prefix(PREFIX);
  });

  it('goes only to the node that shares each with the same value, though another has more room', async () => {
    await member('a', 64);
    await member('b', 4);
    const local = new Local();
    await drained(local);
    // a shares npm with another value (root rotated it there, or never set it the same).
    const peers = peersHolding({ a: { '0:npm': 'other', '0:GH_TOKEN': 'gh-value' }, b: { '0:npm': 'npm-value', '0:GH_TOKEN': 'gh-value', '0:extra': 'x' } });
    const { lines, log } = logged();
    // b never reports it made (no daemon here): the move is undone there after create_timeout_ms.
    await new Mover(etcd, SELF, c(e.endpoints), peers as unknown as PeerClient, local, log).tick();
    expect(lines.find((l) => l.msg === 'drain: session not moved; trying again later')?.err).toMatch(/^node b did not make it within 300 ms/);
    const asks = peers.asked.filter((a) => a.path.startsWith('/v1/node/shared-secrets'));
    expect(asks.map((a) => a.node).sort()).toEqual(['a', 'b']);
    // A fresh nonce, and only the refs it declares.
    expect(new URL(asks[0]!.path, 'http://x').searchParams.get('refs')).toBe('0:npm,0:GH_TOKEN');
    expect(new URL(asks[0]!.path, 'http://x').searchParams.get('nonce')).toMatch(/^[0-9a-f]{32}$/);
    expect(peers.asked.filter((a) => !a.path.startsWith('/v1/node/shared-secrets')).map((a) => a.node)).toEqual(['b', 'b']);
    expect(await etcd.get(key.desired('a', ID)).string()).toBeNull();
  });

  it('stays, placed nowhere, while no other node shares them all with the same value: each node\'s lack logged', async () => {
    await member('a', 8);
    await member('b', 8);
    await member('d', 8);
    await member('e', 8);
    await etcd.delete().key(key.alive('e'));
    const local = new Local();
    await drained(local);
    // A second session that stays for the same secrets: the other nodes are asked once between them.
    const ID2 = 's-00000000d2';
    const d2 = JSON.parse((await etcd.get(key.desired(SELF, ID)).string())!) as Record<string, unknown>;
    await etcd.put(key.desired(SELF, ID2)).value(JSON.stringify({ ...d2, id: ID2 }));
    local.states.set(ID2, 'stopped');
    local.kits.set(ID2, local.kits.get(ID)!);
    const peers = peersHolding({ a: { '0:npm': 'npm-value' }, b: { '0:npm': 'npm-value', '0:GH_TOKEN': 'rotated' }, d: undefined });
    const { lines, log } = logged();
    await new Mover(etcd, SELF, c(e.endpoints), peers as unknown as PeerClient, local, log).tick();
    expect(peers.asked.map((a) => a.node).sort()).toEqual(['a', 'b', 'd']);
    expect(lines.filter((l) => l.msg === 'drain: session not moved; trying again later')).toHaveLength(2);
    const err = lines.find((l) => l.msg === 'drain: session not moved; trying again later')?.err;
    expect(err).toMatch(/^no other node shares 0:npm, 0:GH_TOKEN with the value this node holds/);
    expect(err).toContain('node a does not share 0:GH_TOKEN');
    expect(err).toContain('node b shares 0:GH_TOKEN with another value');
    expect(err).toContain('node d answers 404');
    expect(err).toContain('node e is unreachable');
    expect(peers.asked.every((a) => a.path.startsWith('/v1/node/shared-secrets'))).toBe(true);
    for (const n of ['a', 'b', 'd']) expect(await etcd.get(key.desired(n, ID)).string()).toBeNull();
    expect(await etcd.get(key.move(ID)).string()).toBeNull();
  });

  it('asks no node while this node itself no longer shares one of them, and says so', async () => {
    await member('a', 8);
    const local = new Local();
    await drained(local);
    local.shared.delete('0:GH_TOKEN');
    const peers = peersHolding({ a: { '0:npm': 'npm-value', '0:GH_TOKEN': 'gh-value' } });
    const { lines, log } = logged();
    await new Mover(etcd, SELF, c(e.endpoints), peers as unknown as PeerClient, local, log).tick();
    expect(peers.asked).toEqual([]);
    expect(lines.find((l) => l.msg === 'drain: session not moved; trying again later')?.err).toMatch(/: this node no longer shares 0:GH_TOKEN$/);
  });
});

describe("a drain's move of sessions that share a volume", () => {
  const e = oneEtcd('move-group', 23);
  let etcd: Etcd3;
  const c = (endpoints: string[]) => ({ endpoints, node: SELF, lease_ttl_s: 1, grace_s: 0, candidates: 3, create_timeout_ms: 3000, compact_interval_s: 0, list_interval_ms: 250 });
  const ID2 = 's-00000000d2';
  const VOL = 'v-00000000aa';
  /** Node c drained, its stopped sessions ID and ID2 (uid 1000's) both mounting volume pair; node b takes groups. */
  const drained = async () => {
    await etcd.put(key.member('b')).value(JSON.stringify({ name: 'b', endpoint: '127.0.0.1:1', capacity: { slots: 8, memory_mb: 65536, disk_mb: 100 }, registered_at: '2026-01-01T00:00:00Z' }));
    await etcd.put(key.alive('b')).value('{}');
    await etcd.put(key.features('b')).value(JSON.stringify(['move-kit', 'move-group']));
    await etcd.put(key.drain(SELF)).value('{}');
    const local = new Local();
    for (const [id, other] of [[ID2, ID], [ID, ID2]] as const) {
      const request = { volumes: [{ name: 'pair', target: '/p' }] };
      await etcd.put(key.desired(SELF, id)).value(JSON.stringify({ id, owner_uid: 1000, owner_gids: [], request, memory_mb: 256, entry: SELF, placed_at: '2026-01-01T00:00:00Z' }));
      local.states.set(id, 'stopped');
      local.kits.set(id, { secrets: [], volumes: [{ id: VOL, name: 'pair', size_mb: 64 }], shared: [], with: [other] });
    }
    local.storedFile = { path: '/dev/null', zstd: false };
    return local;
  };
  /** Node b's worker, standing in: each placement on it reported made, in the order seen (one listed in `fail`: failed). */
  const workerOfB = (fail?: string) => {
    const made: string[] = [];
    const t = setInterval(() => {
      void getPrefix(etcd, key.desiredOf('b')).then(async (kvs) => {
        for (const [k] of kvs) {
          const id = k.slice(k.lastIndexOf('/') + 1);
          if (made.includes(id)) continue;
          made.push(id);
          await etcd.put(key.status(id)).value(JSON.stringify({ id, node: 'b', state: id === fail ? 'failed' : 'running', ...(id === fail ? { error: { code: 'conflict', message: 'no room for it' } } : {}) }));
        }
      });
    }, 20);
    return { made, stop: () => clearInterval(t) };
  };

  beforeEach(async () => {
    etcd = e.client;
    await etcd.delete().prefix(PREFIX);
  });

  it('makes them there one after the other, unpacks the volume once through its maker, sends each one\'s files, and commits them together', async () => {
    const local = await drained();
    const peers = new Peers();
    peers.status = 200;
    const b = workerOfB();
    try {
      await new Mover(etcd, SELF, c(e.endpoints), peers as unknown as PeerClient, local, pino({ level: 'silent' })).tick();
    } finally {
      b.stop();
    }
    // In id order: the maker (the first that mounts it) first; the other pinned to the same node.
    expect(b.made).toEqual([ID, ID2]);
    expect(local.exported).toEqual([VOL]);
    expect(peers.asked.map((a) => `${a.method} ${a.path.split('&')[0]}`)).toEqual([
      `POST /v1/sessions/${ID}/moved-in-volume?volume=${VOL}`,
      `POST /v1/sessions/${ID}/moved-in?zstd=0`,
      `POST /v1/sessions/${ID2}/moved-in?zstd=0`,
    ]);
    for (const id of [ID, ID2]) {
      expect(await etcd.get(key.desired(SELF, id)).string()).toBeNull();
      expect(await etcd.get(key.desired('b', id)).string()).not.toBeNull();
      expect(await etcd.get(key.move(id)).string()).toBeNull(); // committed, then finished
    }
    expect([...new Set(local.forgotten)]).toEqual([ID, ID2]);
  });

  it('undoes both, the last made first, when one cannot be made there, and backs off both', async () => {
    const local = await drained();
    const peers = new Peers();
    peers.status = 204;
    const b = workerOfB(ID2);
    const m = new Mover(etcd, SELF, c(e.endpoints), peers as unknown as PeerClient, local, pino({ level: 'silent' }));
    try {
      await m.tick();
    } finally {
      b.stop();
    }
    expect(peers.asked.map((a) => `${a.method} ${a.path}`)).toEqual([
      `DELETE /v1/sessions/${ID2}?force=1`,
      `POST /v1/sessions/${ID2}/moved-out?to=${SELF}`,
      `DELETE /v1/sessions/${ID}?force=1`,
      `POST /v1/sessions/${ID}/moved-out?to=${SELF}`,
    ]);
    for (const id of [ID, ID2]) {
      expect(await etcd.get(key.desired(SELF, id)).string()).not.toBeNull();
      expect(await etcd.get(key.desired('b', id)).string()).toBeNull();
      expect(await etcd.get(key.move(id)).string()).toBeNull();
    }
    expect(local.forgotten).toEqual([]);
    expect(local.exported).toEqual([]);
    // Neither is tried again at once (each backs off, so the other does not start the group).
    await m.tick();
    expect(peers.asked).toHaveLength(4);
  });
});
