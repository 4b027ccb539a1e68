// Secrets for users inside a session: `--auth github:bob` makes the token's
// file readable by bob (a group secret-github, members by name), and by no
// one else inside but root. bob is created after the session is: the group
// lists names, so a user made later is a member at its first login. Through
// refresh-auth and a stop and start, the file keeps its group. The API's exec
// as a user (exec -u) gives bob the shared token and variable, carol neither.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Enclave } from '../../src/client/index.js';
import { isRoot, TestDaemon } from './harness.js';

const FILL = `printf 'protocol=https\\nhost=github.com\\n\\n' | git credential fill`;

describe.skipIf(!isRoot)('secrets shared with users inside a session (root)', () => {
  const d = new TestDaemon();
  const as = (user: string, script: string) => d.sh('team', `su ${user} -s /bin/sh -c '${script.replace(/'/g, `'\\''`)}' 2>&1; echo "exit=$?"`);

  beforeAll(async () => {
    await d.start();
    expect((await d.cli(['auth', 'set', 'github'], 'ghp_shared_canary')).code).toBe(0);
    expect((await d.cli(['auth', 'set', 'OPENAI_API_KEY'], 'sk_root_only_canary')).code).toBe(0);
    const r = await d.cli(['session', 'create', '--name', 'team', '--auth', 'github:bob', '--env-token', 'OPENAI_API_KEY']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    // Users made after the session: bob named at create, carol not.
    const u = await d.sh('team', 'useradd -m bob && useradd -m carol && getent group secret-github');
    expect(u.stdout.trim()).toBe('secret-github:x:65000:bob');
  });
  afterAll(async () => {
    await d.cleanup();
  });

  it('lets the named user use the session\'s git credentials, and read the token file', async () => {
    const fill = await as('bob', FILL);
    expect(fill.stdout).toContain('password=ghp_shared_canary');
    expect(fill.stdout).toContain('exit=0');
    expect((await as('bob', 'cat /run/enclave/auth/github.token')).stdout).toBe('ghp_shared_canaryexit=0\n');
    const st = await d.sh('team', 'stat -c "%a %U %G" /run/enclave/auth/github.token /run/enclave/env/OPENAI_API_KEY /run/enclave/auth');
    expect(st.stdout).toBe('440 root secret-github\n400 root root\n711 root root\n');
  });

  it('keeps it from a user not named, and what was not shared from the named one', async () => {
    const carol = await as('carol', `cat /run/enclave/auth/github.token; ${FILL}`);
    expect(carol.stdout).not.toContain('canary');
    expect(carol.stdout).toMatch(/Permission denied/);
    const bob = await as('bob', 'cat /run/enclave/env/OPENAI_API_KEY; ls /run/enclave/auth');
    expect(bob.stdout).not.toContain('canary');
    expect(bob.stdout.match(/Permission denied/g)).toHaveLength(2); // neither the unshared file nor a listing
  });

  it('serves the API\'s exec as a user (exec -u): bob gets the shared token, file and variable; carol and the unshared one neither', async () => {
    const c = new Enclave({ socket: d.socket });
    try {
      const show = `cat /run/enclave/auth/github.token 2>&1; echo; echo "gh=\${GITHUB_TOKEN-unset} openai=\${OPENAI_API_KEY-unset}"; id -un`;
      const bob = await c.run('team', ['sh', '-c', `${FILL}; ${show}`], { user: 'bob' });
      expect(bob.stdout).toContain('password=ghp_shared_canary');
      expect(bob.stdout).toContain('ghp_shared_canary\ngh=ghp_shared_canary openai=unset\nbob\n');
      expect(bob.exitCode).toBe(0);
      // The unshared variable is left out of a named user's environment, and nothing of either of carol's: the command still runs.
      const carol = await c.run('team', ['sh', '-c', `${FILL} 2>&1; ${show}`], { user: 'carol' });
      expect(carol.stdout).not.toContain('canary');
      expect(carol.stdout).toMatch(/Permission denied/);
      expect(carol.stdout).toContain('gh=unset openai=unset\ncarol\n');
      expect(carol.exitCode).toBe(0);
      expect((await c.run('team', ['sh', '-c', 'echo "$GITHUB_TOKEN $OPENAI_API_KEY"'])).stdout).toBe('ghp_shared_canary sk_root_only_canary\n');
    } finally {
      c.close();
    }
  });

  it('keeps the group through refresh-auth and a stop and start', async () => {
    expect((await d.cli(['auth', 'set', 'github'], 'ghp_rotated_canary')).code).toBe(0);
    expect((await d.cli(['session', 'refresh-auth', 'team'])).code).toBe(0);
    expect((await as('bob', 'cat /run/enclave/auth/github.token')).stdout).toBe('ghp_rotated_canaryexit=0\n');
    expect((await d.cli(['session', 'stop', 'team'])).code).toBe(0);
    expect((await d.cli(['session', 'start', 'team'])).code).toBe(0);
    expect((await as('bob', FILL)).stdout).toContain('password=ghp_rotated_canary');
    expect((await as('carol', 'cat /run/enclave/auth/github.token')).stdout).toMatch(/Permission denied/);
  });

  it('refuses users for an undeclared secret, and under strict, before anything exists', async () => {
    const undeclared = await d.api('POST', '/v1/sessions', { name: 'bad', auth: ['github'], secret_users: { OPENAI_API_KEY: ['bob'] } });
    expect(undeclared.status).toBe(400);
    expect(JSON.stringify(undeclared.body)).toMatch(/does not declare/);
    const strict = await d.api('POST', '/v1/sessions', { name: 'bad', profile: 'strict', auth: ['github'], secret_users: { github: ['bob'] } });
    expect(strict.status).toBe(400);
    expect(JSON.stringify(strict.body)).toMatch(/secret_users needs a writable root/);
    const badUser = await d.cli(['session', 'create', '--name', 'bad', '--auth', 'github:bo:b']);
    expect(badUser.code).toBe(2);
    expect((await d.api('GET', '/v1/sessions/bad')).status).toBe(404);
  });
});
