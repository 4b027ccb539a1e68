// Stop and start, the flows (the session's state and its work under way are
// src/sessions/session.ts's). A stop ends the session's processes but its
// init, as a shutdown does (a hang-up and SIGTERM, SIGKILL after the grace),
// so its files are stored at rest; then the init ends and every step is
// undone, keeping what a start needs: name, address, ports, volumes,
// secrets, and the stored files (stored.ts). A start is a create of the
// same session from those: the same steps, its files replayed once its init
// runs, its ports published last; a failed start is undone back to stopped,
// its stored files untouched.
import { ApiError } from '../vocab/errors.js';
import type { Usage } from '../vocab/limitTable.js';
import { sessionCgroupDirs } from '../isolation/cgroups.js';
import { parseStoredPlan } from '../isolation/plan.js';
import { readOnlyVolumeRefusal } from '../isolation/profiles.js';
import { hostIfName } from '../network/addressing.js';
import { unsnapshottable } from '../snapshots/snapshot.js';
import { SlotsExhaustedError, type SessionRow } from '../store/sessionStore.js';
import { fullDisk, fullDiskMessage, type Kit } from './kit.js';
import type { Session } from './session.js';
import type { Bring } from './steps.js';
import { storedFile, storeFiles } from './stored.js';

const SIGHUP = 1;
const SIGTERM = 15;
const SIGKILL = 9;
/** After SIGKILL, how long the kernel may take to end them all. */
const KILL_WAIT_MS = 5000;

/** Stop a running session (its state is 'running'; the caller holds the session's stop). */
export async function stopFlow(s: Session, kit: Kit, row: SessionRow, because: string): Promise<void> {
  const t0 = process.hrtime.bigint();
  // Checked before anything ends: a stop that cannot store the files must not end the processes first.
  const problem = row.plan === null ? `session ${row.id} has no stored plan` : unsnapshottable(row.id, parseStoredPlan(row.plan, `session ${row.id}`));
  if (problem) throw new ApiError('conflict', `session ${row.id} cannot be stopped: ${problem}; destroy it instead, or snapshot its /home first`);
  try {
    s.markStopping(because);
  } catch (e) {
    // Its files need the disk too: a stop that cannot be recorded does not begin.
    if (fullDisk(kit, e)) throw new ApiError('insufficient_storage', `session ${row.id} not stopped: ${fullDiskMessage(kit)}`);
    throw e;
  }
  const agent = kit.agents.for(row.id, () => s.planFacts(row).control);
  const grace = kit.config.sessions.stop_grace_ms;
  // A terminal's hang-up (an interactive shell ignores SIGTERM), then SIGTERM; both answer when none is left.
  const [, quiet] = await Promise.all([agent.quiesce(SIGHUP, grace), agent.quiesce(SIGTERM, grace)]);
  if (!quiet) {
    s.log.warn({ grace_ms: grace }, 'session processes did not end in time; killing them');
    if (!(await agent.quiesce(SIGKILL, KILL_WAIT_MS))) return abandon(s, kit, row, 'its processes did not end, even on SIGKILL');
  }
  let bytes: number;
  try {
    bytes = await s.snapshotOnce(() => storeFiles(kit.config, s.snapshotWhere(), kit.store.get(row.id)!, s.log));
  } catch (e) {
    const why = fullDisk(kit, e) ? fullDiskMessage(kit) : (e as Error).message;
    return abandon(s, kit, row, `its files could not be stored (${why})`, fullDisk(kit, e) ? 'insufficient_storage' : 'internal');
  }
  await s.killInit();
  await s.release(kit.store.get(row.id)!, { state: 'stopped', storedBytes: bytes });
  kit.counters.stops++;
  s.log.info({ because, stored_bytes: bytes, ms: Number(process.hrtime.bigint() - t0) / 1e6 }, 'session stopped');
}

/** A stop that cannot finish: the session runs on (its processes ended), saying why; or, if its init is gone, it has failed. */
async function abandon(s: Session, kit: Kit, row: SessionRow, why: string, code: 'internal' | 'insufficient_storage' = 'internal'): Promise<never> {
  const message = `not stopped: ${why}; its processes were ended, and it runs on with its files as they were`;
  s.log.error({ err: why }, 'stop abandoned');
  if (s.initWatched()) s.stopAbandoned(message);
  else await s.release(kit.store.get(row.id)!, { state: 'failed', error: `its init ended while it was being stopped (${why})` });
  throw new ApiError(code, `session ${row.id} ${message}`);
}

/**
 * What a start of a stopped session begins from: its stored files, its
 * secrets at their values now, and its reservation (an ID slot and its
 * kernel objects, the owner's budget checked), or the 4xx that says why not.
 */
export function startBring(kit: Kit, row: SessionRow, admit: ((usage: Usage) => void) | undefined): Omit<Bring, 'kit' | 'session'> {
  const c = kit.config;
  if (kit.store.countActive() >= c.sessions.max_sessions) throw new ApiError('exhausted', `the daemon already runs ${c.sessions.max_sessions} sessions (sessions.max_sessions)`);
  const stored = storedFile(c, row.id);
  if (!stored) throw new ApiError('conflict', `session ${row.id} cannot start: its stored files are gone from ${c.state_dir}/stopped; destroy it`);
  const refusal = readOnlyVolumeRefusal(row.profile, c.sessions.rootfs === '/');
  const ro = refusal === undefined ? undefined : kit.store.volumeIdsOf(row.id).find((v) => v.readonly);
  if (refusal && ro) {
    // Made by an older daemon (a create now refuses it): said before anything is reserved.
    throw new ApiError('conflict', `session ${row.id} cannot start: it mounts volume ${kit.volumes.get(ro.id)?.name ?? ro.id} read-only at ${ro.target}, and ${refusal}. A stopped session's mounts cannot be changed: destroy it (its volumes stay) and create it again`, 'volumes');
  }
  const secrets = kit.secrets.forStart(row.id, row.owner_uid ?? 0, row.env);
  const dirs = sessionCgroupDirs(kit.layout, c.cgroups.parent, row.id, row.init !== null);
  const objects = [...dirs.map((d) => ({ kind: 'cgroup' as const, ref: d.path })), ...(row.network === 'bridge' ? [{ kind: 'veth' as const, ref: hostIfName(row.id) }] : [])];
  // Its old link, if the kernel is still removing it: the new one has its name.
  kit.links.finish(row.id);
  const reserve = () => {
    let ok: boolean;
    try {
      ok = kit.store.reserveStart(row.id, { slots: c.ids.slots, objects, admit });
    } catch (e) {
      if (e instanceof SlotsExhaustedError) throw new ApiError('exhausted', e.message);
      if (fullDisk(kit, e)) throw new ApiError('insufficient_storage', `session ${row.id} not started: ${fullDiskMessage(kit)}`);
      throw e;
    }
    if (!ok) throw new ApiError('conflict', `session ${row.id} is no longer stopped`);
    return kit.store.get(row.id)!;
  };
  return { reserve, secrets, dirs, limits: row.limits, end: { state: 'stopped' }, restoreFrom: stored };
}
