// The daemon's side of exec: a session's init forks every command inside the
// session (native/src/agent.c); we ask over its control socket. One channel
// per session, connected on first use, so it works the same for sessions
// re-adopted after a restart. Messages are built and read through the verb
// table of native/src/agent.h (src/native/control.ts). Everything the init
// sends is untrusted: the addon bounds it, the table's kinds and bounds
// validate it, and an init that answers nothing costs one timer.
import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import { ApiError } from '../vocab/errors.js';
import { addon, type ControlChannel } from '../native/addon.js';
import type { MessageToDaemon, MessageToInit } from '../native/contract.gen.js';
import { decodeToDaemon, encodeMessage } from '../native/control.js';
import { errnoName } from './launch.js';
import { StartFailure } from './agentErrors.js';
import { execMessage, type ExecSpec } from './execMessage.js';

export { agentError, startFailureError, StartFailure } from './agentErrors.js';
export { MAX_EXEC_AS_MESSAGE, MAX_EXEC_MESSAGE, type ExecSpec } from './execMessage.js';

const START_TIMEOUT_MS = 5000;

export interface ExitReport {
  code: number | null;
  signal: number | null;
}

/**
 * A console the init kept through a daemon restart (native/src/agent.h,
 * "keep"): its command, its pty master and output ring (fds now ours), its
 * size, and its exit.
 */
export interface KeptConsole {
  id: string;
  pid: number;
  cols: number;
  rows: number;
  master: number;
  ring: number;
  exited: Promise<ExitReport | null>;
}

/** Kept consoles one connection may announce: we make one per session; more is a hostile init's fd flood. */
const MAX_KEPT = 2;

/** How long an init that keeps nothing (one of an older daemon) may take to say so. */
const KEPT_TIMEOUT_MS = 2000;

