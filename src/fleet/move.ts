// Drain and move: a drained node (/enclave/drain/NODE, with its cordon)
// moves its stopped sessions to other nodes, one at a time (those sharing a
// volume together, to one node), itself: it holds their stored files. For
// each: placed elsewhere by the same id (the
// placement's transaction, as any create), made there by that node's
// worker, running and empty; then this node sends the stored files over the
// mutual-TLS channel and that node restores them into it and stops it
// (src/daemon/handlers/moves.ts). Its owner's secrets and its volumes go
// with it (moveKit.ts: that node asks for them before it makes it; the
// volumes' contents are sent before its files; root's shared secrets it
// declares are not carried: it goes only where they are shared with the
// same value, sharedHolders.ts), and the volumes leave this node with the
// last copy here that mounts them. Only then (for all of a group at once,
// movePeers.ts commitMoves) does its placement here go and its copy here
// end (destroyed). Each move is recorded first
// (/enclave/move/ID: from, to, copying or committed), and the record is
// what every tick, drained or not, finishes: a copying move this daemon is
// not running (it died mid-way) is undone there (destroyed first, then its
// placement removed; kept to retry when that node does not confirm), a
// committed one has its old copy here ended. The session is locked here for
// the move: a start or destroy of it is refused (409) until it ends.
import type { Etcd3 } from 'etcd3';
import type { Logger } from 'pino';
import type { SessionState } from '../vocab/states.js';
import { getPrefix } from './etcd.js';
import type { ClusterConfig } from './etcd.js';
import { desiredSchema, key, lostSchema, moveSchema, parsedOrNone, parseValue, prefix, statusSchema, type Desired, type Move, type OldCopy } from './keys.js';
import { place, placedNodes, readFleet, usedMemory, usedSlots } from './placement.js';
import { awaitReport } from './report.js';
import type { PeerClient } from './peerClient.js';
import { kitTakers, moveRecordOf, type GroupPlan, type MadeForMove } from './moveKit.js';
import { askThere, commitMoves, sendFile } from './movePeers.js';
import { SharedChecks, type SharedRef } from './sharedHolders.js';
import { rmSync } from 'node:fs';

/** What a move needs of this node's own sessions (the daemon provides it). */
export interface MoveSource {
  stateOf(id: string): SessionState | undefined;
  /** A stopped session's stored files. */
  stored(id: string): { path: string; zstd: boolean } | undefined;
  /** What follows it to another node (its secrets, its volumes), with the sessions here it shares volumes with, or why they stay; undefined: not here. */
  kit(id: string): GroupPlan | { stays: string } | undefined;
  /** Of root's secrets, those shared here, each by `UID:NAME` with its MAC for a check of node `responder` (sharedHolders.ts sharedMacs). */
  sharedMacs(refs: readonly SharedRef[], nonce: string, responder: string): ReadonlyMap<string, string>;
  /** A volume's contents as a file (the caller removes it). */
  volumeFile(volumeId: string): Promise<{ path: string; zstd: boolean }>;
  /** The volumes and secrets made here for moves, by session (moveKitHere.ts madeForMoves). */
  madeForMoves(): Map<string, MadeForMove>;
  /** A move to here is over: the volumes and secrets made for it are its owner's like any other. */
  moveDone(id: string): void;
  /** Remove what a move of session `id` made here: `volumes` of its where no live session mounts them, its secrets no live session declares (logged, never throws): the volumes that could not be removed. */
  dropMadeFor(id: string, volumes: readonly string[]): Promise<string[]>;
  /** End the session here for good (the volumes that moved with it too): its files and its placement are on node `to` now (a `session.move` on this node's trail). */
  forget(id: string, to: string, moved?: boolean): Promise<void>;
}

/** A move that failed is tried again after this long, doubled after each failure up to MAX_RETRY_MS. */
const RETRY_MS = 30_000;
const MAX_RETRY_MS = 30 * 60_000;
/** Commit one copying move (movePeers.ts commitMoves). */
export const commitMove = (etcd: Etcd3, rec: Move): Promise<boolean> => commitMoves(etcd, [rec]);

