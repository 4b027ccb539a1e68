// Who the kernel's OOM killer killed: its log (/dev/kmsg) has one line per
// kill naming the victim's memory cgroup, command and PID:
//   oom-kill:constraint=CONSTRAINT_MEMCG,...,oom_memcg=/P/s-x,task_memcg=/P/s-x,task=python3,pid=1234,uid=1000000
// The cgroup's counter says how many; this says who. Read without blocking,
// only when a counter rose: the first read takes the whole ring, later ones
// what is new. Only oom-kill lines are kept, the last one per cgroup, for a
// bounded number of cgroups. Where the log cannot be read (or has rotated the
// line out), the victim is unknown; the count is still the kernel's.
import { closeSync, constants, openSync, readSync } from 'node:fs';

export interface OomKill {
  /** The victim's memory cgroup, as the kernel names it (/PARENT/ID...). */
  memcg: string;
  /** Its command name (comm, at most 15 bytes). */
  command: string;
  /** Its PID on the host. */
  pid: number;
  /** The record's sequence number: later kills have larger ones. */
  seq: number;
}

// The uid is printed signed: a session's host IDs above 2^31 come out negative.
const LINE = /^oom-kill:.*?(?:^|,)task_memcg=([^,]*),task=(.*),pid=(\d+)(?:,uid=-?\d+)?\s*$/;

/** One /dev/kmsg record ("PRIO,SEQ,USEC,FLAGS;MESSAGE"), if it is an oom-kill line. */
export function parseOomRecord(record: string): OomKill | undefined {
  const semi = record.indexOf(';');
  if (semi < 0) return undefined;
  const seq = Number(record.slice(0, semi).split(',')[1]);
  const message = record.slice(semi + 1).split('\n')[0]!;
  const m = LINE.exec(message);
  if (!m || !Number.isSafeInteger(seq)) return undefined;
  return { memcg: m[1]!, command: m[2]!, pid: Number(m[3]), seq };
}

/** At most this many cgroups' last kill are kept (the oldest go first). */
const MAX_KEPT = 4096;
const RECORD_MAX = 16 * 1024;

export class KernelLog {
  private fd: number | undefined;
  private unavailable = false;
  private readonly last = new Map<string, OomKill>();
  private readonly buf = Buffer.alloc(RECORD_MAX);

  constructor(private readonly path = '/dev/kmsg') {}

  /** Read what the log has that was not read yet (never blocks). */
  private drain(): void {
    if (this.unavailable) return;
    if (this.fd === undefined) {
      try {
        this.fd = openSync(this.path, constants.O_RDONLY | constants.O_NONBLOCK);
      } catch {
        this.unavailable = true;
        return;
      }
    }
    for (let records = 0; records < 1_000_000; records++) {
      let n: number;
      try {
        n = readSync(this.fd, this.buf, 0, this.buf.length, null);
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        if (code === 'EPIPE') continue; // records were overwritten before we read them: go on with the next
        if (code !== 'EAGAIN') this.close(true);
        return;
      }
      if (n <= 0) return;
      const kill = parseOomRecord(this.buf.toString('utf8', 0, n));
      if (!kill) continue;
      this.last.delete(kill.memcg);
      this.last.set(kill.memcg, kill);
      if (this.last.size > MAX_KEPT) this.last.delete(this.last.keys().next().value!);
    }
  }

  /** The last kill the log names in the cgroup `memcg` or below it. */
  lastKill(memcg: string): OomKill | undefined {
    this.drain();
    let found: OomKill | undefined;
    for (const k of this.last.values()) {
      if ((k.memcg === memcg || k.memcg.startsWith(`${memcg}/`)) && (!found || k.seq > found.seq)) found = k;
    }
    return found;
  }

  /** The session is gone: its kills need not be kept. */
  forget(memcg: string): void {
    for (const key of [...this.last.keys()]) if (key === memcg || key.startsWith(`${memcg}/`)) this.last.delete(key);
  }

  close(failed = false): void {
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = undefined;
    if (failed) this.unavailable = true;
  }
}
