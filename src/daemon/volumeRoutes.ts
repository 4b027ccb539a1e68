// The volume routes (enclave volume ...). A volume's owner is the uid that
// created it; the policy's volume.* actions decide, with `self` meaning
// one's own volumes. Mounting one at session create is volume.use.
import { zodToApiError } from '../api/errors.js';
import { createVolumeRequest } from '../api/schemas.js';
import { readJsonBody, sendJson } from './http.js';
import { parseVolumeName } from './params.js';
import type { Route } from './route.js';

export const volumeAccessTarget = (v: { name: string; owner_uid: number }) => ({ id: v.name, owner_uid: v.owner_uid, kind: 'volume' as const });

export const VOLUME_ROUTES: Route[] = [
  {
    method: 'GET',
    path: /^\/v1\/volumes$/,
    handle: (ctx, { res, caller }) => {
      ctx.access.check(caller, 'volume.list');
      const volumes = ctx.sessions.volumes.list().filter((v) => ctx.access.visible(caller, v, 'volume.list'));
      sendJson(res, 200, { volumes: volumes.map((v) => ctx.sessions.volumes.view(v)) });
    },
  },
  {
    method: 'POST',
    path: /^\/v1\/volumes$/,
    handle: async (ctx, { req, res, caller }) => {
      const body = createVolumeRequest.safeParse(await readJsonBody(req));
      if (!body.success) throw zodToApiError(body.error, 'volume create request');
      ctx.access.check(caller, 'volume.create', undefined, `volume ${body.data.name}`);
      sendJson(res, 201, await ctx.sessions.volumes.create(body.data.name, body.data.size_mb, caller.uid));
    },
  },
  {
    method: 'GET',
    path: /^\/v1\/volumes\/([^/]+)$/,
    handle: (ctx, { res, caller, params }) => {
      const v = ctx.sessions.volumes.get(parseVolumeName(params[0]!));
      ctx.access.check(caller, 'volume.list', volumeAccessTarget(v));
      sendJson(res, 200, ctx.sessions.volumes.view(v));
    },
  },
  {
    method: 'DELETE',
    path: /^\/v1\/volumes\/([^/]+)$/,
    handle: async (ctx, { res, caller, params }) => {
      const v = ctx.sessions.volumes.get(parseVolumeName(params[0]!));
      ctx.access.check(caller, 'volume.remove', volumeAccessTarget(v));
      await ctx.sessions.volumes.remove(v.name);
      res.writeHead(204).end();
    },
  },
];


