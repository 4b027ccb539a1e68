// The owning side of placement: this node watches the sessions placed on it
// (/enclave/desired/NODE/), creates each here by its id (idempotent: an id
// it already has is not made twice, whether the watch fires again or the
// daemon restarted in between), and reports the outcome under
// /enclave/status/ID for the node that took the create: a report etcd did
// not take (a leader change) is made again each second until it is, or the
// caller would wait out create_timeout_ms for a session that runs. Once a second it
// also settles its allocation key with what it really holds, so a session
// that ended frees its slot for placement (and for pending sessions).
import type { Etcd3, Watcher } from 'etcd3';
import type { Logger } from 'pino';
import type { CreateSessionRequest, Session } from '../api/schemas.js';
import { ApiError } from '../vocab/errors.js';
import { ACTIVE_STATES, ENDED_STATES, type SessionState } from '../vocab/states.js';
import type { LiveRow } from '../store/fleetRows.js';
import { FLEET_OP_TIMEOUT_MS, within } from './deadline.js';
import { getPrefix, getWithRev } from './etcd.js';
import { allocSchema, desiredSchema, key, moveSchema, parseValue, prefix, statusSchema, type Alloc, type Desired, type Status } from './keys.js';
import type { MoveKit } from './moveKit.js';
import { ParsedValues } from './parsedValues.js';
import { pinnedTo, placedNodes } from './placement.js';
import { UnplacedCopies } from './unplacedCopies.js';
import type { WatchedFleet } from './watched.js';

/** What the fleet needs of this node's own sessions (the daemon provides it over its session manager). */
export interface LocalNode {
  /** What this node's sessions offer that a move may need (keys.ts STAGED_RO_VOLUMES), written with its features. */
  features?: readonly string[];
  /** Mark this node's rows of `fleetIds` as made for a placement (those an older version made); how many. */
  markPlaced(fleetIds: ReadonlySet<string>): number;
  /** A session's state here, or undefined if this node never had it. */
  stateOf(id: string): SessionState | undefined;
  /** Every session this node has a row of that has not ended, with its state and the memory it was given (MiB): settle()'s one read of them a second. */
  sessionStates(): ReadonlyMap<string, LiveRow>;
  /** Make the session with this id, as its owner (what `kit` brings first: a drain's move); resolves once it runs. */
  create(id: string, req: CreateSessionRequest, owner: { uid: number; gids: number[] }, kit?: MoveKit): Promise<Session>;
  view(id: string): Session | undefined;
  /** Drop this node's ended old copy of a session a drain moved away (it is moving back); false if there is none. */
  dropMovedAway(id: string): boolean;
  /**
   * End a session made here that is placed here no more (an undone move); `livesOn`: the node the fleet has
   * it on, which this ended copy is then marked as moved to (as an undo marks it: a later move here makes it again).
   */
  discard(id: string, livesOn?: string): Promise<void>;
  /** Why a create of a placement failed here before its session ever ran (its row failed); undefined for any other row. */
  failedCreate(id: string): string | undefined;
  /** This node's list (not ended sessions, each with its node: each row's JSON) and the tag that moves whenever it may change (src/daemon/listTag.ts): other nodes read it from etcd. */
  listTag(): string;
  listed(): ReadonlyArray<{ id: string; json: string }>;
}

export class Worker {
  private watcher: Watcher | undefined;
  /** A watch being made (tick). */
  private watching = false;
  private timer: NodeJS.Timeout | undefined;
  private readonly making = new Set<string>();
  /** Running sessions whose report etcd holds (or held): not written again. */
  private readonly reported = new Set<string>();
  /** Creates that failed here and whose report etcd has not taken yet; never made again. */
  private readonly failedReports = new Map<string, Status>();
  /** This node's placements as settle() parsed them: a value parsed again only when it changed. */
  private readonly parsed = new ParsedValues(desiredSchema);
  private closed = false;
  /** Running copies made here that the fleet places here no more (an undone move's, its report never taken). */
  private readonly unplaced: UnplacedCopies;

