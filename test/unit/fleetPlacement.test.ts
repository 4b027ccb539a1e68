// Placement of fleet sessions (src/fleet/placement.ts): which nodes fit, the
// best of K by free capacity, and, against a real etcd (Debian's etcd-server,
// one member started by this test), that the allocation's compare-and-swap
// never lets two placements at once book the same last slot, and that a
// pending entry's write sent again brings back no entry that went.
import { beforeEach, describe, expect, it } from 'vitest';
import { Etcd3 } from 'etcd3';
import { book, choose, pinnedTo, place, readFleet, unfit, type NodeView } from '../../src/fleet/placement.js';
import { nodesTakingKits } from '../../src/fleet/moveKit.js';
import { key, STAGED_RO_VOLUMES, type Desired, type Pending } from '../../src/fleet/keys.js';
import { cancelPending, putPending } from '../../src/fleet/pending.js';
import { pino } from 'pino';
import { Registry } from '../../src/fleet/registry.js';
import { commitsThrough, oneEtcd } from './fixtures/etcd.js';

const node = (name: string, o: { slots?: number; used?: number; memory?: number; usedMemory?: number; alive?: boolean; cordoned?: boolean } = {}): NodeView => ({
  member: { name, endpoint: `/run/${name}.sock`, capacity: { slots: o.slots ?? 4, memory_mb: o.memory ?? 4096, disk_mb: 1000 }, registered_at: '2026-01-01T00:00:00Z' },
  alive: o.alive ?? true,
  cordoned: o.cordoned ?? false,
  alloc: { sessions: Object.fromEntries(Array.from({ length: o.used ?? 0 }, (_, i) => [`s-${name.padEnd(5, '0').slice(0, 5)}${String(i).padStart(5, '0')}`, { memory_mb: Math.floor((o.usedMemory ?? 0) / Math.max(1, o.used ?? 1)) }])) },
  allocRev: '0',
});

describe('which nodes fit', () => {
  it('says why a node does not: unreachable, cordoned, full, short of memory', () => {
    expect(unfit(node('a', { alive: false }), 256)).toBe('a unreachable');
    expect(unfit(node('a', { cordoned: true }), 256)).toBe('a cordoned');
    expect(unfit(node('a', { slots: 2, used: 2 }), 256)).toBe('a full (2/2 sessions)');
    expect(unfit(node('a', { memory: 1024, used: 1, usedMemory: 900 }), 256)).toBe('a has 124 MiB of memory free, 256 asked');
    expect(unfit(node('a', { slots: 2, used: 1 }), 256)).toBeNull();
  });

  it('takes the emptiest of the K it compares, skipping those that do not fit', () => {
    const fleet = [node('a', { used: 3 }), node('b', { used: 1 }), node('c', { used: 0, cordoned: true }), node('d', { used: 2 })];
    const r = choose(fleet, 256, 8);
    expect('node' in r && r.node.member.name).toBe('b');
  });

  it('compares only K random candidates (the power of K choices)', () => {
    const fleet = [node('a', { used: 3 }), node('b', { used: 0 }), node('c', { used: 2 })];
    // random() = 0.999 keeps the order through the shuffle: the first K are a, b, c.
    const first = choose(fleet, 256, 1, () => 0.999);
    expect('node' in first && first.node.member.name).toBe('a');
    const two = choose(fleet, 256, 2, () => 0.999);
    expect('node' in two && two.node.member.name).toBe('b');
  });

  it('gives every reason when nothing fits', () => {
    const r = choose([node('b', { slots: 1, used: 1 }), node('a', { alive: false })], 256, 3);
    expect(r).toEqual({ reason: 'no node fits: a unreachable; b full (1/1 sessions)' });
    expect(choose([], 256, 3)).toEqual({ reason: 'no node is registered in the fleet' });
  });
});

