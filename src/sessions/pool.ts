// Sessions made ahead ([pool] in the config): a few running sessions per
// shape (profile x network), made by the cold path itself (admission and
// the same steps) with the config's defaults and no owner, so that a create
// of that shape is a hand-out: one transaction that gives a member its
// owner, name, console and idle timeout, with the owner's budget checked as
// a reservation checks it. A name that is a hostname (hostnameFor) is set in
// the kernel first, while the member is still nobody's: its UTS namespace,
// its /etc/hosts; then its row and stored plan in that transaction, so that
// what is stored is what a cold create of that name would have stored.
// Which creates qualify, and when to make one more, is poolPolicy.ts's; any
// other create takes the cold path, unchanged.
//
// A member is nobody's until handed out: no listing, event, name lookup or
// budget sees it (the store's `pool` column), but it holds an ID slot, an
// address and a place of sessions.max_sessions like any session; a cold
// create that finds the host full gets one back (makeRoom). Members are
// discarded when the daemon stops and, left by a crash, when it starts.
import type { CreateSessionRequest } from '../api/schemas.js';
import { ApiError } from '../vocab/errors.js';
import { parseStoredPlan } from '../isolation/plan.js';
import { addon } from '../native/addon.js';
import { writeSessionFiles } from '../network/sessionFiles.js';
import { reserveError, type CreateExtra } from './admission.js';
import { hostnameFor } from './identity.js';
import type { Kit } from './kit.js';
import { sessionDir } from './planning.js';
import { memberRequest, POOL_SHAPES, refillNow, shapeFor, type PoolShape } from './poolPolicy.js';

export interface PoolDeps {
  /** Make a session as a member of a shape (admission and the steps of a cold create); its id. */
  make(req: CreateSessionRequest, extra: CreateExtra): Promise<string>;
  /** Destroy a member at once (no grace: nothing of anyone's runs in it). */
  discard(id: string): Promise<void>;
}

/** After a hand-out, the refill waits this long: what the caller does next with its session goes first. */
const REFILL_DELAY_MS = 20;

export class Pool {
  /** Running members not handed out, oldest first. */
  private readonly ready = new Map<PoolShape, string[]>(POOL_SHAPES.map((s) => [s, []]));
  private filling: Promise<void> | undefined;
  private timer: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(
    private readonly kit: Kit,
    private readonly deps: PoolDeps,
  ) {}

  private get enabled(): boolean {
    return POOL_SHAPES.some((s) => this.kit.config.pool[s] > 0);
  }

  /** Discard every live member (an earlier daemon's, left by a crash; or this one's, at its stop). */
  async sweep(): Promise<void> {
    for (const ids of this.ready.values()) ids.length = 0;
    for (const id of this.kit.store.pool.live()) {
      await this.deps.discard(id).catch((e: Error) => this.kit.log.warn({ session: id, err: e.message }, 'cannot discard a pool member'));
    }
  }

  /** Start filling (the daemon serves). */
  start(): void {
    this.refillSoon(0);
  }

  /**
   * A member handed to the caller, or undefined (the cold path): no pool of
   * the shape, none ready, or a request a member cannot serve. Throws what a
   * reservation would (the owner's budget, its name taken).
   */
  claim(req: CreateSessionRequest, owner: number, extra: CreateExtra): string | undefined {
    if (!this.enabled) return undefined;
    // A create whose id is chosen elsewhere (main's fleet placement, CreateExtra.id) is made with that id: never a member's.
    if ((extra as { id?: string }).id !== undefined) return undefined;
    const asked = shapeFor(this.kit.config, req, extra.volumes?.length ?? 0);
    if ('cold' in asked) {
      this.kit.log.debug({ why: asked.cold }, 'create takes the cold path');
      return undefined;
    }
    const name = req.name ?? null;
    if (name && this.kit.store.getLiveByName(owner, name)) throw new ApiError('conflict', `you already have a live session named '${name}'`, 'name');
    const ids = this.ready.get(asked.shape)!;
    const to = { owner, name, keepConsole: req.console ?? false, idleTimeoutS: (req.idle_timeout_s ?? this.kit.config.sessions.idle_timeout_s) || undefined, admit: extra.admit };
    try {
      for (let id = ids.shift(); id !== undefined; id = ids.shift()) {
        const hostname = hostnameFor(id, name);
        let renamed: { hostname: string; plan: string } | undefined;
        let given: boolean;
        try {
          if (hostname !== id) renamed = this.rename(id, hostname);
          given = this.kit.store.pool.claim(id, asked.shape, to, renamed);
        } catch (e) {
          // Refused for this owner (or the kernel would not take the name): still a member, as it was.
          this.giveBack(id, asked.shape, hostname !== id);
          throw reserveError(this.kit, e, name, owner);
        }
        // Not given: it ended while it waited (its own undo released it).
        if (!given) continue;
        this.kit.log.info({ session: id, shape: asked.shape, owner }, 'session handed out from the pool');
        this.kit.listeners.changed?.(id);
        return id;
      }
      return undefined;
    } finally {
      this.refillSoon();
    }
  }

