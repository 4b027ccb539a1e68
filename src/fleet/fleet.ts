// This daemon as a node of a fleet ([cluster] in the config): it registers
// (registry.ts), runs what is placed on it (worker.ts), and places the
// creates it takes on whichever node fits (placement.ts). A create waits,
// bounded, until the owning node reports it running; when no node fits it
// is pending (its reason kept in etcd) and this node, which took it, places
// it as soon as capacity appears, or refuses at once if asked not to wait.
// A pending session whose entry node is unreachable is placed by any node
// (the booking takes the pending entry in the same transaction: once).
import type { Etcd3 } from 'etcd3';
import type { Logger } from 'pino';
import type { CreateSessionRequest, Session } from '../api/schemas.js';
import { newSessionId } from '../sessions/identity.js';
import { ApiError, type ErrorCode } from '../vocab/errors.js';
import { etcdClient, type ClusterConfig } from './etcd.js';
import { idOfKey, key, pendingSchema, prefix, type Move, type NodeCapacity, type Pending } from './keys.js';
import { pinnedTo, place, placedIds, placedNodes } from './placement.js';
import { fetchKit, moveRecordOf, placementOn } from './moveKit.js';
import { awaitReport } from './report.js';
import { Registry, type NodeRow } from './registry.js';
import { Worker, type LocalNode } from './worker.js';
import { Reach } from './reach.js';
import { WatchedFleet, type AheadCounts, type Asked } from './watched.js';
import { Compactor } from './compactor.js';
import { every, type Every } from './every.js';
import { claimName } from './names.js';
import { cancelPending, putPending } from './pending.js';
import { ParsedValues } from './parsedValues.js';
import { pendingView, type Limits } from './views.js';
import { Failure, type FenceTarget } from './failure.js';
import { placedOn, type PlacedSession } from './drain.js';
import { removeNode, type Removal } from './nodeRemoval.js';
import { Mover, type MoveSource } from './move.js';
import { FLEET_OP_TIMEOUT_MS, FLEET_READ_TIMEOUT_MS, fleetOp, within } from './deadline.js';
import { ListPublisher } from './listPublisher.js';

export type { FenceTarget, LocalNode, MoveSource, NodeRow };

export interface FleetCreate {
  req: CreateSessionRequest;
  owner: number;
  /** The caller's groups: the owning node checks the owner's budget with them. */
  gids: number[];
  limits: Limits;
  /** Refuse at once when no node fits, instead of leaving it pending. */
  noWait: boolean;
}

export class Fleet {
  private readonly etcd: Etcd3;
  readonly registry: Registry;
  private readonly worker: Worker;
  private readonly failure: Failure;
  /** The fleet's keys as a watch keeps them: lists and forwarded calls read them here (as fresh as etcd). */
  private readonly watched: WatchedFleet;
  /** The node-to-node channel ([cluster.peer]); absent: nothing is forwarded. */
  readonly reach: Reach | undefined;
  /** Moves this node's stopped sessions elsewhere while it is drained (needs the node-to-node channel). */
  private readonly mover: Mover | undefined;
  /** Compacts etcd's history every cluster.compact_interval_s (one node a round). */
  private readonly compactor: Compactor;
  private pendingLoop: Every | undefined;
  /** This node's list in etcd, where the other nodes' lists read it. */
  readonly lists: ListPublisher;
  /** This node's sessions as the fleet acts on them, each change written to its list in etcd before it is reported. */
  private readonly local: LocalNode & FenceTarget & MoveSource;
  private closed = false;
  /** The pending sessions as last read: what a list shows while etcd does not answer. */
  private lastPending: [pending: Map<string, string>, alive: Map<string, string>] = [new Map(), new Map()];
  /** The pending entries as parsed last. */
  private readonly pendingValues = new ParsedValues(pendingSchema);

