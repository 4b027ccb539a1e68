// Access control, ownership, audit and abuse limits (issue 13): a non-root
// caller is denied by default; a rule lets it act on its own sessions only;
// deny wins; root can do anything; every decision is an audit event listed
// by `enclave events`; per-uid caps and rate limits answer 429.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cliAs, isRoot, requestsAs, TestDaemon } from './harness.js';

const GID = 48215; // a group nobody on the machine has
const NOBODY = 65534;

/** The enclave CLI as uid 65534 with the socket group. */
const cliAsNobody = (socket: string, args: string[]) => cliAs(socket, { uid: NOBODY, groups: [GID] }, args);

describe.skipIf(!isRoot)('access control and audit (root)', () => {
  const d = new TestDaemon({ topConfig: `socket_gid = ${GID}\n` });
  beforeAll(async () => {
    await d.start();
  });
  afterAll(async () => {
    await d.cleanup();
  });

  const events = async (args: string[] = []) =>
    (JSON.parse((await d.cli(['events', '--json', ...args])).stdout) as { events: { caller_uid: number; action: string; session_id: string | null; decision: string; rule: string; detail: string | null }[] }).events;

  it('denies a non-root caller by default, and says why', async () => {
    const list = await cliAsNobody(d.socket, ['session', 'list']);
    expect(list.code).toBe(1);
    expect(list.stderr).toContain(`uid ${NOBODY} may not session.list: no access rule allows it (non-root callers are denied by default)`);
    const create = await cliAsNobody(d.socket, ['session', 'create', '--name', 'sneaky']);
    expect(create.code).toBe(1);
    expect(create.stderr).toMatch(/may not session.create/);
    const denied = (await events()).filter((e) => e.caller_uid === NOBODY);
    expect(denied.map((e) => [e.action, e.decision, e.rule])).toEqual([
      ['session.list', 'deny', 'default'],
      ['session.create', 'deny', 'default'],
    ]);
  });

  it('whoami tells any caller on the socket who the daemon takes it for, without a rule (a route-table command)', async () => {
    const nobody = await cliAsNobody(d.socket, ['whoami']);
    expect(nobody.code).toBe(0);
    expect(nobody.stdout).toBe(`uid: ${NOBODY}\ngids: [${NOBODY},${GID}]\nvia: socket\n`);
    const root = JSON.parse((await d.cli(['whoami', '--json'])).stdout) as { uid: number; gids: number[]; via: string };
    expect(root.uid).toBe(0);
    expect(root.via).toBe('socket');
    expect((await cliAsNobody(d.socket, ['whoami', 'extra'])).code).toBe(2);
  });

  it('with a rule, lets it create and use its own sessions only; deny wins; root can do anything', async () => {
    await d.stop();
    d.reconfigure({
      topConfig: `socket_gid = ${GID}\n`,
      extraConfig:
        `[access]\nmax_sessions_per_uid = 2\nrate_per_minute = 20\n` +
        `[[access.rules]]\nname = "nobody-own"\nuids = [${NOBODY}]\nactions = ["session.*"]\nscope = "self"\n` +
        `[[access.rules]]\nname = "no-destroy"\ngids = [${GID}]\nactions = ["session.destroy"]\neffect = "deny"\n`,
    });
    await d.start();
    const root = await d.create({ name: 'roots' });
    const made = await cliAsNobody(d.socket, ['session', 'create', '--name', 'mine', '--json']);
    expect(made.code).toBe(0);
    const mine = JSON.parse(made.stdout) as { id: string; owner_uid: number };
    expect(mine.owner_uid).toBe(NOBODY);
    expect(root.owner_uid).toBe(0);

    const own = await cliAsNobody(d.socket, ['session', 'exec', 'mine', '--', 'sh', '-c', 'echo inside $(hostname)']);
    expect(own.stdout).toBe('inside mine\n');
    const listed = (JSON.parse((await cliAsNobody(d.socket, ['session', 'list', '--json'])).stdout) as { sessions: { name: string }[] }).sessions;
    expect(listed.map((s) => s.name)).toEqual(['mine']);

    // Not its own: show, exec, attach and destroy are refused before anything happens. By id:
    // a bare name is looked up among the caller's own sessions (tenants.test.ts).
    const [show, exec, attach, destroy] = requestsAs(d.socket, { uid: NOBODY, groups: [GID] }, [
      { method: 'GET', path: `/v1/sessions/${root.id}` },
      { method: 'GET', path: `/v1/sessions/${root.id}/exec?command=id`, upgrade: true },
      { method: 'GET', path: `/v1/sessions/${root.id}/attach`, upgrade: true },
      { method: 'DELETE', path: `/v1/sessions/${root.id}` },
    ]);
    for (const [status, body] of [show!, exec!, attach!]) {
      expect(status).toBe(403);
      expect(body).toContain(`on session ${root.id}: no access rule allows it`);
    }
    // Deny wins: the group rule refuses destroy even of its own session.
    expect(destroy![0]).toBe(403);
    const ownDestroy = await cliAsNobody(d.socket, ['session', 'destroy', 'mine']);
    expect(ownDestroy.stderr).toContain(`may not session.destroy on session ${mine.id}: access rule no-destroy denies it`);
    expect((await d.show('roots')).state).toBe('running');
    // Root: anything, including the other user's session (named as UID:NAME: a bare name is root's own).
    expect((await d.sh(`${NOBODY}:mine`, 'echo root-in')).stdout).toBe('root-in\n');

    // Each decision is an audit event, with the command or role.
    const trail = await events();
    const ofNobody = trail.filter((e) => e.caller_uid === NOBODY);
    expect(ofNobody).toContainEqual(expect.objectContaining({ action: 'session.exec', session_id: mine.id, decision: 'allow', rule: 'nobody-own', detail: 'sh -c echo inside $(hostname)' }));
    expect(ofNobody).toContainEqual(expect.objectContaining({ action: 'session.attach', session_id: root.id, decision: 'deny', rule: 'default', detail: 'role rw' }));
    expect(ofNobody).toContainEqual(expect.objectContaining({ action: 'session.destroy', session_id: mine.id, decision: 'deny', rule: 'no-destroy' }));
    expect(trail).toContainEqual(expect.objectContaining({ caller_uid: 0, action: 'session.exec', session_id: mine.id, decision: 'allow', rule: 'root' }));
    // Filtered by session, and the human table.
    expect((await events(['--session', 'roots'])).every((e) => e.session_id === root.id)).toBe(true);
    const table = await d.cli(['events', '--since', '10m']);
    expect(table.stdout.split('\n')[0]).toMatch(/^TIME\s+USER\s+VIA\s+ACTION\s+SESSION\s+DECISION\s+RULE\s+DETAIL/);
    expect(table.stdout).toContain('no-destroy');
    // The audit trail itself is root's.
    expect((await cliAsNobody(d.socket, ['events'])).stderr).toMatch(/may not events.list/);
  });

  it('events: allowed reads only with --reads (a denied one always), filters by action family and user, a create names its session, one line per event', async () => {
    const made = await d.cli(['session', 'create', '--name', 'evented', '--json']);
    const id = (JSON.parse(made.stdout) as { id: string }).id;
    expect((await d.cli(['session', 'show', 'evented'])).code).toBe(0);
    expect((await cliAsNobody(d.socket, ['session', 'show', 'evented'])).code).toBe(1);
    expect((await d.sh('evented', 'echo one\necho two')).code).toBe(0);
    type Ev = { caller_uid: number; action: string; session_id: string | null; session_name: string | null; decision: string; detail: string | null };
    const list = async (args: string[]) => (JSON.parse((await d.cli(['events', '--json', '--limit', '10000', ...args])).stdout) as { events: Ev[] }).events;
    const plain = await list([]);
    expect(plain.some((e) => e.action === 'session.show' && e.decision === 'allow')).toBe(false);
    expect(plain).toContainEqual(expect.objectContaining({ caller_uid: NOBODY, action: 'session.show', decision: 'deny' }));
    expect(await list(['--reads'])).toContainEqual(expect.objectContaining({ caller_uid: 0, action: 'session.show', decision: 'allow', session_id: id }));
    // The create's own event names the session it made, by id and name.
    expect(plain).toContainEqual(expect.objectContaining({ action: 'session.create', session_id: id, session_name: 'evented', detail: 'evented' }));
    const execs = await list(['--action', 'session.exec', '--session', 'evented']);
    expect(execs.length).toBeGreaterThan(0);
    expect(execs.every((e) => e.action === 'session.exec')).toBe(true);
    expect((await list(['--action', 'session.*'])).every((e) => e.action.startsWith('session.'))).toBe(true);
    expect((await list(['--user', String(NOBODY)])).every((e) => e.caller_uid === NOBODY || e.session_id !== null)).toBe(true);
    expect((await list(['--user', 'nobody'])).length).toBe((await list(['--user', String(NOBODY)])).length);
    // The table: names, and a two-line command on one line, escaped.
    const table = (await d.cli(['events', '--session', 'evented', '--action', 'session.exec'])).stdout;
    const line = table.split('\n').find((l) => l.includes('echo one'))!;
    expect(line).toContain('sh -c echo one\\necho two');
    expect(line).toMatch(/\broot\s+socket\s+session\.exec\s+evented \(s-[0-9a-f]{10}\)/);
    expect((await d.cli(['events', '--action', 'nonsense!'])).stderr).toMatch(/action.*must be an action like session\.exec/);
    await d.destroy(id);
  });

  it('caps live sessions per uid and rate-limits state-changing calls with 429, while health answers', async () => {
    // It owns one; the cap is two.
    const [second] = requestsAs(d.socket, { uid: NOBODY, groups: [GID] }, [{ method: 'POST', path: '/v1/sessions', body: { name: 'mine2' } }]);
    expect(second![0]).toBe(201);
    const burst = requestsAs(
      d.socket,
      { uid: NOBODY, groups: [GID] },
      Array.from({ length: 25 }, () => ({ method: 'POST', path: '/v1/sessions', body: {} })),
    );
    const health = await d.api('GET', '/v1/health');
    expect(health.status).toBe(200);
    const statuses = burst.map(([s]) => s);
    expect(new Set(statuses)).toEqual(new Set([429]));
    expect(burst[0]![1]).toContain(`uid ${NOBODY} already owns 2 live sessions (access.max_sessions_per_uid)`);
    expect(burst[burst.length - 1]![1]).toContain('state-changing calls in a minute (access.rate_per_minute)');
    // Root is neither capped nor rate limited.
    expect((await d.api('POST', '/v1/sessions', { name: 'root2' })).status).toBe(201);
  });
});
