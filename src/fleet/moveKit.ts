// What follows a session that a drain moves, beside its stored files: the
// stored secrets of its owner that it declares, and its volumes, with the
// sessions that share them (moved together, groupPlan); root's shared
// secrets are not carried (kitTakers: only where root shares the same
// value, sharedHolders.ts). The receiving node asks the drained node for the kit
// (GET /v1/sessions/ID/move-kit, nodes only, answered only while that very
// move runs), adds the secrets to its store and makes the volumes, empty and
// under the same ids, before it makes the session; the volumes' contents
// are unpacked inside the session before its stored files (moved-in-volume),
// through mounts its first run there holds read-write even where it
// declares one read-only (its next start mounts it as declared).
// A session whose secrets or volumes cannot follow stays where it is.
import type { Etcd3 } from 'etcd3';
import { ApiError } from '../vocab/errors.js';
import { parsed, peerGet } from './peerGet.js';
import type { PeerClient } from './peerClient.js';
import { readFleet } from './placement.js';
import { getPrefix } from './etcd.js';
import { desiredSchema, featuresSchema, key, MOVE_GROUPS, moveSchema, parseValue, prefix, STAGED_RO_VOLUMES, type Desired, type Move } from './keys.js';
import { moveKitSchema, type MoveKit } from '../api/fleetSchemas.js';
import { refText, type OwnMacs, type SharedChecks, type SharedRef } from './sharedHolders.js';

export { moveKitSchema, type MoveKit };

/** What the drained node knows of a session, for kitPlan. */
export interface KitFacts {
  owner: number;
  /** The secrets it declares (whose, which). */
  held: ReadonlyArray<{ owner_uid: number; name: string }>;
  /** The volumes it mounts: the row (undefined: gone), and the other live sessions here that mount it (id, state). */
  mounts: ReadonlyArray<{ volume: { id: string; name: string; size_mb: number; owner_uid: number; state: string } | undefined; others: ReadonlyArray<{ id: string; state: string }> }>;
  /** Whether the owner's store still holds a secret. */
  stored(owner: number, name: string): boolean;
  /** Whether another owner's secret is still shared here. */
  sharedHere(owner: number, name: string): boolean;
}


export interface KitPlan {
  secrets: string[];
  volumes: { id: string; name: string; size_mb: number }[];
  /** Another owner's shared secrets it declares: not carried (theirs), it goes only where that owner shares each with the same value. */
  shared: SharedRef[];
  /** The other sessions here (all stopped) that mount any of its volumes: they move with it, to the same node (groupPlan). */
  with: string[];
}

/**
 * Pure: what follows the session, or why it stays. Only its owner's own
 * secrets and volumes are carried: another owner's shared secret is theirs
 * (the session goes only where they share it too, with the same value:
 * kitTakers), another owner's volume is theirs to place, and a volume
 * cannot be in two places: one that other sessions here mount too goes with
 * all of them, to one node (groupPlan), once every one is stopped. One it
 * mounts read-only goes too (the copy there takes its contents read-write once).
 */
export function kitPlan(f: KitFacts): KitPlan | { stays: string } {
  const secrets: string[] = [];
  const shared: SharedRef[] = [];
  for (const h of f.held) {
    // Another owner's, or one root shares (root's own session's too): never carried, a copy would be shared there.
    if (h.owner_uid !== f.owner || f.sharedHere(h.owner_uid, h.name)) {
      if (!f.sharedHere(h.owner_uid, h.name)) return { stays: `uid ${h.owner_uid}'s secret ${h.name}, which it declares, is no longer shared (it could not start here either)` };
      shared.push({ owner_uid: h.owner_uid, name: h.name });
      continue;
    }
    if (!f.stored(h.owner_uid, h.name)) return { stays: `its secret ${h.name} is no longer stored (it could not start here either)` };
    secrets.push(h.name);
  }
  const volumes: KitPlan['volumes'] = [];
  const withThem: string[] = [];
  for (const m of f.mounts) {
    const v = m.volume;
    if (!v || v.state !== 'ready') return { stays: 'a volume it mounts is gone or being removed' };
    if (v.owner_uid !== f.owner) return { stays: `it mounts uid ${v.owner_uid}'s volume ${v.name}, which is not its owner's to move` };
    const busy = m.others.find((o) => o.state !== 'stopped');
    if (busy) return { stays: `volume ${v.name} is mounted by session ${busy.id} too, which is ${busy.state}: they move together once it is stopped` };
    for (const o of m.others) if (!withThem.includes(o.id)) withThem.push(o.id);
    volumes.push({ id: v.id, name: v.name, size_mb: v.size_mb });
  }
  return { secrets, volumes, shared, with: withThem };
}

