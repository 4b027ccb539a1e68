// `node remove` (src/fleet/nodeRemoval.ts) against a real etcd (one member of
// Debian's etcd-server): only a node that is gone leaves the fleet, all of
// what etcd holds of it goes and nothing of another node's or of its
// sessions' owners', in one transaction guarded against the node coming
// back or a session being placed on it meanwhile.
import { beforeEach, describe, expect, it } from 'vitest';
import type { Etcd3, Lease } from 'etcd3';
import { pino } from 'pino';
import { removeNode } from '../../src/fleet/nodeRemoval.js';
import { book, readFleet } from '../../src/fleet/placement.js';
import { Members } from '../../src/fleet/members.js';
import { WatchedFleet } from '../../src/fleet/watched.js';
import { Failure, type FenceTarget } from '../../src/fleet/failure.js';
import { key, PREFIX, prefix, type Desired, type Lost, type Member, type Status } from '../../src/fleet/keys.js';
import { Registry } from '../../src/fleet/registry.js';
import type { ClusterConfig } from '../../src/fleet/etcd.js';
import { ApiError } from '../../src/vocab/errors.js';
import { commitsThrough, oneEtcd } from './fixtures/etcd.js';

const GRACE_S = 5;
const [S1, S2, S3] = ['s-00000000e1', 's-00000000e2', 's-00000000e3'];
const member = (name: string): Member => ({ name, endpoint: '127.0.0.1:1', capacity: { slots: 4, memory_mb: 1024, disk_mb: 100 }, registered_at: '2026-12-07T00:00:00.000Z' });

/** What removeNode threw: its code and message. */
async function refusal(p: Promise<unknown>): Promise<{ code: string; message: string }> {
  try {
    await p;
  } catch (e) {
    if (e instanceof ApiError) return { code: e.code, message: e.message };
    throw e;
  }
  throw new Error('not refused');
}