/** A move that found no node to go to: nothing was sent, so nothing backs off. */
class Unplaced extends Error {}

export class Mover {
  private busy = false;
  private readonly retryAt = new Map<string, number>();
  private readonly failures = new Map<string, number>();
  /** Leftover volumes that could not be removed: not tried again before this. */
  private readonly keptUntil = new Map<string, number>();
  /** Why each session that stays does (logged once per reason). */
  private readonly stays = new Map<string, string>();
  /** Checks of which nodes share root's secrets as this one does, a refusal kept a while. */
  private readonly sharedChecks = new SharedChecks();
  /** Sessions being moved now: locked here (start and destroy refused) until the move ends. */
  readonly moving = new Set<string>();

  constructor(
    private readonly etcd: Etcd3,
    private readonly self: string,
    private readonly c: ClusterConfig,
    private readonly peers: PeerClient,
    private readonly local: MoveSource,
    private readonly log: Logger,
  ) {}

  /** Called once a second: while this node is drained, move its stopped sessions. Never throws (etcd may not answer). */
  async tick(): Promise<void> {
    if (this.busy) return;
    this.busy = true;
    try {
      await this.moveAll();
    } catch (e) {
      this.log.debug({ err: (e as Error).message }, 'drain: nothing moved this time');
    } finally {
      this.busy = false;
    }
  }

  private async moveAll(): Promise<void> {
    await this.finishRecorded();
    await this.sweepMadeHere();
    if ((await this.etcd.get(key.drain(this.self)).string()) === null) return;
    const placed = [...(await getPrefix(this.etcd, key.desiredOf(this.self)))].map(([k, v]) => parseValue(desiredSchema, k, v));
    for (const m of [this.stays, this.failures, this.retryAt]) for (const id of m.keys()) if (!placed.some((d) => d.id === id)) m.delete(id);
    const byId = new Map(placed.map((d) => [d.id, d]));
    for (const d of placed) {
      if (this.local.stateOf(d.id) !== 'stopped' || (this.retryAt.get(d.id) ?? 0) > Date.now()) continue;
      const log = this.log.child({ session: d.id });
      // One whose volumes or secrets cannot follow it stays (listed by the drain, as a running one is); so do the
      // sessions it shares volumes with, which move with it or not at all.
      let group = this.local.kit(d.id);
      const stray = group && !('stays' in group) ? group.members.find((m) => !byId.has(m.id)) : undefined;
      if (stray) group = { stays: `it shares a volume with session ${stray.id}, which is not placed on this node` };
      if (!group || 'stays' in group) {
        if (group && this.stays.get(d.id) !== group.stays) log.info({ why: group.stays }, 'drain: session stays on this node');
        if (group) this.stays.set(d.id, group.stays);
        continue;
      }
      const ids = group.members.map((m) => m.id);
      if (ids.some((id) => (this.retryAt.get(id) ?? 0) > Date.now())) continue; // a member backing off holds the group
      for (const id of ids) this.stays.delete(id);
      try {
        const to = await this.move(group, ids.map((id) => byId.get(id)!), log);
        for (const id of ids) this.retryAt.delete(id), this.failures.delete(id);
        log.info({ to, ...(ids.length > 1 ? { with: ids.filter((id) => id !== d.id) } : {}) }, 'drain: session moved');
      } catch (e) {
        // Backing off once it was placed: a move that cannot succeed (its volume too large to send in time) costs
        // both nodes a copy each try; one refused before (no node fits, none takes kits yet) is tried again as before.
        const n = Math.max(...ids.map((id) => this.failures.get(id) ?? 0)) + (e instanceof Unplaced ? 0 : 1);
        const wait = e instanceof Unplaced ? RETRY_MS : Math.min(RETRY_MS * 2 ** (n - 1), MAX_RETRY_MS);
        for (const id of ids) this.failures.set(id, n), this.retryAt.set(id, Date.now() + wait);
        log.warn({ err: (e as Error).message, retry_in_ms: wait, ...(ids.length > 1 ? { with: ids.filter((id) => id !== d.id) } : {}) }, 'drain: session not moved; trying again later');
      }
    }
  }

