// A drain's moves (move.ts) whose node on one end stays away past the
// grace (failure.ts judges it so): what the fleet finishes for it, and what
// the node that was away does with its copy when it is back.
//
// From an away node: a committed move's record goes (the session lives where
// it moved; the away node ends its old copy when back); one never committed
// is lost with that node, and the receiving node ends the copy it made.
// To an away node: never committed, the session's files are still on the
// node it was leaving, where it stays placed: only what etcd holds of the
// away node's copy goes, before that node's sessions are declared lost.
import type { Etcd3, IOperation } from 'etcd3';
import type { Logger } from 'pino';
import { getPrefix } from './etcd.js';
import { placementsAndMoves } from './placement.js';
import { key, lostSchema, moveSchema, oldCopySchema, parsedOrNone, prefix, statusSchema, type Move } from './keys.js';
import type { FenceTarget } from './failure.js';

/** A move record, or null when it does not parse (a move of it is then left alone, as one from or to here). */
export function moveOf(k: string, v: string): Move | null {
  return parsedOrNone(moveSchema, k, v) ?? null;
}

/** The moves to `node` not committed (copying, or being undone), from one read of the moves: key, value, record. */
export function uncommittedTo(node: string, moves: ReadonlyMap<string, string>): Array<[string, string, Move]> {
  const out: Array<[string, string, Move]> = [];
  for (const [k, v] of moves) {
    const rec = moveOf(k, v);
    if (rec !== null && rec.to === node && rec.phase !== 'committed') out.push([k, v, rec]);
  }
  return out;
}

export class AwayMoves {
  constructor(
    private readonly etcd: Etcd3,
    /** This node's name. */
    private readonly me: string,
    private readonly target: FenceTarget,
    private readonly log: Logger,
  ) {}

  /**
   * The moves to a node away past the grace that were not committed: the
   * session's files are still on the node it was leaving, where it stays
   * placed. What etcd holds of the away node's copy goes (its placement,
   * its report, and a lost declaration an older node made of it) before
   * that node's sessions are declared lost, else this one would be, while
   * it is there, stopped; with no placement there the move cannot commit
   * (commitMove), and its record stays for the node it was leaving to undo
   * (move.ts undo, once the away node answers; that node ends its copy
   * itself when it fences: endReleased). Only while that node is still
   * away and the record, report and declaration unchanged.
   */
  async releaseTo(node: string, moves: ReadonlyMap<string, string>): Promise<void> {
    for (const [k, v, rec] of uncommittedTo(node, moves)) {
      const [sk, lk] = [key.status(rec.id), key.lost(rec.id)];
      const [placed, st, lo] = await Promise.all([this.etcd.get(key.desired(node, rec.id)).string(), this.etcd.get(sk).string(), this.etcd.get(lk).string()]);
      const theirs = st !== null && parsedOrNone(statusSchema, sk, st)?.node === node;
      const declared = lo !== null && parsedOrNone(lostSchema, lk, lo)?.node === node;
      if (placed === null && !theirs && !declared) continue; // nothing of that copy left in etcd
      const txn = this.etcd.if(key.alive(node), 'Version', '==', 0).and(k, 'Value', '==', v);
      const ops: IOperation[] = [this.etcd.delete().key(key.desired(node, rec.id))];
      if (theirs) txn.and(sk, 'Value', '==', st), ops.push(this.etcd.delete().key(sk));
      if (declared) txn.and(lk, 'Value', '==', lo), ops.push(this.etcd.delete().key(lk));
      if (!(await txn.then(...ops).commit()).succeeded) continue; // changed meanwhile: the next round reads it again
      this.log.warn({ session: rec.id, from: rec.from, to: node }, 'a move to a node away past the grace never committed: the session stays on the node it was leaving (not lost); the copy there ends');
    }
  }

  /**
   * The moves of a node away past the grace, which it can no longer finish.
   * A committed one's record goes: the session runs on the node it moved
   * to, and the old copy is the away node's to end, which it does when back
   * (fence(): placed on another node); left, the record would stop any later
   * move of the session. One to this node that was not committed: the
   * session is lost with that node (its files are there: declareLost()),
   * and the copy made here goes, its placement here and the record first,
   * then the copy with what its kit made here, marked moved back (a later
   * move here may make it again).
   * Each only while that node is still away and the record unchanged: back,
   * it finishes its moves itself (src/fleet/move.ts).
   */
  async finishFrom(node: string, moves: ReadonlyMap<string, string>): Promise<void> {
    const me = this.me;
    for (const [k, v] of moves) {
      const rec = moveOf(k, v);
      if (rec === null) continue;
      const committed = rec.phase === 'committed';
      if (rec.from !== node || (!committed && rec.to !== me)) continue;
      // A committed one leaves the away node word of its old copy there, which it ends when back whatever
      // became of the session meanwhile (destroyed or lost where it moved, it is placed nowhere: endMarked).
      const ops = committed
        ? [this.etcd.delete().key(k), this.etcd.put(key.oldCopy(node, rec.id)).value(JSON.stringify({ id: rec.id, to: rec.to }))]
        : [this.etcd.delete().key(key.desired(me, rec.id)), this.etcd.delete().key(k)];
      const r = await this.etcd.if(key.alive(node), 'Version', '==', 0).and(k, 'Value', '==', v).then(...ops).commit();
      // A compare that failed because this very transaction, sent again (etcd.ts), applied: the record and the placement here gone.
      const applied = async () => !committed && (await this.etcd.get(k).string()) === null && (await this.etcd.get(key.desired(me, rec.id)).string()) === null;
      if (!r.succeeded && !(await applied())) continue;
      if (committed) {
        this.log.warn({ session: rec.id, from: node, to: rec.to }, "a committed move's record of a node away past the grace removed: its old copy ends there when it is back");
      } else {
        this.log.warn({ session: rec.id, from: node }, 'a move here from a node away past the grace was never committed: the copy made here goes (the session is lost with that node)');
        if (this.target.held().includes(rec.id)) await this.target.discard(rec.id, node).catch((e: Error) => this.log.error({ session: rec.id, err: e.message }, 'cannot end the copy of a move never committed'));
      }
    }
  }

