// The secret store's routes (enclave auth ...). A secret is its owner's:
// list shows the caller's own (every owner's with ?all=1, to a caller
// allowed to see all), set and remove act on the secret the path names, and
// replies name only sessions the caller may see. Values come in as base64 in
// a request body and go nowhere but the store; replies and logs carry names,
// kinds and versions only.
import type { Caller } from '../../access/guard.js';
import { ApiError } from '../../vocab/errors.js';
import type { SecretInfoView } from '../../api/schemas.js';
import { valueProblem } from '../../vocab/names.js';
import type { SecretInfo, SecretStore, SessionRef } from '../../secrets/store.js';
import { Replied, type Handlers } from '../dispatch.js';
import { notFound } from '../objects.js';
import type { Context } from '../route.js';

const store = (ctx: Context): SecretStore => ctx.sessions.secrets.store;

function view(s: SecretStore, i: SecretInfo): SecretInfoView {
  return {
    name: i.name,
    owner_uid: i.owner_uid,
    shared: i.shared,
    kind: i.kind,
    version: i.version,
    set_at: i.created_at,
    rotated_at: i.version > 1 ? i.updated_at : null,
    used_by: s.liveHolders(i.owner_uid, i.name).length,
  };
}

/** Only the sessions the caller may see, by id and name. */
const seen = (ctx: Context, caller: Caller, refs: SessionRef[]) => refs.filter((r) => ctx.access.visible(caller, r, 'session.show')).map((r) => ({ id: r.id, name: r.name }));

export const authHandlers: Pick<Handlers, 'authList' | 'authSet' | 'authRemove'> = {
  authList: (ctx, { caller, query, scope }) => {
    const s = store(ctx);
    const infos = query.all && scope === 'all' ? s.listAll() : s.listOf(caller.uid);
    return { secrets: infos.map((i) => view(s, i)) };
  },

  authSet: async (ctx, { caller, target, body, log }) => {
    if (body.shared && (caller.uid !== 0 || target.owner !== 0)) {
      ctx.access.refuse(caller, 'auth.set', { kind: 'secret', id: target.ref, owner_uid: target.owner }, 'root-only', new ApiError('forbidden', 'only root may share a secret, and only one of its own', 'shared'));
    }
    const value = Buffer.from(body.value_base64, 'base64');
    const problem = valueProblem(value);
    if (problem) throw new ApiError('invalid_request', `secret '${target.ref}': ${problem}`, 'value_base64');
    const s = store(ctx);
    const created = s.info(target.owner, target.name) === undefined;
    const over = ctx.budgets.secretProblem(caller, s.usageOf(target.owner), created, value.length, s.sizeOf(target.owner, target.name));
    if (over) ctx.access.refuse(caller, 'auth.set', { kind: 'secret', id: target.ref, owner_uid: target.owner }, over.rule, over.error);
    const info = s.set(target.owner, target.name, value, body.shared);
    const stale = seen(ctx, caller, s.staleHolders(target.owner, target.name));
    log.info({ caller: caller.uid, owner: target.owner, secret: target.name, shared: info.shared, version: info.version, stale_sessions: stale.length }, created ? 'secret set' : 'secret rotated');
    return new Replied(created ? 201 : 200, { ...view(s, info), created, stale_sessions: stale });
  },

  authRemove: (ctx, { caller, target, log }) => {
    const s = store(ctx);
    const holders = seen(ctx, caller, s.liveHolders(target.owner, target.name));
    if (!s.remove(target.owner, target.name)) throw notFound('secret', { kind: 'name', owner: target.owner === caller.uid ? undefined : target.owner, name: target.name });
    log.info({ caller: caller.uid, owner: target.owner, secret: target.name }, 'secret removed');
    return { name: target.name, still_held_by: holders };
  },
};
