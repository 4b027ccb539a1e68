// The typed client library: every route of the route table as a method
// (src/client/methods.ts says which), each reply parsed with the route's
// zod schema, each error reply its typed error (src/client/errors.ts). One
// keep-alive HTTP agent per client, so a program that makes many calls
// reuses one connection to the daemon.
//
//   import { Enclave } from 'enclave/client';
//   const enclave = new Enclave();            // ENCLAVE_SOCKET or /run/enclave/enclave.sock
//   const s = await enclave.create({ name: 'ci', memory_mb: 512 });
//   const { stdout, exitCode } = await enclave.run(s.id, ['uname', '-a']);
import { PassThrough, type Readable } from 'node:stream';
import type { z } from 'zod';
import { ROUTES } from '../api/routes.js';
import { ATTACH_PROTOCOL, EXPORT_TRAILER, K8S_V5_PROTOCOL, SNAPSHOT_TRAILER } from '../api/protocol.js';
import type { eventsQuery, eventStreamQuery, AuditEvent } from '../api/eventSchemas.js';
import type { createSessionRequest, createVolumeRequest, Publish, putSecretReply, refreshAuthReply, removeSecretReply, healthSchema } from '../api/schemas.js';
import type { ReloadReply, SecretInfoView, Session, SessionStats, Volume } from '../api/schemas.js';
import type { FleetNode } from '../api/fleetSchemas.js';
import { AttachStream } from './attach.js';
import { streamEvents, type StreamEvent } from './eventStream.js';
import { ConnectionError, ProtocolError } from './errors.js';
import { execRequestPath, pumpExec, type ExecOutcome, type Sink } from './exec.js';
import { callRoute, DEFAULT_SOCKET, keepAliveAgent, onUpgradeFailure, openStream, openWebSocket, routePath, type CallInput, type Connection, type ReplyOf } from './transport.js';
import type { CallableRoute } from './methods.js';

export type ClientOptions =
  /** The daemon's Unix socket (default: ENCLAVE_SOCKET, else /run/enclave/enclave.sock). */
  | { socket?: string | undefined }
  /** The TCP listener (`listen =`, loopback) and its token (<state_dir>/listen-token). */
  | { url: string; token: string };

export type CreateSession = z.input<typeof createSessionRequest>;
export type CreateVolume = z.input<typeof createVolumeRequest>;
export type EventsQuery = z.input<typeof eventsQuery>;
export type EventStreamQuery = z.input<typeof eventStreamQuery>;
export type Health = z.output<typeof healthSchema>;
export type SecretSet = z.output<typeof putSecretReply>;
export type SecretRemoved = z.output<typeof removeSecretReply>;
export type AuthRefreshed = z.output<typeof refreshAuthReply>;

export interface CommandOptions {
  /** NAME=VALUE variables besides the session's own. */
  env?: string[];
  /** Working directory inside the session (absolute); absent: the user's HOME. */
  cwd?: string;
  /**
   * Run as this user of the session, docker's `exec -u` forms: NAME, UID,
   * NAME:GROUP or UID:GID, resolved in the session against its own
   * /etc/passwd and /etc/group. Absent: the session's root.
   */
  user?: string;
}

export interface RunOptions extends CommandOptions {
  /** The command's stdin (then EOF); without it the command reads /dev/null. */
  stdin?: string | Uint8Array | Readable;
}

export interface RunResult<T extends string | Buffer = string> {
  stdout: T;
  stderr: T;
  exitCode: number;
}

export interface ExecOptions extends CommandOptions {
  /** Forward stdin (default true); false: the command reads /dev/null and `stdin` is null. */
  stdin?: boolean;
}

/** A running command: its pipes, and its exit code (127 not found, 126 not executable, 128+N for signal N). */
export interface ExecProcess {
  /** Write to it; end() is EOF. Null when started with stdin: false. */
  stdin: PassThrough | null;
  stdout: Readable;
  stderr: Readable;
  /** Settles once the stream ends: the exit code, or the typed error (404, 400, ...). */
  exit: Promise<number>;
  /** The whole status once it exited (its causes may say more than the code). */
  outcome: Promise<ExecOutcome>;
  /** End the stream: the command gets SIGTERM, then SIGKILL. */
  close(): void;
}

export interface AttachOptions {
  /** rw (default) may type and resize; ro only watches. */
  role?: 'rw' | 'ro';
  /** An output offset (a previous stream's `offset`): exactly the missing bytes, if still in the ring. */
  resume?: number;
  cols?: number;
  rows?: number;
}

const collector = (chunks: Buffer[]): Sink => ({ write: (b) => chunks.push(b) > 0, once: () => undefined });

export class Enclave {
  readonly connection: Connection;

