// What every API route is handed: the daemon's parts, the admitted caller,
// the request and its path parameters.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import type { Config } from '../config/schema.js';
import type { SessionManager } from '../sessions/lifecycle.js';
import type { Consoles } from './attach.js';
import type { ListenAuth } from './listenAuth.js';
import type { StreamLimits } from './streams.js';
import type { AccessGuard, Caller } from '../access/guard.js';
import type { AuditLog } from '../access/audit.js';

export type { Caller };

export interface Context {
  config: Config;
  sessions: SessionManager;
  consoles: Consoles;
  log: Logger;
  /** Shared by every listener. */
  streams: StreamLimits;
  access: AccessGuard;
  audit: AuditLog;
  /** Present on the TCP listener only. */
  auth?: ListenAuth;
}

export interface Request {
  req: IncomingMessage;
  res: ServerResponse;
  url: URL;
  caller: Caller;
  /** Capture groups of the route's path. */
  params: string[];
}

export interface Route {
  method: 'GET' | 'POST' | 'PUT' | 'DELETE';
  path: RegExp;
  /** Only on the TCP listener (the browser's ticket endpoint). */
  tcpOnly?: boolean;
  handle(ctx: Context, r: Request): Promise<void> | void;
}

