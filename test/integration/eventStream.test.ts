// GET /v1/events/stream: sessions and audit events pushed as they happen,
// filtered as the lists are. Root on the Unix socket sees everyone's; the
// TCP listener acting as a self-scoped uid sees its own sessions and calls,
// and nothing of root's; a reconnect replays the audit events it missed.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Enclave, type StreamEvent } from '../../src/client/index.js';
import { isRoot, listenPort, TestDaemon } from './harness.js';

const TENANT = 4242;
const port = listenPort(2);
type Events = AsyncGenerator<StreamEvent, void, undefined>;

/** Events from `it` until one matches (returned last); the test's timeout bounds the wait. */
async function until(it: Events, seen: StreamEvent[], match: (e: StreamEvent) => boolean): Promise<StreamEvent> {
  for (;;) {
    const r = await it.next();
    if (r.done) throw new Error(`the stream ended; seen: ${JSON.stringify(seen.map((e) => e.type))}`);
    seen.push(r.value);
    if (match(r.value)) return r.value;
  }
}

const stateOf = (name: string, state: string) => (e: StreamEvent) => e.type === 'session' && e.session.name === name && e.session.state === state;
const audit = (action: string, name: string) => (e: StreamEvent) => e.type === 'audit' && e.event.action === action && e.event.decision === 'allow' && (e.event.session_name === name || e.event.detail === name);

describe.skipIf(!isRoot)('event stream (root)', () => {
  const d = new TestDaemon({
    topConfig: `listen = "127.0.0.1:${port}"\n`,
    extraConfig: `[access]\ntcp_uid = ${TENANT}\n[[access.rules]]\nname = "page"\nuids = [${TENANT}]\nactions = ["session.*", "events.list"]\nscope = "self"\n`,
  });
  let root: Enclave;
  let tenant: Enclave;

  beforeAll(async () => {
    await d.start();
    root = new Enclave({ socket: d.socket });
    tenant = new Enclave({ url: `http://127.0.0.1:${port}`, token: readFileSync(join(d.stateDir, 'listen-token'), 'utf8').trim() });
  });
  afterAll(async () => {
    root?.close();
    tenant?.close();
    await d.cleanup();
  });

  it('pushes each caller its own sessions and events, and root everyone\'s', { timeout: 90_000 }, async () => {
    const rootStream = await root.eventStream();
    const tenantStream = await tenant.eventStream();
    const rootSeen: StreamEvent[] = [];
    const tenantSeen: StreamEvent[] = [];
    // With the reader's place in the trail: a reconnect before any audit event misses none.
    expect(await until(rootStream, rootSeen, (e) => e.type === 'sessions')).toEqual({ type: 'sessions', sessions: [], place: expect.stringMatching(/^\d+$/) });
    expect(await until(tenantStream, tenantSeen, (e) => e.type === 'sessions')).toEqual({ type: 'sessions', sessions: [], place: expect.stringMatching(/^\d+$/) });

    const mine = await root.create({ name: 'roots', memory_mb: 128 });
    await until(rootStream, rootSeen, stateOf('roots', 'running'));
    const theirs = await tenant.create({ name: 'page', memory_mb: 128 });
    expect(theirs.owner_uid).toBe(TENANT);
    // Root hears of the tenant's session and call too.
    await until(rootStream, rootSeen, stateOf('page', 'running'));
    expect(rootSeen.some(audit('session.create', 'roots'))).toBe(true);
    // The tenant: its own session's states and its own calls, in order...
    await until(tenantStream, tenantSeen, stateOf('page', 'running'));
    await tenant.stop('page');
    await until(tenantStream, tenantSeen, stateOf('page', 'stopped'));
    expect(tenantSeen.some(audit('session.create', 'page'))).toBe(true);
    expect(tenantSeen.some(audit('session.stop', 'page'))).toBe(true);
    // ...and nothing of root's, though root's came first: one connection keeps the order.
    const leaked = tenantSeen.filter((e) => JSON.stringify(e).includes(mine.id) || (e.type === 'audit' && e.event.caller_uid !== TENANT && e.event.object_owner !== TENANT));
    expect(leaked).toEqual([]);
    // Allowed reads are left out unless asked for, as in the list.
    expect(tenantSeen.some((e) => e.type === 'audit' && e.event.action === 'session.list')).toBe(false);

    // A reconnect with the last id it saw gets what it missed, and the sessions afresh.
    const lastId = Math.max(...tenantSeen.flatMap((e) => (e.type === 'audit' ? [e.event.id] : [])));
    await tenantStream.return();
    await tenant.start('page');
    await root.destroy('roots');
    const again = await tenant.eventStream({ after: lastId });
    const againSeen: StreamEvent[] = [];
    const fresh = await until(again, againSeen, (e) => e.type === 'sessions');
    expect(fresh.type === 'sessions' && fresh.sessions.map((s) => [s.name, s.state])).toEqual([['page', 'running']]);
    await until(again, againSeen, audit('session.start', 'page'));
    await tenant.destroy('page');
    await until(again, againSeen, stateOf('page', 'destroyed'));
    expect(againSeen.filter((e) => JSON.stringify(e).includes(mine.id))).toEqual([]);
    await until(rootStream, rootSeen, stateOf('roots', 'destroyed'));
    await again.return();
    await rootStream.return();
  });

  it('refuses a Last-Event-ID that is not an event id, naming the header', async () => {
    const r = await d.rawRequest('GET', '/v1/events/stream', '', { 'last-event-id': 'abc' });
    expect(r.status).toBe(400);
    expect(JSON.stringify(r.body)).toContain('Last-Event-ID');
  });
});
