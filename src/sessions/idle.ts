// Idle stop: a running session with an idle timeout is stopped once it has
// had no viewer, no exec or attach stream and next to no CPU use (under
// IDLE_CPU of one CPU between two looks) for that long. One look every
// interval over the sessions that have a timeout: a cgroup file read each,
// no process spawned. A session is busy when first seen (after its create,
// its start or a daemon restart), so a restart never stops one at once.
import type { Logger } from 'pino';
import type { SessionRow } from '../store/sessionStore.js';

/** Below this share of one CPU, a session is not working. */
export const IDLE_CPU = 0.01;
const MIN_INTERVAL_MS = 250;
const MAX_INTERVAL_MS = 10_000;

export interface IdleSources {
  /** Running sessions with an idle timeout. */
  candidates(): SessionRow[];
  /** A viewer or an exec/attach stream on it now. */
  inUse(id: string): boolean;
  /** CPU time used so far, ns (undefined: cannot be read). */
  cpuNs(id: string): number | undefined;
  stop(id: string, because: string): Promise<unknown>;
  log: Logger;
}

interface Seen {
  cpuNs: number;
  at: number;
  busyAt: number;
}

export class IdleStop {
  private readonly seen = new Map<string, Seen>();
  private readonly stopping = new Set<string>();
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly o: IdleSources) {}

  /** Look now and then again, more often the shorter the shortest timeout (a fifth of it, within 250 ms..10 s). */
  start(): void {
    const next = this.look();
    this.timer = setTimeout(() => this.start(), next).unref();
  }

  close(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
  }

  /** One look at every candidate; the time until the next. */
  look(now = Date.now()): number {
    const rows = this.o.candidates();
    const ids = new Set(rows.map((r) => r.id));
    for (const id of this.seen.keys()) if (!ids.has(id)) this.seen.delete(id);
    let shortest = Infinity;
    for (const row of rows) {
      const timeoutMs = row.idle_timeout_s! * 1000;
      shortest = Math.min(shortest, timeoutMs);
      const cpu = this.o.cpuNs(row.id);
      if (cpu === undefined || this.stopping.has(row.id)) continue;
      const s = this.seen.get(row.id);
      if (!s) {
        this.seen.set(row.id, { cpuNs: cpu, at: now, busyAt: now });
        continue;
      }
      const working = cpu - s.cpuNs > IDLE_CPU * (now - s.at) * 1e6;
      if (working || this.o.inUse(row.id)) s.busyAt = now;
      s.cpuNs = cpu;
      s.at = now;
      const idleMs = now - s.busyAt;
      if (idleMs >= timeoutMs) this.stopIdle(row, idleMs);
    }
    return Math.max(MIN_INTERVAL_MS, Math.min(MAX_INTERVAL_MS, shortest / 5));
  }

  private stopIdle(row: SessionRow, idleMs: number): void {
    this.seen.delete(row.id);
    this.stopping.add(row.id);
    const because = `idle for ${Math.round(idleMs / 1000)}s (its idle timeout is ${row.idle_timeout_s}s): no viewer, no exec, CPU under ${IDLE_CPU * 100}% of one CPU`;
    this.o.log.child({ session: row.id }).info({ idle_ms: idleMs }, 'stopping an idle session');
    this.o
      .stop(row.id, because)
      .catch((e: Error) => this.o.log.child({ session: row.id }).warn({ err: e.message }, 'cannot stop the idle session'))
      .finally(() => this.stopping.delete(row.id));
  }
}
