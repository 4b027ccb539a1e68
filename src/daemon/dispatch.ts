// Dispatch from the route table (src/api/routes.ts). For every request, in
// this order: match method and path; validate the path parameters, the
// query and the body against the route's schemas (400 naming the field);
// find the object the route acts on for this caller (404); check the
// route's action against that object's owner (403, audited; a refused
// lookup by name reads as 404, so names of others' objects never leak);
// then run the handler with everything typed. No handler can skip a step.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import type { z } from 'zod';
import { ApiError, zodToApiError } from '../vocab/errors.js';
import { hostPortParam, ROUTES, type RouteName, type Routes, type RouteSpec } from '../api/routes.js';
import { publishSchema } from '../api/schemas.js';
import type { Caller, Target } from '../access/guard.js';
import type { SessionRow } from '../store/sessionStore.js';
import type { VolumeRow } from '../store/volumeStore.js';
import { parseOwned, refText, secretRefOf, sessionRefOf, VOLUME_NAME, type Ref } from '../vocab/names.js';
import { readJsonBody, sendJson, sendJsonText } from './http.js';
import { notFound, type SecretTarget } from './objects.js';
import { formatOf, sendPrinted, sendText } from './render.js';
import type { Context, Upgrade } from './route.js';
import type { Session } from '../api/schemas.js';
import { pendingView } from '../fleet/views.js';
import { FORWARDED_HEADER } from '../fleet/peerTls.js';
import type { FleetReads } from '../fleet/fleetReads.js';
import { FLEET_READ_TIMEOUT_MS, FleetTimeout, within } from '../fleet/deadline.js';
import { Forward, forwardHttp, forwardUpgrade } from './forward.js';
import { ENDED_STATES } from '../vocab/states.js';

type TargetOf<R extends RouteSpec> = R['owner'] extends { kind: 'session' }
  ? SessionRow
  : R['owner'] extends { kind: 'volume' }
    ? VolumeRow
    : R['owner'] extends { kind: 'secret' }
      ? SecretTarget
      : undefined;
type Out<S> = S extends z.ZodType ? z.output<S> : undefined;

export interface Input<R extends RouteSpec> {
  caller: Caller;
  /** The object the route acts on, found for this caller and checked against its owner. */
  target: TargetOf<R>;
  /** How far the rule that allowed the call reaches: the caller's own objects, or everyone's. */
  scope: 'self' | 'all';
  query: Out<R['query']>;
  body: Out<R['body']>;
  /** The published address of a .../ports/{port} path. */
  port: R['path'] extends `${string}{port}` ? { host_ip: string; host_port: number } : undefined;
  req: IncomingMessage;
  url: URL;
  /** A child logger naming the session, for session routes. */
  log: Logger;
  /** The audit event of this call's decision (a create names its session in it once made). */
  auditId?: number;
}

/** A JSON reply with a status other than the route's first, or headers of its own (Set-Cookie). */
export class Replied<T> {
  constructor(
    readonly status: number,
    readonly body: T,
    readonly headers: Record<string, string> = {},
  ) {}
}

/** An answer serialized already (src/daemon/madeLists.ts: each row once, kept for the next). */
export class Serialized {
  constructor(
    readonly status: number,
    /** JSON text, or the bytes of it (a list: listJson.ts, in a few buffers). */
    readonly json: string | Buffer | readonly Buffer[],
    readonly headers: Record<string, string> = {},
  ) {}
}

/** 304: the caller (another node) holds this answer already, by its tag (src/daemon/listTag.ts). */
export class Unchanged {
  constructor(readonly etag: string) {}
}

/** A reply the handler already rendered as the CLI prints it (a ?format= listing sized for its table), sent as text/plain. */
export class Printed {
  constructor(readonly text: string) {}
}