  /**
   * This node's copies of sessions a drain was moving here that the fleet
   * released while this node was away (releaseTo: the move never committed,
   * and is no longer placed here): ended at the fence, before this node
   * opens, as a lost one is; the node they came from still undoes the move
   * (this node confirms: the copy is gone). Left running, an empty copy
   * would run here beside the session started where it is.
   */
  async endReleased(placedHere: ReadonlySet<string>): Promise<void> {
    const held = new Set(this.target.held());
    for (const [k, v] of await getPrefix(this.etcd, prefix.move)) {
      const rec = moveOf(k, v);
      if (rec === null || rec.to !== this.me || rec.phase === 'committed' || placedHere.has(rec.id) || !held.has(rec.id)) continue;
      if ((await this.etcd.get(key.desired(this.me, rec.id)).string()) !== null) continue; // placed here after all
      this.log.warn({ session: rec.id, from: rec.from }, "fencing: the fleet released this node's copy of a drain's move here while it was away (never committed); ending it (the session is on the node it was leaving)");
      // Not a reason to stay closed: the node it came from undoes the move, which ends it too.
      await this.target.discard(rec.id, rec.from).catch((e: Error) => this.log.error({ session: rec.id, err: e.message }, 'cannot end a released copy of a move here; its undo ends it'));
    }
  }

  /**
   * The old copies of committed moves the fleet left this node word of
   * while it was away (finishFrom): each ended, stopped, with the move on
   * its trail (naming the node the session is placed on now, else the one
   * it moved to), then its word removed; at the fence and with each sweep
   * of old copies after (failure.ts endOldCopies), until it is ended. The
   * word waits while a move from or to here runs, while the session is
   * placed here and elsewhere (a move here being booked), and while the
   * fleet shows it lost where it moved (this copy is then the last of its
   * files, as they were when it moved: kept until its owner destroys the
   * lost one). It is stale, and goes, once the session is placed here alone.
   * A word of a move undone while this node was removed from the fleet
   * (under undone/: move.ts undo) ends its copy in any state, with what the
   * move's kit made here, as the undo would have (discard).
   */
  async endMarked(): Promise<void> {
    const me = this.me;
    const [old, undone] = await Promise.all([getPrefix(this.etcd, key.oldCopiesOf(me)), getPrefix(this.etcd, key.undoneOf(me))]);
    const words = new Map([...old, ...undone]);
    if (words.size === 0) return;
    // At one revision: read apart, a move could begin and end between them.
    const { where, moves } = await placementsAndMoves(this.etcd);
    const drop = (k: string, v: string) => this.etcd.if(k, 'Value', '==', v).then(this.etcd.delete().key(k)).commit();
    for (const [k, v] of words) {
      const parsedWord = parsedOrNone(oldCopySchema, k, v);
      const word = parsedWord && { ...parsedWord, undone: undone.has(k) };
      if (word === undefined) {
        this.log.warn({ key: k }, 'removing word of an old copy that does not parse');
        await drop(k, v);
        continue;
      }
      const log = this.log.child({ session: word.id });
      const at = where.get(word.id) ?? [];
      const rv = moves.get(key.move(word.id));
      const move = rv === undefined ? undefined : moveOf(key.move(word.id), rv);
      if (move === null || move?.from === me || move?.to === me) continue;
      if (at.includes(me)) {
        if (at.length === 1) await drop(k, v);
        continue;
      }
      const state = this.target.stateOf(word.id);
      const live = state !== undefined && state !== 'destroyed' && state !== 'failed';
      // A copy of a move undone without this node (removed from the fleet) ends in any state, as an undo ends it.
      if (word.undone ? live : state === 'stopped') {
        if ((await this.etcd.get(key.lost(word.id)).string()) !== null) continue;
        const to = at[0] ?? word.to;
        try {
          if (word.undone) {
            log.warn({ node: to }, "a drain's move here was undone while this node was out of the fleet (never committed); ending its copy here");
            await this.target.discard(word.id, to);
          } else {
            log.warn({ node: to }, 'this session moved to another node while this node was away; ending the old copy here');
            await this.target.forget(word.id, to);
          }
        } catch (e) {
          log.error({ err: (e as Error).message }, 'cannot end the old copy of a moved session; trying again later');
          continue;
        }
      } else if (live) {
        continue; // between states now: the next sweep
      }
      await drop(k, v);
    }
  }
}
