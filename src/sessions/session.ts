// One session, as the daemon holds it while it is live: its state changes
// (each checked against the transition table, src/sessions/states.ts), the
// watches on its init, its create or destroy under way, and what it keeps
// asking of its stored plan. Create, destroy and re-adoption run the
// session's steps (src/sessions/steps.ts) through one runner.
import type { Logger } from 'pino';
import { ApiError } from '../vocab/errors.js';
import { checkTransition, type SessionState } from '../vocab/states.js';
import { sessionCgroupDirs } from '../isolation/cgroups.js';
import { parseStoredPlan, PlanError, type SessionPlan } from '../isolation/plan.js';
import { planView } from '../isolation/planView.js';
import { addon, type ExitStatus, type ProcessWatch } from '../native/addon.js';
import { intToIp } from '../network/addressing.js';
import type { SessionRow } from '../store/sessionStore.js';
import { bestEffort, type Kit } from './kit.js';
import { runDown, runUp, StepFailed } from './pipeline.js';
import { startBring, stopFlow } from './stopStart.js';
import { removeStored } from './stored.js';
import type { Usage } from '../vocab/limitTable.js';
import { STEPS, type Bring } from './steps.js';
import { Grace } from './grace.js';
import { agentError, StartFailure, type SessionAgent } from './agent.js';
import { SessionOom } from './oom.js';
import { snapshotSession, type SnapshotConfig } from '../snapshots/sessionSnapshot.js';
import { snapshotExtras } from './snapshotExtras.js';
import type { Writable } from 'node:stream';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** What the daemon keeps asking of a live session's stored plan, parsed once (a stored plan never changes). */
export interface PlanFacts {
  control: string;
  layers: string[];
}

export class Session {
  readonly log: Logger;
  private creating: Promise<unknown> | undefined;
  private destroying: Promise<void> | undefined;
  private stopping: Promise<void> | undefined;
  private exit: { watch: ProcessWatch; exited: Promise<ExitStatus | null> } | undefined;
  /** Its OOM kills: watched, counted, recorded (src/sessions/oom.ts). */
  private readonly oom: SessionOom;
  /** A destroy's SIGTERM to SIGKILL (a later, hastier destroy shortens it). */
  private readonly grace = new Grace();
  /** The exit code an adopted init announced before ending (the daemon is not its parent). */
  ending: number | undefined;
  private facts: PlanFacts | undefined;
  /** A snapshot freezes it: one at a time. */
  private snapshotting = false;

  constructor(
    readonly id: string,
    private readonly kit: Kit,
    /** Called once the session is released: the registry forgets it. */
    private readonly released: (id: string) => void,
  ) {
    this.log = kit.log.child({ session: id });
    this.oom = new SessionOom(kit, id, this.log, () => this.endOutOfMemory());
  }

  // ---- state ---------------------------------------------------------------

  private to(to: SessionState, write: () => void): void {
    const from = this.kit.store.stateOf(this.id);
    if (from !== undefined) checkTransition(this.id, from, to);
    write();
    this.kit.listeners.changed?.(this.id);
  }

  running(pid: number, startTime: string): void {
    this.to('running', () => this.kit.store.markRunning(this.id, pid, startTime));
  }

  settle(state: 'destroyed' | 'failed', lastError: string | undefined, linkPending: boolean): void {
    this.to(state, () => this.kit.store.settle(this.id, state, lastError, linkPending));
  }

  settleStopped(s: { linkPending: boolean; storedBytes?: number | undefined; lastError?: string | undefined }): void {
    this.to('stopped', () => this.kit.store.settleStopped(this.id, s));
  }

  markStopping(because: string): void {
    this.to('stopping', () => this.kit.store.markStopping(this.id, because));
  }

  /** A stop that could not store the files: running again, saying why. */
  stopAbandoned(error: string): void {
    this.to('running', () => this.kit.store.stopAbandoned(this.id, error));
  }

  // ---- watches ---------------------------------------------------------------

