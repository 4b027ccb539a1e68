// What a session's cgroups count, read back from the kernel: CPU time,
// memory and tasks against their limits, and OOM kills (sessions/stats.ts,
// sessions/oom.ts). Pure reads: a cgroup that is gone reads as undefined.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { descendants, type CgroupDir } from './cgroups.js';

/**
 * CPU time the session's processes used, in nanoseconds: v1 cpuacct.usage,
 * else cgroup2's cpu.stat usage_usec (kept even without the cpu controller);
 * undefined when neither can be read (the cgroup is gone).
 */
export function cpuUsageNs(dirs: CgroupDir[]): number | undefined {
  for (const d of dirs) {
    try {
      if (d.version === 1 && d.controllers.includes('cpuacct')) return Number(readFileSync(join(d.path, 'cpuacct.usage'), 'utf8'));
      if (d.version === 2) {
        const m = /^usage_usec (\d+)$/m.exec(readFileSync(join(d.path, 'cpu.stat'), 'utf8'));
        if (m) return Number(m[1]) * 1000;
      }
    } catch {
      /* this hierarchy cannot say: the next may */
    }
  }
  return undefined;
}

/** A counter file's value, or undefined when it cannot be read (the cgroup is gone). */
function readCounter(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
}

/** A number, or null for "max" and for v1's "unlimited" (page-rounded 2^63). */
function limitValue(text: string | undefined): number | null | undefined {
  if (text === undefined) return undefined;
  const t = text.trim();
  if (t === 'max') return null;
  const n = Number(t);
  return Number.isFinite(n) && n < 2 ** 60 ? n : null;
}

const keyed = (text: string | undefined, key: string): number | undefined => {
  const m = text === undefined ? null : new RegExp(`^${key} (\\d+)$`, 'm').exec(text);
  return m ? Number(m[1]) : undefined;
};

const memoryDir = (dirs: CgroupDir[]) => dirs.find((d) => d.controllers.includes('memory'));

/**
 * OOM kills the kernel counted in the session's memory cgroup (v1
 * memory.oom_control, v2 memory.events: `oom_kill`); undefined when it cannot
 * be read (the cgroup is gone). v1 counts a kill only in the victim's own
 * cgroup (v2's memory.events is hierarchical), so there the sub-cgroups a
 * delegated session made are added; a sub-cgroup removed since takes its
 * count with it (the kernel log still names the kill).
 */
export function oomKillCount(dirs: CgroupDir[]): number | undefined {
  const d = memoryDir(dirs);
  if (!d) return undefined;
  const own = keyed(readCounter(join(d.path, d.version === 1 ? 'memory.oom_control' : 'memory.events')), 'oom_kill');
  if (own === undefined || d.version === 2) return own;
  return descendants(d.path).reduce((n, sub) => n + (keyed(readCounter(join(sub, 'memory.oom_control')), 'oom_kill') ?? 0), own);
}

/** The file whose changes announce an OOM kill on a unified host (inotify on cgroup2 event files). */
export function v2MemoryEvents(dirs: CgroupDir[]): string | undefined {
  const d = memoryDir(dirs);
  return d && d.version === 2 ? join(d.path, 'memory.events') : undefined;
}

export interface CgroupUsage {
  /** CPU time since the cgroup was made (cgroup v2 cpu.stat, present in the controller-less tree of hybrid hosts). */
  cpuUsec: number | null;
  memoryBytes: number | null;
  memoryLimit: number | null;
  pids: number | null;
  pidsLimit: number | null;
}

/** What the session's cgroups count now; null where a hierarchy lacks it (or the cgroup is gone). */
export function cgroupUsage(dirs: CgroupDir[]): CgroupUsage {
  const v2 = dirs.find((d) => d.version === 2);
  const mem = memoryDir(dirs);
  const pids = dirs.find((d) => d.controllers.includes('pids'));
  const at = (d: CgroupDir | undefined, file: string) => (d ? readCounter(join(d.path, file)) : undefined);
  const v1mem = mem?.version === 1;
  return {
    cpuUsec: keyed(at(v2, 'cpu.stat'), 'usage_usec') ?? null,
    memoryBytes: limitValue(at(mem, v1mem ? 'memory.usage_in_bytes' : 'memory.current')) ?? null,
    memoryLimit: limitValue(at(mem, v1mem ? 'memory.limit_in_bytes' : 'memory.max')) ?? null,
    pids: limitValue(at(pids, 'pids.current')) ?? null,
    pidsLimit: limitValue(at(pids, 'pids.max')) ?? null,
  };
}