describe('placement against etcd', () => {
  const e = oneEtcd('unit', 7);
  let etcd: Etcd3;
  const desired = (id: string): Omit<Desired, 'placed_at'> => ({ id, owner_uid: 0, owner_gids: [], request: {}, memory_mb: 256, entry: 'a' });
  const member = async (name: string, slots: number) => {
    await etcd.put(key.member(name)).value(JSON.stringify(node(name, { slots }).member));
    await etcd.put(key.alive(name)).value('{}');
  };

  beforeEach(() => {
    etcd = e.client;
  });

  it('books a node: its allocation and the desired state it watches, in one transaction', async () => {
    await etcd.delete().prefix('/enclave/');
    await member('a', 1);
    await member('b', 1);
    expect(await place(etcd, desired('s-0000000001'), 3)).toEqual({ node: 'a' });
    expect(await place(etcd, desired('s-0000000002'), 3)).toEqual({ node: 'b' });
    expect(await place(etcd, desired('s-0000000003'), 3)).toEqual({ reason: 'no node fits: a full (1/1 sessions); b full (1/1 sessions)' });
    expect(JSON.parse((await etcd.get(key.desired('a', 's-0000000001')).string())!)).toMatchObject({ id: 's-0000000001', memory_mb: 256 });
    expect(Object.keys(JSON.parse((await etcd.get(key.alloc('b')).string())!).sessions)).toEqual(['s-0000000002']);
  });

  /**
   * The client, with its first transaction commit failing as one does when
   * etcd loses its leader: applied first, or not at all; `between` runs after
   * it applied and before the client sends it again.
   */
  const leaderLostOnce = (applied: boolean, between?: () => Promise<void>): Etcd3 => {
    let failed = false;
    return commitsThrough(etcd, async (commit) => {
      if (failed) return commit();
      failed = true;
      if (applied) await commit();
      await between?.();
      throw new Error('14 UNAVAILABLE: etcdserver: request timed out, possibly due to previous leader failure');
    });
  };

  /** The client, each transaction sent twice as it re-sends one whose answer a leader change lost: the second answer is the caller's. */
  const sentTwice = (): Etcd3 => commitsThrough(etcd, async (commit) => (await commit(), commit()));

  for (const applied of [true, false]) {
    it(`places a session once through a leader change that cut its booking's answer (${applied ? 'applied' : 'not applied'})`, async () => {
      await etcd.delete().prefix('/enclave/');
      await member('a', 4);
      await member('b', 4);
      const id = applied ? 's-00000000a1' : 's-00000000a2';
      const r = await place(leaderLostOnce(applied), desired(id), 3);
      expect(r).toHaveProperty('node');
      const placed = [...(await etcd.getAll().prefix('/enclave/desired/').keys())].filter((k) => k.endsWith(`/${id}`));
      expect(placed).toEqual([key.desired((r as { node: string }).node, id)]);
    });
  }

  it('takes a booking whose answer was lost as booked when its node failed the create and removed its placement before the resend', async () => {
    await etcd.delete().prefix('/enclave/');
    await member('a', 4);
    await member('b', 4);
    const id = 's-00000000a3';
    let on = '';
    // The booked node's worker, at once: the create failed, its report and the placement's removal in one transaction.
    const failedThere = async () => {
      const [k] = (await etcd.getAll().prefix('/enclave/desired/').keys()).filter((x) => x.endsWith(`/${id}`));
      on = k!.split('/')[3]!;
      await etcd.delete().key(k!);
      await etcd.put(key.status(id)).value(JSON.stringify({ id, node: on, state: 'failed', error: { code: 'confinement_failed', message: 'no' } }));
    };
    expect(await place(leaderLostOnce(true, failedThere), desired(id), 3)).toEqual({ node: on });
    // Not chosen again: no other node has it.
    expect((await etcd.getAll().prefix('/enclave/desired/').keys()).filter((k) => k.endsWith(`/${id}`))).toEqual([]);
    // A report by another node than the one booked is not this booking's: it books again.
    const other = async () => {
      const [k] = (await etcd.getAll().prefix('/enclave/desired/').keys()).filter((x) => x.endsWith('/s-00000000a4'));
      await etcd.delete().key(k!);
      await etcd.put(key.status('s-00000000a4')).value(JSON.stringify({ id: 's-00000000a4', node: 'zz', state: 'failed' }));
    };
    const r = await place(leaderLostOnce(true, other), desired('s-00000000a4'), 3);
    expect(r).toHaveProperty('node');
    expect((await etcd.getAll().prefix('/enclave/desired/').keys()).filter((k) => k.endsWith('/s-00000000a4'))).toEqual([key.desired((r as { node: string }).node, 's-00000000a4')]);
  });

  it('places a session that names volumes or stored secrets on its entry node alone, or says why not', async () => {
    await etcd.delete().prefix('/enclave/');
    await member('a', 1);
    await member('b', 4);
    for (const request of [{ auth: ['gh'] }, { env_tokens: ['TOKEN'] }, { volumes: [{ name: 'v', target: '/data', readonly: false }] }]) {
      expect(pinnedTo({ request, entry: 'a' })).toBe('a');
    }
    expect(pinnedTo({ request: {}, entry: 'a' })).toBeUndefined();
    expect(pinnedTo({ request: { auth: [] }, entry: 'a' })).toBeUndefined();
    // b has the most room; a is the entry, and takes it.
    expect(await place(etcd, { ...desired('s-00000000b1'), request: { auth: ['gh'] } }, 3)).toEqual({ node: 'a' });
    expect(await place(etcd, { ...desired('s-00000000b2'), request: { auth: ['gh'] } }, 3)).toEqual({ reason: "its volumes and stored secrets are node a's, which cannot take it: no node fits: a full (1/1 sessions)" });
    expect(await place(etcd, desired('s-00000000b3'), 3)).toEqual({ node: 'b' });
  });

  it('refuses a booking made on a stale read: the last slot is booked once', async () => {
    await etcd.delete().prefix('/enclave/');
    await member('a', 1);
    const [seen] = await readFleet(etcd);
    const [one, two] = await Promise.all([book(etcd, seen!, { ...desired('s-00000000a1'), placed_at: 'now' }), book(etcd, seen!, { ...desired('s-00000000a2'), placed_at: 'now' })]);
    expect([one, two].filter(Boolean)).toHaveLength(1);
    expect(Object.keys(JSON.parse((await etcd.get(key.alloc('a')).string())!).sessions)).toHaveLength(1);
    expect((await etcd.getAll().prefix(key.desiredOf('a')).keys()).length).toBe(1);
  });

  it("places a drain's move only on a node it may go to: not the one it leaves, and with a kit only on one that takes kits", async () => {
    await etcd.delete().prefix('/enclave/');
    for (const n of ['a', 'b', 'c']) await member(n, 2);
    await etcd.put(key.features('b')).value(JSON.stringify(['move-kit']));
    // a has the most room, but is left out; c writes no features (an older version).
    const takers = await nodesTakingKits(etcd);
    expect([...takers]).toEqual(['b']);
    // A system session's read-only volume: only a node that stages them (locked) takes it.
    expect([...(await nodesTakingKits(etcd, [STAGED_RO_VOLUMES]))]).toEqual([]);
    await etcd.put(key.features('c')).value(JSON.stringify(['move-kit', STAGED_RO_VOLUMES]));
    expect([...(await nodesTakingKits(etcd, [STAGED_RO_VOLUMES]))]).toEqual(['c']);
    await etcd.delete().key(key.features('c'));
    expect(await place(etcd, desired('s-00000000c1'), 3, { exclude: 'a', pin: null, eligible: (n) => takers.has(n) })).toEqual({ node: 'b' });
    expect(await place(etcd, desired('s-00000000c2'), 3, { exclude: 'b', pin: null, eligible: (n) => n === 'b' })).toHaveProperty('reason');
    expect(await etcd.get(key.desired('b', 's-00000000c2')).string()).toBeNull();
  });

  it('books a pending session only while its entry exists: one destroyed meanwhile is never made', async () => {
    await etcd.delete().prefix('/enclave/');
    await member('a', 2);
    const pending = key.pending('s-00000000b1');
    await etcd.put(pending).value('{}');
    expect(await place(etcd, desired('s-00000000b1'), 3, { fromPending: true })).toEqual({ node: 'a' });
    expect(await etcd.get(pending).string()).toBeNull();
    // Its entry gone (destroyed while pending): nothing is booked.
    expect(await place(etcd, desired('s-00000000b2'), 3, { fromPending: true })).toEqual({ reason: 'gone' });
    expect(await etcd.get(key.desired('a', 's-00000000b2')).string()).toBeNull();
    expect(Object.keys(JSON.parse((await etcd.get(key.alloc('a')).string())!).sessions)).toEqual(['s-00000000b1']);
  });

  it('brings back no pending entry that went, when its write is sent again: destroyed or placed, it stays gone', async () => {
    await etcd.delete().prefix('/enclave/');
    await member('a', 2);
    const p = (id: string): Pending => ({ id, owner_uid: 1000, owner_gids: [], request: {}, memory_mb: 256, limits: { memory_mb: 256, pids: 1024, cpu_percent: 100, tmp_mb: 512, home_mb: 512 }, entry: 'a', reason: 'no node fits', since: 'now' });
    // Written, its transaction sent twice (the first answer lost): written, once.
    expect(await putPending(sentTwice(), p('s-00000000d1'))).toBeUndefined();
    // Destroyed, sent twice: the second send finds its own tombstone. The create's write sent again after it brings nothing back.
    expect(await cancelPending(sentTwice(), 's-00000000d1')).toBe(true);
    expect(await putPending(etcd, p('s-00000000d1'))).toEqual({ destroyed_at: expect.any(String) });
    expect(await etcd.get(key.pending('s-00000000d1')).string()).toBeNull();
    // A destroy of an entry that was never there (or placed) is not its own.
    expect(await cancelPending(etcd, 's-00000000d9')).toBe(false);
    // Placed from pending; the create's write sent again finds where.
    expect(await putPending(etcd, p('s-00000000d2'))).toBeUndefined();
    expect(await place(etcd, desired('s-00000000d2'), 3, { fromPending: true })).toEqual({ node: 'a' });
    expect(await putPending(etcd, p('s-00000000d2'))).toEqual({ placed_on: 'a' });
    expect(await etcd.get(key.pending('s-00000000d2')).string()).toBeNull();
    // The tombstones go by themselves: each under a lease (GONE_TTL_S).
    for (const id of ['s-00000000d1', 's-00000000d2']) expect((await etcd.get(key.gone(id)).exec()).kvs[0]!.lease).not.toBe('0');
  });

  it('never overbooks when many place at once: 12 creates race for 5 slots', async () => {
    await etcd.delete().prefix('/enclave/');
    await member('a', 2);
    await member('b', 3);
    const ids = Array.from({ length: 12 }, (_, i) => `s-${String(i).padStart(10, 'c')}`);
    // Each its own client, as separate nodes would be.
    const clients = ids.map(() => new Etcd3({ hosts: e.endpoints }));
    try {
      const results = await Promise.all(ids.map((id, i) => place(clients[i]!, desired(id), 2)));
      expect(results.filter((r) => 'node' in r)).toHaveLength(5);
      const fleet = await readFleet(etcd);
      expect(fleet.map((n) => Object.keys(n.alloc.sessions).length)).toEqual([2, 3]);
      expect(await etcd.getAll().prefix('/enclave/desired/').keys()).toHaveLength(5);
    } finally {
      for (const c of clients) c.close();
    }
  });

  it('writes its features under its lease, with the node-to-node channel: its version\'s, then what its sessions offer', async () => {
    await etcd.delete().prefix('/enclave/');
    const base = { endpoints: e.endpoints, lease_ttl_s: 1, grace_s: 0, candidates: 3, create_timeout_ms: 1000, compact_interval_s: 0, list_interval_ms: 250 };
    const own = new Etcd3({ hosts: e.endpoints });
    const capacity = () => ({ slots: 1, memory_mb: 1, disk_mb: 1 });
    const staging = new Registry(own, { ...base, node: 'n2', peer: {} } as never, '/run/n2.sock', capacity, pino({ level: 'silent' }), [STAGED_RO_VOLUMES]);
    const hostRoot = new Registry(own, { ...base, node: 'n3', peer: {} } as never, '/run/n3.sock', capacity, pino({ level: 'silent' }));
    const noPeer = new Registry(own, { ...base, node: 'n4' } as never, '/run/n4.sock', capacity, pino({ level: 'silent' }), [STAGED_RO_VOLUMES]);
    try {
      for (const r of [staging, hostRoot, noPeer]) await r.register();
      expect(JSON.parse((await etcd.get(key.features('n2')).string())!)).toEqual(['move-kit', 'move-group', STAGED_RO_VOLUMES]);
      expect(JSON.parse((await etcd.get(key.features('n3')).string())!)).toEqual(['move-kit', 'move-group']);
      expect(await etcd.get(key.features('n4')).string()).toBeNull();
      expect([...(await nodesTakingKits(etcd, [STAGED_RO_VOLUMES]))]).toEqual(['n2']);
    } finally {
      for (const r of [staging, hostRoot, noPeer]) await r.close(true);
      own.close();
    }
  });

  it('registers a node under a lease, and again when the lease is lost', async () => {
    await etcd.delete().prefix('/enclave/');
    const c = { endpoints: e.endpoints, node: 'n1', lease_ttl_s: 1, grace_s: 0, candidates: 3, create_timeout_ms: 1000, compact_interval_s: 0, list_interval_ms: 250 };
    const own = new Etcd3({ hosts: e.endpoints });
    const r = new Registry(own, c, '/run/n1.sock', () => ({ slots: 4, memory_mb: 2048, disk_mb: 100 }), pino({ level: 'silent' }));
    try {
      await r.register();
      expect(await r.nodes()).toEqual([{ name: 'n1', state: 'ready', cordoned: false, endpoint: '/run/n1.sock', sessions: 0, capacity: { slots: 4, memory_mb: 2048, disk_mb: 100 }, used_memory_mb: 0 }]);
      await r.cordon('n1', true);
      expect((await r.nodes())[0]!.state).toBe('cordoned');
      await r.cordon('n1', false);
      // Its lease revoked behind its back (as when etcd expired it): the alive key goes, and the node puts it back under a new lease.
      const first = (await etcd.get(key.alive('n1')).exec()).kvs[0]!.lease;
      await etcd.leaseClient.leaseRevoke({ ID: first });
      expect(await etcd.get(key.alive('n1')).string()).toBeNull();
      const deadline = Date.now() + 30_000;
      let again: string | undefined;
      while (Date.now() < deadline && !again) {
        again = (await etcd.get(key.alive('n1')).exec()).kvs[0]?.lease;
        if (!again) await new Promise((res) => setTimeout(res, 100));
      }
      expect(again).toBeDefined();
      expect(again).not.toBe(first);
      expect((await r.nodes())[0]!.state).toBe('ready');
      // A clean stop revokes it: unreachable at once.
      await r.close(true);
      expect((await readFleet(etcd))[0]!.alive).toBe(false);
    } finally {
      await r.close(true);
      own.close();
    }
  }, 60_000);
});
