// Fleet mode's daemon side: this node's sessions as the fleet sees them
// (src/fleet/worker.ts's LocalNode) and what it offers to placement. A
// session placed here is made exactly as a create on the socket makes it,
// after the node that took the create checked the caller's access; this
// node checks its owner's budget against what the owner holds here.
import { statfsSync } from 'node:fs';
import type { Server as HttpsServer } from 'node:https';
import type { Logger } from 'pino';
import type { Config } from '../config/schema.js';
import { capacityFor, hostSize } from '../isolation/capacity.js';
import { BudgetRefusal, type Budgets } from '../access/budgets.js';
import type { AuditLog } from '../access/audit.js';
import type { FenceTarget, Fleet, LocalNode, MoveSource } from '../fleet/fleet.js';
import { serveWith } from '../fleet/peerTls.js';
import { storedFile } from '../sessions/stored.js';
import { ENDED_STATES } from '../vocab/states.js';
import { failedCreate } from '../store/fleetRows.js';
import { rowJson } from './listJson.js';
import { listState } from './listTag.js';
import { STAGED_RO_VOLUMES, type NodeCapacity } from '../fleet/keys.js';
import type { SessionManager } from '../sessions/manager.js';
import type { Consoles } from './attach.js';
import type { Parts } from './route.js';
import { createApiServer, type ApiServer } from './server.js';
import { recordMovedAway } from './sessionEvents.js';
import { sharedMacs } from '../fleet/sharedHolders.js';
import { adoptKit, dropMadeFor, dropVolumes, kitHere, madeForMoveDone, madeForMoves, volumeFile } from './moveKitHere.js';
import type { CreateSessionRequest, Session } from '../api/schemas.js';
import type { ResolvedVolume } from '../sessions/admission.js';
import { ApiError } from '../vocab/errors.js';
import { parseOwned, VOLUME_NAME } from '../vocab/names.js';

const MIB = 1024 * 1024;

/** What this node offers: session slots (sessions.max_sessions), memory for sessions, free disk of its state dir. */
export function nodeCapacity(config: Config): NodeCapacity {
  let disk = 0;
  try {
    const s = statfsSync(config.state_dir);
    disk = Math.floor((s.bavail * s.bsize) / MIB);
  } catch {
    // An unreadable state dir offers no disk; placement does not use it yet.
  }
  return { slots: config.sessions.max_sessions, memory_mb: capacityFor(config.capacity, hostSize()).memoryMb, disk_mb: disk };
}

/**
 * The volumes a session placed here mounts, found by name for its owner. One
 * that names volumes is placed only on the node that took its create (the
 * fleet's placement.ts pinnedTo): this one, which checked volume.use then.
 */
function volumesHere(sessions: SessionManager, req: CreateSessionRequest, ownerUid: number): ResolvedVolume[] {
  return (req.volumes ?? []).map((m) => {
    const ref = parseOwned(m.name, VOLUME_NAME);
    const v = ref && sessions.volumes.byName(ref.owner ?? ownerUid, ref.name);
    if (!v || v.state !== 'ready') throw new ApiError('not_found', `no volume ${m.name.slice(0, 80)} on this node (volumes are per node)`, 'volumes');
    return { id: v.id, name: v.name, target: m.target, readonly: m.readonly };
  });
}

