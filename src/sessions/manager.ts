// The registry of sessions: finds them, admits work, and hands it to the
// session it is for (src/sessions/session.ts), whose steps do it. What a
// create checks first is src/sessions/admission.ts; start-up, startup.ts.
import type { Writable } from 'node:stream';
import type { CreateSessionRequest, Session as SessionView } from '../api/schemas.js';
import { RunningPorts } from '../network/ports.js';
import type { PublishedPort, SessionRow, SessionStore } from '../store/sessionStore.js';
import { ApiError } from '../vocab/errors.js';
import { admit, build, type CreateExtra } from './admission.js';
import { createKit, type Kit, type KernelListeners, type ManagerOptions } from './kit.js';
import { hostPathInRoot, limitsFor, type Profile } from './planning.js';
import { Session } from './session.js';
import { adoptAll, hostReady, lxcfsFor, poolFor, prepareHost, usrMasksFor, type Startup } from './startup.js';
import { ListViews, NO_CONSOLE, toApi, toListed, type ConsoleInfo, type SessionListed } from './view.js';

export type { ManagerOptions };
export type { ResolvedVolume } from './admission.js';

export class SessionManager {
  private readonly kit: Kit;
  /** Live sessions the daemon holds: created or re-adopted, until released. */
  private readonly live = new Map<string, Session>();
  private readonly views = [new ListViews(), new ListViews()];
  private readonly ports: RunningPorts;
  private readonly startup: Startup = { capacity: undefined, usr: undefined, lxcfs: undefined };
  /** Sessions made ahead, handed out to the creates they fit (src/sessions/pool.ts). */
  private readonly pool: ReturnType<typeof poolFor>;

  constructor(opts: ManagerOptions) {
    this.kit = createKit(
      opts,
      (id, code) => {
        const s = this.live.get(id);
        if (s) s.ending = code;
      },
      (id) => this.live.get(id),
    );
    this.ports = new RunningPorts(opts.store, this.kit.publisher);
    this.startup.usr = usrMasksFor(this.kit);
    this.startup.lxcfs = lxcfsFor(this.kit);
    this.pool = poolFor(this.kit, { make: (req, extra) => this.make(req, 0, extra), discard: (id) => this.destroy(id, undefined, 0) });
  }

  get secrets(): Kit['secrets'] {
    return this.kit.secrets;
  }

  get volumes(): Kit['volumes'] {
    return this.kit.volumes;
  }

  /** What sessions use and their OOM kills, from the kernel (src/sessions/stats.ts). */
  get reports(): Kit['reports'] {
    return this.kit.reports;
  }

  get counters(): Kit['counters'] {
    return this.kit.counters;
  }

  /** The session object of an id, made on first need (a live row, or an ended one a destroy frees again). */
  private session(id: string): Session {
    let s = this.live.get(id);
    if (!s) {
      const released = (gone: string) => {
        this.live.delete(gone);
        this.reports.forget(gone);
      };
      this.live.set(id, (s = new Session(id, this.kit, released)));
    }
    return s;
  }

  /** Re-adopt running sessions, finish interrupted work, sweep leftovers. */
  async start(): Promise<void> {
    this.startup.capacity = await prepareHost(this.kit);
    // Adopted (a restart) or started in the background; creates wait for it.
    void this.startup.lxcfs?.start();
    const adopted = await adoptAll(this.kit, (id) => this.session(id));
    // Members an earlier daemon left (a crash): made for its config, not handed out.
    await this.pool.sweep();
    this.reconnect(adopted);
  }

  /**
   * Start the scan of the host's /usr (the minimal root's masks) in the
   * background. The daemon calls it once it serves, so that the scan's
   * second or so of CPU and I/O never delays start-up or a restart; a
   * create that comes first starts it itself, and every create waits for it.
   */
  scanUsrInBackground(): void {
    this.startup.usr?.start();
    this.pool.start();
  }

  /**
   * Connect to the control sockets of re-adopted inits, 25 at a time between
   * turns of the event loop: with hundreds of sessions this is a plan parse
   * and a connect each, and the API serves meanwhile (an exec that comes
   * first connects its own session's at once).
   */
  private reconnect(rows: SessionRow[]): void {
    for (const row of rows.splice(0, 25)) {
      const s = this.live.get(row.id);
      if (row.plan === null || !s || this.kit.store.stateOf(row.id) !== 'running') continue;
      try {
        s.agent(row).listen();
      } catch (e) {
        s.log.warn({ err: (e as Error).message }, 'cannot connect to the re-adopted init');
      }
    }
    if (rows.length > 0) setImmediate(() => this.reconnect(rows));
    else this.kit.log.debug('control channels of re-adopted sessions connected');
  }

