// GET /metrics in the Prometheus text format.
import { sessionStates } from '../api/schemas.js';
import type { SessionManager } from '../sessions/manager.js';

export function renderMetrics(sessions: SessionManager): string {
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
  );
  return lines.join('\n') + '\n';
}
