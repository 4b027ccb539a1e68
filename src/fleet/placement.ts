// Placement: which node a new session goes to. Pure choice (fits, then best
// of K by free capacity) over a snapshot of the fleet, and the transaction
// that books it: the node's allocation key is compared by revision, so two
// nodes placing at once cannot both book its last slot; the loser reads
// again and chooses again.
import type { Etcd3, IOperation } from 'etcd3';
import { atOneRevision, getPrefix, getWithRev } from './etcd.js';
import { allocSchema, idOfKey, key, memberSchema, parseValue, placementOfKey, prefix, statusSchema, type Alloc, type Desired, type Gone, type Member } from './keys.js';
import { goneLease } from './pending.js';

export interface NodeView {
  member: Member;
  alive: boolean;
  cordoned: boolean;
  alloc: Alloc;
  /** The alloc key's mod revision ('0': none yet). */
  allocRev: string;
}

export const usedSlots = (n: NodeView) => Object.keys(n.alloc.sessions).length;
export const usedMemory = (n: NodeView) => Object.values(n.alloc.sessions).reduce((a, s) => a + s.memory_mb, 0);

/** Why a node cannot take a session of `memoryMb`, or null if it fits. */
export function unfit(n: NodeView, memoryMb: number): string | null {
  const name = n.member.name;
  if (!n.alive) return `${name} unreachable`;
  if (n.cordoned) return `${name} cordoned`;
  const slots = usedSlots(n);
  if (slots >= n.member.capacity.slots) return `${name} full (${slots}/${n.member.capacity.slots} sessions)`;
  const free = n.member.capacity.memory_mb - usedMemory(n);
  if (free < memoryMb) return `${name} has ${free} MiB of memory free, ${memoryMb} asked`;
  return null;
}

/**
 * The node to place on: among those that fit, K taken at random (the power
 * of K choices: no node is everyone's first pick), the one with the most free
 * slots (as a share of its own), then the most free memory. With K at least
 * the fleet's size it is simply the emptiest. Null and the reasons when none fits.
 */
export function choose(nodes: NodeView[], memoryMb: number, k: number, random: () => number = Math.random): { node: NodeView } | { reason: string } {
  const fits = nodes.filter((n) => unfit(n, memoryMb) === null);
  if (fits.length === 0) {
    const why = nodes.map((n) => unfit(n, memoryMb)!).sort();
    return { reason: nodes.length === 0 ? 'no node is registered in the fleet' : `no node fits: ${why.join('; ')}` };
  }
  const pool = [...fits];
  for (let i = pool.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [pool[i], pool[j]] = [pool[j]!, pool[i]!];
  }
  const free = (n: NodeView) => (n.member.capacity.slots - usedSlots(n)) / Math.max(1, n.member.capacity.slots);
  const best = pool.slice(0, k).sort((a, b) => free(b) - free(a) || b.member.capacity.memory_mb - usedMemory(b) - (a.member.capacity.memory_mb - usedMemory(a)) || a.member.name.localeCompare(b.member.name))[0]!;
  return { node: best };
}

/** The fleet as placement sees it: every member, whether it is alive or cordoned, and its allocation with its revision. */
export async function readFleet(etcd: Etcd3): Promise<NodeView[]> {
  const [members, alive, cordons, allocs] = await Promise.all([getPrefix(etcd, prefix.members), getPrefix(etcd, prefix.alive), getPrefix(etcd, prefix.cordon), etcd.getAll().prefix(prefix.alloc).exec()]);
  const allocOf = new Map(allocs.kvs.map((kv) => [kv.key.toString(), { value: kv.value.toString(), rev: kv.mod_revision }]));
  const out: NodeView[] = [];
  for (const [k, v] of members) {
    const member = parseValue(memberSchema, k, v);
    const a = allocOf.get(key.alloc(member.name));
    out.push({
      member,
      alive: alive.has(key.alive(member.name)),
      cordoned: cordons.has(key.cordon(member.name)),
      alloc: a ? parseValue(allocSchema, key.alloc(member.name), a.value) : { sessions: {} },
      allocRev: a?.rev ?? '0',
    });
  }
  return out.sort((a, b) => a.member.name.localeCompare(b.member.name));
}

