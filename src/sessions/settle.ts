// Final states a full disk would not take yet: the session is already gone
// from the kernel; its row is written as soon as there is room, retried
// every 2 s, so no row stays live holding a slot, a lease or cgroups.
import type { Logger } from 'pino';
import { isDiskFull } from '../store/diskFull.js';
import type { SessionStore } from '../store/sessionStore.js';

interface Unsettled {
  state: 'stopped' | 'destroyed' | 'failed';
  lastError: string | undefined;
  linkPending: boolean;
  storedBytes?: number | undefined;
}

export class Settler {
  private readonly unsettled = new Map<string, Unsettled>();
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly store: SessionStore,
    private readonly stateDir: string,
    private readonly log: Logger,
  ) {}

  later(id: string, u: Unsettled): void {
    this.unsettled.set(id, u);
    this.log.child({ session: id }).error({ state_dir: this.stateDir }, 'the state dir is full: the session is gone from the kernel, its final state is written once there is space');
    this.timer ??= setInterval(() => this.retry(), 2000);
    this.timer.unref();
  }

  private retry(): void {
    for (const [id, u] of this.unsettled) {
      try {
        if (u.state === 'stopped') this.store.settleStopped(id, { linkPending: u.linkPending, storedBytes: u.storedBytes, lastError: u.lastError });
        else this.store.settle(id, u.state, u.lastError, u.linkPending);
        this.unsettled.delete(id);
        this.log.child({ session: id }).info({ state: u.state }, 'final state written');
      } catch (e) {
        if (!isDiskFull(e, this.stateDir)) this.log.child({ session: id }).error({ err: (e as Error).message }, 'cannot write the final state');
        return;
      }
    }
    clearInterval(this.timer);
    this.timer = undefined;
  }
}