  /** Sessions sharing volumes (one alone, mostly), moved together to one node: locked here meanwhile. */
  private async move(group: GroupPlan, ds: Desired[], log: Logger): Promise<string> {
    const stored = ds.map((d) => this.local.stored(d.id));
    const missing = ds.find((_, i) => !stored[i]);
    if (missing) throw new Error(`the stored files of session ${missing.id} are missing here`);
    for (const d of ds) this.moving.add(d.id);
    try {
      return await this.moveLocked(group, ds, stored as Array<{ path: string; zstd: boolean }>, log);
    } finally {
      for (const d of ds) this.moving.delete(d.id);
    }
  }

  /**
   * Each member placed on the node chosen for the first (pinned there), its
   * move recorded, and made there, one after the other: a volume's maker
   * (the first that mounts it) is made before those that mount what its kit
   * made. Then each volume's contents through its maker, then each one's
   * files; the moves commit together (commitMoves), or all are undone.
   */
  private async moveLocked(group: GroupPlan, ds: Desired[], stored: Array<{ path: string; zstd: boolean }>, log: Logger): Promise<string> {
    for (const d of ds) {
      if (await moveRecordOf(this.etcd, d.id)) throw new Unplaced(`a move of session ${d.id} is still being finished`);
      await this.undoStray(d, log);
    }
    const members = group.members.map((m, i) => ({ plan: m.plan, request: ds[i]!.request }));
    const takers = await kitTakers(this.etcd, this.peers, this.self, members, this.sharedChecks, (refs, nonce, responder) => this.local.sharedMacs(refs, nonce, responder));
    if (takers && 'none' in takers) throw new Unplaced(takers.none);
    const room = ds.length > 1 ? await roomFor(this.etcd, ds) : undefined;
    const eligible = takers || room ? (n: string) => (takers?.has(n) ?? true) && (room?.has(n) ?? true) : undefined;
    const recs: Move[] = [];
    let to: string | undefined;
    try {
      for (const d of ds) {
        // Placed by this node (its entry now): a node it is made on that finds volumes or secrets in its request
        // asks this node for them (moveKit.ts; answered while this move runs).
        const { placed_at: _, ...rest } = d;
        const r = await place(this.etcd, { ...rest, entry: this.self }, this.c.candidates, { exclude: this.self, pin: to ?? null, ...(eligible ? { eligible } : {}) });
        if ('reason' in r) {
          if (to === undefined) throw new Unplaced(`no node takes it${ds.length > 1 ? ` with the ${ds.length - 1} sessions it shares volumes with` : ''}: ${r.reason}`);
          throw new Error(`node ${to} has no room for session ${d.id}, which moves with the others: ${r.reason}`);
        }
        to = r.node;
        const rec: Move = { id: d.id, from: this.self, to, phase: 'copying' };
        await this.record(rec);
        recs.push(rec);
        await this.made(d.id, to);
      }
      const there = to!;
      // The volumes' contents first, each unpacked inside its maker while it runs there; then each one's files, which stop it.
      for (const [volume, maker] of group.makers) {
        const d = ds.find((x) => x.id === maker)!;
        const file = await this.local.volumeFile(volume);
        try {
          await sendFile(this.etcd, this.peers, d, there, file, `/v1/sessions/${d.id}/moved-in-volume?volume=${volume}&zstd=${file.zstd ? 1 : 0}`);
        } finally {
          rmSync(file.path, { force: true });
        }
      }
      for (const [i, d] of ds.entries()) await sendFile(this.etcd, this.peers, d, there, stored[i]!, `/v1/sessions/${d.id}/moved-in?zstd=${stored[i]!.zstd ? 1 : 0}&from=${this.self}`);
      for (const d of ds) if (this.local.stateOf(d.id) !== 'stopped') throw new Error(`session ${d.id} is ${this.local.stateOf(d.id) ?? 'gone'} here now`);
      // Still the same sessions sharing those volumes (none made here mounting one meanwhile: it would keep a copy here).
      const again = this.local.kit(ds[0]!.id);
      if (!again || 'stays' in again || again.members.map((m) => m.id).join() !== ds.map((d) => d.id).join()) throw new Error('the sessions sharing its volumes here changed during the move');
      if (!(await commitMoves(this.etcd, recs))) throw new Error('a move record, or a placement here, changed under it (the fleet declared it lost?)');
    } catch (e) {
      // Undone only while the records still say copying: a commit that applied but answered an error is kept.
      // Each tried (the last made first: a shared volume goes with its maker's copy there); one that fails is left to the next tick.
      const now = recs.length ? await moveRecordOf(this.etcd, recs[0]!.id).catch(() => undefined) : undefined;
      if (now?.phase !== 'committed') {
        for (const rec of [...recs].reverse()) await this.undo(rec, log).catch((u: Error) => log.warn({ session: rec.id, err: u.message }, 'drain: the undo of a move stays for the next tick'));
      }
      throw e;
    }
    // Their copies here end while they are still locked, before any other etcd call can fail: released stopped
    // and placed nowhere here, a start could run one here while it is placed there. The shared volumes go with the last.
    for (const rec of recs) await this.local.forget(rec.id, rec.to);
    for (const rec of recs) await this.finishCommitted({ ...rec, phase: 'committed' }).catch((e: Error) => log.warn({ err: e.message }, 'drain: the move record stays; the next tick removes it'));
    return to!;
  }