/**
 * Book `d` on the node `n` was read with: in one transaction, if its
 * allocation is still the one read, add the session to it and write the
 * desired state the node watches. `pendingLease`: `d` is a pending entry's,
 * booked only while the entry is there (one its owner destroyed meanwhile is
 * not made), which goes, leaving its tombstone under that lease (pending.ts).
 * False when another placement (or the node's own accounting) came first.
 * True also when this very booking (the same value, `placed_at` and all:
 * each attempt its own) was there already: the etcd client re-sends a call
 * whose answer a leader change lost, and then the first send, applied, makes
 * the second fail its compare; or when its node reported the session (its
 * create there done, or failed and its placement removed, before the
 * second send).
 */
export async function book(etcd: Etcd3, n: NodeView, d: Desired, pendingLease?: string): Promise<boolean> {
  const alloc: Alloc = { sessions: { ...n.alloc.sessions, [d.id]: { memory_mb: d.memory_mb } } };
  const value = JSON.stringify(d);
  const ops: IOperation[] = [etcd.put(key.alloc(n.member.name)).value(JSON.stringify(alloc)), etcd.put(key.desired(n.member.name, d.id)).value(value)];
  // Only on a member: one removed since it was read (nodeRemoval.ts, its allocation deleted) takes nothing.
  const txn = etcd.if(key.alloc(n.member.name), 'Mod', '==', n.allocRev).and(key.member(n.member.name), 'Version', '>', 0);
  if (pendingLease !== undefined) {
    const gone: Gone = { placed_on: n.member.name };
    ops.push(etcd.delete().key(key.pending(d.id)), etcd.put(key.gone(d.id)).value(JSON.stringify(gone)).lease(pendingLease));
    txn.and(key.pending(d.id), 'Version', '>', 0);
  }
  const r = await txn
    .then(...ops)
    .else(etcd.get(key.desired(n.member.name, d.id)), etcd.get(key.status(d.id)))
    .commit();
  if (r.succeeded || r.responses[0]?.response_range?.kvs[0]?.value.toString() === value) return true;
  // Its placement gone already: the node made it, or failed to and removed it, and reported so. The id is this
  // create's own and no other attempt applied, so a report from that node means this booking did.
  const reported = r.responses[1]?.response_range?.kvs[0]?.value.toString();
  try {
    return reported !== undefined && parseValue(statusSchema, key.status(d.id), reported).node === n.member.name;
  } catch {
    return false; // a report that does not parse says nothing of this booking
  }
}

/**
 * How long a placement asks again after etcd lost its leader: within the
 * fleet operation's bound (deadline.ts), so that what it finds is used.
 */
const PLACE_RETRY_MS = 13_500;

/** An error of a leader change (a request in flight may or may not have been applied), or of an attempt cut by its deadline (etcd.ts). */
const leaderLost = (e: unknown): boolean => /UNAVAILABLE|DEADLINE_EXCEEDED|leader|request timed out/i.test(e instanceof Error ? e.message : String(e));

/** The nodes `id` is placed on (keys only, not the placements' values). */
export async function placedNodes(etcd: Etcd3, id: string): Promise<string[]> {
  return (await etcd.getAll().prefix(prefix.desired).keys()).map(placementOfKey).filter((p) => p.id === id).map((p) => p.node);
}

/**
 * Where each session is placed (/enclave/desired/NODE/ID, keys alone: a
 * value holds a whole create request; on two nodes while a move copies it)
 * and every move record, by key, in one transaction (one revision: read
 * apart, a move could begin and end between them).
 */
export async function placementsAndMoves(etcd: Etcd3): Promise<{ where: Map<string, string[]>; moves: Map<string, string> }> {
  const [moveKvs, placedKvs] = await atOneRevision(etcd, [{ prefix: prefix.move }, { prefix: prefix.desired, keysOnly: true }]);
  const moves = new Map(moveKvs!.map((kv) => [kv.key.toString(), kv.value.toString()]));
  const where = new Map<string, string[]>();
  for (const kv of placedKvs!) {
    const { node, id } = placementOfKey(kv.key.toString());
    where.set(id, [...(where.get(id) ?? []), node]);
  }
  return { where, moves };
}

