// Secrets as sessions see them: what a create declares (read from the store
// once, before anything is created), and refresh-auth, which rewrites a
// running session's files through its init. A bare name is the session
// owner's own secret; UID:NAME is another owner's, usable only if that owner
// shared it. Values pass through memory and the helper's stdin or the
// control socket only; never a log, a row or argv.
import { ApiError } from '../vocab/errors.js';
import { deliveryFor, secretPath, SECRET_FILE_MODE, type Delivery, type SharedGroup } from './injection.js';
import { ENV_TOKEN_NAME, kindOf, parseOwned, PROVIDER_NAME } from '../vocab/names.js';
import type { Provider } from './providers.js';
import type { SecretStore } from './store.js';

/** Writes a file into a running session through its init (src/sessions/agent.ts). */
export interface SessionFileWriter {
  writeFile(dir: string, leaf: string, mode: number, content: Buffer): Promise<void>;
}

export interface CreateSecrets {
  held: { owner: number; name: string; version: number }[];
  delivery: Delivery;
  /** Groups inside the session for the secrets it shares with users there. */
  groups?: SharedGroup[];
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
  forCreate(req: { auth?: string[] | undefined; env_tokens?: string[] | undefined; env?: string[] | undefined }, owner: number): CreateSecrets {
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
    const plainEnv = (req.env ?? []).map((kv) => ({ name: kv.slice(0, kv.indexOf('=')), value: kv.slice(kv.indexOf('=') + 1) }));
    return { held, delivery: deliveryFor({ auth: names.auth, envTokens: names.env_tokens }, values, this.providers, plainEnv) };
  }

  /**
   * What a stopped session's start delivers: the secrets it declared, at
   * their values now (another owner's while it is still shared), or a 400
   * naming the first it can no longer have; and its plain environment.
   */
  forStart(sessionId: string, owner: number, env: string[]): CreateSecrets {
    const held = this.store.heldBy(sessionId);
    const refs = (kind: string) => held.filter((h) => h.kind === kind).map((h) => (h.owner_uid === owner ? h.name : `${h.owner_uid}:${h.name}`));
    return this.forCreate({ auth: refs('provider'), env_tokens: refs('env'), env }, owner);
  }

  /** Rewrite every declared secret of a running session from the store (another owner's while it is still shared). */
  async refresh(sessionId: string, sessionOwner: number, agent: SessionFileWriter): Promise<{ refreshed: string[]; missing: string[] }> {
    const refreshed: string[] = [];
    const missing: string[] = [];
    for (const h of this.store.heldBy(sessionId)) {
      const v = this.store.get(h.owner_uid, h.name);
      const label = h.owner_uid === sessionOwner ? h.name : `${h.owner_uid}:${h.name}`;
      if (!v || (h.owner_uid !== sessionOwner && !v.shared)) {
        missing.push(label);
        continue;
      }
      const { dir, leaf } = secretPath(h.name, kindOf(h.name)!);
      await agent.writeFile(dir, leaf, SECRET_FILE_MODE, v.value);
      this.store.recordHeld(sessionId, [{ owner: h.owner_uid, name: h.name, version: v.version }]);
      refreshed.push(label);
    }
    return { refreshed, missing };
  }
}
