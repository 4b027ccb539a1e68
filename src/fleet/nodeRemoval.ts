// `node remove NAME`: a node that is gone for good leaves the fleet, as
// `kubectl delete node` removes a Node object. Until then every node judges
// it each second and lists it unreachable, and a drain's move to it holds
// its record (move.ts undo asks that node to confirm its copy is gone).
//
// Only a node that is gone: not registered (no live lease), with nothing
// placed on it any more (past the grace its sessions were declared lost and
// its copies of moves released: failure.ts), and no move from it left for
// the fleet to finish (awayMoves.ts finishFrom runs only for members). What
// goes is what etcd holds of the node itself: its member record, cordon,
// drain, allocation, down mark, list and its old-copy words, in one
// transaction that holds only while it is still unregistered and its
// allocation unchanged. Its sessions' lost records stay: they are their
// owners' to remove. A move to it is undone by the node it was leaving once
// that node reads it gone (the undo has no one to ask). Should the node
// come back, it registers anew and fences as any node back past the grace.
import type { Etcd3 } from 'etcd3';
import { ApiError } from '../vocab/errors.js';
import { getPrefix, getWithRev } from './etcd.js';
import { downSchema, key, lostSchema, moveSchema, parsedOrNone, prefix } from './keys.js';

export interface Removal {
  /** The node removed. */
  node: string;
  /** Its sessions the fleet declared lost whose owners have not removed them yet (they stay, listed lost). */
  lost: number;
}

/** Remove node `node` from the fleet, asked on node `self` (ApiError: what stops it, and what to do). */
export async function removeNode(etcd: Etcd3, node: string, self: string, graceS: number): Promise<Removal> {
  if (node === self) throw new ApiError('conflict', `node ${node} is this node: stop its daemon, then remove it through another node`, 'name');
  const [member, alive, alloc, placed, moves, down] = await Promise.all([
    getWithRev(etcd, key.member(node)),
    etcd.get(key.alive(node)).string(),
    getWithRev(etcd, key.alloc(node)),
    etcd.getAll().prefix(key.desiredOf(node)).keys(),
    getPrefix(etcd, prefix.move),
    etcd.get(key.down(node)).string(),
  ]);
  if (member.value === null) throw new ApiError('not_found', `no node ${node} in the fleet`, 'name');
  if (alive !== null) throw new ApiError('conflict', `node ${node} is registered (its lease is live): only a node that is gone can be removed; drain it and stop its daemon first`, 'name');
  if (placed.length > 0) {
    const since = down === null ? undefined : parsedOrNone(downSchema, key.down(node), down)?.since;
    throw new ApiError(
      'conflict',
      `node ${node} still has ${placed.length} session${placed.length > 1 ? 's' : ''} placed on it: the fleet declares them lost once it has been unreachable for ${graceS} s (cluster.grace_s${since ? `; unreachable since ${since}` : ''}); remove it after`,
      'name',
    );
  }
  for (const [k, v] of moves) {
    const rec = parsedOrNone(moveSchema, k, v);
    if (rec?.from === node) throw new ApiError('conflict', `a move of session ${rec.id} from node ${node} to node ${rec.to} is not finished yet (node ${rec.to} finishes it once ${node} has been away for ${graceS} s): try again then`, 'name');
  }
  // Only while it is still the node read: unregistered (back, it keeps all of it), the same member record,
  // and no placement booked on it since (a booking changes its allocation).
  const txn = etcd.if(key.alive(node), 'Version', '==', 0).and(key.member(node), 'Mod', '==', member.rev);
  if (alloc.value === null) txn.and(key.alloc(node), 'Version', '==', 0);
  else txn.and(key.alloc(node), 'Mod', '==', alloc.rev);
  const r = await txn
    .then(
      ...[key.member, key.cordon, key.drain, key.alloc, key.down, key.listing, key.listSeq, key.features].map((k) => etcd.delete().key(k(node))),
      etcd.delete().prefix(key.listedOf(node)),
      etcd.delete().prefix(key.oldCopiesOf(node)),
    )
    .commit();
  if (!r.succeeded) {
    // This very removal, sent again after its answer was lost (etcd.ts), applied: the member is gone.
    if ((await etcd.get(key.member(node)).string()) === null) return { node, lost: await lostOn(etcd, node) };
    throw new ApiError('conflict', `node ${node} changed while it was being removed (registered again, or a session placed on it): look at node list, and try again`, 'name');
  }
  return { node, lost: await lostOn(etcd, node) };
}

/** How many lost records name `node`. */
async function lostOn(etcd: Etcd3, node: string): Promise<number> {
  let n = 0;
  for (const [k, v] of await getPrefix(etcd, prefix.lost)) if (parsedOrNone(lostSchema, k, v)?.node === node) n++;
  return n;
}
