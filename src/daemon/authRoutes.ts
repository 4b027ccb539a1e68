// The secret store's routes (enclave auth ...) and refresh-auth. Values come
// in as base64 in a request body and go nowhere but the store; replies and
// logs carry names, kinds and versions only. Who may call them is the access
// policy's (auth.list, auth.set, auth.remove, session.refresh-auth): root, and
// whom a rule allows.
import { ApiError, zodToApiError } from '../api/errors.js';
import { putSecretRequest, type SecretInfoView } from '../api/schemas.js';
import { valueProblem } from '../secrets/names.js';
import type { SecretInfo, SecretStore } from '../secrets/store.js';
import { readJsonBody, sendJson } from './http.js';
import { parseRef, parseSecretName } from './params.js';
import type { Context, Route } from './route.js';

function view(store: SecretStore, s: SecretInfo): SecretInfoView {
  return { name: s.name, kind: s.kind, version: s.version, set_at: s.created_at, rotated_at: s.version > 1 ? s.updated_at : null, used_by: store.liveHolders(s.name).length };
}

const store = (ctx: Context) => ctx.sessions.secrets.store;

export const AUTH_ROUTES: Route[] = [
  {
    method: 'GET',
    path: /^\/v1\/auth$/,
    handle: (ctx, { res, caller }) => {
      ctx.access.check(caller, 'auth.list');
      sendJson(res, 200, { secrets: store(ctx).list().map((s) => view(store(ctx), s)) });
    },
  },
  {
    method: 'PUT',
    path: /^\/v1\/auth\/([^/]+)$/,
    handle: async (ctx, { req, res, caller, params }) => {
      const name = parseSecretName(params[0]!);
      ctx.access.check(caller, 'auth.set', undefined, name);
      const body = putSecretRequest.safeParse(await readJsonBody(req));
      if (!body.success) throw zodToApiError(body.error, `secret '${name}'`);
      const value = Buffer.from(body.data.value_base64, 'base64');
      const problem = valueProblem(value);
      if (problem) throw new ApiError('invalid_request', `secret '${name}': ${problem}`, 'value_base64');
      const created = store(ctx).info(name) === undefined;
      const info = store(ctx).set(name, value);
      const stale = store(ctx).staleHolders(name);
      ctx.log.info({ caller: caller.uid, secret: name, version: info.version, stale_sessions: stale.length }, created ? 'secret set' : 'secret rotated');
      sendJson(res, created ? 201 : 200, { ...view(store(ctx), info), created, stale_sessions: stale });
    },
  },
  {
    method: 'DELETE',
    path: /^\/v1\/auth\/([^/]+)$/,
    handle: (ctx, { res, caller, params }) => {
      const name = parseSecretName(params[0]!);
      ctx.access.check(caller, 'auth.remove', undefined, name);
      const holders = store(ctx).liveHolders(name);
      if (!store(ctx).remove(name)) throw new ApiError('not_found', `no secret '${name}' in the store`);
      ctx.log.info({ caller: caller.uid, secret: name }, 'secret removed');
      sendJson(res, 200, { name, still_held_by: holders });
    },
  },
  {
    method: 'POST',
    path: /^\/v1\/sessions\/([^/]+)\/refresh-auth$/,
    handle: async (ctx, { res, caller, params }) => {
      const row = ctx.sessions.resolve(parseRef(params[0]!));
      ctx.access.check(caller, 'session.refresh-auth', row);
      const r = await ctx.sessions.refreshAuth(row);
      ctx.log.child({ session: row.id }).info({ caller: caller.uid, refreshed: r.refreshed, missing: r.missing }, 'secrets refreshed');
      sendJson(res, 200, { id: row.id, ...r });
    },
  },
];
