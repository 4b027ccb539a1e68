// A drain's move kit (src/fleet/moveKit.ts) on this node: what follows a
// session off it (its owner's secrets, values included, and the volumes it
// alone mounts read-write), what a node receiving one makes of it before it
// makes the session, and the volumes' contents on either side.
import { createHmac } from 'node:crypto';
import { createWriteStream, rmSync } from 'node:fs';
import { finished } from 'node:stream/promises';
import type { Logger } from 'pino';
import type { Config } from '../config/schema.js';
import { kitPlan, type KitPlan, type MadeForMove, type MoveKit, type SharedRef } from '../fleet/moveKit.js';
import type { SessionManager } from '../sessions/manager.js';
import { exportVolume } from '../snapshots/volumeExport.js';
import { hasZstd } from '../snapshots/snapshot.js';
import { moveFile } from '../store/workFiles.js';
import { ApiError } from '../vocab/errors.js';
import { LIVE_STATES } from '../vocab/states.js';

/** The volumes a session mounts, each with how many other live sessions mount it too. */
export const mountsOf = (sessions: SessionManager, id: string) =>
  sessions.volumeMountsOf(id).map((m) => ({ volume: sessions.volumes.get(m.id), target: m.target, readonly: m.readonly, others: sessions.volumes.mountedBy(m.id, id) }));

/** What follows session `id` off this node, or why it stays (undefined: no such session). */
export function kitHere(sessions: SessionManager, id: string): KitPlan | { stays: string } | undefined {
  const row = sessions.find(id);
  if (!row) return undefined;
  if (row.owner_uid === null) return { stays: 'it has no owner recorded (made before owners were)' };
  const store = sessions.secrets.store;
  return kitPlan({
    owner: row.owner_uid,
    held: store.heldBy(id),
    mounts: mountsOf(sessions, id),
    stored: (owner, name) => store.info(owner, name) !== undefined,
    sharedHere: (owner, name) => store.info(owner, name)?.shared === true,
  });
}

/**
 * Of `refs` (another owner's secrets), those this node holds shared, each as
 * `UID:NAME` and an HMAC-SHA256 of `nonce` keyed by its value: two nodes
 * learn whether their values agree, and nothing else of them.
 */
export function sharedMacs(sessions: SessionManager, refs: readonly SharedRef[], nonce: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const r of refs) {
    const v = sessions.secrets.store.get(r.owner_uid, r.name);
    if (v?.shared) out.set(`${r.owner_uid}:${r.name}`, createHmac('sha256', v.value).update(nonce).digest('hex'));
  }
  return out;
}

/** The kit with its secrets' values, for the node the session moves to; a 409 when it stays. */
export function kitValues(sessions: SessionManager, id: string, owner: number): MoveKit {
  const plan = kitHere(sessions, id);
  if (!plan || 'stays' in plan) throw new ApiError('conflict', `session ${id} cannot move with its volumes and secrets: ${plan?.stays ?? 'it is not here'}`);
  const secrets = plan.secrets.map((name) => {
    const v = sessions.secrets.store.get(owner, name);
    if (!v) throw new ApiError('conflict', `session ${id}'s secret ${name} is no longer stored`);
    return { name, value_base64: v.value.toString('base64'), shared: v.shared };
  });
  return { secrets, volumes: plan.volumes };
}

/**
 * Before session `id`, moving here, is made: its owner's secrets stored (one
 * already here must hold the same value: another value is the owner's own
 * here, not to be replaced; shared only as root's own, as a root `auth set`
 * makes one), its volumes made empty under the ids they have on the drained
 * node, marked as made for this move until the move is done here (an
 * earlier try's, still so marked, is made again empty: no stale file comes
 * back). A secret stored here for it is marked too, until the move is over. Any other volume under that id, or of the owner's under that name,
 * refuses the move: it is someone's data.
 */
export async function adoptKit(sessions: SessionManager, kit: MoveKit, owner: number, id: string, node: string, log: Logger): Promise<void> {
  const store = sessions.secrets.store;
  for (const s of kit.secrets) {
    const here = store.get(owner, s.name);
    if (here && store.markedFor(owner, s.name) !== id && !here.value.equals(Buffer.from(s.value_base64, 'base64'))) throw new ApiError('conflict', `node ${node} holds another value of uid ${owner}'s secret ${s.name}: the session cannot move there with its own`, 'auth');
  }
  for (const v of kit.volumes) {
    // Only an earlier try of this very move (its files never in: still marked for it) is made again; any other
    // volume under that id or name is someone's data, never replaced.
    const same = sessions.volumes.get(v.id);
    if (same && same.moved_for !== id) throw new ApiError('conflict', `node ${node} holds a volume ${v.id} (${same.name}) that this move did not make: remove it there first`, 'volumes');
    if (same && sessions.volumes.mountedBy(v.id) > 0) throw new ApiError('conflict', `volume ${v.id}, made on node ${node} by an earlier try of this move, is mounted there`, 'volumes');
    if (!same && sessions.volumes.byName(owner, v.name)) throw new ApiError('conflict', `uid ${owner} has another volume named ${v.name} on node ${node}: the session cannot move there with its own`, 'volumes');
  }
  // Only one the owner has none of here is marked: an undone move removes what it stored, never the owner's own.
  // One an earlier try of this very move stored is stored again: its value as the drained node has it now, and
  // its age (the sweep's grace) from this try.
  for (const s of kit.secrets) {
    if (!store.info(owner, s.name) || store.markedFor(owner, s.name) === id) store.set(owner, s.name, Buffer.from(s.value_base64, 'base64'), owner === 0 && s.shared, id);
  }
  for (const v of kit.volumes) {
    const earlier = sessions.volumes.get(v.id);
    if (earlier) await sessions.volumes.remove(earlier);
    await sessions.volumes.create(v.name, v.size_mb, owner, undefined, { id: v.id, session: id });
    log.info({ volume: v.id, name: v.name }, 'volume made for a session moving here');
  }
}