  /**
   * The member's hostname set where the session reads it (its UTS namespace,
   * its /etc/hosts): the plan that now says so, to store with the hand-out.
   */
  private rename(id: string, hostname: string): { hostname: string; plan: string } {
    const row = this.kit.store.get(id);
    if (row?.state !== 'running' || row.plan === null || row.init_pid === null || row.init_start_time === null) throw new ApiError('internal', `pool member ${id} is not running`);
    const plan = parseStoredPlan(row.plan, `session ${id}`);
    if (!plan.ops.some((o) => o.op === 'hostname')) throw new ApiError('internal', `pool member ${id}: its plan sets no hostname`);
    const ops = plan.ops.map((o) => (o.op === 'hostname' ? { ...o, args: [hostname] } : o));
    addon().setHostname(row.init_pid, row.init_start_time, hostname);
    writeSessionFiles(sessionDir(this.kit.config, id), hostname, this.kit.store.leaseOf(id));
    return { hostname, plan: JSON.stringify({ ...plan, ops }) };
  }

  /** A member a hand-out did not take goes back to the pool; renamed, its own name first, or it is discarded (fail closed). */
  private giveBack(id: string, shape: PoolShape, renamed: boolean): void {
    try {
      if (renamed) this.rename(id, id);
      this.ready.get(shape)!.unshift(id);
    } catch (e) {
      this.kit.log.warn({ session: id, err: (e as Error).message }, 'pool member not given back: discarded');
      void this.deps.discard(id).catch(() => undefined);
    }
  }

  /** A cold create that finds the host full: a member gives its place back. */
  async makeRoom(): Promise<void> {
    const c = this.kit.config;
    const full = this.kit.store.countActive() >= c.sessions.max_sessions || this.kit.store.pool.freeSlots(c.ids.slots) === 0;
    if (!full) return;
    const id = [...this.ready.values()].find((ids) => ids.length > 0)?.shift();
    if (id !== undefined) await this.deps.discard(id);
  }

  private refillSoon(delayMs = REFILL_DELAY_MS): void {
    if (this.closed || this.timer || this.filling || !this.enabled) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.filling = this.refillOne().finally(() => (this.filling = undefined));
    }, delayMs);
  }

  /** Make one member of the first shape short of its size; then look again. */
  private async refillOne(): Promise<void> {
    const c = this.kit.config;
    const active = this.kit.store.countActive();
    // The host's last ID slot stays a tenant's, as its last place does (refillNow).
    if (this.kit.store.pool.freeSlots(c.ids.slots) <= 1) return;
    const shape = POOL_SHAPES.find((s) => refillNow(c.pool[s], { ready: this.ready.get(s)!.length, filling: 0, active }, c.sessions.max_sessions));
    if (shape === undefined) return;
    let id: string;
    try {
      id = await this.deps.make(memberRequest(shape), { pool: shape });
    } catch (e) {
      // The next hand-out tries again: a host that cannot make one now is not asked in a loop.
      this.kit.log.warn({ shape, err: (e as Error).message }, 'cannot make a pool member');
      return;
    }
    if (this.closed) return this.deps.discard(id);
    this.ready.get(shape)!.push(id);
    this.kit.log.debug({ session: id, shape }, 'pool member ready');
    setImmediate(() => this.refillSoon(0));
  }

  /** The daemon stops: no more refills; the members are discarded (the next start would, else). */
  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.timer);
    await this.filling?.catch(() => undefined); // a member made meanwhile is in the database: the sweep finds it
    await this.sweep();
  }
}