  /** Watch the init (a pidfd: a reused PID is refused, and this throws), and the session's OOM kills (`fresh`: a new cgroup, counting from 0). */
  watchInit(pid: number, startTime: string, fresh: boolean): void {
    let resolve!: (s: ExitStatus | null) => void;
    const exited = new Promise<ExitStatus | null>((r) => (resolve = r));
    const Watch = addon().ProcessWatch;
    const watch = new Watch(pid, startTime, (status) => {
      this.exit = undefined;
      resolve(status);
      if (this.destroying) return; // expected
      const unexpected = () => this.onUnexpectedExit(status, pid, startTime).catch((e: Error) => this.log.error({ err: e.message }, 'cannot release a session whose init exited'));
      // During a create, its own undo ends the session if it fails; if it succeeded, the exit is handled after.
      if (this.creating) this.creating.then(unexpected, () => undefined);
      else void unexpected();
    });
    this.exit = { watch, exited };
    this.oom.start(fresh);
  }

  /** Stop talking to and watching for the init's OOM kills (its exit watch ends with it). */
  unwatch(): void {
    this.kit.agents.drop(this.id);
    this.facts = undefined;
    this.ending = undefined;
    this.oom.stop();
  }

  /** Count the session's OOM kills now, recording new ones; undefined once its cgroup is gone. */
  checkOom(): { kills: number; rose: boolean } | undefined {
    return this.oom.check();
  }

  /** SIGKILL the init (the kernel kills its whole PID namespace) and wait for it. */
  async killInit(): Promise<void> {
    if (this.signal(9) || this.exit) await this.exited();
  }

  signal(signo: number): boolean {
    return this.exit?.watch.kill(signo) ?? false;
  }

  exited(): Promise<ExitStatus | null> {
    return this.exit?.exited ?? Promise.resolve(null);
  }

  /** Daemon shutdown: stop watching; the session keeps running. */
  close(): void {
    this.exit?.watch.close();
    this.exit = undefined;
    this.oom.close();
  }

  /** The lease is being given back: its firewall element goes first (queued). */
  unbind(lease: number): void {
    this.kit.bindings.unbind(lease).catch((e: Error) => {
      // Never bound (a create that failed before): nothing to remove.
      if (!/No such file or directory/.test(e.message)) this.log.warn({ address: intToIp(lease), err: e.message }, 'cannot remove the anti-spoofing element of a released address');
    });
  }

  // ---- the stored plan -------------------------------------------------------

  /** The stored plan, parsed. */
  plan(row: SessionRow): SessionPlan {
    if (row.plan === null) {
      throw new ApiError('conflict', `session ${row.id} was created by an older daemon and has no stored plan; exec into it is not possible: destroy and recreate it`);
    }
    try {
      return parseStoredPlan(row.plan, `session ${row.id}`);
    } catch (e) {
      throw new ApiError('internal', e instanceof PlanError ? e.message : String(e));
    }
  }

  planFacts(row: SessionRow): PlanFacts {
    if (!this.facts) {
      const v = planView(this.plan(row));
      this.facts = { control: v.control, layers: [...v.layers] };
    }
    return this.facts;
  }

  /** Where commands of this running session are started: its own init. */
  agent(row: SessionRow): SessionAgent {
    if (row.state !== 'running') throw new ApiError('conflict', `session ${row.id} is ${row.state}, not running`);
    return this.kit.agents.for(row.id, () => this.planFacts(row).control);
  }

  /** Rewrite the running session's secret files from the store (refresh-auth). */
  async refreshAuth(row: SessionRow): Promise<{ refreshed: string[]; missing: string[] }> {
    const agent = this.agent(row);
    try {
      return await this.kit.secrets.refresh(row.id, row.owner_uid ?? 0, agent);
    } catch (e) {
      throw e instanceof StartFailure ? agentError(e, 'refresh its secrets') : e;
    }
  }

  /** Stream a snapshot of the running session: one at a time (each freezes it). */
  async snapshot(row: SessionRow, out: Writable, compress: boolean, withVolumes: boolean): Promise<number> {
    return this.snapshotOnce(async () => {
      const held = await snapshotExtras(this.kit, row, withVolumes);
      try {
        return await snapshotSession(this.snapshotWhere(), row, out, compress, this.log, held.extras);
      } finally {
        held.release();
      }
    });
  }

  /** One snapshot at a time (each freezes the session): a stop's too. */
  async snapshotOnce<T>(take: () => Promise<T>): Promise<T> {
    if (this.snapshotting) throw new ApiError('conflict', `session ${this.id} is already being snapshotted`);
    this.snapshotting = true;
    try {
      return await take();
    } finally {
      this.snapshotting = false;
    }
  }

  snapshotWhere(): SnapshotConfig {
    const c = this.kit.config;
    return { layout: this.kit.layout, cgroupParent: c.cgroups.parent, ids: c.ids, stateDir: c.state_dir, maxEntries: c.tmpfs.root_inodes + c.tmpfs.home_inodes, timeoutMs: c.sessions.snapshot_timeout_ms };
  }