  constructor(options: ClientOptions = {}) {
    const agent = keepAliveAgent();
    if ('url' in options) {
      const u = new URL(options.url);
      if (u.protocol !== 'http:') throw new ConnectionError(`${options.url}: the TCP listener speaks http:`);
      this.connection = { endpoint: { host: u.hostname, port: Number(u.port || 80), token: options.token }, agent };
    } else {
      this.connection = { endpoint: { socket: options.socket ?? process.env.ENCLAVE_SOCKET ?? DEFAULT_SOCKET }, agent };
    }
  }

  /** Close the idle keep-alive connection (streams in flight carry on). */
  close(): void {
    this.connection.agent?.destroy();
  }

  // ---- the daemon ------------------------------------------------------------

  /**
   * Any route of the table whose reply is JSON, text or empty, by its name:
   * `call('nodeCordon', { body: { name: 'node-b' } })`. Typed from the route
   * (params, query, body, reply), so a new route is reachable at once; the
   * named methods are the conveniences on top.
   */
  call<N extends CallableRoute>(name: N, input: CallInput<(typeof ROUTES)[N]> = {}): Promise<ReplyOf<(typeof ROUTES)[N]>> {
    return callRoute(this.connection, ROUTES[name], input);
  }

  health(): Promise<Health> {
    return callRoute(this.connection, ROUTES.health);
  }

  /** Prometheus text: the series of what the caller may see. */
  metrics(): Promise<string> {
    return callRoute(this.connection, ROUTES.metrics);
  }

  /** Re-read the daemon's config file: the keys applied live, and those that wait for a restart. */
  reload(): Promise<ReloadReply> {
    return callRoute(this.connection, ROUTES.daemonReload);
  }

  /** TCP only: a single-use 30-second ticket for a WebSocket URL (the browser's way; this client sends the token instead). */
  ticket(): Promise<{ ticket: string; expires_in_ms: number }> {
    return callRoute(this.connection, ROUTES.tickets);
  }

  // ---- sessions --------------------------------------------------------------

  /** In fleet mode `noWait` refuses at once when no node fits (else the session is "pending"). */
  create(request: CreateSession = {}, options: { noWait?: boolean } = {}): Promise<Session> {
    return callRoute(this.connection, ROUTES.sessionCreate, { body: request, ...(options.noWait ? { query: { no_wait: '1' } } : {}) });
  }

  /** Sessions the caller may see; `all`: ended ones too. */
  async list(options: { all?: boolean } = {}): Promise<Session[]> {
    const r = await callRoute(this.connection, ROUTES.sessionList, { query: options.all ? { all: '1' } : {} });
    return r.sessions;
  }

  /** By id, by a name of the caller's own, or UID:NAME. */
  show(session: string): Promise<Session> {
    return callRoute(this.connection, ROUTES.sessionShow, ref(session));
  }

  /** End it: SIGTERM, SIGKILL after the daemon's grace (`timeout` seconds instead, or `force`: SIGKILL at once). */
  destroy(session: string, options: { force?: boolean; timeout?: number } = {}): Promise<void> {
    const query = { ...(options.force ? { force: '1' as const } : {}), ...(options.timeout === undefined ? {} : { timeout: options.timeout }) };
    return callRoute(this.connection, ROUTES.sessionDestroy, { ...ref(session), query });
  }

  /** What a running session uses now (CPU, memory, tasks, network, disk), read from the kernel. */
  stats(session: string): Promise<SessionStats> {
    return callRoute(this.connection, ROUTES.sessionStats, ref(session));
  }

  /** The console's output as plain text (escape sequences stripped); `follow`: then new output until the stream is destroyed. */
  logs(session: string, options: { follow?: boolean } = {}): Promise<Readable> {
    return openStream(this.connection, 'GET', routePath(ROUTES.sessionLogs, { ...ref(session), query: options.follow ? { follow: '1' } : {} }));
  }

  /** End its processes, keep its files: it is `stopped` when this resolves. */
  stop(session: string): Promise<Session> {
    return callRoute(this.connection, ROUTES.sessionStop, ref(session));
  }

  /** Bring a stopped session back with its files: `running` when this resolves. */
  start(session: string): Promise<Session> {
    return callRoute(this.connection, ROUTES.sessionStart, ref(session));
  }

  publish(session: string, port: Publish): Promise<Session> {
    return callRoute(this.connection, ROUTES.portPublish, { ...ref(session), body: port });
  }

  unpublish(session: string, hostIp: string, hostPort: number): Promise<void> {
    return callRoute(this.connection, ROUTES.portUnpublish, { params: { session, port: `${hostIp}:${hostPort}` } });
  }