  /**
   * A move's record, written only where none is: another node's record of
   * it (a move of it still being finished) is not overwritten. Refused with
   * this very record there, or failed with it there: a re-sent write (its
   * answer lost to a leader change) whose first send applied. Otherwise the
   * placement made for it goes (no copy made for nothing), and it throws.
   */
  private async record(rec: Move): Promise<void> {
    const ours = async () => (await this.etcd.get(key.move(rec.id)).string()) === JSON.stringify(rec);
    const failed = await this.etcd
      .if(key.move(rec.id), 'Version', '==', 0)
      .then(this.etcd.put(key.move(rec.id)).value(JSON.stringify(rec)))
      .commit()
      .then(
        async (w) => (w.succeeded || (await ours()) ? undefined : new Error('a move of it is still being finished')),
        async (e: Error) => ((await ours().catch(() => false)) ? undefined : e),
      );
    if (failed) {
      await this.etcd.delete().key(key.desired(rec.to, rec.id)).catch(() => undefined);
      throw failed;
    }
  }

  /**
   * A placement of this session on another node with no move recorded: the
   * booking of an earlier try whose placement outlasted its bound (etcd
   * without quorum) and committed after. Such a booking is newer than this
   * node's own placement (a booking's placed_at is its own); its copy there
   * is undone as a move to that node would be (recorded first, so a tick
   * finishes it if this one cannot), before another node is chosen: else it
   * would run on two. One older than this node's own is the real one, and
   * this node's copy the stray: nothing is moved or undone then.
   */
  private async undoStray(d: Desired, log: Logger): Promise<void> {
    const id = d.id;
    for (const to of (await placedNodes(this.etcd, id)).filter((n) => n !== this.self)) {
      const theirs = await this.etcd.get(key.desired(to, id)).string();
      if (theirs === null) continue;
      if (!(parseValue(desiredSchema, key.desired(to, id), theirs).placed_at > d.placed_at)) {
        throw new Error(`it is placed on node ${to} too, since before its placement here: the copy here is not moved (nor the one there undone)`);
      }
      // Recorded as being undone from the start: the stray node is never the one a record names as moving it there (no kit).
      const rec: Move = { id, from: this.self, to, phase: 'undoing' };
      const w = await this.etcd.if(key.move(id), 'Version', '==', 0).then(this.etcd.put(key.move(id)).value(JSON.stringify(rec))).commit();
      if (!w.succeeded) throw new Error('a move of it is still being finished');
      log.warn({ node: to }, 'drain: placed on another node too by an earlier try that committed late; undoing that first');
      await this.undo(rec, log);
    }
    if ((await placedNodes(this.etcd, id)).some((n) => n !== this.self)) throw new Error('its placement on another node is not undone yet');
  }

