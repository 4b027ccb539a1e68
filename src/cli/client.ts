// The CLI's calls to the daemon's Unix socket, through the shared transport
// (src/client/transport.ts: every response checked with the route's zod
// schema); errors become one-line CLI errors.
import type { IncomingMessage } from 'node:http';
import type WebSocket from 'ws';
import type { z } from 'zod';
import type { RouteSpec } from '../api/routes.js';
import { EnclaveError } from '../client/errors.js';
import * as transport from '../client/transport.js';
import type { CallInput, Reply, ReplyOf } from '../client/transport.js';

export { DEFAULT_SOCKET, errorMessage, routePath, type CallInput, type Reply } from '../client/transport.js';

export class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode = 1,
  ) {
    super(message);
  }
}

export function socketPath(flag: string | undefined): string {
  return flag ?? process.env.ENCLAVE_SOCKET ?? transport.DEFAULT_SOCKET;
}

/** The socket as a connection of the transport: one connection per call. */
export const connection = (socket: string): transport.Connection => ({ endpoint: { socket } });

/** The library's typed errors as the CLI's one-line error. */
export function asCliError(e: unknown): unknown {
  return e instanceof EnclaveError ? new CliError(e.message) : e;
}

export function call(socket: string, method: string, path: string, body?: unknown): Promise<Reply> {
  return transport.call(connection(socket), method, path, body).catch((e: unknown) => Promise.reject(asCliError(e)));
}

/** Turn an error reply into its message, a success into the parsed body. */
export function expect<T extends z.ZodType>(reply: Reply, ok: number, schema: T): z.infer<T> {
  if (reply.status !== ok) throw new CliError(transport.errorMessage(reply));
  const parsed = schema.safeParse(reply.body);
  if (!parsed.success) throw new CliError(`unexpected reply from the daemon (HTTP ${reply.status})`);
  return parsed.data;
}

/** A refused upgrade (the daemon's JSON error) or a failed connection, as one CLI error. */
export function onUpgradeFailure(ws: WebSocket, socket: string, what: string, fail: (e: CliError) => void): void {
  transport.onUpgradeFailure(ws, connection(socket), what, (e) => fail(new CliError(e.message)));
}

/** Call a route of the table: the reply is checked against the route's status and schema. */
export function callRoute<R extends RouteSpec>(socket: string, route: R, input: CallInput<R> = {}): Promise<ReplyOf<R>> {
  return transport.callRoute(connection(socket), route, input).catch((e: unknown) => Promise.reject(asCliError(e)));
}

/** A ?format= reply: the text the daemon rendered as the CLI prints it (src/daemon/render.ts), or the error's one line. */
export async function callText(socket: string, path: string): Promise<string> {
  const res = await transport.openStream(connection(socket), 'GET', path).catch((e: unknown) => Promise.reject(asCliError(e)));
  const chunks: Buffer[] = [];
  for await (const c of res) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

/** A streamed reply that is not 200: its JSON error body read to the end, as one CliError. */
export function streamError(res: IncomingMessage, done: (e: CliError) => void): void {
  const chunks: Buffer[] = [];
  res.on('data', (c: Buffer) => chunks.push(c));
  res.on('end', () => {
    let body: unknown;
    try {
      body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
    } catch {
      body = undefined;
    }
    done(new CliError(transport.errorMessage({ status: res.statusCode ?? 0, body })));
  });
}
