// The HTTP + WebSocket API (routes in docs/api.md): on the Unix socket (callers known by
// SO_PEERCRED) and, optionally, on a loopback TCP port for the browser page
// (bearer token or single-use ticket, Host and Origin allowlist).
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createTlsServer } from 'node:https';
import type { TLSSocket } from 'node:tls';
import type { Duplex } from 'node:stream';
import type { Socket } from 'node:net';
import type { Logger } from 'pino';
import { WebSocketServer, type WebSocket } from 'ws';
import { ApiError, REASON } from '../vocab/errors.js';
import { ATTACH_PROTOCOL, K8S_V5_PROTOCOL } from '../api/protocol.js';
import { Dispatcher, type Handlers } from './dispatch.js';
import { authHandlers } from './handlers/auth.js';
import { copyHandlers } from './handlers/copy.js';
import { eventHandlers } from './handlers/events.js';
import { logHandlers } from './handlers/logs.js';
import { nodeHandlers } from './handlers/nodes.js';
import { moveHandlers } from './handlers/moves.js';
import { portHandlers } from './handlers/ports.js';
import { sessionHandlers } from './handlers/sessions.js';
import { snapshotHandlers } from './handlers/snapshot.js';
import { systemHandlers } from './handlers/system.js';
import { terminalHandlers } from './handlers/terminal.js';
import { volumeHandlers } from './handlers/volumes.js';
import type { Caller, Context, Parts } from './route.js';
import { servePage } from './page.js';
import { sendError } from './http.js';
import { authorize, callerOf } from './identity.js';
import { identityOf, serverOptions, type PeerTls } from '../fleet/peerTls.js';

/** The node-to-node listener's side (fleet mode): TLS material, and whether a verified peer is a node of the fleet. */
export interface PeerSide {
  tls: PeerTls;
  admits(cert: ReturnType<TLSSocket['getPeerCertificate']>): Promise<string>;
}

/** A call another node forwarded: its certificate chains to the fleet CA (TLS checked that) and names a node; the caller is who it says. */
async function admitPeer(peer: PeerSide, req: IncomingMessage): Promise<Caller> {
  const s = req.socket as TLSSocket;
  if (!s.authorized) throw new ApiError('forbidden', 'a node-to-node call needs a certificate of the fleet CA');
  const node = await peer.admits(s.getPeerCertificate());
  try {
    const who = identityOf(req.headers);
    return { uid: who.uid, gids: who.gids, pid: null, via: 'peer', peer: node };
  } catch (e) {
    throw new ApiError('invalid_request', (e as Error).message);
  }
}

export { VERSION } from './handlers/system.js';

/** Every route of the table has its handler: one missing does not compile. */
const HANDLERS: Handlers = { ...systemHandlers, ...sessionHandlers, ...portHandlers, ...snapshotHandlers, ...terminalHandlers, ...logHandlers, ...copyHandlers, ...authHandlers, ...eventHandlers, ...volumeHandlers, ...nodeHandlers, ...moveHandlers };
const dispatcher = new Dispatcher(HANDLERS);

/**
 * Who may call, for every route and every upgrade alike: SO_PEERCRED and the
 * socket group on the Unix socket; on TCP, the Origin allowlist plus the
 * bearer token (HTTP) or a single-use ticket (WebSocket upgrades), or the
 * page's sign-in cookie (src/daemon/listenAuth.ts).
 */
function admit(ctx: Parts, req: IncomingMessage, url: URL, upgrade: boolean): Caller {
  if (ctx.auth) {
    ctx.auth.admit(req, url, upgrade);
    // The bearer token (and the sign-in cookie bought with it) stands for a configured user; the policy applies to it.
    return { uid: ctx.config.access.tcp_uid, gids: [], pid: null, via: 'tcp' };
  }
  const cred = callerOf(req.socket as Socket);
  authorize(cred, ctx.config.socket_gid);
  return { uid: cred.uid, gids: [cred.gid, ...(cred.groups ?? [])], pid: cred.pid, via: 'socket' };
}

async function handle(ctx: Context, req: IncomingMessage, res: ServerResponse, peer?: PeerSide): Promise<void> {
  const url = new URL(req.url ?? '/', 'http://enclave');
  const path = url.pathname;
  const method = req.method ?? 'GET';
  if (ctx.auth && method === 'GET' && servePage(path, res, ctx.auth, req)) return;
  const caller = peer ? await admitPeer(peer, req) : admit(ctx, req, url, false);
  // Method, path and caller only: bodies (secret values among them) are never logged.
  ctx.log.trace({ method, path, caller: caller.uid }, 'request');
  await dispatcher.http(ctx, req, res, url, caller);
}

