// `enclave daemon`: open state, reconcile sessions, serve the API until SIGTERM.
import { chmodSync, chownSync, existsSync, mkdirSync, unlinkSync } from 'node:fs';
import { connect } from 'node:net';
import { dirname, join } from 'node:path';
import { removeHostNetwork } from '../network/hostNetwork.js';
import type { Logger } from 'pino';
import { daemonLogger } from './logger.js';
import type { Config } from '../config/schema.js';
import { applyReload, planReload } from '../config/reload.js';
import { ApiError } from '../vocab/errors.js';
import type { ReloadReply } from '../api/schemas.js';
import { detectCgroupLayout, removeParents, sessionCgroupDirs } from '../isolation/cgroups.js';
import { cpuUsageNs } from '../isolation/cgroupCounters.js';
import { lxcfsPaths, removeLxcfs } from '../isolation/lxcfs.js';
import { addon } from '../native/addon.js';
import { SessionManager } from '../sessions/manager.js';
import { sweepPoolOffline } from '../sessions/poolSweep.js';
import { Volumes } from '../volumes/volumes.js';
import { VolumeStore } from '../store/volumeStore.js';
import { openDatabase } from '../store/db.js';
import { SessionStore } from '../store/sessionStore.js';
import { OomStore } from '../store/oomStore.js';
import { createApiServer } from './server.js';
import { Consoles } from './attach.js';
import { ListenAuth } from './listenAuth.js';
import { LoginCookies } from './loginCookie.js';
import { EventFeed } from './feed.js';
import { IdleStop } from '../sessions/idle.js';
import { StreamLimits } from './streams.js';
import { DaemonLocks, LockError } from './locks.js';
import { AuditLog } from '../access/audit.js';
import { recordIdleStop, recordOom } from './sessionEvents.js';
import { AccessGuard } from '../access/guard.js';
import { Budgets } from '../access/budgets.js';
import { Objects } from './objects.js';
import { ServiceManager } from './serviceManager.js';
import { SecretStore } from '../secrets/store.js';
import { SessionSecrets } from '../secrets/sessionSecrets.js';
import { providerTable } from '../secrets/providers.js';
import { fleetFor, listenPeer } from './fleetNode.js';
import { MadeLists } from './madeLists.js';

export class StartupError extends Error {}