  constructor(
    private readonly etcd: Etcd3,
    private readonly node: string,
    private readonly local: LocalNode,
    private readonly log: Logger,
    /** Whether this node may create now: not before it has registered again and fenced (failure.ts). */
    private readonly mayCreate: () => boolean = () => true,
    /** How long a create's caller waits for its report (cluster.create_timeout_ms): a failure found later is told to no one. */
    private readonly callerWaitsMs = 120_000,
    /** A drain's kit from the node that moves a session here (moveKit.ts); none without the node-to-node channel. */
    private readonly kitFrom?: (node: string, id: string) => Promise<MoveKit>,
    /** The fleet's watched copy (watched.ts): settle() reads this node's placements from it, not from etcd. */
    private readonly watched?: WatchedFleet,
  ) {
    this.unplaced = new UnplacedCopies(etcd, node, log, {
      mayCreate,
      making: (id) => this.making.has(id),
      stateOf: (id) => local.stateOf(id),
      withdrawn: (id, l, on) => this.withdrawn(id, l, on),
    });
  }

  async start(): Promise<void> {
    await this.watch();
    await this.tick();
  }

  private async watch(): Promise<void> {
    const w = await this.etcd.watch().prefix(key.desiredOf(this.node)).create();
    w.on('put', (kv) => this.take(kv.key.toString(), kv.value.toString()));
    // Cancelled by etcd (it resumed from a revision since compacted: compactor.ts). The next tick watches
    // again, and makes what the watch missed meanwhile. Not cancelled here: the client has dropped it
    // already, and throws (uncaught, in its stream's callback) at etcd's answer to a second cancel.
    w.on('error', (e: Error) => {
      this.log.warn({ err: e.message }, 'fleet: placement watch cancelled by etcd; watching again');
      if (this.watcher === w) this.watcher = undefined;
    });
    if (this.closed) void w.cancel().catch(() => undefined);
    else this.watcher = w;
  }

  private take(k: string, v: string): void {
    let d: Desired;
    try {
      d = parseValue(desiredSchema, k, v);
    } catch (e) {
      this.log.error({ err: (e as Error).message }, 'ignoring a placement that does not parse');
      return;
    }
    if (this.making.has(d.id) || this.failedReports.has(d.id) || this.closed || !this.mayCreate()) return;
    if (this.local.stateOf(d.id) !== undefined) return; // made already (the watch again, or a resync)
    this.making.add(d.id);
    void this.make(d).finally(() => this.making.delete(d.id));
  }

  private async make(d: Desired): Promise<void> {
    const log = this.log.child({ session: d.id });
    log.info({ entry: d.entry, owner: d.owner_uid }, 'creating a session placed here');
    try {
      // Naming volumes or secrets and placed by another node: a drain's move, whose node has them.
      const from = pinnedTo(d);
      let kit: MoveKit | undefined;
      if (from !== undefined && from !== this.node) {
        if (!this.kitFrom) throw new ApiError('conflict', `its volumes and secrets are node ${from}'s, and this node has no channel to it ([cluster.peer])`);
        kit = await this.kitFrom(from, d.id);
      }
      const s = await this.local.create(d.id, d.request, { uid: d.owner_uid, gids: d.owner_gids }, kit);
      if ((await this.report({ id: d.id, node: this.node, state: 'running', session: { ...s, node: this.node } }, log)) === false) {
        // Its own failure is not the create's (whose failed report would overwrite the shared status).
        await this.withdrawn(d.id, log).catch((e: Error) => log.error({ err: e.message }, 'cannot end a copy placed here no more'));
      }
    } catch (e) {
      const err = e instanceof ApiError ? { code: e.code, message: e.message } : { code: 'internal', message: (e as Error).message };
      log.warn({ err: err.message }, 'a session placed here could not be created');
      this.failedReports.set(d.id, { id: d.id, node: this.node, state: 'failed', error: err });
      await this.reportFailed(d.id, log);
    }
  }

  /**
   * A running session's report, only while it is still placed here: a late
   * write must not undo the fleet declaring it lost (its placement removed),
   * or this node would not fence it. One etcd did not take is made again by settle().
   */
  private async report(status: Status, log: Logger): Promise<boolean | undefined> {
    try {
      const k = key.status(status.id);
      const placed = key.desired(this.node, status.id);
      const put = this.etcd.if(placed, 'Version', '>', 0).then(this.etcd.put(k).value(JSON.stringify(status))).commit();
      const r = await within(put, FLEET_OP_TIMEOUT_MS, "the fleet's etcd");
      this.reported.add(status.id);
      return r.succeeded;
    } catch (e) {
      log.warn({ err: (e as Error).message }, 'cannot report the session to the fleet yet; trying again each second');
      return undefined;
    }
  }