  limitsFor(req: CreateSessionRequest, profile: Profile): ReturnType<typeof limitsFor> {
    return limitsFor(this.kit.config, req, profile);
  }

  /** Admit, reserve and build a session (its steps); a failed step has undone the ones before it and names itself. */
  async create(req: CreateSessionRequest, ownerUid = 0, extra: CreateExtra = {}): Promise<SessionView> {
    const pooled = this.pool.claim(req, ownerUid, extra);
    if (pooled !== undefined) return this.toApi(this.kit.store.get(pooled)!);
    await this.pool.makeRoom();
    return this.toApi(this.kit.store.get(await this.make(req, ownerUid, extra))!);
  }

  /** The cold path: admission, then the steps; a pool member is made by it too. */
  private async make(req: CreateSessionRequest, ownerUid: number, extra: CreateExtra): Promise<string> {
    // Before anything is checked or reserved, so that what follows runs without a break.
    await hostReady(this.kit, this.startup);
    const { id, init } = admit(this.kit, this.startup.capacity, req, ownerUid, extra);
    await build(this.kit, this.session(id), init);
    return id;
  }

  /**
   * Destroy the session; with a failure reason it ends 'failed' instead of
   * 'destroyed'. `graceMs`: SIGTERM to SIGKILL (0: SIGKILL at once); default
   * sessions.stop_grace_ms.
   */
  async destroy(id: string, failure?: string, graceMs?: number): Promise<void> {
    if (!this.live.has(id) && !this.kit.store.get(id)) throw new ApiError('not_found', `no session ${id}`);
    await this.session(id).destroy(failure, graceMs);
  }

  /** Stop a running session, keeping what a start needs; `because`: who asked, or idleness. */
  async stopSession(id: string, because: string): Promise<SessionView> {
    if (!this.kit.store.get(id)) throw new ApiError('not_found', `no session ${id}`);
    await this.session(id).stop(because);
    return this.toApi(this.kit.store.get(id)!);
  }

  /** Start a stopped session from its stored files; `admit` checks the owner's budget in the reservation. */
  async startSession(id: string, admit?: CreateExtra['admit']): Promise<SessionView> {
    if (!this.kit.store.get(id)) throw new ApiError('not_found', `no session ${id}`);
    await hostReady(this.kit, this.startup);
    await this.session(id).start(admit);
    return this.toApi(this.kit.store.get(id)!);
  }

  /** Who hears of what the kernel did in a session (the daemon: its audit trail), and of its state changes (the event stream, the fleet); each added to those before. */
  onKernelEvents(listeners: KernelListeners): void {
    const l = this.kit.listeners;
    const { oom, changed } = l;
    if (listeners.oom) l.oom = oom ? (e) => (oom(e), listeners.oom!(e)) : listeners.oom;
    if (listeners.changed) l.changed = changed ? (id) => (changed(id), listeners.changed!(id)) : listeners.changed;
  }

  async publish(id: string, p: PublishedPort): Promise<void> {
    await this.ports.publish(id, p);
  }

  unpublish(id: string, hostIp: string, hostPort: number): Promise<void> {
    return this.ports.unpublish(id, hostIp, hostPort);
  }

  /** Stream a snapshot of a running session: one at a time per session (each freezes it). */
  async snapshot(id: string, out: Writable, compress: boolean, o: { volumes: boolean } = { volumes: false }): Promise<number> {
    const s = this.live.get(id);
    const row = this.kit.store.get(id);
    if (!row || !s) throw new ApiError(row ? 'conflict' : 'not_found', row ? `session ${id} is ${row.state}, not running` : `no session ${id}`);
    return s.snapshot(row, out, compress, o.volumes);
  }

  // ---- queries ----------------------------------------------------------------

  /** Running sessions created with --console. */
  keptConsoles(): SessionRow[] {
    return this.running().filter((r) => r.keep_console);
  }

  /** Running sessions of tenants (pool members are nobody's). */
  running(): SessionRow[] {
    return this.kit.store.listInStates(['running']).filter((r) => r.pool === null);
  }

  /** The volumes a session mounts, as its create recorded them. */
  volumeMountsOf(id: string): { id: string; target: string; readonly: boolean }[] {
    return this.kit.store.volumeIdsOf(id);
  }

