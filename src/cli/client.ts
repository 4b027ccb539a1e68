// HTTP client for the daemon's Unix socket; every response is checked with zod.
import { request } from 'node:http';
import type WebSocket from 'ws';
import type { z } from 'zod';
import { errorBodySchema } from '../api/schemas.js';
import type { RouteSpec } from '../api/routes.js';

export class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode = 1,
  ) {
    super(message);
  }
}

export const DEFAULT_SOCKET = '/run/enclave/enclave.sock';

export function socketPath(flag: string | undefined): string {
  return flag ?? process.env.ENCLAVE_SOCKET ?? DEFAULT_SOCKET;
}

export interface Reply {
  status: number;
  body: unknown;
}

export function call(socket: string, method: string, path: string, body?: unknown): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const payload = body === undefined ? undefined : JSON.stringify(body);
    const req = request(
      {
        socketPath: socket,
        method,
        path,
        headers: payload ? { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) } : {},
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let parsed: unknown = undefined;
          if (text) {
            try {
              parsed = JSON.parse(text);
            } catch {
              parsed = text;
            }
          }
          resolve({ status: res.statusCode ?? 0, body: parsed });
        });
      },
    );
    req.on('error', (e: NodeJS.ErrnoException) => {
      const why =
        e.code === 'ENOENT' || e.code === 'ECONNREFUSED'
          ? `the daemon is not running at ${socket} (start it with "enclave daemon", or set --socket / ENCLAVE_SOCKET)`
          : e.code === 'EACCES'
            ? `permission denied on ${socket} (run as root or as a member of the socket's group)`
            : `cannot reach the daemon at ${socket}: ${e.message}`;
      reject(new CliError(why));
    });
    req.end(payload);
  });
}

/** Turn an error reply into its message, a success into the parsed body. */
export function expect<T extends z.ZodType>(reply: Reply, ok: number, schema: T): z.infer<T> {
  if (reply.status !== ok) throw new CliError(errorMessage(reply));
  const parsed = schema.safeParse(reply.body);
  if (!parsed.success) throw new CliError(`unexpected reply from the daemon (HTTP ${reply.status})`);
  return parsed.data;
}

/** A refused upgrade (the daemon's JSON error) or a failed connection, as one CLI error. */
export function onUpgradeFailure(ws: WebSocket, socket: string, what: string, fail: (e: CliError) => void): void {
  ws.on('unexpected-response', (_req, res) => {
    const chunks: Buffer[] = [];
    res.on('data', (c: Buffer) => chunks.push(c));
    res.on('end', () => {
      let body: unknown;
      try {
        body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
      } catch {
        body = undefined;
      }
      fail(new CliError(errorMessage({ status: res.statusCode ?? 0, body })));
    });
  });
  ws.on('error', (e: NodeJS.ErrnoException) =>
    fail(new CliError(e.code === 'ENOENT' || e.code === 'ECONNREFUSED' ? `the daemon is not running at ${socket}` : `${what} failed: ${e.message}`)),
  );
}

export function errorMessage(reply: Reply): string {
  const e = errorBodySchema.safeParse(reply.body);
  return e.success ? e.data.error.message : `the daemon answered HTTP ${reply.status}`;
}

type In<S> = S extends z.ZodType ? z.input<S> : undefined;
type ReplyOf<R extends RouteSpec> = R['reply'] extends { kind: 'json'; schema: infer S extends z.ZodType } ? z.output<S> : undefined;

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

/** Call a route of the table: the reply is checked against the route's status and schema. */
export async function callRoute<R extends RouteSpec>(socket: string, route: R, input: CallInput<R> = {}): Promise<ReplyOf<R>> {
  const reply = await call(socket, route.method, routePath(route, input), input.body);
  const r = route.reply;
  const statuses = r.kind === 'json' ? (typeof r.status === 'number' ? [r.status] : [...r.status]) : [204];
  if (!statuses.includes(reply.status)) throw new CliError(errorMessage(reply));
  if (r.kind !== 'json') return undefined as ReplyOf<R>;
  const parsed = r.schema.safeParse(reply.body);
  if (!parsed.success) throw new CliError(`unexpected reply from the daemon (HTTP ${reply.status})`);
  return parsed.data as ReplyOf<R>;
}
