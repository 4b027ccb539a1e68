// The session lifecycle, the state machine: creating -> running -> stopping
// -> stopped, or failed (with the helper's step and errno in last_error).
// Planning (planning.ts), exit watches (watches.ts), start-up sweeps
// (reconcile.ts) and the API view (view.ts) live beside it.
import { chmodSync, lstatSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { ApiError } from '../vocab/errors.js';
import { SESSION_ID, type CreateSessionRequest, type Limits, type Session } from '../api/schemas.js';
import type { Config } from '../config/schema.js';
import {
  cgroupPids,
  createSessionCgroup,
  ensureParents,
  killCgroup,
  removeCgroup,
  sessionCgroupDirs,
  type CgroupDir,
  v1MemoryDir,
  versionOf,
  type CgroupLayout,
} from '../isolation/cgroups.js';
import { controlPath, opsNamed, parseStoredPlan, PlanError, type SessionPlan } from '../isolation/plan.js';
import { prepareBaseLayer, sweepBaseLayers } from '../isolation/baseLayer.js';
import { scanForMasks, UsrMasks } from '../isolation/usrMasks.js';
import { writableRoot, type Profile } from '../isolation/profiles.js';
import { addon, type ExitStatus } from '../native/addon.js';
import { AddressesExhaustedError, LIVE_STATES, PortTakenError, SessionStore, SlotsExhaustedError, VolumeUnavailableError, type PublishedPort, type SessionRow } from '../store/sessionStore.js';
import { hostIfName, intToIp } from '../network/addressing.js';
import { ensureHostNetwork, hostsFile, linkExists, resolvConf, type HostNetwork } from '../network/hostNetwork.js';
import { AddressBindings } from '../network/firewall.js';
import { LinkReaper } from '../network/linkReaper.js';
import type { PortPublisher } from '../network/publish.js';
import { hostnameFor, newSessionId } from './identity.js';
import { seccompProgram, thermalThrottleMasks } from '../isolation/hardening.js';
import { agentError, Agents, StartFailure, type SessionAgent } from './agent.js';
import { controlPathFor, newrootDir, planFor, sessionDir, type HostFacts } from './planning.js';
import { sweepOrphanCgroups, sweepOrphanLinks } from './reconcile.js';
import { NO_CONSOLE, toApi, type ConsoleInfo, type ViewDeps } from './view.js';
import { ExitWatches } from './watches.js';
import { describeFailure, launchInit } from './launch.js';
import { diskFullMessage, isDiskFull } from '../store/diskFull.js';
import type { CreateSecrets, SessionSecrets } from '../secrets/sessionSecrets.js';
import type { Volumes } from '../volumes/volumes.js';
import { SnapshotError, writeSnapshot } from '../snapshots/snapshot.js';
import { dropSnapshotCgroups, snapshotCgroupsFor } from '../snapshots/snapshotCgroups.js';
import { recoverFromSnapshot } from '../snapshots/recover.js';
import { rangeForSlot } from '../isolation/idRange.js';
import { LIMITS, type Usage } from '../vocab/limits.js';
import { applyCapacity, capacityFor, hostSize, type Capacity } from '../isolation/capacity.js';

/** A volume a create mounts, resolved to its id by the caller (which checked its owner). */
export interface ResolvedVolume {
  id: string;
  name: string;
  target: string;
  readonly: boolean;
}
import type { Writable } from 'node:stream';

export interface ManagerOptions {
  config: Config;
  secrets: SessionSecrets;
  store: SessionStore;
  layout: CgroupLayout;
  log: Logger;
  publisher: PortPublisher;
  volumes: Volumes;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export class SessionManager {
  private readonly config: Config;
  private readonly store: SessionStore;
  private readonly layout: CgroupLayout;
  private readonly log: Logger;
  private readonly publisher: PortPublisher;
  readonly secrets: SessionSecrets;
  readonly volumes: Volumes;
  private hostNet: HostNetwork | undefined;
  private readonly watches = new ExitWatches();
  private readonly creating = new Map<string, Promise<unknown>>();
  private readonly destroying = new Map<string, Promise<void>>();
  /** Found on the host at start, the same for every session's plan. */
  private host: HostFacts | undefined;
  /** What all sessions together may use (set on the parent cgroup at start). */
  private capacity: Capacity | undefined;
  /** The scan of the host's /usr the minimal root's masks come from (sessions.rootfs = "minimal"): awaited by creates. */
  private readonly usrMasks: UsrMasks | undefined;
  private readonly agents: Agents;
  /** Exit codes inits announced before ending (for the ones this daemon cannot wait for). */
  private readonly ending = new Map<string, number>();
  readonly counters = { creates: 0, createFailures: 0, destroys: 0 };
  /** Links of ended sessions the kernel is still removing; their leases are held until then. */
  private readonly links: LinkReaper;
  /** The anti-spoofing element of each lease. */
  private readonly bindings: AddressBindings;

  /** Running sessions created with --console. */
  keptConsoles(): SessionRow[] {
    return this.store.listInStates(['running']).filter((r) => r.keep_console);
  }

  constructor(opts: ManagerOptions) {
    this.config = opts.config;
    this.store = opts.store;
    this.layout = opts.layout;
    this.log = opts.log;
    this.publisher = opts.publisher;
    this.secrets = opts.secrets;
    this.volumes = opts.volumes;
    this.agents = new Agents(opts.log, (id, code) => this.ending.set(id, code));
    this.links = new LinkReaper({ log: opts.log, gone: (id) => this.linkGone(id) });
    this.bindings = new AddressBindings(opts.config.network.table);
    if (opts.config.sessions.rootfs === 'minimal') {
      this.usrMasks = new UsrMasks(scanForMasks, {
        found: (masks, widened, ms) => {
          this.log.info({ masks, ms: Math.round(ms) }, 'found what sessions must not see of the host\'s /usr');
          if (widened.length > 0) this.log.warn({ widened }, 'masked whole directories of the host\'s /usr for names a session plan cannot carry');
        },
        failed: (e) => this.log.error({ err: e.message }, 'cannot list what sessions must not see of the host\'s /usr: creates fail until a scan succeeds (each create tries again)'),
      });
    }
  }

  /**
   * Start the scan of the host's /usr (the minimal root's masks) in the
   * background. The daemon calls it once it serves, so that the scan's
   * second or so of CPU and I/O never delays start-up or a restart; a
   * create that comes first starts it itself, and every create waits for it.
   */
  scanUsrInBackground(): void {
    this.usrMasks?.start();
  }

  /** The lease is being given back: its firewall element goes first (queued, see AddressBindings). */
  private unbind(id: string, lease: number): void {
    this.bindings.unbind(lease).catch((e: Error) => {
      // Never bound (a create that failed before): nothing to remove.
      if (!/No such file or directory/.test(e.message)) this.log.child({ session: id }).warn({ address: intToIp(lease), err: e.message }, 'cannot remove the anti-spoofing element of a released address');
    });
  }

  /** The link is gone: its address is free. False (tried again) while a full disk refuses the write. */
  private linkGone(id: string): boolean {
    try {
      const lease = this.store.leaseOf(id);
      if (lease !== undefined) this.unbind(id, lease);
      this.store.linkGone(id);
      this.pruneHistory(); // a row whose link was still going was kept past keep_history
      return true;
    } catch (e) {
      if (!isDiskFull(e, this.config.state_dir)) this.logFailure(id, 'cannot release the address of a session whose link is gone', e as Error);
      return false;
    }
  }

  private sessionDir(id: string): string {
    return sessionDir(this.config, id);
  }

  /** Directory the helpers bind each session's root onto (in their own mount ns). */
  get newrootDir(): string {
    return newrootDir(this.config);
  }

  /** Where the minimal root's base layers live. */
  get rootfsDir(): string {
    return join(this.config.state_dir, 'rootfs');
  }

  /** Base layers that neither this start nor a live session's plan uses (an overlay's lower must not change under it). */
  private sweepBaseLayers(live: SessionRow[]): void {
    const inUse = new Set<string>(this.host?.baseLayer ? [this.host.baseLayer] : []);
    for (const row of live) {
      if (!row.plan) continue;
      try {
        for (const source of this.planFacts(row).layers) inUse.add(source);
      } catch {
        return; // a plan we cannot read: keep every base rather than guess
      }
    }
    for (const p of sweepBaseLayers(this.rootfsDir, inUse)) this.log.info({ path: p }, 'removed an unused session base layer');
  }

  // ---- start-up ---------------------------------------------------------

  /** Re-adopt running sessions, finish interrupted work, sweep leftovers. */
  async start(): Promise<void> {
    mkdirSync(this.newrootDir, { recursive: true, mode: 0o700 });
    ensureParents(this.layout, this.config.cgroups.parent);
    this.capacity = capacityFor(this.config.capacity, hostSize());
    applyCapacity(this.layout, this.config.cgroups.parent, this.capacity);
    this.log.info({ capacity: this.capacity }, 'what all sessions together may use (the parent cgroup)');
    // sun_path holds 108 bytes: refuse a state dir whose control sockets cannot be named.
    const probe = controlPathFor(this.config, 's-0000000000');
    if (Buffer.byteLength(probe) > 107) throw new Error(`state_dir ${this.config.state_dir} is too long: control socket paths like ${probe} exceed 107 bytes`);
    await this.volumes.recover();
    const net = (this.hostNet = await ensureHostNetwork(this.config.network, this.store.leasedAddresses()));
    const base = this.config.sessions.rootfs === 'minimal' ? prepareBaseLayer(this.rootfsDir, this.config.ids.size) : undefined;
    if (base?.built) this.log.info({ path: base.path }, 'built the session base layer');
    this.host = { seccomp: seccompProgram(), sysMasks: thermalThrottleMasks(), bridge: net.bridge, mtu: net.mtu, gateway: net.subnet.gateway, baseLayer: base?.path };
    const pending: Promise<void>[] = [];
    const adopted: SessionRow[] = [];
    const live = this.store.listInStates(LIVE_STATES);
    for (const row of live) {
      const log = this.log.child({ session: row.id });
      if (row.state === 'creating') {
        log.warn('daemon stopped while this session was being created; cleaning up');
        pending.push(this.release(row, 'failed', 'the daemon stopped while the session was being created'));
        continue;
      }
      if (this.adopt(row)) {
        log.info({ init_pid: row.init_pid }, 're-adopted running session');
        if (row.state === 'running') {
          adopted.push(row);
          pending.push(recoverFromSnapshot(this.layout, this.config.cgroups.parent, row.id, log));
          pending.push(this.publishPorts(row).catch((e: Error) => log.error({ err: e.message }, 'cannot re-publish ports')));
        }
        if (row.state === 'stopping') pending.push(this.destroy(row.id, row.stop_reason ?? undefined).then(() => undefined));
      } else if (row.state === 'stopping') {
        // A destroy was under way when the daemon died: finish it as asked.
        log.info('the daemon stopped during a destroy; finishing it');
        pending.push(this.release(row, row.stop_reason ? 'failed' : 'stopped', row.stop_reason ?? undefined));
      } else {
        log.warn({ init_pid: row.init_pid }, 'session init exited while the daemon was not running');
        pending.push(this.release(row, 'failed', 'the session init exited while the daemon was not running'));
      }
    }
    await Promise.all(pending);
    this.sweepBaseLayers(live); // as read at the start: a layer a session used then is kept
    this.pruneHistory();
    sweepOrphanCgroups(this.layout, this.config.cgroups.parent, this.store, this.log);
    sweepOrphanLinks(this.config.network.bridge, this.store, this.log);
    this.reconnect(adopted);
    // Links a previous daemon was still waiting for (it died first).
    for (const { id, ref } of this.store.endedWithLinks()) {
      if (ref === hostIfName(id)) this.links.retire(id, ref);
      else {
        this.log.child({ session: id }).warn({ kind: 'veth', ref }, 'ignored a kernel object this daemon does not own');
        this.linkGone(id);
      }
    }
  }

  private async publishPorts(row: SessionRow): Promise<void> {
    const lease = this.store.leaseOf(row.id);
    const ports = this.store.portsOf(row.id);
    if (lease === undefined || ports.length === 0) return;
    await this.publisher.publish(row.id, intToIp(lease), ports);
  }

  /** Publish one more port of a running session: recorded first, then listened on; the record goes if the listen fails. */
  async publish(id: string, p: PublishedPort): Promise<void> {
    const row = this.running(id);
    const lease = this.store.leaseOf(id);
    if (row.network !== 'bridge' || lease === undefined) throw new ApiError('invalid_request', `session ${id} has no network (created with --network none): nothing to publish to`, 'publish');
    try {
      this.store.addPort(id, p);
    } catch (e) {
      if (e instanceof PortTakenError) throw new ApiError('conflict', e.message, 'publish');
      throw e;
    }
    try {
      await this.publisher.publish(id, intToIp(lease), [p]);
    } catch (e) {
      this.store.removePort(id, p.host_ip, p.host_port);
      const code = (e as NodeJS.ErrnoException).code;
      throw new ApiError('conflict', `cannot publish ${p.host_ip}:${p.host_port}: ${code === 'EADDRINUSE' ? 'the host port is already in use' : (e as Error).message}`, 'publish');
    }
    // Released while we listened: its ports went with it, so this one goes too.
    if (this.store.get(id)?.state !== 'running') {
      this.publisher.unpublishOne(id, p);
      throw new ApiError('conflict', `session ${id} ended while the port was being published`);
    }
  }

  /** Stop publishing one host address and port of a session. */
  unpublish(id: string, hostIp: string, hostPort: number): void {
    this.running(id);
    if (!this.store.portsOf(id).some((p) => p.host_ip === hostIp && p.host_port === hostPort)) {
      throw new ApiError('not_found', `session ${id} does not publish ${hostIp}:${hostPort}`);
    }
    this.publisher.unpublishOne(id, { host_ip: hostIp, host_port: hostPort });
    this.store.removePort(id, hostIp, hostPort);
  }

  /**
   * Stream a snapshot of a running session's writable layer and /home into
   * out (snapshots/snapshot.ts): the bytes written. One at a time per
   * session: each freezes it.
   */
  async snapshot(id: string, out: Writable, compress: boolean): Promise<number> {
    const row = this.running(id);
    if (this.snapshotting.has(id)) throw new ApiError('conflict', `session ${id} is already being snapshotted`);
    const parent = this.config.cgroups.parent;
    const v2 = sessionCgroupDirs(this.layout, parent, id).find((d) => d.version === 2);
    if (!v2 || row.init_pid === null || row.plan === null || row.id_slot === null) throw new ApiError('conflict', `session ${id} cannot be snapshotted on this host (it needs cgroup v2 for the freeze)`);
    const log = this.log.child({ session: id });
    const range = rangeForSlot(this.config.ids, row.id_slot);
    const tmp = join(this.config.state_dir, 'tmp');
    mkdirSync(tmp, { recursive: true, mode: 0o700 });
    this.snapshotting.add(id);
    const t0 = process.hrtime.bigint();
    try {
      const bytes = await writeSnapshot(
        {
          id,
          initPid: row.init_pid,
          plan: parseStoredPlan(row.plan, `session ${id}`),
          hostBase: range.hostBase,
          idSize: range.size,
          cgroupV2: v2.path,
          cgroups: snapshotCgroupsFor(this.layout, parent, id),
          maxEntries: this.config.tmpfs.root_inodes + this.config.tmpfs.home_inodes,
          timeoutMs: this.config.sessions.snapshot_timeout_ms,
          tmpDir: tmp,
          log,
        },
        out,
        compress,
      );
      log.info({ bytes, compress, ms: Number(process.hrtime.bigint() - t0) / 1e6 }, 'snapshot written');
      return bytes;
    } catch (e) {
      if (!(e instanceof SnapshotError)) throw e;
      log.warn({ err: e.message, ms: Number(process.hrtime.bigint() - t0) / 1e6 }, 'snapshot failed');
      throw new ApiError('conflict', `snapshot of ${id}: ${e.message}`);
    } finally {
      this.snapshotting.delete(id);
    }
  }

  private readonly snapshotting = new Set<string>();

  private running(id: string): SessionRow {
    const row = this.store.get(id);
    if (!row) throw new ApiError('not_found', `no session ${id}`);
    if (row.state !== 'running') throw new ApiError('conflict', `session ${id} is ${row.state}, not running`);
    return row;
  }

  private adopt(row: SessionRow): boolean {
    if (row.init_pid === null || row.init_start_time === null) return false;
    try {
      this.watch(row.id, row.init_pid, row.init_start_time);
      this.watchOom(row.id);
      // Not our child: its exit status would be lost, so hear it from the init itself (reconnect()).
      return true;
    } catch {
      return false;
    }
  }

  /**
   * Connect to the control sockets of re-adopted inits, 25 at a time between
   * turns of the event loop: with hundreds of sessions this is a plan parse
   * and a connect each, and the API serves meanwhile (an exec that comes
   * first connects its own session's at once).
   */
  private reconnect(rows: SessionRow[]): void {
    const batch = rows.splice(0, 25);
    for (const row of batch) {
      if (row.plan === null || this.store.stateOf(row.id) !== 'running' || !this.watches.watching(row.id)) continue;
      try {
        this.agentFor(row).listen();
      } catch (e) {
        this.log.child({ session: row.id }).warn({ err: (e as Error).message }, 'cannot connect to the re-adopted init');
      }
    }
    if (rows.length > 0) setImmediate(() => this.reconnect(rows));
    else this.log.debug('control channels of re-adopted sessions connected');
  }

  private watch(id: string, pid: number, startTime: string): void {
    this.watches.watchInit(id, pid, startTime, (status) => {
      if (!this.destroying.has(id)) this.onUnexpectedExit(id, status).catch((e: Error) => this.logFailure(id, 'cannot release a session whose init exited', e));
    });
  }

  /** limits.oom = "session" on a v1 host: end the session on its first OOM kill. */
  private watchOom(id: string): void {
    if (this.config.limits.oom !== 'session') return;
    const dir = v1MemoryDir(sessionCgroupDirs(this.layout, this.config.cgroups.parent, id));
    if (!dir) return; // v2: memory.oom.group does it in the kernel
    this.watches.watchOom(id, dir, () => this.onOom(id, dir).catch((e: Error) => this.logFailure(id, 'cannot end a session after its OOM kill', e)));
  }

  /** Work started by a kernel event has no caller to answer: it is logged, never left unhandled. */
  private logFailure(id: string, what: string, e: Error): void {
    this.log.child({ session: id }).error({ err: e.message }, what);
  }

  private async onOom(id: string, dir: string): Promise<void> {
    // The kernel signals the eventfd before its OOM killer picks a victim, so
    // the kill count may lag the event by a moment: look again briefly.
    let kills = 0;
    for (let i = 0; i < 50 && kills === 0; i++) {
      if (i > 0) await sleep(10);
      try {
        kills = Number(/^oom_kill (\d+)/m.exec(readFileSync(join(dir, 'memory.oom_control'), 'utf8'))?.[1] ?? 0);
      } catch {
        return; // the cgroup is gone: the session is already ending
      }
    }
    const row = this.store.get(id);
    if (kills === 0 || row?.state !== 'running' || this.destroying.has(id)) return;
    this.log.child({ session: id }).warn({ oom_kills: kills }, 'session ran out of memory; ending it (limits.oom = "session")');
    await this.destroy(id, 'the session ran out of memory (limits.oom = "session")');
  }

  private async onUnexpectedExit(id: string, exit: ExitStatus | null): Promise<void> {
    // An adopted init's announcement may be dispatched just after its exit.
    if (exit === null && !this.ending.has(id)) await sleep(50);
    const announced = this.ending.get(id);
    this.ending.delete(id);
    const status = exit ?? (announced === undefined ? null : { code: announced, signal: null });
    const row = this.store.get(id);
    if (!row || row.state !== 'running') return;
    // The init ends with 128 + N when signal N from outside the daemon told it to stop the session.
    const told = status && status.code !== null && status.code > 128 && status.code <= 128 + 64 ? status.code - 128 : undefined;
    const how =
      status === null
        ? 'exited'
        : status.signal !== null
          ? `was killed by signal ${status.signal}`
          : told !== undefined
            ? `was told to stop by signal ${told} from outside the daemon`
            : `exited with code ${status.code}`;
    this.log.child({ session: id }).warn({ status }, 'session init exited unexpectedly');
    if (status) this.bestEffort(id, () => this.store.recordExit(id, status.code, status.signal));
    await this.release(row, 'failed', `the session init ${how}`);
  }

  // ---- create -------------------------------------------------------------

  limitsFor(req: CreateSessionRequest, profile: Profile): Limits {
    const c = this.config;
    // A writable root needs layers: the host's own "/" stays read-only.
    const writable = writableRoot(profile) && c.sessions.rootfs !== '/';
    if (req.root_mb !== undefined && !writable) {
      throw new ApiError('invalid_request', `root_mb needs a writable root: profile "workspace" and a sessions.rootfs other than "/" (this session: profile "${profile}", rootfs "${c.sessions.rootfs}")`, 'root_mb');
    }
    const limits: Record<string, number> = {};
    for (const row of LIMITS) if (!('writableRootOnly' in row) || writable) limits[row.key] = req[row.key] ?? c.limits[row.key];
    return limits as Limits;
  }

  /**
   * A read-only root cannot grow mount points: there a volume goes on /home
   * (instead of its tmpfs), under another volume, or on a directory the root
   * already has (/srv, /opt, /mnt in the minimal root). A writable root makes
   * any missing directory in its layer.
   */
  private checkVolumeTargets(volumes: { name: string; target: string }[], limits: Limits): void {
    if (limits.root_mb !== undefined) return;
    const rootfs = this.config.sessions.rootfs === 'minimal' ? this.host!.baseLayer! : this.config.sessions.rootfs;
    for (const v of volumes) {
      if (v.target === '/home' || volumes.some((o) => v.target.startsWith(`${o.target}/`))) continue;
      let dir = false;
      try {
        dir = lstatSync(join(rootfs, v.target)).isDirectory();
      } catch {
        /* missing */
      }
      if (!dir) throw new ApiError('invalid_request', `volume ${v.name}: ${v.target} is not a directory of this session's read-only root (a strict session, or sessions.rootfs "/"): use /home, /srv, /opt or /mnt, or a workspace session`, 'volumes');
    }
  }

  /** The minimal root's masks in the host facts before any plan is made: a create never proceeds without them. */
  private async usrMasksReady(): Promise<void> {
    if (!this.usrMasks || this.host?.usrMasks) return;
    let masks: readonly string[];
    try {
      masks = await this.usrMasks.list();
    } catch (e) {
      throw new ApiError('confinement_failed', `session not created: the daemon could not list what sessions must not see of the host's /usr (${(e as Error).message}); the next create tries again`);
    }
    this.host = { ...this.host!, usrMasks: masks };
  }

  /**
   * `volumes`: the request's, resolved to the volumes they name (the caller
   * checked each one's owner); `admit`: the owner's budget, checked against
   * its live sessions in the transaction that records this one.
   */
  async create(req: CreateSessionRequest, ownerUid = 0, extra: { volumes?: ResolvedVolume[]; admit?: (usage: Usage) => void } = {}): Promise<Session> {
    // Before anything is checked or reserved, so that what follows runs without a break, as before.
    await this.usrMasksReady();
    if (this.store.countLive() >= this.config.sessions.max_sessions) {
      throw new ApiError('exhausted', `the daemon already runs ${this.config.sessions.max_sessions} sessions (sessions.max_sessions)`);
    }
    const name = req.name ?? null;
    if (name && this.store.getLiveByName(ownerUid, name)) throw new ApiError('conflict', `you already have a live session named '${name}'`, 'name');
    const network = req.network ?? 'bridge';
    if (network === 'none' && req.publish?.length) throw new ApiError('invalid_request', 'publish needs network "bridge"', 'publish');
    // Read before anything exists: a missing secret creates nothing.
    const secrets = this.secrets.forCreate(req, ownerUid);
    const id = newSessionId();
    const profile = req.profile ?? this.config.sessions.profile;
    const limits = this.limitsFor(req, profile);
    // A v1 kernel refuses a session CPU quota above its parent's (EINVAL): say so before anything exists.
    const most = this.capacity?.cpuPercent;
    if (most !== undefined && limits.cpu_percent > most) {
      throw new ApiError('invalid_request', `cpu_percent ${limits.cpu_percent} is more than all sessions together may use (${most}, capacity.cpu_percent)`, 'cpu_percent');
    }
    const volumes = extra.volumes ?? [];
    this.checkVolumeTargets(volumes, limits);
    const dirs = sessionCgroupDirs(this.layout, this.config.cgroups.parent, id);
    const subnet = this.hostNet!.subnet;
    let row: SessionRow;
    try {
      row = this.store.insertCreating({
        id,
        name,
        hostname: hostnameFor(id, name),
        limits,
        slots: this.config.ids.slots,
        objects: [
          ...dirs.map((d) => ({ kind: 'cgroup' as const, ref: d.path })),
          ...(network === 'bridge' ? [{ kind: 'veth' as const, ref: hostIfName(id) }] : []),
        ],
        addresses: network === 'bridge' ? { first: subnet.first, last: subnet.last } : undefined,
        publish: req.publish ?? [],
        keepConsole: req.console ?? false,
        ownerUid,
        profile,
        volumes,
        admit: extra.admit,
      });
    } catch (e) {
      if (isDiskFull(e, this.config.state_dir)) throw new ApiError('insufficient_storage', `session not created: ${diskFullMessage(this.config.state_dir)}`);
      if (e instanceof SlotsExhaustedError || e instanceof AddressesExhaustedError) throw new ApiError('exhausted', e.message);
      if (e instanceof PortTakenError) throw new ApiError('conflict', e.message, 'publish');
      if (e instanceof VolumeUnavailableError) throw new ApiError('conflict', e.message, 'volumes');
      if (e instanceof Error && /UNIQUE constraint failed: sessions\.owner_uid, sessions\.name/.test(e.message)) {
        throw new ApiError('conflict', `you already have a live session named '${name}'`, 'name');
      }
      throw e;
    }
    this.secrets.store.recordHeld(id, secrets.held);
    const work = this.bringUp(row, dirs, limits, secrets);
    this.creating.set(id, work);
    try {
      return await work;
    } finally {
      this.creating.delete(id);
    }
  }

  private async bringUp(row: SessionRow, dirs: CgroupDir[], limits: Limits, secrets: CreateSecrets): Promise<Session> {
    const log = this.log.child({ session: row.id });
    const t0 = process.hrtime.bigint();
    try {
      for (const dir of dirs) createSessionCgroup(dir, limits, this.config.limits.oom);
      const c = this.config;
      const lease = this.store.leaseOf(row.id);
      if (lease !== undefined) {
        // Before the link exists: a session without its element could send nothing at all.
        await this.bindings.bind(lease).catch((e: Error) => {
          throw new ApiError('confinement_failed', `session ${row.id} could not be confined: cannot bind its address ${intToIp(lease)} in the firewall: ${e.message.trim()}`);
        });
      }
      const files = this.writeSessionFiles(row, lease);
      const { files: secretFiles, env, envFiles } = secrets.delivery;
      const injected = { files: secretFiles.map((f) => ({ path: f.path, mode: f.mode })), env, envFiles };
      const volumes = [];
      for (const v of this.store.volumeIdsOf(row.id)) volumes.push({ source: await this.volumes.hostMount(v.id), target: v.target, readonly: v.readonly });
      const plan = planFor(row, limits, c, this.host!, { cgroups: dirs.map((d) => d.path), lease, files, injected, profile: row.profile, volumes });
      // Stored before anything executes it: what the session is made of, for good.
      // Secret values are not in it: they travel as blobs on the helper's stdin.
      this.store.setPlan(row.id, JSON.stringify(plan));
      const result = await launchInit(plan, secretFiles.map((f) => f.content));
      if (!result.ok) throw new ApiError('confinement_failed', `session ${row.id} could not be confined: ${describeFailure(result)}`, undefined, { step: result.step, errno: result.errno });
      this.store.markRunning(row.id, result.pid, result.startTime);
      this.watch(row.id, result.pid, result.startTime);
      this.watchOom(row.id);
      try {
        await this.publishPorts(row);
      } catch (e) {
        const why = `cannot publish ports: ${(e as NodeJS.ErrnoException).code === 'EADDRINUSE' ? 'a host port is already in use' : (e as Error).message}`;
        await this.destroy(row.id, why);
        throw new ApiError('conflict', `session ${row.id} not started: ${why}`, 'publish');
      }
      this.counters.creates++;
      log.info({ init_pid: result.pid, ms: Number(process.hrtime.bigint() - t0) / 1e6 }, 'session running');
      return this.toApi(this.store.get(row.id)!);
    } catch (e) {
      this.counters.createFailures++;
      if (e instanceof ApiError && e.code === 'conflict') throw e; // already destroyed
      const full = isDiskFull(e, this.config.state_dir);
      const message = e instanceof ApiError ? e.message : `session ${row.id} could not be created: ${full ? diskFullMessage(this.config.state_dir) : (e as Error).message}`;
      log.error({ err: message }, 'session create failed');
      await this.release(row, 'failed', message);
      if (full) throw new ApiError('insufficient_storage', message);
      throw e instanceof ApiError ? e : new ApiError('confinement_failed', message);
    }
  }

  // ---- destroy ------------------------------------------------------------

  /** Stop the session; with a failure reason it ends 'failed' instead of 'stopped'. */
  async destroy(id: string, failure?: string): Promise<void> {
    const inflight = this.creating.get(id);
    if (inflight) await inflight.catch(() => undefined);
    const existing = this.destroying.get(id);
    if (existing) return existing;
    const row = this.store.get(id);
    if (!row) throw new ApiError('not_found', `no session ${id}`);
    const work = (async () => {
      if (row.state === 'stopped' || row.state === 'failed') {
        await this.release(row, row.state); // harmless again; frees anything left
        return;
      }
      // On a full disk the intent cannot be recorded: the destroy goes ahead anyway.
      this.bestEffort(id, () => this.store.markStopping(id, failure));
      await this.stopInit(id);
      await this.release(this.store.get(id)!, failure ? 'failed' : 'stopped', failure);
      this.counters.destroys++;
      this.log.child({ session: id }).info('session destroyed');
    })();
    this.destroying.set(id, work);
    try {
      await work;
    } finally {
      this.destroying.delete(id);
    }
  }

  /** SIGTERM the init (it passes it on), wait the grace period, then SIGKILL. */
  private async stopInit(id: string): Promise<void> {
    if (!this.watches.watching(id)) return;
    this.watches.signal(id, 15);
    const grace = this.config.sessions.stop_grace_ms;
    const exited = this.watches.exited(id);
    const done = await Promise.race([exited.then(() => true), sleep(grace).then(() => false)]);
    if (!done) {
      this.log.child({ session: id }).warn({ grace_ms: grace }, 'session did not stop in time; killing it');
      this.watches.signal(id, 9); // the kernel kills the whole PID namespace with its init
    }
    const status = await exited;
    if (status) this.bestEffort(id, () => this.store.recordExit(id, status.code, status.signal));
  }

  /**
   * Kill whatever is left in the session's cgroups, remove them, give the ID
   * slot back and record the final state. Idempotent. The kernel comes first
   * and needs no write to the state dir, so a full disk never leaves a
   * session's processes, cgroups or link behind; a final state that cannot be
   * written yet is retried until it can (see settleLater).
   */
  private async release(row: SessionRow, state: 'stopped' | 'failed', lastError?: string): Promise<void> {
    this.agents.drop(row.id);
    this.facts.delete(row.id);
    this.ending.delete(row.id);
    this.publisher.unpublish(row.id);
    this.watches.closeOom(row.id);
    if (this.watches.signal(row.id, 9) || this.watches.watching(row.id)) await this.watches.exited(row.id);
    const objects = this.store.kernelObjects(row.id);
    const deadline = Date.now() + 10_000;
    // Only what this daemon would have made for this session is acted on: a
    // row naming any other cgroup or link (a crafted or foreign database) is
    // logged and forgotten, never killed or removed.
    const ours = new Set([...sessionCgroupDirs(this.layout, this.config.cgroups.parent, row.id).map((d) => `cgroup ${d.path}`), `veth ${hostIfName(row.id)}`]);
    let linkPending: string | undefined;
    for (const obj of objects) {
      if (!ours.has(`${obj.kind} ${obj.ref}`)) {
        this.log.child({ session: row.id }).warn({ kind: obj.kind, ref: obj.ref }, 'ignored a kernel object this daemon does not own');
        continue;
      }
      if (obj.kind === 'veth') {
        // A session that ran: its link goes with its netns, off this path
        // (linkReaper.ts). A create that failed may have left it in ours.
        if (row.state === 'creating') addon().deleteLink(obj.ref);
        else if (linkExists(obj.ref)) linkPending = obj.ref;
        continue;
      }
      for (;;) {
        // A snapshot's cgroups first: an rmdir of a cgroup with a child fails.
        dropSnapshotCgroups(obj.ref, versionOf(this.layout, obj.ref));
        killCgroup(obj.ref, versionOf(this.layout, obj.ref));
        if (cgroupPids(obj.ref).length === 0 && removeCgroup(obj.ref)) break;
        if (Date.now() > deadline) throw new ApiError('internal', `cgroup ${obj.ref} of session ${row.id} still has processes`);
        await sleep(5);
      }
    }
    rmSync(this.sessionDir(row.id), { recursive: true, force: true });
    const lease = this.store.leaseOf(row.id);
    if (lease !== undefined && linkPending === undefined) this.unbind(row.id, lease);
    try {
      this.store.settle(row.id, state, lastError, linkPending !== undefined);
    } catch (e) {
      if (!isDiskFull(e, this.config.state_dir)) throw e;
      this.settleLater(row.id, state, lastError, linkPending !== undefined);
      return;
    } finally {
      if (linkPending) this.links.retire(row.id, linkPending);
    }
    this.pruneHistory();
  }

  /** A write that a full disk may refuse without stopping what is under way (it is logged). */
  private bestEffort(id: string, write: () => void): void {
    try {
      write();
    } catch (e) {
      if (!isDiskFull(e, this.config.state_dir)) throw e;
      this.log.child({ session: id }).warn({ state_dir: this.config.state_dir }, 'the state dir is full: a state change was not recorded');
    }
  }

  /** Final states the full disk would not take, retried every few seconds until it does. */
  private readonly unsettled = new Map<string, { state: 'stopped' | 'failed'; lastError: string | undefined; linkPending: boolean }>();
  private settleTimer: NodeJS.Timeout | undefined;

  private settleLater(id: string, state: 'stopped' | 'failed', lastError: string | undefined, linkPending: boolean): void {
    this.unsettled.set(id, { state, lastError, linkPending });
    this.log.child({ session: id }).error({ state_dir: this.config.state_dir }, 'the state dir is full: the session is gone from the kernel, its final state is written once there is space');
    this.settleTimer ??= setInterval(() => {
      for (const [sid, u] of this.unsettled) {
        try {
          this.store.settle(sid, u.state, u.lastError, u.linkPending);
          this.unsettled.delete(sid);
          this.log.child({ session: sid }).info({ state: u.state }, 'final state written');
        } catch (e) {
          if (!isDiskFull(e, this.config.state_dir)) this.logFailure(sid, 'cannot write the final state', e as Error);
          return;
        }
      }
      clearInterval(this.settleTimer);
      this.settleTimer = undefined;
    }, 2000);
    this.settleTimer.unref();
  }

  private pruneHistory(): void {
    const pruned = this.store.pruneHistory(this.config.sessions.keep_history);
    if (pruned > 0) this.log.debug({ pruned, keep: this.config.sessions.keep_history }, 'pruned ended sessions (sessions.keep_history)');
  }

  /** Live sessions (creating, running, stopping): what health reports. */
  countLive(): number {
    return this.store.countLive();
  }

  countByState(): Map<string, number> {
    return this.store.countByState();
  }

  /** resolv.conf and hosts for the session, bound read-only over the rootfs's. */
  private writeSessionFiles(row: SessionRow, lease: number | undefined): { source: string; target: string }[] {
    const dir = this.sessionDir(row.id);
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const hosts = join(dir, 'hosts');
    const resolv = join(dir, 'resolv.conf');
    writeFileSync(hosts, hostsFile(row.hostname, lease === undefined ? null : intToIp(lease)));
    let hostResolv = '';
    try {
      hostResolv = readFileSync('/etc/resolv.conf', 'utf8');
    } catch {
      /* no resolver on the host: sessions get none either */
    }
    writeFileSync(resolv, lease === undefined ? '# generated by Enclave: no network\n' : resolvConf(hostResolv));
    // World-readable whatever the daemon's umask: the session reads them.
    for (const f of [hosts, resolv]) chmodSync(f, 0o644);
    return [
      { source: hosts, target: '/etc/hosts' },
      { source: resolv, target: '/etc/resolv.conf' },
    ];
  }

  // ---- queries ------------------------------------------------------------

  /** A session by id; callers that hold a name resolve it through src/daemon/objects.ts. */
  find(id: string): SessionRow | undefined {
    return this.store.get(id);
  }

  /** An owner's live session of that name, else its most recent one. */
  byName(owner: number, name: string): SessionRow | undefined {
    return this.store.getLiveByName(owner, name) ?? this.store.getLatestByName(owner, name);
  }

  list(includeStopped: boolean, consoles: ConsoleInfo = NO_CONSOLE): Session[] {
    const details = this.store.detailsOfAll();
    const deps = this.viewDeps();
    return this.store.list(includeStopped).map((r) => toApi(r, details(r.id), deps, consoles));
  }

  /**
   * What the daemon keeps asking of a live session's stored plan (its control
   * socket, its layers), parsed once: a plan never changes once stored, and a
   * restart with many sessions would otherwise parse each one several times.
   */
  private planFacts(row: SessionRow): { control: string; layers: string[] } {
    let f = this.facts.get(row.id);
    if (!f) {
      const plan = this.planOf(row);
      f = { control: controlPath(plan), layers: opsNamed(plan, 'layer').map((a) => a[0]!).filter((s) => s !== '') };
      this.facts.set(row.id, f);
    }
    return f;
  }

  private readonly facts = new Map<string, { control: string; layers: string[] }>();

  private planOf(row: SessionRow): SessionPlan {
    if (row.plan === null) {
      throw new ApiError('conflict', `session ${row.id} was created by an older daemon and has no stored plan; exec into it is not possible: destroy and recreate it`);
    }
    try {
      return parseStoredPlan(row.plan, `session ${row.id}`);
    } catch (e) {
      throw new ApiError('internal', e instanceof PlanError ? e.message : String(e));
    }
  }

  /** Where commands of this running session are started: its own init. */
  agentFor(row: SessionRow): SessionAgent {
    if (row.state !== 'running') throw new ApiError('conflict', `session ${row.id} is ${row.state}, not running`);
    return this.agents.for(row.id, () => this.planFacts(row).control);
  }

  /** Rewrite a running session's secret files from the store (refresh-auth). */
  async refreshAuth(row: SessionRow): Promise<{ refreshed: string[]; missing: string[] }> {
    const agent = this.agentFor(row);
    try {
      return await this.secrets.refresh(row.id, row.owner_uid ?? 0, agent);
    } catch (e) {
      throw e instanceof StartFailure ? agentError(e, 'refresh its secrets') : e;
    }
  }

  /** The root the session was created with (not today's config). */
  /**
   * The host path where a session's read-only root (its layers, as created)
   * holds `path`, for choosing a login shell; what the session wrote in its
   * own layer is not looked at.
   */
  hostPathInRoot(row: SessionRow, path: string): string | undefined {
    if (row.plan === null) return undefined;
    const plan = this.planOf(row);
    const layers = opsNamed(plan, 'layer').map((a) => a[0]!);
    if (layers.length === 0) return join(opsNamed(plan, 'rootfs')[0]?.[1] ?? '/', path);
    const mounts: [string, string][] = [['/', layers[0]!], ...opsNamed(plan, 'overlay').map(([at, n]) => [`/${at}`, layers[Number(n)]!] as [string, string])];
    const [at, source] = mounts.filter(([m]) => m === '/' || path === m || path.startsWith(`${m}/`)).sort((x, y) => y[0].length - x[0].length)[0]!;
    return join(source, path.slice(at.length));
  }

  toApi(row: SessionRow, consoles: ConsoleInfo = NO_CONSOLE): Session {
    return toApi(row, this.store.detailsOf(row.id), this.viewDeps(), consoles);
  }

  private viewDeps(): ViewDeps {
    return { ids: this.config.ids, gateway: this.host?.gateway };
  }

  /**
   * Stop watching (daemon shutdown): sessions keep running. Work under way
   * gets until the deadline; false if some was still running then (a destroy
   * stuck on a process that cannot die: its intent is in the database).
   */
  async shutdown(deadlineMs: number): Promise<boolean> {
    const pending = [...this.creating.values(), ...this.destroying.values()].map((p) => p.catch(() => undefined));
    let timer: NodeJS.Timeout | undefined;
    const finished = await Promise.race([Promise.all(pending).then(() => true), new Promise<boolean>((r) => (timer = setTimeout(() => r(false), deadlineMs)))]);
    clearTimeout(timer);
    if (!finished) this.log.warn({ pending: pending.length, deadline_ms: deadlineMs }, 'shutdown deadline passed with work under way; exiting anyway (the next start finishes it)');
    this.agents.closeAll();
    this.watches.closeAll();
    this.publisher.closeAll();
    this.links.close(); // links still going are in the database: the next start waits for them
    return finished;
  }

}