type Result<R extends RouteSpec> = R['reply'] extends { kind: 'json'; schema: infer S extends z.ZodType } ? z.input<S> | Replied<z.input<S>> | Printed | Unchanged | Serialized : void;
type Run<R extends RouteSpec> = R['reply'] extends { kind: 'websocket' }
  ? (ctx: Context, i: Input<R>, up: Upgrade) => Promise<void>
  : R['reply'] extends { kind: 'stream' | 'text' }
    ? (ctx: Context, i: Input<R>, res: ServerResponse) => Promise<void> | void
    : (ctx: Context, i: Input<R>) => Promise<Result<R>> | Result<R>;

/** A route's handler, with what its audit event says of the call (exec: the command). */
export type Handler<R extends RouteSpec> = Run<R> | { detail(i: Input<R>): string | null; run: Run<R> };
export type Handlers = { [K in RouteName]: Handler<Routes[K]> };

interface Compiled {
  name: RouteName;
  spec: RouteSpec;
  re: RegExp;
  params: string[];
}

function compile(): Compiled[] {
  return (Object.entries(ROUTES) as [RouteName, RouteSpec][]).map(([name, spec]) => {
    const params: string[] = [];
    const re = new RegExp(`^${spec.path.replace(/\{(\w+)\}/g, (_m, p: string) => (params.push(p), '([^/]+)'))}$`);
    return { name, spec, re, params };
  });
}

function decoded(raw: string, what: string, field: string): string {
  try {
    return decodeURIComponent(raw);
  } catch {
    throw new ApiError('invalid_request', `${what} is not valid URL encoding`, field);
  }
}

/** The path's object reference, validated before anything is looked up. */
function refParam(kind: string, raw: string): Ref {
  const text = decoded(raw, `${kind} reference`, kind === 'session' ? 'id' : 'name');
  const short = text.slice(0, 140);
  if (kind === 'session') {
    const r = sessionRefOf(text);
    if (!r) throw new ApiError('invalid_request', `invalid session reference '${short}': must be a session id (s-xxxxxxxxxx), a session name, or UID:NAME`, 'id');
    return r;
  }
  const o = kind === 'volume' ? parseOwned(text, VOLUME_NAME) : secretRefOf(text);
  if (!o) {
    const what = kind === 'volume' ? 'a volume name matching ^[a-z0-9][a-z0-9_.-]{0,62}$' : 'a provider name (^[a-z0-9][a-z0-9_-]{0,62}$) or an env token name (^[A-Z_][A-Z0-9_]{0,127}$)';
    throw new ApiError('invalid_request', `invalid ${kind} '${short}': must be ${what}, or UID:NAME`, 'name');
  }
  return { kind: 'name', ...o };
}

function portParam(raw: string): { host_ip: string; host_port: number } {
  const text = decoded(raw, 'host address and port', 'port');
  const m = hostPortParam.exec(text);
  const r = publishSchema.pick({ host_ip: true, host_port: true }).safeParse(m ? { host_ip: m[1], host_port: Number(m[2]) } : {});
  if (!m || !r.success) throw new ApiError('invalid_request', `'${text.slice(0, 40)}' is not a published loopback address and port like 127.0.0.1:8080`, 'port');
  return r.data;
}

function queryOf(spec: RouteSpec, url: URL): unknown {
  const q: Record<string, string | string[]> = {};
  for (const [k, v] of url.searchParams) {
    if (k === 'ticket') continue; // the TCP listener's, checked at admission
    if (spec.repeated?.includes(k)) ((q[k] ??= []) as string[]).push(v);
    else q[k] = v;
  }
  for (const k of spec.repeated ?? []) q[k] ??= [];
  return q;
}

function parse<S extends z.ZodType>(schema: S, value: unknown, what: string): z.output<S> {
  const r = schema.safeParse(value);
  if (!r.success) throw zodToApiError(r.error, what);
  return r.data;
}

/** A show or destroy of a session of the fleet no node answers for (pending, unreachable, lost), done on the node the caller reached. */
class FleetShown {
  constructor(
    readonly view: Session,
    readonly query: unknown,
  ) {}
}

