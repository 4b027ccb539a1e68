// Auth providers: what a provider's token becomes inside a session besides
// its file (/run/enclave/auth/NAME.token): the variables it is exported as,
// the Git remotes and npm registries it authenticates. Built in for the
// common hosts; `[auth.providers.NAME]` in the config adds or overrides.
import { z } from 'zod';
import { PROVIDER_NAME } from '../vocab/names.js';

export interface Provider {
  /** Variables that carry the token. */
  env: string[];
  /** Plain variables set alongside it (never secret). */
  vars: Record<string, string>;
  /** Git remotes (scheme://host[:port][/path]) whose HTTP credentials are the token. */
  git_urls: string[];
  git_username: string;
  /** npm registries (//host[:port]/path/) whose _authToken is the token. */
  npm_registries: string[];
}

export const BUILTIN_PROVIDERS: Readonly<Record<string, Provider>> = {
  github: { env: ['GITHUB_TOKEN', 'GH_TOKEN'], vars: {}, git_urls: ['https://github.com'], git_username: 'x-access-token', npm_registries: [] },
  gitlab: { env: ['GITLAB_TOKEN'], vars: {}, git_urls: ['https://gitlab.com'], git_username: 'oauth2', npm_registries: [] },
  npm: { env: ['NPM_TOKEN'], vars: {}, git_urls: [], git_username: 'token', npm_registries: ['//registry.npmjs.org/'] },
  pypi: { env: ['TWINE_PASSWORD', 'UV_PUBLISH_TOKEN'], vars: { TWINE_USERNAME: '__token__' }, git_urls: [], git_username: 'token', npm_registries: [] },
};

const envName = z.string().regex(/^[A-Za-z_][A-Za-z0-9_]{0,127}$/, 'must be an environment variable name');
const plainValue = z.string().max(4096).regex(/^[^\0\t\n]*$/, 'must not contain NUL, tab or newline');

/** One provider in the config: every field optional, merged over the built-in one. */
export const providerConfig = z
  .object({
    env: z.array(envName).max(16).optional(),
    vars: z.record(envName, plainValue).optional(),
    git_urls: z
      .array(z.string().regex(/^https?:\/\/[A-Za-z0-9.-]+(:\d{1,5})?(\/[A-Za-z0-9._~\/-]*)?$/, 'must be an http(s)://host[:port][/path] URL'))
      .max(16)
      .optional(),
    git_username: z.string().regex(/^[A-Za-z0-9._@-]{1,64}$/, 'must be a plain user name').optional(),
    npm_registries: z
      .array(z.string().regex(/^\/\/[A-Za-z0-9.-]+(:\d{1,5})?\/([A-Za-z0-9._~\/-]*)$/, 'must be like //registry.example.com/path/'))
      .max(16)
      .optional(),
  })
  .strict();

export const providersConfig = z.record(z.string().regex(PROVIDER_NAME, 'must be a provider name matching ^[a-z0-9][a-z0-9_-]{0,62}$'), providerConfig);

/** The effective table: built-in providers with the config's fields over them. */
export function providerTable(config: z.infer<typeof providersConfig>): Record<string, Provider> {
  const table: Record<string, Provider> = { ...BUILTIN_PROVIDERS };
  for (const [name, c] of Object.entries(config)) {
    const base = table[name] ?? { env: [], vars: {}, git_urls: [], git_username: 'token', npm_registries: [] };
    table[name] = {
      env: c.env ?? base.env,
      vars: { ...base.vars, ...(c.vars ?? {}) },
      git_urls: c.git_urls ?? base.git_urls,
      git_username: c.git_username ?? base.git_username,
      npm_registries: c.npm_registries ?? base.npm_registries,
    };
  }
  return table;
}
