// A drain's move kit (src/fleet/moveKit.ts) on this node: what follows a
// session off it (its owner's secrets, values included, and its volumes,
// with the sessions here that share them: moved together), what a node
// receiving one makes of it before it makes the session, and the volumes'
// contents on either side.
import { createWriteStream, rmSync } from 'node:fs';
import { finished } from 'node:stream/promises';
import type { Logger } from 'pino';
import type { Config } from '../config/schema.js';
import { groupPlan, kitPlan, type GroupPlan, type KitPlan, type MadeForMove, type MoveKit } from '../fleet/moveKit.js';
import type { SessionManager } from '../sessions/manager.js';
import { exportVolume } from '../snapshots/volumeExport.js';
import { hasZstd } from '../snapshots/snapshot.js';
import { moveFile } from '../store/workFiles.js';
import { ApiError } from '../vocab/errors.js';
import { LIVE_STATES } from '../vocab/states.js';

/** The volumes a session mounts, each with the other live sessions that mount it too. */
export const mountsOf = (sessions: SessionManager, id: string) =>
  sessions.volumeMountsOf(id).map((m) => ({ volume: sessions.volumes.get(m.id), target: m.target, readonly: m.readonly, others: sessions.volumes.mountersBesides(m.id, id) }));

/**
 * What follows session `id` off this node, with every session here that
 * shares a volume with it (they move together, to one node), or why they
 * stay (undefined: no such session).
 */
export function kitHere(sessions: SessionManager, id: string): GroupPlan | { stays: string } | undefined {
  return sessions.find(id) ? groupPlan(id, (m) => planHere(sessions, m)) : undefined;
}

/** What follows one session (its own secrets and volumes, the sessions it shares volumes with), or why it stays. */
function planHere(sessions: SessionManager, id: string): KitPlan | { stays: string } | undefined {
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
 * The kit with its secrets' values, for the node the session moves to; a
 * 409 when it stays. A volume another session of its group makes there
 * (its maker, made first) is named `with` that session: not made again.
 */
export function kitValues(sessions: SessionManager, id: string, owner: number): MoveKit {
  const group = kitHere(sessions, id);
  const plan = group && !('stays' in group) ? group.members.find((m) => m.id === id)?.plan : undefined;
  if (!group || 'stays' in group || !plan) throw new ApiError('conflict', `session ${id} cannot move with its volumes and secrets: ${group && 'stays' in group ? group.stays : 'it is not here'}`);
  const secrets = plan.secrets.map((name) => {
    const v = sessions.secrets.store.get(owner, name);
    if (!v) throw new ApiError('conflict', `session ${id}'s secret ${name} is no longer stored`);
    return { name, value_base64: v.value.toString('base64'), shared: v.shared };
  });
  const volumes = plan.volumes.map((v) => {
    const maker = group.makers.get(v.id);
    return maker === undefined || maker === id ? v : { ...v, with: maker };
  });
  return { secrets, volumes };
}

/**
 * Before session `id`, moving here, is made: its owner's secrets stored (one
 * already here must hold the same value: another value is the owner's own
 * here, not to be replaced; never shared), its volumes made empty under the ids they have on the drained
 * node, marked as made for this move until the move is done here (an
 * earlier try's, still so marked, is made again empty: no stale file comes
 * back). A secret stored here for it is marked too, until the move is over. Any other volume under that id, or of the owner's under that name,
 * refuses the move: it is someone's data. A volume the kit names `with`
 * another session of the same move must be here as that one's kit made it.
 */
export async function adoptKit(sessions: SessionManager, kit: MoveKit, owner: number, id: string, node: string, log: Logger): Promise<void> {
  const store = sessions.secrets.store;
  for (const s of kit.secrets) {
    const here = store.get(owner, s.name);
    if (here && store.markedFor(owner, s.name) !== id && !here.value.equals(Buffer.from(s.value_base64, 'base64'))) throw new ApiError('conflict', `node ${node} holds another value of uid ${owner}'s secret ${s.name}: the session cannot move there with its own`, 'auth');
  }
  for (const v of kit.volumes) {
    const same = sessions.volumes.get(v.id);
    // Made by the kit of another session of its group (made here first): it mounts that one, as the owner's.
    if (v.with !== undefined) {
      if (!same || same.moved_for !== v.with || same.owner_uid !== owner) throw new ApiError('conflict', `volume ${v.name} is not on node ${node} as made for session ${v.with}, which moves with this one`, 'volumes');
      continue;
    }
    // Only an earlier try of this very move (its files never in: still marked for it) is made again; any other
    // volume under that id or name is someone's data, never replaced.
    if (same && same.moved_for !== id) throw new ApiError('conflict', `node ${node} holds a volume ${v.id} (${same.name}) that this move did not make: remove it there first`, 'volumes');
    if (same && sessions.volumes.mountedBy(v.id) > 0) throw new ApiError('conflict', `volume ${v.id}, made on node ${node} by an earlier try of this move, is mounted there`, 'volumes');
    if (!same && sessions.volumes.byName(owner, v.name)) throw new ApiError('conflict', `uid ${owner} has another volume named ${v.name} on node ${node}: the session cannot move there with its own`, 'volumes');
  }
  // Only one the owner has none of here is marked: an undone move removes what it stored, never the owner's own.
  // One an earlier try of this very move stored is stored again: its value as the drained node has it now, and
  // its age (the sweep's grace) from this try.
  for (const s of kit.secrets) {
    // Never shared here: root's shared secrets are not carried (a drain of this version sends none: kitPlan), and
    // a kit of an older one that says shared is not root's word for this node.
    if (!store.info(owner, s.name) || store.markedFor(owner, s.name) === id) store.set(owner, s.name, Buffer.from(s.value_base64, 'base64'), false, id);
  }
  for (const v of kit.volumes) {
    if (v.with !== undefined) continue;
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
    const m = out.get(session) ?? { volumes: [], secrets: [], row: rowOf(sessions, session), stopped: sessions.find(session)?.state === 'stopped', settled: true, stale: true };
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
