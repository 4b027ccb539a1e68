// Which method of the client library calls each route of the route table
// (src/api/routes.ts). test/unit/clientRoutes.test.ts holds the library to
// it: every route has a method here (or says why it has none), and each
// method sends exactly its route's method and path, so a new route without
// a client method fails that test.
import type { RouteName } from '../api/routes.js';

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
};
