// Session routes: list, create, show, stats, destroy, refresh-auth. The dispatcher
// has found the session and checked the action against its owner; create
// checks what the request declares (secrets, volumes) and the caller's
// budget, the totals inside the transaction that records the session.
import { BudgetRefusal } from '../../access/budgets.js';
import type { Caller } from '../../access/guard.js';
import type { CreateSessionRequest, Session } from '../../api/schemas.js';
import type { ResolvedVolume } from '../../sessions/manager.js';
import { ApiError } from '../../vocab/errors.js';
import { ENDED_STATES } from '../../vocab/states.js';
import { parseOwned, refText, VOLUME_NAME } from '../../vocab/names.js';
import { sessionIds, sessionTable, type SessionListed } from '../../api/render.js';
import { Printed, Serialized, type Handlers } from '../dispatch.js';
import { notFound } from '../objects.js';
import type { Context } from '../route.js';
import { pendingView } from '../../fleet/views.js';
import type { Reach } from '../../fleet/reach.js';
import type { Asked } from '../../fleet/watched.js';
import { tagged } from '../listTag.js';
import { listParts } from '../listJson.js';

const consoleInfo = (ctx: Context) => (id: string) => ctx.consoles.info(id);

/** The volumes a create mounts, each found for the caller and checked (volume.use) against its owner. */
function volumesFor(ctx: Context, caller: Caller, req: CreateSessionRequest): ResolvedVolume[] {
  return (req.volumes ?? []).map((m) => {
    const ref = { kind: 'name' as const, ...parseOwned(m.name, VOLUME_NAME)! };
    const detail = `at ${m.target}${m.readonly ? ' ro' : ''}`;
    let v;
    try {
      v = ctx.objects.volume(ref, caller);
    } catch (e) {
      if (e instanceof ApiError && e.code === 'not_found') ctx.access.notFound(caller, 'volume.use', 'volume', refText(ref), detail, e);
      throw e;
    }
    const id = ref.owner === undefined ? v.name : `${v.owner_uid}:${v.name}`;
    ctx.access.check(caller, 'volume.use', { kind: 'volume', id, owner_uid: v.owner_uid }, detail, { error: notFound('volume', ref), ref: refText(ref) });
    return { id: v.id, name: v.name, target: m.target, readonly: m.readonly };
  });
}

/** A start of this node's copy of a session the fleet places elsewhere or nowhere. */
const oldCopy = (id: string, node: string, on: string | undefined) =>
  new ApiError(
    'conflict',
    on === undefined
      ? `session ${id} is placed on no node of the fleet: node ${node}'s copy is an old one (it moved away, or the fleet declared it lost while ${node} was away), and does not start`
      : `session ${id} is placed on node ${on}, not ${node}: ${node}'s copy is an old one (it moved away), and does not start`,
  );
/** A drain is moving the session to another node (src/fleet/move.ts): it is left alone until that ends. */
const movingNow = (id: string) => new ApiError('conflict', `session ${id} is being moved to another node (its node is drained); try again once the move is done`);
const movingIn = (id: string) => new ApiError('conflict', `session ${id} is being moved to this node (a drain of the node it was on); try again once the move is done`);

/** Fleet mode: a session of this node, with the node it runs on. */
const here = <T extends object>(ctx: Context, s: T): T => (ctx.fleet && (s as { node?: unknown }).node !== ctx.fleet.node ? { ...s, node: ctx.fleet.node } : s);

/** `f()` once the requests sent in this tick are on the wire (setImmediate runs after the ticks that send them). */
const afterAsks = <T>(f: () => T): Promise<T> =>
  new Promise((resolve, reject) =>
    setImmediate(() => {
      try {
        resolve(f());
      } catch (e) {
        reject(e as Error);
      }
    }),
  );

