// A pty the session's init opened in the session's own devpts and handed us
// (its master end): the terminal of a console or of exec --tty. The command
// is the init's child, not ours; its exit comes over the control channel.
import tty from 'node:tty';
import { addon } from '../native/addon.js';
/** What a pty needs of the session's init: signal its command, and let it go (src/sessions/agent.ts). */
export interface CommandControl {
  signal(execId: string, signo: number): void;
  release(execId: string): void;
}

/** Input queued for a terminal that does not read it is dropped past this. */
const MAX_INPUT_QUEUE = 1024 * 1024;

export interface TerminalProcess {
  onData(cb: (data: Buffer) => void): void;
  onExit(cb: (e: { exitCode: number; signal?: number }) => void): void;
  write(data: Buffer | string): void;
  resize(cols: number, rows: number): void;
  kill(signal?: string): void;
}

const SIGNALS: Record<string, number> = { SIGHUP: 1, SIGINT: 2, SIGKILL: 9, SIGTERM: 15 };

export class SessionPty implements TerminalProcess {
  private readonly stream: tty.ReadStream;
  private exitCb: ((e: { exitCode: number; signal?: number }) => void) | undefined;
  private exit: { exitCode: number; signal?: number } | undefined;
  private ended = false;

  constructor(
    private readonly master: number,
    private readonly agent: CommandControl,
    private readonly execId: string,
    exited: Promise<{ code: number | null; signal: number | null } | null>,
  ) {
    this.stream = new tty.ReadStream(master);
    // EIO is how a master reads once the last slave fd is closed: the end.
    this.stream.on('error', () => this.end());
    this.stream.on('end', () => this.end());
    void exited.then((e) => {
      this.exit = e === null ? { exitCode: 1 } : e.signal !== null ? { exitCode: 0, signal: e.signal } : { exitCode: e.code ?? 1 };
      this.exitCb?.(this.exit);
    });
  }

  private end(): void {
    if (this.ended) return;
    this.ended = true;
    this.stream.destroy();
  }

  onData(cb: (data: Buffer) => void): void {
    this.stream.on('data', (d: Buffer | string) => cb(typeof d === 'string' ? Buffer.from(d) : d));
  }

  onExit(cb: (e: { exitCode: number; signal?: number }) => void): void {
    this.exitCb = cb;
    if (this.exit) cb(this.exit);
  }

  write(data: Buffer | string): void {
    if (this.ended || this.stream.writableLength > MAX_INPUT_QUEUE) return;
    this.stream.write(data);
  }

  resize(cols: number, rows: number): void {
    if (this.ended) return;
    try {
      addon().setWinsize(this.master, cols, rows);
    } catch {
      /* the pty is going away */
    }
  }

  kill(signal = 'SIGHUP'): void {
    this.agent.signal(this.execId, SIGNALS[signal] ?? 1);
  }

  /** Let go of our end without a word to the init, which keeps its own (a console outliving the daemon). */
  detach(): void {
    this.end();
  }

  /** Close our end (after the command's exit was reported and drained). */
  close(): void {
    this.agent.release(this.execId);
    this.end();
  }
}
