// The HTTP + WebSocket API (routes in the README, "HTTP API"): on the Unix socket (callers known by
// SO_PEERCRED) and, optionally, on a loopback TCP port for the browser page
// (bearer token or single-use ticket, Host and Origin allowlist).
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Socket } from 'node:net';
import type { Logger } from 'pino';
import { WebSocketServer, type WebSocket } from 'ws';
import { ApiError, REASON, zodToApiError } from '../api/errors.js';
import { attachQuery, createSessionRequest, execQuery, publishSchema, snapshotQuery } from '../api/schemas.js';
import { hasZstd } from '../snapshots/snapshot.js';
import { ResponseStream, SNAPSHOT_TRAILER } from './responseStream.js';
import { AUTH_ROUTES } from './authRoutes.js';
import { EVENT_ROUTES } from './eventRoutes.js';
import { VOLUME_ROUTES, volumeAccessTarget } from './volumeRoutes.js';
import { parseHostPort, parseRef } from './params.js';
import type { Caller, Context, Route } from './route.js';
import { servePage } from './page.js';
import { ATTACH_PROTOCOL, K8S_V5_PROTOCOL } from '../api/protocol.js';
import { runExec, startPipedExec } from './exec.js';
import { readJsonBody, sendError, sendJson } from './http.js';
import { authorize, callerOf } from './identity.js';
import { renderMetrics } from './metrics.js';

export const VERSION = '0.1.0';

/**
 * Who may call, for every route and every upgrade alike: SO_PEERCRED and the
 * socket group on the Unix socket; on TCP, the Origin allowlist plus the
 * bearer token (HTTP) or a single-use ticket (WebSocket upgrades).
 */
function admit(ctx: Context, req: IncomingMessage, url: URL, upgrade: boolean): Caller {
  if (ctx.auth) {
    ctx.auth.checkOrigin(req);
    if (upgrade) ctx.auth.checkUpgrade(req, url);
    else ctx.auth.checkBearer(req);
    // The bearer token stands for a configured user; the policy applies to it.
    return { uid: ctx.config.access.tcp_uid, gids: [], pid: null, via: 'tcp' };
  }
  const cred = callerOf(req.socket as Socket);
  authorize(cred, ctx.config.socket_gid);
  return { uid: cred.uid, gids: [cred.gid, ...(cred.groups ?? [])], pid: cred.pid, via: 'socket' };
}


/** Whose exec and attach streams these are, for the per-caller cap. */
const streamKey = (c: Caller) => (c.via === 'tcp' ? 'token' : `uid ${c.uid}`);

const consoleInfo = (ctx: Context) => (id: string) => ctx.consoles.info(id);

