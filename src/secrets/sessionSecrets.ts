// Secrets as sessions see them: what a create declares (read from the store
// once, before anything is created), and refresh-auth, which rewrites a
// running session's files through its init. A bare name is the session
// owner's own secret; UID:NAME is another owner's, usable only if that owner
// shared it. Values pass through memory and the helper's stdin or the
// control socket only; never a log, a row or argv.
import { ApiError } from '../vocab/errors.js';
import { deliveryFor, secretPath, SECRET_FILE_MODE, SHARED_FILE_MODE, sharedGroupName, sharedGroups, type Delivery } from './injection.js';
import { ENV_TOKEN_NAME, kindOf, parseOwned, PROVIDER_NAME, SESSION_USERS } from '../vocab/names.js';
import type { Provider } from './providers.js';
import type { HeldSecret, SecretStore } from './store.js';

/** The users each held secret is shared with, as recorded (a list of names, or nothing). */
function usersOf(held: HeldSecret[]): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  for (const h of held) {
    if (h.users === null) continue;
    const parsed = SESSION_USERS.safeParse(JSON.parse(h.users));
    if (!parsed.success) throw new ApiError('internal', `the users recorded for secret ${h.name} of session ${h.session_id} are malformed`);
    out[h.name] = parsed.data;
  }
  return out;
}

/** Writes a file into a running session through its init (src/sessions/agent.ts). */
export interface SessionFileWriter {
  writeFile(dir: string, leaf: string, mode: number, gid: number, content: Buffer): Promise<void>;
}

export interface CreateSecrets {
  held: { owner: number; name: string; version: number; users?: string[] | undefined }[];
  delivery: Delivery;
}

export class SessionSecrets {
  constructor(
    readonly store: SecretStore,
    private readonly providers: Readonly<Record<string, Provider>>,
  ) {}

  /**
   * Everything a create declared, or a 400 naming the first it cannot have:
   * one the owner has not set, or another owner's that is not shared (the
   * same answer whether it exists or not: nothing of others' names leaks).
   */
  forCreate(
    req: { auth?: string[] | undefined; env_tokens?: string[] | undefined; env?: string[] | undefined; secret_users?: Record<string, string[]> | undefined },
    owner: number,
  ): CreateSecrets {
    const values = new Map<string, Buffer>();
    const held: CreateSecrets['held'] = [];
    const names = { auth: [] as string[], env_tokens: [] as string[] };
    for (const [field, refs, re] of [['auth', req.auth ?? [], PROVIDER_NAME], ['env_tokens', req.env_tokens ?? [], ENV_TOKEN_NAME]] as const) {
      for (const ref of refs) {
        const r = parseOwned(ref, re);
        if (!r) throw new ApiError('invalid_request', `'${ref.slice(0, 140)}' is not a secret name`, field);
        const whose = r.owner ?? owner;
        const v = this.store.get(whose, r.name);
        if (whose === owner && !v) throw new ApiError('invalid_request', `secret '${r.name}' is not in the store: set it first with \`enclave auth set ${r.name}\``, field);
        if (whose !== owner && !v?.shared) throw new ApiError('invalid_request', `secret '${ref}' is not in the store, or its owner has not shared it`, field);
        if (values.has(r.name)) throw new ApiError('invalid_request', `declares two secrets named '${r.name}' (they would be the same file in the session)`, field);
        values.set(r.name, v!.value);
        held.push({ owner: whose, name: r.name, version: v!.version });
        names[field].push(r.name);
      }
    }
    // Users inside who may read a secret: only one the session declared.
    const users = new Map<string, string[]>();
    for (const [name, who] of Object.entries(req.secret_users ?? {})) {
      if (!values.has(name)) throw new ApiError('invalid_request', `secret_users names '${name}', which the session does not declare (auth or env_tokens)`, 'secret_users');
      if (who.length > 0) users.set(name, who);
    }
    for (const h of held) h.users = users.get(h.name);
    const plainEnv = (req.env ?? []).map((kv) => ({ name: kv.slice(0, kv.indexOf('=')), value: kv.slice(kv.indexOf('=') + 1) }));
    return { held, delivery: deliveryFor({ auth: names.auth, envTokens: names.env_tokens }, values, this.providers, plainEnv, users) };
  }

  /**
   * What a stopped session's start delivers: the secrets it declared, at
   * their values now (another owner's while it is still shared), or a 400
   * naming the first it can no longer have; and its plain environment.
   */
  forStart(sessionId: string, owner: number, env: string[]): CreateSecrets {
    const held = this.store.heldBy(sessionId);
    const refs = (kind: string) => held.filter((h) => h.kind === kind).map((h) => (h.owner_uid === owner ? h.name : `${h.owner_uid}:${h.name}`));
    return this.forCreate({ auth: refs('provider'), env_tokens: refs('env'), env, secret_users: usersOf(held) }, owner);
  }

  /** Rewrite every declared secret of a running session from the store (another owner's while it is still shared). */
  async refresh(sessionId: string, sessionOwner: number, agent: SessionFileWriter): Promise<{ refreshed: string[]; missing: string[] }> {
    const refreshed: string[] = [];
    const missing: string[] = [];
    const all = this.store.heldBy(sessionId);
    const groups = sharedGroups(new Map(Object.entries(usersOf(all))));
    for (const h of all) {
      const v = this.store.get(h.owner_uid, h.name);
      const label = h.owner_uid === sessionOwner ? h.name : `${h.owner_uid}:${h.name}`;
      if (!v || (h.owner_uid !== sessionOwner && !v.shared)) {
        missing.push(label);
        continue;
      }
      const { dir, leaf } = secretPath(h.name, kindOf(h.name)!);
      // A shared one keeps its group (the same gid as at create: groups are numbered by name).
      const gid = groups.find((g) => g.name === sharedGroupName(h.name))?.gid;
      await agent.writeFile(dir, leaf, gid === undefined ? SECRET_FILE_MODE : SHARED_FILE_MODE, gid ?? 0, v.value);
      this.store.recordHeld(sessionId, [{ owner: h.owner_uid, name: h.name, version: v.version }]);
      refreshed.push(label);
    }
    return { refreshed, missing };
  }
}