/**
 * Throws FleetShown when `ref` is a session of the fleet no node answers
 * for and the caller may show or destroy it (the route's own access check):
 * pending (a destroy removes it, so no node ever makes it), lost (a destroy
 * removes its record: its owner has seen it), or on an unreachable node
 * (shown as last reported; a destroy goes on to be refused as unreachable).
 */
async function fleetViewCall(ctx: Context, route: 'sessionShow' | 'sessionDestroy', ref: Ref, caller: Caller, query: unknown, reads: FleetReads | undefined): Promise<void> {
  if (!ctx.fleet) return;
  const owner = ref.kind === 'name' ? (ref.owner ?? caller.uid) : undefined;
  // Asked at once: a pending one is rare, and waiting for that answer first would put a round of etcd reads on every forwarded show.
  // A peer asks about a session it was told is here: not another node's to answer for.
  const knownP = !ctx.fleet.reach || !reads || caller.via === 'peer' ? undefined : ctx.fleet.reach.known(ref.kind === 'id' ? ref : { kind: 'name', name: ref.name, owner: owner! }, reads);
  knownP?.catch(() => undefined); // not awaited when the session is pending
  const p = (await ctx.fleet.pending()).find((x) => (ref.kind === 'id' ? x.id === ref.id : x.request.name === ref.name && x.owner_uid === owner));
  const known = p ? undefined : await knownP;
  const view = p ? pendingView(p) : known?.view;
  if (!view || (route === 'sessionDestroy' && known && !known.lost)) return;
  const action = route === 'sessionShow' ? 'session.show' : 'session.destroy';
  ctx.access.check(caller, action, { kind: 'session', id: view.id, owner_uid: view.owner_uid }, null, ref.kind === 'name' ? { error: notFound('session', ref), ref: refText(ref) } : undefined);
  // Placed in the meantime: then it is an ordinary session of another node, not found here.
  if (route === 'sessionDestroy' && p && !(await ctx.fleet.cancel(p.id))) return;
  if (route === 'sessionDestroy' && known?.lost) {
    // Fenced: its node ended it and keeps its record; the destroy goes there, and that node removes
    // the fleet's record once it has released its own (a failure there leaves both, to try again).
    if (known.fencedOn) throw new Forward(known.fencedOn, undefined);
    await ctx.fleet.reach!.forget(view.id);
  }
  throw new FleetShown(view, query);
}

/**
 * Throws Forward when `ref` names a session another node runs and the route
 * is forwarded: the access check and its audit event are made here, against
 * the owner etcd holds for it; the owning node does neither again.
 */
async function forwardCall(ctx: Context, spec: RouteSpec, ref: Ref, caller: Caller, body: unknown, detail: () => string | null, reads: FleetReads | undefined, wanted: () => boolean = () => true): Promise<void> {
  const reach = ctx.fleet?.reach;
  if (!reach || spec.fleet !== 'forward' || caller.via === 'peer' || !spec.action) return;
  // Only show and destroy ask every node for an id placed nowhere (one that ended there): a call that acts on a running session needs none.
  const ended = spec.action === 'session.show' || spec.action === 'session.destroy';
  const to = await reach.locate(ref.kind === 'id' ? ref : { kind: 'name', name: ref.name, owner: ref.owner ?? caller.uid }, ended, reads);
  if (!to || !wanted()) return; // not wanted: answered meanwhile, nothing to check or record
  const hidden = ref.kind === 'name' ? { error: notFound('session', ref), ref: refText(ref) } : undefined;
  let d: string | null = null;
  try {
    d = detail();
  } catch {
    d = null; // a detail that reads the (remote) target: the audit event goes without it
  }
  ctx.access.check(caller, spec.action, { kind: 'session', id: to.id, owner_uid: to.owner_uid }, d, hidden);
  if (to.refusal) throw to.refusal;
  if (!to.alive) throw new ApiError('exhausted', `session ${to.id} is on node ${to.node}, which is unreachable (its lease lapsed)`);
  throw new Forward(to, body);
}

/** What a node asks of every other node for its lists and lookups, and a drain's check of root's shared secrets (auth.list, nodeSharedSecrets alone): not recorded there. */
const FLEET_READS: ReadonlySet<string> = new Set(['session.list', 'session.show', 'events.list', 'auth.list']);

