// A session's OOM kills: watched, counted and recorded. The kernel's counter
// (v1 memory.oom_control, v2 memory.events: oom_kill) says how many; its log
// says who (src/isolation/kernelLog.ts). Every kill is recorded in the row
// (session show, /metrics) and told to the kit's listener (the audit trail),
// under either OOM policy; with limits.oom = "session" on v1 the session is
// then ended (on a unified host memory.oom.group kills it in the kernel).
import { watch } from 'node:fs';
import type { Logger } from 'pino';
import { cgroupName, sessionCgroupDirs, v1MemoryDir, type CgroupDir } from '../isolation/cgroups.js';
import { oomKillCount, v2MemoryEvents } from '../isolation/cgroupCounters.js';
import { addon } from '../native/addon.js';
import { bestEffort, type Kit } from './kit.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export class SessionOom {
  /** The v1 eventfd, or inotify on a unified host's memory.events. */
  private watch: { close(): void } | undefined;
  /** The row's count, and how much of it was in the session's earlier cgroups, once read. */
  private recorded: { kills: number; before: number } | undefined;
  /** A check under way, and whether another event came meanwhile. */
  private busy = false;
  private again = false;

  constructor(
    private readonly kit: Kit,
    private readonly id: string,
    private readonly log: Logger,
    /** limits.oom = "session" on v1: end the session (it checks that it still runs). */
    private readonly end: () => Promise<void>,
  ) {}

  private dirs(): CgroupDir[] {
    return sessionCgroupDirs(this.kit.layout, this.kit.config.cgroups.parent, this.id);
  }

  private get name(): string {
    return cgroupName(this.kit.config.cgroups.parent, this.id);
  }

  /**
   * Watch for kills; those made while no daemon watched (a restart) are
   * counted now. `fresh`: a new init in a new cgroup (a create or a start),
   * whose kernel count starts from 0.
   */
  start(fresh: boolean): void {
    if (fresh) {
      bestEffort(this.kit, this.id, () => this.kit.oom.newCgroup(this.id));
      this.recorded = undefined;
    }
    const dirs = this.dirs();
    const onEvent = () => void this.onEvent().catch((e: Error) => this.log.error({ err: e.message }, 'cannot handle an OOM kill'));
    const v1 = v1MemoryDir(dirs);
    const v2 = v2MemoryEvents(dirs);
    try {
      if (v1) this.watch = new (addon().OomWatch)(v1, onEvent);
      else if (v2) this.watch = watch(v2, { persistent: false }, onEvent).on('error', () => undefined);
    } catch (e) {
      // Only the policy needs the watch; kills are also counted when an exec fails, and at stats.
      if (v1 && this.kit.config.limits.oom === 'session') throw e;
      this.log.warn({ err: (e as Error).message }, 'cannot watch the session for OOM kills');
    }
    this.check();
  }

  /** Daemon shutdown: stop watching. */
  close(): void {
    this.watch?.close();
    this.watch = undefined;
  }

  /** The session is released: its kills need not be kept in memory. */
  stop(): void {
    this.close();
    this.recorded = undefined;
    this.kit.kernelLog.forget(this.name);
  }

  /**
   * Compare the kernel's count with the recorded one; new kills are recorded
   * with the last victim the kernel log names, logged, and told to the kit's
   * listener. undefined: the cgroup is gone.
   */
  check(): { kills: number; rose: boolean } | undefined {
    const counted = oomKillCount(this.dirs());
    if (counted === undefined) return undefined;
    const r = (this.recorded ??= this.kit.oom.killsOf(this.id) ?? { kills: 0, before: 0 });
    const recorded = r.kills;
    const now = r.before + counted;
    if (now <= recorded) return { kills: now, rose: false };
    const kill = this.kit.kernelLog.lastKill(this.name);
    const victim = kill && { command: kill.command, pid: kill.pid };
    const at = new Date().toISOString();
    r.kills = now;
    bestEffort(this.kit, this.id, () => this.kit.oom.record(this.id, now, victim, at));
    this.log.warn({ oom_kills: now, victim }, 'out of memory: the kernel killed a process of the session');
    try {
      this.kit.listeners.oom?.({ session: this.id, kills: now, added: now - recorded, victim, at });
    } catch (e) {
      this.log.error({ err: (e as Error).message }, 'cannot report an OOM kill');
    }
    return { kills: now, rose: true };
  }

  /** The host PID of the last process the kernel log says was killed in the session. */
  lastVictimPid(): number | undefined {
    return this.kit.kernelLog.lastKill(this.name)?.pid;
  }

  private async onEvent(): Promise<void> {
    if (this.busy) {
      this.again = true;
      return;
    }
    this.busy = true;
    try {
      do {
        this.again = false;
        // The kernel signals the eventfd before its OOM killer picks a victim, so
        // the kill count may lag the event by a moment: look again briefly.
        let seen: { kills: number; rose: boolean } | undefined;
        for (let i = 0; i < 50; i++) {
          if (i > 0) await sleep(10);
          seen = this.check();
          if (!seen || seen.rose) break; // gone (the session is ending), or recorded
        }
        if (!seen) return;
        if (seen.kills > 0 && this.kit.config.limits.oom === 'session' && v1MemoryDir(this.dirs())) return await this.end();
      } while (this.again);
    } finally {
      this.busy = false;
    }
  }
}
