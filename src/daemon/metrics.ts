// GET /metrics in the Prometheus text format: sessions by state and the
// daemon's counters for anyone on the socket (counts only), and per running
// session what it uses, read from the kernel at each scrape, for the
// sessions the caller may see (session.show): labelled by the session id
// only, so the label set is bounded by the live sessions.
import { sessionStates } from '../api/schemas.js';
import type { SessionManager } from '../sessions/manager.js';
import type { Usage } from '../sessions/stats.js';
import type { SessionRow } from '../store/sessionStore.js';
import type { AheadCounts } from '../fleet/watched.js';

/** Per-session series: name, type, help, and the value of one session's usage (null: not measured, no sample). */
const PER_SESSION: [string, 'gauge' | 'counter', string, (u: Usage) => number | null][] = [
  ['enclave_session_cpu_seconds_total', 'counter', 'CPU time the session used (cgroup cpu.stat usage_usec).', (u) => (u.cpuUsec === null ? null : u.cpuUsec / 1e6)],
  ['enclave_session_memory_bytes', 'gauge', 'Memory the session uses, tmpfs included (its memory cgroup).', (u) => u.memory.used_bytes],
  ['enclave_session_memory_limit_bytes', 'gauge', 'The session\'s memory limit.', (u) => u.memory.limit_bytes],
  ['enclave_session_pids', 'gauge', 'Tasks in the session.', (u) => u.pids.current],
  ['enclave_session_pids_limit', 'gauge', 'The session\'s tasks limit.', (u) => u.pids.limit],
  ['enclave_session_network_receive_bytes_total', 'counter', 'Bytes the session received on its eth0 (its veth\'s host end sent them).', (u) => u.network?.rx_bytes ?? null],
  ['enclave_session_network_transmit_bytes_total', 'counter', 'Bytes the session sent on its eth0.', (u) => u.network?.tx_bytes ?? null],
  ['enclave_session_layer_bytes', 'gauge', 'Bytes in the session\'s writable root layer (a tmpfs).', (u) => u.disk.layer_bytes],
  ['enclave_session_home_bytes', 'gauge', 'Bytes in the session\'s /home tmpfs.', (u) => u.disk.home_bytes],
  ['enclave_session_tmp_bytes', 'gauge', 'Bytes in the session\'s /tmp tmpfs.', (u) => u.disk.tmp_bytes],
  ['enclave_session_volume_bytes', 'gauge', 'Bytes the images of the session\'s volumes hold on the host (a volume two sessions mount counts in both).', (u) => u.disk.volumes.reduce((n, v) => n + v.bytes, 0)],
  ['enclave_session_oom_kills_total', 'counter', 'Processes of the session the kernel killed out of memory.', (u) => u.oom.kills],
];

/** Fleet mode: the other nodes' lists this node asked for, by answer (src/fleet/lastAnswers.ts). */
export interface PeerListCounts {
  sent: number;
  unchanged: number;
  delta: number;
  /** Read from what the node wrote to etcd (src/fleet/listPublisher.ts): the node was not asked. */
  etcd: number;
}

export function renderMetrics(
  sessions: SessionManager,
  visible: (row: SessionRow) => boolean,
  peerLists?: PeerListCounts,
  listWrites?: { rows: number; deleted: number; failed: number },
  ahead?: Readonly<AheadCounts>,
): string {
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
  if (peerLists) {
    const help = "Other nodes' lists this node read, by answer: etcd (the list the node wrote there, not asked), sent (asked: whole), delta (226: the rows that changed since the copy kept), or unchanged (304: the copy kept was used).";
    lines.push(...labelled('enclave_fleet_peer_lists_total', help, 'answer', { sent: peerLists.sent, delta: peerLists.delta, unchanged: peerLists.unchanged, etcd: peerLists.etcd }));
  }
  if (listWrites) {
    const help = "This node's list in etcd (src/fleet/listPublisher.ts): rows written, rows deleted, runs that failed.";
    lines.push(...labelled('enclave_fleet_list_writes_total', help, 'what', listWrites));
  }
  if (ahead) {
    const help = "Lists made from the fleet's watched copy while etcd confirmed it current (src/fleet/watched.ts ahead()), by how: current (the copy had every write already), unchanged (it caught up after; nothing the list read had changed), again (made again once it caught up), usual (not made so: read the usual way).";
    lines.push(...labelled('enclave_fleet_list_ahead_total', help, 'answer', ahead));
  }
  const usage = sessions.reports.usageOfRunning(visible);
  for (const [name, type, help, value] of PER_SESSION) {
    lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
    for (const u of usage) {
      const v = value(u);
      if (v !== null) lines.push(`${name}{session="${u.id}"} ${v}`);
    }
  }
  return lines.join('\n') + '\n';
}

/** A counter with one label: its help, its type, and a line a value. */
function labelled(name: string, help: string, label: string, values: Record<string, number>): string[] {
  return [`# HELP ${name} ${help}`, `# TYPE ${name} counter`, ...Object.entries(values).map(([k, v]) => `${name}{${label}="${k}"} ${v}`)];
}