  /**
   * Made here, and placed here no more: a move undone meanwhile (its undo
   * found nothing here to destroy yet, or its drained node went away past
   * the grace). It goes, unless the fleet declared it lost here: fencing
   * ends that one and tells its owner. `livesOn`: the node the fleet places
   * it on, when the caller read it. Whether it was ended.
   */
  private async withdrawn(id: string, log: Logger, livesOn?: string): Promise<boolean> {
    const st = await this.etcd.get(key.status(id)).string();
    const s = st === null ? undefined : parseValue(statusSchema, key.status(id), st);
    if (s?.state === 'lost' && s.node === this.node) return false;
    // Marked as the copy of the node the fleet places it on (keys alone; a rare path), as an undo marks it.
    const on = livesOn ?? (await placedNodes(this.etcd, id)).find((n) => n !== this.node);
    log.warn({ lives_on: on ?? null }, 'placed here no more once made (an undone move): its copy here goes');
    await this.local.discard(id, on);
    return true;
  }

  /**
   * A failed create's report, its placement and its slot gone first: nothing
   * of it is left here to count, and a create its caller makes on hearing of
   * the failure finds the slot free (settle() would free it up to a second later).
   */
  private async reportFailed(id: string, log: Logger, ifAbsent = false): Promise<void> {
    const status = this.failedReports.get(id);
    if (!status) return;
    try {
      const state = this.local.stateOf(id);
      const report = this.etcd.put(key.status(id)).value(JSON.stringify(status));
      // The report and the placement's removal in one transaction: a booking its entry node sends again
      // (its answer lost) finds one or the other, and takes it as its own (placement.ts book). Only while
      // it is placed here: else this transaction applied already (its report perhaps read and removed by
      // the entry node since), or the placement was withdrawn (undone, declared lost): no report is wanted.
      const k = key.desired(this.node, id);
      // Refused before it was admitted, or failed after (an ended row: settle() leaves its placement to this; one
      // still creating, its end deferred to the settler by a full disk): its slot is free, and its placement goes
      // with the report, so no later settle takes the row for a failure never reported (unreported()).
      const gone = state === undefined || state === 'creating' || ENDED_STATES.includes(state);
      const ops = gone ? [this.etcd.delete().key(k), report] : [report];
      const placed = this.etcd.if(k, 'Version', '>', 0);
      // Found after a restart: only while no report is there (one written meanwhile is not overwritten).
      const txn = ifAbsent ? placed.and(key.status(id), 'Version', '==', 0) : placed;
      await within(txn.then(...ops).commit(), FLEET_OP_TIMEOUT_MS, "the fleet's etcd");
      if (gone) await within(this.release(id), FLEET_OP_TIMEOUT_MS, "the fleet's etcd");
      this.failedReports.delete(id);
    } catch (e) {
      log.warn({ err: (e as Error).message }, 'cannot report the failed create to the fleet yet; trying again each second');
    }
  }

  /** Releases under way, by session: the kernel's event and the destroy that caused it wait on the same one. */
  private readonly releasing = new Map<string, Promise<void>>();

  /**
   * A session here has ended (destroyed, failed): its slot goes back now, not
   * at the next settle, a second later at most. Waits `ms` at most; never rejects.
   */
  ended(id: string, ms = FLEET_OP_TIMEOUT_MS): Promise<void> {
    let p = this.releasing.get(id);
    if (!p) {
      p = within(this.release(id), FLEET_OP_TIMEOUT_MS, "the fleet's etcd").finally(() => this.releasing.delete(id));
      this.releasing.set(id, p);
    }
    return within(p, ms, "the fleet's etcd").catch((e: Error) => this.log.debug({ session: id, err: e.message }, 'slot not given back yet: the next settle does'));
  }

