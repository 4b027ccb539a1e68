// What objects are called, and how a caller names one. Names are per owner:
// a bare name means the caller's own object; another owner's is `UID:NAME`
// (or, for a session, its id). A leaf: zod only.
import { z } from 'zod';

export const SESSION_ID = /^s-[0-9a-f]{10}$/;
export const SESSION_NAME = /^[a-z0-9][a-z0-9_-]{0,62}$/;
export const VOLUME_ID = /^v-[0-9a-f]{10}$/;
export const VOLUME_NAME = /^[a-z0-9][a-z0-9_.-]{0,62}$/;
/** Provider tokens (github, npm, ...): lowercase, like session names. */
export const PROVIDER_NAME = /^[a-z0-9][a-z0-9_-]{0,62}$/;
/** Env tokens (OPENAI_API_KEY, ...): an environment variable name. */
export const ENV_TOKEN_NAME = /^[A-Z_][A-Z0-9_]{0,127}$/;
const UID = /^(0|[1-9][0-9]{0,9})$/;
const MAX_UID = 4294967294;

export const sessionName = z
  .string()
  .regex(SESSION_NAME, 'must match ^[a-z0-9][a-z0-9_-]{0,62}$ (lowercase letters, digits, _ and -, max 63)')
  .refine((n) => !SESSION_ID.test(n), 'must not look like a session id (s- and 10 hex digits)');

export const volumeName = z
  .string()
  .regex(VOLUME_NAME, 'must match ^[a-z0-9][a-z0-9_.-]{0,62}$ (lowercase letters, digits, _ . and -, max 63)')
  .refine((n) => !VOLUME_ID.test(n), 'must not look like a volume id (v- and 10 hex digits)');

/** A reference to an owned object: by name (the caller's own unless `owner` is given), or by id. */
export type Ref = { kind: 'id'; id: string } | { kind: 'name'; owner: number | undefined; name: string };

/** "NAME" or "UID:NAME" with NAME matching `name`; undefined if it is neither. */
export function parseOwned(text: string, name: RegExp): { owner: number | undefined; name: string } | undefined {
  const colon = text.indexOf(':');
  if (colon < 0) return name.test(text) ? { owner: undefined, name: text } : undefined;
  const [uid, rest] = [text.slice(0, colon), text.slice(colon + 1)];
  if (!UID.test(uid) || Number(uid) > MAX_UID || !name.test(rest)) return undefined;
  return { owner: Number(uid), name: rest };
}

/** How a reference is written back, for messages. */
export const refText = (r: Ref): string => (r.kind === 'id' ? r.id : r.owner === undefined ? r.name : `${r.owner}:${r.name}`);

export function sessionRefOf(text: string): Ref | undefined {
  if (SESSION_ID.test(text)) return { kind: 'id', id: text };
  const o = parseOwned(text, SESSION_NAME);
  return o && { kind: 'name', ...o };
}

export const sessionRef = z.string().refine((s) => sessionRefOf(s) !== undefined, 'must be a session id (s-xxxxxxxxxx), a session name, or UID:NAME for another owner\'s');
export const volumeRef = z.string().refine((s) => parseOwned(s, VOLUME_NAME) !== undefined, 'must be a volume name, or UID:NAME for another owner\'s');

export type SecretKind = 'provider' | 'env';

/** The two patterns are disjoint (lower- vs uppercase), so a name says its kind. */
export function kindOf(name: string): SecretKind | undefined {
  if (PROVIDER_NAME.test(name)) return 'provider';
  if (ENV_TOKEN_NAME.test(name)) return 'env';
  return undefined;
}

const SECRET_NAME = /^(?:[a-z0-9][a-z0-9_-]{0,62}|[A-Z_][A-Z0-9_]{0,127})$/;
export const secretRefOf = (text: string) => parseOwned(text, SECRET_NAME);

