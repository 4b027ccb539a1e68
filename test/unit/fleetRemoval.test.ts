// `node remove` (src/fleet/nodeRemoval.ts) against a real etcd (one member of
// Debian's etcd-server): only a node that is gone leaves the fleet, all of
// what etcd holds of it goes and nothing of another node's or of its
// sessions' owners', in one transaction guarded against the node coming
// back or a session being placed on it meanwhile.
import { beforeEach, describe, expect, it } from 'vitest';
import type { Etcd3 } from 'etcd3';
import { pino } from 'pino';
import { removeNode } from '../../src/fleet/nodeRemoval.js';
import { Failure, type FenceTarget } from '../../src/fleet/failure.js';
import { key, PREFIX, type Lost, type Member, type Status } from '../../src/fleet/keys.js';
import type { Registry } from '../../src/fleet/registry.js';
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
    const removed = [...gone.map((k) => key[k]('nb')), key.listed('nb', S3), key.oldCopy('nb', S3)].sort();
    expect(before.filter((k) => !removed.includes(k))).toEqual(await keys());
    for (const k of removed) expect(before).toContain(k); // each was there to remove
    // The lost record and status stay (its owner removes them), and so does the move to it (its drained node undoes it).
    expect(await etcd.get(key.lost(S1)).string()).not.toBeNull();
    expect(await etcd.get(key.move(S2)).string()).not.toBeNull();
    expect(await etcd.get(key.member('nb-2')).string()).not.toBeNull();
  });

  it('refuses, saying why, this node itself, an unknown node, a registered one, one with sessions placed on it, and one a move is still from', async () => {
    await goneNode();
    expect(await refusal(removeNode(etcd, 'na', 'na', GRACE_S))).toMatchObject({ code: 'conflict', message: expect.stringMatching(/is this node: stop its daemon, then remove it through another node/) });
    expect(await refusal(removeNode(etcd, 'nz', 'na', GRACE_S))).toMatchObject({ code: 'not_found', message: 'no node nz in the fleet' });
    expect(await refusal(removeNode(etcd, 'nb-2', 'na', GRACE_S))).toMatchObject({ code: 'conflict', message: expect.stringMatching(/registered \(its lease is live\)/) });
    await put(key.desired('nb', S3), '{}');
    expect(await refusal(removeNode(etcd, 'nb', 'na', GRACE_S))).toMatchObject({
      code: 'conflict',
      message: 'node nb still has 1 session placed on it: the fleet declares them lost once it has been unreachable for 5 s (cluster.grace_s; unreachable since 2026-12-07T00:00:00.000Z); remove it after',
    });
    await etcd.delete().key(key.desired('nb', S3));
    await put(key.move(S3), { id: S3, from: 'nb', to: 'na', phase: 'copying' });
    expect(await refusal(removeNode(etcd, 'nb', 'na', GRACE_S))).toMatchObject({ code: 'conflict', message: expect.stringMatching(/a move of session s-00000000e3 from node nb to node na is not finished yet/) });
    // Refused: nothing of it went.
    expect(await etcd.get(key.member('nb')).string()).not.toBeNull();
    expect(await etcd.get(key.alloc('nb')).string()).not.toBeNull();
  });

  it('removes nothing when the node registers again, or a session is booked on it, between the read and the removal', async () => {
    for (const [what, meanwhile] of [
      ['registered again', (c: Etcd3) => c.put(key.alive('nb')).value('1')],
      ['a session booked', (c: Etcd3) => c.put(key.alloc('nb')).value(JSON.stringify({ sessions: { [S3]: { memory_mb: 64 } } }))],
      ['its member record written again', (c: Etcd3) => c.put(key.member('nb')).value(JSON.stringify(member('nb')))],
    ] as const) {
      await etcd.delete().prefix(PREFIX);
      await goneNode();
      if (what === 'a session booked') await etcd.delete().key(key.alloc('nb')); // none yet: the compare is on its absence
      const before = await keys();
      const racing = commitsThrough(etcd, async (commit) => {
        await meanwhile(etcd);
        return commit();
      });
      expect(await refusal(removeNode(racing, 'nb', 'na', GRACE_S)), what).toMatchObject({ code: 'conflict', message: expect.stringMatching(/changed while it was being removed/) });
      for (const k of before) expect(await etcd.get(k).string(), `${what}: ${k}`).not.toBeNull();
    }
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
    const deadline = Date.now() + 1500;
    while (Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    f.close();
    expect(await etcd.get(key.member('nb')).string()).toBeNull();
    expect(await etcd.get(key.down('nb')).string()).toBeNull();
  });
});