  constructor(
    readonly c: ClusterConfig,
    endpoint: string,
    capacity: () => NodeCapacity,
    local: LocalNode & FenceTarget & MoveSource,
    private readonly log: Logger,
  ) {
    this.etcd = etcdClient(c);
    this.registry = new Registry(this.etcd, c, endpoint, capacity, log, local.features);
    this.lists = new ListPublisher(this.etcd, c.node, { tag: () => local.listTag(), sessions: () => local.listed(), registration: () => this.registry.registeredAt }, log, c.list_interval_ms);
    // What the fleet does to this node's sessions (a session placed here made, a moved one ended, a fenced one
    // removed) is in this node's list in etcd before it is reported or acknowledged, as a caller's own call is.
    // A failure too: a create that failed leaves its row, failed, for its owner to see why.
    const written = <A extends unknown[], R>(f: (...a: A) => Promise<R>) => async (...a: A): Promise<R> => {
      try {
        return await f(...a);
      } finally {
        await this.listWritten();
      }
    };
    this.local = { ...local, create: written(local.create), forget: written(local.forget), remove: written(local.remove), discard: written(local.discard) };
    this.failure = new Failure(this.etcd, c, this.registry, this.local, log);
    this.watched = new WatchedFleet(this.etcd, log);
    this.reach = c.peer ? new Reach(this.etcd, this.watched, c.node, c.peer, log) : undefined;
    const peers = this.reach?.client;
    const kitFrom = peers && ((from: string, id: string) => fetchKit(this.etcd, peers, c.node, from, id));
    this.worker = new Worker(this.etcd, c.node, this.local, log, () => this.failure.open(), c.create_timeout_ms, kitFrom, this.watched);
    this.mover = this.reach ? new Mover(this.etcd, c.node, c, this.reach.client, this.local, log) : undefined;
    this.compactor = new Compactor(this.etcd, c.compact_interval_s * 1000, log);
  }

  get node(): string {
    return this.c.node;
  }

  /**
   * Once this node's list as it is now is in etcd, or its listing is gone
   * (other nodes then ask this node): a call that changed the list is
   * answered after this. `before`: the list's tag when the call began; a
   * call that left it as it was changed nothing a list shows, and waits for
   * nothing. Bounded as every fleet operation is: without etcd a call that
   * changed this node's sessions is still answered, after the bound.
   */
  async listWritten(before?: string): Promise<void> {
    if (before !== undefined && this.lists.tag() === before) return;
    await within(this.lists.settled(), FLEET_OP_TIMEOUT_MS, "the fleet's etcd").catch((e: Error) => this.log.warn({ err: e.message }, "fleet: answering before this node's list is in etcd"));
  }

  /**
   * Whether session `id` is placed on node `node` and, once its move is
   * recorded, moving there (read from etcd itself, bounded): a move kit goes
   * only there (asked as soon as it is placed, maybe before the record).
   */
  async isPlacedOn(node: string, id: string): Promise<boolean> {
    const [placed, rec] = await fleetOp(() => Promise.all([placementOn(this.etcd, node, id), moveRecordOf(this.etcd, id)]));
    return placed !== undefined && (rec === undefined || (rec.to === node && rec.from === this.c.node && rec.phase === 'copying'));
  }

  /**
   * Whether `peer` is moving session `id` to this node now (its move record,
   * read from etcd itself, bounded: from `peer`, to this node, in `phase`):
   * a move's steps here are taken from that node alone, and only then.
   */
  async movingHere(peer: string | undefined, id: string, phase: Move['phase']): Promise<boolean> {
    const rec = await fleetOp(() => moveRecordOf(this.etcd, id));
    return peer !== undefined && rec?.from === peer && rec.to === this.c.node && rec.phase === phase;
  }

  /**
   * Whether a drain is moving this session here now (its record: to this
   * node, not committed), from a node other than `peer` (the moving node's
   * own calls pass: an undo destroys the copy). Its copy here is the move's
   * until it commits: a start or destroy of it waits (409).
   */
  async movingIn(id: string, peer?: string): Promise<boolean> {
    const rec = await fleetOp(() => moveRecordOf(this.etcd, id));
    return rec !== undefined && rec.to === this.c.node && rec.phase !== 'committed' && rec.from !== peer;
  }

  /** Whether a drain is moving this session off this node now: a start or destroy of it here waits (409). */
  isMoving(id: string): boolean {
    return this.mover?.moving.has(id) ?? false;
  }

