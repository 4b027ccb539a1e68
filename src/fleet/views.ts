// How a session the fleet holds but no node runs yet (pending) looks in the
// API: the session shape, state "pending", its reason as last_error.
import type { Session } from '../api/schemas.js';
import type { Pending } from './keys.js';

export type Limits = Session['limits'];

export function pendingView(p: Pending): Session {
  const r = p.request;
  return {
    id: p.id,
    name: r.name ?? null,
    state: 'pending',
    hostname: '',
    init_pid: null,
    id_range: null,
    limits: p.limits,
    profile: r.profile ?? 'workspace',
    network: { mode: r.network ?? 'bridge', address: null, gateway: null, published: r.publish ?? [] },
    console: { keep: r.console ?? false, running: false, viewers: 0 },
    created_at: p.since,
    updated_at: p.since,
    last_error: p.reason,
    owner_uid: p.owner_uid,
    secrets: { auth: [], env_tokens: [] },
    volumes: [],
    exit: null,
    idle_timeout_s: r.idle_timeout_s ?? null,
    stopped_because: null,
    stored_bytes: null,
    oom: { kills: 0, last_victim: null },
    ssh: r.ssh_key !== undefined,
    node: null,
  };
}
