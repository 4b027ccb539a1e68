// The wire under the CLI and the client library: HTTP/1.1 requests to the
// daemon's Unix socket (or its TCP listener, with the bearer token), route
// calls through the route table with every reply checked by the route's zod
// schema, response streams and the WebSocket upgrade of exec and attach.
import { Agent, request, type IncomingMessage, type OutgoingHttpHeaders, type RequestOptions } from 'node:http';
import WebSocket from 'ws';
import type { z } from 'zod';
import type { RouteSpec } from '../api/routes.js';
import { ConnectionError, errorFromReply, ProtocolError, type EnclaveError } from './errors.js';

export const DEFAULT_SOCKET = '/run/enclave/enclave.sock';

/** Where the daemon listens: its Unix socket, or the TCP listener (loopback) with its token. */
export type Endpoint = { socket: string } | { host: string; port: number; token: string };

export interface Connection {
  endpoint: Endpoint;
  /** A keep-alive agent for a client that makes many calls; without one, a connection per call (the CLI). */
  agent?: Agent | undefined;
}

export interface Reply {
  status: number;
  body: unknown;
}

/**
 * A keep-alive agent: idle connections kept for the next call, closed after
 * 4 s idle, before the daemon closes them (Node's server does at 5 s).
 */
export const keepAliveAgent = (): Agent => new Agent({ keepAlive: true, maxFreeSockets: 4, timeout: 4000 });

/** A kept-alive connection the server closed as the request went out: safe to send again on a new one. */
const closedUnderUs = (e: NodeJS.ErrnoException) => e.code === 'ECONNRESET' || e.code === 'EPIPE';

/** The endpoint as a person names it in a message. */
export function endpointName(e: Endpoint): string {
  return 'socket' in e ? e.socket : `${e.host}:${e.port}`;
}

function requestOptions(conn: Connection, method: string, path: string, headers: OutgoingHttpHeaders): RequestOptions {
  const e = conn.endpoint;
  const where = 'socket' in e ? { socketPath: e.socket } : { host: e.host, port: e.port };
  const auth = 'token' in e ? { authorization: `Bearer ${e.token}` } : {};
  return { ...where, method, path, headers: { ...headers, ...auth }, ...(conn.agent ? { agent: conn.agent } : {}) };
}

/** A failed connection, as a message that says what to do. */
function unreachable(conn: Connection, e: NodeJS.ErrnoException): ConnectionError {
  const at = endpointName(conn.endpoint);
  if (e.code === 'ENOENT' || e.code === 'ECONNREFUSED') {
    return new ConnectionError(`the daemon is not running at ${at} (start it with "enclave daemon", or set --socket / ENCLAVE_SOCKET)`);
  }
  if (e.code === 'EACCES') return new ConnectionError(`permission denied on ${at} (run as root or as a member of the socket's group)`);
  return new ConnectionError(`cannot reach the daemon at ${at}: ${e.message}`);
}

function readAll(res: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    res.on('data', (c: Buffer) => chunks.push(c));
    res.on('end', () => resolve(Buffer.concat(chunks)));
    res.on('error', reject);
  });
}

function parseBody(buf: Buffer): unknown {
  if (buf.length === 0) return undefined;
  const text = buf.toString('utf8');
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return text;
  }
}

/** One request; resolves with the response whatever its status. A reused keep-alive connection the server had closed is retried once on a new one. */
function send(conn: Connection, method: string, path: string, payload: string | undefined, retried = false): Promise<IncomingMessage> {
  return new Promise((resolve, reject) => {
    const headers = payload === undefined ? {} : { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) };
    const req = request(requestOptions(conn, method, path, headers), resolve);
    req.on('error', (e: NodeJS.ErrnoException) => {
      if (req.reusedSocket && closedUnderUs(e) && !retried) send(conn, method, path, payload, true).then(resolve, reject);
      else reject(unreachable(conn, e));
    });
    req.end(payload);
  });
}

/** A JSON request; the reply's body parsed (text if it is not JSON). */
export async function call(conn: Connection, method: string, path: string, body?: unknown): Promise<Reply> {
  const res = await send(conn, method, path, body === undefined ? undefined : JSON.stringify(body));
  return { status: res.statusCode ?? 0, body: parseBody(await readAll(res)) };
}

