// Daemon start: the host made ready for sessions (parent cgroups and what all
// sessions may use, the bridge and firewall, the minimal root's base layer),
// then every live row re-adopted or finished, then the leftovers swept.
import { mkdirSync, statSync } from 'node:fs';
import { ApiError } from '../vocab/errors.js';
import { join } from 'node:path';
import { prepareBaseLayer, sweepBaseLayers } from '../isolation/baseLayer.js';
import { applyCapacity, capacityFor, hostSize, type Capacity } from '../isolation/capacity.js';
import { ensureParents } from '../isolation/cgroups.js';
import { parseStoredPlan } from '../isolation/plan.js';
import { seccompPrograms, thermalThrottleMasks } from '../isolation/hardening.js';
import { prepareDeviceNodes } from '../isolation/deviceNodes.js';
import { scanForMasks, UsrMasks } from '../isolation/usrMasks.js';
import { Lxcfs, lxcfsPaths } from '../isolation/lxcfs.js';
import { hostIfName } from '../network/addressing.js';
import { ensureHostNetwork } from '../network/hostNetwork.js';
import { recoverFromSnapshot } from '../snapshots/recover.js';
import type { SessionRow } from '../store/sessionStore.js';
import { ACTIVE_STATES } from '../vocab/states.js';
import { storedFile, sweepStored } from './stored.js';
import { sweepWork } from '../store/workFiles.js';
import { pruneHistory, type Kit } from './kit.js';
import { controlPathFor, newrootDir } from './planning.js';
import { sweepOrphanCgroups, sweepOrphanLinks } from './reconcile.js';
import type { Session } from './session.js';
import { Pool, type PoolDeps } from './pool.js';

export const rootfsDir = (kit: Kit) => join(kit.config.state_dir, 'rootfs');

/** What start-up found that creates need: what all sessions may use, the scan of /usr under way, the daemon's lxcfs. */
export interface Startup {
  capacity: Capacity | undefined;
  usr: UsrMasks | undefined;
  lxcfs: Lxcfs | undefined;
}

/** Parent cgroups with their totals, the host network, the base layer: the kit's host facts. Returns what all sessions may use. */
export async function prepareHost(kit: Kit): Promise<Capacity> {
  const { config } = kit;
  mkdirSync(newrootDir(config), { recursive: true, mode: 0o700 });
  ensureParents(kit.layout, config.cgroups.parent);
  const capacity = capacityFor(config.capacity, hostSize());
  applyCapacity(kit.layout, config.cgroups.parent, capacity);
  kit.log.info({ capacity }, 'what all sessions together may use (the parent cgroup)');
  // sun_path holds 108 bytes: refuse a state dir whose control sockets cannot be named.
  const probe = controlPathFor(config, 's-0000000000');
  if (Buffer.byteLength(probe) > 107) throw new Error(`state_dir ${config.state_dir} is too long: control socket paths like ${probe} exceed 107 bytes`);
  await kit.volumes.recover();
  // The leases' anti-spoofing elements and the published ports' map elements, from the database, in one atomic load.
  const { leased, published } = kit.store.firewallElements();
  const net = (kit.hostNet = await ensureHostNetwork(config.network, leased, published));
  kit.publisher.loaded(published);
  const base = config.sessions.rootfs === 'minimal' ? prepareBaseLayer(rootfsDir(kit), config.ids.size) : undefined;
  if (base?.built) kit.log.info({ path: base.path }, 'built the session base layer');
  const devices = prepareDeviceNodes(join(config.state_dir, 'devices'));
  if ('missing' in devices) kit.log.warn({ why: devices.missing }, 'no system sessions on this host');
  kit.host = { seccomp: seccompPrograms(), sysMasks: thermalThrottleMasks(), bridge: net.bridge, mtu: net.mtu, gateway: net.subnet.gateway, baseLayer: base?.path, devices };
  return capacity;
}

/**
 * Every row with processes: a running session whose init is still the
 * recorded process is re-adopted (create's pipeline from "watch"); a
 * destroy under way is finished; a stop under way is finished if its files
 * were stored, else the session runs on; a start under way is undone back
 * to stopped; anything else is released. Returns the running sessions
 * re-adopted (their control channels connect later).
 */
