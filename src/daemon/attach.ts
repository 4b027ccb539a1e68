// Session consoles for the attach endpoint: created on first attach, one per
// session, ended with the shell or the session.
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import type { Duplex } from 'node:stream';
import type { AccessGuard, Caller } from '../access/guard.js';
import type { Budgets } from '../access/budgets.js';
import type { Logger } from 'pino';
import type { Config } from '../config/schema.js';
import { ApiError } from '../vocab/errors.js';
import { startFailureError, type StartedCommand } from '../sessions/agent.js';
import { commandCwd, commandEnv } from '../sessions/command.js';
import type { SessionManager } from '../sessions/manager.js';
import type { SessionRow } from '../store/sessionStore.js';
import { SessionConsole, type ConsoleOptions, type Size } from '../terminal/console.js';
import { MirrorHost } from '../terminal/mirror.js';
import { SessionPty } from '../terminal/sessionPty.js';
import { ByteRing } from '../terminal/ring.js';
import { addon } from '../native/addon.js';

/** A screen mirror this far behind the pty stops being fed and restarts from the ring. */
const MIRROR_MAX_LAG = 8 * 1024 * 1024;
const DEFAULT_SIZE: Size = { cols: 80, rows: 24 };

export class Consoles {
  private readonly consoles = new Map<string, SessionConsole>();
  private readonly oneOffs = new Set<SessionConsole>();
  private readonly starting = new Map<string, Promise<SessionConsole>>();
  private readonly mirrors: MirrorHost;

  constructor(
    private readonly config: Config,
    private readonly sessions: SessionManager,
    private readonly log: Logger,
    private readonly budgets: Budgets,
    private readonly access: AccessGuard,
  ) {
    this.mirrors = new MirrorHost(log);
  }

  private loginShell(row: SessionRow): string[] {
    // /usr/bin first: in a merged-/usr root, /bin is a link the host would resolve against its own /.
    for (const shell of ['/usr/bin/bash', '/bin/bash']) {
      const onHost = this.sessions.hostPathInRoot(row, shell);
      if (onHost && existsSync(onHost)) return [shell, '-l'];
    }
    return ['/bin/sh', '-l'];
  }

  /** A terminal running `q` in the session; the console and exec --tty differ only in `own`. */
  private async startTerminal(
    row: SessionRow,
    q: { command: string[]; env: string[]; cwd?: string | undefined; user?: string | undefined },
    size: Size,
    own: Pick<ConsoleOptions, 'ringBytes' | 'ring' | 'policy' | 'mirror' | 'onEnd' | 'endWhenAlone'>,
    onStarted?: (id: string) => void,
  ): Promise<SessionConsole> {
    const agent = this.sessions.agentFor(row);
    let started: StartedCommand;
    try {
      const env = commandEnv(row.hostname, { env: q.env, tty: true, user: q.user });
      started = await agent.start({ tty: true, argv: q.command, env, cwd: commandCwd(q), user: q.user, cols: size.cols, rows: size.rows, fds: [], stdin: false });
    } catch (e) {
      const mapped = startFailureError(e, q.command[0]!);
      throw 'exitCode' in mapped ? new ApiError('invalid_request', mapped.message, mapped.field) : mapped;
    }
    const pty = new SessionPty(started.master!, agent, started.id, started.exited);
    const t = this.config.terminal;
    const console = new SessionConsole({ sessionId: row.id, pty, size, maxLagBytes: t.max_lag_bytes, stallMs: t.stall_ms, log: this.log, ...own });
    onStarted?.(started.id);
    return console;
  }

  /** A session's console options (its ring aside). */
  private consoleOptions(row: SessionRow): Pick<ConsoleOptions, 'ringBytes' | 'policy' | 'mirror' | 'onEnd'> {
    const t = this.config.terminal;
    return {
      ringBytes: t.ring_bytes,
      policy: t.resize,
      mirror: (ring, s) => this.mirrors.create(ring, s, t.snapshot_scrollback, MIRROR_MAX_LAG),
      onEnd: () => this.consoles.delete(row.id),
    };
  }

