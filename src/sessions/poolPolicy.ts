// Which creates a pool member can serve, and how many members to make now.
// Pure: no I/O. A member was made ahead with the config's defaults and no
// owner; what it cannot take after the fact (anything in its stored plan or
// its kernel objects but the owner's row fields) sends a create down the
// cold path, unchanged. What it can take at hand-out: the owner, console
// and idle timeout (row fields), and a name, which as its hostname is also
// set in its UTS namespace, its /etc/hosts and its stored plan (pool.ts).
import { LIMITS } from '../vocab/limitTable.js';
import type { CreateSessionRequest } from '../api/schemas.js';
import type { Config } from '../config/schema.js';

/** The shapes a pool has: profile x network (a system session takes the cold path: its root divides its own cgroups). */
export const POOL_SHAPES = ['workspace_bridge', 'workspace_none', 'strict_bridge', 'strict_none'] as const;
export type PoolShape = (typeof POOL_SHAPES)[number];

const empty = (v: readonly unknown[] | Record<string, unknown> | undefined) => v === undefined || (Array.isArray(v) ? v.length === 0 : Object.keys(v).length === 0);

/** The shape a create asks for, or why a made session cannot serve it (then it is cold). */
export function shapeFor(c: Config, req: CreateSessionRequest, volumes: number): { shape: PoolShape } | { cold: string } {
  const profile = req.profile ?? c.sessions.profile;
  if (profile === 'system') return { cold: 'profile system' };
  const shape: PoolShape = `${profile}_${req.network ?? 'bridge'}`;
  if (c.pool[shape] === 0) return { cold: `no pool for ${shape}` };
  // In its plan (env, secrets, volumes, limits as mount sizes, rlimits and cgroup values), its host ports or its root: made at create.
  if (!empty(req.publish)) return { cold: 'publish' };
  if (volumes > 0 || !empty(req.volumes)) return { cold: 'volumes' };
  if (!empty(req.env)) return { cold: 'env' };
  if (!empty(req.auth) || !empty(req.env_tokens) || !empty(req.secret_users)) return { cold: 'secrets' };
  if (req.ssh_key !== undefined) return { cold: 'ssh_key' };
  if (req.root_mb !== undefined) return { cold: 'root_mb' };
  for (const row of LIMITS) {
    const asked = (req as Record<string, unknown>)[row.key];
    if (asked !== undefined && asked !== c.limits[row.key as keyof Config['limits']]) return { cold: row.key };
  }
  return { shape };
}

/** The request a member of a shape is made from: the defaults, nothing else. */
export function memberRequest(shape: PoolShape): CreateSessionRequest {
  const [profile, network] = shape.split('_') as ['workspace' | 'strict', 'bridge' | 'none'];
  return { profile, network };
}

export interface PoolCount {
  /** Members made and not handed out. */
  ready: number;
  /** Members being made now (any shape). */
  filling: number;
  /** Sessions with processes on the host (pool members too). */
  active: number;
}

/**
 * Whether to make one more member of a shape now: one at a time over all
 * shapes (a refill never runs beside another and so never takes more than
 * a create's worth of the host at once), up to its size, and never the
 * host's last place (sessions.max_sessions): a tenant's cold create finds
 * room while the pool holds a member (Pool.makeRoom gives one back).
 */
export function refillNow(size: number, n: PoolCount, maxSessions: number): boolean {
  return n.filling === 0 && n.ready < size && n.active + 1 < maxSessions;
}
