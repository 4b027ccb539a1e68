// Drain and move: a drained node (/enclave/drain/NODE, with its cordon)
// moves its stopped sessions to other nodes, one at a time, itself: it
// holds their stored files. For each: placed elsewhere by the same id (the
// placement's transaction, as any create), made there by that node's
// worker, running and empty; then this node sends the stored files over the
// mutual-TLS channel and that node restores them into it and stops it
// (src/daemon/handlers/moves.ts). Its owner's secrets and the volumes it
// alone mounts go with it (moveKit.ts: that node asks for them before it
// makes it; the volumes' contents are sent before its files; another owner's
// shared secrets it declares are not carried: it goes only where they are shared
// with the same value, sharedHolders.ts), and
// the volumes leave this node with its copy. Only then does its placement here go and
// its copy here end (destroyed). Each move is recorded first
// (/enclave/move/ID: from, to, copying or committed), and the record is
// what every tick, drained or not, finishes: a copying move this daemon is
// not running (it died mid-way) is undone there (destroyed first, then its
// placement removed; kept to retry when that node does not confirm), a
// committed one has its old copy here ended. The session is locked here for
// the move: a start or destroy of it is refused (409) until it ends.
import { createReadStream, statSync } from 'node:fs';
import type { Etcd3 } from 'etcd3';
import type { Logger } from 'pino';
import type { SessionState } from '../vocab/states.js';
import { getPrefix } from './etcd.js';
import type { ClusterConfig } from './etcd.js';
import { desiredSchema, key, lostSchema, moveSchema, parsedOrNone, parseValue, prefix, statusSchema, type Desired, type Move, type OldCopy } from './keys.js';
import { place, placedNodes, readFleet } from './placement.js';
import { awaitReport } from './report.js';
import type { PeerClient } from './peerClient.js';
import { kitTakers, moveRecordOf, type KitPlan, type MadeForMove, type SharedRef } from './moveKit.js';
import { rmSync } from 'node:fs';

