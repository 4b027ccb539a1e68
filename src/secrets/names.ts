// What a secret may be called, which kind a name is, and which variable
// names look like secrets (and so may not be passed as plain --env).

export { PROVIDER_NAME, ENV_TOKEN_NAME, kindOf, providerName, envTokenName, secretName, type SecretKind } from '../vocab/names.js';

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