  /** Drop `id` from this node's allocation, by compare-and-swap (read again on a lost race; settle() is the backstop). */
  private async release(id: string): Promise<void> {
    for (let i = 0; i < 5; i++) {
      const alloc = await getWithRev(this.etcd, key.alloc(this.node));
      const have = alloc.value === null ? null : parseValue(allocSchema, key.alloc(this.node), alloc.value);
      if (!have || !(id in have.sessions)) return;
      const sessions = { ...have.sessions };
      delete sessions[id];
      const put = this.etcd.put(key.alloc(this.node)).value(JSON.stringify({ sessions } satisfies Alloc));
      if ((await this.etcd.if(key.alloc(this.node), 'Mod', '==', alloc.rev).then(put).commit()).succeeded) return;
    }
  }

  /** A running session placed here with no report (etcd refused it, or this daemon restarted before making it): written unless one is there. */
  private async reportIfAbsent(id: string): Promise<void> {
    const s = this.local.view(id);
    if (!s) return;
    const status: Status = { id, node: this.node, state: 'running', session: { ...s, node: this.node } };
    const k = key.status(id);
    await this.etcd.if(k, 'Version', '==', 0).and(key.desired(this.node, id), 'Version', '>', 0).then(this.etcd.put(k).value(JSON.stringify(status))).commit();
    this.reported.add(id);
  }

  /** Once a second: placements the watch missed, and the allocation settled. */
  private async tick(): Promise<void> {
    try {
      // Not waited for: a watch etcd does not answer must not stop the settling below.
      if (!this.watcher && !this.watching && !this.closed) {
        this.watching = true;
        void this.watch()
          .catch((e: Error) => this.log.debug({ err: e.message }, 'fleet: placements not watched yet; the next tick tries again'))
          .finally(() => (this.watching = false));
      }
      await this.settle();
    } catch (e) {
      this.log.debug({ err: (e as Error).message }, 'fleet: allocation not settled this time');
    }
    if (!this.closed) this.timer = setTimeout(() => void this.tick(), 1000);
  }

  /**
   * The allocation as it is: the sessions with processes here, and those
   * placed here and not made yet. Read alloc first, then the placements:
   * a placement that lands between the two reads changed the alloc's
   * revision, so the compare-and-swap below fails and the next tick redoes it.
   */
  async settle(): Promise<void> {
    // At once, not one after another: each may wait out the bound while etcd changes leader.
    await Promise.all([...this.failedReports.keys()].map((id) => this.reportFailed(id, this.log.child({ session: id }))));
    const alloc = await getWithRev(this.etcd, key.alloc(this.node));
    const desired = await this.placedHere();
    // This node's rows read once (four columns each), not once a placement: a session that ends meanwhile is
    // seen at the next tick; one made meanwhile, take() asks after again.
    const here = this.local.sessionStates();
    const placedIds = new Set([...desired.keys()].map((k) => k.slice(key.desiredOf(this.node).length)));
    try {
      await this.settleWith(alloc, desired, here, placedIds);
    } finally {
      // Whatever became of the rest (a report etcd refused): its own tries, each on its own.
      await this.unplaced.sweep(here, placedIds);
    }
  }