export function localNode(config: Config, sessions: SessionManager, consoles: Consoles, budgets: Budgets, movedAway: (id: string, to: string) => void, log: Logger): LocalNode & FenceTarget & MoveSource {
  const node = config.cluster?.node;
  /** Rows whose memory did not read, said once each. */
  const badRows = new Set<string>();
  /** The session placed here, made as a create on the socket makes it; its owner's budget checked here. */
  async function createHere(id: string, req: CreateSessionRequest, owner: { uid: number; gids: number[] }, writable?: ReadonlySet<string>, joins?: ReadonlyMap<string, string>): Promise<Session> {
    const who = { uid: owner.uid, gids: owner.gids, pid: null, via: 'socket' as const };
    const limits = sessions.limitsFor(req, req.profile ?? 'workspace');
    let s = await sessions.create(req, owner.uid, {
      id,
      placed: true,
      volumes: volumesHere(sessions, req, owner.uid),
      ...(writable ? { writable } : {}),
      ...(joins?.size ? { joins } : {}),
      admit: (usage) => {
        const over = budgets.totalsProblem(who, limits, usage);
        if (over) throw over.error;
      },
    }).catch((e: unknown) => {
      throw e instanceof BudgetRefusal ? e.error : e;
    });
    if (req.console) {
      const row = sessions.find(id)!;
      // Undone if it cannot start: ended here, failed, its placement removed with the failed report (worker.ts).
      await consoles.keep(row, 'create');
      s = sessions.toApi(row, (i) => consoles.info(i));
    }
    return s;
  }

  return {
    stored: (id) => storedFile(config, id),
    kit: (id) => kitHere(sessions, id),
    // A layered root stages read-only volumes, locked (plan.ts stage-volumes); the host's root does not.
    features: config.sessions.rootfs === '/' ? [] : [STAGED_RO_VOLUMES],
    sharedMacs: (refs, nonce, responder) => sharedMacs((o, n) => sessions.secrets.store.get(o, n), refs, nonce, node ?? '', responder),
    volumeFile: (volumeId) => volumeFile(sessions, config, volumeId, log),
    madeForMoves: () => madeForMoves(sessions),
    moveDone: (id) => madeForMoveDone(sessions, id),
    dropMadeFor: (id, volumes) => dropMadeFor(sessions, id, log.child({ session: id }), volumes),
    // Destroyed, not failed: it lives on on the node it moved to, under the same id; the row says where (a move back drops it).
    forget: async (id, to) => {
      const state = sessions.find(id)?.state;
      if (state !== 'destroyed' && state !== 'failed') await sessions.destroy(id, undefined, 0);
      // What a move to here made for it, if that move is not yet seen over here: its owner's (that move committed).
      madeForMoveDone(sessions, id);
      if (sessions.find(id)?.moved_to !== to) {
        sessions.fleetRows.markMovedAway(id, to);
        movedAway(id, to);
      }
      // The volumes it took along, once it is marked gone: best effort, logged. One another session moved with it
      // still mounts here goes with that one's copy, the last of its group to end.
      const took = sessions.volumeMountsOf(id).filter((m) => sessions.volumes.mountedBy(m.id, id) === 0);
      await dropVolumes(sessions, took.map((m) => m.id), log.child({ session: id }));
    },
    dropMovedAway: (id) => sessions.dropMovedAway(id),
    markPlaced: (ids) => sessions.fleetRows.markPlaced(ids),
    // With the volumes and secrets a move's kit made for it here (an undone move's copy).
    discard: async (id, livesOn) => {
      await sessions.destroy(id, undefined, 0);
      if (livesOn !== undefined) sessions.fleetRows.markMovedAway(id, livesOn);
      await dropMadeFor(sessions, id, log.child({ session: id }));
    },
    held: () => sessions.listTable(false).filter((s) => s.state !== 'destroyed' && s.state !== 'failed').map((s) => s.id),
    // Ended with the reason kept (failed): its owner sees why it is gone from this node.
    remove: (id, why) => sessions.destroy(id, why, 0),
    stateOf: (id) => sessions.fleetRows.stateOf(id),
    failedCreate: (id) => failedCreate(sessions.find(id)),
    // A row whose memory does not read is left out of the node's allocation: said once.
    sessionStates: () => sessions.fleetRows.liveStatesAndMemory((id, why) => badRows.has(id) || (badRows.add(id), log.warn({ session: id, err: why }, 'fleet: a session row whose memory does not read is left out of this node\'s allocation'))),
    view: (id) => {
      const row = sessions.find(id);
      return row ? sessions.toApi(row) : undefined;
    },
    listTag: () => listState(sessions, consoles),
    listed: () => sessions.list(false, (i) => consoles.info(i), node).map((s) => ({ id: s.id, json: rowJson(s) })),
    create: async (id, req, owner, kit) => {
      if (kit) {
        try {
          await adoptKit(sessions, kit, owner.uid, id, node ?? 'this', log.child({ session: id }));
          // Its volumes read-write in this first run, so their contents can be unpacked through it; those another
          // session of its group made here (`with`) as they are declared, that session's until the move is over.
          const made = kit.volumes.filter((v) => v.with === undefined);
          const joins = new Map(kit.volumes.flatMap((v) => (v.with === undefined ? [] : [[v.id, v.with] as const])));
          return await createHere(id, req, owner, new Set(made.map((v) => v.id)), joins);
        } catch (e) {
          // A create that failed leaves nothing of the move here: what its kit made goes.
          await dropMadeFor(sessions, id, log.child({ session: id }));
          throw e;
        }
      }
      return createHere(id, req, owner);
    },
  };
}

/**
 * The fleet this daemon joins ([cluster]), or undefined on a single daemon,
 * which never loads the etcd client (gRPC) at all.
 */
export async function fleetFor(config: Config, sessions: SessionManager, consoles: Consoles, budgets: Budgets, audit: AuditLog, log: Logger): Promise<Fleet | undefined> {
  const c = config.cluster;
  if (!c) return undefined;
  const { Fleet } = await import('../fleet/fleet.js');
  const fleet = new Fleet(c, c.endpoint ?? c.peer?.listen ?? config.socket, () => nodeCapacity(config), localNode(config, sessions, consoles, budgets, (id, to) => recordMovedAway(audit, sessions, log, id, to), log), log.child({ fleet: c.node }));
  sessions.onKernelEvents({
    changed: (id) => {
      const state = sessions.find(id)?.state;
      if (state !== undefined && ENDED_STATES.includes(state)) void fleet.ended(id);
    },
  });
  return fleet;
}

/**
 * The node-to-node listener ([cluster.peer]): the same API, for calls other
 * nodes forward here, over mutual TLS; throws (one line) if it cannot listen.
 */
export async function listenPeer(parts: Parts, fleet: Fleet): Promise<ApiServer | undefined> {
  const p = fleet.c.peer;
  const reach = fleet.reach;
  if (!p || !reach) return undefined;
  // Revoked, or CRLs every peer would refuse it by: said now, not as every call failing.
  await reach.credentials.check();
  const api = createApiServer({ ...parts, fleet }, { tls: reach.credentials.tls, admits: (cert) => reach.admits(cert) });
  // A rotated certificate or new CRLs (a reload read new files): new connections get them (peerTls.ts).
  serveWith(api.server as HttpsServer, reach.credentials, parts.log);
  reach.credentials.watchExpiry(parts.log);
  const at = p.listen.lastIndexOf(':');
  await new Promise<void>((resolve, reject) => {
    api.server.once('error', (e) => reject(new Error(`cannot listen for other nodes on ${p.listen} (cluster.peer.listen): ${e.message}`)));
    api.server.listen(Number(p.listen.slice(at + 1)), p.listen.slice(0, at), () => resolve());
  });
  parts.log.info({ listen: p.listen }, 'listening for other nodes (mutual TLS)');
  return api;
}