/** What a move needs of this node's own sessions (the daemon provides it). */
export interface MoveSource {
  stateOf(id: string): SessionState | undefined;
  /** A stopped session's stored files. */
  stored(id: string): { path: string; zstd: boolean } | undefined;
  /** What follows it to another node (its secrets, the volumes it alone mounts), or why it stays; undefined: not here. */
  kit(id: string): KitPlan | { stays: string } | undefined;
  /** Of another owner's secrets, those shared here, each by `UID:NAME` as an HMAC of `nonce` keyed by its value (moveKitHere.ts sharedMacs). */
  sharedMacs(refs: readonly SharedRef[], nonce: string): ReadonlyMap<string, string>;
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
/** The most a move's transfer may take (restore and stop there included). */
const SEND_MS = 10 * 60_000;

/**
 * Commit a copying move: its placement on the node it leaves goes and the
 * record says committed, in one transaction (never placed on neither node),
 * and only while it is still placed on both: a node the fleet declared lost
 * (its placements removed) whose etcd connection came back before it
 * registered again commits nothing, nor one whose receiving node the fleet
 * declared lost meanwhile; its move is undone, and it fences.
 * True also when this very commit, sent again after its answer was lost, had
 * applied.
 */
export async function commitMove(etcd: Etcd3, rec: Move): Promise<boolean> {
  const done = JSON.stringify({ ...rec, phase: 'committed' } satisfies Move);
  const r = await etcd
    .if(key.move(rec.id), 'Value', '==', JSON.stringify(rec))
    .and(key.desired(rec.from, rec.id), 'Version', '>', 0)
    .and(key.desired(rec.to, rec.id), 'Version', '>', 0)
    .then(etcd.delete().key(key.desired(rec.from, rec.id)), etcd.put(key.move(rec.id)).value(done))
    .else(etcd.get(key.move(rec.id)))
    .commit();
  return r.succeeded || r.responses[0]?.response_range?.kvs[0]?.value.toString() === done;
}

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
    for (const d of placed) {
      if (this.local.stateOf(d.id) !== 'stopped' || (this.retryAt.get(d.id) ?? 0) > Date.now()) continue;
      const log = this.log.child({ session: d.id });
      // One whose volumes or secrets cannot follow it stays (listed by the drain, as a running one is).
      const plan = this.local.kit(d.id);
      if (!plan || 'stays' in plan) {
        if (plan && this.stays.get(d.id) !== plan.stays) log.info({ why: plan.stays }, 'drain: session stays on this node');
        if (plan) this.stays.set(d.id, plan.stays);
        continue;
      }
      this.stays.delete(d.id);
      try {
        const to = await this.move(d, plan, log);
        this.retryAt.delete(d.id);
        this.failures.delete(d.id);
        log.info({ to }, 'drain: session moved');
      } catch (e) {
        // Backing off once it was placed: a move that cannot succeed (its volume too large to send in time) costs
        // both nodes a copy each try; one refused before (no node fits, none takes kits yet) is tried again as before.
        const n = (this.failures.get(d.id) ?? 0) + (e instanceof Unplaced ? 0 : 1);
        this.failures.set(d.id, n);
        const wait = e instanceof Unplaced ? RETRY_MS : Math.min(RETRY_MS * 2 ** (n - 1), MAX_RETRY_MS);
        this.retryAt.set(d.id, Date.now() + wait);
        log.warn({ err: (e as Error).message, retry_in_ms: wait }, 'drain: session not moved; trying again later');
      }
    }
  }

  private async move(d: Desired, plan: KitPlan, log: Logger): Promise<string> {
    const stored = this.local.stored(d.id);
    if (!stored) throw new Error('its stored files are missing here');
    this.moving.add(d.id);
    try {
      return await this.moveLocked(d, plan, stored, log);
    } finally {
      this.moving.delete(d.id);
    }
  }

  private async moveLocked(d: Desired, plan: KitPlan, stored: { path: string; zstd: boolean }, log: Logger): Promise<string> {
    // Placed by this node, pinned nowhere: a node it is made on that finds volumes or secrets in its
    // request asks this node, its entry now, for them (moveKit.ts; answered while this move runs).
    const { placed_at: _, ...rest } = d;
    const wanted = { ...rest, entry: this.self };
    if (await moveRecordOf(this.etcd, d.id)) throw new Unplaced('a move of it is still being finished');
    await this.undoStray(d, log);
    const takers = await kitTakers(this.etcd, this.peers, this.self, plan, d.request, (refs, nonce) => this.local.sharedMacs(refs, nonce));
    if (takers && 'none' in takers) throw new Unplaced(takers.none);
    const r = await place(this.etcd, wanted, this.c.candidates, { exclude: this.self, pin: null, ...(takers ? { eligible: (n: string) => takers.has(n) } : {}) });
    if ('reason' in r) throw new Unplaced(`no node takes it: ${r.reason}`);
    const to = r.node;
    const rec: Move = { id: d.id, from: this.self, to, phase: 'copying' };
    // Only where none is: another node's record of it (a move of it still being finished) is not overwritten.
    // Refused with this very record there, or failed with it there: a re-sent write (its answer lost to a
    // leader change) whose first send applied. Otherwise the placement made for it goes (no copy made for nothing).
    const ours = async () => (await this.etcd.get(key.move(d.id)).string()) === JSON.stringify(rec);
    const failed = await this.etcd
      .if(key.move(d.id), 'Version', '==', 0)
      .then(this.etcd.put(key.move(d.id)).value(JSON.stringify(rec)))
      .commit()
      .then(
        async (w) => (w.succeeded || (await ours()) ? undefined : new Error('a move of it is still being finished')),
        async (e: Error) => ((await ours().catch(() => false)) ? undefined : e),
      );
    if (failed) {
      await this.etcd.delete().key(key.desired(to, d.id)).catch(() => undefined);
      throw failed;
    }
    try {
      await this.made(d.id, to);
      // Its volumes' contents first, unpacked inside it while it runs there; then its files, which stop it.
      for (const v of plan.volumes) {
        const file = await this.local.volumeFile(v.id);
        try {
          await this.send(d, to, file, `/v1/sessions/${d.id}/moved-in-volume?volume=${v.id}&zstd=${file.zstd ? 1 : 0}`);
        } finally {
          rmSync(file.path, { force: true });
        }
      }
      await this.send(d, to, stored, `/v1/sessions/${d.id}/moved-in?zstd=${stored.zstd ? 1 : 0}&from=${this.self}`);
      if (this.local.stateOf(d.id) !== 'stopped') throw new Error(`it is ${this.local.stateOf(d.id) ?? 'gone'} here now`);
      if (!(await commitMove(this.etcd, rec))) throw new Error('its move record, or its placement here, changed under it (the fleet declared it lost?)');
    } catch (e) {
      // Undone only while the record still says copying: a commit that applied but answered an error is kept.
      const now = await moveRecordOf(this.etcd, d.id).catch(() => undefined);
      if (now?.phase !== 'committed') await this.undo(rec, log);
      throw e;
    }
    // Its copy here ends while it is still locked, before any other etcd call can fail: released stopped
    // and placed nowhere here, a start could run it here while it is placed there.
    await this.local.forget(d.id, to);
    await this.finishCommitted({ ...rec, phase: 'committed' }).catch((e: Error) => log.warn({ err: e.message }, 'drain: the move record stays; the next tick removes it'));
    return to;
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
      if (!m.settled) continue; // its record may be on its way
      const rec = await moveRecordOf(this.etcd, id);
      if (rec?.to === this.self && rec.phase !== 'committed') continue; // its move (or undo) is under way
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
    for (const [k, v] of await getPrefix(this.etcd, prefix.move)) {
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

  /** A file to `node` (POST `path`): the stored files, which it restores into its copy and stops it, or a volume's contents. */
  private async send(d: Desired, node: string, stored: { path: string }, path: string): Promise<void> {
    const m = (await readFleet(this.etcd)).find((n) => n.member.name === node);
    if (!m) throw new Error(`node ${node} left the fleet`);
    const size = statSync(stored.path).size;
    await new Promise<void>((resolve, reject) => {
      const req = this.peers.request(node, m.member.endpoint, { method: 'POST', path, headers: { 'content-type': 'application/octet-stream', 'content-length': String(size) } }, { uid: d.owner_uid, gids: d.owner_gids }, true);
      const timer = setTimeout(() => req.destroy(new Error(`not done within ${SEND_MS} ms`)), SEND_MS);
      timer.unref();
      req.on('error', (e) => (clearTimeout(timer), reject(e)));
      req.on('response', (res) => {
        const chunks: Buffer[] = [];
        let n = 0;
        res.on('data', (c: Buffer) => void ((n += c.length) <= 64 * 1024 && chunks.push(c)));
        res.on('end', () => {
          clearTimeout(timer);
          if (res.statusCode !== undefined && res.statusCode >= 200 && res.statusCode < 300) return resolve();
          reject(new Error(`node ${node} answered ${res.statusCode}: ${Buffer.concat(chunks).toString('utf8').slice(0, 300)}`));
        });
        res.on('error', reject);
      });
      createReadStream(stored.path).on('error', (e) => req.destroy(e)).pipe(req);
    });
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
    const gone = m ? (await this.askThere(rec.to, m.member.endpoint, 'DELETE', `/v1/sessions/${rec.id}?force=1`)) && (await this.askThere(rec.to, m.member.endpoint, 'POST', `/v1/sessions/${rec.id}/moved-out?to=${this.self}`)) : true;
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

  /** A call on that node: whether it confirmed (2xx, or 404: it never made the session). */
  private askThere(node: string, endpoint: string, method: 'DELETE' | 'POST', path: string): Promise<boolean> {
    return new Promise((resolve) => {
      let req;
      try {
        req = this.peers.request(node, endpoint, { method, path }, { uid: 0, gids: [] });
      } catch {
        return resolve(false);
      }
      const timer = setTimeout(() => req.destroy(new Error('no answer within 30 s')), 30_000);
      timer.unref();
      req.on('response', (res) => {
        res.resume();
        res.on('end', () => (clearTimeout(timer), resolve((res.statusCode ?? 500) < 300 || res.statusCode === 404)));
        res.on('error', () => (clearTimeout(timer), resolve(false)));
      });
      req.on('error', () => (clearTimeout(timer), resolve(false)));
      req.end();
    });
  }
}
