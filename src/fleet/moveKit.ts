// What follows a session that a drain moves, beside its stored files: the
// stored secrets of its owner that it declares, and the volumes it alone
// mounts. The receiving node asks the drained node for the kit
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
import { desiredSchema, featuresSchema, key, moveSchema, parseValue, prefix, STAGED_RO_VOLUMES, type Desired, type Move } from './keys.js';
import { moveKitSchema, type MoveKit } from '../api/fleetSchemas.js';
import { nodesSharing, refText } from './sharedHolders.js';

export { moveKitSchema, type MoveKit };

/** What the drained node knows of a session, for kitPlan. */
export interface KitFacts {
  owner: number;
  /** The secrets it declares (whose, which). */
  held: ReadonlyArray<{ owner_uid: number; name: string }>;
  /** The volumes it mounts: the row (undefined: gone), and how many other live sessions here mount it. */
  mounts: ReadonlyArray<{ volume: { id: string; name: string; size_mb: number; owner_uid: number; state: string } | undefined; others: number }>;
  /** Whether the owner's store still holds a secret. */
  stored(owner: number, name: string): boolean;
  /** Whether another owner's secret is still shared here. */
  sharedHere(owner: number, name: string): boolean;
}

/** Another owner's secret, shared (root's: `auth set --shared`). */
export interface SharedRef {
  owner_uid: number;
  name: string;
}

export interface KitPlan {
  secrets: string[];
  volumes: { id: string; name: string; size_mb: number }[];
  /** Another owner's shared secrets it declares: not carried (theirs), it goes only where that owner shares each with the same value. */
  shared: SharedRef[];
}

/**
 * Pure: what follows the session, or why it stays. Only its owner's own
 * secrets and volumes are carried: another owner's shared secret is theirs
 * (the session goes only where they share it too, with the same value:
 * kitTakers), another owner's volume is theirs to place, and a volume
 * another session here mounts too cannot be in two places. One it mounts
 * read-only goes too (the copy there takes its contents read-write once).
 */
export function kitPlan(f: KitFacts): KitPlan | { stays: string } {
  const secrets: string[] = [];
  const shared: SharedRef[] = [];
  for (const h of f.held) {
    if (h.owner_uid !== f.owner) {
      if (!f.sharedHere(h.owner_uid, h.name)) return { stays: `uid ${h.owner_uid}'s secret ${h.name}, which it declares, is no longer shared (it could not start here either)` };
      shared.push({ owner_uid: h.owner_uid, name: h.name });
      continue;
    }
    if (!f.stored(h.owner_uid, h.name)) return { stays: `its secret ${h.name} is no longer stored (it could not start here either)` };
    secrets.push(h.name);
  }
  const volumes: KitPlan['volumes'] = [];
  for (const m of f.mounts) {
    const v = m.volume;
    if (!v || v.state !== 'ready') return { stays: 'a volume it mounts is gone or being removed' };
    if (v.owner_uid !== f.owner) return { stays: `it mounts uid ${v.owner_uid}'s volume ${v.name}, which is not its owner's to move` };
    if (m.others > 0) return { stays: `volume ${v.name} is mounted by ${m.others} other session${m.others > 1 ? 's' : ''} here too` };
    volumes.push({ id: v.id, name: v.name, size_mb: v.size_mb });
  }
  return { secrets, volumes, shared };
}

/** The most a kit's answer may take: a few secrets and volume names. */
const KIT_MS = 30_000;

/**
 * The kit of session `id` from the drained node `from` that moves it here,
 * asked before its copy here is made: an error (its create fails, and the
 * move is undone) when that node is gone, does not give it, or it does not check.
 */
export async function fetchKit(etcd: Etcd3, peers: PeerClient, from: string, id: string): Promise<MoveKit> {
  const m = (await readFleet(etcd)).find((n) => n.member.name === from);
  if (!m) throw new ApiError('conflict', `node ${from}, which moves it here, left the fleet`);
  const path = `/v1/sessions/${id}/move-kit`;
  const a = await peerGet(peers, from, m.member.endpoint, path, {}, KIT_MS);
  if (a.status !== 200) throw new ApiError('conflict', `node ${from} gives none of its volumes and secrets (${a.status}): ${a.body.slice(0, 300)}`);
  return parsed(from, path, () => moveKitSchema.parse(JSON.parse(a.body)));
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
  plan: KitPlan,
  request: Pick<Desired['request'], 'profile' | 'volumes'>,
  macs: (refs: readonly SharedRef[], nonce: string) => ReadonlyMap<string, string>,
): Promise<Set<string> | undefined | { none: string }> {
  if (plan.secrets.length + plan.volumes.length + plan.shared.length === 0) return undefined;
  const needs = featuresNeeded(request);
  const takers = await nodesTakingKits(etcd, needs);
  takers.delete(self);
  if (takers.size === 0) return { none: `no other node is of a version that takes its volumes and secrets along${needs.length ? ', and stages a read-only volume of a session that may remount (a layered root)' : ''}` };
  if (plan.shared.length === 0) return takers;
  const s = await nodesSharing(etcd, peers, self, takers, plan.shared, macs);
  return s.nodes.size > 0 ? s.nodes : { none: `no other node shares ${plan.shared.map(refText).join(', ')} with the value this node holds (its owner shares it there with \`enclave auth set --shared\`)${s.why.length ? `: ${s.why.join('; ')}` : ''}` };
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
  /** All made long enough ago that the move's record, if any, is written. */
  settled: boolean;
  /** All made longer ago than any create of them could take: leftovers when the session has no row. */
  stale: boolean;
}
