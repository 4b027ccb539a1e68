// Volume routes. A volume belongs to the uid that created it; its size is
// charged to that user's budget, and it is created only if the disk keeps
// its reserve.
import { BudgetRefusal } from '../../access/budgets.js';
import type { Caller } from '../../access/guard.js';
import type { Handlers } from '../dispatch.js';
import type { Context } from '../route.js';

/** The sessions mounting a volume that the caller may be told of. */
const seen = (ctx: Context, caller: Caller) => (u: { session_owner: number | null }) => ctx.access.visible(caller, { owner_uid: u.session_owner }, 'session.show');

export const volumeHandlers: Pick<Handlers, 'volumeList' | 'volumeCreate' | 'volumeShow' | 'volumeRemove'> = {
  volumeList: (ctx, { caller }) => {
    const volumes = ctx.sessions.volumes.list().filter((v) => ctx.access.visible(caller, v, 'volume.list'));
    return { volumes: volumes.map((v) => ctx.sessions.volumes.view(v, seen(ctx, caller))) };
  },
  volumeCreate: {
    detail: ({ body }) => `volume ${body.name}`,
    run: async (ctx, { caller, body }) => {
      try {
        return await ctx.sessions.volumes.create(body.name, body.size_mb, caller.uid, (used, size) => {
          const over = ctx.budgets.volumeProblem(caller, size, used);
          if (over) throw over;
        });
      } catch (e) {
        if (e instanceof BudgetRefusal) ctx.access.refuse(caller, 'volume.create', undefined, e.rule, e.error, `volume ${body.name}`);
        throw e;
      }
    },
  },
  volumeShow: (ctx, { caller, target }) => ctx.sessions.volumes.view(target, seen(ctx, caller)),
  volumeRemove: async (ctx, { caller, target }) => ctx.sessions.volumes.remove(target, seen(ctx, caller)),
};