/** The list's rows as `caller` may see them: this node's own, every other node's and the lost ones (`far`), the pending ones; a session the fleet declared lost shown once, lost. */
function merged<T extends SessionListed>(ctx: Context, caller: Caller, own: T[], far: Array<T | Session>, pending: Session[]): Array<T | Session> {
  const peer = caller.via === 'peer';
  const lostIds = new Set(far.filter((s) => s.state === 'lost').map((s) => s.id));
  return [...own, ...far, ...pending].filter((s) => (peer || ctx.access.visible(caller, s)) && (s.state === 'lost' || !lostIds.has(s.id)));
}

/**
 * What a list shows `caller`: this node's sessions (`mine`), and in fleet mode
 * every other node's, each with its node, and the pending ones, this node's
 * policy applied; a fenced session of this node shown once: lost, from the
 * fleet, until its owner destroys it. The other nodes are asked first and
 * this node's own are read while they answer (the fleet's reads and the
 * peers' lists are waits here; this node's list is work).
 */
async function listed<T extends SessionListed>(ctx: Context, caller: Caller, others: (reach: Reach) => Promise<T[]>, mine: () => T[], asked?: Asked): Promise<Array<T | Session>> {
  const fleet = ctx.fleet;
  const peer = caller.via === 'peer';
  const reach = peer ? undefined : fleet?.reach;
  const pendingP = fleet && !peer ? fleet.pending(asked).then((ps) => ps.map(pendingView)) : Promise.resolve([]);
  const othersP = reach ? others(reach) : Promise.resolve([]);
  // With other nodes asked, this node's own is made once their asks are on the wire: their lists are made
  // meanwhile, not after. Their answer is handled before that wait: a rejection meanwhile is the list's error,
  // not the process's.
  const farP = Promise.all([othersP, pendingP]);
  farP.catch(() => undefined);
  const own = (reach ? await afterAsks(mine) : mine()).map((s) => here(ctx, s));
  const [far, pending] = await farP;
  return merged(ctx, caller, own, far, pending);
}

/**
 * A list's answer, `out` of its rows. In fleet mode, ended sessions left out,
 * first made whole (rows and their serializing) from the fleet's watched copy
 * while etcd confirms that copy is current (Fleet.listedAhead): the work is
 * done while etcd answers, not after. Else, or when it cannot be, as listed(),
 * on the revision read already asked, if any.
 */
async function answer<T extends SessionListed, R>(
  ctx: Context,
  caller: Caller,
  all: boolean,
  others: (reach: Reach, asked?: Asked) => Promise<T[]>,
  mine: () => T[],
  out: (rows: Array<T | Session>, runs?: ReadonlyArray<readonly Session[]>) => R,
): Promise<R> {
  let asked: Asked | undefined;
  if (ctx.fleet?.reach && caller.via !== 'peer' && !all) {
    const r = await ctx.fleet.listedAhead((far, pending, runs) => out(merged(ctx, caller, mine().map((s) => here(ctx, s)), far, pending.map(pendingView)), runs));
    if ('made' in r) return r.made;
    asked = r.asked;
  }
  return out(await listed(ctx, caller, (reach) => others(reach, asked), mine, asked));
}

/** The sessions `caller` may see, as the list route gives them (fleet mode: every node's): the list, and a fleet event stream's first event (`ask`: every node asked, not read from etcd: Reach.others). */
export const sessionsFor = (ctx: Context, caller: Caller, all: boolean, ask = false): Promise<Session[]> =>
  listed(ctx, caller, (reach) => reach.others(all, ask), () => ctx.sessions.list(all, consoleInfo(ctx), ctx.fleet?.node));

