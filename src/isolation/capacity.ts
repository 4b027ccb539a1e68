// What all sessions together may use: limits on the daemon's parent cgroup
// (every session's cgroup is below it), so the sum of sessions can never
// take the host from its own services, the daemon, or its administrator.
// Each total is the host's less a reserve unless the config names it.
// Disk for volumes is held back the same way (volumeRoom): a volume is
// created or grown only if the state dir's disk keeps its reserve after
// every volume's whole size.
import { readFileSync, writeFileSync } from 'node:fs';
import { availableParallelism, totalmem } from 'node:os';
import { join } from 'node:path';
import type { CgroupLayout } from './cgroups.js';

const MIB = 1024 * 1024;
const PERIOD = 100_000;

export interface CapacityConfig {
  memory_mb: number;
  reserve_memory_mb: number;
  cpu_percent: number;
  reserve_cpu_percent: number;
  pids: number;
  reserve_pids: number;
}

export interface HostSize {
  memoryMb: number;
  cpuPercent: number;
  pids: number;
}

export interface Capacity {
  memoryMb: number;
  cpuPercent: number;
  pids: number;
}

export class CapacityError extends Error {}

export function hostSize(): HostSize {
  const num = (p: string) => Number(readFileSync(p, 'utf8').trim());
  return {
    memoryMb: Math.floor(totalmem() / MIB),
    cpuPercent: availableParallelism() * 100,
    pids: Math.min(num('/proc/sys/kernel/pid_max'), num('/proc/sys/kernel/threads-max')),
  };
}

/** Pure: the totals, or why the config asks for more than the host has beside its reserve. */
export function capacityFor(c: CapacityConfig, host: HostSize): Capacity {
  const pick = (what: string, asked: number, size: number, reserve: number, key: string) => {
    const most = size - reserve;
    if (most < 1) throw new CapacityError(`capacity: the host has ${size} ${what} and capacity.reserve_${key} keeps ${reserve}: nothing is left for sessions`);
    if (asked > most) throw new CapacityError(`capacity.${key} = ${asked} ${what} is more than the host's ${size} less the reserve of ${reserve} (capacity.reserve_${key})`);
    return asked || most;
  };
  return {
    memoryMb: pick('MiB', c.memory_mb, host.memoryMb, c.reserve_memory_mb, 'memory_mb'),
    cpuPercent: pick('% CPU', c.cpu_percent, host.cpuPercent, c.reserve_cpu_percent, 'cpu_percent'),
    pids: pick('tasks', c.pids, host.pids, c.reserve_pids, 'pids'),
  };
}

/** Pure: the files of the parent cgroup that hold the totals, per hierarchy. */
export function capacityFiles(layout: CgroupLayout, parent: string, cap: Capacity): [string, string][] {
  const quota = String(Math.round((cap.cpuPercent / 100) * PERIOD));
  if (layout.mode === 'unified' && layout.v2) {
    const dir = join(layout.v2, parent);
    return [
      [join(dir, 'memory.max'), String(cap.memoryMb * MIB)],
      [join(dir, 'cpu.max'), `${quota} ${PERIOD}`],
      [join(dir, 'pids.max'), String(cap.pids)],
    ];
  }
  const files: [string, string][] = [];
  for (const [ctrl, mount] of layout.v1) {
    const dir = join(mount, parent);
    if (ctrl === 'memory') files.push([join(dir, 'memory.limit_in_bytes'), String(cap.memoryMb * MIB)]);
    if (ctrl === 'cpu') files.push([join(dir, 'cpu.cfs_period_us'), String(PERIOD)], [join(dir, 'cpu.cfs_quota_us'), quota]);
    if (ctrl === 'pids') files.push([join(dir, 'pids.max'), String(cap.pids)]);
  }
  return files;
}

/** Write the totals (at start, after the parents exist). */
export function applyCapacity(layout: CgroupLayout, parent: string, cap: Capacity): void {
  for (const [file, value] of capacityFiles(layout, parent, cap)) {
    try {
      writeFileSync(file, value);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      // v1 refuses a parent CPU quota below a child's (EINVAL), and a memory limit below what is in use (EBUSY).
      const why = code === 'EINVAL' || code === 'EBUSY' ? 'a live session already holds more than that: raise the capacity, or end that session first' : (e as Error).message;
      throw new CapacityError(`cannot set ${file} to ${value} (capacity): ${why}`);
    }
  }
}

/** The disk under the state dir as volumes see it, MiB. */
export interface VolumeDisk {
  /** Free for root (statfs bavail). */
  freeMb: number;
  /** What existing volumes may still grow by: their sizes less what their sparse images hold. */
  promisedMb: number;
  /** volumes.reserve_mb: what must stay free whatever volumes do. */
  reserveMb: number;
}

/** Pure: whether askMb more of volume size fits beside every promise and the reserve. */
export function volumeRoom(disk: VolumeDisk, askMb: number): boolean {
  return disk.freeMb - disk.promisedMb - askMb >= disk.reserveMb;
}