const label = (name: RouteName) => name.replace(/[A-Z]/g, (c) => ` ${c.toLowerCase()}`);

export class Dispatcher {
  private readonly routes = compile();

  constructor(private readonly handlers: Handlers) {}

  /** The route for a request, or the error that says why there is none. */
  private match(method: string, path: string, ctx: Context, upgrade: boolean): { c: Compiled; raw: string[] } {
    const here = this.routes.filter((r) => (!r.spec.tcpOnly || ctx.auth) && r.re.test(path));
    const c = here.find((r) => r.spec.method === method && (r.spec.reply.kind === 'websocket') === upgrade);
    if (c) return { c, raw: c.re.exec(path)!.slice(1) };
    if (upgrade) throw new ApiError('not_found', `no WebSocket endpoint at ${path}`);
    const ws = here.find((r) => r.spec.reply.kind === 'websocket');
    if (ws) throw new ApiError('invalid_request', `${path.split('/').pop()} is a WebSocket endpoint: send an Upgrade request`);
    if (here.length > 0) throw new ApiError('invalid_request', `method ${method} not allowed on ${path} (${here.map((r) => r.spec.method).join(', ')})`);
    throw new ApiError('not_found', `no such endpoint: ${method} ${path}`);
  }

  private async input(ctx: Context, c: Compiled, raw: string[], req: IncomingMessage, url: URL, caller: Caller): Promise<{ input: Input<RouteSpec>; handler: Handler<RouteSpec> }> {
    const { spec } = c;
    // A node forwards only what the route table says it forwards: nothing else is served to a peer.
    if (caller.via === 'peer' && spec.fleet === 'local') throw new ApiError('forbidden', `${label(c.name).trim()} is not forwarded between nodes`);
    // And a node's own work between nodes is no caller's to ask for.
    if (caller.via !== 'peer' && spec.fleet === 'peer') throw new ApiError('not_found', `no such endpoint: ${req.method ?? 'GET'} ${url.pathname}`);
    let ref: Ref | undefined;
    let port: { host_ip: string; host_port: number } | undefined;
    c.params.forEach((p, i) => {
      if (p === 'port') port = portParam(raw[i]!);
      else ref = refParam(p, raw[i]!);
    });
    const what = label(c.name);
    const query = spec.query ? parse(spec.query, queryOf(spec, url), `${what} query`) : undefined;
    const body = spec.body ? parse(spec.body, await readJsonBody(req), `${what} request`) : undefined;
    const kind = spec.owner.kind;
    let target: SessionRow | VolumeRow | SecretTarget | undefined;
    let audited: Target | undefined;
    const handler = this.handlers[c.name] as Handler<RouteSpec>;
    const log0 = ctx.log;
    const detailOf = (i: Input<RouteSpec>) => (typeof handler === 'function' ? null : handler.detail(i));
    try {
      ({ target, audited } = this.find(ctx, kind, ref, caller));
      // A name whose session here ended (destroyed, or moved away by a drain) may name a live one on
      // another node now, and so does the id of one a drain moved away: that one is meant. With none,
      // the ended one here is. Whatever else the fleet answers (unreachable, a name two nodes hold) is
      // the answer: a destroy must not end the ended copy here, 204, while the session runs on. Only a
      // show reads the ended one here when the fleet does not answer within a list's bound.
      const row = target as SessionRow | undefined;
      if (row && ref && (ref.kind === 'name' || row.moved_to !== null) && kind === 'session' && ctx.fleet?.reach && caller.via !== 'peer' && ENDED_STATES.includes(row.state)) {
        const detail = () => detailOf({ caller, target: undefined, scope: 'all', query, body, port, req, url, log: log0 } as Input<RouteSpec>);
        if (spec.action !== 'session.show') await forwardCall(ctx, spec, ref, caller, body, detail, ctx.fleet.reach.keys.view());
        else {
          let late = false;
          const asked = forwardCall(ctx, spec, ref, caller, body, detail, ctx.fleet.reach.keys.view(), () => !late);
          asked.catch(() => undefined); // too late: the ended one here was shown
          try {
            await within(asked, FLEET_READ_TIMEOUT_MS, "the fleet's etcd");
          } catch (e) {
            late = true;
            if (e instanceof Forward || !(e instanceof FleetTimeout || (e instanceof ApiError && e.code === 'exhausted'))) throw e;
          }
        }
      }
    } catch (e) {
      // Not found here: what the fleet knows of it, read once for the questions below.
      const asks = (spec.fleet === 'forward' && spec.action) || c.name === 'sessionShow' || c.name === 'sessionDestroy';
      const reads = asks && kind === 'session' && ref && e instanceof ApiError && e.code === 'not_found' && caller.via !== 'peer' ? ctx.fleet?.reach?.keys.view() : undefined;
      if ((c.name === 'sessionShow' || c.name === 'sessionDestroy') && ref && e instanceof ApiError && e.code === 'not_found') await fleetViewCall(ctx, c.name, ref, caller, query, reads);
      const partial = { caller, target: undefined, scope: 'all', query, body, port, req, url, log: log0 } as Input<RouteSpec>;
      if (kind === 'session' && ref && e instanceof ApiError && e.code === 'not_found') await forwardCall(ctx, spec, ref, caller, body, () => detailOf(partial), reads);
      // A name that finds nothing is recorded as a name found but not the caller's is (guard.check): alike.
      if (!(e instanceof ApiError) || e.code !== 'not_found' || !ref || ref.kind !== 'name' || !spec.action) throw e;
      ctx.access.notFound(caller, spec.action, kind as Target['kind'], refText(ref), detailOf(partial), e);
    }
    const log = target && kind === 'session' ? ctx.log.child({ session: (target as SessionRow).id }) : ctx.log;
    const input = { caller, target, scope: 'all', query, body, port, req, url, log } as Input<RouteSpec>;
    // A peer's call was checked and audited at the node its caller reached; here it is recorded as vouched for,
    // but for the reads a node fans out to every node for its own lists and lookups (made as root, for any
    // caller, and unlimited: recorded, any tenant's list would push root's history out of every other node's trail).
    // A show forwarded for a caller says so (forward.ts), and is recorded.
    const forwarded = req.headers[FORWARDED_HEADER] === '1';
    if (spec.action && caller.via === 'peer' && (forwarded || !FLEET_READS.has(spec.action))) ctx.access.vouched(caller, spec.action, audited, detailOf(input));
    if (spec.action && caller.via !== 'peer') {
      const hidden = ref && ref.kind === 'name' ? { error: notFound(kind as 'session' | 'volume' | 'secret', ref), ref: refText(ref) } : undefined;
      input.scope = ctx.access.check(caller, spec.action, audited, detailOf(input), hidden);
      input.auditId = ctx.audit.lastId;
    }
    return { input, handler };
  }