/** A command the init runs: its pty master (with tty) and its exit, null if the session ended under it. */
export interface StartedCommand {
  id: string;
  pid: number;
  master: number | null;
  exited: Promise<ExitReport | null>;
}

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
  /** Kept consoles the init announced on this connection, and whether it said that was all. */
  private readonly kept = new Map<string, Partial<KeptConsole>>();
  private keptDone = false;
  private keptWaiters: (() => void)[] = [];

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
    const message = execMessage(id, spec);
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
        // An init older than exec-as ignores it: say so, rather than only that it was silent.
        const older = message.verb === 'exec-as' ? ' (an init that predates exec as another user does not answer one: stop and start the session)' : '';
        p.onStart?.({ ok: false, failure: new StartFailure('protocol', 110, `the session init did not answer${older}`) });
        this.signal(id, 9);
      }, START_TIMEOUT_MS);
      this.pending.set(id, p);
      try {
        channel.send(encodeMessage(message), spec.fds);
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
   * renames it over the old one, root's, of group gid. Rejects: StartFailure.
   */
  writeFile(dir: string, leaf: string, mode: number, gid: number, content: Buffer): Promise<void> {
    return this.ask({ verb: 'write', id: `${prefix}-${++counter}`, dir, leaf, mode, gid, content });
  }

  /** Start the plan's boot op (--init systemd: boot.c); resolves once it runs. Rejects: StartFailure. */
  boot(): Promise<void> {
    return this.ask({ verb: 'boot', id: `${prefix}-${++counter}` });
  }

  /** A verb answered once, by "written" or "started" (done) or "failed". */
  private ask(message: Extract<MessageToInit, { verb: 'write' | 'boot' }>): Promise<void> {
    const id = message.id;
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
        channel.send(encodeMessage(message), []);
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
      this.channel.send(encodeMessage({ verb: 'signal', id, signo }), []);
    } catch {
      /* the channel is gone or full: the session is ending or wedged */
    }
  }

  /** Keep a console through daemon restarts: the init takes its output ring (a memfd) and keeps its master. */
  keep(id: string, ringFd: number): void {
    try {
      this.channel?.send(encodeMessage({ verb: 'keep', id }), [ringFd]);
    } catch (e) {
      this.log.warn({ err: (e as Error).message }, 'cannot hand the console to the session init: it will not outlive the daemon');
    }
  }

  /**
   * The consoles the init kept for an earlier daemon, with their fds (the
   * caller's to close). An init of an older version keeps none and says
   * nothing: after KEPT_TIMEOUT_MS that reads as none.
   */
  async keptConsoles(): Promise<KeptConsole[]> {
    this.connect();
    if (!this.keptDone) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, KEPT_TIMEOUT_MS);
        this.keptWaiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
    const out: KeptConsole[] = [];
    for (const k of this.kept.values()) {
      if (k.master !== undefined && k.ring !== undefined && k.exited) out.push(k as KeptConsole);
      else for (const fd of [k.master, k.ring]) if (fd !== undefined) addon().closeFd(fd);
    }
    this.kept.clear();
    return out;
  }

  private onKept(m: Extract<MessageToDaemon, { verb: 'kept' | 'ring' | 'kept-done' }>, fd: number | null): void {
    if (m.verb === 'kept-done') {
      this.keptDone = true;
      for (const w of this.keptWaiters.splice(0)) w();
      return;
    }
    let k = this.kept.get(m.id);
    if (!k) {
      if (this.kept.size >= MAX_KEPT || this.keptDone) {
        if (fd !== null) addon().closeFd(fd);
        this.log.warn({ id: m.id }, 'the session init announced more kept consoles than were made: ignored');
        return;
      }
      k = { id: m.id };
      this.kept.set(m.id, k);
    }
    // Each fd once: a repeat would otherwise leak the first.
    if ((m.verb === 'ring' ? k.ring : k.master) !== undefined) {
      if (fd !== null) addon().closeFd(fd);
      return;
    }
    if (m.verb === 'ring') {
      if (fd !== null) k.ring = fd;
      return;
    }
    Object.assign(k, { pid: m.pid, cols: m.cols, rows: m.rows }, fd !== null ? { master: fd } : {});
    // Its exit comes as any command's.
    let onExit!: (e: ExitReport | null) => void;
    k.exited = new Promise<ExitReport | null>((r) => (onExit = r));
    this.pending.set(m.id, { tty: true, onExit });
  }

  /**
   * Send `signo` to every process of the session but its init; resolves
   * once none is left ("quiet"), false if `timeoutMs` passed first or the
   * channel is gone.
   */
  quiesce(signo: number, timeoutMs: number): Promise<boolean> {
    return new Promise<boolean>((resolve) => {
      const done = (quiet: boolean) => {
        clearTimeout(timer);
        this.quietWaiters = this.quietWaiters.filter((w) => w !== onQuiet);
        resolve(quiet);
      };
      const onQuiet = () => done(true);
      const timer = setTimeout(() => done(false), timeoutMs);
      this.quietWaiters.push(onQuiet);
      try {
        this.connect();
        this.channel!.send(encodeMessage({ verb: 'quiesce', signo }), []);
      } catch (e) {
        this.log.warn({ err: (e as Error).message }, 'cannot ask the session init to quiesce');
        done(false);
      }
    });
  }

  private quietWaiters: (() => void)[] = [];

  /** Hang up every terminal command (console shells, exec --tty): SIGHUP to each one's process group, as a terminal that goes away does. */
  hangUp(): void {
    for (const [id, p] of this.pending) if (p.tty && !p.onStart) this.signal(id, 1);
  }

  /** A tty command's master is drained: the init may close its slave copy. */
  release(id: string): void {
    try {
      this.channel?.send(encodeMessage({ verb: 'release', id }), []);
    } catch {
      /* gone or full: the init closes held slaves when the channel drops */
    }
  }

  private onMessage(fields: string[], fd: number | null): void {
    const m = decodeToDaemon(fields);
    const p = m && 'id' in m ? this.pending.get(m.id) : undefined;
    // An fd comes with the start of a tty command and with a kept console
    // (a pty master), and with a kept console's ring (checked when mapped).
    const wantPty = (m?.verb === 'started' && p?.tty === true && p.onStart !== undefined) || m?.verb === 'kept';
    if (fd !== null && !(m?.verb === 'ring' || (wantPty && addon().isPtyMaster(fd)))) {
      addon().closeFd(fd);
      if (wantPty && m?.verb === 'started') return p!.onStart!({ ok: false, failure: new StartFailure('tty', 22, 'the session sent something that is not a pty master') });
      this.log.warn({ fields: fields.length }, 'ignored an fd from the session init');
      return;
    }
    if (!m) {
      this.log.warn({ kind: fields[0]?.slice(0, 16) }, 'ignored a malformed message from the session init');
      return;
    }
    if (m.verb === 'ending') return this.onEnding(m.code);
    if (m.verb === 'quiet') {
      for (const w of [...this.quietWaiters]) w();
      return;
    }
    if (m.verb === 'kept' || m.verb === 'ring' || m.verb === 'kept-done') return this.onKept(m, fd);
    const w = this.writes.get(m.id);
    if (w) {
      if (m.verb === 'written' || m.verb === 'started') w.done();
      else if (m.verb === 'failed') w.done(new StartFailure(m.step, m.errno, m.detail));
      return;
    }
    if (!p || m.verb === 'written') return; // a command of an earlier daemon, or already given up on
    if (m.verb === 'started') {
      if (!p.onStart) return;
      if (p.tty && fd === null) return p.onStart({ ok: false, failure: new StartFailure('tty', 22, 'no pty from the session init') });
      p.onStart({ ok: true, pid: m.pid, master: fd });
    } else if (m.verb === 'failed') {
      p.onStart?.({ ok: false, failure: new StartFailure(m.step, m.errno, m.detail) });
      this.pending.delete(m.id);
    } else {
      this.pending.delete(m.id);
      if (p.onStart) p.onStart({ ok: false, failure: new StartFailure('exec', 0, 'exited before it was reported started') });
      else p.onExit({ code: m.code >= 0 ? m.code : null, signal: m.signal > 0 ? m.signal : null });
    }
  }

  private onClose(reason: string): void {
    this.channel = undefined;
    // A new connection hears the kept consoles again.
    this.keptDone = false;
    for (const k of this.kept.values()) for (const fd of [k.master, k.ring]) if (fd !== undefined) addon().closeFd(fd);
    this.kept.clear();
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