export const providerName = z.string().regex(PROVIDER_NAME, 'must be a provider name matching ^[a-z0-9][a-z0-9_-]{0,62}$ (github, npm, ...)');
export const envTokenName = z.string().regex(ENV_TOKEN_NAME, 'must be an env token name matching ^[A-Z_][A-Z0-9_]{0,127}$ (OPENAI_API_KEY, ...)');
export const secretName = z
  .string()
  .refine((n) => kindOf(n) !== undefined, 'must be a provider name (^[a-z0-9][a-z0-9_-]{0,62}$) or an env token name (^[A-Z_][A-Z0-9_]{0,127}$)');
/** A secret a session declares: the caller's own NAME, or UID:NAME that its owner shared. */
const ownedSecret = (re: RegExp, what: string) => z.string().refine((s) => parseOwned(s, re) !== undefined, `must be ${what}, or UID:NAME for a secret its owner shared`);
export const providerRef = ownedSecret(PROVIDER_NAME, 'a provider name matching ^[a-z0-9][a-z0-9_-]{0,62}$ (github, npm, ...)');
export const envTokenRef = ownedSecret(ENV_TOKEN_NAME, 'an env token name matching ^[A-Z_][A-Z0-9_]{0,127}$ (OPENAI_API_KEY, ...)');
export const secretRef = z.string().refine((s) => secretRefOf(s) !== undefined, 'must be a secret name (a provider like github, or an env token like OPENAI_API_KEY), or UID:NAME');

/** Largest secret value, bytes: a token or a key, with room to spare. */
export const MAX_SECRET_BYTES = 32 * 1024;

/** Why a value cannot be a secret, or undefined. */
export function valueProblem(value: Buffer): string | undefined {
  if (value.length === 0) return 'the value is empty';
  if (value.length > MAX_SECRET_BYTES) return `the value is ${value.length} bytes; at most ${MAX_SECRET_BYTES} are allowed`;
  if (value.includes(0)) return 'the value contains a NUL byte: secrets are exported as environment variables, which end at NUL';
  return undefined;
}

/** Case-insensitive, plain patterns (the native front end compiles them as POSIX regexes too: native/src/front_table.gen.h). */
export const SECRET_LOOKING = [/_TOKEN$/i, /_KEY$/i, /SECRET/i, /PASSWORD/i, /_PAT$/i];

/** *_TOKEN, *_KEY, *SECRET*, *PASSWORD*, *_PAT: names that belong in the secret store. */
export function looksSecret(name: string): boolean {
  return SECRET_LOOKING.some((r) => r.test(name));
}

export const SECRET_ENV_HINT = 'looks like a secret: store it with `enclave auth set NAME` and pass it with --env-token NAME (or --auth PROVIDER), so it never travels in a request, a log or a process list';

/** A user (or a group's member) inside a session, as /etc/passwd names it: no ':' or ',' (the group file's separators). */
export const SESSION_USER = /^[A-Za-z_][A-Za-z0-9_.-]{0,31}$/;
/** The widest ID range a session has (config ids.size is at most 65536 * 16): IDs inside are 0..this. */
export const MAX_SESSION_ID = 65536 * 16 - 1;

/**
 * Who a command runs as (exec's `user`), in docker's `exec -u` forms: NAME,
 * UID, NAME:GROUP or UID:GID; a name as SESSION_USER, a number 0..
 * MAX_SESSION_ID (each session's own range is checked when it runs).
 */
export const EXEC_USER = z
  .string()
  .max(65)
  .refine(
    (s) => {
      const parts = s.split(':');
      return parts.length <= 2 && parts.every((p) => SESSION_USER.test(p) || (/^\d{1,7}$/.test(p) && Number(p) <= MAX_SESSION_ID));
    },
    `must be NAME, UID, NAME:GROUP or UID:GID (a name ${SESSION_USER.source}, a number 0..${MAX_SESSION_ID})`,
  );

export const SESSION_USERS = z
  .array(z.string().regex(SESSION_USER, 'must be a user name inside the session (^[A-Za-z_][A-Za-z0-9_.-]{0,31}$)'))
  .min(1, 'names no user')
  .max(16)
  .refine((us) => new Set(us).size === us.length, 'names the same user twice');