  /**
   * A new console: its ring in shared memory, handed with the console to the
   * session's init to keep, so the shell and its screen outlive the daemon.
   */
  private async open(row: SessionRow, size: Size): Promise<SessionConsole> {
    const { ring, fd } = ByteRing.shared(this.config.terminal.ring_bytes);
    let console: SessionConsole;
    try {
      console = await this.startTerminal(row, { command: this.loginShell(row), env: [] }, size, { ...this.consoleOptions(row), ring }, (id) =>
        this.sessions.agentFor(row).keep(id, fd),
      );
    } finally {
      addon().closeFd(fd);
    }
    this.consoles.set(row.id, console);
    this.log.info({ session: row.id }, 'console started');
    return console;
  }

  /**
   * After a daemon restart: the consoles the session's init kept, with their
   * shells, their pty and their screen (the shared ring), as they were.
   */
  adopt(row: SessionRow): Promise<void> {
    let p = this.adopting.get(row.id);
    if (!p) {
      p = this.adoptKept(row).finally(() => this.adopting.delete(row.id));
      this.adopting.set(row.id, p);
    }
    return p;
  }

  /**
   * Every running session's kept console, 25 sessions at a time between turns
   * of the event loop (the API serves meanwhile; an attach waits for its own
   * session's). A session whose init keeps none (an older one) costs a timeout.
   */
  async adoptAll(rows: SessionRow[]): Promise<void> {
    for (let i = 0; i < rows.length; i += 25) {
      for (const row of rows.slice(i, i + 25)) this.adopting.set(row.id, this.adoptKept(row).catch((e: Error) => this.log.warn({ session: row.id, err: e.message }, 'cannot adopt the kept console')).finally(() => this.adopting.delete(row.id)));
      await Promise.all(rows.slice(i, i + 25).map((r) => this.adopting.get(r.id)));
    }
  }

  /** Adoptions under way: a console asked for meanwhile waits for its session's. */
  private readonly adopting = new Map<string, Promise<void>>();

  private async adoptKept(row: SessionRow): Promise<void> {
    if (this.consoles.has(row.id) || row.plan === null) return;
    const agent = this.sessions.agentFor(row);
    const kept = await agent.keptConsoles();
    for (const [i, k] of kept.entries()) {
      let ring: ByteRing;
      try {
        ring = ByteRing.mapped(k.ring, this.config.terminal.ring_bytes);
      } catch (e) {
        this.log.warn({ session: row.id, err: (e as Error).message }, 'a kept console\'s ring cannot be mapped: its shell goes');
        addon().closeFd(k.master);
        agent.signal(k.id, 1);
        continue;
      } finally {
        addon().closeFd(k.ring);
      }
      const pty = new SessionPty(k.master, agent, k.id, k.exited);
      // One console per session; a second kept one (none is made) would have no way in: it ends.
      if (i > 0 || this.consoles.has(row.id)) {
        pty.kill('SIGHUP');
        continue;
      }
      const t = this.config.terminal;
      const size = { cols: k.cols, rows: k.rows };
      const console = new SessionConsole({ sessionId: row.id, pty, size, maxLagBytes: t.max_lag_bytes, stallMs: t.stall_ms, log: this.log, ...this.consoleOptions(row), ring });
      this.consoles.set(row.id, console);
      this.log.info({ session: row.id, bytes: ring.end }, 're-adopted the console its init kept');
    }
  }

  /** The session's console, started if it is not running (create --console, daemon start, attach). */
  async ensure(row: SessionRow, size: Size = DEFAULT_SIZE): Promise<SessionConsole> {
    // After a restart, the one its init kept, if it kept one: never a second shell beside it.
    await this.adopting.get(row.id);
    const running = this.consoles.get(row.id);
    if (running) return running;
    let starting = this.starting.get(row.id);
    if (!starting) {
      starting = this.open(row, size).finally(() => this.starting.delete(row.id));
      this.starting.set(row.id, starting);
    }
    return starting;
  }

