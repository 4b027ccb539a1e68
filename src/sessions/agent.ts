// The daemon's side of exec: a session's init forks every command inside the
// session (native/src/agent.c); we ask over its control socket. One channel
// per session, connected on first use, so it works the same for sessions
// re-adopted after a restart. Everything the init sends is untrusted: the
// addon bounds it, the schemas below validate it, and an init that answers
// nothing costs one timer.
import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import { z } from 'zod';
import { ApiError } from '../vocab/errors.js';
import { addon, type ControlChannel } from '../native/addon.js';
import { errnoName } from './launch.js';

/** Matches AGENT_MAX_MSG in native/src/agent.h, less room for the framing. */
export const MAX_EXEC_MESSAGE = 120 * 1024;
const START_TIMEOUT_MS = 5000;

export interface ExecSpec {
  tty: boolean;
  argv: string[];
  env: string[];
  cwd: string;
  cols: number;
  rows: number;
  /** Without tty: [stdin?] stdout stderr, the session's ends of our pipes. */
  fds: number[];
  stdin: boolean;
}

/** Why the init could not start a command: its step, errno and detail. */
export class StartFailure extends Error {
  constructor(
    readonly step: string,
    readonly errno: number,
    readonly detail: string,
  ) {
    super(`step ${step} failed: ${detail}`);
  }
}

export interface ExitReport {
  code: number | null;
  signal: number | null;
}

/** A command the init runs: its pty master (with tty) and its exit, null if the session ended under it. */
export interface StartedCommand {
  id: string;
  pid: number;
  master: number | null;
  exited: Promise<ExitReport | null>;
}

const num = z.string().regex(/^-?\d{1,10}$/).transform(Number);
const message = z.union([
  z.tuple([z.literal('started'), z.string(), num.pipe(z.number().int().min(2))]),
  z.tuple([z.literal('failed'), z.string(), z.string().max(32), num, z.string().max(400)]),
  z.tuple([z.literal('exited'), z.string(), num.pipe(z.number().int().min(-1).max(255)), num.pipe(z.number().int().min(0).max(64))]),
  z.tuple([z.literal('written'), z.string()]),
  z.tuple([z.literal('ending'), num.pipe(z.number().int().min(129).max(192))]),
]);

interface Pending {
  tty: boolean;
  /** Until the start is answered. */
  onStart?: (r: { ok: true; pid: number; master: number | null } | { ok: false; failure: StartFailure }) => void;
  onExit: (e: ExitReport | null) => void;
  timer?: NodeJS.Timeout;
}

const prefix = randomBytes(4).toString('hex');
let counter = 0;

interface PendingWrite {
  done: (failure?: StartFailure) => void;
  timer: NodeJS.Timeout;
}

export class SessionAgent {
  private channel: ControlChannel | undefined;
  private readonly pending = new Map<string, Pending>();
  private readonly writes = new Map<string, PendingWrite>();

  constructor(
    private readonly path: string,
    private readonly log: Logger,
    /** The init said how it is about to end (a daemon that is not its parent learns it no other way). */
    private readonly onEnding: (code: number) => void = () => undefined,
  ) {}

  /** Connect now, not on the first exec: to hear an adopted init's end. */
  listen(): void {
    this.connect();
  }

  private connect(): ControlChannel {
    if (this.channel) return this.channel;
    const Channel = addon().ControlChannel;
    try {
      this.channel = new Channel(
        this.path,
        (fields, fd) => this.onMessage(fields, fd),
        (reason) => this.onClose(reason),
      );
    } catch (e) {
      const errno = (e as { errno?: number }).errno ?? 0;
      throw new ApiError('exhausted', `cannot reach the session's init: ${errnoName(errno)} (${this.path})`);
    }
    return this.channel;
  }

