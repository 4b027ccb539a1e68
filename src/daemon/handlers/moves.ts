// A drain's move, both ends (fleet mode; nodes only, see the routes): the
// drained node hands the kit of a session it moves (its owner's secrets, the
// volumes it alone mounts: src/fleet/moveKit.ts) to the node it is placed
// on, which made it there by its id, running and empty; the drained node
// then sends each volume's contents, unpacked inside it at their targets,
// and its stored files (the stop's snapshot), restored into it as a start
// restores its own, and it is stopped here: it ends as it was, stopped, with
// its files and volumes, on this node. An undone move's copy is marked moved
// out, with the volumes its kit made.
import { closeSync, constants, createWriteStream, openSync, rmSync, statfsSync } from 'node:fs';
import { pipeline } from 'node:stream/promises';
import { restoreFiles } from '../../sessions/stored.js';
import { moveFile } from '../../store/workFiles.js';
import { ApiError } from '../../vocab/errors.js';
import { ENDED_STATES } from '../../vocab/states.js';
import type { Handlers } from '../dispatch.js';
import type { Context } from '../route.js';
import type { Caller } from '../../access/guard.js';
import type { IncomingMessage } from 'node:http';
import { dropMadeFor, kitValues, mountsOf } from '../moveKitHere.js';
import { sharedMacs } from '../../fleet/sharedHolders.js';
import { secretRefOf } from '../../vocab/names.js';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** A move's upload into this node's work dir: exactly the bytes announced, refused unless `times` copies fit; the caller removes the file. */
async function upload(ctx: Context, req: IncomingMessage, id: string, what: string, times: number): Promise<string> {
  const size = Number(req.headers['content-length']);
  if (!Number.isSafeInteger(size) || size < 0) throw new ApiError('invalid_request', 'a move sends its files with a content-length');
  const s = statfsSync(ctx.config.state_dir);
  if (size * times > s.bavail * s.bsize) throw new ApiError('insufficient_storage', `${what}'s ${size} bytes do not fit in this node's state dir ${times} times over`);
  const path = moveFile(ctx.config.state_dir, id);
  const fd = openSync(path, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
  let open = true;
  try {
    // Exactly what it announced: more is cut off, less fails.
    let got = 0;
    const counted = req.on('data', (c: Buffer) => {
      got += c.length;
      if (got > size) req.destroy(new Error(`more than the ${size} bytes announced`));
    });
    await pipeline(counted, createWriteStream('', { fd, autoClose: false }));
    if (got !== size) throw new ApiError('invalid_request', `the move sent ${got} of the ${size} bytes announced`);
    closeSync(fd);
    open = false;
    return path;
  } catch (e) {
    if (open) closeSync(fd);
    rmSync(path, { force: true });
    throw e;
  }
}

/** A move's step here is taken only from the node moving the session here, in that phase of its move (its record in etcd). */
async function fromMover(ctx: Context, caller: Caller, id: string, phase: 'copying' | 'undoing'): Promise<void> {
  if (!(await ctx.fleet?.movingHere(caller.peer, id, phase))) throw new ApiError('conflict', `node ${caller.peer ?? '(none)'} is not moving session ${id} to this node (${phase})`);
}

export const moveHandlers: Pick<Handlers, 'sessionMovedIn' | 'sessionMovedOut' | 'sessionMoveKit' | 'sessionMovedInVolume' | 'nodeSharedSecrets'> = {
  // A drain elsewhere asks, before it places a session declaring another owner's shared secrets, whether this node
  // holds each shared with the same value (an HMAC of its nonce: no value crosses).
  nodeSharedSecrets: (ctx, { query, caller }) => {
    if (!ctx.fleet || !caller.peer) throw new ApiError('conflict', 'only a node of the fleet asks this');
    const refs = query.refs.split(',').map((t) => secretRefOf(t)!);
    const store = ctx.sessions.secrets.store;
    const macs = sharedMacs((o, n) => store.get(o, n), refs.map((r) => ({ owner_uid: r.owner!, name: r.name })), query.nonce, caller.peer, ctx.fleet.node);
    return { secrets: [...macs].map(([ref, mac]) => ({ ref, mac })) };
  },
  sessionMovedOut: async (ctx, { target: row, query, caller, log }) => {
    if (!ENDED_STATES.includes(row.state)) throw new ApiError('conflict', `session ${row.id} is ${row.state} here: only an ended copy is marked moved`);
    await fromMover(ctx, caller, row.id, 'undoing');
    ctx.sessions.fleetRows.markMovedAway(row.id, query.to);
    // With the volumes and secrets the undone move's kit made here (this node's own record of them).
    await dropMadeFor(ctx.sessions, row.id, log);
  },
  sessionMoveKit: async (ctx, { target: row, caller }) => {
    // Only while this node moves it, and only to the node it is placed on: a kit holds secret values.
    const fleet = ctx.fleet;
    if (!fleet?.isMoving(row.id)) throw new ApiError('conflict', `session ${row.id} is not being moved off this node`);
    if (!caller.peer || !(await fleet.isPlacedOn(caller.peer, row.id))) throw new ApiError('conflict', `session ${row.id} is not placed on node ${caller.peer ?? '(none)'}`);
    if (row.owner_uid === null) throw new ApiError('conflict', `session ${row.id} has no owner recorded`);
    return kitValues(ctx.sessions, row.id, row.owner_uid);
  },
  sessionMovedInVolume: async (ctx, { target: row, query, req, caller, log }) => {
    if (row.state !== 'running') throw new ApiError('conflict', `session ${row.id} is ${row.state} here: only a session made for the move takes its volumes`);
    // Only from the node moving it here, while it does, and only into a volume its kit made: the
    // copy's first run mounts it read-write even if declared read-only (a copy started again since mounts
    // it as declared, and the unpack fails there: the move is undone).
    await fromMover(ctx, caller, row.id, 'copying');
    const mount = mountsOf(ctx.sessions, row.id).find((m) => m.volume?.id === query.volume && m.volume.moved_for === row.id);
    if (!mount) throw new ApiError('invalid_request', `session ${row.id} does not mount volume ${query.volume}, made here for its move`, 'volume');
    // The upload beside the reserve and what volumes may still grow by (the volume's own files are promised already).
    ctx.sessions.volumes.assertRoom(Math.ceil(Number(req.headers['content-length'] ?? 0) / (1024 * 1024)), `volume ${query.volume}'s upload`);
    const path = await upload(ctx, req, query.volume, `volume ${query.volume}`, 1);
    try {
      await restoreFiles(ctx.sessions.agentFor(row), row.hostname, { path, zstd: query.zstd === '1' }, ctx.config.sessions.snapshot_timeout_ms, mount.target);
      // On disk before the drained node, told so, removes its copy (off the event loop: it can take a while).
      await run('sync', ['-f', await ctx.sessions.volumes.hostMount(query.volume)], { timeout: ctx.config.sessions.snapshot_timeout_ms }).catch((e: Error) => {
        throw new ApiError('internal', `cannot sync volume ${query.volume}'s filesystem: ${e.message}`);
      });
      log.info({ volume: query.volume }, "a moving session's volume unpacked here");
    } finally {
      rmSync(path, { force: true });
    }
  },
  sessionMovedIn: async (ctx, { target: row, query, req, caller, log }) => {
    if (row.state !== 'running') throw new ApiError('conflict', `session ${row.id} is ${row.state} here: only a session made for the move takes its files`);
    await fromMover(ctx, caller, row.id, 'copying');
    // Its files land three times at the peak (this upload, the restored root, the stop's stored copy): refused unless they fit.
    const path = await upload(ctx, req, row.id, `session ${row.id}`, 3);
    try {
      await restoreFiles(ctx.sessions.agentFor(row), row.hostname, { path, zstd: query.zstd === '1' }, ctx.config.sessions.snapshot_timeout_ms);
      const s = await ctx.sessions.stopSession(row.id, `moved here from node ${query.from} (a drain)`);
      log.info({ from: query.from }, 'session moved here: its files restored, stopped');
      return ctx.fleet ? { ...s, node: ctx.fleet.node } : s;
    } finally {
      rmSync(path, { force: true });
    }
  },
};
