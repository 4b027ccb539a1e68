// The access policy applied: every decision on an API action is made here,
// recorded in the audit trail, and a refusal is a 403 (policy) or a 429
// (abuse limits) naming what refused it. Root is never rate limited.
import type { Logger } from 'pino';
import { ApiError } from '../api/errors.js';
import type { AuditLog } from './audit.js';
import { diskFullMessage, isDiskFull } from '../store/diskFull.js';
import { decide, type Action, type Rule } from './policy.js';

export interface Caller {
  uid: number;
  /** Primary and supplementary gids (empty over TCP). */
  gids: number[];
  pid: number | null;
  via: 'socket' | 'tcp';
}

export interface AccessConfig {
  rules: Rule[];
  rate_per_minute: number;
  max_sessions_per_uid: number;
}

/** Calls that change state: the ones the per-uid rate limit counts. */
const MUTATING: ReadonlySet<Action> = new Set(['session.create', 'session.destroy', 'session.refresh-auth', 'session.publish', 'session.snapshot', 'auth.set', 'auth.remove', 'volume.create', 'volume.remove']);

export class AccessGuard {
  /** Per uid: tokens left and when they were last topped up. */
  private readonly buckets = new Map<number, { tokens: number; at: number }>();

  constructor(
    private readonly config: AccessConfig,
    private readonly audit: AuditLog,
    private readonly log: Logger,
    private readonly stateDir: string,
  ) {}

  /** Fail closed: a decision that cannot be recorded (the state dir's disk is full) is a refusal. */
  private record(caller: Caller, action: Action, sessionId: string | null, allow: boolean, rule: string, detail: string | null): void {
    try {
      this.audit.record({ caller_uid: caller.uid, caller_gid: caller.gids[0] ?? null, caller_pid: caller.pid, via: caller.via, action, session_id: sessionId, decision: allow ? 'allow' : 'deny', rule, detail });
    } catch (e) {
      if (!isDiskFull(e, this.stateDir)) throw e;
      this.log.error({ uid: caller.uid, action, session: sessionId }, 'cannot record an audit event: refusing the call');
      throw new ApiError('insufficient_storage', `cannot record the audit event for ${action}, so it is refused: ${diskFullMessage(this.stateDir)}`);
    }
  }

  /** Decide, record, and throw unless allowed. `session` is the target, if any: a session, or a volume (kind 'volume', its name as id). */
  check(caller: Caller, action: Action, target?: { id: string; owner_uid: number | null; kind?: 'volume' }, detail: string | null = null): void {
    const d = decide(this.config.rules, caller, action, target ? target.owner_uid : undefined);
    // The audit trail's session column holds sessions only; a volume goes in the detail.
    const session = target?.kind === 'volume' ? undefined : target;
    if (target?.kind === 'volume') detail = `volume ${target.id}${detail ? ` ${detail}` : ''}`;
    if (d.allow && MUTATING.has(action) && caller.uid !== 0 && !this.take(caller.uid)) {
      this.record(caller, action, session?.id ?? null, false, 'access.rate_per_minute', detail);
      throw new ApiError('too_many', `uid ${caller.uid} made more than ${this.config.rate_per_minute} state-changing calls in a minute (access.rate_per_minute)`);
    }
    this.record(caller, action, session?.id ?? null, d.allow, d.rule, detail);
    if (!d.allow) {
      this.log.info({ uid: caller.uid, action, session: session?.id, rule: d.rule }, 'access denied');
      const why = d.rule === 'default' ? 'no access rule allows it (non-root callers are denied by default)' : `access rule ${d.rule} denies it`;
      const on = target ? ` on ${target.kind === 'volume' ? 'volume' : 'session'} ${target.id}` : '';
      throw new ApiError('forbidden', `uid ${caller.uid} may not ${action}${on}: ${why}`);
    }
  }

  /** Whether a listed session is one the caller may see (the list call itself is checked and recorded once). */
  visible(caller: Caller, target: { owner_uid: number | null }, action: 'session.list' | 'volume.list' = 'session.list'): boolean {
    return decide(this.config.rules, caller, action, target.owner_uid).allow;
  }

  /** The per-uid cap on live sessions, at create (root has none). */
  checkSessionCap(caller: Caller, owned: number): void {
    if (caller.uid === 0 || owned < this.config.max_sessions_per_uid) return;
    this.record(caller, 'session.create', null, false, 'access.max_sessions_per_uid', null);
    throw new ApiError('too_many', `uid ${caller.uid} already owns ${owned} live sessions (access.max_sessions_per_uid)`);
  }

  /** A token bucket per uid: rate_per_minute calls, refilled continuously. */
  private take(uid: number): boolean {
    const now = Date.now();
    const cap = this.config.rate_per_minute;
    const b = this.buckets.get(uid) ?? { tokens: cap, at: now };
    b.tokens = Math.min(cap, b.tokens + ((now - b.at) / 60_000) * cap);
    b.at = now;
    this.buckets.set(uid, b);
    if (b.tokens < 1) return false;
    b.tokens -= 1;
    return true;
  }
}
