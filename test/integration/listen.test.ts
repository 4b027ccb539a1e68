// The TCP listener for the browser page: token, tickets, the sign-in
// cookie, Host and Origin, client limits, pings. Every refusal happens
// before a WebSocket upgrade.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHmac } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { request, type IncomingHttpHeaders } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import WebSocket from 'ws';
import { ATTACH_PROTOCOL } from '../../src/terminal/console.js';
import { LoginCookies } from '../../src/daemon/loginCookie.js';
import { isRoot, listenPort, TestDaemon } from './harness.js';

const port = listenPort(3);
const base = `127.0.0.1:${port}`;

function http(method: string, path: string, headers: Record<string, string> = {}): Promise<{ status: number; body: string; headers: IncomingHttpHeaders }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, method, path, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString(), headers: res.headers }));
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

  it('trades the token for a sign-in cookie that survives a restart, only on the page\'s own requests', async () => {
    const cookieName = `enclave-${port}`;
    const page = { origin: `http://${base}`, 'sec-fetch-site': 'same-origin' };
    expect((await http('POST', '/v1/login', page)).status).toBe(401); // the token buys it, nothing else
    const login = await http('POST', '/v1/login', { ...page, ...bearer() });
    expect(login.status).toBe(200);
    const set = String(login.headers['set-cookie']);
    expect(set).toMatch(new RegExp(`^${cookieName}=v1\\.[^;]+; Path=/; Max-Age=\\d+; HttpOnly; SameSite=Strict$`));
    const value = set.slice(cookieName.length + 1, set.indexOf(';'));
    const jar = { cookie: `other=1; ${cookieName}=${value}` };
    expect(JSON.parse(login.body)).toMatchObject({ uid: 0 });
    expect((await http('GET', '/v1/sessions', { ...jar, ...page })).status).toBe(200);
    // Not from another origin or site (a published port of the same host is same-site), nor without a browser's word.
    expect((await http('GET', '/v1/sessions', { ...jar, 'sec-fetch-site': 'same-site' })).status).toBe(401);
    expect((await http('GET', '/v1/sessions', { ...jar, origin: 'http://127.0.0.1:8080' })).status).toBe(403);
    expect((await http('GET', '/v1/sessions', jar)).status).toBe(401);
    // A WebSocket with the cookie and the page's Origin, no ticket.
    const ws = await upgrade('/v1/sessions/web/attach', { ...jar, origin: `http://${base}` });
    expect(ws.status).toBe(101);
    await closeAndWait(ws.ws!);

    // A restart makes a new token; the cookie still works.
    await d.stop();
    await d.start();
    expect(readFileSync(join(d.stateDir, 'listen-token'), 'utf8').trim()).not.toBe(token);
    token = readFileSync(join(d.stateDir, 'listen-token'), 'utf8').trim();
    expect((await http('GET', '/v1/sessions', { ...jar, ...page })).status).toBe(200);

    // Forged: a later expiry under the same MAC. Expired: a right MAC (the key is root's to read) on a past expiry.
    const [v, exp, uid, id] = value.split('.') as [string, string, string, string, string];
    const forged = `${cookieName}=${[v, String(Number(exp) + 86400), uid, id, value.split('.')[4]].join('.')}`;
    const refused = await http('GET', '/v1/sessions', { cookie: forged, ...page });
    expect(refused.status).toBe(401);
    expect(refused.body).toContain("not this daemon's");
    const key = Buffer.from(readFileSync(join(d.stateDir, 'listen-cookie-key'), 'utf8').trim(), 'base64url');
    const past = String(Math.floor(Date.now() / 1000) - 60);
    const mac = createHmac('sha256', key).update(`enclave-login v1.${past}.${uid}.${id}`).digest('base64url');
    const expired = await http('GET', '/v1/sessions', { cookie: `${cookieName}=v1.${past}.${uid}.${id}.${mac}`, ...page });
    expect(expired.status).toBe(401);
    expect(expired.body).toContain('expired');
    // Another state dir's daemon: another key.
    const otherDir = mkdtempSync(join(tmpdir(), 'enclave-other-state-'));
    try {
      const other = LoginCookies.open(otherDir, pino({ level: 'silent' })).issue(0).value;
      const foreign = await http('GET', '/v1/sessions', { cookie: `${cookieName}=${other}`, ...page });
      expect(foreign.status).toBe(401);
      expect(foreign.body).toContain("not this daemon's");
    } finally {
      rmSync(otherDir, { recursive: true, force: true });
    }

    // Sign-out: cleared in the browser and refused from now on, after a restart too.
    const out = await http('POST', '/v1/logout', { ...jar, ...page });
    expect(out.status).toBe(200);
    expect(String(out.headers['set-cookie'])).toMatch(new RegExp(`^${cookieName}=; Path=/; Max-Age=0;`));
    expect((await http('GET', '/v1/sessions', { ...jar, ...page })).status).toBe(401);
    await d.stop();
    await d.start();
    token = readFileSync(join(d.stateDir, 'listen-token'), 'utf8').trim();
    const after = await http('GET', '/v1/sessions', { ...jar, ...page });
    expect(after.status).toBe(401);
    expect(after.body).toContain('signed out');
    expect(statSync(join(d.stateDir, 'listen-cookie-key')).mode & 0o777).toBe(0o600);
    expect(d.log()).not.toContain(value.split('.')[4]);
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
