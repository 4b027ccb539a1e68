import { describe, expect, it } from 'vitest';
import { createSessionRequest, destroyQuery, execQuery, sessionName, sessionRef } from '../../src/api/schemas.js';
import { zodToApiError } from '../../src/vocab/errors.js';
import { hostnameFor, newSessionId } from '../../src/sessions/identity.js';

describe('session names', () => {
  it.each(['a', 'web-1', 'agent_7', '0day', 'a'.repeat(63)])('accepts %j', (n) => {
    expect(sessionName.safeParse(n).success).toBe(true);
  });
  it.each(['', 'A', '-x', '_x', 'a b', 'a/b', 'a.b', 'a'.repeat(64), 's-0123456789', 'é'])('refuses %j', (n) => {
    expect(sessionName.safeParse(n).success).toBe(false);
  });
  it('resolves ids and names as references, nothing else', () => {
    expect(sessionRef.safeParse('s-00ff00ff00').success).toBe(true);
    expect(sessionRef.safeParse('web-1').success).toBe(true);
    expect(sessionRef.safeParse('../etc').success).toBe(false);
  });
  it('generates ids of the documented shape', () => {
    for (let i = 0; i < 50; i++) expect(newSessionId()).toMatch(/^s-[0-9a-f]{10}$/);
  });
  it('derives a DNS-label hostname from the name, else the id', () => {
    expect(hostnameFor('s-0000000001', 'web_1')).toBe('web-1');
    expect(hostnameFor('s-0000000001', null)).toBe('s-0000000001');
    expect(hostnameFor('s-0000000001', 'x_')).toBe('x');
  });
});

describe('create request', () => {
  it('names the offending field in the API error', () => {
    const r = createSessionRequest.safeParse({ name: 'ok', bogus: 1 });
    expect(r.success).toBe(false);
    const e = zodToApiError(r.error!, 'session create request');
    expect(e.status).toBe(400);
    expect(e.field).toBe('bogus');
    expect(e.message).toBe("invalid session create request: unknown field 'bogus'");
  });
  it('refuses limits out of range', () => {
    expect(createSessionRequest.safeParse({ memory_mb: 1 }).success).toBe(false);
    expect(createSessionRequest.safeParse({ pids: 8.5 }).success).toBe(false);
    expect(createSessionRequest.safeParse({ memory_mb: 64, pids: 64 }).success).toBe(true);
  });
});

describe('exec query', () => {
  it('parses repeated command and env, flags and cwd', () => {
    const q = execQuery.parse({ command: ['sh', '-c', 'x'], env: ['A=1', 'B='], stdin: '1', tty: 'false', cwd: '/tmp' });
    expect(q).toEqual({ command: ['sh', '-c', 'x'], env: ['A=1', 'B='], stdin: true, stdout: true, stderr: true, tty: false, cwd: '/tmp' });
  });
  it('refuses a missing command, bad env and relative cwd', () => {
    expect(execQuery.safeParse({ command: [], env: [] }).success).toBe(false);
    expect(execQuery.safeParse({ command: ['x'], env: ['1A=b'] }).success).toBe(false);
    expect(execQuery.safeParse({ command: ['x'], env: [], cwd: 'tmp' }).success).toBe(false);
    expect(execQuery.safeParse({ command: ['x'], env: [], follow: '1' }).success).toBe(false);
  });
});

describe('destroy query', () => {
  it('takes force, a timeout in whole seconds, and a one-line failure reason', () => {
    expect(destroyQuery.parse({ force: '1' })).toEqual({ force: true });
    expect(destroyQuery.parse({ timeout: '5' })).toEqual({ timeout: 5 });
    expect(destroyQuery.parse({ failure: 'restore of x failed: out of memory' })).toEqual({ failure: 'restore of x failed: out of memory' });
  });
  it.each([{ timeout: '-1' }, { timeout: '1.5' }, { timeout: '3601' }, { force: '1', timeout: '3' }, { failure: 'two\nlines' }, { failure: '' }, { why: 'x' }])('refuses %j', (q) => {
    expect(destroyQuery.safeParse(q).success).toBe(false);
  });
});
