// OOM kills of sessions, in their rows (migration 013): how many the kernel
// counted, and the last victim its log named (command, host PID) when the
// daemon saw it.
import type Database from 'better-sqlite3';
import { z } from 'zod';

/** The columns, as the session row schema reads them (src/store/sessionRows.ts). */
export const oomColumns = {
  oom_kills: z.number().int(),
  oom_victim: z.string().nullable(),
  oom_victim_pid: z.number().int().nullable(),
  oom_at: z.string().nullable(),
};

export class OomStore {
  private readonly killsOf_: Database.Statement;
  private readonly record_: Database.Statement;
  private readonly newCgroup_: Database.Statement;

  constructor(db: Database.Database) {
    this.killsOf_ = db.prepare('SELECT oom_kills AS kills, oom_kills_before AS before FROM sessions WHERE id = ?');
    this.record_ = db.prepare('UPDATE sessions SET oom_kills = ?, oom_victim = ?, oom_victim_pid = ?, oom_at = ? WHERE id = ?');
    this.newCgroup_ = db.prepare('UPDATE sessions SET oom_kills_before = oom_kills WHERE id = ?');
  }

  /** The OOM kills recorded for a session, and how many of them were in its earlier cgroups (before its last start). */
  killsOf(id: string): { kills: number; before: number } | undefined {
    return this.killsOf_.get(id) as { kills: number; before: number } | undefined;
  }

  /** The session has a new cgroup (created, or started again): the kernel counts from 0 on top of what is recorded. */
  newCgroup(id: string): void {
    this.newCgroup_.run(id);
  }

  /** The kernel counted more kills in the session: the count, and the last victim if its log named one. */
  record(id: string, kills: number, victim: { command: string; pid: number } | undefined, at: string): void {
    this.record_.run(kills, victim?.command ?? null, victim?.pid ?? null, at, id);
  }
}