  /** Fleet: what a node keeps on its rows about the fleet (moved away, made for a placement; each session's state for settle). */
  get fleetRows(): SessionStore['fleet'] {
    return this.kit.store.fleet;
  }

  /** Fleet: the ended old copy of a session that moved away, dropped so that a move back makes it here again under its id. */
  dropMovedAway(id: string): boolean {
    return !this.live.has(id) && this.kit.store.fleet.dropMovedAway(id);
  }

  /** A session by id; callers that hold a name resolve it through src/daemon/objects.ts. */
  find(id: string): SessionRow | undefined {
    const row = this.kit.store.get(id);
    return row?.pool === null ? row : undefined; // a pool member is nobody's
  }

  /** An owner's live session of that name, else its most recent one. */
  byName(owner: number, name: string): SessionRow | undefined {
    return this.kit.store.getLiveByName(owner, name) ?? this.kit.store.getLatestByName(owner, name);
  }

  /** Sessions with processes (not stopped, not ended): what health reports. */
  countActive(): number {
    return this.kit.store.countActive() - this.kit.store.pool.live().length;
  }

  countByState(): Map<string, number> {
    return this.kit.store.countByState();
  }

  /** Every session's view (with `node` in fleet mode), each made again only when what it shows changed (view.ts ListViews). */
  list(includeDestroyed: boolean, consoles: ConsoleInfo = NO_CONSOLE, node?: string): SessionView[] {
    const { rows, details } = this.kit.store.listing(includeDestroyed);
    return this.views[includeDestroyed ? 1 : 0]!.list(rows, details, this.viewDeps(), consoles, node);
  }

  /** The list's table only (?format=text): sized for it, no other table read but the leases. */
  /** The list's table rows; `node`: the fleet node they are on (each row says so, as list()'s do). */
  listTable(includeDestroyed: boolean, node?: string): SessionListed[] {
    const deps = this.viewDeps();
    return this.kit.store.listTable(includeDestroyed).map((r) => toListed(r, deps, node));
  }

  /** What list() (but for its consoles) and listTable() show changes only when this does: the tables they read, and the gateway. */
  listVersion(): string {
    return `${this.kit.store.listVersion()}-${this.kit.host?.gateway ?? 'none'}`;
  }

  toApi(row: SessionRow, consoles: ConsoleInfo = NO_CONSOLE): SessionView {
    return toApi(row, this.kit.store.detailsOf(row.id), this.viewDeps(), consoles);
  }

  private viewDeps() {
    return { ids: this.kit.config.ids, gateway: this.kit.host?.gateway };
  }

  /** Where commands of this running session are started: its own init. */
  agentFor(row: SessionRow): ReturnType<Session['agent']> {
    return this.session(row.id).agent(row);
  }

  /** Rewrite a running session's secret files from the store (refresh-auth). */
  refreshAuth(row: SessionRow): ReturnType<Session['refreshAuth']> {
    return this.session(row.id).refreshAuth(row);
  }

  /** The host path where the session's root as created holds `path` (for its login shell). */
  hostPathInRoot(row: SessionRow, path: string): string | undefined {
    return row.plan === null ? undefined : hostPathInRoot(this.session(row.id).plan(row), path);
  }

  /**
   * Stop watching (daemon shutdown): sessions keep running. Work under way
   * gets until the deadline; false if some was still running then (a destroy
   * stuck on a process that cannot die: its intent is in the database).
   */
  async shutdown(deadlineMs: number): Promise<boolean> {
    await this.pool.close();
    const pending = [...this.live.values()].flatMap((s) => s.busy()).map((p) => p.catch(() => undefined));
    let timer: NodeJS.Timeout | undefined;
    const finished = await Promise.race([Promise.all(pending).then(() => true), new Promise<boolean>((r) => (timer = setTimeout(() => r(false), deadlineMs)))]);
    clearTimeout(timer);
    if (!finished) this.kit.log.warn({ pending: pending.length, deadline_ms: deadlineMs }, 'shutdown deadline passed with work under way; exiting anyway (the next start finishes it)');
    this.kit.agents.closeAll();
    for (const s of this.live.values()) s.close();
    this.kit.publisher.closeAll(); // the host ports; their elements stay, and keep forwarding
    this.kit.links.close(); // links still going are in the database: the next start waits for them
    this.startup.lxcfs?.close(); // it keeps serving the sessions; the next start adopts it
    return finished;
  }
}
