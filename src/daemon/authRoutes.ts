// The secret store's routes (enclave auth ...) and refresh-auth. Values come
// in as base64 in a request body and go nowhere but the store; replies and
// logs carry names, kinds and versions only. Root only, until an access
// policy exists: on the Unix socket uid 0, never a TCP (browser) caller.
import { ApiError, zodToApiError } from '../api/errors.js';
import { putSecretRequest, type SecretInfoView } from '../api/schemas.js';
import { valueProblem } from '../secrets/names.js';
import type { SecretInfo, SecretStore } from '../secrets/store.js';
import { readJsonBody, sendJson } from './http.js';
import { parseRef, parseSecretName } from './params.js';
import type { Caller, Context, Route } from './route.js';

export function requireRootForSecrets(caller: Caller, what: string): void {
  if (caller.uid !== 0) throw new ApiError('forbidden', `only root may ${what} (secrets are root's until an access policy exists)`);
}

function view(store: SecretStore, s: SecretInfo): SecretInfoView {
  return { name: s.name, kind: s.kind, version: s.version, set_at: s.created_at, rotated_at: s.version > 1 ? s.updated_at : null, used_by: store.liveHolders(s.name).length };
}

const store = (ctx: Context) => ctx.sessions.secrets.store;

export const AUTH_ROUTES: Route[] = [
  {
    method: 'GET',
    path: /^\/v1\/auth$/,
    handle: (ctx, { res, caller }) => {
      requireRootForSecrets(caller, 'list secrets');
      sendJson(res, 200, { secrets: store(ctx).list().map((s) => view(store(ctx), s)) });
    },
  },
  {
    method: 'PUT',
    path: /^\/v1\/auth\/([^/]+)$/,
    handle: async (ctx, { req, res, caller, params }) => {
      requireRootForSecrets(caller, 'set secrets');
      const name = parseSecretName(params[0]!);
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
      requireRootForSecrets(caller, 'remove secrets');
      const name = parseSecretName(params[0]!);
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
      requireRootForSecrets(caller, 'refresh the secrets of a session');
      const row = ctx.sessions.resolve(parseRef(params[0]!));
      const r = await ctx.sessions.refreshAuth(row);
      ctx.log.child({ session: row.id }).info({ caller: caller.uid, refreshed: r.refreshed, missing: r.missing }, 'secrets refreshed');
      sendJson(res, 200, { id: row.id, ...r });
    },
  },
];