  /**
   * The volumes and secrets moves made here, once no move of their session
   * to here runs (its record gone, committed, or another's): the owner's
   * like any other when the session is placed here (a committed move) or
   * ended here since; removed when its copy here was undone (marked moved
   * away: what the undo could not drop) or never made (the daemon died
   * between the kit and the create) and they are older than the create
   * could take. A live copy placed elsewhere is left to settle (worker.ts),
   * which ends it and drops them. A volume that cannot be removed is tried
   * again 10 min later.
   */
  private async sweepMadeHere(): Promise<void> {
    for (const [id, m] of this.local.madeForMoves()) {
      const rec = await moveRecordOf(this.etcd, id);
      if (rec?.to === this.self && rec.phase !== 'committed') continue; // its move (or undo) is under way
      // Its record may be on its way (the placement here comes first), unless the move is over: committed here, or its
      // copy stopped (its files in) and placed here alone (a move under way places it on both; one the fleet declared lost
      // there left it running, empty). A session moved with it waits on that to start.
      const over = rec ? rec.to === this.self : m.stopped && (await placedNodes(this.etcd, id)).join() === this.self;
      if (!m.settled && !(m.row === 'live' && over)) continue;
      if (m.row === 'ended' || (m.row === 'live' && (await this.etcd.get(key.desired(this.self, id)).string()) !== null)) {
        this.local.moveDone(id);
        continue;
      }
      if (m.row === 'live' || (m.row === 'none' && !m.stale)) continue;
      const volumes = m.volumes.filter((v) => (this.keptUntil.get(v) ?? 0) <= Date.now());
      if (m.secrets.length === 0 && volumes.length === 0) continue;
      this.log.warn({ session: id, volumes, secrets: m.secrets }, m.row === 'none' ? 'drain: removing volumes and secrets a move made here for a session that never came' : 'drain: removing volumes and secrets an undone move left here');
      for (const v of await this.local.dropMadeFor(id, volumes)) this.keptUntil.set(v, Date.now() + 10 * 60_000);
    }
  }

  /** The move records of this node that no move here is running: a committed one's old copy ended, a copying one undone. */
  private async finishRecorded(): Promise<void> {
    // The last of a group first (by id): an undo drops a shared volume there with its maker's copy, once the others' went.
    for (const [k, v] of [...(await getPrefix(this.etcd, prefix.move))].reverse()) {
      const rec = parseValue(moveSchema, k, v);
      if (rec.from !== this.self || this.moving.has(rec.id)) continue;
      const log = this.log.child({ session: rec.id });
      if (rec.phase === 'committed') await this.finishCommitted(rec);
      else await this.undo(rec, log); // copying (its daemon died mid-way) or undoing
    }
  }

  /**
   * Its copy here ended (it runs on, stopped, on the node it moved to), then
   * the record goes; only while the record is still this one (read again
   * first): a later move of it back here must not end the copy it made.
   */
  private async finishCommitted(rec: Move): Promise<void> {
    const now = await this.etcd.get(key.move(rec.id)).string();
    if (now !== JSON.stringify(rec)) return;
    if (this.local.stateOf(rec.id) !== undefined) await this.local.forget(rec.id, rec.to);
    await this.etcd.if(key.move(rec.id), 'Value', '==', JSON.stringify(rec)).then(this.etcd.delete().key(key.move(rec.id))).commit();
  }