export async function adoptAll(kit: Kit, session: (id: string) => Session): Promise<SessionRow[]> {
  const pending: Promise<unknown>[] = [];
  const adopted: SessionRow[] = [];
  const live = kit.store.listInStates(ACTIVE_STATES);
  for (const row of live) {
    const s = session(row.id);
    if (row.state === 'creating') {
      s.log.warn('daemon stopped while this session was being created; cleaning up');
      pending.push(s.release(row, { state: 'failed', error: 'the daemon stopped while the session was being created' }));
      continue;
    }
    if (row.state === 'starting') {
      s.log.warn('daemon stopped while this session was being started; back to stopped, its files kept');
      pending.push(s.release(row, { state: 'stopped', error: 'the daemon stopped while the session was being started' }));
      continue;
    }
    pending.push(
      (async () => {
        if (row.state === 'destroying') {
          // A destroy was under way when the daemon died: finish it as asked (its init may be gone already).
          s.log.info('the daemon stopped during a destroy; finishing it');
          const asked = row.stop_reason ? { state: 'failed' as const, error: row.stop_reason } : { state: 'destroyed' as const };
          if (await s.adopt(row, asked)) await s.destroy(row.stop_reason ?? undefined);
          return;
        }
        if (row.state === 'stopping') return finishStop(kit, s, row);
        if (!(await s.adopt(row, { state: 'failed', error: 'the session init exited while the daemon was not running' }))) {
          return s.log.warn({ init_pid: row.init_pid }, 'session init exited while the daemon was not running');
        }
        s.log.info({ init_pid: row.init_pid }, 're-adopted running session');
        if (row.profile === 'system' && unlockedReadOnlyVolumes(row.plan)) {
          // Started by an older daemon: it runs on as it is; its next start stages them (or is refused on the host's root).
          s.log.warn('this system session mounts a volume read-only that an older daemon moved in unlocked: its root can remount it read-write until the session is stopped and started again (exports and snapshots take the mount as read-only meanwhile)');
        }
        adopted.push(row);
        await recoverFromSnapshot(kit.layout, kit.config.cgroups.parent, row.id, s.log);
      })(),
    );
  }
  await Promise.all(pending);
  sweepUnusedBaseLayers(kit, live, session);
  pruneHistory(kit);
  sweepOrphanCgroups(kit.layout, kit.config.cgroups.parent, kit.store, kit.log);
  sweepOrphanLinks(kit.config.network.bridge, kit.store, kit.log);
  sweepStored(kit.config, (id) => kit.store.stateOf(id), kit.log);
  sweepWork(kit.config.state_dir, kit.log);
  // Links a previous daemon was still waiting for (it died first).
  for (const { id, ref } of kit.store.endedWithLinks()) {
    if (ref === hostIfName(id)) kit.links.retire(id, ref);
    else {
      kit.log.child({ session: id }).warn({ kind: 'veth', ref }, 'ignored a kernel object this daemon does not own');
      kit.linkGone(id);
    }
  }
  return adopted;
}

/**
 * A stop the daemon did not see through: its files stored means the rest is
 * undoing (the init ends with its cgroups); else the session runs on if its
 * init does, or has failed.
 */
async function finishStop(kit: Kit, s: Session, row: SessionRow): Promise<void> {
  const stored = storedFile(kit.config, row.id);
  if (stored) {
    s.log.info('the daemon stopped during a stop, after the files were stored; finishing it');
    return s.release(row, { state: 'stopped', storedBytes: statSync(stored.path).size });
  }
  if (await s.adopt(row, { state: 'failed', error: 'the session init exited while the daemon was not running, during a stop' })) {
    s.stopAbandoned('not stopped: the daemon stopped before its files were stored; it runs on');
    s.log.warn('the daemon stopped during a stop, before the files were stored; the session runs on');
  }
}