/** Every HTTP route of the API. WebSocket endpoints are in UPGRADES. */
const ROUTES: Route[] = [
  { method: 'POST', path: /^\/v1\/tickets$/, tcpOnly: true, handle: (ctx, { res }) => sendJson(res, 201, ctx.auth!.issueTicket()) },
  {
    method: 'GET',
    path: /^\/v1\/health$/,
    handle: (ctx, { res }) => sendJson(res, 200, { status: 'ok', version: VERSION, sessions: ctx.sessions.countLive(), pid: process.pid }),
  },
  {
    method: 'GET',
    path: /^\/metrics$/,
    handle: (ctx, { res }) => {
      const body = renderMetrics(ctx.sessions);
      res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4' });
      res.end(body);
    },
  },
  {
    method: 'GET',
    path: /^\/v1\/sessions$/,
    handle: (ctx, { res, url, caller }) => {
      ctx.access.check(caller, 'session.list');
      const all = url.searchParams.get('all');
      const mine = ctx.sessions.list(all === '1' || all === 'true', consoleInfo(ctx)).filter((s) => ctx.access.visible(caller, s));
      sendJson(res, 200, { sessions: mine });
    },
  },
  {
    method: 'POST',
    path: /^\/v1\/sessions$/,
    handle: async (ctx, { req, res, caller }) => {
      const parsed = createSessionRequest.safeParse(await readJsonBody(req));
      if (!parsed.success) throw zodToApiError(parsed.error, 'session create request');
      ctx.access.check(caller, 'session.create', undefined, parsed.data.name ?? null);
      if (parsed.data.auth?.length || parsed.data.env_tokens?.length) {
        ctx.access.check(caller, 'auth.use', undefined, [...(parsed.data.auth ?? []), ...(parsed.data.env_tokens ?? [])].join(','));
      }
      for (const v of parsed.data.volumes ?? []) ctx.access.check(caller, 'volume.use', volumeAccessTarget(ctx.sessions.volumes.get(v.name)), `at ${v.target}${v.readonly ? ' ro' : ''}`);
      ctx.access.checkSessionCap(caller, ctx.sessions.countOwnedBy(caller.uid));
      ctx.log.info({ caller: caller.uid, name: parsed.data.name, auth: parsed.data.auth, env_tokens: parsed.data.env_tokens }, 'create session');
      let session = await ctx.sessions.create(parsed.data, caller.uid);
      if (parsed.data.console) {
        const row = ctx.sessions.resolve(session.id);
        await ctx.consoles.ensure(row);
        session = ctx.sessions.toApi(row, consoleInfo(ctx));
      }
      sendJson(res, 201, session);
    },
  },
  {
    method: 'GET',
    path: /^\/v1\/sessions\/([^/]+)$/,
    handle: (ctx, { res, params, caller }) => {
      const row = ctx.sessions.resolve(parseRef(params[0]!));
      ctx.access.check(caller, 'session.show', row);
      sendJson(res, 200, ctx.sessions.toApi(row, consoleInfo(ctx)));
    },
  },
  {
    method: 'DELETE',
    path: /^\/v1\/sessions\/([^/]+)$/,
    handle: async (ctx, { res, params, caller }) => {
      const row = ctx.sessions.resolve(parseRef(params[0]!));
      ctx.access.check(caller, 'session.destroy', row);
      ctx.log.info({ caller: caller.uid, session: row.id }, 'destroy session');
      await ctx.sessions.destroy(row.id);
      res.writeHead(204).end();
    },
  },
  {
    method: 'POST',
    path: /^\/v1\/sessions\/([^/]+)\/ports$/,
    handle: async (ctx, { req, res, params, caller }) => {
      const row = ctx.sessions.resolve(parseRef(params[0]!));
      const body = publishSchema.safeParse(await readJsonBody(req));
      if (!body.success) throw zodToApiError(body.error, 'publish request');
      ctx.access.check(caller, 'session.publish', row, `${body.data.host_ip}:${body.data.host_port}:${body.data.session_port}`);
      await ctx.sessions.publish(row.id, body.data);
      sendJson(res, 201, ctx.sessions.toApi(ctx.sessions.resolve(row.id), consoleInfo(ctx)));
    },
  },
  {
    method: 'DELETE',
    path: /^\/v1\/sessions\/([^/]+)\/ports\/([^/]+)$/,
    handle: (ctx, { res, params, caller }) => {
      const row = ctx.sessions.resolve(parseRef(params[0]!));
      const addr = parseHostPort(params[1]!);
      ctx.access.check(caller, 'session.publish', row, `unpublish ${addr.host_ip}:${addr.host_port}`);
      ctx.sessions.unpublish(row.id, addr.host_ip, addr.host_port);
      res.writeHead(204).end();
    },
  },
  {
    method: 'GET',
    path: /^\/v1\/sessions\/([^/]+)\/snapshot$/,
    handle: async (ctx, { res, url, params, caller }) => {
      const row = ctx.sessions.resolve(parseRef(params[0]!));
      const q = snapshotQuery.safeParse(Object.fromEntries(url.searchParams.entries()));
      if (!q.success) throw zodToApiError(q.error, 'snapshot query');
      ctx.access.check(caller, 'session.snapshot', row);
      const compress = (q.data.compression ?? (hasZstd() ? 'zstd' : 'none')) === 'zstd';
      if (compress && !hasZstd()) throw new ApiError('invalid_request', 'compression zstd: the daemon host has no zstd (apt-get install zstd), ask for compression=none', 'compression');
      const out = new ResponseStream(res, { 'content-type': compress ? 'application/zstd' : 'application/x-tar', trailer: SNAPSHOT_TRAILER });
      try {
        const bytes = await ctx.sessions.snapshot(row.id, out, compress);
        await new Promise<void>((r) => out.end(r));
        res.addTrailers({ [SNAPSHOT_TRAILER]: `complete ${bytes}` });
        res.end();
      } catch (e) {
        // Once bytes went out, a failure can only cut the stream: the client sees no trailer.
        if (out.started) res.destroy();
        else throw e;
      }
    },
  },
  ...AUTH_ROUTES,
  ...EVENT_ROUTES,
  ...VOLUME_ROUTES,
];

const UPGRADE_PATH = /^\/v1\/sessions\/([^/]+)\/(exec|attach)$/;

