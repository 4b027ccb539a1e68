// Exit watches: each running session's init pinned by a pidfd (a reused PID
// is refused), and on a v1 host with limits.oom = "session" an eventfd OOM
// watch on its memory cgroup. They report; the lifecycle decides.
import { addon, type ExitStatus, type OomWatch, type ProcessWatch } from '../native/addon.js';

interface Watched {
  watch: ProcessWatch;
  exited: Promise<ExitStatus | null>;
}

export class ExitWatches {
  private readonly inits = new Map<string, Watched>();
  private readonly ooms = new Map<string, OomWatch>();

  /** Watch a session's init; throws when that PID is not (any more) the recorded process. */
  watchInit(id: string, pid: number, startTime: string, onExit: (status: ExitStatus | null) => void): void {
    let resolve!: (s: ExitStatus | null) => void;
    const exited = new Promise<ExitStatus | null>((r) => (resolve = r));
    const Watch = addon().ProcessWatch;
    const watch = new Watch(pid, startTime, (status) => {
      this.inits.delete(id);
      resolve(status);
      onExit(status);
    });
    this.inits.set(id, { watch, exited });
  }

  watchOom(id: string, memoryDir: string, onOom: () => void): void {
    const Watch = addon().OomWatch;
    this.ooms.set(id, new Watch(memoryDir, onOom));
  }

  /** Signal the init; false when it is not watched or already gone. */
  signal(id: string, signo: number): boolean {
    return this.inits.get(id)?.watch.kill(signo) ?? false;
  }

  /** Resolves when the init has exited (at once if it is not watched). */
  exited(id: string): Promise<ExitStatus | null> {
    return this.inits.get(id)?.exited ?? Promise.resolve(null);
  }

  watching(id: string): boolean {
    return this.inits.has(id);
  }

  closeOom(id: string): void {
    this.ooms.get(id)?.close();
    this.ooms.delete(id);
  }

  /** Daemon shutdown: stop watching, the sessions keep running. */
  closeAll(): void {
    for (const w of this.inits.values()) w.watch.close();
    this.inits.clear();
    for (const w of this.ooms.values()) w.close();
    this.ooms.clear();
  }
}