  /**
   * The node the fleet places `id` on (this one first), or undefined: read
   * from etcd itself, bounded (a 503 without quorum). A copy made here for
   * a placement that is placed here no more is an old one (it moved away, or
   * the fleet declared it lost while this node was away) and must not run.
   */
  async placedOn(id: string): Promise<string | undefined> {
    return fleetOp(async () => {
      if ((await this.etcd.get(key.desired(this.c.node, id)).string()) !== null) return this.c.node;
      return (await placedNodes(this.etcd, id))[0];
    });
  }

  private marked = false;
  /** Whether this node's rows made for placements are all marked so (start() marks those an older version made). */
  get rowsMarked(): boolean {
    return this.marked;
  }

  /** Every session id the fleet's keys name: placements, statuses, lost records, moves (keys only). */
  private async fleetIds(): Promise<Set<string>> {
    const ids = new Set<string>();
    for (const p of [prefix.desired, prefix.status, prefix.lost, prefix.move]) for (const k of await this.etcd.getAll().prefix(p).keys()) ids.add(idOfKey(k));
    return ids;
  }

  /** Register and start watching; throws (one line) when etcd cannot be reached. */
  async start(): Promise<void> {
    try {
      await this.registry.register();
      // Rows an older daemon made for placements (before their mark): the start check covers them too.
      const marked = this.local.markPlaced(await this.fleetIds());
      this.marked = true;
      if (marked > 0) this.log.info({ sessions: marked }, 'fleet: rows made for placements by an older version marked so');
      // Before anything is made here: what the fleet declared lost while this node was away goes.
      await this.failure.start();
      await this.worker.start();
      this.watched.start();
      this.lists.start();
    } catch (e) {
      throw new Error(`cannot join the fleet through etcd at ${this.c.endpoints.join(', ')}: ${(e as Error).message}`);
    }
    // Once a second: place every pending session this node took, or whose entry node is unreachable.
    if (!this.closed) this.pendingLoop = every(1000, () => this.placePending(), (e) => this.log.debug({ err: e.message }, 'fleet: pending sessions not placed this time'));
    this.compactor.start();
  }

  /** Place a create (one that names volumes or stored secrets, on this node: placement.ts pinnedTo); the session as its node reports it running, or as pending. */
  async create(f: FleetCreate): Promise<Session> {
    const id = newSessionId();
    const d = { id, owner_uid: f.owner, owner_gids: f.gids, request: f.req, memory_mb: f.limits.memory_mb, limits: f.limits, entry: this.c.node };
    const name = f.req.name;
    if (name !== undefined) await fleetOp(() => claimName(this.etcd, f.owner, name, id));
    const placed = await fleetOp(() => place(this.etcd, d, this.c.candidates));
    if ('reason' in placed) {
      if (f.noWait) throw new ApiError('exhausted', `${placed.reason} (not waiting: --no-wait)`);
      // Not left pending: what it names was checked now, for now (a grant or a volume may be gone by the
      // time a slot frees), and a node of an older version would place it anywhere.
      if (pinnedTo(d) !== undefined) throw new ApiError('exhausted', `${placed.reason} (a create that names volumes or stored secrets is not left pending)`);
      const p: Pending = { ...d, limits: f.limits, reason: placed.reason, since: new Date().toISOString() };
      const gone = await fleetOp(() => putPending(this.etcd, p));
      // Its first send applied, the answer lost, and the entry went before the send again (pending.ts).
      if (gone && 'placed_on' in gone) return this.awaitRunning(id, gone.placed_on);
      if (gone) throw new ApiError('conflict', `session ${id} was destroyed while its create waited for etcd (it was listed pending meanwhile)`);
      this.log.info({ session: id, reason: placed.reason }, 'session pending: no node fits');
      return pendingView(p);
    }
    this.log.info({ session: id, node: placed.node }, 'session placed');
    return this.awaitRunning(id, placed.node);
  }