async function handle(ctx: Context, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const url = new URL(req.url ?? '/', 'http://enclave');
  const path = url.pathname;
  const method = req.method ?? 'GET';
  if (ctx.auth && method === 'GET' && servePage(path, res, ctx.auth, req)) return;
  const caller = admit(ctx, req, url, false);
  // Method, path and caller only: bodies (secret values among them) are never logged.
  ctx.log.trace({ method, path, caller: caller.uid }, 'request');
  const routes = ROUTES.filter((r) => (!r.tcpOnly || ctx.auth) && r.path.test(path));
  const route = routes.find((r) => r.method === method);
  if (route) return route.handle(ctx, { req, res, url, caller, params: route.path.exec(path)!.slice(1) });
  if (routes.length > 0) throw new ApiError('invalid_request', `method ${method} not allowed on ${path} (${routes.map((r) => r.method).join(', ')})`);
  const ws = UPGRADE_PATH.exec(path);
  if (ws) throw new ApiError('invalid_request', `${ws[2]} is a WebSocket endpoint: send an Upgrade request`);
  throw new ApiError('not_found', `no such endpoint: ${method} ${path}`);
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

export function createApiServer(ctx: Context): ApiServer {
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
    ws.on('error', (e) => ctx.log.debug({ err: e.message }, 'WebSocket closed on a protocol error'));
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
  }, ctx.config.terminal.ping_ms);
  pinger.unref();

  const server = createServer((req, res) => {
    handle(ctx, req, res).catch((e) => sendError(res, toApiError(e, ctx.log)));
  });
  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    // A reset while the command is being started must not be an uncaught error either.
    socket.on('error', (e) => ctx.log.debug({ err: e.message }, 'upgrade socket error'));
    upgrade(req, socket, head).catch((e) => rejectUpgrade(socket, toApiError(e, ctx.log)));
  });
  /** The socket may have gone while the command was being started: then it ends at once. */
  const accept = (req: IncomingMessage, socket: Duplex, head: Buffer, onGone: () => void, onWs: (ws: WebSocket) => void) => {
    if (socket.destroyed) return onGone();
    let upgraded = false;
    socket.once('close', () => !upgraded && onGone());
    wss.handleUpgrade(req, socket, head, (ws) => {
      upgraded = true;
      wss.emit('connection', ws, req);
      onWs(ws);
    });
  };

  const upgrade = async (req: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> => {
    const url = new URL(req.url ?? '/', 'http://enclave');
    const caller = admit(ctx, req, url, true);
    const m = UPGRADE_PATH.exec(url.pathname);
    if (!m) throw new ApiError('not_found', `no WebSocket endpoint at ${url.pathname}`);
    const protocols = (req.headers['sec-websocket-protocol'] ?? '').split(',').map((p) => p.trim());
    const row = ctx.sessions.resolve(parseRef(m[1]!));
    const log = ctx.log.child({ session: row.id });
    if (m[2] === 'attach') {
      if (!protocols.includes(K8S_V5_PROTOCOL) && !protocols.includes(ATTACH_PROTOCOL)) {
        throw new ApiError('invalid_request', `subprotocol ${ATTACH_PROTOCOL} or ${K8S_V5_PROTOCOL} is required`, 'Sec-WebSocket-Protocol');
      }
      const q = attachQuery.safeParse(Object.fromEntries([...url.searchParams.entries()].filter(([k]) => k !== 'ticket')));
      if (!q.success) throw zodToApiError(q.error, 'attach query');
      const { role, resume, cols, rows } = q.data;
      ctx.access.check(caller, 'session.attach', row, `role ${role}`);
      if (row.state !== 'running') throw new ApiError('conflict', `session ${row.id} is ${row.state}, not running`);
      ctx.consoles.admit(row.id);
      ctx.streams.hold(null, streamKey(caller), socket);
      const size = cols && rows ? { cols, rows } : undefined;
      const console = await ctx.consoles.ensure(row, size);
      // A console outlives its viewers: nothing to end if this one went away.
      return accept(req, socket, head, () => undefined, (ws) => {
        log.info({ role, protocol: ws.protocol }, 'attach');
        console.attach(ws, role, ws.protocol === ATTACH_PROTOCOL, resume, size);
      });
    }
    if (!protocols.includes(K8S_V5_PROTOCOL) && !protocols.includes(ATTACH_PROTOCOL)) {
      throw new ApiError('invalid_request', `subprotocol ${K8S_V5_PROTOCOL} is required`, 'Sec-WebSocket-Protocol');
    }
    const q = execQuery.safeParse({
      command: url.searchParams.getAll('command'),
      env: url.searchParams.getAll('env'),
      ...Object.fromEntries([...url.searchParams.entries()].filter(([k]) => !['command', 'env', 'ticket'].includes(k))),
    });
    if (!q.success) throw zodToApiError(q.error, 'exec query');
    ctx.access.check(caller, 'session.exec', row, `${q.data.tty ? 'tty ' : ''}${q.data.command.join(' ')}`);
    const agent = ctx.sessions.agentFor(row);
    ctx.streams.hold(row.id, streamKey(caller), socket);
    if (q.data.tty) {
      const { cols, rows } = q.data;
      const size = cols && rows ? { cols, rows } : undefined;
      const one = await ctx.consoles.startOneOff(row, q.data, size);
      return accept(req, socket, head, () => one.kill(), (ws) => {
        log.info({ argv0: q.data.command[0] }, 'exec --tty');
        one.attach(ws, 'rw', ws.protocol === ATTACH_PROTOCOL, undefined, size);
      });
    }
    const exec = await startPipedExec(agent, row.hostname, q.data);
    accept(req, socket, head, () => exec.ok && exec.agent.signal(exec.id, 9), (ws) => {
      log.info({ argv0: q.data.command[0] }, 'exec');
      runExec({ ws, exec, stdout: q.data.stdout, stderr: q.data.stderr, log });
    });
  };
  server.on('close', () => clearInterval(pinger));
  return {
    server,
    closeClients: () => {
      for (const ws of wss.clients) ws.terminate();
    },
  };
}
