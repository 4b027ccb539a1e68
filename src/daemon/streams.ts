// Concurrent exec streams per session, and exec and attach streams per caller. Each one holds pipes
// or a pty, a command slot in the session's init and event-loop time, so a
// caller opening a thousand of them could starve everyone else: past either
// cap a request is refused with 429 before anything is started.
import { ApiError } from '../vocab/errors.js';

/** A 429 of a cap, with the key that set it (for the audit trail). */
export class CapReached extends ApiError {
  constructor(
    readonly rule: string,
    message: string,
  ) {
    super('too_many', message);
  }
}

export interface StreamCaps {
  max_exec_streams_per_session: number;
  max_exec_streams_per_caller: number;
}

export class StreamLimits {
  private readonly bySession = new Map<string, number>();
  private readonly byCaller = new Map<string, number>();

  constructor(private readonly caps: StreamCaps) {}

  /**
   * Take a slot for this caller, and for this session unless it is null (an
   * attach: sessions cap their viewers themselves), or throw 429. The slot is
   * given back when `socket` closes.
   */
  hold(sessionId: string | null, caller: string, socket: { once(event: 'close', listener: () => void): unknown }, budget?: { max: number; rule: string }): void {
    const s = sessionId === null ? 0 : (this.bySession.get(sessionId) ?? 0);
    const c = this.byCaller.get(caller) ?? 0;
    if (sessionId !== null && s >= this.caps.max_exec_streams_per_session) {
      throw new CapReached('api.max_exec_streams_per_session', `session ${sessionId} already has ${s} exec streams (api.max_exec_streams_per_session)`);
    }
    // A non-root user's budget may lower the per-caller cap, never raise it.
    const cap = budget && budget.max < this.caps.max_exec_streams_per_caller ? budget : { max: this.caps.max_exec_streams_per_caller, rule: 'api.max_exec_streams_per_caller' };
    if (c >= cap.max) {
      throw new CapReached(cap.rule, `caller ${caller} already has ${c} exec and attach streams open (${cap.rule})`);
    }
    if (sessionId !== null) this.bySession.set(sessionId, s + 1);
    this.byCaller.set(caller, c + 1);
    socket.once('close', () => {
      if (sessionId !== null) this.drop(this.bySession, sessionId);
      this.drop(this.byCaller, caller);
    });
  }

  private drop(m: Map<string, number>, key: string): void {
    const n = (m.get(key) ?? 1) - 1;
    if (n <= 0) m.delete(key);
    else m.set(key, n);
  }

  /** Open streams of a session (for show and tests). */
  of(sessionId: string): number {
    return this.bySession.get(sessionId) ?? 0;
  }
}
