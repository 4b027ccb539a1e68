// Secrets as sessions see them: what a create declares (read from the store
// once, before anything is created), and refresh-auth, which rewrites a
// running session's files through its init. Values pass through memory and
// the helper's stdin or the control socket only; never a log, a row or argv.
import { ApiError } from '../api/errors.js';
import type { SessionAgent } from '../sessions/agent.js';
import { deliveryFor, secretPath, SECRET_FILE_MODE, type Delivery } from './injection.js';
import { kindOf } from './names.js';
import type { Provider } from './providers.js';
import type { SecretStore } from './store.js';

export interface CreateSecrets {
  held: { name: string; version: number }[];
  delivery: Delivery;
}

export class SessionSecrets {
  constructor(
    readonly store: SecretStore,
    private readonly providers: Readonly<Record<string, Provider>>,
  ) {}

  /** Everything a create declared, or a 400 naming the first secret the store does not have. */
  forCreate(req: { auth?: string[] | undefined; env_tokens?: string[] | undefined; env?: string[] | undefined }): CreateSecrets {
    const auth = req.auth ?? [];
    const envTokens = req.env_tokens ?? [];
    const values = new Map<string, Buffer>();
    const held: CreateSecrets['held'] = [];
    for (const [field, names] of [['auth', auth], ['env_tokens', envTokens]] as const) {
      for (const name of names) {
        const v = this.store.get(name);
        if (!v) throw new ApiError('invalid_request', `secret '${name}' is not in the store: set it first with \`enclave auth set ${name}\``, field);
        values.set(name, v.value);
        held.push({ name, version: v.version });
      }
    }
    const plainEnv = (req.env ?? []).map((kv) => ({ name: kv.slice(0, kv.indexOf('=')), value: kv.slice(kv.indexOf('=') + 1) }));
    return { held, delivery: deliveryFor({ auth, envTokens }, values, this.providers, plainEnv) };
  }

  /** Rewrite every declared secret of a running session from the store. */
  async refresh(sessionId: string, agent: SessionAgent): Promise<{ refreshed: string[]; missing: string[] }> {
    const refreshed: string[] = [];
    const missing: string[] = [];
    for (const h of this.store.heldBy(sessionId)) {
      const v = this.store.get(h.name);
      if (!v) {
        missing.push(h.name);
        continue;
      }
      const { dir, leaf } = secretPath(h.name, kindOf(h.name)!);
      await agent.writeFile(dir, leaf, SECRET_FILE_MODE, v.value);
      this.store.recordHeld(sessionId, [{ name: h.name, version: v.version }]);
      refreshed.push(h.name);
    }
    return { refreshed, missing };
  }
}
