// Bad input is a 4xx with a message naming what is wrong, and changes nothing.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isRoot, TestDaemon } from './harness.js';

describe.skipIf(!isRoot)('bad input (root)', () => {
  const d = new TestDaemon();
  let before: unknown;
  beforeAll(async () => {
    await d.start();
    await d.create({ name: 'existing' });
    before = (await d.api('GET', '/v1/sessions?all=1')).body;
  });
  afterAll(async () => {
    // Nothing above may have changed the sessions.
    expect((await d.api('GET', '/v1/sessions?all=1')).body).toEqual(before);
    await d.cleanup();
  });

  it.each([
    ['Upper', 'name'],
    ['-leading-dash', 'name'],
    ['a'.repeat(64), 'name'],
    ['has space', 'name'],
    ['s-0123456789', 'name'],
  ])('refuses the name %j with a 400 naming the field', async (name, field) => {
    const r = await d.api('POST', '/v1/sessions', { name });
    expect(r.status).toBe(400);
    expect(r.body).toMatchObject({ error: { code: 'invalid_request', field } });
    expect((r.body as { error: { message: string } }).error.message).toMatch(/name/);
  });

  it('refuses unknown fields, naming them', async () => {
    const r = await d.api('POST', '/v1/sessions', { name: 'ok', privileged: true });
    expect(r.status).toBe(400);
    expect(r.body).toMatchObject({ error: { code: 'invalid_request', field: 'privileged' } });
    expect((r.body as { error: { message: string } }).error.message).toContain("unknown field 'privileged'");
  });

  it('refuses wrong types and out-of-range limits', async () => {
    const t = await d.api('POST', '/v1/sessions', { memory_mb: '512' });
    expect(t.status).toBe(400);
    expect(t.body).toMatchObject({ error: { field: 'memory_mb' } });
    const r = await d.api('POST', '/v1/sessions', { pids: 1 });
    expect(r.status).toBe(400);
    expect(r.body).toMatchObject({ error: { field: 'pids' } });
  });

  it('refuses bad JSON and non-JSON bodies', async () => {
    const bad = await d.rawRequest('POST', '/v1/sessions', '{"name":', { 'content-type': 'application/json' });
    expect(bad.status).toBe(400);
    expect((bad.body as { error: { message: string } }).error.message).toMatch(/not valid JSON/);
    const arr = await d.rawRequest('POST', '/v1/sessions', '[1,2]', { 'content-type': 'application/json' });
    expect(arr.status).toBe(400);
    const type = await d.rawRequest('POST', '/v1/sessions', 'name=x', { 'content-type': 'application/x-www-form-urlencoded' });
    expect(type.status).toBe(415);
  });

  it('refuses oversized bodies', async () => {
    const big = JSON.stringify({ name: 'x'.repeat(200 * 1024) });
    const r = await d.rawRequest('POST', '/v1/sessions', big, { 'content-type': 'application/json' });
    expect(r.status).toBe(413);
    const chunked = await d.rawRequest('POST', '/v1/sessions', Buffer.from(big), { 'content-type': 'application/json', 'transfer-encoding': 'chunked' });
    expect(chunked.status).toBe(413);
  });

  it('answers 404 for unknown sessions and 400 for malformed references', async () => {
    for (const [method, ref] of [['GET', 's-0000000000'], ['DELETE', 's-0000000000'], ['GET', 'no-such-name']] as const) {
      const r = await d.api(method, `/v1/sessions/${ref}`);
      expect(r.status).toBe(404);
      expect(r.body).toMatchObject({ error: { code: 'not_found' } });
    }
    const bad = await d.api('GET', '/v1/sessions/..%2F..%2Fetc');
    expect(bad.status).toBe(400);
  });

  it('refuses a second live session with the same name', async () => {
    const r = await d.api('POST', '/v1/sessions', { name: 'existing' });
    expect(r.status).toBe(409);
    expect(r.body).toMatchObject({ error: { code: 'conflict', field: 'name' } });
  });

  it('refuses bad exec queries before upgrading', async () => {
    const r = await d.cli(['session', 'exec', 'existing', '--env', '1BAD=x', '--', 'true']);
    expect(r.code).toBe(2);
    const rel = await d.cli(['session', 'exec', 'existing', '--cwd', 'relative', '--', 'true']);
    expect(rel.code).toBe(1);
    expect(rel.stderr).toMatch(/cwd.*absolute path/);
  });

  it('reports CLI usage errors with exit 2 and one line', async () => {
    const r = await d.cli(['session', 'create', '--memory', 'lots']);
    expect(r.code).toBe(2);
    expect(r.stderr).toBe("enclave: --memory: 'lots' is not a whole number\n");
    const n = await d.cli(['session', 'create', '--name', 'Bad Name']);
    expect(n.code).toBe(2);
    expect(n.stderr).toMatch(/^enclave: session create: --name: must match/);
  });

  it('routes from one table: wrong method, unknown path and a WebSocket endpoint over plain HTTP each get a clear 4xx', async () => {
    const wrong = await d.api('PUT', '/v1/sessions');
    expect(wrong.status).toBe(400);
    expect((wrong.body as { error: { message: string } }).error.message).toBe('method PUT not allowed on /v1/sessions (GET, POST)');
    const wrongOne = await d.api('POST', '/v1/sessions/s-0000000000');
    expect((wrongOne.body as { error: { message: string } }).error.message).toBe('method POST not allowed on /v1/sessions/s-0000000000 (GET, DELETE)');
    const unknown = await d.api('GET', '/v1/nothing');
    expect(unknown.status).toBe(404);
    expect((unknown.body as { error: { message: string } }).error.message).toBe('no such endpoint: GET /v1/nothing');
    const plain = await d.api('GET', '/v1/sessions/x/exec');
    expect(plain.status).toBe(400);
    expect((plain.body as { error: { message: string } }).error.message).toBe('exec is a WebSocket endpoint: send an Upgrade request');
    // Tickets exist only on the TCP listener.
    expect((await d.api('POST', '/v1/tickets')).status).toBe(404);
  });
});
