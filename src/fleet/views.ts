// How a session the fleet holds but no node answers for looks in the API:
// the session shape, with a state only the fleet view has. Pending: placed
// on no node yet, its reason as last_error. Unreachable: its node's lease
// lapsed; shown as its node last reported it (it may well still run).
// Lost: its node stayed away past the grace; shown until its owner destroys
// it, with whether that node came back and removed it (fenced).
import type { Session } from '../api/schemas.js';
import type { Desired, Lost, Pending } from './keys.js';
import { sessionSchema } from '../api/schemas.js';

export type Limits = Session['limits'];

/** A session from its request alone: what the fleet knows of one no node has reported. */
function requested(x: { id: string; request: Desired['request']; owner_uid: number; limits: Limits; since: string }, state: Session['state'], why: string): Session {
  const r = x.request;
  return {
    id: x.id,
    name: r.name ?? null,
    state,
    hostname: '',
    init_pid: null,
    id_range: null,
    limits: x.limits,
    profile: r.profile ?? 'workspace',
    network: { mode: r.network ?? 'bridge', address: null, gateway: null, published: r.publish ?? [] },
    console: { keep: r.console ?? false, running: false, viewers: 0 },
    created_at: x.since,
    updated_at: x.since,
    last_error: why,
    owner_uid: x.owner_uid,
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

export function pendingView(p: Pending): Session {
  return requested(p, 'pending', p.reason);
}

/** A session on a node whose lease lapsed, as that node last reported it. */
export function unreachableView(reported: Session, node: string, since: string | undefined): Session {
  const when = since ? ` since ${since}` : '';
  return { ...reported, state: 'unreachable', node, console: { ...reported.console, running: false, viewers: 0 }, last_error: `node ${node} unreachable${when} (its lease lapsed): shown as it last reported the session, which may still run there` };
}

/** The session as reported, or as placed when its node never reported it; undefined when neither is known. */
export function reportedOrPlaced(session: unknown, d: Desired, since: string): Session | undefined {
  const s = sessionSchema.safeParse(session);
  if (s.success) return s.data;
  return d.limits ? { ...requested({ ...d, limits: d.limits, since: d.placed_at }, 'creating', ''), updated_at: since } : undefined;
}

export function lostView(l: Lost): Session | undefined {
  const s = sessionSchema.safeParse(l.session);
  if (!s.success) return undefined;
  const fenced = l.fenced_at ? `; the node came back at ${l.fenced_at} and removed it` : '; if the node comes back it removes it';
  return { ...s.data, state: 'lost', node: l.node, owner_uid: l.owner_uid, init_pid: null, console: { ...s.data.console, running: false, viewers: 0 }, last_error: `node ${l.node} was unreachable past the fleet's grace: declared lost at ${l.since}${fenced}; destroy it to remove this record` };
}