  /** The session once its node reports it (bounded by cluster.create_timeout_ms). */
  private async awaitRunning(id: string, node: string): Promise<Session> {
    const s = await awaitReport(this.etcd, id, () => true, this.c.create_timeout_ms, this.watched);
    if (!s) throw new ApiError('internal', `session ${id} was placed on node ${node}, which did not report it running within ${this.c.create_timeout_ms} ms (cluster.create_timeout_ms); it may still come up there`);
    if (s.state === 'lost' || s.state === 'fenced') throw new ApiError('exhausted', `session ${id} was placed on node ${node}, which became unreachable before it reported the session running; the fleet declared it ${s.state}`);
    if (s.state === 'failed') {
      await this.etcd.delete().key(key.status(id)).catch(() => undefined);
      throw new ApiError(s.error?.code === 'internal' ? 'confinement_failed' : toCode(s.error?.code), `on node ${node}: ${s.error?.message ?? 'failed'}`);
    }
    return s.session as Session;
  }

  /**
   * The pending sessions this node answers for (lists, shows, destroys them,
   * and places them): those it took, and those of entry nodes without a
   * lease (unreachable: theirs would wait for no one otherwise). Only the
   * node a caller reached lists pending ones, so none is listed twice.
   */
  async pending(asked?: Asked): Promise<Pending[]> {
    // Bounded: a list on this node answers with its own sessions (and the pending ones last read) even when etcd cannot.
    const read = this.watched.keysWith(asked, prefix.pending, prefix.alive).then(([pending, alive]) => [pending!, alive!] as [Map<string, string>, Map<string, string>]);
    const [all, alive] = await within(read, FLEET_READ_TIMEOUT_MS, "the fleet's etcd").then(
      (r) => (this.lastPending = r),
      () => this.lastPending,
    );
    return this.pendingIn(all, alive);
  }

  /** The pending entries of `all` shown here: this node's, and those of nodes gone (no lease). */
  private pendingIn(all: ReadonlyMap<string, string>, alive: ReadonlyMap<string, string>): Pending[] {
    this.pendingValues.keepOnly(all);
    return [...all].map(([k, v]) => this.pendingValues.get(k, v)).filter((p) => p.entry === this.c.node || !alive.has(key.alive(p.entry)));
  }

  /** How lists were made ahead (WatchedFleet.aheads: the daemon's /metrics). */
  get aheadCounts(): Readonly<AheadCounts> {
    return this.watched.aheads;
  }

  /**
   * What a list needs of the fleet, made into `f`'s answer while etcd
   * confirms that the watched copy is current (WatchedFleet.ahead): every
   * other node's sessions as it wrote them to etcd, and the pending ones;
   * `runs`, each other node's rows as kept (listJson.ts sends one that
   * stands whole as a block). Not made when a node is to be asked (Reach.publishedNow) or the copy is
   * not confirmed in time: the caller lists the usual way, on `asked`.
   */
  async listedAhead<T>(f: (far: Session[], pending: Pending[], runs: ReadonlyArray<readonly Session[]>) => T): Promise<{ made: T } | { asked?: Asked }> {
    const reach = this.reach;
    if (!reach) return {};
    let read = 0;
    const r = await this.watched.ahead(
      () => reach.publishedReady(),
      () => {
        const now = reach.publishedNow();
        const [pending, alive] = this.watched.peek(prefix.pending, prefix.alive) ?? [];
        if (now === undefined || !pending || !alive) return undefined;
        read = now.read;
        return f(now.far, this.pendingIn(pending, alive), now.runs);
      },
    );
    // The lists read from etcd that went out (ahead() may make its answer twice, once for nothing).
    if ('made' in r) reach.published.counts.lists += read;
    return r;
  }

