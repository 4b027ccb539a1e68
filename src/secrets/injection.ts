// Pure: what a session with declared secrets gets. Each provider's token in
// /run/enclave/auth/NAME.token and each env token in /run/enclave/env/NAME
// (0400, the session's root; 0440 with the group secret-NAME when the creator
// named users inside who may use it); variables the session's init reads from those
// files right before every execve (so a refreshed file is what the next
// command sees); and the plain settings that make Git and npm use them.
// Values appear only in `files[].content`, which travels as plan blobs.
import type { Provider } from './providers.js';
import type { SecretKind } from '../vocab/names.js';

export const AUTH_DIR = '/run/enclave/auth';
export const ENV_DIR = '/run/enclave/env';
export const SECRET_FILE_MODE = 0o400;
/** A secret shared with users inside: its group reads it too. */
export const SHARED_FILE_MODE = 0o440;

/**
 * The gids of shared secrets' groups: from 65000, a band Debian's policy
 * reserves (no package or useradd takes it), one per shared secret in name
 * order, so a start gives each the gid it had. In the session's own range.
 */
export const SHARED_GID_BASE = 65000;
export const MAX_SHARED = 32;
/** Group names: at most 32 characters (useradd's limit). */
export const sharedGroupName = (name: string): string => `secret-${name}`;

/** A group inside the session whose members may read a shared secret's file (its group). */
export interface SharedGroup {
  name: string;
  gid: number;
  /** User names inside the session, resolved there at each login (members of the group by name). */
  users: string[];
}

export interface Declared {
  auth: string[];
  envTokens: string[];
}

export interface Delivery {
  files: { path: string; mode: number; gid: number; content: Buffer }[];
  /** Groups inside the session of the secrets shared with users there (their files are group-readable). */
  groups: SharedGroup[];
  /** Plain variables, in order; later ones win. */
  env: { name: string; value: string }[];
  /** Variables read from a session file at each exec; they win over env. */
  envFiles: { name: string; path: string }[];
}

/** Where a secret lives inside its session. */
export function secretPath(name: string, kind: SecretKind): { dir: string; leaf: string; path: string } {
  const [dir, leaf] = kind === 'provider' ? [AUTH_DIR, `${name}.token`] : [ENV_DIR, name];
  return { dir, leaf, path: `${dir}/${leaf}` };
}

const shellQuote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

/** A git credential helper (sh, run by git) answering `get` from the token file. */
export function gitCredentialHelper(username: string, tokenFile: string): string {
  return `!f() { test "$1" = get || exit 0; printf 'username=%s\\npassword=%s\\n' ${shellQuote(username)} "$(cat ${shellQuote(tokenFile)})"; }; f`;
}

/** The groups of the secrets shared with users: by name, each its gid in the band. */
export function sharedGroups(users: ReadonlyMap<string, readonly string[]>): SharedGroup[] {
  return [...users.entries()]
    .filter(([, u]) => u.length > 0)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([name, u], i) => ({ name: sharedGroupName(name), gid: SHARED_GID_BASE + i, users: [...u] }));
}

export function deliveryFor(
  declared: Declared,
  values: ReadonlyMap<string, Buffer>,
  providers: Readonly<Record<string, Provider>>,
  plainEnv: { name: string; value: string }[] = [],
  users: ReadonlyMap<string, readonly string[]> = new Map(),
): Delivery {
  const groups = sharedGroups(users);
  const gidOf = (name: string) => groups.find((g) => g.name === sharedGroupName(name))?.gid;
  const secretFile = (name: string, path: string) => {
    const gid = gidOf(name);
    return { path, mode: gid === undefined ? SECRET_FILE_MODE : SHARED_FILE_MODE, gid: gid ?? 0, content: value(name) };
  };
  const d: Delivery = { files: [], groups, env: [...plainEnv], envFiles: [] };
  const git: string[][] = [];
  const npmrc: string[] = [];
  function value(name: string): Buffer {
    const v = values.get(name);
    if (!v) throw new Error(`no value for declared secret ${name}`);
    return v;
  }
  for (const name of declared.auth) {
    const { path } = secretPath(name, 'provider');
    d.files.push(secretFile(name, path));
    const p = providers[name];
    if (!p) continue; // a provider of no known kind: its file only
    for (const [k, v] of Object.entries(p.vars)) d.env.push({ name: k, value: v });
    for (const v of p.env) d.envFiles.push({ name: v, path });
    for (const url of p.git_urls) git.push([`credential.${url}.helper`, gitCredentialHelper(p.git_username, path)]);
    // npm expands ${VAR} in its config files: the token stays in the environment, not in this file.
    const first = p.env[0];
    if (first) for (const reg of p.npm_registries) npmrc.push(`${reg}:_authToken=\${${first}}`);
  }
  if (git.length > 0) {
    d.env.push({ name: 'GIT_TERMINAL_PROMPT', value: '0' }, { name: 'GIT_CONFIG_COUNT', value: String(git.length) });
    git.forEach(([k, v], i) => d.env.push({ name: `GIT_CONFIG_KEY_${i}`, value: k! }, { name: `GIT_CONFIG_VALUE_${i}`, value: v! }));
  }
  if (npmrc.length > 0) {
    // The global config, so a user's own ~/.npmrc still applies over it.
    const path = `${AUTH_DIR}/npmrc`;
    d.files.push({ path, mode: 0o444, gid: 0, content: Buffer.from(npmrc.join('\n') + '\n') });
    d.env.push({ name: 'NPM_CONFIG_GLOBALCONFIG', value: path });
  }
  for (const name of declared.envTokens) {
    const { path } = secretPath(name, 'env');
    d.files.push(secretFile(name, path));
    d.envFiles.push({ name, path });
  }
  return d;
}