describe('removing a node from the fleet', () => {
  const e = oneEtcd('removal', 19);
  let etcd: Etcd3;
  const put = (k: string, v: unknown) => etcd.put(k).value(typeof v === 'string' ? v : JSON.stringify(v));
  const keys = async () => (await etcd.getAll().prefix(PREFIX).keys()).sort();

  /** Node nb gone past the grace (its sessions lost, its keys left), beside na (alive) and nb-2 (a name it prefixes). */
  const goneNode = async () => {
    for (const n of ['na', 'nb', 'nb-2']) {
      await put(key.member(n), member(n));
      await put(key.alloc(n), { sessions: {} });
      await put(key.listSeq(n), '1');
      await put(key.listed(n, S3), '{}');
      await put(key.oldCopy(n, S3), { id: S3, to: 'na' });
    }
    await put(key.alive('na'), '1');
    await put(key.alive('nb-2'), '1');
    await put(key.cordon('nb'), 'x');
    await put(key.drain('nb'), 'x');
    await put(key.down('nb'), { since: '2026-12-07T00:00:00.000Z', seen_by: 'na' });
    await put(key.listing('nb'), { registered_at: 'x' });
    await put(key.features('nb'), ['move-kit']);
    // Its session S1 declared lost (its owner has not removed it), and a drain's move of S2 to it, released.
    await put(key.lost(S1), { id: S1, node: 'nb', owner_uid: 1000, name: null, since: '2026-12-07T00:00:05.000Z' } satisfies Lost);
    await put(key.status(S1), { id: S1, node: 'nb', state: 'lost' } satisfies Status);
    await put(key.move(S2), { id: S2, from: 'na', to: 'nb', phase: 'copying' });
    await put(key.desired('na', S2), '{}');
  };

  beforeEach(async () => {
    etcd = e.client;
    await etcd.delete().prefix(PREFIX);
  });

  it("removes all of what etcd holds of a node that is gone, and nothing of another node's or of its sessions' owners'", async () => {
    await goneNode();
    const before = await keys();
    expect(await removeNode(etcd, 'nb', 'na', GRACE_S)).toEqual({ node: 'nb', lost: 1 });
    const gone = ['member', 'cordon', 'drain', 'alloc', 'down', 'listing', 'listSeq', 'features'] as const;
    const removed = [...gone.map((k) => key[k]('nb')), key.listed('nb', S3)].sort();
    expect(before.filter((k) => !removed.includes(k))).toEqual(await keys());
    for (const k of removed) expect(before).toContain(k); // each was there to remove
    // The lost record and status stay (its owner removes them; back, the node fences by the status), its
    // old-copy words too (back, it ends those copies by them), and the move to it (its drained node undoes it).
    expect(await etcd.get(key.lost(S1)).string()).not.toBeNull();
    expect(await etcd.get(key.status(S1)).string()).not.toBeNull();
    expect(await etcd.get(key.oldCopy('nb', S3)).string()).not.toBeNull();
    expect(await etcd.get(key.move(S2)).string()).not.toBeNull();
    expect(await etcd.get(key.member('nb-2')).string()).not.toBeNull();
  });

  it('takes over a move from it to a node away too whose copy was released, leaving that node word to end its copy; refuses one another node finishes', async () => {
    await goneNode();
    // S3 moved from nb to nc (away past its grace too: its placement there released): no node would finish it.
    await put(key.member('nc'), member('nc'));
    const rec = { id: S3, from: 'nb', to: 'nc', phase: 'copying' } as const;
    await put(key.move(S3), rec);
    // nc still holds its placement (not past its grace yet): refused, saying so.
    await put(key.desired('nc', S3), '{}');
    expect(await refusal(removeNode(etcd, 'nb', 'na', GRACE_S))).toMatchObject({ code: 'conflict', message: expect.stringMatching(/to node nc, which is away too, is not finished yet: its copy there is released once nc has been away for 5 s/) });
    // To a node alive (it finishes it), or committed (the fleet removes its record): refused too.
    await put(key.alive('nc'), '1');
    expect(await refusal(removeNode(etcd, 'nb', 'na', GRACE_S))).toMatchObject({ message: expect.stringMatching(/node nc finishes it once nb has been away for 5 s/) });
    await put(key.move(S3), { ...rec, phase: 'committed' });
    expect(await refusal(removeNode(etcd, 'nb', 'na', GRACE_S))).toMatchObject({ message: expect.stringMatching(/is committed, and its record not removed yet: the fleet removes it once nb has been away/) });
    await put(key.move(S3), rec);
    await etcd.delete().key(key.alive('nc'));
    await etcd.delete().key(key.desired('nc', S3));
    expect(await removeNode(etcd, 'nb', 'na', GRACE_S)).toEqual({ node: 'nb', lost: 1 });
    expect(await etcd.get(key.move(S3)).string()).toBeNull();
    expect(JSON.parse((await etcd.get(key.undone('nc', S3)).string())!)).toEqual({ id: S3, to: 'nb' });
    expect(await etcd.get(key.member('nb')).string()).toBeNull();
  });

  it('refuses, saying why, this node itself, an unknown node, a registered one, one with sessions placed on it, and one a move is still from', async () => {
    await goneNode();
    expect(await refusal(removeNode(etcd, 'na', 'na', GRACE_S))).toMatchObject({ code: 'conflict', message: expect.stringMatching(/is this node: stop its daemon, then remove it through another node/) });
    expect(await refusal(removeNode(etcd, 'nz', 'na', GRACE_S))).toMatchObject({ code: 'not_found', message: 'no node nz in the fleet' });
    expect(await refusal(removeNode(etcd, 'nb-2', 'na', GRACE_S))).toMatchObject({ code: 'conflict', message: expect.stringMatching(/registered \(its lease is live\)/) });
    await put(key.desired('nb', S3), '{}');
    expect(await refusal(removeNode(etcd, 'nb', 'na', GRACE_S))).toMatchObject({
      code: 'conflict',
      message: 'node nb still has 1 session placed on it: the fleet declares them lost once it has been unreachable for 5 s (cluster.grace_s; unreachable since 2026-12-07T00:00:00.000Z): any moment now; try again in a few seconds',
    });
    // Within the grace the message says when; with a down mark whose time does not read, that it is after the grace.
    const since = new Date().toISOString();
    await put(key.down('nb'), { since, seen_by: 'na' });
    expect((await refusal(removeNode(etcd, 'nb', 'na', GRACE_S))).message).toBe(
      `node nb still has 1 session placed on it: the fleet declares them lost once it has been unreachable for 5 s (cluster.grace_s; unreachable since ${since}): remove it after ${new Date(Date.parse(since) + 5000).toISOString()}`,
    );
    await put(key.down('nb'), { since: 'yesterday', seen_by: 'na' });
    expect((await refusal(removeNode(etcd, 'nb', 'na', GRACE_S))).message).toMatch(/for 5 s \(cluster.grace_s\); remove it after$/);
    await etcd.delete().key(key.desired('nb', S3));
    await put(key.move(S3), { id: S3, from: 'nb', to: 'na', phase: 'copying' });
    expect(await refusal(removeNode(etcd, 'nb', 'na', GRACE_S))).toMatchObject({ code: 'conflict', message: expect.stringMatching(/a move of session s-00000000e3 from node nb to node na is not finished yet/) });
    // Refused: nothing of it went.
    expect(await etcd.get(key.member('nb')).string()).not.toBeNull();
    expect(await etcd.get(key.alloc('nb')).string()).not.toBeNull();
  });

  it('removes nothing when the node registers again, or a session is booked on it, between the read and the removal; tries again after a write that changes neither', async () => {
    const booked = async (c: Etcd3) => {
      await c.put(key.alloc('nb')).value(JSON.stringify({ sessions: { [S3]: { memory_mb: 64 } } }));
      await c.put(key.desired('nb', S3)).value('{}');
    };
    const emptied = (c: Etcd3) => c.put(key.alloc('nb')).value(JSON.stringify({ sessions: {} }));
    for (const [what, meanwhile, why] of [
      ['registered again', (c: Etcd3) => c.put(key.alive('nb')).value('1'), /registered \(its lease is live\)/],
      ['a session booked', booked, /still has 1 session placed on it/],
      ['a session booked (no allocation before)', booked, /still has 1 session placed on it/],
      ['its allocation written by a judge before every try', emptied, /kept changing while it was being removed/],
    ] as const) {
      await etcd.delete().prefix(PREFIX);
      await goneNode();
      if (what === 'a session booked (no allocation before)') await etcd.delete().key(key.alloc('nb')); // the compare is on its absence
      const before = await keys();
      const racing = commitsThrough(etcd, async (commit) => {
        await meanwhile(etcd);
        return commit();
      });
      expect(await refusal(removeNode(racing, 'nb', 'na', GRACE_S)), what).toMatchObject({ code: 'conflict', message: expect.stringMatching(why) });
      for (const k of before) expect(await etcd.get(k).string(), `${what}: ${k}`).not.toBeNull();
    }
    // A judge's write of its allocation before the first try only: the next try removes it.
    await etcd.delete().prefix(PREFIX);
    await goneNode();
    let once = true;
    const judged = commitsThrough(etcd, async (commit) => {
      if (once) (once = false), await emptied(etcd);
      return commit();
    });
    expect(await removeNode(judged, 'nb', 'na', GRACE_S)).toEqual({ node: 'nb', lost: 1 });
    expect(await etcd.get(key.member('nb')).string()).toBeNull();
  });

  it('books nothing on a node removed since the fleet was read', async () => {
    await goneNode();
    const view = (await readFleet(etcd)).find((n) => n.member.name === 'nb')!;
    await removeNode(etcd, 'nb', 'na', GRACE_S);
    const d: Desired = { id: S3, owner_uid: 1000, owner_gids: [1000], request: {}, memory_mb: 64, entry: 'na', placed_at: '2026-12-07T00:00:00.000Z' };
    expect(await book(etcd, { ...view, allocRev: '0' }, d)).toBe(false);
    expect(await etcd.get(key.desired('nb', S3)).string()).toBeNull();
    expect(await etcd.get(key.alloc('nb')).string()).toBeNull();
  });

  it("refuses a removed node's peer certificate once the watched copy has its removal, reading nothing", async () => {
    await goneNode();
    const watched = new WatchedFleet(etcd, pino({ level: 'silent' }));
    watched.start();
    let reads = 0;
    const counted = new Proxy(etcd, { get: (t, p, r) => (p === 'getAll' ? (reads++, Reflect.get(t, p, r)) : Reflect.get(t, p, r)) });
    const members = new Members(counted, pino({ level: 'silent' }), () => watched.peek(prefix.members)?.[0]);
    const deadline = Date.now() + 5000;
    while (!watched.following && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    expect(await members.has('nb')).toBe(true);
    await removeNode(etcd, 'nb', 'na', GRACE_S);
    while ((await members.has('nb')) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    expect(await members.has('nb')).toBe(false);
    expect(await members.has('na')).toBe(true);
    expect(reads).toBe(0);
    watched.close();
  });

  it("refuses a removed node's peer certificate within a second without the copy (the member names are read again once older)", async () => {
    await goneNode();
    const members = new Members(etcd, pino({ level: 'silent' }));
    expect(await members.has('nb')).toBe(true);
    await removeNode(etcd, 'nb', 'na', GRACE_S);
    const deadline = Date.now() + 3000;
    while ((await members.has('nb')) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    expect(await members.has('nb')).toBe(false);
    expect(await members.has('na')).toBe(true);
    // etcd not answering: a name known is still admitted at once (a forwarded call does not wait on etcd).
    let reads = 0;
    const down = new Proxy(etcd, { get: (t, p, r) => (p === 'getAll' ? () => (reads++, { prefix: () => ({ keys: () => Promise.reject(new Error('14 UNAVAILABLE')) }) }) : Reflect.get(t, p, r)) });
    const cut = new Members(down, pino({ level: 'silent' }));
    await expect(cut.has('na')).rejects.toThrow(/UNAVAILABLE/); // never read: nothing to go by
    const known = new Members(etcd, pino({ level: 'silent' }));
    expect(await known.has('na')).toBe(true);
    Object.assign(known, { etcd: down, at: 0 });
    expect(await known.has('na')).toBe(true);
    await new Promise((r) => setTimeout(r, 50));
    expect(await known.has('na')).toBe(true);
    expect(reads).toBeGreaterThan(1);
  });

  it('takes its own removal, sent again after its answer was lost, as done', async () => {
    await goneNode();
    const twice = commitsThrough(etcd, async (commit) => {
      await commit(); // applied, its answer lost: the client sends it again, whose compare then fails
      return commit();
    });
    expect(await removeNode(twice, 'nb', 'na', GRACE_S)).toEqual({ node: 'nb', lost: 1 });
    expect(await etcd.get(key.member('nb')).string()).toBeNull();
  });

  it('is not marked down again by a node that read it as a member before it was removed', async () => {
    await put(key.member('na'), member('na'));
    await put(key.alive('na'), '1');
    await put(key.member('nb'), member('nb'));
    // na's judge read nb as a member without a lease; nb is removed before its down mark is written.
    const removing = commitsThrough(etcd, async (commit, [k]) => {
      if (k === key.alive('nb')) await removeNode(etcd, 'nb', 'na', GRACE_S);
      return commit();
    });
    const target: FenceTarget = { held: () => [], stateOf: () => undefined, remove: async () => undefined, forget: async () => undefined, discard: async () => undefined };
    const f = new Failure(removing, { node: 'na', grace_s: GRACE_S } as ClusterConfig, { live: true, generation: 1 } as Registry, target, pino({ level: 'silent' }), 60_000);
    await f.start();
    // Its judge runs a second after the start: the member goes in it, then one more round.
    const deadline = Date.now() + 10_000;
    while ((await etcd.get(key.member('nb')).string()) !== null && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    await new Promise((r) => setTimeout(r, 1500));
    f.close();
    expect(await etcd.get(key.member('nb')).string()).toBeNull();
    expect(await etcd.get(key.down('nb')).string()).toBeNull();
  });

  it('registers a node with its member record and alive key in one transaction (never a member record written again alone, which a removal would take for a node gone)', async () => {
    const r = new Registry(etcd, { node: 'nb', lease_ttl_s: 5, peer: undefined } as unknown as ClusterConfig, '127.0.0.1:1', () => member('nb').capacity, pino({ level: 'silent' }));
    await r.register();
    const [m, a] = await Promise.all([etcd.get(key.member('nb')).exec(), etcd.get(key.alive('nb')).exec()]);
    expect(m.kvs[0]?.mod_revision).toBeDefined();
    expect(a.kvs[0]?.mod_revision).toBe(m.kvs[0]?.mod_revision);
    expect(a.kvs[0]?.lease).not.toBe('0');
    await r.close(true);
    expect(await etcd.get(key.alive('nb')).string()).toBeNull();
  });

  it('does not take a lease lost while it registered for a registration (it registers again)', async () => {
    let lease: Lease | undefined;
    const losing = new Proxy(etcd, {
      get: (t, p, rcv) => {
        if (p === 'lease') return (ttl: number) => (lease = t.lease(ttl));
        if (p === 'kv') return { txn: async (req: unknown) => ((lease as unknown as { emitLoss(e: Error): void }).emitLoss(new Error('lease expired')), t.kv.txn(req as Parameters<typeof t.kv.txn>[0])) };
        return Reflect.get(t, p, rcv);
      },
    });
    const r = new Registry(losing, { node: 'nb', lease_ttl_s: 5, peer: undefined } as unknown as ClusterConfig, '127.0.0.1:1', () => member('nb').capacity, pino({ level: 'silent' }));
    await expect(r.register()).rejects.toThrow(/lost while registering/);
    expect(r.live).toBe(false);
    await r.close(false);
  });
});
