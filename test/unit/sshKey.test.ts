import { describe, expect, it } from 'vitest';
import { sshKeyProblem } from '../../src/vocab/sshKey.js';
import { createSessionRequest } from '../../src/api/schemas.js';

const ED = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPCj1W4/u4Babbxl0UGFgDhpnbjYZvc+i/2A+Oi/2Fvd me@laptop';

describe('OpenSSH public key lines', () => {
  it('takes a key line, with or without a comment', () => {
    expect(sshKeyProblem(ED)).toBeUndefined();
    expect(sshKeyProblem(ED.split(' ').slice(0, 2).join(' '))).toBeUndefined();
    expect(createSessionRequest.safeParse({ ssh_key: ED }).success).toBe(true);
  });

  it.each([
    ['an empty string', '', /not an OpenSSH public key line/],
    ['two lines', `${ED}\n${ED}`, /not an OpenSSH public key line/],
    ['options before the type', `command="sh" ${ED}`, /not an OpenSSH public key line/],
    ['an unknown type', 'ssh-dss AAAAB3NzaC1kc3M=', /key type 'ssh-dss'/],
    ['a blob of another type', 'ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAIPCj1W4/u4Babbxl0UGFgDhpnbjYZvc+i/2A+Oi/2Fvd', /not a ssh-rsa key/],
    ['a cut blob', 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA==', /cut short/],
    ['a huge line', `ssh-rsa ${'A'.repeat(9000)}`, /longer than/],
  ])('refuses %s', (_, line, why) => {
    expect(sshKeyProblem(line)).toMatch(why);
    const r = createSessionRequest.safeParse({ ssh_key: line });
    expect(r.success).toBe(false);
    expect(r.error?.issues[0]?.message).toMatch(/^must be an OpenSSH public key: it /);
  });
});

describe('session create --auth/--env-token NAME:USERS', async () => {
  const { secretFlags } = await import('../../src/cli/createFlags.js');
  it('splits users off a reference, keeping UID:NAME for another owner\'s', () => {
    expect(secretFlags(['github', 'npm:bob,alice', '1000:gitlab', '1000:pypi:carol'], ['OPENAI_API_KEY:bob'])).toEqual({
      auth: ['github', 'npm', '1000:gitlab', '1000:pypi'],
      env_tokens: ['OPENAI_API_KEY'],
      secret_users: { npm: ['bob', 'alice'], pypi: ['carol'], OPENAI_API_KEY: ['bob'] },
    });
    expect(secretFlags(undefined, undefined)).toEqual({});
  });
});
