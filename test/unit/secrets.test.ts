// Secrets, pure parts: names and kinds, which variable names count as
// secrets, the provider table and what a session with declared secrets gets.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { deliveryFor, gitCredentialHelper } from '../../src/secrets/injection.js';
import { kindOf, looksSecret, MAX_SECRET_BYTES, valueProblem } from '../../src/vocab/names.js';
import { BUILTIN_PROVIDERS, providersConfig, providerTable } from '../../src/secrets/providers.js';
import { createSessionRequest, execQuery } from '../../src/api/schemas.js';

describe('secret names', () => {
  it('tells a provider from an env token by its name, and refuses anything else', () => {
    expect(kindOf('github')).toBe('provider');
    expect(kindOf('my-registry_2')).toBe('provider');
    expect(kindOf('OPENAI_API_KEY')).toBe('env');
    expect(kindOf('_X')).toBe('env');
    for (const bad of ['', 'GitHub', '-x', 'a/b', '../x', 'x'.repeat(64), 'A'.repeat(129), '1ABC', 'a b']) expect(kindOf(bad), bad).toBeUndefined();
  });

  it('counts *_TOKEN, *_KEY, *SECRET*, *PASSWORD* and *_PAT as secrets, in any case', () => {
    for (const n of ['GITHUB_TOKEN', 'api_key', 'MY_SECRET_THING', 'DB_PASSWORD', 'GITLAB_PAT', 'secret']) expect(looksSecret(n), n).toBe(true);
    for (const n of ['PATH', 'HOME', 'KEYBOARD', 'TOKENIZER', 'PATTERN', 'GIT_TERMINAL_PROMPT']) expect(looksSecret(n), n).toBe(false);
  });

  it('refuses them in exec --env and create --env, pointing to the secret store', () => {
    const e = execQuery.safeParse({ command: ['true'], env: ['OK=1', 'GITHUB_TOKEN=ghp_x'] });
    expect(e.success).toBe(false);
    expect(JSON.stringify(e.error?.issues)).toMatch(/GITHUB_TOKEN looks like a secret: store it with `enclave auth set NAME`/);
    expect(JSON.stringify(e.error?.issues)).not.toContain('ghp_x');
    expect(createSessionRequest.safeParse({ env: ['DB_PASSWORD=x'] }).success).toBe(false);
    expect(createSessionRequest.safeParse({ env: ['A=1', 'A=2'] }).success).toBe(false);
    expect(createSessionRequest.safeParse({ env: ['A=1\n2'] }).success).toBe(false);
    expect(createSessionRequest.safeParse({ env: ['A=', 'B=x y'], auth: ['github'], env_tokens: ['FOO'] }).success).toBe(true);
    expect(createSessionRequest.safeParse({ auth: ['github', 'github'] }).success).toBe(false);
    expect(createSessionRequest.safeParse({ auth: ['GitHub'] }).success).toBe(false);
    expect(createSessionRequest.safeParse({ env_tokens: ['lower'] }).success).toBe(false);
  });

  it('takes any bytes as a value but NUL, up to the limit', () => {
    expect(valueProblem(Buffer.from('a\tb\nc\r\n\u00ff'))).toBeUndefined();
    expect(valueProblem(Buffer.from('a\0b'))).toMatch(/NUL/);
    expect(valueProblem(Buffer.alloc(0))).toMatch(/empty/);
    expect(valueProblem(Buffer.alloc(MAX_SECRET_BYTES + 1, 'a'))).toMatch(/at most/);
  });
});

describe('providers', () => {
  it('has the conventional variables built in', () => {
    expect(BUILTIN_PROVIDERS.github!.env).toEqual(['GITHUB_TOKEN', 'GH_TOKEN']);
    expect(BUILTIN_PROVIDERS.gitlab!.env).toEqual(['GITLAB_TOKEN']);
    expect(BUILTIN_PROVIDERS.npm!.env).toEqual(['NPM_TOKEN']);
    expect(BUILTIN_PROVIDERS.pypi!.env).toEqual(['TWINE_PASSWORD', 'UV_PUBLISH_TOKEN']);
  });

  it('lets the config add a provider and override fields of a built-in one', () => {
    const t = providerTable(providersConfig.parse({ github: { git_urls: ['https://ghe.example.com'] }, vault: { env: ['VAULT_TOKEN'] } }));
    expect(t.github!.git_urls).toEqual(['https://ghe.example.com']);
    expect(t.github!.env).toEqual(['GITHUB_TOKEN', 'GH_TOKEN']);
    expect(t.vault!.env).toEqual(['VAULT_TOKEN']);
    expect(providersConfig.safeParse({ Bad: {} }).success).toBe(false);
    expect(providersConfig.safeParse({ x: { git_urls: ['ftp://h'] } }).success).toBe(false);
    expect(providersConfig.safeParse({ x: { vars: { A: 'a\tb' } } }).success).toBe(false);
  });
});