/** A streamed reply (a snapshot): the response once its status is 200, else the typed error of its body. */
export async function openStream(conn: Connection, method: string, path: string): Promise<IncomingMessage> {
  const res = await send(conn, method, path, undefined);
  if (res.statusCode === 200) return res;
  throw errorFromReply(res.statusCode ?? 0, parseBody(await readAll(res)));
}

/** The message of an error reply, or the status when the body is not the API's. */
export function errorMessage(reply: Reply): string {
  return errorFromReply(reply.status, reply.body).message;
}

/** A WebSocket to a route of the daemon (exec, attach), with the token over TCP. */
export function openWebSocket(conn: Connection, path: string, protocols: string[]): WebSocket {
  const e = conn.endpoint;
  if ('socket' in e) return new WebSocket(`ws+unix://${e.socket}:${path}`, protocols, { perMessageDeflate: false });
  return new WebSocket(`ws://${e.host}:${e.port}${path}`, protocols, { perMessageDeflate: false, headers: { authorization: `Bearer ${e.token}` } });
}

/** A refused upgrade (the daemon's JSON error, typed) or a failed connection, as one error. */
export function onUpgradeFailure(ws: WebSocket, conn: Connection, what: string, fail: (e: EnclaveError) => void): void {
  ws.on('unexpected-response', (_req, res) => {
    readAll(res).then(
      (buf) => {
        res.destroy();
        fail(errorFromReply(res.statusCode ?? 0, parseBody(buf)));
      },
      () => fail(new ProtocolError(`${what} failed: the daemon answered HTTP ${res.statusCode ?? 0}`)),
    );
  });
  ws.on('error', (e: NodeJS.ErrnoException) =>
    fail(e.code === 'ENOENT' || e.code === 'ECONNREFUSED' ? new ConnectionError(`the daemon is not running at ${endpointName(conn.endpoint)}`) : new ConnectionError(`${what} failed: ${e.message}`)),
  );
}

type In<S> = S extends z.ZodType ? z.input<S> : undefined;
/** What a JSON route answers (its schema's output), a text route's text; nothing for an empty reply. */
export type ReplyOf<R extends RouteSpec> = R['reply'] extends { kind: 'json'; schema: infer S extends z.ZodType }
  ? z.output<S>
  : R['reply'] extends { kind: 'text' }
    ? string
    : undefined;

/** What a route's path names ({session}, {port}, ...), its query and its body. */
export interface CallInput<R extends RouteSpec> {
  params?: Record<string, string>;
  query?: In<R['query']>;
  body?: In<R['body']>;
}

/** The request line of a route: its path with the params filled in and the query, as the daemon parses them. */
export function routePath<R extends RouteSpec>(route: R, input: CallInput<R> = {}): string {
  const path = route.path.replace(/\{(\w+)\}/g, (_m, p: string) => {
    const v = input.params?.[p];
    if (v === undefined) throw new Error(`route ${route.path}: no value for {${p}}`);
    return encodeURIComponent(v);
  });
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries((input.query ?? {}) as Record<string, unknown>)) {
    if (v === undefined) continue;
    for (const x of Array.isArray(v) ? v : [v]) q.append(k, typeof x === 'boolean' ? (x ? '1' : '0') : String(x));
  }
  return q.size ? `${path}?${q}` : path;
}

/** Call a route of the table: an error reply is its typed error; a success is checked against the route's status and schema. */
export async function callRoute<R extends RouteSpec>(conn: Connection, route: R, input: CallInput<R> = {}): Promise<ReplyOf<R>> {
  const r = route.reply;
  if (r.kind === 'stream' || r.kind === 'websocket') throw new Error(`route ${route.path} answers a ${r.kind}: open it, do not call it`);
  const res = await send(conn, route.method, routePath(route, input), input.body === undefined ? undefined : JSON.stringify(input.body));
  const status = res.statusCode ?? 0;
  const buf = await readAll(res);
  const ok = r.kind === 'json' ? (typeof r.status === 'number' ? [r.status] : r.status) : r.kind === 'text' ? [200] : [204];
  if (!ok.includes(status)) throw errorFromReply(status, parseBody(buf));
  if (r.kind === 'text') return buf.toString('utf8') as ReplyOf<R>;
  if (r.kind !== 'json') return undefined as ReplyOf<R>;
  const parsed = r.schema.safeParse(parseBody(buf));
  if (!parsed.success) throw new ProtocolError(`unexpected reply from the daemon (HTTP ${status})`, status);
  return parsed.data as ReplyOf<R>;
}
