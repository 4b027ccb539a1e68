// Which method of the client library calls each route of the route table
// (src/api/routes.ts). Every route whose reply is JSON, text or empty is
// reachable through Enclave.call(name) as soon as it is in the table; the
// named methods here are the conveniences on top. A stream or WebSocket
// route needs a named method (or a reason it has none).
// test/unit/clientRoutes.test.ts holds the library to it: each method, and
// call() of each route, sends exactly its route's method and path.
import type { RouteName, Routes } from '../api/routes.js';

/** The routes Enclave.call can make: those that answer once (JSON, text or nothing). */
export type CallableRoute = { [N in RouteName]: Routes[N]['reply'] extends { kind: 'stream' | 'websocket' } ? never : N }[RouteName];

/** A method of Enclave (`volumes.list` for the grouped ones), or why the route has none. */
export type ClientMethod = string | { omitted: string };

export const CLIENT_METHODS: Partial<Record<RouteName, ClientMethod>> = {
  tickets: 'ticket',
  login: { omitted: "the browser page's sign-in: a cookie for a browser; a program sends the token itself" },
  logout: { omitted: "the browser page's sign-out: it ends the cookie a browser holds" },
  daemonReload: 'reload',
  health: 'health',
  metrics: 'metrics',
  sessionList: 'list',
  sessionCreate: 'create',
  sessionShow: 'show',
  sessionDestroy: 'destroy',
  sessionStop: 'stop',
  sessionStart: 'start',
  sessionStats: 'stats',
  sessionLogs: 'logs',
  portPublish: 'publish',
  portUnpublish: 'unpublish',
  snapshot: 'snapshot',
  refreshAuth: 'refreshAuth',
  exec: 'exec',
  cp: 'cp',
  attach: 'attach',
  authList: 'secrets.list',
  authSet: 'secrets.set',
  authRemove: 'secrets.remove',
  eventList: 'events',
  eventStream: 'eventStream',
  volumeList: 'volumes.list',
  volumeCreate: 'volumes.create',
  volumeShow: 'volumes.show',
  volumeRemove: 'volumes.remove',
  volumeResize: 'volumes.resize',
  volumeExport: 'volumes.export',
  nodeList: 'nodes.list',
  nodeCordon: 'nodes.cordon',
  nodeUncordon: 'nodes.uncordon',
  nodeDrain: 'nodes.drain',
  nodeRemove: 'nodes.remove',
  sessionMovedIn: { omitted: "between a fleet's nodes only (a drain's move of a stopped session): no caller may call it" },
  sessionMoveKit: { omitted: "between a fleet's nodes only (a drain's move of a stopped session): no caller may call it" },
  nodeSharedSecrets: { omitted: "between a fleet's nodes only (a drain's move of a session that declares root's shared secrets): no caller may call it" },
  sessionMovedInVolume: { omitted: "between a fleet's nodes only (a drain's move of a stopped session): no caller may call it" },
};
