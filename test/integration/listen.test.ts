// The TCP listener for the browser page: token, tickets, Host and Origin,
// client limits, pings. Every refusal happens before a WebSocket upgrade.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readFileSync, statSync } from 'node:fs';
import { request } from 'node:http';
import { join } from 'node:path';
import WebSocket from 'ws';
import { ATTACH_PROTOCOL } from '../../src/terminal/console.js';
import { isRoot, TestDaemon } from './harness.js';

const port = 30000 + (process.pid % 20000);
const base = `127.0.0.1:${port}`;

function http(method: string, path: string, headers: Record<string, string> = {}): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, method, path, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString() }));
    });
    req.on('error', reject);
    req.end();
  });
}

/** Status of a WebSocket attempt: 101 if it upgraded, else the HTTP refusal. */
function upgrade(path: string, headers: Record<string, string> = {}): Promise<{ status: number; ws?: WebSocket }> {
  return new Promise((resolve) => {
    const ws = new WebSocket(`ws://${base}${path}`, [ATTACH_PROTOCOL], { headers });
    ws.on('unexpected-response', (_q, res) => resolve({ status: res.statusCode ?? 0 }));
    ws.on('open', () => resolve({ status: 101, ws }));
    ws.on('error', () => undefined);
  });
}

function closeAndWait(ws: WebSocket): Promise<void> {
  return new Promise((r) => {
    ws.once('close', () => setTimeout(r, 50)); // and the daemon's bookkeeping
    ws.close();
  });
}

describe.skipIf(!isRoot)('TCP listener (root)', () => {
  const d = new TestDaemon({
    topConfig: `listen = "${base}"\n`,
    extraConfig: '[terminal]\nmax_viewers_per_session = 2\nping_ms = 200\n',
  });
  let token: string;
  const bearer = () => ({ authorization: `Bearer ${token}` });

  beforeAll(async () => {
    await d.start();
    await d.create({ name: 'web' });
    token = readFileSync(join(d.stateDir, 'listen-token'), 'utf8').trim();
  });
  afterAll(async () => {
    await d.cleanup();
  });

  it('keeps the token root-only', () => {
    const mode = statSync(join(d.stateDir, 'listen-token')).mode & 0o777;
    expect(mode).toBe(0o600);
    expect(token.length).toBeGreaterThanOrEqual(40);
  });

  it('serves the page only to its own Host', async () => {
    const page = await http('GET', '/');
    expect(page.status).toBe(200);
    expect(page.body).toContain('/assets/xterm.js');
    expect((await http('GET', '/assets/xterm.js')).status).toBe(200);
    expect((await http('GET', '/', { host: `evil.example:${port}` })).status).toBe(421);
  });

  it('answers the API only with the bearer token', async () => {
    expect((await http('GET', '/v1/sessions')).status).toBe(401);
    expect((await http('GET', '/v1/sessions', { authorization: 'Bearer nope' })).status).toBe(401);
    const ok = await http('GET', '/v1/sessions', bearer());
    expect(ok.status).toBe(200);
    expect(JSON.parse(ok.body).sessions.map((s: { name: string }) => s.name)).toEqual(['web']);
    expect((await http('GET', '/v1/sessions', { ...bearer(), origin: 'http://evil.example' })).status).toBe(403);
  });

  it('refuses a WebSocket with a wrong token (401), a foreign Origin (403) or Host (421), before upgrading', async () => {
    expect((await upgrade('/v1/sessions/web/attach', { authorization: 'Bearer wrong' })).status).toBe(401);
    expect((await upgrade('/v1/sessions/web/attach')).status).toBe(401);
    expect((await upgrade('/v1/sessions/web/attach', { ...bearer(), origin: 'http://evil.example' })).status).toBe(403);
    expect((await upgrade('/v1/sessions/web/attach', { ...bearer(), host: `evil.example:${port}` })).status).toBe(421);
  });

  it('lets a browser in with a single-use ticket', async () => {
    const t = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = request({ host: '127.0.0.1', port, method: 'POST', path: '/v1/tickets', headers: bearer() }, (res) => {
        const c: Buffer[] = [];
        res.on('data', (b: Buffer) => c.push(b));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(c).toString() }));
      });
      req.on('error', reject);
      req.end();
    });
    expect(t.status).toBe(201);
    const { ticket } = JSON.parse(t.body) as { ticket: string };
    const first = await upgrade(`/v1/sessions/web/attach?ticket=${ticket}`, { origin: `http://${base}` });
    expect(first.status).toBe(101);
    await closeAndWait(first.ws!);
    expect((await upgrade(`/v1/sessions/web/attach?ticket=${ticket}`)).status).toBe(401);
  });

  it('refuses viewers beyond the per-session limit with 429', async () => {
    const a = await upgrade('/v1/sessions/web/attach', bearer());
    const b = await upgrade('/v1/sessions/web/attach', bearer());
    expect([a.status, b.status]).toEqual([101, 101]);
    const c = await upgrade('/v1/sessions/web/attach', bearer());
    expect(c.status).toBe(429);
    await closeAndWait(a.ws!);
    await closeAndWait(b.ws!);
  });

  it('closes a client that stops answering pings', async () => {
    const watcher = await upgrade('/v1/sessions/web/attach', bearer());
    const dead = await upgrade('/v1/sessions/web/attach', bearer());
    expect([watcher.status, dead.status]).toEqual([101, 101]);
    const viewers: number[] = [];
    watcher.ws!.on('message', (m: Buffer) => {
      if (m[0] === 5) {
        const e = JSON.parse(m.subarray(1).toString()) as { type: string; viewers?: number };
        if (e.type === 'viewers') viewers.push(e.viewers!);
      }
    });
    // Stop reading: no pong will ever be sent.
    (dead.ws as unknown as { _socket: { pause(): void } })._socket.pause();
    for (const deadline = Date.now() + 5000; !viewers.includes(1) && Date.now() < deadline; ) await new Promise((r) => setTimeout(r, 50));
    expect(viewers).toContain(1);
    watcher.ws!.close();
    dead.ws!.terminate();
  });

  it('never logs the token', () => {
    expect(d.log()).not.toContain(token);
  });

  it('acts for access.tcp_uid: the policy applies to the token, and the audit trail says tcp', async () => {
    await d.stop();
    d.reconfigure({ topConfig: `listen = "${base}"\n`, extraConfig: '[terminal]\nmax_viewers_per_session = 2\nping_ms = 200\n[access]\ntcp_uid = 4242\n' });
    await d.start();
    token = readFileSync(join(d.stateDir, 'listen-token'), 'utf8').trim();
    const r = await http('GET', '/v1/sessions', { ...bearer(), host: base });
    expect(r.status).toBe(403);
    expect(r.body).toContain('uid 4242 may not session.list');
    const events = (JSON.parse((await d.cli(['events', '--json'])).stdout) as { events: { caller_uid: number; via: string; decision: string }[] }).events;
    expect(events).toContainEqual(expect.objectContaining({ caller_uid: 4242, via: 'tcp', decision: 'deny' }));
  });
});