  /**
   * The kept console of a session just made or started with it. One that
   * cannot start undoes the create (the session ends failed, saying why) or
   * the start (stopped again): the caller hears it failed, so nothing it was
   * told failed runs on (before, the session ran on, console-less).
   */
  async keep(row: SessionRow, undo: 'create' | 'start'): Promise<void> {
    try {
      await this.ensure(row);
    } catch (e) {
      const why = `its console could not start: ${(e as Error).message}`;
      const log = this.log.child({ session: row.id });
      log.warn({ err: (e as Error).message }, `the ${undo} is undone: its console could not start`);
      const [undone, done, verb] = undo === 'create' ? [this.sessions.destroy(row.id, why, 0), 'it was ended (failed)', 'ended'] : [this.sessions.stopSession(row.id, why), 'it was stopped again', 'stopped'];
      const ended = await undone.then(
        () => done,
        (u: Error) => {
          log.error({ err: u.message }, `cannot undo the ${undo}`);
          return `it could not be ${verb} (${u.message}): destroy it`;
        },
      );
      // A shell that does not start is the session root's fault, not the request's (whose field it would name).
      const code = e instanceof ApiError && e.code !== 'invalid_request' ? e.code : 'internal';
      throw new ApiError(code, `session ${row.id}: ${why}; ${ended}`);
    }
  }

  /** The session's console if it runs (never started for this): `session logs` reads its ring. */
  running(id: string): SessionConsole | undefined {
    return this.consoles.get(id);
  }

  /** Whether a session's console runs and how many watch it (for the session view). */
  info(id: string): { running: boolean; viewers: number } {
    const c = this.consoles.get(id);
    return { running: c !== undefined, viewers: c?.viewers ?? 0 };
  }

  /** Each running console and its viewers, as one string: what info() says of every session changes only with it. */
  viewersDigest(): string {
    const h = createHash('sha256');
    for (const [id, c] of this.consoles) h.update(`${id}:${c.viewers},`);
    return h.digest('base64url').slice(0, 22);
  }

  /**
   * Reserve a viewer slot before upgrading, or 429: per session, in all, and
   * per user (its budget). The slot is taken now, not when the console has
   * started, so concurrent upgrades cannot all pass the check; it is given
   * back when `socket` closes (refused, or the viewer gone).
   */
  admit(sessionId: string, owner: number | null, caller: Caller, socket: Duplex): void {
    const t = this.config.terminal;
    const here = this.held.bySession.get(sessionId) ?? 0;
    const mine = this.held.byUser.get(caller.uid) ?? 0;
    const target = { kind: 'session' as const, id: sessionId, owner_uid: owner };
    const refuse = (rule: string, message: string) => this.access.refuse(caller, 'session.attach', target, rule, new ApiError('too_many', message));
    if (here >= t.max_viewers_per_session) refuse('terminal.max_viewers_per_session', `session ${sessionId} already has ${here} viewers (terminal.max_viewers_per_session)`);
    if (this.held.total >= t.max_viewers) refuse('terminal.max_viewers', `the daemon already serves ${this.held.total} viewers (terminal.max_viewers)`);
    const budget = this.budgets.viewers(caller);
    if (budget && mine >= budget.max) refuse(budget.rule, `uid ${caller.uid} already holds ${mine} viewers (${budget.rule})`);
    const add = <K>(m: Map<K, number>, k: K, n: number) => {
      const v = (m.get(k) ?? 0) + n;
      if (v > 0) m.set(k, v);
      else m.delete(k);
    };
    const take = (n: number) => {
      this.held.total += n;
      add(this.held.bySession, sessionId, n);
      add(this.held.byUser, caller.uid, n);
    };
    take(1);
    socket.once('close', () => take(-1));
  }

  /** Viewer slots held: by session, by user, in all. */
  private readonly held = { total: 0, bySession: new Map<string, number>(), byUser: new Map<number, number>() };

  /** exec --tty: a one-off terminal running `command`, alive while its client is. Started before the upgrade. */
  async startOneOff(row: SessionRow, q: { command: string[]; env: string[]; cwd?: string | undefined; user?: string | undefined }, size: Size | undefined): Promise<SessionConsole> {
    const one: SessionConsole = await this.startTerminal(row, q, size ?? DEFAULT_SIZE, {
      ringBytes: 64 * 1024,
      policy: 'latest',
      onEnd: () => this.oneOffs.delete(one),
      endWhenAlone: true,
    });
    this.oneOffs.add(one);
    return one;
  }

  /** Daemon shutdown: exec --tty commands end with their clients; consoles are left to their inits, for the next daemon. */
  closeAll(): void {
    for (const c of this.oneOffs) c.kill();
    for (const c of this.consoles.values()) c.detach();
    this.consoles.clear();
    void this.mirrors.close();
  }
}
