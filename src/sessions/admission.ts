// Admitting a create: everything checked before anything exists (capacity,
// the owner's name, its secrets, volume targets), then the session's
// reservation, the first of its steps: one transaction that takes an ID slot,
// an address, its ports and volumes, records its kernel objects and checks
// the owner's budget.
import { lstatSync } from 'node:fs';
import { join } from 'node:path';
import { ApiError } from '../vocab/errors.js';
import type { Usage } from '../vocab/limitTable.js';
import type { CreateSessionRequest } from '../api/schemas.js';
import type { Capacity } from '../isolation/capacity.js';
import { bootRefusal } from '../isolation/bootPlan.js';
import { sessionCgroupDirs } from '../isolation/cgroups.js';
import { READ_ONLY_VOLUME_REMEDY, readOnlyVolumeRefusal, writableRoot } from '../isolation/profiles.js';
import { hostIfName } from '../network/addressing.js';
import { HostPortInUseError } from '../network/publish.js';
import { AddressesExhaustedError, PortTakenError, SlotsExhaustedError, volumeUnavailable, VolumeUnavailableError } from '../store/sessionStore.js';
import { fullDisk, fullDiskMessage, type Kit } from './kit.js';
import { checkVolumeTargets, limitsFor } from './planning.js';
import { hostnameFor, newSessionId } from './identity.js';
import { StepFailed } from './pipeline.js';
import type { Session } from './session.js';
import type { Bring } from './steps.js';

/** A volume a create mounts, resolved to its id by the caller (which checked its owner). */
export interface ResolvedVolume {
  id: string;
  name: string;
  target: string;
  readonly: boolean;
}

export interface CreateExtra {
  volumes?: ResolvedVolume[];
  /** The owner's budget, checked against its live sessions in the reservation's transaction (throws to refuse). */
  admit?: (usage: Usage) => void;
  /** The id to make it with (fleet mode: the one its placement chose); new otherwise. */
  id?: string;
  /** Made for a fleet's placement: it starts only while placed on this node (migration 022). */
  placed?: boolean;
  /** A pool member of this shape (src/sessions/pool.ts): nobody's until handed out, no idle timeout until then. */
  pool?: string;
  /** Volumes this first run mounts read-write, whatever the session declares: a drain's copy takes their contents through them (moved-in-volume). */
  writable?: ReadonlySet<string>;
  /** Volumes made here by the kit of another session moved with this one (volume id to that session): mounted as declared, though still marked as made for it. */
  joins?: ReadonlyMap<string, string>;
}

/** A create's id and what its steps start from, or the 4xx that says why not. */
export function admit(kit: Kit, capacity: Capacity | undefined, req: CreateSessionRequest, owner: number, extra: CreateExtra): { id: string; init: Omit<Bring, 'kit' | 'session'> } {
  const c = kit.config;
  if (kit.store.countActive() >= c.sessions.max_sessions) throw new ApiError('exhausted', `the daemon already runs ${c.sessions.max_sessions} sessions (sessions.max_sessions)`);
  const name = req.name ?? null;
  if (name && kit.store.getLiveByName(owner, name)) throw new ApiError('conflict', `you already have a live session named '${name}'`, 'name');
  const network = req.network ?? 'bridge';
  if (network === 'none' && req.publish?.length) throw new ApiError('invalid_request', 'publish needs network "bridge"', 'publish');
  // Read before anything exists: a missing secret creates nothing.
  const secrets = kit.secrets.forCreate(req, owner);
  const id = extra.id ?? newSessionId();
  const profile = req.profile ?? c.sessions.profile;
  const limits = limitsFor(c, req, profile);
  const bootRefused = req.init === undefined ? undefined : bootRefusal(req.init, profile, kit.layout, c.sessions.rootfs);
  if (bootRefused) throw new ApiError('invalid_request', bootRefused, 'init');
  // A v1 kernel refuses a session CPU quota above its parent's (EINVAL): say so before anything exists.
  if (capacity && limits.cpu_percent > capacity.cpuPercent) {
    throw new ApiError('invalid_request', `cpu_percent ${limits.cpu_percent} is more than all sessions together may use (${capacity.cpuPercent}, capacity.cpu_percent)`, 'cpu_percent');
  }
  // Both write the session's own files (sshd's host keys and root's authorized_keys; /etc/group).
  const writable = writableRoot(profile) && c.sessions.rootfs !== '/';
  for (const [field, what] of [['ssh_key', 'sshd\'s host keys and root\'s authorized_keys'], ['secret_users', 'the groups of shared secrets in /etc/group']] as const) {
    if (req[field] !== undefined && !writable) {
      throw new ApiError('invalid_request', `${field} needs a writable root for ${what}: profile "workspace" or "system" and a sessions.rootfs other than "/" (this session: profile "${profile}", rootfs "${c.sessions.rootfs}")`, field);
    }
  }
  const topGid = Math.max(-1, ...secrets.delivery.groups.map((g) => g.gid));
  if (topGid >= c.ids.size) throw new ApiError('invalid_request', `secret_users needs gid ${topGid} inside the session, past its ${c.ids.size} IDs (ids.size)`, 'secret_users');
  const volumes = extra.volumes ?? [];
  const ro = volumes.find((v) => v.readonly);
  const roRefused = ro && readOnlyVolumeRefusal(profile, c.sessions.rootfs === '/');
  if (roRefused) throw new ApiError('invalid_request', `volume ${ro.name} at ${ro.target}: ${roRefused}; ${READ_ONLY_VOLUME_REMEDY}`, 'volumes');
  const rootfs = c.sessions.rootfs === 'minimal' ? kit.host!.baseLayer! : c.sessions.rootfs;
  checkVolumeTargets(volumes, limits, (target) => {
    try {
      return lstatSync(join(rootfs, target)).isDirectory();
    } catch {
      return false;
    }
  });
  const dirs = sessionCgroupDirs(kit.layout, c.cgroups.parent, id, req.init !== undefined);
  const subnet = kit.hostNet!.subnet;
  const reserve = () => {
    try {
      return kit.store.insertCreating({
        id,
        name,
        hostname: hostnameFor(id, name),
        limits,
        slots: c.ids.slots,
        objects: [...dirs.map((d) => ({ kind: 'cgroup' as const, ref: d.path })), ...(network === 'bridge' ? [{ kind: 'veth' as const, ref: hostIfName(id) }] : [])],
        addresses: network === 'bridge' ? { first: subnet.first, last: subnet.last } : undefined,
        publish: req.publish ?? [],
        keepConsole: req.console ?? false,
        ownerUid: owner,
        pool: extra.pool,
        profile,
        init: req.init,
        volumes: volumes.map((v) => ({ ...v, unavailable: (state) => volumeUnavailable(state, v.name, () => kit.volumes.mountRefusal(v.id, v.name, v.readonly && !extra.writable?.has(v.id), id, extra.joins?.get(v.id))) })),
        admit: extra.admit,
        placed: extra.placed,
        idleTimeoutS: extra.pool === undefined ? (req.idle_timeout_s ?? c.sessions.idle_timeout_s) || undefined : undefined,
        env: req.env,
        sshKey: req.ssh_key,
      });
    } catch (e) {
      throw reserveError(kit, e, name, owner);
    }
  };
  return { id, init: { reserve, secrets, dirs, limits, end: { state: 'failed' }, ...(extra.writable ? { writable: extra.writable } : {}), ...(extra.joins ? { joins: extra.joins } : {}) } };
}

