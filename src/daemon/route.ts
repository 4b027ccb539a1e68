// What every API handler is handed: the daemon's parts and the admitted caller.
import type { Logger } from 'pino';
import type { Config } from '../config/schema.js';
import type { SessionManager } from '../sessions/manager.js';
import type { Consoles } from './attach.js';
import type { ListenAuth } from './listenAuth.js';
import type { StreamLimits } from './streams.js';
import type { AccessGuard, Caller } from '../access/guard.js';
import type { AuditLog } from '../access/audit.js';
import type { Budgets } from '../access/budgets.js';
import type { Objects } from './objects.js';
import type { EventFeed } from './feed.js';
import type { ReloadReply } from '../api/schemas.js';
import type { Fleet } from '../fleet/fleet.js';
import type { MadeLists } from './madeLists.js';
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import type { WebSocket } from 'ws';

export type { Caller };

/** A WebSocket upgrade's socket and the bytes read past its headers. */
export interface Upgrade {
  socket: Duplex;
  head: Buffer;
}

/** Completes an upgrade a handler accepted; the socket may be gone by then (onGone). */
export type Accept = (req: IncomingMessage, up: Upgrade, onGone: () => void, onWs: (ws: WebSocket) => void) => void;

/** The daemon's parts, shared by every listener. */
export interface Parts {
  config: Config;
  sessions: SessionManager;
  consoles: Consoles;
  log: Logger;
  /** Shared by every listener. */
  streams: StreamLimits;
  access: AccessGuard;
  audit: AuditLog;
  budgets: Budgets;
  objects: Objects;
  /** The event stream's subscribers (GET /v1/events/stream). */
  feed: EventFeed;
  /** Read the config file again; apply what can change live (src/config/reload.ts). */
  reload: () => Promise<ReloadReply>;
  /** Present on the TCP listener only. */
  auth?: ListenAuth;
  /** Fleet mode ([cluster]): this node of the fleet; absent on a single daemon. */
  fleet?: Fleet;
  /** The lists this node made for the fleet's other nodes, by tag (madeLists.ts; empty on a single daemon). */
  madeLists: MadeLists;
}

export interface Context extends Parts {
  /** Completes a WebSocket upgrade on this listener. */
  accept: Accept;
}
