// A destroy's end of the session's init: its terminals hung up (an
// interactive bash ignores SIGTERM, and would hold the session for the
// whole grace) and SIGTERM, which the init passes on; SIGKILL once the
// grace runs out, or at once with none. A destroy that joins one under way
// asking for less grace moves the SIGKILL earlier.
import type { Logger } from 'pino';
import type { ExitStatus } from '../native/addon.js';

/** What the grace needs of a session with a watched init. */
export interface Ending {
  readonly log: Logger;
  signal(signo: number): boolean;
  exited(): Promise<ExitStatus | null>;
}

export class Grace {
  /** A destroy waiting out its grace: when it SIGKILLs, and how. */
  private deadline: { at: number; timer: NodeJS.Timeout; kill: () => void } | undefined;

  /** End the init: hang up, SIGTERM, SIGKILL after `graceMs` (0: SIGKILL at once); resolves with its exit. */
  async end(s: Ending, graceMs: number, hangUp: () => void): Promise<ExitStatus | null> {
    const exited = s.exited();
    if (graceMs > 0) {
      hangUp();
      s.signal(15);
      const killed = await new Promise<boolean>((resolve) => {
        const kill = () => resolve(true);
        this.deadline = { at: Date.now() + graceMs, timer: setTimeout(kill, graceMs), kill };
        void exited.then(() => resolve(false));
      });
      clearTimeout(this.deadline?.timer);
      this.deadline = undefined;
      if (!killed) return exited;
      s.log.warn({ grace_ms: graceMs }, 'session did not stop in time; killing it');
    } else s.log.info('destroy with no grace: killing the session at once');
    s.signal(9); // the kernel kills the whole PID namespace with its init
    return exited;
  }

  /** A later destroy asking for less grace moves the SIGKILL earlier (0: now). */
  hurry(graceMs: number): void {
    const d = this.deadline;
    if (!d || Date.now() + graceMs >= d.at) return;
    clearTimeout(d.timer);
    d.at = Date.now() + graceMs;
    d.timer = setTimeout(d.kill, graceMs);
  }
}
