// The route table: every endpoint of the API, declared once. Each route
// says its method and path, its query, body and reply schemas, the access
// action, and whose object it acts on (its owner rule). The daemon
// dispatches from this table (src/daemon/dispatch.ts), resolving the object
// and checking the action against its owner before any handler runs; the
// CLI and the client library call through it (src/client/transport.ts; the
// library's method for each route: src/client/methods.ts). A route without
// an owner rule, or whose owner rule names an object its path does not
// carry, does not compile.
import { z } from 'zod';
import type { Action } from '../vocab/actions.js';
import {
  attachQuery,
  createSessionRequest,
  cpQuery,
  createVolumeRequest,
  destroyQuery,
  execQuery,
  exportQuery,
  flag,
  healthSchema,
  reloadReplySchema,
  listQuery,
  logsQuery,
  publishSchema,
  putSecretReply,
  putSecretRequest,
  refreshAuthReply,
  removeSecretReply,
  resizeVolumeRequest,
  secretListSchema,
  sessionListSchema,
  listFormat,
  printQuery,
  sessionSchema,
  snapshotQuery,
  statsSchema,
  ticketSchema,
  loginReplySchema,
  logoutReplySchema,
  volumeListSchema,
  volumeSchema,
} from './schemas.js';
import { ATTACH_PROTOCOL, K8S_V5_PROTOCOL } from './protocol.js';
import { eventListSchema, eventsQuery, eventStreamQuery } from './eventSchemas.js';
import { cordonRequest, createQuery, drainReplySchema, moveKitSchema, movedInQuery, movedInVolumeQuery, movedOutQuery, nodeListSchema, removeReplySchema, sessionRowsSchema, sharedSecretsQuery, sharedSecretsSchema } from './fleetSchemas.js';

/**
 * Whose object a route acts on:
 *  - public: no object, and nothing of anyone's (health, metrics: counts only);
 *  - caller: the caller's own namespace (create, and listings filtered by what it may see);
 *  - session | volume | secret: the object its path names ({session}, {volume}, {secret}),
 *    resolved for the caller (a bare name is its own) and checked against its owner.
 */
export type Owner = { kind: 'public'; why: string } | { kind: 'caller' } | { kind: 'session' } | { kind: 'volume' } | { kind: 'secret' };

export type Reply =
  | { kind: 'json'; status: number | readonly [number, ...number[]]; schema: z.ZodType }
  | { kind: 'empty' }
  | { kind: 'stream'; types: readonly string[] }
  | { kind: 'text' }
  | { kind: 'websocket'; protocols: readonly string[] };

export interface RouteSpec {
  method: 'GET' | 'POST' | 'PUT' | 'DELETE';
  /** With {session}, {volume}, {secret} for the owned object, and {port} for a published address. */
  path: string;
  owner: Owner;
  /** What the access policy decides; null only for public routes. */
  action: Action | null;
  query?: z.ZodType;
  /** Query keys that repeat (command=ls&command=-l). */
  repeated?: readonly string[];
  body?: z.ZodType;
  reply: Reply;
  /** Only on the TCP listener (the browser page's ticket, sign-in and sign-out). */
  tcpOnly?: true;
  /**
   * Fleet mode, a call on a session another node runs: local (this node's
   * objects only), forward (to the owning node over the mutual-TLS channel,
   * after the access check here), aggregate (every node's, merged here),
   * peer (served to the fleet's nodes only: their own work, no caller's).
   */
  fleet: 'local' | 'forward' | 'aggregate' | 'peer';
}

/** The object param an owner rule needs in the path. */
type NeedsParam<O extends Owner> = O extends { kind: 'session' | 'volume' | 'secret' } ? `{${O['kind']}}` : never;

/** Compile-time checks: a public route has no action and says why; an owned object is in the path. */
type Checked<R extends RouteSpec> = R['owner'] extends { kind: 'public' }
  ? R & { action: null }
  : R['action'] extends Action
    ? NeedsParam<R['owner']> extends never
      ? R
      : R['path'] extends `${string}${NeedsParam<R['owner']>}${string}`
        ? R
        : { error: `path ${R['path']} does not carry ${NeedsParam<R['owner']>}` }
    : { error: 'a route with an owner needs an action' };