  /** Deliver the current values of the session's declared secrets again. */
  refreshAuth(session: string): Promise<AuthRefreshed> {
    return callRoute(this.connection, ROUTES.refreshAuth, ref(session));
  }

  /**
   * Its writable layer and /home as a tar stream (zstd unless compression
   * 'none'). The stream errors (ProtocolError) if the daemon cut it short:
   * only a stream that ends without an error is whole.
   */
  async snapshot(session: string, options: { compression?: 'zstd' | 'none' } = {}): Promise<Readable> {
    const query = options.compression ? { compression: options.compression } : {};
    return this.whole(routePath(ROUTES.snapshot, { ...ref(session), query }), SNAPSHOT_TRAILER, 'snapshot');
  }

  /** A streamed archive that is whole only when its trailer says so: the stream errors otherwise. */
  private async whole(path: string, trailer: string, what: string): Promise<Readable> {
    const res = await openStream(this.connection, 'GET', path);
    const out = new PassThrough();
    const cut = () => out.destroy(new ProtocolError(`the ${what} stream was cut: the daemon log says why`, 200));
    res.on('aborted', cut);
    res.on('error', cut);
    res.on('end', () => (String(res.trailers[trailer] ?? '').startsWith('complete') ? out.end() : cut()));
    res.pipe(out, { end: false });
    return out;
  }

  // ---- commands --------------------------------------------------------------

  /** Start a command with pipes: stream its stdin, stdout and stderr. */
  exec(session: string, command: string[], options: ExecOptions = {}): ExecProcess {
    const forward = options.stdin ?? true;
    return this.streams(execRequestPath({ session, command, env: options.env, cwd: options.cwd, user: options.user, stdin: forward }), forward);
  }

  /** A v5 stream (exec, cp) as pipes. */
  private streams(path: string, forward: boolean): ExecProcess {
    const stdin = forward ? new PassThrough() : null;
    const stdout = new PassThrough();
    const stderr = new PassThrough();
    const ws = openWebSocket(this.connection, path, [K8S_V5_PROTOCOL]);
    const outcome = pumpExec(ws, this.connection, { stdin: stdin ?? undefined, stdout, stderr });
    const ended = () => {
      stdout.end();
      stderr.end();
    };
    outcome.then(ended, ended);
    const exit = outcome.then((o) => o.exitCode);
    exit.catch(() => undefined);
    return { stdin, stdout, stderr, exit, outcome, close: () => ws.terminate() };
  }

  /**
   * Copy a tar stream into the session (direction 'in': write the tar to
   * `stdin`, it is unpacked at `path` by docker cp's rules) or out of it
   * ('out': `stdout` is a tar of `path`); `archive` keeps owners. The
   * session's messages are on `stderr`, its tar's exit code on `exit`.
   */
  cp(session: string, options: { direction: 'in' | 'out'; path: string; archive?: boolean }): ExecProcess {
    const query = { direction: options.direction, path: options.path, archive: options.archive ? ('1' as const) : ('0' as const) };
    return this.streams(routePath(ROUTES.cp, { ...ref(session), query }), options.direction === 'in');
  }

  /** Run a command to its end: its output, and its exit code (not an error: a failing command is a result). */
  run(session: string, command: string[], options?: RunOptions & { encoding?: 'utf8' }): Promise<RunResult<string>>;
  run(session: string, command: string[], options: RunOptions & { encoding: 'buffer' }): Promise<RunResult<Buffer>>;
  async run(session: string, command: string[], options: RunOptions & { encoding?: 'utf8' | 'buffer' } = {}): Promise<RunResult<string> | RunResult<Buffer>> {
    const stdin = typeof options.stdin === 'string' ? Buffer.from(options.stdin) : options.stdin;
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    const path = execRequestPath({ session, command, env: options.env, cwd: options.cwd, user: options.user, stdin: stdin !== undefined });
    const ws = openWebSocket(this.connection, path, [K8S_V5_PROTOCOL]);
    const { exitCode } = await pumpExec(ws, this.connection, { stdin, stdout: collector(out), stderr: collector(err) });
    const stdout = Buffer.concat(out);
    const stderr = Buffer.concat(err);
    return options.encoding === 'buffer' ? { stdout, stderr, exitCode } : { stdout: stdout.toString('utf8'), stderr: stderr.toString('utf8'), exitCode };
  }

  /** The session's console (started on first attach): a duplex with resize(); the shell outlives the stream. */
  attach(session: string, options: AttachOptions = {}): Promise<AttachStream> {
    const role = options.role ?? 'rw';
    const path = routePath(ROUTES.attach, { ...ref(session), query: { role, resume: options.resume, cols: options.cols, rows: options.rows } });
    return this.console(path, role);
  }

