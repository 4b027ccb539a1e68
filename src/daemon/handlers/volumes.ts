// Volume routes. A volume belongs to the uid that created it; its size is
// charged to that user's budget, and it is created or grown only if the disk
// keeps its reserve. An export is a stream like a snapshot's, held as one of
// the caller's streams.
import { BudgetRefusal } from '../../access/budgets.js';
import type { Caller } from '../../access/guard.js';
import { hasZstd } from '../../snapshots/snapshot.js';
import { exportVolume } from '../../snapshots/volumeExport.js';
import { ApiError } from '../../vocab/errors.js';
import type { Handlers } from '../dispatch.js';
import { EXPORT_TRAILER, streamWithTrailer } from '../responseStream.js';
import type { Context } from '../route.js';
import { CapReached } from '../streams.js';

/** The sessions mounting a volume that the caller may be told of. */
const seen = (ctx: Context, caller: Caller) => (u: { session_owner: number | null }) => ctx.access.visible(caller, { owner_uid: u.session_owner }, 'session.show');

/** Run a budget check that may throw inside a transaction; a refusal is recorded once it rolled back. */
async function budgeted<T>(ctx: Context, caller: Caller, action: 'volume.create' | 'volume.resize', detail: string, run: () => Promise<T>): Promise<T> {
  try {
    return await run();
  } catch (e) {
    if (e instanceof BudgetRefusal) ctx.access.refuse(caller, action, undefined, e.rule, e.error, detail);
    throw e;
  }
}

export const volumeHandlers: Pick<Handlers, 'volumeList' | 'volumeCreate' | 'volumeShow' | 'volumeRemove' | 'volumeResize' | 'volumeExport'> = {
  volumeList: (ctx, { caller }) => {
    const volumes = ctx.sessions.volumes.list().filter((v) => ctx.access.visible(caller, v, 'volume.list'));
    return { volumes: ctx.sessions.volumes.views(volumes, seen(ctx, caller)) };
  },
  volumeCreate: {
    detail: ({ body }) => `volume ${body.name}`,
    run: (ctx, { caller, body }) =>
      budgeted(ctx, caller, 'volume.create', `volume ${body.name}`, () =>
        ctx.sessions.volumes.create(body.name, body.size_mb, caller.uid, (used, size) => {
          const over = ctx.budgets.volumeProblem(caller, size, used);
          if (over) throw over;
        }),
      ),
  },
  volumeShow: (ctx, { caller, target }) => ctx.sessions.volumes.view(target, seen(ctx, caller)),
  volumeRemove: async (ctx, { caller, target }) => ctx.sessions.volumes.remove(target, seen(ctx, caller)),
  volumeResize: {
    detail: ({ body }) => `to ${body.size_mb} MiB`,
    // The caller's budget against the owner's volumes (the caller's own, unless a rule lets it grow others'); root has none.
    run: (ctx, { caller, target, body }) =>
      budgeted(ctx, caller, 'volume.resize', `volume ${target.name} to ${body.size_mb} MiB`, () =>
        ctx.sessions.volumes.resize(target, body.size_mb, (used) => {
          const over = ctx.budgets.volumeProblem(caller, body.size_mb, used, { name: target.name, fromMb: target.size_mb });
          if (over) throw over;
        }, seen(ctx, caller)),
      ),
  },
  volumeExport: {
    detail: ({ query }) => `compression ${query.compression ?? 'default'}`,
    run: async (ctx, { caller, target, query, log }, res) => {
      const compress = (query.compression ?? (hasZstd() ? 'zstd' : 'none')) === 'zstd';
      if (compress && !hasZstd()) throw new ApiError('invalid_request', 'compression zstd: the daemon host has no zstd (apt-get install zstd), ask for compression=none', 'compression');
      try {
        ctx.streams.hold(null, `uid ${caller.uid}`, res, ctx.budgets.streams(caller));
      } catch (e) {
        if (e instanceof CapReached) ctx.access.refuse(caller, 'volume.export', { kind: 'volume', id: target.name, owner_uid: target.owner_uid }, e.rule, e);
        throw e;
      }
      const o = { compress, timeoutMs: ctx.config.sessions.snapshot_timeout_ms, seen: seen(ctx, caller), log };
      await streamWithTrailer(res, compress ? 'application/zstd' : 'application/x-tar', EXPORT_TRAILER, (out) => exportVolume(ctx.sessions.volumes, target, out, o));
    },
  },
};
