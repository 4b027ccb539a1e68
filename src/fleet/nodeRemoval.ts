// `node remove NAME`: a node that is gone for good leaves the fleet, as
// `kubectl delete node` removes a Node object. Until then every node judges
// it each second and lists it unreachable, and a drain's move to it holds
// its record (move.ts undo asks that node to confirm its copy is gone).
//
// Only a node that is gone: not registered (no live lease), with nothing
// placed on it any more (past the grace its sessions were declared lost and
// its copies of moves released: failure.ts), and no move from it left that
// another node finishes (awayMoves.ts finishFrom). What goes is what etcd
// holds of the node as a member: its member record, cordon, drain,
// allocation, down mark and list, in one transaction that holds only while
// it is still unregistered (a registration writes its member record and
// alive key together: registry.ts) and its allocation unchanged. Its
// sessions' lost statuses and its old-copy words stay: they are what the
// node, should it come back after all, fences and ends by (it registers
// anew, as any node back past the grace); the lost records are their
// owners' to remove. A move to it is undone by the node it was leaving
// once that node reads it gone, which leaves it word of its copy (move.ts).
// A move from it to a node gone too, whose copy there was released, no node
// would finish: the removal takes it over, leaving that node the same word.
import type { Etcd3, IOperation } from 'etcd3';
import { ApiError } from '../vocab/errors.js';
import { atOneRevision } from './etcd.js';
import { downSchema, key, lostSchema, moveSchema, parsedOrNone, placementOfKey, prefix, type Move, type OldCopy } from './keys.js';

export interface Removal {
  /** The node removed. */
  node: string;
  /** Its sessions the fleet declared lost whose owners have not removed them yet (they stay, listed lost). */
  lost: number;
}

/** Tries when what was read changed before the removal applied (a round of the judges writing its allocation). */
const TRIES = 3;
/** No try starts past this, ms: under the fleet operation's bound (deadline.ts), so none applies after its caller was answered. */
const TRY_WITHIN_MS = 10_000;

/** What a removal reads of the fleet, at one revision. */
interface Read {
  member: { rev: string } | undefined;
  alive: boolean;
  alloc: { rev: string } | undefined;
  down: string | undefined;
  /** Every placement: node and session. */
  placed: Array<{ node: string; id: string }>;
  moves: Map<string, string>;
  alives: Set<string>;
  /** How many lost records name the node. */
  lost: number;
}

async function read(etcd: Etcd3, node: string): Promise<Read> {
  const [member, alive, alloc, down, placed, moves, alives, lost] = await atOneRevision(etcd, [
    { key: key.member(node) },
    { key: key.alive(node) },
    { key: key.alloc(node) },
    { key: key.down(node) },
    { prefix: prefix.desired, keysOnly: true },
    { prefix: prefix.move },
    { prefix: prefix.alive, keysOnly: true },
    { prefix: prefix.lost },
  ]);
  const m = member![0];
  const a = alloc![0];
  return {
    member: m && { rev: m.mod_revision },
    alive: alive!.length > 0,
    alloc: a && { rev: a.mod_revision },
    down: down![0]?.value.toString(),
    placed: placed!.map((kv) => placementOfKey(kv.key.toString())),
    moves: new Map(moves!.map((kv) => [kv.key.toString(), kv.value.toString()])),
    alives: new Set(alives!.map((kv) => kv.key.toString().slice(prefix.alive.length))),
    lost: lost!.filter((kv) => parsedOrNone(lostSchema, kv.key.toString(), kv.value.toString())?.node === node).length,
  };
}

