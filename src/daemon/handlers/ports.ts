// Publishing ports of a running session: host addresses and ports the
// caller's budget allows (a tenant: 127.0.0.1 from port 1024 by default).
import type { Handlers } from '../dispatch.js';

export const portHandlers: Pick<Handlers, 'portPublish' | 'portUnpublish'> = {
  portPublish: {
    detail: ({ body }) => `${body.host_ip}:${body.host_port}:${body.session_port}`,
    run: async (ctx, { caller, target, body }) => {
      const refused = ctx.budgets.publishProblem(caller, body);
      if (refused) ctx.access.refuse(caller, 'session.publish', { kind: 'session', id: target.id, owner_uid: target.owner_uid }, refused.rule, refused.error);
      await ctx.sessions.publish(target.id, body);
      ctx.feed.sessionChanged(target.id);
      return ctx.sessions.toApi(ctx.sessions.find(target.id)!, (id) => ctx.consoles.info(id));
    },
  },
  portUnpublish: {
    detail: ({ port }) => `unpublish ${port.host_ip}:${port.host_port}`,
    run: async (ctx, { target, port }) => {
      await ctx.sessions.unpublish(target.id, port.host_ip, port.host_port);
      ctx.feed.sessionChanged(target.id);
    },
  },
};