  // ---- work: create, adopt, destroy -----------------------------------------

  private bring(row: SessionRow, end: Bring['end'], adopting = false): Bring {
    return { kit: this.kit, session: this, row, dirs: sessionCgroupDirs(this.kit.layout, this.kit.config.cgroups.parent, this.id, row.init !== null), limits: row.limits, end, adopting };
  }

  /** Every step up (a create, or a start); a failure has undone them (the session ends as `failed` decides) and names its step. */
  create(c: Bring, failed: (step: string, e: unknown) => void, what = 'create'): Promise<void> {
    const work = runUp(STEPS, c, this.log, what, undefined, failed);
    this.creating = work;
    const forget = () => {
      this.creating = undefined;
      if (!this.exit) this.released(this.id);
    };
    work.then(forget, forget);
    return work;
  }

  newBring(init: Omit<Bring, 'kit' | 'session'>): Bring {
    return { ...init, kit: this.kit, session: this };
  }

  /** Re-adopt after a restart: the create pipeline from "watch"; false (and released, ending as `end` says) when the init is gone. */
  async adopt(row: SessionRow, end: Bring['end']): Promise<boolean> {
    try {
      await runUp(STEPS, this.bring(row, end, true), this.log, 're-adoption', 'watch');
      return true;
    } catch {
      this.released(this.id);
      return false;
    }
  }

  /** Undo every step of a session that is not (any more) running, ending it as given. */
  async release(row: SessionRow, end: Bring['end']): Promise<void> {
    await runDown(STEPS, this.bring(row, end), this.log, 'release');
    this.released(this.id);
  }

  /**
   * Destroy the session; with a failure reason it ends 'failed' instead of
   * 'destroyed'. `graceMs`: how long after SIGTERM until SIGKILL (0: SIGKILL
   * at once), by default sessions.stop_grace_ms. A destroy under way is
   * joined, and a hastier one moves its SIGKILL earlier.
   */
  async destroy(failure?: string, graceMs?: number): Promise<void> {
    if (this.creating) await this.creating.catch(() => undefined);
    if (this.stopping) await this.stopping.catch(() => undefined);
    if (this.destroying) {
      if (graceMs !== undefined) this.grace.hurry(graceMs);
      return this.destroying;
    }
    const row = this.kit.store.get(this.id);
    if (!row) throw new ApiError('not_found', `no session ${this.id}`);
    const work = (async () => {
      if (row.state === 'destroyed' || row.state === 'failed') return this.release(row, { state: row.state }); // harmless again; frees anything left
      // On a full disk the intent cannot be recorded: the destroy goes ahead anyway.
      if (row.state !== 'destroying') bestEffort(this.kit, this.id, () => this.to('destroying', () => this.kit.store.markDestroying(this.id, failure)));
      await this.stopInit(row, graceMs ?? this.kit.config.sessions.stop_grace_ms);
      await this.release(this.kit.store.get(this.id)!, failure ? { state: 'failed', error: failure } : { state: 'destroyed' });
      this.kit.counters.destroys++;
      this.log.info('session destroyed');
    })();
    this.destroying = work;
    try {
      await work;
    } finally {
      this.destroying = undefined;
    }
  }

  /** Stop a running session (stopStart.ts); nothing to do if it is stopped. `because`: who asked, or idleness. */
  async stop(because: string): Promise<void> {
    if (this.creating) await this.creating.catch(() => undefined);
    if (this.stopping) return this.stopping;
    if (this.destroying) throw new ApiError('conflict', `session ${this.id} is being destroyed`);
    const row = this.kit.store.get(this.id);
    if (!row) throw new ApiError('not_found', `no session ${this.id}`);
    if (row.state === 'stopped') return;
    if (row.state !== 'running') throw new ApiError('conflict', `session ${this.id} is ${row.state}: only a running session stops`);
    const work = stopFlow(this, this.kit, row, because);
    this.stopping = work;
    try {
      await work;
    } finally {
      this.stopping = undefined;
    }
  }