export const route = <const R extends RouteSpec>(r: R & Checked<R>): R => r;

const json = <S extends z.ZodType>(schema: S, status: number | readonly [number, ...number[]] = 200) => ({ kind: 'json' as const, status, schema });
const EMPTY = { kind: 'empty' } as const;
/** DELETE /v1/sessions/{s}/ports/{port}: a published host address and port, 127.0.0.1:8080. */
export const hostPortParam = /^([0-9.]{7,15}):(\d{1,5})$/;

export const ROUTES = {
  tickets: route({ method: 'POST', path: '/v1/tickets', fleet: 'local', owner: { kind: 'public', why: 'a single-use ticket for the token holder\'s next upgrade, which is itself checked' }, action: null, reply: json(ticketSchema, 201), tcpOnly: true }),
  login: route({ method: 'POST', path: '/v1/login', fleet: 'local', owner: { kind: 'public', why: "trades the listener's token, checked again here, for the page's sign-in cookie" }, action: null, reply: json(loginReplySchema), tcpOnly: true }),
  logout: route({ method: 'POST', path: '/v1/logout', fleet: 'local', owner: { kind: 'public', why: 'ends the sign-in the request carries, nobody else\'s' }, action: null, reply: json(logoutReplySchema), tcpOnly: true }),
  daemonReload: route({ method: 'POST', path: '/v1/daemon/reload', fleet: 'local', owner: { kind: 'caller' }, action: 'daemon.reload', reply: json(reloadReplySchema) }),
  health: route({ method: 'GET', path: '/v1/health', fleet: 'local', owner: { kind: 'public', why: 'counts only' }, action: null, reply: json(healthSchema) }),
  metrics: route({ method: 'GET', path: '/metrics', fleet: 'local', owner: { kind: 'public', why: 'counts, and per-session series only of the sessions the caller may see (session.show)' }, action: null, reply: { kind: 'text' } }),
  // Who the daemon takes the caller for (SO_PEERCRED, or the TCP token's): kubectl auth whoami's question.
  whoami: route({ method: 'GET', path: '/v1/whoami', fleet: 'local', owner: { kind: 'public', why: 'the caller itself' }, action: null, reply: json(z.object({ uid: z.number().int(), gids: z.array(z.number().int()), via: z.enum(['socket', 'tcp', 'peer']) }).strict()) }),

  sessionList: route({ method: 'GET', path: '/v1/sessions', fleet: 'aggregate', owner: { kind: 'caller' }, action: 'session.list', query: z.object({ all: flag.optional(), format: listFormat.optional() }).strict(), reply: json(sessionListSchema) }),
  sessionCreate: route({ method: 'POST', path: '/v1/sessions', fleet: 'local', owner: { kind: 'caller' }, action: 'session.create', query: createQuery, body: createSessionRequest, reply: json(sessionSchema, 201) }),
  sessionShow: route({ method: 'GET', path: '/v1/sessions/{session}', fleet: 'forward', owner: { kind: 'session' }, action: 'session.show', query: printQuery, reply: json(sessionSchema) }),
  sessionDestroy: route({ method: 'DELETE', path: '/v1/sessions/{session}', fleet: 'forward', owner: { kind: 'session' }, action: 'session.destroy', query: destroyQuery, reply: EMPTY }),
  sessionStop: route({ method: 'POST', path: '/v1/sessions/{session}/stop', fleet: 'forward', owner: { kind: 'session' }, action: 'session.stop', query: printQuery, reply: json(sessionSchema) }),
  sessionStart: route({ method: 'POST', path: '/v1/sessions/{session}/start', fleet: 'forward', owner: { kind: 'session' }, action: 'session.start', query: printQuery, reply: json(sessionSchema) }),
  // What it uses is part of looking at it: whoever may show a session may see its stats (no rule grows).
  sessionStats: route({ method: 'GET', path: '/v1/sessions/{session}/stats', fleet: 'forward', owner: { kind: 'session' }, action: 'session.show', reply: json(statsSchema) }),
  // Its console's output as text: what an `attach --ro` shows, so the same action decides.
  sessionLogs: route({ method: 'GET', path: '/v1/sessions/{session}/logs', fleet: 'forward', owner: { kind: 'session' }, action: 'session.attach', query: logsQuery, reply: { kind: 'stream', types: ['text/plain'] } }),
  portPublish: route({ method: 'POST', path: '/v1/sessions/{session}/ports', fleet: 'forward', owner: { kind: 'session' }, action: 'session.publish', body: publishSchema, reply: json(sessionSchema, 201) }),
  portUnpublish: route({ method: 'DELETE', path: '/v1/sessions/{session}/ports/{port}', fleet: 'forward', owner: { kind: 'session' }, action: 'session.publish', reply: EMPTY }),
  snapshot: route({
    method: 'GET',
    path: '/v1/sessions/{session}/snapshot',
    fleet: 'forward',
    owner: { kind: 'session' },
    action: 'session.snapshot',
    query: snapshotQuery,
    reply: { kind: 'stream', types: ['application/zstd', 'application/x-tar'] },
  }),
  refreshAuth: route({ method: 'POST', path: '/v1/sessions/{session}/refresh-auth', fleet: 'forward', owner: { kind: 'session' }, action: 'session.refresh-auth', reply: json(refreshAuthReply) }),
  exec: route({
    method: 'GET',
    path: '/v1/sessions/{session}/exec',
    fleet: 'forward',
    owner: { kind: 'session' },
    action: 'session.exec',
    query: execQuery,
    repeated: ['command', 'env'],
    reply: { kind: 'websocket', protocols: [K8S_V5_PROTOCOL, ATTACH_PROTOCOL] },
  }),
  cp: route({
    method: 'GET',
    path: '/v1/sessions/{session}/cp',
    fleet: 'forward',
    owner: { kind: 'session' },
    action: 'session.cp',
    query: cpQuery,
    reply: { kind: 'websocket', protocols: [K8S_V5_PROTOCOL] },
  }),
  attach: route({
    method: 'GET',
    path: '/v1/sessions/{session}/attach',
    fleet: 'forward',
    owner: { kind: 'session' },
    action: 'session.attach',
    query: attachQuery,
    reply: { kind: 'websocket', protocols: [ATTACH_PROTOCOL, K8S_V5_PROTOCOL] },
  }),

  // A drain's move (fleet mode, nodes only): the drained node sends a stopped session's stored files to
  // the node that now holds it, running and empty; that node restores them into it and stops it.
  sessionMovedIn: route({ method: 'POST', path: '/v1/sessions/{session}/moved-in', fleet: 'peer', owner: { kind: 'session' }, action: 'session.stop', query: movedInQuery, reply: json(sessionSchema) }),
  // What follows the session (nodes only; answered while that very move runs): its owner's secrets and its volumes (one another session of its group makes there named `with` it).
  sessionMoveKit: route({ method: 'GET', path: '/v1/sessions/{session}/move-kit', fleet: 'peer', owner: { kind: 'session' }, action: 'session.stop', reply: json(moveKitSchema) }),
  // A volume's contents, for the session made here for a move (before its files): unpacked inside it, at the target it mounts the volume on.
  sessionMovedInVolume: route({ method: 'POST', path: '/v1/sessions/{session}/moved-in-volume', fleet: 'peer', owner: { kind: 'session' }, action: 'session.stop', query: movedInVolumeQuery, reply: EMPTY }),
  // An undone move's copy here, ended (the drained node destroyed it first): it lives on at `to`, and a later move here may make it again.
  sessionMovedOut: route({ method: 'POST', path: '/v1/sessions/{session}/moved-out', fleet: 'peer', owner: { kind: 'session' }, action: 'session.destroy', query: movedOutQuery, reply: EMPTY }),
  // Which of another owner's shared secrets this node holds shared, each as an HMAC of the nonce keyed by its value
  // (nodes only): a drain moves a session that declares root's shared secrets only to a node that holds the same.
  nodeSharedSecrets: route({ method: 'GET', path: '/v1/node/shared-secrets', fleet: 'peer', owner: { kind: 'caller' }, action: 'auth.list', query: sharedSecretsQuery, reply: json(sharedSecretsSchema) }),
  // A text list through another node (nodes only): this node's own sessions, the table's columns alone.
  nodeSessionRows: route({ method: 'GET', path: '/v1/node/sessions', fleet: 'peer', owner: { kind: 'caller' }, action: 'session.list', query: z.object({ all: flag.optional() }).strict(), reply: json(sessionRowsSchema) }),

  // The fleet's nodes (fleet mode; 400 on a single daemon). Nodes are nobody's: root only unless a rule grants node.*.
  nodeList: route({ method: 'GET', path: '/v1/nodes', fleet: 'local', owner: { kind: 'caller' }, action: 'node.list', reply: json(nodeListSchema) }),
  nodeCordon: route({ method: 'POST', path: '/v1/nodes/cordon', fleet: 'local', owner: { kind: 'caller' }, action: 'node.cordon', body: cordonRequest, reply: json(nodeListSchema) }),
  nodeUncordon: route({ method: 'POST', path: '/v1/nodes/uncordon', fleet: 'local', owner: { kind: 'caller' }, action: 'node.cordon', body: cordonRequest, reply: json(nodeListSchema) }),
  // A drain is a cordon that also lists what is still there: the same action.
  nodeDrain: route({ method: 'POST', path: '/v1/nodes/drain', fleet: 'local', owner: { kind: 'caller' }, action: 'node.cordon', body: cordonRequest, reply: json(drainReplySchema) }),
  // A node gone for good leaves the fleet (refused, 409, while it is registered or anything is placed on it).
  nodeRemove: route({ method: 'POST', path: '/v1/nodes/remove', fleet: 'local', owner: { kind: 'caller' }, action: 'node.remove', body: cordonRequest, reply: json(removeReplySchema) }),

  authList: route({ method: 'GET', path: '/v1/auth', fleet: 'local', owner: { kind: 'caller' }, action: 'auth.list', query: listQuery, reply: json(secretListSchema) }),
  authSet: route({ method: 'PUT', path: '/v1/auth/{secret}', fleet: 'local', owner: { kind: 'secret' }, action: 'auth.set', body: putSecretRequest, reply: json(putSecretReply, [201, 200]) }),
  authRemove: route({ method: 'DELETE', path: '/v1/auth/{secret}', fleet: 'local', owner: { kind: 'secret' }, action: 'auth.remove', reply: json(removeSecretReply) }),

  eventList: route({ method: 'GET', path: '/v1/events', fleet: 'aggregate', owner: { kind: 'caller' }, action: 'events.list', query: eventsQuery, reply: json(eventListSchema) }),
  // The same events as they happen, and the caller's sessions as they change, filtered as the list is.
  eventStream: route({ method: 'GET', path: '/v1/events/stream', fleet: 'aggregate', owner: { kind: 'caller' }, action: 'events.list', query: eventStreamQuery, reply: { kind: 'stream', types: ['text/event-stream'] } }),

  volumeList: route({ method: 'GET', path: '/v1/volumes', fleet: 'local', owner: { kind: 'caller' }, action: 'volume.list', reply: json(volumeListSchema) }),
  volumeCreate: route({ method: 'POST', path: '/v1/volumes', fleet: 'local', owner: { kind: 'caller' }, action: 'volume.create', body: createVolumeRequest, reply: json(volumeSchema, 201) }),
  volumeShow: route({ method: 'GET', path: '/v1/volumes/{volume}', fleet: 'local', owner: { kind: 'volume' }, action: 'volume.list', reply: json(volumeSchema) }),
  volumeRemove: route({ method: 'DELETE', path: '/v1/volumes/{volume}', fleet: 'local', owner: { kind: 'volume' }, action: 'volume.remove', reply: EMPTY }),
  volumeResize: route({ method: 'POST', path: '/v1/volumes/{volume}/resize', fleet: 'local', owner: { kind: 'volume' }, action: 'volume.resize', body: resizeVolumeRequest, reply: json(volumeSchema) }),
  volumeExport: route({
    method: 'GET',
    path: '/v1/volumes/{volume}/export',
    fleet: 'local',
    owner: { kind: 'volume' },
    action: 'volume.export',
    query: exportQuery,
    reply: { kind: 'stream', types: ['application/zstd', 'application/x-tar'] },
  }),
} as const;

export type Routes = typeof ROUTES;
export type RouteName = keyof Routes;