  /** The object a route acts on, found for the caller, and how the audit trail names it. */
  private find(ctx: Context, kind: RouteSpec['owner']['kind'], ref: Ref | undefined, caller: Caller): { target: SessionRow | VolumeRow | SecretTarget | undefined; audited: Target | undefined } {
    let target: SessionRow | VolumeRow | SecretTarget | undefined;
    let audited: Target | undefined;
    if (ref && kind === 'session') {
      const row = ctx.objects.session(ref, caller);
      target = row;
      audited = { kind: 'session', id: row.id, owner_uid: row.owner_uid };
    } else if (ref && kind === 'volume') {
      const v = ctx.objects.volume(ref, caller);
      target = v;
      audited = { kind: 'volume', id: ref.kind === 'name' && ref.owner === undefined ? v.name : `${v.owner_uid}:${v.name}`, owner_uid: v.owner_uid };
    } else if (ref && kind === 'secret') {
      const s = ctx.objects.secret(ref, caller);
      target = s;
      audited = { kind: 'secret', id: s.ref, owner_uid: s.owner };
    }
    return { target, audited };
  }

  async http(ctx: Context, req: IncomingMessage, res: ServerResponse, url: URL, caller: Caller): Promise<void> {
    const { c, raw } = this.match(req.method ?? 'GET', url.pathname, ctx, false);
    let prepared;
    try {
      prepared = await this.input(ctx, c, raw, req, url, caller);
    } catch (e) {
      if (e instanceof Forward) {
        // A stream (logs, a snapshot) may last: it holds one of the caller's stream slots here, as an exec or attach does.
        const long = c.spec.reply.kind === 'stream';
        // Gone while it was looked up (up to 15 s): nothing is held or asked for it.
        if (res.destroyed || req.socket.destroyed) return;
        if (long) ctx.streams.hold(null, `uid ${caller.uid}`, res, ctx.budgets.streams(caller));
        return forwardHttp(ctx.fleet!.reach!, e, req, res, url, caller, long);
      }
      if (!(e instanceof FleetShown)) throw e;
      if (c.spec.reply.kind === 'empty') return void res.writeHead(204).end();
      if (c.spec.reply.kind !== 'json') throw e;
      const format = formatOf(e.query);
      return format !== undefined ? sendPrinted(res, 200, c.name, format, e.view, c.spec.reply.schema, caller) : sendJson(res, 200, e.view);
    }
    const { input, handler } = prepared;
    const run = (typeof handler === 'function' ? handler : handler.run) as (ctx: Context, i: Input<RouteSpec>, res?: ServerResponse) => unknown;
    const reply = c.spec.reply;
    if (reply.kind === 'stream' || reply.kind === 'text') return void (await run(ctx, input, res));
    // A call that changed what a list shows (its tag moved) is answered once this node's list is in etcd, a failed one
    // too (src/fleet/listPublisher.ts): a list through another node begun after the answer has it.
    const changes = ctx.fleet && req.method !== 'GET' && req.method !== 'HEAD' ? ctx.fleet : undefined;
    const before = changes?.lists.tag();
    const out = await Promise.resolve().then(() => run(ctx, input)).finally(() => changes?.listWritten(before));
    if (reply.kind === 'empty') return void res.writeHead(204).end();
    if (reply.kind !== 'json') return;
    if (out instanceof Replied) return sendJson(res, out.status, out.body, out.headers);
    if (out instanceof Unchanged) return void res.writeHead(304, { etag: out.etag }).end();
    if (out instanceof Serialized) return sendJsonText(res, out.status, out.json, out.headers);
    if (out instanceof Printed) return sendText(res, 200, out.text);
    const status = typeof reply.status === 'number' ? reply.status : reply.status[0];
    const format = formatOf(input.query);
    if (format !== undefined) return sendPrinted(res, status, c.name, format, out, reply.schema, caller);
    sendJson(res, status, out);
  }

  async upgrade(ctx: Context, req: IncomingMessage, up: Upgrade, url: URL, caller: Caller): Promise<void> {
    const { c, raw } = this.match(req.method ?? 'GET', url.pathname, ctx, true);
    const reply = c.spec.reply;
    if (reply.kind !== 'websocket') throw new ApiError('not_found', `no WebSocket endpoint at ${url.pathname}`);
    const offered = (req.headers['sec-websocket-protocol'] ?? '').split(',').map((p) => p.trim());
    if (!reply.protocols.some((p) => offered.includes(p))) {
      throw new ApiError('invalid_request', `subprotocol ${reply.protocols.join(' or ')} is required`, 'Sec-WebSocket-Protocol');
    }
    let prepared;
    try {
      prepared = await this.input(ctx, c, raw, req, url, caller);
    } catch (e) {
      if (e instanceof Forward) return forwardUpgrade(ctx.fleet!.reach!, e, req, up, url, caller);
      throw e;
    }
    const { input, handler } = prepared;
    const run = (typeof handler === 'function' ? handler : handler.run) as (ctx: Context, i: Input<RouteSpec>, up: Upgrade) => Promise<void>;
    await run(ctx, input, up);
  }
}