export const sessionHandlers: Pick<Handlers, 'sessionList' | 'nodeSessionRows' | 'sessionCreate' | 'sessionShow' | 'sessionStats' | 'sessionDestroy' | 'sessionStop' | 'sessionStart' | 'refreshAuth'> = {
  sessionList: async (ctx, { caller, query, req }) => {
    const all = query.all ?? false;
    const own = () => ctx.sessions.list(all, consoleInfo(ctx), ctx.fleet?.node);
    // Another node asks: this node's own, all of them (it filters), tagged (listTag.ts).
    if (caller.via === 'peer' && query.format === undefined) return tagged(ctx, req, 'list', all, own);
    // Sized for what is printed: the table's columns of each session (the other nodes' too), not every field of it.
    if (query.format === 'text' || query.format === 'ids')
      return answer(ctx, caller, all, (reach, asked) => reach.rows(all, asked), () => ctx.sessions.listTable(all, ctx.fleet?.node), (rows) => new Printed(query.format === 'ids' ? sessionIds(rows) : sessionTable(rows, caller.uid)));
    // The other nodes' rows kept (frozen) go out as serialized when first sent, each node's whole list as one block
    // while it stands (listJson.ts); --json's pretty print as usual.
    return answer(ctx, caller, all, (reach, asked) => reach.others(all, false, asked), own, (sessions, runs) => (query.format === undefined ? new Serialized(200, listParts(sessions, runs)) : { sessions }));
  },

  // Served to the fleet's nodes alone (the route's 'peer'): the caller's node filters by its own policy.
  nodeSessionRows: (ctx, { query, req }) => tagged(ctx, req, 'rows', query.all ?? false, () => ctx.sessions.listTable(query.all ?? false, ctx.fleet?.node)),

  sessionCreate: {
    detail: ({ body }) => body.name ?? null,
    run: async (ctx, { caller, body: req, query, log, auditId }) => {
      const secrets = [...(req.auth ?? []), ...(req.env_tokens ?? [])];
      if (secrets.length) ctx.access.check(caller, 'auth.use', undefined, secrets.join(','));
      const profile = req.profile ?? ctx.config.sessions.profile;
      ctx.access.checkProfile(caller, 'session.create', profile, undefined, req.name ?? null);
      const volumes = volumesFor(ctx, caller, req);
      const limits = ctx.sessions.limitsFor(req, profile);
      const asked = ctx.budgets.requestProblem(caller, limits, req.publish ?? []);
      if (asked) ctx.access.refuse(caller, 'session.create', undefined, asked.rule, asked.error, req.name ?? null);
      log.info({ caller: caller.uid, name: req.name, auth: req.auth, env_tokens: req.env_tokens }, 'create session');
      // Fleet mode: placed on a node that fits (this one or another), checked here, made there.
      if (ctx.fleet) {
        const placed = await ctx.fleet.create({ req: { ...req, profile }, owner: caller.uid, gids: caller.gids, limits, noWait: query.no_wait ?? false });
        if (auditId !== undefined) ctx.audit.setSession(auditId, placed.id);
        return placed;
      }
      let session;
      try {
        session = await ctx.sessions.create(req, caller.uid, {
          volumes,
          admit: (usage) => {
            const over = ctx.budgets.totalsProblem(caller, limits, usage);
            if (over) throw over;
          },
        });
      } catch (e) {
        // Thrown inside the insert's transaction, recorded once it rolled back.
        if (e instanceof BudgetRefusal) ctx.access.refuse(caller, 'session.create', undefined, e.rule, e.error, req.name ?? null);
        throw e;
      }
      if (auditId !== undefined) ctx.audit.setSession(auditId, session.id);
      if (req.console) {
        const row = ctx.sessions.find(session.id)!;
        await ctx.consoles.keep(row, 'create');
        session = ctx.sessions.toApi(row, consoleInfo(ctx));
      }
      return session;
    },
  },

  // Fleet mode: with the node it runs on (a show of another node's session is forwarded there).
  sessionShow: (ctx, { target }) => here(ctx, ctx.sessions.toApi(target, consoleInfo(ctx))),

  sessionStats: (ctx, { target }) => ctx.sessions.reports.stats(target),

  sessionDestroy: {
    detail: ({ query }) => [query.force ? 'force' : undefined, query.timeout !== undefined ? `timeout ${query.timeout}s` : undefined, query.failure !== undefined ? `failure: ${query.failure}` : undefined].filter(Boolean).join(', ') || null,
    run: async (ctx, { caller, target, query, log }) => {
      if (ctx.fleet?.isMoving(target.id)) throw movingNow(target.id);
      // A copy a drain is making here: the move's until it commits (its undo destroys it). Without etcd a destroy still goes on.
      if (ctx.fleet && target.placed && (await ctx.fleet.movingIn(target.id, caller.via === 'peer' ? caller.peer : undefined).catch(() => false))) throw movingIn(target.id);
      const graceMs = query.force ? 0 : query.timeout === undefined ? undefined : query.timeout * 1000;
      log.info({ caller: caller.uid, grace_ms: graceMs, failure: query.failure }, 'destroy session');
      await ctx.sessions.destroy(target.id, query.failure, graceMs);
      // Its slot is given back before the reply (1 s at most: without etcd a destroy still answers), so a create
      // right after it finds the room it left.
      await ctx.fleet?.ended(target.id, 1000);
      // One the fleet declared lost and this node then fenced: its owner has seen it end, so the fleet's record of it goes too.
      const reach = ctx.fleet?.reach;
      if (reach && target.state === 'failed') void reach.forget(target.id).catch((e: Error) => log.warn({ err: e.message }, 'the fleet keeps its lost record of this session: etcd did not answer'));
    },
  },

  sessionStop: async (ctx, { caller, target, log }) => {
    log.info({ caller: caller.uid }, 'stop session');
    return here(ctx, await ctx.sessions.stopSession(target.id, `asked by uid ${caller.uid}`));
  },

  sessionStart: async (ctx, { caller, target, log }) => {
    if (ctx.fleet?.isMoving(target.id)) throw movingNow(target.id);
    // Fail closed: a copy made for a placement starts only while the fleet still places it here (checked in
    // every state a start may end in running from: a start waits out a stop under way).
    // Until the node has joined, a row an older version made for a placement may not be marked yet.
    if (ctx.fleet && !target.placed && !ctx.fleet.rowsMarked) throw new ApiError('exhausted', `node ${ctx.fleet.node} is joining the fleet; start session ${target.id} again in a moment`);
    if (ctx.fleet && target.placed && target.state !== 'running' && !ENDED_STATES.includes(target.state)) {
      // Both read at once. A copy a drain is making here (its files in, stopped, before its group commits): run now, an undo would end it.
      const [on, inbound] = await Promise.all([ctx.fleet.placedOn(target.id), ctx.fleet.movingIn(target.id)]);
      if (on !== ctx.fleet.node) throw oldCopy(target.id, ctx.fleet.node, on);
      if (ctx.fleet.isMoving(target.id)) throw movingNow(target.id); // a drain's move began meanwhile
      if (inbound) throw movingIn(target.id);
    }
    // A grant taken away holds at the next start.
    ctx.access.checkProfile(caller, 'session.start', target.profile, { kind: 'session', id: target.id, owner_uid: target.owner_uid });
    log.info({ caller: caller.uid }, 'start session');
    let session;
    try {
      session = await ctx.sessions.startSession(target.id, (usage) => {
        const over = ctx.budgets.totalsProblem(caller, target.limits, usage, false);
        if (over) throw over;
      });
    } catch (e) {
      // Thrown inside the reservation's transaction, recorded once it rolled back.
      if (e instanceof BudgetRefusal) ctx.access.refuse(caller, 'session.start', undefined, e.rule, e.error, target.name);
      throw e;
    }
    if (target.keep_console) {
      const row = ctx.sessions.find(target.id)!;
      // Undone only if this call started it: a start of one running already leaves it running, whatever its console does.
      await (target.state === 'running' ? ctx.consoles.ensure(row) : ctx.consoles.keep(row, 'start'));
      session = ctx.sessions.toApi(row, consoleInfo(ctx));
    }
    return here(ctx, session);
  },

  refreshAuth: async (ctx, { caller, target, log }) => {
    const r = await ctx.sessions.refreshAuth(target);
    log.info({ caller: caller.uid, refreshed: r.refreshed, missing: r.missing }, 'secrets refreshed');
    return { id: target.id, ...r };
  },
};