  /** Ask the init for a process; resolves once it runs, rejects with a StartFailure if it could not. */
  start(spec: ExecSpec): Promise<StartedCommand> {
    const id = `${prefix}-${++counter}`;
    const fields = ['exec', id, spec.tty ? '1' : '0', spec.stdin ? '1' : '0', String(spec.cols), String(spec.rows), spec.cwd];
    fields.push(String(spec.argv.length), ...spec.argv, String(spec.env.length), ...spec.env);
    const size = fields.reduce((n, f) => n + Buffer.byteLength(f) + 1, 0);
    if (size > MAX_EXEC_MESSAGE) throw new ApiError('invalid_request', `command, environment and cwd take ${size} bytes; at most ${MAX_EXEC_MESSAGE} are allowed`, 'command');
    const channel = this.connect();
    let onExit!: (e: ExitReport | null) => void;
    const exited = new Promise<ExitReport | null>((r) => (onExit = r));
    return new Promise((resolve, reject) => {
      const p: Pending = { tty: spec.tty, onExit };
      p.onStart = (r) => {
        clearTimeout(p.timer);
        p.onStart = undefined;
        if (r.ok) return resolve({ id, pid: r.pid, master: r.master, exited });
        this.pending.delete(id);
        reject(r.failure);
      };
      p.timer = setTimeout(() => {
        p.onStart?.({ ok: false, failure: new StartFailure('protocol', 110, 'the session init did not answer') });
        this.signal(id, 9);
      }, START_TIMEOUT_MS);
      this.pending.set(id, p);
      try {
        channel.send(fields, spec.fds);
      } catch (e) {
        clearTimeout(p.timer);
        this.pending.delete(id);
        const errno = (e as { errno?: number }).errno ?? 0;
        reject(new StartFailure('protocol', errno, `send to the session init: ${errnoName(errno)}`));
      }
    });
  }

  /**
   * Replace a file in one of the session's secret mounts (dir is
   * /run/enclave/auth or /run/enclave/env): the init writes a new file and
   * renames it over the old one. Rejects with a StartFailure (step write).
   */
  writeFile(dir: string, leaf: string, mode: number, content: Buffer): Promise<void> {
    const id = `${prefix}-${++counter}`;
    const channel = this.connect();
    return new Promise((resolve, reject) => {
      const w: PendingWrite = {
        done: (failure) => {
          clearTimeout(w.timer);
          this.writes.delete(id);
          if (failure) reject(failure);
          else resolve();
        },
        timer: setTimeout(() => w.done(new StartFailure('protocol', 110, 'the session init did not answer')), START_TIMEOUT_MS),
      };
      this.writes.set(id, w);
      try {
        channel.send(['write', id, dir, leaf, mode.toString(8), content], []);
      } catch (e) {
        const errno = (e as { errno?: number }).errno ?? 0;
        w.done(new StartFailure('protocol', errno, `send to the session init: ${errnoName(errno)}`));
      }
    });
  }

  /** Signal a started command's process group (best effort). */
  signal(id: string, signo: number): void {
    if (!this.pending.has(id) || !this.channel) return;
    try {
      this.channel.send(['signal', id, String(signo)], []);
    } catch {
      /* the channel is gone or full: the session is ending or wedged */
    }
  }

  /** A tty command's master is drained: the init may close its slave copy. */
  release(id: string): void {
    try {
      this.channel?.send(['release', id], []);
    } catch {
      /* gone or full: the init closes held slaves when the channel drops */
    }
  }

