import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { PREPARE_SCRIPT, prepareArgv, SSHD_CONFIG } from '../../src/sessions/prepare.js';

describe('preparing a session inside', () => {
  it('runs nothing without a key or a shared secret', () => {
    expect(prepareArgv({ mode: 'create', sshKey: null, groups: [] })).toBeUndefined();
  });

  it('passes the key and the groups as arguments, never as script text', () => {
    const argv = prepareArgv({ mode: 'start', sshKey: 'ssh-ed25519 AAAA x', groups: [{ name: 'secret-github', gid: 65000, users: ['bob', 'alice'] }] })!;
    expect(argv.slice(0, 2)).toEqual(['sh', '-c']);
    expect(argv[2]).toBe(PREPARE_SCRIPT);
    expect(argv.slice(3)).toEqual(['prepare', 'start', 'ssh-ed25519 AAAA x', 'secret-github:65000:bob,alice']);
  });

  it('is a script sh can parse, and an sshd configuration that logs in by key only', () => {
    expect(spawnSync('sh', ['-n', '-c', PREPARE_SCRIPT]).status).toBe(0);
    expect(SSHD_CONFIG).toMatch(/^PasswordAuthentication no$/m);
    expect(SSHD_CONFIG).toMatch(/^PermitRootLogin prohibit-password$/m);
  });
});
