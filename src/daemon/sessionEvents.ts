// What the kernel or the daemon itself did to a session, in the audit trail:
// an OOM kill (via "kernel"), an idle stop and a drain's move away (via
// "daemon"). No caller
// process, decision "none", the setting that decided as the rule. Each is
// the session owner's (caller_uid and object_owner), so a session that keeps
// running out of memory prunes only its owner's rows (access.keep_events is
// per caller), and the owner sees it in `enclave events`.
import type { Logger } from 'pino';
import type { AuditLog } from '../access/audit.js';
import type { OomEvent } from '../sessions/kit.js';
import type { SessionManager } from '../sessions/manager.js';

interface Act {
  session: string;
  via: 'kernel' | 'daemon';
  action: string;
  rule: string;
  detail: string;
}

function recordAct(audit: AuditLog, sessions: SessionManager, log: Logger, a: Act): void {
  const owner = sessions.find(a.session)?.owner_uid ?? 0;
  try {
    audit.record({ caller_uid: owner, caller_gid: null, caller_pid: null, via: a.via, action: a.action, session_id: a.session, object_owner: owner, decision: 'none', rule: a.rule, detail: a.detail });
  } catch (err) {
    log.child({ session: a.session }).error({ err: (err as Error).message, action: a.action }, 'cannot record in the audit trail');
  }
}

/** An OOM kill: the session's memory limit decided. */
export function recordOom(audit: AuditLog, sessions: SessionManager, log: Logger, e: OomEvent): void {
  const victim = e.victim ? `${e.victim.command} (host pid ${e.victim.pid})` : 'a process the kernel log no longer names';
  const more = e.added > 1 ? ` (and ${e.added - 1} more)` : '';
  const detail = `out of memory: the kernel killed ${victim}${more}; ${e.kills} OOM kill${e.kills === 1 ? '' : 's'} in the session so far`;
  recordAct(audit, sessions, log, { session: e.session, via: 'kernel', action: 'session.oom', rule: 'limits.memory_mb', detail });
}

/** The daemon stopped an idle session: its idle timeout decided; `because` says how long and what idle means. */
export function recordIdleStop(audit: AuditLog, sessions: SessionManager, log: Logger, session: string, because: string): void {
  recordAct(audit, sessions, log, { session, via: 'daemon', action: 'session.stop', rule: 'idle_timeout_s', detail: `stopped: ${because}` });
}

/**
 * A drain moved the session to node `to` (src/fleet/move.ts): its stored
 * files are there, under the same id, and its copy here ended. The drain
 * that asked for it is on the trail of the node its caller reached.
 */
export function recordMovedAway(audit: AuditLog, sessions: SessionManager, log: Logger, session: string, to: string): void {
  recordAct(audit, sessions, log, { session, via: 'daemon', action: 'session.move', rule: 'node drain', detail: `moved to node ${to}: its stored files are there, under the same id; this copy ended` });
}
