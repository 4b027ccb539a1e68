// The fleet's nodes: list, cordon, uncordon, drain, remove (fleet mode only). Nodes belong
// to nobody: root may, others only where a rule grants node.list, node.cordon or node.remove.
import { ApiError } from '../../vocab/errors.js';
import type { Fleet } from '../../fleet/fleet.js';
import type { Handlers } from '../dispatch.js';
import type { Context } from '../route.js';

function fleetOf(ctx: Context): Fleet {
  if (!ctx.fleet) throw new ApiError('invalid_request', 'this daemon is not part of a fleet (no [cluster] in its config)');
  return ctx.fleet;
}

const listed = async (f: Fleet) => ({ node: f.node, nodes: await f.nodes() });

export const nodeHandlers: Pick<Handlers, 'nodeList' | 'nodeCordon' | 'nodeUncordon' | 'nodeDrain' | 'nodeRemove'> = {
  nodeList: (ctx) => listed(fleetOf(ctx)),
  nodeCordon: {
    detail: ({ body }) => body.name,
    run: async (ctx, { body, log }) => {
      const f = fleetOf(ctx);
      await f.cordon(body.name, true);
      log.info({ node: body.name }, 'node cordoned');
      return listed(f);
    },
  },
  nodeUncordon: {
    detail: ({ body }) => body.name,
    run: async (ctx, { body, log }) => {
      const f = fleetOf(ctx);
      await f.cordon(body.name, false);
      log.info({ node: body.name }, 'node uncordoned');
      return listed(f);
    },
  },
  nodeDrain: {
    detail: ({ body }) => body.name,
    run: async (ctx, { body, log }) => {
      const sessions = await fleetOf(ctx).drain(body.name);
      log.info({ node: body.name, still_there: sessions.length }, 'node drained: cordoned, its sessions listed');
      return { node: body.name, sessions };
    },
  },
  nodeRemove: {
    detail: ({ body }) => body.name,
    run: async (ctx, { body, log }) => {
      const r = await fleetOf(ctx).remove(body.name);
      log.warn({ node: r.node, lost_sessions: r.lost }, 'node removed from the fleet');
      return r;
    },
  },
};
