// A running daemon reading its config file again (`enclave daemon reload`,
// SIGHUP, systemd's ExecReload): which keys it takes at once, and which
// only a restart can change. A key is live only where every reader looks it
// up at each use (the access guard, the budgets, a stop's grace, a create's
// idle default, the history pruning, a copy's cap); everything built from
// the config at start (the network, cgroups, listeners, the secret store,
// logging) is named for a restart instead. A leaf: pure over two parsed
// configs.
import type { Config } from './schema.js';

/** The keys a reload applies, each replaced whole (its readers see the new value at their next use). */
export const LIVE_KEYS = [
  'access.rules',
  'access.rate_per_minute',
  'access.budget',
  'access.budgets',
  'access.max_sessions_per_uid',
  'sessions.stop_grace_ms',
  'sessions.idle_timeout_s',
  'sessions.keep_history',
  'api.max_copy_mb',
] as const;

export interface ReloadPlan {
  /** Live keys whose value changed: applied. */
  applied: string[];
  /** Changed keys that only a restart applies (the file's new value is not used until then). */
  restartNeeded: string[];
}

type Tree = { [k: string]: unknown };
const isTree = (v: unknown): v is Tree => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Every leaf (a scalar or an array) by its dotted path. */
function leaves(v: unknown, prefix: string, out: Map<string, string>): Map<string, string> {
  if (isTree(v)) for (const [k, x] of Object.entries(v)) leaves(x, prefix ? `${prefix}.${k}` : k, out);
  else out.set(prefix, JSON.stringify(v));
  return out;
}

const liveKeyOf = (path: string) => LIVE_KEYS.find((k) => path === k || path.startsWith(`${k}.`));

/** What changed from `running` to `next`, split into what a reload applies and what waits for a restart. */
export function planReload(running: Config, next: Config): ReloadPlan {
  const before = leaves(running, '', new Map());
  const after = leaves(next, '', new Map());
  const applied = new Set<string>();
  const restartNeeded = new Set<string>();
  for (const path of new Set([...before.keys(), ...after.keys()])) {
    if (before.get(path) === after.get(path)) continue;
    const live = liveKeyOf(path);
    if (live) applied.add(live);
    else restartNeeded.add(path);
  }
  return { applied: [...applied].sort(), restartNeeded: [...restartNeeded].sort() };
}

/** Replace the applied keys of `running` (the object every part of the daemon holds) with `next`'s values. */
export function applyReload(running: Config, next: Config, plan: ReloadPlan): void {
  for (const key of plan.applied) {
    const path = key.split('.');
    const last = path.pop()!;
    let into: unknown = running;
    let from: unknown = next;
    for (const p of path) {
      into = (into as Tree)[p];
      from = (from as Tree)[p];
    }
    if (!isTree(into) || !isTree(from)) throw new Error(`config key ${key}: not an object path in both configs`);
    into[last] = structuredClone(from[last]);
  }
}