/** The most sessions a drain moves together (sharing volumes), to one node. */
export const MAX_GROUP = 8;

/** Sessions that share volumes, moved together to one node. */
export interface GroupPlan {
  /** By id: the order their copies are made in there, each with what follows it. */
  members: Array<{ id: string; plan: KitPlan }>;
  /** Each volume's maker: the first member that mounts it, whose kit makes it there and through whose copy its contents are unpacked. */
  makers: Map<string, string>;
}

/**
 * Pure: session `id` and every session that shares a volume with it,
 * transitively (their volumes cannot be in two places), or why they all
 * stay: one of them stays, or there are more than MAX_GROUP.
 */
export function groupPlan(id: string, planOf: (id: string) => KitPlan | { stays: string } | undefined): GroupPlan | { stays: string } {
  const seen = new Map<string, KitPlan>();
  const queue = [id];
  for (let m = queue.shift(); m !== undefined; m = queue.shift()) {
    if (seen.has(m)) continue;
    const p = planOf(m);
    if (!p || 'stays' in p) return { stays: m === id ? (p?.stays ?? 'it is not here') : `it shares a volume with session ${m}, which stays${p ? `: ${p.stays}` : ' (gone)'}` };
    if (seen.size === MAX_GROUP) return { stays: `its volumes are shared with more than ${MAX_GROUP - 1} other sessions: a drain moves at most ${MAX_GROUP} together` };
    seen.set(m, p);
    queue.push(...p.with);
  }
  const members = [...seen].sort(([a], [b]) => (a < b ? -1 : 1)).map(([mid, plan]) => ({ id: mid, plan }));
  const makers = new Map<string, string>();
  for (const m of members) for (const v of m.plan.volumes) if (!makers.has(v.id)) makers.set(v.id, m.id);
  return { members, makers };
}

/** The most a kit's answer may take: a few secrets and volume names. */
const KIT_MS = 30_000;

/**
 * The kit of session `id` from the drained node `from` that moves it here,
 * asked before its copy here is made: an error (its create fails, and the
 * move is undone) when that node is gone, does not give it, or it does not check.
 */
export async function fetchKit(etcd: Etcd3, peers: PeerClient, self: string, from: string, id: string): Promise<MoveKit> {
  const m = (await readFleet(etcd)).find((n) => n.member.name === from);
  if (!m) throw new ApiError('conflict', `node ${from}, which moves it here, left the fleet`);
  const path = `/v1/sessions/${id}/move-kit`;
  const a = await peerGet(peers, from, m.member.endpoint, path, {}, KIT_MS);
  if (a.status !== 200) throw new ApiError('conflict', `node ${from} gives none of its volumes and secrets (${a.status}): ${a.body.slice(0, 300)}`);
  const kit = parsed(from, path, () => moveKitSchema.parse(JSON.parse(a.body)));
  // A volume made here by another session's kit only while that session is being moved here by the same node.
  for (const w of new Set(kit.volumes.flatMap((v) => (v.with === undefined ? [] : [v.with])))) {
    const r = await moveRecordOf(etcd, w);
    if (r?.from !== from || r.to !== self || r.phase !== 'copying') throw new ApiError('conflict', `node ${from} names volumes made here for session ${w}, which it is not moving here`);
  }
  return kit;
}

/** Session `id`'s placement on `node`, as etcd holds it now. */
export async function placementOn(etcd: Etcd3, node: string, id: string): Promise<Desired | undefined> {
  const v = await etcd.get(key.desired(node, id)).string();
  return v === null ? undefined : parseValue(desiredSchema, key.desired(node, id), v);
}

