// Which CPUs a session runs on. Its CPU limit (cpu_percent, a CFS quota) is
// also a count: ceil(percent / 100) CPUs of its cpuset, so that what a
// program asks the kernel (sched_getaffinity: nproc, os.availableParallelism)
// and what lxcfs shows (/proc/cpuinfo, /proc/stat) is what the limit lets it
// use. The quota still bounds the time; the cpuset never gives less of it
// (n CPUs hold n * 100% at most). Each session gets the CPUs the fewest live
// sessions are on when it starts, and keeps them.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { SESSION_ID } from '../vocab/names.js';
import type { CgroupLayout } from './cgroups.js';

/** Pure: "0-2,5" -> [0, 1, 2, 5]. */
export function parseCpuList(text: string): number[] {
  const cpus: number[] = [];
  for (const part of text.trim().split(',').filter(Boolean)) {
    const m = /^(\d+)(?:-(\d+))?$/.exec(part);
    if (!m) throw new Error(`not a CPU list: ${JSON.stringify(text.trim())}`);
    const [a, b] = [Number(m[1]), Number(m[2] ?? m[1])];
    for (let c = a; c <= b; c++) cpus.push(c);
  }
  return [...new Set(cpus)].sort((x, y) => x - y);
}

/** Pure: [0, 1, 2, 5] -> "0-2,5". */
export function formatCpuList(cpus: number[]): string {
  const sorted = [...new Set(cpus)].sort((x, y) => x - y);
  const parts: string[] = [];
  for (let i = 0; i < sorted.length; ) {
    let j = i;
    while (j + 1 < sorted.length && sorted[j + 1] === sorted[j]! + 1) j++;
    parts.push(i === j ? String(sorted[i]) : `${sorted[i]}-${sorted[j]}`);
    i = j + 1;
  }
  return parts.join(',');
}

/** Pure: how many CPUs a CPU limit is: ceil(percent / 100), at least 1, at most what there is. */
export const cpuCount = (percent: number, available: number): number => Math.max(1, Math.min(available, Math.ceil(percent / 100)));

/** Pure: the n CPUs of `allowed` that the fewest sessions are on (`load`: CPU -> sessions), lowest numbers first on a tie. */
export function pickCpus(allowed: number[], load: ReadonlyMap<number, number>, n: number): number[] {
  return [...allowed]
    .sort((a, b) => (load.get(a) ?? 0) - (load.get(b) ?? 0) || a - b)
    .slice(0, n)
    .sort((a, b) => a - b);
}

/** The cpuset files of a hierarchy version: what a cgroup asks for, and what it has. */
const FILES = { 1: { cpus: 'cpuset.cpus', effective: 'cpuset.effective_cpus' }, 2: { cpus: 'cpuset.cpus', effective: 'cpuset.cpus.effective' } } as const;

/**
 * The CPUs of a new session with this CPU limit, as a cpuset list, or
 * undefined where sessions have no cpuset (the controller is not there).
 * Reads the parent's CPUs and every live session's from the kernel: the
 * cgroups are the record, so a crash leaves nothing to reconcile.
 */
export function placeSession(layout: CgroupLayout, parent: string, percent: number): string | undefined {
  const [mount, version] = layout.mode === 'unified' ? [layout.v2, 2 as const] : [layout.v1.get('cpuset'), 1 as const];
  if (!mount) return undefined;
  const dir = join(mount, parent);
  if (!existsSync(join(dir, FILES[version].effective))) return undefined; // v2 without the cpuset controller enabled
  const allowed = parseCpuList(readFileSync(join(dir, FILES[version].effective), 'utf8'));
  const n = cpuCount(percent, allowed.length);
  if (n >= allowed.length) return formatCpuList(allowed);
  const load = new Map<number, number>();
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const file = join(dir, e.name, FILES[version].cpus);
    if (!e.isDirectory() || !SESSION_ID.test(e.name) || !existsSync(file)) continue;
    let cpus: number[];
    try {
      cpus = parseCpuList(readFileSync(file, 'utf8'));
    } catch {
      continue; // a session going away meanwhile
    }
    for (const c of cpus) load.set(c, (load.get(c) ?? 0) + 1);
  }
  return formatCpuList(pickCpus(allowed, load, n));
}