  private onMessage(fields: string[], fd: number | null): void {
    const m = message.safeParse(fields);
    const p = m.success && m.data[0] !== 'ending' ? this.pending.get(m.data[1]) : undefined;
    // An fd is only ever expected with the start of a tty command.
    const wantFd = m.success && m.data[0] === 'started' && p?.tty === true && p.onStart !== undefined;
    if (fd !== null && (!wantFd || !addon().isPtyMaster(fd))) {
      addon().closeFd(fd);
      if (wantFd) return p!.onStart!({ ok: false, failure: new StartFailure('tty', 22, 'the session sent something that is not a pty master') });
      this.log.warn({ fields: fields.length }, 'ignored an fd from the session init');
      return;
    }
    if (!m.success) {
      this.log.warn({ kind: fields[0]?.slice(0, 16) }, 'ignored a malformed message from the session init');
      return;
    }
    const d = m.data;
    if (d[0] === 'ending') return this.onEnding(d[1]);
    const w = this.writes.get(d[1]);
    if (w) {
      if (d[0] === 'written') w.done();
      else if (d[0] === 'failed') w.done(new StartFailure(d[2], d[3], d[4]));
      return;
    }
    if (!p || d[0] === 'written') return; // a command of an earlier daemon, or already given up on
    if (d[0] === 'started') {
      if (!p.onStart) return;
      if (p.tty && fd === null) return p.onStart({ ok: false, failure: new StartFailure('tty', 22, 'no pty from the session init') });
      p.onStart({ ok: true, pid: d[2], master: fd });
    } else if (d[0] === 'failed') {
      p.onStart?.({ ok: false, failure: new StartFailure(d[2], d[3], d[4]) });
      this.pending.delete(d[1]);
    } else {
      this.pending.delete(d[1]);
      if (p.onStart) p.onStart({ ok: false, failure: new StartFailure('exec', 0, 'exited before it was reported started') });
      else p.onExit({ code: d[2] >= 0 ? d[2] : null, signal: d[3] > 0 ? d[3] : null });
    }
  }

  private onClose(reason: string): void {
    this.channel = undefined;
    for (const w of [...this.writes.values()]) w.done(new StartFailure('protocol', 104, `the session init closed the control channel (${reason})`));
    this.log.debug({ reason }, 'control channel closed');
    for (const [id, p] of this.pending) {
      this.pending.delete(id);
      clearTimeout(p.timer);
      if (p.onStart) p.onStart({ ok: false, failure: new StartFailure('protocol', 104, `the session init closed the control channel (${reason})`) });
      else p.onExit(null);
    }
  }

  close(): void {
    this.channel?.close();
    this.onClose('the daemon closed it');
  }
}

/** One agent per running session. */
export class Agents {
  private readonly agents = new Map<string, SessionAgent>();

  constructor(
    private readonly log: Logger,
    private readonly onEnding: (sessionId: string, code: number) => void = () => undefined,
  ) {}

  /** The session's agent; `controlPath` is only asked for when there is none yet. */
  for(sessionId: string, controlPath: () => string): SessionAgent {
    let a = this.agents.get(sessionId);
    if (!a) {
      a = new SessionAgent(controlPath(), this.log.child({ session: sessionId }), (code) => this.onEnding(sessionId, code));
      this.agents.set(sessionId, a);
    }
    return a;
  }

  drop(sessionId: string): void {
    this.agents.get(sessionId)?.close();
    this.agents.delete(sessionId);
  }

  closeAll(): void {
    for (const id of [...this.agents.keys()]) this.drop(id);
  }
}

/**
 * How a failed start reaches the caller: 4xx/5xx before the upgrade, or, for
 * a command that cannot be executed, its shell-style exit status (127 not
 * found, 126 otherwise). Anything that is not a StartFailure is rethrown.
 */
export function startFailureError(e: unknown): ApiError | { exitCode: number; message: string } {
  if (!(e instanceof StartFailure)) throw e;
  const f = e;
  const why = `${f.errno ? errnoName(f.errno) : 'error'} (${f.detail})`;
  if (f.step === 'exec') return { exitCode: f.errno === 2 || f.errno === 20 ? 127 : 126, message: why };
  if (f.step === 'cwd') return new ApiError('invalid_request', `cwd: ${why}`, 'cwd', { step: f.step, errno: f.errno });
  return agentError(f, 'start a command');
}

/** Anything the session's init could not do for us, as the API's error. */
export function agentError(f: StartFailure, doing: string): ApiError {
  const why = `${f.errno ? errnoName(f.errno) : 'error'} (${f.detail})`;
  const failed = { step: f.step, errno: f.errno };
  const message = `the session cannot ${doing}: step ${f.step} failed: ${why}`;
  return new ApiError(f.step === 'fork' || f.step === 'stopping' || f.step === 'protocol' ? 'exhausted' : 'internal', message, undefined, failed);
}