/**
 * What a node must offer (beyond a move kit) to take this session: a
 * read-only volume of one that may remount (system, or no profile named: the
 * receiving node's default decides) goes only where it is staged, locked.
 */
export function featuresNeeded(request: Pick<Desired['request'], 'profile' | 'volumes'>): string[] {
  const mayRemount = request.profile !== 'workspace' && request.profile !== 'strict';
  return mayRemount && request.volumes?.some((v) => v.readonly) ? [STAGED_RO_VOLUMES] : [];
}

/** The nodes whose version takes a move kit, and offers each of `also` (they wrote so under their registration's lease: keys.ts NODE_FEATURES). */
export async function nodesTakingKits(etcd: Etcd3, also: readonly string[] = []): Promise<Set<string>> {
  const out = new Set<string>();
  for (const [k, v] of await getPrefix(etcd, prefix.features)) {
    let raw: unknown;
    try {
      raw = JSON.parse(v);
    } catch {
      continue; // not written by a node: it takes none
    }
    const r = featuresSchema.safeParse(raw);
    if (r.success && ['move-kit', ...also].every((f) => r.data.includes(f))) out.add(k.slice(prefix.features.length));
  }
  return out;
}

/**
 * The nodes a session with this kit may move to (undefined: any node), or
 * why none may: with anything of a kit, only those whose version takes one
 * (an older one would make it with its own secrets, or not at all) and offers
 * what its request needs; with another owner's shared secrets, only those
 * that share each with the value this node holds.
 */
export async function kitTakers(
  etcd: Etcd3,
  peers: PeerClient,
  self: string,
  members: ReadonlyArray<{ plan: KitPlan; request: Pick<Desired['request'], 'profile' | 'volumes'> }>,
  checks: SharedChecks,
  macs: OwnMacs,
): Promise<Set<string> | undefined | { none: string }> {
  if (members.every(({ plan: p }) => p.secrets.length + p.volumes.length + p.shared.length === 0)) return undefined;
  const needs = [...new Set([...members.flatMap((m) => featuresNeeded(m.request)), ...(members.length > 1 ? [MOVE_GROUPS] : [])])];
  const takers = await nodesTakingKits(etcd, needs);
  takers.delete(self);
  if (takers.size === 0) {
    const also = [needs.includes(STAGED_RO_VOLUMES) ? ', and stages a read-only volume of a session that may remount (a layered root)' : '', members.length > 1 ? ', and takes sessions moved together (sharing volumes)' : ''];
    return { none: `no other node is of a version that takes its volumes and secrets along${also.join('')}` };
  }
  const shared = members.flatMap((m) => m.plan.shared).filter((r, i, all) => all.findIndex((x) => refText(x) === refText(r)) === i);
  if (shared.length === 0) return takers;
  const s = await checks.nodesSharing(etcd, peers, self, takers, shared, macs);
  return s.nodes.size > 0 ? s.nodes : { none: `no other node shares ${shared.map(refText).join(', ')} with the value this node holds (its owner shares it there with \`enclave auth set --shared\`)${s.why.length ? `: ${s.why.join('; ')}` : ''}` };
}

/** Session `id`'s move record (move.ts), as etcd holds it now. */
export async function moveRecordOf(etcd: Etcd3, id: string): Promise<Move | undefined> {
  const v = await etcd.get(key.move(id)).string();
  return v === null ? undefined : parseValue(moveSchema, key.move(id), v);
}

/** The volumes and secrets made on a node for a move of one session (moveKitHere.ts madeForMoves), as its tick sweeps them (move.ts). */
export interface MadeForMove {
  volumes: string[];
  /** The names of the secrets stored for it (its owner had none of them there). */
  secrets: string[];
  /**
   * The session's row on that node: none (never made), live, ended and
   * marked moved away (an undone move's copy, or one a later move took off),
   * or ended otherwise (a committed move's session ended there since).
   */
  row: 'none' | 'live' | 'movedAway' | 'ended';
  /** Its row here is stopped (a moved copy is, once its files are in). */
  stopped: boolean;
  /** All made long enough ago that the move's record, if any, is written. */
  settled: boolean;
  /** All made longer ago than any create of them could take: leftovers when the session has no row. */
  stale: boolean;
}
