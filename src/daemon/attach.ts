// Session consoles for the attach endpoint: created on first attach, one per
// session, ended with the shell or the session.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { spawn as spawnPty, type IPty } from 'node-pty';
import type { Logger } from 'pino';
import type { WebSocket } from 'ws';
import type { Config } from '../config/schema.js';
import { ApiError } from '../api/errors.js';
import { addon } from '../native/addon.js';
import { enterCommand, type EnterCommand } from '../sessions/enter.js';
import type { SessionManager } from '../sessions/manager.js';
import type { SessionRow } from '../store/sessionStore.js';
import { SessionConsole, type ConsoleOptions, type Role, type Size } from '../terminal/console.js';
import { MirrorHost } from '../terminal/mirror.js';

/** A screen mirror this far behind the pty stops being fed and restarts from the ring. */
const MIRROR_MAX_LAG = 8 * 1024 * 1024;
const DEFAULT_SIZE: Size = { cols: 80, rows: 24 };

export class Consoles {
  private readonly consoles = new Map<string, SessionConsole>();
  private readonly oneOffs = new Set<SessionConsole>();
  private readonly mirrors: MirrorHost;

  constructor(
    private readonly config: Config,
    private readonly sessions: SessionManager,
    private readonly log: Logger,
  ) {
    this.mirrors = new MirrorHost(log);
    sessions.onEnded((id) => this.consoles.get(id)?.kill());
    sessions.describeConsolesWith((id) => {
      const c = this.consoles.get(id);
      return { running: c !== undefined, viewers: c?.viewers ?? 0 };
    });
  }

  /** A pty running enclave-enter; its master is not inherited by later children. */
  private spawn(cmd: EnterCommand, size: Size): IPty {
    const pty = spawnPty(cmd.file, cmd.args, { name: 'xterm-256color', cols: size.cols, rows: size.rows, cwd: '/', env: cmd.env, encoding: null });
    // node-pty keeps the master fd private and opens it without O_CLOEXEC.
    const fd = (pty as unknown as { _fd?: unknown })._fd;
    if (typeof fd !== 'number') {
      pty.kill('SIGKILL');
      throw new Error('node-pty no longer exposes the pty master fd; cannot make it close-on-exec');
    }
    addon().setCloexec(fd);
    return pty;
  }

  private loginShell(): string[] {
    return existsSync(join(this.config.sessions.rootfs, 'bin', 'bash')) ? ['/bin/bash', '-l'] : ['/bin/sh', '-l'];
  }

  /** A terminal running `q` in the session; the console and exec --tty differ only in `own`. */
  private startTerminal(
    row: SessionRow,
    q: { command: string[]; env: string[]; cwd: string },
    size: Size,
    own: Pick<ConsoleOptions, 'ringBytes' | 'policy' | 'mirror' | 'onEnd' | 'endWhenAlone'>,
  ): SessionConsole {
    const cmd = enterCommand(row, this.sessions.enterConfinement(row), { ...q, tty: true });
    const t = this.config.terminal;
    return new SessionConsole({ sessionId: row.id, pty: this.spawn(cmd, size), size, maxLagBytes: t.max_lag_bytes, stallMs: t.stall_ms, log: this.log, ...own });
  }

  private open(row: SessionRow, size: Size): SessionConsole {
    const t = this.config.terminal;
    const console = this.startTerminal(row, { command: this.loginShell(), env: [], cwd: '/home' }, size, {
      ringBytes: t.ring_bytes,
      policy: t.resize,
      mirror: (ring, s) => this.mirrors.create(ring, s, t.snapshot_scrollback, MIRROR_MAX_LAG),
      onEnd: () => this.consoles.delete(row.id),
    });
    this.consoles.set(row.id, console);
    this.log.info({ session: row.id }, 'console started');
    return console;
  }

  /** The session's console, started if it is not running (create --console, daemon start). */
  ensure(row: SessionRow, size: Size = DEFAULT_SIZE): SessionConsole {
    return this.consoles.get(row.id) ?? this.open(row, size);
  }

  /** 429 before upgrading when a session, or the daemon, has enough viewers. */
  admit(sessionId: string): void {
    const t = this.config.terminal;
    const here = this.consoles.get(sessionId)?.viewers ?? 0;
    const total = [...this.consoles.values()].reduce((n, c) => n + c.viewers, 0);
    if (here >= t.max_viewers_per_session) throw new ApiError('too_many', `session ${sessionId} already has ${here} viewers (terminal.max_viewers_per_session)`);
    if (total >= t.max_viewers) throw new ApiError('too_many', `the daemon already serves ${total} viewers (terminal.max_viewers)`);
  }

  attach(row: SessionRow, ws: WebSocket, opts: { role: Role; enclave: boolean; resume: number | undefined; size: Size | undefined }): void {
    const console = this.ensure(row, opts.size);
    console.attach(ws, opts.role, opts.enclave, opts.resume, opts.size);
  }

  /** exec --tty: a one-off terminal running `command`, alive while its client is. */
  execTty(row: SessionRow, ws: WebSocket, q: { command: string[]; env: string[]; cwd: string }, enclave: boolean, size: Size | undefined): void {
    const one = this.startTerminal(row, q, size ?? DEFAULT_SIZE, {
      ringBytes: 64 * 1024,
      policy: 'latest',
      onEnd: () => this.oneOffs.delete(one),
      endWhenAlone: true,
    });
    this.oneOffs.add(one);
    one.attach(ws, 'rw', enclave, undefined, size);
  }

  closeAll(): void {
    for (const c of this.oneOffs) c.kill();
    for (const c of this.consoles.values()) c.kill();
    void this.mirrors.close();
  }
}