  /** A command in a terminal of its own (exec --tty): a duplex with resize(); `exit` is its exit code. */
  execTty(session: string, command: string[], options: CommandOptions & { cols?: number; rows?: number } = {}): Promise<AttachStream> {
    const path = execRequestPath({ session, command, env: options.env, cwd: options.cwd, user: options.user, stdin: true, tty: { cols: options.cols, rows: options.rows } });
    return this.console(path, 'rw');
  }

  private console(path: string, role: 'rw' | 'ro'): Promise<AttachStream> {
    const ws = openWebSocket(this.connection, path, [ATTACH_PROTOCOL]);
    const stream = new AttachStream(ws, role);
    return new Promise((resolve, reject) => {
      onUpgradeFailure(ws, this.connection, 'attach', reject);
      stream.ready.then(() => resolve(stream), reject);
    });
  }

  // ---- volumes, secrets, events ---------------------------------------------

  /** Fleet mode: the nodes, and whether new sessions go to one (root, or a rule granting node.*). */
  readonly nodes = {
    list: async (): Promise<FleetNode[]> => (await callRoute(this.connection, ROUTES.nodeList)).nodes,
    cordon: async (name: string): Promise<void> => void (await callRoute(this.connection, ROUTES.nodeCordon, { body: { name } })),
    uncordon: async (name: string): Promise<void> => void (await callRoute(this.connection, ROUTES.nodeUncordon, { body: { name } })),
    /** Cordon, move its stopped sessions elsewhere (the node does, in the background), and the sessions still placed there. */
    drain: async (name: string) => (await callRoute(this.connection, ROUTES.nodeDrain, { body: { name } })).sessions,
    /** A node gone for good leaves the fleet (ConflictError while it is registered or sessions are placed on it). */
    remove: (name: string) => callRoute(this.connection, ROUTES.nodeRemove, { body: { name } }),
  };

  readonly volumes = {
    list: async (): Promise<Volume[]> => (await callRoute(this.connection, ROUTES.volumeList)).volumes,
    create: (request: CreateVolume): Promise<Volume> => callRoute(this.connection, ROUTES.volumeCreate, { body: request }),
    show: (volume: string): Promise<Volume> => callRoute(this.connection, ROUTES.volumeShow, { params: { volume } }),
    /** Refused (ConflictError) while a live session mounts it. */
    remove: (volume: string): Promise<void> => callRoute(this.connection, ROUTES.volumeRemove, { params: { volume } }),
    /** Grow it (never shrink) to size_mb. */
    resize: (volume: string, sizeMb: number): Promise<Volume> => callRoute(this.connection, ROUTES.volumeResize, { params: { volume }, body: { size_mb: sizeMb } }),
    /** Its files as a tar stream (zstd unless compression 'none'); errors unless whole. */
    export: (volume: string, options: { compression?: 'zstd' | 'none' } = {}): Promise<Readable> =>
      this.whole(routePath(ROUTES.volumeExport, { params: { volume }, query: options.compression ? { compression: options.compression } : {} }), EXPORT_TRAILER, 'export'),
  };

  /** The secret store (`enclave auth`): provider tokens and env tokens, by name. */
  readonly secrets = {
    /** The caller's own; `all`: every owner's (to a caller allowed to see all). */
    list: async (options: { all?: boolean } = {}): Promise<SecretInfoView[]> =>
      (await callRoute(this.connection, ROUTES.authList, { query: options.all ? { all: '1' } : {} })).secrets,
    /** Set or rotate a value (`created` says which); `shared`: root's, usable by others as 0:NAME. */
    set: (name: string, value: string | Uint8Array, options: { shared?: boolean } = {}): Promise<SecretSet> =>
      callRoute(this.connection, ROUTES.authSet, {
        params: { secret: name },
        body: { value_base64: Buffer.from(value).toString('base64'), ...(options.shared === undefined ? {} : { shared: options.shared }) },
      }),
    remove: (name: string): Promise<SecretRemoved> => callRoute(this.connection, ROUTES.authRemove, { params: { secret: name } }),
  };

  /** The audit trail: the caller's own calls and calls on its objects (every one's to root). */
  async events(query: EventsQuery = {}): Promise<AuditEvent[]> {
    return (await callRoute(this.connection, ROUTES.eventList, { query })).events;
  }

  /**
   * What happens, as it happens: the sessions the caller may see at once,
   * then each change of one, and audit events as events() lists them
   * (`after`: those after that id first). Ends when the loop stops.
   */
  async eventStream(query: EventStreamQuery = {}): Promise<AsyncGenerator<StreamEvent, void, undefined>> {
    return streamEvents(await openStream(this.connection, 'GET', routePath(ROUTES.eventStream, { query })));
  }
}

const ref = (session: string) => ({ params: { session } });
