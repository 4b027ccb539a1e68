// What a running session uses, read from the kernel at each call and never
// stored: its cgroups' counters (CPU time, memory, tasks), the host end of
// its veth (reversed: what the host end received, the session sent), statfs
// of its tmpfs mounts through its init (/proc/PID/root/tmp and /home, the
// layer through the fd the init keeps on it), and the blocks its volumes'
// images hold on the host. CPU % is a difference of two readings of the
// usage counter, at least 250 ms apart.
import { statfsSync, statSync } from 'node:fs';
import type { SessionStats } from '../api/schemas.js';
import { sessionCgroupDirs } from '../isolation/cgroups.js';
import { cgroupUsage } from '../isolation/cgroupCounters.js';
import { ApiError } from '../vocab/errors.js';
import { UPPER_KEEP_FD } from '../native/contract.gen.js';
import { hostIfName } from '../network/addressing.js';
import { linkCounters } from '../network/hostNetwork.js';
import type { SessionRow } from '../store/sessionStore.js';
import { imagePath } from '../volumes/volumeDisk.js';
import type { Kit } from './kit.js';

/** Everything but CPU %, which needs a second reading. */
export type Usage = Omit<SessionStats, 'cpu'> & { cpuUsec: number | null };

/** Bytes a filesystem holds, as statfs counts them; null if it cannot be asked. */
function usedBytes(path: string): number | null {
  try {
    const f = statfsSync(path);
    return (f.blocks - f.bfree) * f.bsize;
  } catch {
    return null;
  }
}

/** Read now. `row` must be running: its init's PID is where its mounts are seen from. */
export function readUsage(kit: Kit, row: SessionRow): Usage {
  const c = cgroupUsage(sessionCgroupDirs(kit.layout, kit.config.cgroups.parent, row.id));
  const pid = row.init_pid;
  const link = row.network === 'bridge' ? linkCounters(hostIfName(row.id)) : null;
  const hostRx = link?.rxBytes ?? null;
  const hostTx = link?.txBytes ?? null;
  const names = kit.store.volumesOf(row.id);
  const volumes = kit.store.volumeIdsOf(row.id).map((v) => {
    let bytes = 0;
    try {
      bytes = statSync(imagePath(kit.config.state_dir, v.id)).blocks * 512;
    } catch {
      /* removed under us: nothing held */
    }
    return { name: names.find((n) => n.target === v.target)?.name ?? v.id, target: v.target, bytes };
  });
  const inside = (path: string) => (pid === null ? null : usedBytes(`/proc/${pid}/root${path}`));
  return {
    id: row.id,
    name: row.name,
    sampled_at: new Date().toISOString(),
    cpuUsec: c.cpuUsec,
    memory: { used_bytes: c.memoryBytes, limit_bytes: c.memoryLimit },
    pids: { current: c.pids, limit: c.pidsLimit },
    network: hostRx === null || hostTx === null ? null : { rx_bytes: hostTx, tx_bytes: hostRx },
    disk: {
      layer_bytes: row.limits.root_mb === undefined || pid === null ? null : usedBytes(`/proc/${pid}/fd/${UPPER_KEEP_FD}`),
      home_bytes: volumes.some((v) => v.target === '/home') ? null : inside('/home'),
      tmp_bytes: inside('/tmp'),
      volumes,
    },
    oom: { kills: row.oom_kills },
  };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const WINDOW_MS = 250;

/**
 * CPU % of a session: its usage counter now against a reading at least
 * WINDOW_MS old, its own earlier one when a caller asked recently (as
 * `stats --watch` does every second), else a fresh one WINDOW_MS earlier.
 */
export class CpuSampler {
  private readonly samples = new Map<string, { t: number; usec: number }[]>();

  async sample(id: string, read: () => number | null): Promise<{ usec: number | null; percent: number | null }> {
    const first = read();
    if (first === null) return { usec: null, percent: null };
    let now = { t: performance.now(), usec: first };
    const kept = (this.samples.get(id) ?? []).filter((s) => now.t - s.t <= 10_000);
    let base = kept.filter((s) => now.t - s.t >= WINDOW_MS).at(-1);
    if (!base) {
      await sleep(WINDOW_MS);
      const again = read();
      if (again === null) return { usec: first, percent: null };
      base = now;
      kept.push(base);
      now = { t: performance.now(), usec: again };
    }
    kept.push(now);
    this.samples.set(id, kept.slice(-4));
    const percent = ((now.usec - base.usec) / ((now.t - base.t) * 1000)) * 100;
    return { usec: now.usec, percent: Math.max(0, Math.round(percent * 10) / 10) };
  }

  forget(id: string): void {
    this.samples.delete(id);
  }
}

/** What sessions use and their OOM kills, for the API, /metrics and exec's exit status. */
export class SessionReports {
  private readonly cpu = new CpuSampler();

  constructor(
    private readonly kit: Kit,
    /** The live session object of an id, if the daemon holds one. */
    private readonly live: (id: string) => { checkOom(): { kills: number } | undefined } | undefined,
  ) {}

  private dirs(id: string) {
    return sessionCgroupDirs(this.kit.layout, this.kit.config.cgroups.parent, id);
  }

  /** The session's OOM kill count now (new ones recorded), over all its cgroups; undefined once its cgroup is gone. */
  oomKillsNow(id: string): number | undefined {
    return this.live(id)?.checkOom()?.kills;
  }

  /**
   * OOM kills in the session since it had `base`: recorded first (with the
   * kernel log's victim), then the count and the last victim; undefined if
   * there were none.
   */
  oomSince(id: string, base: number | undefined): { kills: number; added: number; victim: { command: string | null; pid: number | null } | null; limitMb: number } | undefined {
    if (base === undefined) return undefined;
    const checked = this.live(id)?.checkOom();
    const row = this.kit.store.get(id);
    if (!row) return undefined;
    const kills = checked?.kills ?? row.oom_kills;
    if (kills <= base) return undefined;
    return { kills, added: kills - base, victim: row.oom_at === null ? null : { command: row.oom_victim, pid: row.oom_victim_pid }, limitMb: row.limits.memory_mb };
  }

  /** What a running session uses now; CPU % over at least 250 ms. */
  async stats(row: SessionRow): Promise<SessionStats> {
    if (row.state !== 'running') throw new ApiError('conflict', `session ${row.id} is ${row.state}, not running: it has no usage to show`);
    this.live(row.id)?.checkOom();
    const dirs = this.dirs(row.id);
    const cpu = await this.cpu.sample(row.id, () => cgroupUsage(dirs).cpuUsec);
    const { cpuUsec: _, ...rest } = readUsage(this.kit, this.kit.store.get(row.id) ?? row);
    return { ...rest, cpu: { usage_usec: cpu.usec, percent: cpu.percent } };
  }

  /** What each running session `include` accepts uses now (counters only: /metrics). */
  usageOfRunning(include: (row: SessionRow) => boolean): Usage[] {
    return this.kit.store
      .listInStates(['running'])
      .filter((row) => row.pool === null && include(row))
      .map((row) => readUsage(this.kit, row));
  }

  forget(id: string): void {
    this.cpu.forget(id);
  }
}
