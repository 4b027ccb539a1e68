// GET /metrics in the Prometheus text format: counts for anyone on the
// socket, per-session series for the sessions the caller may see.
import { sessionStates } from '../api/schemas.js';
import type { SessionManager } from '../sessions/manager.js';
import type { SessionRow } from '../store/sessionStore.js';

export function renderMetrics(sessions: SessionManager, visible: (row: SessionRow) => boolean): string {
  const byState = sessions.countByState();
  const counts = new Map<string, number>(sessionStates.map((s) => [s, byState.get(s) ?? 0]));
  const lines = ['# HELP enclave_sessions Sessions by state.', '# TYPE enclave_sessions gauge'];
  for (const [state, n] of counts) lines.push(`enclave_sessions{state="${state}"} ${n}`);
  const c = sessions.counters;
  lines.push(
    '# HELP enclave_session_creates_total Sessions created since the daemon started.',
    '# TYPE enclave_session_creates_total counter',
    `enclave_session_creates_total ${c.creates}`,
    '# HELP enclave_session_create_failures_total Session creates that failed since the daemon started.',
    '# TYPE enclave_session_create_failures_total counter',
    `enclave_session_create_failures_total ${c.createFailures}`,
    '# HELP enclave_session_destroys_total Sessions destroyed since the daemon started.',
    '# TYPE enclave_session_destroys_total counter',
    `enclave_session_destroys_total ${c.destroys}`,
    '# HELP enclave_session_oom_kills_total Processes of the session the kernel killed out of memory.',
    '# TYPE enclave_session_oom_kills_total counter',
  );
  // Per running session the caller may see, labelled by the session id only.
  for (const o of sessions.reports.oomOfRunning(visible)) lines.push(`enclave_session_oom_kills_total{session="${o.id}"} ${o.kills}`);
  return lines.join('\n') + '\n';
}