/** Base layers that neither this start nor a live session's plan uses (an overlay's lower must not change under it). */
function sweepUnusedBaseLayers(kit: Kit, live: SessionRow[], session: (id: string) => Session): void {
  const inUse = new Set<string>(kit.host?.baseLayer ? [kit.host.baseLayer] : []);
  for (const row of live) {
    if (!row.plan) continue;
    try {
      for (const source of session(row.id).planFacts(row).layers) inUse.add(source);
    } catch {
      return; // a plan we cannot read: keep every base rather than guess
    }
  }
  for (const p of sweepBaseLayers(rootfsDir(kit), inUse)) kit.log.info({ path: p }, 'removed an unused session base layer');
}

/** The scan of the host's /usr the minimal root's masks come from (sessions.rootfs = "minimal"). */
export function usrMasksFor(kit: Kit): UsrMasks | undefined {
  if (kit.config.sessions.rootfs !== 'minimal') return undefined;
  return new UsrMasks(scanForMasks, {
    found: (masks, widened, ms) => {
      kit.log.info({ masks, ms: Math.round(ms) }, 'found what sessions must not see of the host\'s /usr');
      if (widened.length > 0) kit.log.warn({ widened }, 'masked whole directories of the host\'s /usr for names a session plan cannot carry');
    },
    failed: (e) => kit.log.error({ err: e.message }, 'cannot list what sessions must not see of the host\'s /usr: creates fail until a scan succeeds (each create tries again)'),
  });
}

/** The minimal root's masks in the host facts before any plan is made: a create never proceeds without them. */
export async function usrMasksReady(kit: Kit, usr: UsrMasks | undefined): Promise<void> {
  if (!usr || kit.host?.usrMasks) return;
  let masks: readonly string[];
  try {
    masks = await usr.list();
  } catch (e) {
    throw new ApiError('confinement_failed', `session not created: the daemon could not list what sessions must not see of the host's /usr (${(e as Error).message}); the next create tries again`);
  }
  kit.host = { ...kit.host!, usrMasks: masks };
}

/** The daemon's lxcfs (sessions.lxcfs "on" or "required"): adopted or started by start(), asked by every create and start. */
/** The sessions made ahead ([pool]); members are made and discarded through the registry's own create and destroy. */
export function poolFor(kit: Kit, deps: PoolDeps): Pool {
  return new Pool(kit, deps);
}

export function lxcfsFor(kit: Kit): Lxcfs | undefined {
  if (kit.config.sessions.lxcfs === 'off') return undefined;
  return new Lxcfs(lxcfsPaths(kit.config.state_dir), kit.log.child({ part: 'lxcfs' }));
}

/**
 * lxcfs's mount in the host facts before any plan is made. While it does not
 * serve: "required" refuses; "on" plans without it (the kernel's files) and
 * keeps why, which the plan step logs with the session.
 */
export async function lxcfsReady(kit: Kit, lxcfs: Lxcfs | undefined): Promise<void> {
  if (!lxcfs) return;
  try {
    kit.host = { ...kit.host!, lxcfs: await lxcfs.ready(), lxcfsDown: undefined };
  } catch (e) {
    const why = (e as Error).message;
    if (kit.config.sessions.lxcfs === 'required') {
      throw new ApiError('confinement_failed', `session not created: sessions.lxcfs is "required" and lxcfs does not serve (${why}); the next create tries again`);
    }
    kit.host = { ...kit.host!, lxcfs: undefined, lxcfsDown: why };
  }
}

/** What a create or a start waits for before it plans: the /usr scan, lxcfs. */
export async function hostReady(kit: Kit, startup: Startup): Promise<void> {
  await usrMasksReady(kit, startup.usr);
  await lxcfsReady(kit, startup.lxcfs);
}

/** Whether a stored plan mounts a volume read-only without staging it (an older daemon's: its flag is not locked). */
function unlockedReadOnlyVolumes(stored: string | null): boolean {
  if (stored === null) return false;
  try {
    const ops = parseStoredPlan(stored, 'stored plan').ops;
    return ops.some((o) => o.op === 'volume' && o.args[1] === 'ro') && !ops.some((o) => o.op === 'stage-volumes');
  } catch {
    return false; // a plan that does not read is reported where it is used
  }
}