/** What a failed reservation tells the caller. */
export function reserveError(kit: Kit, e: unknown, name: string | null, owner: number): unknown {
  if (fullDisk(kit, e)) return new ApiError('insufficient_storage', `session not created: ${fullDiskMessage(kit)}`);
  if (e instanceof SlotsExhaustedError || e instanceof AddressesExhaustedError) return new ApiError('exhausted', e.message);
  if (e instanceof PortTakenError) return new ApiError('conflict', e.for(owner), 'publish');
  if (e instanceof VolumeUnavailableError) return new ApiError('conflict', e.message, 'volumes');
  if (e instanceof Error && /UNIQUE constraint failed: sessions\.owner_uid, sessions\.name/.test(e.message)) return new ApiError('conflict', `you already have a live session named '${name}'`, 'name');
  return e;
}

/** Run a create's steps; a failure has undone them, ended the session failed, and names its step. */
export async function build(kit: Kit, s: Session, init: Omit<Bring, 'kit' | 'session'>): Promise<void> {
  const c = s.newBring(init);
  const t0 = process.hrtime.bigint();
  let why = '';
  try {
    await s.create(c, (step, e) => {
      if (step === 'reserve') return;
      kit.counters.createFailures++;
      why = failure(kit, s.id, step, e);
      c.end = { state: 'failed', error: why };
    });
  } catch (e) {
    if (!(e instanceof StepFailed)) throw e;
    if (e.step === 'reserve') throw e.error;
    if (e.step === 'publish') throw new ApiError('conflict', `session ${s.id} not started: ${why}`, 'publish');
    if (fullDisk(kit, e.error)) throw new ApiError('insufficient_storage', why);
    throw e.error instanceof ApiError ? new ApiError(e.error.code, why, e.error.field, e.error.failed) : new ApiError('confinement_failed', why);
  }
  kit.counters.creates++;
  s.log.info({ init_pid: c.launched?.pid, ms: Number(process.hrtime.bigint() - t0) / 1e6 }, 'session running');
}

/** What a create's failure says (the session's last error, and the caller's): the step it failed in. */
function failure(kit: Kit, id: string, step: string, e: unknown): string {
  if (step === 'publish') return `cannot publish ports: ${e instanceof HostPortInUseError ? 'a host port is already in use' : (e as Error).message}`;
  const what = e instanceof ApiError ? e.message : `session ${id} could not be created: ${fullDisk(kit, e) ? fullDiskMessage(kit) : (e as Error).message}`;
  return `${what} [create step ${step}]`;
}