/** Every placed session's id, once per node it is placed on (keys only). */
export async function placedIds(etcd: Etcd3): Promise<string[]> {
  return (await etcd.getAll().prefix(prefix.desired).keys()).map(idOfKey);
}

/**
 * The node a session must run on, if any: one whose request names volumes or
 * stored secrets runs where they are, on the node that took its create
 * (they are per node: a volume is an image on its disk, a secret a row of its
 * database). A drain's move places it with no pin (they follow it,
 * moveKit.ts) and names the drained node its entry: the node it is made on
 * asks that node for them.
 */
export function pinnedTo(d: Pick<Desired, 'request' | 'entry'>): string | undefined {
  const r = d.request;
  return r.volumes?.length || r.auth?.length || r.env_tokens?.length ? d.entry : undefined;
}

/**
 * `f()` until etcd answers it, within `deadline`: after a leader change (or
 * an attempt cut by its deadline, etcd.ts) it is sent again as it was. For a
 * booking that matters: the lost send may still commit, and sent again
 * unchanged it is the same transaction (whichever send commits first, the
 * other fails its compare and its else branch finds the booking its own;
 * once the node's allocation moved on, the lost send can never commit).
 * Choosing again before that could book a second node while the first
 * booking was still in flight.
 */
async function untilAnswered<T>(f: () => Promise<T>, deadline: number): Promise<T> {
  for (;;) {
    try {
      return await f();
    } catch (e) {
      if (!leaderLost(e) || Date.now() > deadline) throw e;
      await new Promise((r) => setTimeout(r, 200));
    }
  }
}

/**
 * Place `d` on a node that fits (its entry node alone when pinnedTo() says so), retrying lost races; the node's name, or
 * why none fits ('gone': `fromPending`, its pending entry was removed). A
 * booking whose answer a leader change lost is sent again as it was until
 * etcd answers it (untilAnswered), so it is never booked twice; one etcd
 * member killed must fail no create (issue 28).
 */
export interface PlaceOptions {
  /** A pending entry placed once a node fits (its tombstone lease: pending.ts). */
  fromPending?: boolean;
  /** A node it must not go to (a drain's move: the node it leaves). */
  exclude?: string;
  /** The one node it may go to; null: any (a drain's move, whose volumes and secrets follow it: moveKit.ts). Default: pinnedTo(). */
  pin?: string | null;
  /** Only nodes this says yes to (a drain's move with a kit: nodes that take one). */
  eligible?: (node: string) => boolean;
}

export async function place(etcd: Etcd3, d: Omit<Desired, 'placed_at'>, k: number, o: PlaceOptions = {}): Promise<{ node: string } | { reason: string }> {
  const { fromPending = false, exclude, eligible } = o;
  const pin = o.pin === undefined ? (pinnedTo(d) ?? null) : o.pin;
  const deadline = Date.now() + PLACE_RETRY_MS;
  // A pending entry's tombstone lease, granted once a node fits (a pending entry waits without one).
  let lease: string | undefined;
  for (let attempt = 0; attempt < 50; ) {
    // No booking starts past the bound: its caller was told the fleet did not answer.
    if (Date.now() > deadline) throw new Error(`placement did not finish within ${PLACE_RETRY_MS} ms`);
    const fleet = await untilAnswered(() => readFleet(etcd), deadline);
    const c = choose(fleet.filter((n) => n.member.name !== exclude && (pin === null || n.member.name === pin) && (eligible?.(n.member.name) ?? true)), d.memory_mb, k);
    if ('reason' in c) {
      if (pin === null) return c;
      const why = fleet.some((n) => n.member.name === pin) ? c.reason : 'it is not in the fleet (removed: node remove)';
      return { reason: `its volumes and stored secrets are node ${pin}'s, which cannot take it: ${why}` };
    }
    if (fromPending) lease ??= await untilAnswered(() => goneLease(etcd), deadline);
    const booking = { ...d, placed_at: new Date().toISOString() };
    if (await untilAnswered(() => book(etcd, c.node, booking, lease), deadline)) return { node: c.node.member.name };
    if (fromPending && (await etcd.get(key.pending(d.id)).string()) === null) return { reason: 'gone' };
    attempt++;
  }
  throw new Error('placement lost 50 races in a row for the same session; try again');
}

export { getWithRev };
