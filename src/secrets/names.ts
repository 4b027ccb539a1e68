// What a secret may be called, which kind a name is, and which variable
// names look like secrets (and so may not be passed as plain --env).
import { z } from 'zod';

/** Provider tokens (github, npm, ...): lowercase, like session names. */
export const PROVIDER_NAME = /^[a-z0-9][a-z0-9_-]{0,62}$/;
/** Env tokens (OPENAI_API_KEY, ...): an environment variable name. */
export const ENV_TOKEN_NAME = /^[A-Z_][A-Z0-9_]{0,127}$/;

export type SecretKind = 'provider' | 'env';

/** The two patterns are disjoint (lower- vs uppercase), so a name says its kind. */
export function kindOf(name: string): SecretKind | undefined {
  if (PROVIDER_NAME.test(name)) return 'provider';
  if (ENV_TOKEN_NAME.test(name)) return 'env';
  return undefined;
}

export const providerName = z.string().regex(PROVIDER_NAME, 'must be a provider name matching ^[a-z0-9][a-z0-9_-]{0,62}$ (github, npm, ...)');
export const envTokenName = z.string().regex(ENV_TOKEN_NAME, 'must be an env token name matching ^[A-Z_][A-Z0-9_]{0,127}$ (OPENAI_API_KEY, ...)');
export const secretName = z
  .string()
  .refine((n) => kindOf(n) !== undefined, 'must be a provider name (^[a-z0-9][a-z0-9_-]{0,62}$) or an env token name (^[A-Z_][A-Z0-9_]{0,127}$)');

/** Largest secret value, bytes: a token or a key, with room to spare. */
export const MAX_SECRET_BYTES = 32 * 1024;

/** Why a value cannot be a secret, or undefined. */
export function valueProblem(value: Buffer): string | undefined {
  if (value.length === 0) return 'the value is empty';
  if (value.length > MAX_SECRET_BYTES) return `the value is ${value.length} bytes; at most ${MAX_SECRET_BYTES} are allowed`;
  if (value.includes(0)) return 'the value contains a NUL byte: secrets are exported as environment variables, which end at NUL';
  return undefined;
}

const SECRET_LOOKING = [/_TOKEN$/i, /_KEY$/i, /SECRET/i, /PASSWORD/i, /_PAT$/i];

/** *_TOKEN, *_KEY, *SECRET*, *PASSWORD*, *_PAT: names that belong in the secret store. */
export function looksSecret(name: string): boolean {
  return SECRET_LOOKING.some((r) => r.test(name));
}

export const SECRET_ENV_HINT = 'looks like a secret: store it with `enclave auth set NAME` and pass it with --env-token NAME (or --auth PROVIDER), so it never travels in a request, a log or a process list';