  /** Start a stopped session from its stored files (stopStart.ts); nothing to do if it runs. */
  async start(admit?: (usage: Usage) => void): Promise<void> {
    if (this.creating) await this.creating.catch(() => undefined);
    if (this.stopping) await this.stopping.catch(() => undefined);
    if (this.destroying) throw new ApiError('conflict', `session ${this.id} is being destroyed`);
    const row = this.kit.store.get(this.id);
    if (!row) throw new ApiError('not_found', `no session ${this.id}`);
    if (row.state === 'running') return;
    if (row.state !== 'stopped') throw new ApiError('conflict', `session ${this.id} is ${row.state}: only a stopped session starts`);
    const c = this.newBring(startBring(this.kit, row, admit));
    const t0 = process.hrtime.bigint();
    try {
      await this.create(
        c,
        (step, e) => {
          if (step !== 'reserve') c.end = { state: 'stopped', error: `start failed: ${e instanceof Error ? e.message : String(e)} [start step ${step}]` };
        },
        'start',
      );
    } catch (e) {
      if (!(e instanceof StepFailed)) throw e;
      if (e.step === 'reserve') throw e.error;
      throw new ApiError(e.error instanceof ApiError ? e.error.code : 'internal', `session ${this.id} not started (it is stopped, its files kept): ${c.end.error ?? ''}`);
    }
    this.running(c.launched!.pid, c.launched!.startTime);
    removeStored(this.kit.config, this.id);
    bestEffort(this.kit, this.id, () => this.kit.store.clearStored(this.id));
    this.kit.counters.starts++;
    this.log.info({ init_pid: c.launched!.pid, ms: Number(process.hrtime.bigint() - t0) / 1e6 }, 'session started');
  }

  /** Whether its init is (still) watched: it runs. */
  initWatched(): boolean {
    return this.exit !== undefined;
  }

  /** Hang up its terminals, SIGTERM the init and SIGKILL it after `graceMs` (grace.ts); record how it ended. */
  private async stopInit(row: SessionRow, graceMs: number): Promise<void> {
    if (!this.exit) return;
    const hangUp = () => {
      try {
        this.kit.agents.for(this.id, () => this.planFacts(row).control).hangUp();
      } catch {
        /* no stored plan (a session of an older daemon): no channel, no terminals of ours */
      }
    };
    const status = await this.grace.end(this, graceMs, hangUp);
    if (status) bestEffort(this.kit, this.id, () => this.kit.store.recordExit(this.id, status.code, status.signal));
  }

  /** Work under way (daemon shutdown waits for it). */
  busy(): Promise<unknown>[] {
    return [this.creating, this.destroying, this.stopping].filter((p): p is Promise<unknown> => p !== undefined);
  }

  // ---- events from the kernel -------------------------------------------------

  private async onUnexpectedExit(exit: ExitStatus | null, pid: number, startTime: string): Promise<void> {
    // An adopted init's announcement may be dispatched just after its exit.
    if (exit === null && this.ending === undefined) await sleep(50);
    const status = exit ?? (this.ending === undefined ? null : { code: this.ending, signal: null });
    const row = this.kit.store.get(this.id);
    // Only while `pid` is still its init: a stop then a start within the wait above is no failure of the new one.
    if (!row || row.state !== 'running' || row.init_pid !== pid || row.init_start_time !== startTime) return;
    // The init ends with 128 + N when signal N from outside the daemon told it to stop the session.
    const told = status && status.code !== null && status.code > 128 && status.code <= 128 + 64 ? status.code - 128 : undefined;
    // Killed by the OOM killer: the kernel log names its PID.
    this.oom.check();
    const oomKilled = status?.signal === 9 && row.init_pid !== null && this.oom.lastVictimPid() === row.init_pid;
    const how =
      status === null
        ? 'exited'
        : oomKilled
          ? 'was killed: out of memory (the kernel\'s OOM killer chose it)'
          : status.signal !== null
          ? `was killed by signal ${status.signal}`
          : told !== undefined
            ? `was told to stop by signal ${told} from outside the daemon`
            : `exited with code ${status.code}`;
    this.log.warn({ status }, 'session init exited unexpectedly');
    if (status) bestEffort(this.kit, this.id, () => this.kit.store.recordExit(this.id, status.code, status.signal));
    await this.release(row, { state: 'failed', error: `the session init ${how}` });
  }

  /** limits.oom = "session": a kill ends the session, if it still runs. */
  private async endOutOfMemory(): Promise<void> {
    const row = this.kit.store.get(this.id);
    if (row?.state !== 'running' || this.destroying) return;
    this.log.warn('session ran out of memory; ending it (limits.oom = "session")');
    await this.destroy('the session ran out of memory (limits.oom = "session")');
  }
}