function socketInUse(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(path);
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

export interface RunningDaemon {
  stop(): Promise<void>;
  /** Read the config again and apply its live keys (SIGHUP, POST /v1/daemon/reload). */
  reload(): Promise<ReloadReply>;
  log: Logger;
}

/** `enclave daemon --cleanup`: remove host networking, the parent cgroups and the daemon's lxcfs when no session is live. Returns what lxcfs's removal did. */
export async function cleanupHost(config: Config): Promise<string[]> {
  if (process.getuid?.() !== 0) throw new StartupError('--cleanup must run as root');
  if (existsSync(config.socket) && (await socketInUse(config.socket))) throw new StartupError(`a daemon is serving ${config.socket}: stop it first`);
  const locks = takeLocks(config);
  if (existsSync(join(config.state_dir, 'enclave.db'))) {
    const db = openDatabase(config.state_dir);
    const store = new SessionStore(db);
    let live: number;
    try {
      // Members of the pool a daemon left when it did not stop: nobody's, so ended here.
      sweepPoolOffline(config, store, detectCgroupLayout(config.cgroups.root));
      live = store.countActive();
    } finally {
      db.close();
    }
    if (live > 0) throw new StartupError(`${live} session(s) still have processes: stop or destroy them first (their links are on the bridge)`);
  }
  await removeHostNetwork(config.network);
  removeParents(detectCgroupLayout(config.cgroups.root), config.cgroups.parent);
  // Whatever sessions.lxcfs says now: an instance an earlier configuration started goes too.
  const lxcfs = await removeLxcfs(lxcfsPaths(config.state_dir));
  locks.release();
  return lxcfs;
}

function takeLocks(config: Config): DaemonLocks {
  try {
    return DaemonLocks.acquire(config);
  } catch (e) {
    throw e instanceof LockError ? new StartupError(e.message) : e;
  }
}

/** `reread`: the config as the daemon would load it now (its file, with the same command-line overrides). */
export async function startDaemon(config: Config, reread: () => Config = () => config): Promise<RunningDaemon> {
  const log = daemonLogger(config);
  if (process.getuid?.() !== 0) throw new StartupError('the daemon must run as root (it creates namespaces, cgroups and ID mappings)');
  process.umask(0o077);
  const manager = new ServiceManager(log);
  // Session inits re-parent to us when their helper exits, so we reap them.
  addon().setChildSubreaper();

  if (existsSync(config.socket)) {
    if (await socketInUse(config.socket)) throw new StartupError(`another daemon is already serving ${config.socket}`);
    unlinkSync(config.socket);
  }
  // Before anything is read or touched: a second daemon on any of our resources stops here.
  const locks = takeLocks(config);
  const db = openDatabase(config.state_dir);
  const layout = detectCgroupLayout(config.cgroups.root);
  // since_spawn_ms: how much of a restart is Node's start and module loading, before any of ours.
  log.info({ cgroups: layout.mode, state_dir: config.state_dir, since_spawn_ms: Math.round(performance.now()) }, 'starting');
  const secrets = new SessionSecrets(SecretStore.open(db, config.state_dir), providerTable(config.auth.providers));
  const volumes = new Volumes(new VolumeStore(db), config.state_dir, config.volumes, log);
  const sessions = new SessionManager({ config, secrets, store: new SessionStore(db), oom: new OomStore(db), layout, log, volumes });
  const audit = new AuditLog(db, config.access.keep_events);
  // What the kernel did in a session is in the audit trail too (before start: kills found at re-adoption count).
  sessions.onKernelEvents({ oom: (e) => recordOom(audit, sessions, log, e) });
  await sessions.start();

  const access = new AccessGuard(config.access, audit, log, config.state_dir);
  // Read through at each use: a reload replaces these keys of config.access (src/config/reload.ts).
  const budgets = new Budgets({
    get budget() {
      return config.access.budget;
    },
    get budgets() {
      return config.access.budgets;
    },
    get max_sessions_per_uid() {
      return config.access.max_sessions_per_uid;
    },
    max_exec_streams_per_caller: config.api.max_exec_streams_per_caller,
  });
  const consoles = new Consoles(config, sessions, log, budgets, access);
  // The consoles their inits kept through the restart, then a new one where --console asks and none was kept.
  // A console that cannot start (e.g. a session of an older daemon, without a plan) is logged, not fatal.
  void consoles.adoptAll(sessions.running()).then(() => {
    for (const row of sessions.keptConsoles()) consoles.ensure(row).catch((e: Error) => log.child({ session: row.id }).error({ err: e.message }, 'cannot start the kept console'));
  });
  const streams = new StreamLimits(config.api);
  const idle = new IdleStop({
    candidates: () => sessions.running().filter((r) => r.idle_timeout_s !== null),
    inUse: (id) => consoles.info(id).viewers > 0 || streams.of(id) > 0,
    cpuNs: (id) => cpuUsageNs(sessionCgroupDirs(layout, config.cgroups.parent, id)),
    // In the audit trail once it is stopped: `enclave events` says why, as show's stopped_because does.
    stop: async (id, because) => {
      await sessions.stopSession(id, because);
      recordIdleStop(audit, sessions, log, id, because);
    },
    log,
  });
  const objects = new Objects(sessions, volumes);
  // Session state changes and audit events, pushed to GET /v1/events/stream.
  const feed = new EventFeed({ sessions, access, audit, consoles, log, ...(config.cluster ? { node: config.cluster.node } : {}) });
  const fleet = await fleetFor(config, sessions, consoles, budgets, audit, log);
  const reload = async (): Promise<ReloadReply> => {
    let next: Config;
    let rotated: boolean | undefined;
    try {
      next = reread();
      // The node-to-node certificate and CRLs, read again from the running paths (rotation, a node revoked);
      // checked before anything changes.
      rotated = await fleet?.reach?.credentials.reload();
    } catch (e) {
      throw new ApiError('invalid_request', `config not reloaded, nothing changed: ${(e as Error).message}`);
    }
    const plan = planReload(config, next);
    applyReload(config, next, plan);
    const applied = rotated ? [...plan.applied, 'cluster.peer files (certificate or CRL changed)'] : plan.applied;
    log.info({ applied, restart_needed: plan.restartNeeded }, 'config reloaded');
    return { applied, restart_needed: plan.restartNeeded };
  };
  const parts = { config, sessions, consoles, log, streams, access, audit, budgets, objects, feed, reload, madeLists: new MadeLists(), ...(fleet ? { fleet } : {}) };
  const { server, closeClients } = createApiServer(parts);
  const sockDir = dirname(config.socket);
  // Created if missing, never re-moded: on /tmp a chmod would strip the sticky bit.
  // One we create is 0755 whatever our umask (0077 would lock socket_gid members out).
  if (!existsSync(sockDir)) {
    mkdirSync(sockDir, { recursive: true, mode: 0o755 });
    chmodSync(sockDir, 0o755);
  }
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(config.socket, () => resolve());
  });
  chownSync(config.socket, 0, config.socket_gid);
  chmodSync(config.socket, 0o660);
  log.info({ socket: config.socket, since_spawn_ms: Math.round(performance.now()) }, 'listening');

  // The browser page's listener: loopback only, token or ticket, Host/Origin checked.
  let tcp: ReturnType<typeof createApiServer> | undefined;
  if (config.listen) {
    const [host, port] = [config.listen.slice(0, config.listen.lastIndexOf(':')), Number(config.listen.slice(config.listen.lastIndexOf(':') + 1))];
    const tokenFile = join(config.state_dir, 'listen-token');
    // The page's sign-in cookies outlive the token: their key is kept in the state dir.
    const auth = new ListenAuth(ListenAuth.createToken(tokenFile), host, port, LoginCookies.open(config.state_dir, log), () => config.access.tcp_uid);
    tcp = createApiServer({ ...parts, auth });
    await new Promise<void>((resolve, reject) => {
      tcp!.server.once('error', (e) => reject(new StartupError(`cannot listen on ${config.listen}: ${e.message}`)));
      tcp!.server.listen(port, host, () => resolve());
    });
    log.info({ listen: config.listen, token_file: tokenFile }, 'browser page listening');
  }
  // Fleet mode: join once this node can serve what is placed on it; no etcd, no daemon (fail closed, one line).
  let peer: ReturnType<typeof createApiServer> | undefined;
  if (fleet) {
    try {
      peer = await listenPeer(parts, fleet);
      await fleet.start();
    } catch (e) {
      server.close();
      tcp?.server.close();
      peer?.server.close();
      await fleet.close().catch(() => undefined);
      await sessions.shutdown(0);
      db.close();
      if (existsSync(config.socket)) unlinkSync(config.socket);
      locks.release();
      throw new StartupError((e as Error).message);
    }
  }
  // Only now: the database was checked, sessions re-adopted, every listener is up.
  manager.ready();
  sessions.scanUsrInBackground();
  idle.start();

  let stopping: Promise<void> | undefined;
  const stop = () =>
    (stopping ??= (async () => {
      log.info('stopping; sessions keep running');
      manager.stopping();
      idle.close();
      // Out of the fleet at once (no new placements here); its sessions keep running.
      await fleet?.close().catch((e: Error) => log.warn({ err: e.message }, 'leaving the fleet'));
      const closed = new Promise<void>((r) => server.close(() => r()));
      server.closeAllConnections();
      closeClients();
      for (const l of [tcp, peer]) {
        if (!l) continue;
        l.server.close();
        l.server.closeAllConnections();
        l.closeClients();
      }
      consoles.closeAll();
      feed.close();
      await closed;
      // A destroy still under way past the deadline may yet touch the database: leave it open, the exit closes it.
      if (await sessions.shutdown(config.sessions.shutdown_deadline_ms)) db.close();
      if (existsSync(config.socket)) unlinkSync(config.socket);
      locks.release();
      log.info('stopped');
    })());
  return { stop, reload, log };
}