  private async settleWith(alloc: { value: string | null; rev: string }, desired: ReadonlyMap<string, string>, here: ReadonlyMap<string, LiveRow>, placedIds: ReadonlySet<string>): Promise<void> {
    const want: Alloc = { sessions: {} };
    for (const [id, s] of here) if (s.state === 'running') want.sessions[id] = { memory_mb: s.memory_mb };
    this.parsed.keepOnly(desired);
    for (const [k, v] of desired) {
      const d = this.parsed.get(k, v);
      // Not among the rows not ended: ended here, or never here (one read of its state).
      const state = here.get(d.id)?.state ?? this.local.stateOf(d.id);
      if (state === undefined) {
        want.sessions[d.id] = { memory_mb: d.memory_mb };
        this.take(k, v);
      } else if (ENDED_STATES.includes(state) && (await this.movingBack(d.id))) {
        // The old copy of a session a drain moved away, moving back under its id: made here again.
        want.sessions[d.id] = { memory_mb: d.memory_mb };
        this.take(k, v);
      } else if (ENDED_STATES.includes(state) && !this.failedReports.has(d.id)) {
        // (A failed create whose report is not in etcd yet keeps its placement: the report takes it, reportFailed.)
        // One that failed here before this daemon restarted, its report never written: reported now (its
        // placement with it), or its caller would wait out create_timeout_ms for nothing.
        if (await this.unreported(d)) continue;
        // Ended here: its placement goes (its history stays in this node's database), and its
        // report once it had run. A failed create's report is the entry node's to read and remove:
        // gone before it read it, its caller would wait out create_timeout_ms for nothing.
        await this.etcd.delete().key(k);
        this.reported.delete(d.id);
        const st = await this.etcd.get(key.status(d.id)).string();
        // Only this node's own report: the session may live on elsewhere (a drain moved it) under the same key.
        const mine = st !== null && parseValue(statusSchema, key.status(d.id), st);
        if (mine && mine.state === 'running' && mine.node === this.node) await this.etcd.delete().key(key.status(d.id));
      } else if (ACTIVE_STATES.includes(state)) {
        want.sessions[d.id] = { memory_mb: d.memory_mb };
        if (state === 'running' && !this.reported.has(d.id) && !this.making.has(d.id)) await this.reportIfAbsent(d.id);
      }
    }
    // Reported sessions no longer placed here (ended, or declared lost) need no memory of it.
    for (const id of this.reported) if (!placedIds.has(id)) this.reported.delete(id);
    const have = alloc.value === null ? null : parseValue(allocSchema, key.alloc(this.node), alloc.value);
    if (have && sameAlloc(have, want)) return;
    await this.etcd.if(key.alloc(this.node), 'Mod', '==', alloc.rev).then(this.etcd.put(key.alloc(this.node)).value(JSON.stringify(want))).commit();
  }

  /**
   * This node's placements, as fresh as a read of etcd: from the fleet's
   * watched copy (its consistent read), which spares etcd sending every
   * placement here (about 1 KiB a session) each second; from etcd itself
   * while the copy does not follow it.
   */
  private async placedHere(): Promise<Map<string, string>> {
    const mine = key.desiredOf(this.node);
    // Else (not following, not caught up) this node's alone from etcd, not every node's.
    const [all] = (await this.watched?.fromCopy(undefined, [prefix.desired])) ?? [];
    if (!all) return getPrefix(this.etcd, mine);
    // Read before the next await: the copy's own map, changed in place by its watch.
    const out = new Map<string, string>();
    for (const [k, v] of all) if (k.startsWith(mine)) out.set(k, v);
    return out;
  }

  /**
   * Whether `d` is a create that failed here whose report etcd never got
   * (the failure outlived in this node's row only: the daemon restarted
   * before reportFailed), and whose caller may still wait for it: one that
   * reached another node (a caller here went with the restart) within the
   * caller's wait. If so, its report is under way, unless a report is
   * there by then. A row that ran was reported running when it was made.
   * A report no caller reads would stay in etcd for good: none is made.
   */
  private async unreported(d: Desired): Promise<boolean> {
    const why = this.local.failedCreate(d.id);
    const waited = Date.now() - Date.parse(d.placed_at);
    if (why === undefined || d.entry === this.node || !(waited < this.callerWaitsMs)) return false;
    if ((await this.etcd.get(key.status(d.id)).string()) !== null) return false;
    this.failedReports.set(d.id, { id: d.id, node: this.node, state: 'failed', error: { code: 'internal', message: why } });
    await this.reportFailed(d.id, this.log.child({ session: d.id }), true);
    return true;
  }

  /**
   * Whether a drain is moving this session here (its move record says so) and
   * this node's ended row of it is the old copy a move away left (dropped,
   * then): a copy that ended any other way, such as a move here being undone,
   * stays ended, and its placement goes.
   */
  private async movingBack(id: string): Promise<boolean> {
    const v = await this.etcd.get(key.move(id)).string();
    if (v === null) return false;
    const rec = parseValue(moveSchema, key.move(id), v);
    return rec.to === this.node && rec.phase === 'copying' && this.local.dropMovedAway(id);
  }

  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.timer);
    await this.watcher?.cancel().catch(() => undefined);
  }
}

function sameAlloc(a: Alloc, b: Alloc): boolean {
  const ka = Object.keys(a.sessions).sort();
  const kb = Object.keys(b.sessions).sort();
  return ka.length === kb.length && ka.every((k, i) => k === kb[i] && a.sessions[k]!.memory_mb === b.sessions[k]!.memory_mb);
}