describe('what a session with secrets gets', () => {
  const values = new Map([
    ['github', Buffer.from('ghp_canary')],
    ['npm', Buffer.from('npm_canary')],
    ['pypi', Buffer.from('pypi_canary')],
    ['OPENAI_API_KEY', Buffer.from('sk\tcanary\n')],
  ]);
  const d = deliveryFor({ auth: ['github', 'npm', 'pypi'], envTokens: ['OPENAI_API_KEY'] }, values, BUILTIN_PROVIDERS, [{ name: 'FOO', value: 'bar' }]);

  it('writes each token to its file, 0400, and nothing else holds a value', () => {
    const secretFiles = d.files.filter((f) => f.mode === 0o400);
    expect(secretFiles.map((f) => [f.path, f.content.toString()])).toEqual([
      ['/run/enclave/auth/github.token', 'ghp_canary'],
      ['/run/enclave/auth/npm.token', 'npm_canary'],
      ['/run/enclave/auth/pypi.token', 'pypi_canary'],
      ['/run/enclave/env/OPENAI_API_KEY', 'sk\tcanary\n'],
    ]);
    // The environment names files; no value is in it (it goes into the stored plan).
    expect(JSON.stringify([d.env, d.envFiles])).not.toMatch(/canary/);
  });

  it('gives a token shared with users inside mode 0440 and its group, numbered by name from 65000; the rest stay root\'s', () => {
    const shared = deliveryFor({ auth: ['github', 'npm'], envTokens: ['OPENAI_API_KEY'] }, values, BUILTIN_PROVIDERS, [], new Map([['npm', ['carol']], ['github', ['bob', 'alice']]]));
    expect(shared.groups).toEqual([
      { name: 'secret-github', gid: 65000, users: ['bob', 'alice'] },
      { name: 'secret-npm', gid: 65001, users: ['carol'] },
    ]);
    expect(shared.files.filter((f) => f.path !== '/run/enclave/auth/npmrc').map((f) => [f.path, f.mode.toString(8), f.gid])).toEqual([
      ['/run/enclave/auth/github.token', '440', 65000],
      ['/run/enclave/auth/npm.token', '440', 65001],
      ['/run/enclave/env/OPENAI_API_KEY', '400', 0],
    ]);
    expect(d.groups).toEqual([]);
  });

  it('exports each token under its conventional variables, read from its file', () => {
    expect(d.envFiles).toEqual([
      { name: 'GITHUB_TOKEN', path: '/run/enclave/auth/github.token' },
      { name: 'GH_TOKEN', path: '/run/enclave/auth/github.token' },
      { name: 'NPM_TOKEN', path: '/run/enclave/auth/npm.token' },
      { name: 'TWINE_PASSWORD', path: '/run/enclave/auth/pypi.token' },
      { name: 'UV_PUBLISH_TOKEN', path: '/run/enclave/auth/pypi.token' },
      { name: 'OPENAI_API_KEY', path: '/run/enclave/env/OPENAI_API_KEY' },
    ]);
    const env = new Map(d.env.map((e) => [e.name, e.value]));
    expect(env.get('FOO')).toBe('bar');
    expect(env.get('TWINE_USERNAME')).toBe('__token__');
    expect(env.get('GIT_TERMINAL_PROMPT')).toBe('0');
    expect(env.get('GIT_CONFIG_COUNT')).toBe('1');
    expect(env.get('GIT_CONFIG_KEY_0')).toBe('credential.https://github.com.helper');
    expect(env.get('NPM_CONFIG_GLOBALCONFIG')).toBe('/run/enclave/auth/npmrc');
    expect(d.files.find((f) => f.path === '/run/enclave/auth/npmrc')!.content.toString()).toBe('//registry.npmjs.org/:_authToken=${NPM_TOKEN}\n');
  });

  it('gives git a credential helper that answers get from the token file, and nothing else', () => {
    const dir = mkdtempSync(join(tmpdir(), 'enclave-cred-'));
    const file = join(dir, "it's a token");
    writeFileSync(file, 'ghp_from_file\n');
    const helper = gitCredentialHelper('x-access-token', file);
    expect(helper.startsWith('!')).toBe(true);
    // git runs a "!cmd" helper as: sh -c 'cmd "$@"' cmd OPERATION
    const run = (op: string) => execFileSync('sh', ['-c', `${helper.slice(1)} "$@"`, helper, op], { encoding: 'utf8' });
    expect(run('get')).toBe('username=x-access-token\npassword=ghp_from_file\n');
    expect(run('store')).toBe('');
    expect(run('erase')).toBe('');
    rmSync(dir, { recursive: true });
  });

  it('refuses a declared secret it has no value for', () => {
    expect(() => deliveryFor({ auth: ['gitlab'], envTokens: [] }, values, BUILTIN_PROVIDERS)).toThrow(/gitlab/);
  });
});