/** Remove node `node` from the fleet, asked on node `self` (ApiError: what stops it, and what to do). */
export async function removeNode(etcd: Etcd3, node: string, self: string, graceS: number): Promise<Removal> {
  if (node === self) throw new ApiError('conflict', `node ${node} is this node: stop its daemon, then remove it through another node`, 'name');
  const deadline = Date.now() + TRY_WITHIN_MS;
  for (let t = 0; t < TRIES && (t === 0 || Date.now() < deadline); t++) {
    const f = await read(etcd, node);
    if (f.member === undefined) {
      // This very removal, sent again after its answer was lost (etcd.ts), applied, or another caller's: the member is gone.
      if (t > 0) return { node, lost: f.lost };
      throw new ApiError('not_found', `no node ${node} in the fleet`, 'name');
    }
    if (f.alive) throw new ApiError('conflict', `node ${node} is registered (its lease is live): only a node that is gone can be removed; drain it and stop its daemon first`, 'name');
    const here = f.placed.filter((p) => p.node === node).length;
    if (here > 0) throw new ApiError('conflict', `node ${node} still has ${here} session${here > 1 ? 's' : ''} placed on it: ${whenLost(node, f.down, graceS)}`, 'name');
    const taken = takenOver(node, f, graceS);
    const txn = etcd.if(key.alive(node), 'Version', '==', 0).and(key.member(node), 'Mod', '==', f.member.rev);
    if (f.alloc === undefined) txn.and(key.alloc(node), 'Version', '==', 0);
    else txn.and(key.alloc(node), 'Mod', '==', f.alloc.rev);
    const ops: IOperation[] = [key.member, key.cordon, key.drain, key.alloc, key.down, key.listing, key.listSeq, key.features].map((k) => etcd.delete().key(k(node)));
    ops.push(etcd.delete().prefix(key.listedOf(node)));
    for (const [k, v, rec] of taken) {
      // Still the record read, and the node it went to still away and holding no placement of it.
      txn.and(k, 'Value', '==', v).and(key.alive(rec.to), 'Version', '==', 0).and(key.desired(rec.to, rec.id), 'Version', '==', 0);
      const word: OldCopy = { id: rec.id, to: node };
      ops.push(etcd.delete().key(k), etcd.put(key.undone(rec.to, rec.id)).value(JSON.stringify(word)));
    }
    if ((await txn.then(...ops).commit()).succeeded) return { node, lost: f.lost };
  }
  throw new ApiError('conflict', `node ${node} kept changing while it was being removed (registered again, or a session placed on it): look at node list, and try again`, 'name');
}

/** When the sessions placed on a node away are declared lost, as the refusal says it. */
function whenLost(node: string, down: string | undefined, graceS: number): string {
  const since = down === undefined ? undefined : parsedOrNone(downSchema, key.down(node), down)?.since;
  const ms = since === undefined ? NaN : Date.parse(since) + graceS * 1000;
  const base = `the fleet declares them lost once it has been unreachable for ${graceS} s (cluster.grace_s`;
  if (!Number.isFinite(ms)) return `${base}); remove it after`;
  return `${base}; unreachable since ${since}): ${ms > Date.now() ? `remove it after ${new Date(ms).toISOString()}` : 'any moment now; try again in a few seconds'}`;
}

/**
 * The moves from `node` the removal finishes itself: never committed, to a
 * node away whose copy was released (no placement there). Any other move
 * from it refuses the removal: another node finishes it past the grace.
 */
function takenOver(node: string, f: Read, graceS: number): Array<[string, string, Move]> {
  const out: Array<[string, string, Move]> = [];
  for (const [k, v] of f.moves) {
    const rec = parsedOrNone(moveSchema, k, v);
    if (rec === undefined || rec.from !== node) continue;
    const past = `once ${node} has been away for ${graceS} s (cluster.grace_s): try again then`;
    if (rec.phase === 'committed') throw new ApiError('conflict', `the move of session ${rec.id} from node ${node} to node ${rec.to} is committed, and its record not removed yet: the fleet removes it ${past}`, 'name');
    if (f.alives.has(rec.to)) throw new ApiError('conflict', `a move of session ${rec.id} from node ${node} to node ${rec.to} is not finished yet: node ${rec.to} finishes it ${past}`, 'name');
    if (f.placed.some((p) => p.node === rec.to && p.id === rec.id)) {
      throw new ApiError('conflict', `a move of session ${rec.id} from node ${node} to node ${rec.to}, which is away too, is not finished yet: its copy there is released once ${rec.to} has been away for ${graceS} s (cluster.grace_s); try again then`, 'name');
    }
    out.push([k, v, rec]);
  }
  return out;
}
