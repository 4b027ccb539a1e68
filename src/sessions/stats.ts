// What the kernel counts of sessions, for the API, /metrics and exec's exit
// status: here, their OOM kills.
import { oomKillCount, sessionCgroupDirs } from '../isolation/cgroups.js';
import type { SessionRow } from '../store/sessionStore.js';
import type { Kit } from './kit.js';

export class SessionReports {
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

  /** The OOM kills of each running session `include` accepts (/metrics). */
  oomOfRunning(include: (row: SessionRow) => boolean): { id: string; kills: number }[] {
    return this.kit.store
      .listInStates(['running'])
      .filter(include)
      .map((row) => ({ id: row.id, kills: this.live(row.id)?.checkOom()?.kills ?? row.oom_kills }));
  }

  forget(_id: string): void {}
}