  /** Until the node it was placed on reports it made (bounded by create_timeout_ms). */
  private async made(id: string, node: string): Promise<void> {
    // A report of the node it moves from may still be there under the same key: only the new node's counts.
    const s = await awaitReport(this.etcd, id, (r) => r.node === node, this.c.create_timeout_ms);
    if (!s) throw new Error(`node ${node} did not make it within ${this.c.create_timeout_ms} ms (cluster.create_timeout_ms)`);
    if (s.state !== 'running') throw new Error(`node ${node} could not make it: ${s.error?.message ?? s.state}`);
  }

  /**
   * A copying move undone: the record says so first (undoing: the receiving
   * node then makes nothing more of it), its copy there is destroyed (that
   * node must confirm: 2xx, or 404 when it never made it) and marked as
   * moved here (so that a later move there may make it again), then its
   * placement and report there are removed, then the record. Unconfirmed,
   * everything stays for the next tick to try again.
   */
  private async undo(rec: Move, log: Logger): Promise<void> {
    if (rec.phase === 'copying') {
      const r = await this.etcd.if(key.move(rec.id), 'Value', '==', JSON.stringify(rec)).then(this.etcd.put(key.move(rec.id)).value(JSON.stringify({ ...rec, phase: 'undoing' }))).commit();
      if (!r.succeeded) return; // finished or replaced meanwhile: the next tick reads what it is now
    }
    let nodes;
    try {
      nodes = await readFleet(this.etcd);
    } catch (e) {
      // Not "that node is gone": only a read that answers says so. Tried again next tick.
      log.warn({ err: (e as Error).message }, 'drain: cannot read the fleet to undo a move; trying again');
      return;
    }
    const m = nodes.find((n) => n.member.name === rec.to);
    // That node removes the volumes its kit made with its copy (by its own record of them). One removed from
    // the fleet (nodeRemoval.ts) is asked nothing: it is left word to end its copy so, should it come back.
    if (!m) await this.etcd.put(key.undone(rec.to, rec.id)).value(JSON.stringify({ id: rec.id, to: this.self } satisfies OldCopy));
    const gone = m ? (await askThere(this.peers, rec.to, m.member.endpoint, 'DELETE', `/v1/sessions/${rec.id}?force=1`)) && (await askThere(this.peers, rec.to, m.member.endpoint, 'POST', `/v1/sessions/${rec.id}/moved-out?to=${this.self}`)) : true;
    if (!gone) {
      log.warn({ node: rec.to }, 'drain: the copy there is not confirmed destroyed and marked moved; trying again');
      return;
    }
    const [st, lo] = await Promise.all([this.etcd.get(key.status(rec.id)).string(), this.etcd.get(key.lost(rec.id)).string()]);
    const theirs = st !== null && parsedOrNone(statusSchema, key.status(rec.id), st)?.node === rec.to;
    // Declared lost with that node by a node of an older version while it was away (its copy there fenced
    // since): not lost, its files are here. Left, the list would show it lost in place of this copy.
    const declared = lo !== null && parsedOrNone(lostSchema, key.lost(rec.id), lo)?.node === rec.to;
    await this.etcd.delete().key(key.desired(rec.to, rec.id));
    if (theirs) await this.etcd.delete().key(key.status(rec.id));
    if (declared) await this.etcd.if(key.lost(rec.id), 'Value', '==', lo).then(this.etcd.delete().key(key.lost(rec.id))).commit();
    await this.etcd.delete().key(key.move(rec.id));
  }
}

/** The nodes with room for all of `ds` at once (slots and memory): sessions moved together go to one node. */
async function roomFor(etcd: Etcd3, ds: readonly Desired[]): Promise<Set<string>> {
  const memory = ds.reduce((a, d) => a + d.memory_mb, 0);
  return new Set(
    (await readFleet(etcd)).filter((n) => n.member.capacity.slots - usedSlots(n) >= ds.length && n.member.capacity.memory_mb - usedMemory(n) >= memory).map((n) => n.member.name),
  );
}
