// The access policy applied: every decision on an API action is made here,
// recorded in the audit trail with the owner of the object it acts on, and a
// refusal is a 403 (policy) or a 429 (abuse limits, budgets) naming what
// refused it. Root is never rate limited.
import type { Logger } from 'pino';
import { ApiError } from '../vocab/errors.js';
import type { AuditLog } from './audit.js';
import { diskFullMessage, isDiskFull } from '../store/diskFull.js';
import { decide, grantsProfile, type Action, type Rule } from './policy.js';
import type { Profile } from '../vocab/profiles.js';

export interface Caller {
  uid: number;
  /** Primary and supplementary gids (empty over TCP). */
  gids: number[];
  pid: number | null;
  /** 'peer': a call another node of the fleet forwarded (mutual TLS), checked and audited there. */
  via: 'socket' | 'tcp' | 'peer';
  /** via 'peer': the node whose certificate vouched for the caller. */
  peer?: string;
}

export interface AccessConfig {
  rules: Rule[];
  rate_per_minute: number;
}

/** What a call acts on: every object has an owner. */
export interface Target {
  kind: 'session' | 'volume' | 'secret';
  /** A session's id; a volume's or secret's name (as the caller wrote it). */
  id: string;
  owner_uid: number | null;
  /** Named by the caller but not found (or not for it to see): `id` is the name as written. */
  unresolved?: true;
}

/** Calls that change state: the ones the per-uid rate limit counts. */
const MUTATING: ReadonlySet<Action> = new Set(['session.create', 'session.destroy', 'session.stop', 'session.start', 'session.refresh-auth', 'session.publish', 'session.snapshot', 'auth.set', 'auth.remove', 'volume.create', 'volume.remove', 'volume.resize', 'volume.export']);

export class AccessGuard {
  /** Per uid: tokens left and when they were last topped up. */
  private readonly buckets = new Map<number, { tokens: number; at: number }>();

  constructor(
    private readonly config: AccessConfig,
    private readonly audit: AuditLog,
    private readonly log: Logger,
    private readonly stateDir: string,
  ) {}

  /**
   * A call another node forwarded, checked and recorded there: recorded here
   * too, as allowed by that node (rule "node NAME"), so what this node did for
   * a peer is on its own record. Fails closed as any decision does.
   */
  vouched(caller: Caller, action: Action, target: Target | undefined, detail: string | null): void {
    if (caller.via !== 'peer') return;
    this.record(caller, action, target, true, `node ${caller.peer ?? 'unknown'}`, detail, true);
  }

  /** Fail closed: a decision that cannot be recorded (the state dir's disk is full) is a refusal. */
  private record(caller: Caller, action: Action, target: Target | undefined, allow: boolean, rule: string, detail: string | null, vouched = false): void {
    // The audit trail's session column holds sessions found; a volume, a secret or a name not found is in the detail.
    // A forwarded call's decision was made at the node the caller reached: here it is only recorded as vouched for.
    if (caller.via === 'peer' && !vouched) return;
    const session = target?.kind === 'session' && !target.unresolved ? target.id : null;
    const about = target && (target.kind !== 'session' || target.unresolved) ? `${target.kind} ${target.id}${detail ? ` ${detail}` : ''}` : detail;
    try {
      this.audit.record({
        caller_uid: caller.uid,
        caller_gid: caller.gids[0] ?? null,
        caller_pid: caller.pid,
        via: caller.via,
        action,
        session_id: session,
        object_owner: target?.owner_uid ?? null,
        decision: allow ? 'allow' : 'deny',
        rule,
        detail: about,
      });
    } catch (e) {
      if (!isDiskFull(e, this.stateDir)) throw e;
      this.log.error({ uid: caller.uid, action, session }, 'cannot record an audit event: refusing the call');
      throw new ApiError('insufficient_storage', `cannot record the audit event for ${action}, so it is refused: ${diskFullMessage(this.stateDir)}`);
    }
  }

  /**
   * Decide, record, and throw unless allowed. `hidden`: the caller named the
   * object by name; if it may not act on another owner's object, the answer
   * is the "not found" it gets for a name nobody has, and the event is
   * recorded just as that one is (see notFound), so neither the reply nor
   * the caller's own trail tells the two apart. Returns the scope of the rule
   * that allowed it.
   */
  check(caller: Caller, action: Action, target?: Target, detail: string | null = null, hidden?: { error: ApiError; ref: string }): 'self' | 'all' {
    const d = decide(this.config.rules, caller, action, target ? target.owner_uid : undefined);
    if (d.allow && MUTATING.has(action) && caller.uid !== 0 && !this.take(caller.uid)) {
      this.record(caller, action, target, false, 'access.rate_per_minute', detail);
      throw new ApiError('too_many', `uid ${caller.uid} made more than ${this.config.rate_per_minute} state-changing calls in a minute (access.rate_per_minute)`);
    }
    if (!d.allow && hidden && target && target.owner_uid !== caller.uid) {
      this.log.info({ uid: caller.uid, action, target: `${target.kind} ${target.id}`, rule: d.rule }, 'access denied (answered as not found)');
      this.notFound(caller, action, target.kind, hidden.ref, detail, hidden.error);
    }
    this.record(caller, action, target, d.allow, d.rule, detail);
    if (!d.allow) {
      this.log.info({ uid: caller.uid, action, target: target && `${target.kind} ${target.id}`, rule: d.rule }, 'access denied');
      const why = d.rule === 'default' ? 'no access rule allows it (non-root callers are denied by default)' : `access rule ${d.rule} denies it`;
      const on = target ? ` on ${target.kind} ${target.id}` : '';
      throw new ApiError('forbidden', `uid ${caller.uid} may not ${action}${on}: ${why}`);
    }
    return d.scope;
  }

  /** A session of `profile` for this caller (create, start): refused with a 403 unless root or a rule's profiles grant it. */
  checkProfile(caller: Caller, action: Action, profile: Profile, target?: Target, detail: string | null = null): void {
    const g = grantsProfile(this.config.rules, caller, profile);
    if (g.allow) return;
    this.record(caller, action, target, false, g.rule, `profile ${profile}${detail ? ` ${detail}` : ''}`);
    this.log.info({ uid: caller.uid, action, profile }, 'profile not granted');
    throw new ApiError('forbidden', `uid ${caller.uid} may not have a session of profile "${profile}": no access rule grants it (access.rules[].profiles; workspace and strict need none)`);
  }

  /** Whether a listed object is one the caller may see (the list call itself is checked and recorded once). */
  visible(caller: Caller, target: { owner_uid: number | null }, action: Action = 'session.list'): boolean {
    return decide(this.config.rules, caller, action, target.owner_uid).allow;
  }

  /** A lookup by name that found nothing the caller may see: recorded with the name as written, no id, no owner; then thrown. */
  notFound(caller: Caller, action: Action, kind: Target['kind'], ref: string, detail: string | null, error: ApiError): never {
    this.record(caller, action, { kind, id: ref, owner_uid: null, unresolved: true }, false, 'not found', detail);
    throw error;
  }

  /** A refusal decided outside the policy (a budget, a cap): recorded, then thrown. */
  refuse(caller: Caller, action: Action, target: Target | undefined, rule: string, error: ApiError, detail: string | null = null): never {
    this.record(caller, action, target, false, rule, detail);
    this.log.info({ uid: caller.uid, action, rule }, 'refused by a budget');
    throw error;
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