  private async placePending(): Promise<void> {
    // A drained node's moves run beside (one at a time; a tick that finds one under way leaves it), and only
    // while this node is registered and fenced: back from away, its fence comes first.
    if (this.failure.open()) void this.mover?.tick();
    const pending = await this.pending();
    if (pending.length === 0) return;
    // The placements' keys read once for many pending entries, again when a second old (a placement can take seconds).
    let placed = { ids: new Set(await placedIds(this.etcd)), at: Date.now() };
    for (const p of pending) {
      if (Date.now() - placed.at > 1000) placed = { ids: new Set(await placedIds(this.etcd)), at: Date.now() };
      // Placed already: a pending entry a node of an older version wrote again (a plain put sent again after it was booked). It goes.
      if (placed.ids.has(p.id)) {
        this.log.warn({ session: p.id }, 'a pending entry of a session placed already: removed');
        await this.etcd.delete().key(key.pending(p.id));
        continue;
      }
      const r = await place(this.etcd, { id: p.id, owner_uid: p.owner_uid, owner_gids: p.owner_gids, request: p.request, memory_mb: p.memory_mb, limits: p.limits, entry: p.entry }, this.c.candidates, { fromPending: true });
      if ('node' in r) this.log.info({ session: p.id, node: r.node, entry: p.entry }, 'pending session placed');
      else if (r.reason !== p.reason && r.reason !== 'gone') {
        // Only while it is still there: a destroy in between is not undone.
        const k = key.pending(p.id);
        await this.etcd.if(k, 'Version', '>', 0).then(this.etcd.put(k).value(JSON.stringify({ ...p, reason: r.reason }))).commit();
      }
    }
  }

  /** A session of this node ended: its slot is free for the next placement at once (`ms`: the longest the caller waits for etcd; never rejects). */
  ended(id: string, ms?: number): Promise<void> {
    return this.closed ? Promise.resolve() : this.worker.ended(id, ms);
  }

  /** Destroy a pending session (it is placed nowhere yet): false if it is no longer pending. */
  async cancel(id: string): Promise<boolean> {
    return fleetOp(() => cancelPending(this.etcd, id));
  }

  nodes(): Promise<NodeRow[]> {
    return fleetOp(() => this.registry.nodes());
  }

  /** Cordon `node`, mark it drained (it moves its stopped sessions elsewhere: move.ts), and say which sessions are still placed there. */
  async drain(node: string): Promise<PlacedSession[]> {
    await this.cordon(node, true);
    // Only while it is a member: a removal in between leaves no drain mark behind (nodeRemoval.ts).
    const marked = await fleetOp(() => this.etcd.if(key.member(node), 'Version', '>', 0).then(this.etcd.put(key.drain(node)).value(new Date().toISOString())).commit());
    if (!marked.succeeded) throw new ApiError('not_found', `no node ${node} in the fleet`, 'name');
    return fleetOp(() => placedOn(this.etcd, node));
  }

  /** A node gone for good leaves the fleet (nodeRemoval.ts). */
  remove(node: string): Promise<Removal> {
    return fleetOp(() => removeNode(this.etcd, node, this.c.node, this.c.grace_s));
  }

  /** Uncordoning a node also ends its drain. */
  async cordon(node: string, on: boolean): Promise<void> {
    if (!(await fleetOp(() => this.registry.cordon(node, on)))) throw new ApiError('not_found', `no node ${node} in the fleet`, 'name');
    if (!on) await fleetOp(() => this.etcd.delete().key(key.drain(node)).exec());
  }

  /** Daemon stop: leave the fleet at once (its sessions keep running here). */
  async close(): Promise<void> {
    this.closed = true;
    this.pendingLoop?.stop();
    // Its listing first (deleted, or lapsed: bounded), so no node lists this one from etcd once it stops answering.
    await Promise.race([this.lists.close(), new Promise((r) => setTimeout(r, 2000).unref())]);
    this.compactor.close();
    this.failure.close();
    // Bounded: with etcd gone the revoke would retry for long; the lease then lapses by itself.
    const leave = Promise.all([this.worker.close(), this.registry.close(true)]);
    await Promise.race([leave, new Promise((r) => setTimeout(r, 2000).unref())]);
    this.reach?.close();
    this.watched.close();
    this.etcd.close();
  }
}

/** The owning node's error code, if it is one a create answers with. */
const CODES: readonly ErrorCode[] = ['invalid_request', 'not_found', 'conflict', 'exhausted', 'too_many', 'forbidden', 'insufficient_storage', 'confinement_failed'];
function toCode(c: string | undefined): ErrorCode {
  return CODES.find((x) => x === c) ?? 'confinement_failed';
}
