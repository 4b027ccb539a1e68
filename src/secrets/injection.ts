// Pure: what a session with declared secrets gets. Each provider's token in
// /run/enclave/auth/NAME.token and each env token in /run/enclave/env/NAME
// (0400, the session's root); variables the session's init reads from those
// files right before every execve (so a refreshed file is what the next
// command sees); and the plain settings that make Git and npm use them.
// Values appear only in `files[].content`, which travels as plan blobs.
import type { Provider } from './providers.js';
import type { SecretKind } from '../vocab/names.js';

export const AUTH_DIR = '/run/enclave/auth';
export const ENV_DIR = '/run/enclave/env';
export const SECRET_FILE_MODE = 0o400;

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
  files: { path: string; mode: number; content: Buffer }[];
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

export function deliveryFor(
  declared: Declared,
  values: ReadonlyMap<string, Buffer>,
  providers: Readonly<Record<string, Provider>>,
  plainEnv: { name: string; value: string }[] = [],
): Delivery {
  const d: Delivery = { files: [], env: [...plainEnv], envFiles: [] };
  const git: string[][] = [];
  const npmrc: string[] = [];
  const value = (name: string) => {
    const v = values.get(name);
    if (!v) throw new Error(`no value for declared secret ${name}`);
    return v;
  };
  for (const name of declared.auth) {
    const { path } = secretPath(name, 'provider');
    d.files.push({ path, mode: SECRET_FILE_MODE, content: value(name) });
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
    d.files.push({ path, mode: 0o444, content: Buffer.from(npmrc.join('\n') + '\n') });
    d.env.push({ name: 'NPM_CONFIG_GLOBALCONFIG', value: path });
  }
  for (const name of declared.envTokens) {
    const { path } = secretPath(name, 'env');
    d.files.push({ path, mode: SECRET_FILE_MODE, content: value(name) });
    d.envFiles.push({ name, path });
  }
  return d;
}