function rejectUpgrade(socket: Duplex, err: ApiError): void {
  const body = JSON.stringify(err.toJSON());
  const reason = REASON[err.status] ?? 'Error';
  socket.end(
    `HTTP/1.1 ${err.status} ${reason}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
  );
}

function toApiError(e: unknown, log: Logger): ApiError {
  if (e instanceof ApiError) return e;
  log.error({ err: e instanceof Error ? { message: e.message, stack: e.stack } : String(e) }, 'internal error');
  return new ApiError('internal', 'internal error; see the daemon log');
}

export interface ApiServer {
  server: Server;
  /** End every WebSocket client (their commands get SIGTERM). */
  closeClients(): void;
}

/** The API on the Unix socket or the page's TCP port; with `peer`, the fleet's node-to-node listener (mutual TLS). */
export function createApiServer(parts: Parts, peer?: PeerSide): ApiServer {
  const log = parts.log;
  const wss = new WebSocketServer({
    noServer: true,
    maxPayload: 1024 * 1024,
    perMessageDeflate: false,
    // Ours first: it is k8s framing plus events and acks.
    handleProtocols: (offered) => (offered.has(ATTACH_PROTOCOL) ? ATTACH_PROTOCOL : offered.has(K8S_V5_PROTOCOL) ? K8S_V5_PROTOCOL : false),
  });
  // Server pings: a client that misses a pong within an interval is closed.
  const alive = new WeakSet<WebSocket>();
  wss.on('connection', (ws) => {
    alive.add(ws);
    ws.on('pong', () => alive.add(ws));
    // A frame over maxPayload, a reserved bit, a bad opcode or length: ws
    // closes that connection (1009, 1002) and reports it here. Without a
    // listener it would be an uncaught error, and one caller could stop the daemon.
    ws.on('error', (e) => log.debug({ err: e.message }, 'WebSocket closed on a protocol error'));
  });
  const pinger = setInterval(() => {
    for (const ws of wss.clients) {
      if (!alive.has(ws)) {
        ws.terminate();
        continue;
      }
      alive.delete(ws);
      ws.ping();
    }
  }, parts.config.terminal.ping_ms);
  pinger.unref();

  /** The socket may have gone while the command was being started: then it ends at once. */
  const accept: Context['accept'] = (req, { socket, head }, onGone, onWs) => {
    if (socket.destroyed) return onGone();
    let upgraded = false;
    socket.once('close', () => !upgraded && onGone());
    wss.handleUpgrade(req, socket, head, (ws) => {
      upgraded = true;
      wss.emit('connection', ws, req);
      onWs(ws);
    });
  };
  const ctx: Context = { ...parts, accept };
  const onRequest = (req: IncomingMessage, res: ServerResponse) => {
    handle(ctx, req, res, peer).catch((e) => sendError(res, toApiError(e, ctx.log)));
  };
  // Between nodes no whole-request timeout: a drain's move uploads a session's files, which may take longer than Node's 300 s.
  const server: Server = peer ? createTlsServer({ ...serverOptions(peer.tls), requestTimeout: 0 }, onRequest) : createServer(onRequest);
  // Why the peer's certificate was refused (CERT_REVOKED, ...) is on the socket: the error only says it hung up.
  if (peer) server.on('tlsClientError', (e: Error, s: TLSSocket) => log.info({ err: e.message, certificate: s.authorizationError }, 'node-to-node connection refused'));
  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    // A reset while the command is being started must not be an uncaught error either.
    socket.on('error', (e) => ctx.log.debug({ err: e.message }, 'upgrade socket error'));
    const url = new URL(req.url ?? '/', 'http://enclave');
    Promise.resolve()
      .then(async () => dispatcher.upgrade(ctx, req, { socket, head }, url, peer ? await admitPeer(peer, req) : admit(ctx, req, url, true)))
      .catch((e) => rejectUpgrade(socket, toApiError(e, ctx.log)));
  });
  server.on('close', () => clearInterval(pinger));
  return {
    server,
    closeClients: () => {
      for (const ws of wss.clients) ws.terminate();
    },
  };
}