/** A volume's contents as a file in this node's work dir (the caller removes it), for the node a session moves to; refused unless it fits beside the disk's reserve. */
export async function volumeFile(sessions: SessionManager, config: Config, volumeId: string, log: Logger): Promise<{ path: string; zstd: boolean }> {
  const v = sessions.volumes.get(volumeId);
  if (!v) throw new Error(`volume ${volumeId} is gone`);
  sessions.volumes.assertCopyFits(v);
  const zstd = hasZstd();
  const path = moveFile(config.state_dir, volumeId);
  const out = createWriteStream(path, { flags: 'wx', mode: 0o600 });
  // Awaited on every path: a write error (a full disk) must reject here, never unhandled.
  const written = finished(out);
  try {
    try {
      await exportVolume(sessions.volumes, v, out, { compress: zstd, timeoutMs: config.sessions.snapshot_timeout_ms, seen: () => true, log });
    } finally {
      out.end();
    }
    await written;
    return { path, zstd };
  } catch (e) {
    await written.catch(() => undefined);
    rmSync(path, { force: true });
    throw e;
  }
}

/**
 * Volumes removed where no live session mounts them (a move's: those it
 * made here for an undone move or a failed create, or those a moved session
 * took off this node). Never throws: what cannot go stays, logged, and is returned.
 */
export async function dropVolumes(sessions: SessionManager, ids: readonly string[], log: Logger): Promise<string[]> {
  const kept: string[] = [];
  for (const id of ids) {
    const v = sessions.volumes.get(id);
    if (!v) continue;
    try {
      await sessions.volumes.remove(v);
      log.info({ volume: id, name: v.name }, 'volume removed: it went with a moving session');
    } catch (e) {
      kept.push(id);
      log.warn({ volume: id, name: v.name, err: (e as Error).message }, 'a volume a move left here stays');
    }
  }
  return kept;
}

/**
 * What a move of session `id` made here, removed (the move undone, or the
 * session's create here failed): its volumes no live session mounts (by
 * default all it made; the sweep names those not held back), its secrets no
 * live session declares (its own copy, when live, keeps them). Never throws:
 * the volumes that could not go are returned.
 */
export async function dropMadeFor(sessions: SessionManager, id: string, log: Logger, volumes: readonly string[] = sessions.volumes.movedFor(id)): Promise<string[]> {
  try {
    const gone = sessions.secrets.store.dropMovedFor(id);
    if (gone.length > 0) log.info({ secrets: gone }, 'secrets removed: a move stored them here for a session that did not stay');
  } catch (e) {
    log.warn({ err: (e as Error).message }, 'secrets a move stored here stay');
  }
  return dropVolumes(sessions, volumes, log);
}

/** A move to here is over: what it made here (volumes, secrets) is the owner's like any other. */
export function madeForMoveDone(sessions: SessionManager, id: string): void {
  sessions.volumes.clearMovedFor(id);
  sessions.secrets.store.clearMovedFor(id);
}

/** How long a volume a move made here may wait for its session's row before a sweep takes it for a leftover. */
const MADE_GRACE_MS = 10 * 60_000;
/** How long after it was made a volume stays the move's even when no record says a move runs (the record may be on its way). */
const RECORD_GRACE_MS = 60_000;

/** The volumes and secrets made here for moves, by session, with whether it has a row here and how old they are. */
export function madeForMoves(sessions: SessionManager, now = Date.now()): Map<string, MadeForMove> {
  const out = new Map<string, MadeForMove>();
  const add = (session: string, madeAt: string, put: (m: MadeForMove) => void) => {
    const age = now - Date.parse(madeAt);
    const m = out.get(session) ?? { volumes: [], secrets: [], row: rowOf(sessions, session), settled: true, stale: true };
    put(m);
    m.settled &&= age > RECORD_GRACE_MS;
    m.stale &&= age > MADE_GRACE_MS;
    out.set(session, m);
  };
  for (const v of sessions.volumes.madeForMoves()) if (v.moved_for !== null) add(v.moved_for, v.created_at, (m) => m.volumes.push(v.id));
  // A secret's last store (updated_at): another try of the move stores it again.
  for (const s of sessions.secrets.store.madeForMoves()) add(s.moved_for, s.updated_at, (m) => m.secrets.push(s.name));
  return out;
}

function rowOf(sessions: SessionManager, id: string): MadeForMove['row'] {
  const row = sessions.find(id);
  if (!row) return 'none';
  if (LIVE_STATES.includes(row.state)) return 'live';
  return row.moved_to === null ? 'ended' : 'movedAway';
}
