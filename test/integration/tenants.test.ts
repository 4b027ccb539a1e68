// Tenants (issue 22): two non-root users plus root, each with secrets,
// sessions, volumes and ports. Every case is played by the user who would
// exploit it: neither tenant can see, use, list, replace or remove the
// other's or root's objects, or learn their names from errors; a tenant at
// its budget is refused naming the budget while the other tenant and root
// still create.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { cliAs, concurrentUpgradesAs, isRoot, listenPort, requestsAs, TestDaemon, type CliResult } from './harness.js';

const GID = 48215; // a group nobody on the machine has
const A = { uid: 48301, groups: [GID] };
const B = { uid: 48302, groups: [GID] };

interface Event {
  caller_uid: number;
  rule: string;
  action: string;
  session_id: string | null;
  object_owner: number | null;
  decision: string;
  detail: string | null;
}

const ok = (r: CliResult, what: string): CliResult => {
  if (r.code !== 0) throw new Error(`${what}: exit ${r.code}: ${r.stderr}`);
  return r;
};

describe.skipIf(!isRoot)('tenants: every object has an owner (root, two real non-root users)', () => {
  const d = new TestDaemon({
    slots: 24,
    topConfig: `socket_gid = ${GID}\n`,
    extraConfig:
      `[access]\nrate_per_minute = 1000\nmax_sessions_per_uid = 8\nkeep_events = 100\n` +
      `[[access.rules]]\nname = "tenants"\ngids = [${GID}]\nactions = ["session.*", "auth.*", "volume.*", "events.list"]\nscope = "self"\n` +
      `[access.budget]\nmemory_mb = { session = 512, total = 768 }\ncpu_percent = { session = 100, total = 150 }\npids = { session = 512, total = 2048 }\n` +
      `tmp_mb = { session = 128, total = 1024 }\nhome_mb = { session = 128, total = 1024 }\nroot_mb = { session = 256, total = 2048 }\n` +
      `volume_mb = { volume = 64, total = 96 }\nviewers = { total = 3 }\nexec_streams = { total = 4 }\nsecrets = { count = 3, bytes = 65536 }\n` +
      `[terminal]\nmax_viewers_per_session = 5\n`,
  });
  const as = (who: typeof A, args: string[], input?: string) => cliAs(d.socket, who, args, input);
  const small = ['--memory', '256', '--tmp-size', '64', '--home-size', '64', '--root-size', '64', '--pids', '256', '--cpu', '50'];

  beforeAll(async () => {
    await d.start();
  });
  afterAll(async () => {
    await d.cleanup();
  });

  it('secrets belong to their owner: a tenant gets its own token, never root\'s or the other tenant\'s', async () => {
    ok(await d.cli(['auth', 'set', 'github'], 'ROOT-TOKEN-1'), 'root auth set');
    ok(await as(A, ['auth', 'set', 'github'], 'A-TOKEN-1'), 'A auth set');
    const rootSession = await d.create({ name: 'root-gh', auth: ['github'] });
    ok(await as(A, ['session', 'create', '--name', 'a-gh', '--auth', 'github', ...small]), 'A create');
    expect((await as(A, ['session', 'exec', 'a-gh', '--', 'cat', '/run/enclave/auth/github.token'])).stdout).toBe('A-TOKEN-1');
    expect((await d.sh(rootSession.id, 'cat /run/enclave/auth/github.token')).stdout).toBe('ROOT-TOKEN-1');

    // B has no github secret of its own: a bare name never reaches root's or A's.
    const bCreate = await as(B, ['session', 'create', '--name', 'b-gh', '--auth', 'github', ...small]);
    expect(bCreate.code).toBe(1);
    expect(bCreate.stderr).toContain("secret 'github'");
    expect(bCreate.stderr).not.toMatch(/48301|ROOT-TOKEN|A-TOKEN/);
    // Nor by qualifying it: root's and A's are not shared.
    for (const ref of ['0:github', '48301:github']) {
      const q = await as(B, ['session', 'create', '--auth', ref, ...small]);
      expect(q.code, ref).toBe(1);
      expect(q.stderr, ref).not.toMatch(/TOKEN/);
    }

    // Listing: each sees its own names only.
    const listOf = async (who: typeof A) => (JSON.parse(ok(await as(who, ['auth', 'list', '--json']), 'auth list').stdout) as { secrets: { name: string; owner_uid: number }[] }).secrets;
    expect((await listOf(A)).map((s) => [s.name, s.owner_uid])).toEqual([['github', A.uid]]);
    expect(await listOf(B)).toEqual([]);

    // Removing or rotating "github" as B touches nothing of A's or root's.
    const rm = await as(B, ['auth', 'remove', 'github']);
    expect(rm.code).toBe(1);
    expect(rm.stderr).toContain("no secret 'github' in the store");
    const [rmRoot, putRoot, rmA] = requestsAs(d.socket, B, [
      { method: 'DELETE', path: '/v1/auth/0:github' },
      { method: 'PUT', path: '/v1/auth/0:github', body: { value_base64: Buffer.from('EVIL').toString('base64') } },
      { method: 'DELETE', path: '/v1/auth/48301:github' },
    ]);
    for (const [status, body] of [rmRoot!, putRoot!, rmA!]) {
      expect([403, 404]).toContain(status);
      expect(body).not.toMatch(/TOKEN/);
    }
    ok(await as(B, ['auth', 'set', 'github'], 'B-TOKEN-1'), 'B auth set');
    const rootList = (JSON.parse(ok(await d.cli(['auth', 'list', '--json']), 'root list').stdout) as { secrets: { name: string; version: number }[] }).secrets;
    expect(rootList).toEqual([expect.objectContaining({ name: 'github', version: 1 })]);
    const fresh = await d.create({ auth: ['github'] });
    expect((await d.sh(fresh.id, 'cat /run/enclave/auth/github.token')).stdout).toBe('ROOT-TOKEN-1');

    // A rotates its own: the reply names only A's sessions, never root's that hold root's github.
    const rot = JSON.parse(ok(await as(A, ['auth', 'set', 'github', '--json'], 'A-TOKEN-2'), 'A rotate').stdout) as { stale_sessions: { id: string; name: string | null }[] };
    expect(rot.stale_sessions.map((s) => s.name)).toEqual(['a-gh']);
    const rmA2 = JSON.parse(ok(await as(A, ['auth', 'remove', 'github', '--json']), 'A remove').stdout) as { still_held_by: { name: string | null }[] };
    expect(rmA2.still_held_by.map((s) => s.name)).toEqual(['a-gh']);
    // Root's and B's are still there.
    expect((await listOf(B)).map((s) => s.name)).toEqual(['github']);
    expect(JSON.parse((await d.cli(['auth', 'list', '--json'])).stdout).secrets).toHaveLength(1);
  });

  it('a shared secret: root publishes it, a tenant uses it by its qualified name, and can neither list, read, replace nor remove it', async () => {
    ok(await d.cli(['auth', 'set', 'npm', '--shared'], 'SHARED-NPM-1'), 'root shared set');
    const sharedAsTenant = await as(A, ['auth', 'set', 'pypi', '--shared'], 'x');
    expect(sharedAsTenant.code).toBe(1);
    expect(sharedAsTenant.stderr).toMatch(/only root may share a secret/);
    ok(await as(B, ['session', 'create', '--name', 'b-npm', '--auth', '0:npm', ...small]), 'B create with shared');
    expect((await as(B, ['session', 'exec', 'b-npm', '--', 'cat', '/run/enclave/auth/npm.token'])).stdout).toBe('SHARED-NPM-1');
    expect(JSON.parse(ok(await as(B, ['auth', 'list', '--json']), 'B list').stdout).secrets.map((s: { name: string }) => s.name)).toEqual(['github']);
    const [put, del] = requestsAs(d.socket, B, [
      { method: 'PUT', path: '/v1/auth/0:npm', body: { value_base64: Buffer.from('EVIL').toString('base64') } },
      { method: 'DELETE', path: '/v1/auth/0:npm' },
    ]);
    expect([403, 404]).toContain(put![0]);
    expect([403, 404]).toContain(del![0]);
    // A bare "npm" is B's own namespace, which has none.
    const bare = await as(B, ['session', 'create', '--auth', 'npm', ...small]);
    expect(bare.code).toBe(1);
    // Root's rotation names every holder (root sees all sessions); B's session refreshes from the shared value.
    const rot = JSON.parse(ok(await d.cli(['auth', 'set', 'npm', '--shared', '--json'], 'SHARED-NPM-2'), 'root rotate').stdout) as { stale_sessions: { name: string | null }[] };
    expect(rot.stale_sessions.map((s) => s.name)).toEqual(['b-npm']);
    ok(await as(B, ['session', 'refresh-auth', 'b-npm']), 'B refresh');
    expect((await as(B, ['session', 'exec', 'b-npm', '--', 'cat', '/run/enclave/auth/npm.token'])).stdout).toBe('SHARED-NPM-2');
  });

  it('names are per owner: a bare name never reaches another user\'s session, and errors do not reveal it', async () => {
    const made = JSON.parse(ok(await as(A, ['session', 'create', '--name', 'prod', '--json', ...small]), 'A create prod').stdout) as { id: string; owner_uid: number };
    expect(made.owner_uid).toBe(A.uid);
    // Root's `exec prod` does not pipe its stdin into A's prod.
    const r = await d.cli(['session', 'exec', '-i', 'prod', '--', 'sh', '-c', 'cat > /tmp/got-root-stdin'], 'ROOT-INPUT');
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("no session 'prod'");
    expect(r.stderr).not.toContain(made.id);
    expect((await as(A, ['session', 'exec', 'prod', '--', 'sh', '-c', 'test -e /tmp/got-root-stdin && echo yes || echo no'])).stdout).toBe('no\n');
    // Qualified, root reaches it; and root can have a prod of its own.
    expect((await d.cli(['session', 'exec', `${A.uid}:prod`, '--', 'hostname'])).stdout).toBe('prod\n');
    const rootProd = await d.create({ name: 'prod' });
    expect(rootProd.owner_uid).toBe(0);
    expect((await d.show('prod')).id).toBe(rootProd.id);
    // B: not found, whether bare or qualified, and never A's id.
    for (const ref of ['prod', `${A.uid}:prod`]) {
      const s = await as(B, ['session', 'show', ref]);
      expect(s.code, ref).toBe(1);
      expect(s.stderr, ref).toContain('no session');
      expect(s.stderr, ref).not.toContain(made.id);
    }
    // show prints the owner.
    expect((await d.cli(['session', 'show', `${A.uid}:prod`])).stdout).toMatch(/^owner\s+uid 48301$/m);
    // Volumes too: both tenants may call theirs "data"; neither reaches the other's.
    ok(await as(A, ['volume', 'create', 'data', '--size', '16']), 'A volume');
    ok(await as(B, ['volume', 'create', 'data', '--size', '16']), 'B volume');
    const bShow = JSON.parse(ok(await as(B, ['volume', 'show', 'data', '--json']), 'B show').stdout) as { owner_uid: number };
    expect(bShow.owner_uid).toBe(B.uid);
    const [rmA] = requestsAs(d.socket, B, [{ method: 'DELETE', path: `/v1/volumes/${A.uid}:data` }]);
    expect(rmA![0]).toBe(404);
    expect(JSON.parse(ok(await as(A, ['volume', 'list', '--json']), 'A list').stdout).volumes).toHaveLength(1);
  });

  it('events: a self-scoped tenant sees its own calls and calls on its own objects, nothing else', async () => {
    const rootOwn = await d.create({ name: 'root-events' });
    ok(await d.sh(rootOwn.id, 'echo CANARY-ROOT-7731'), 'root exec');
    ok(await as(B, ['session', 'create', '--name', 'b-events', ...small]), 'B create');
    ok(await as(B, ['session', 'exec', 'b-events', '--', 'echo', 'CANARY-B-5520']), 'B exec');
    const aSession = JSON.parse(ok(await as(A, ['session', 'create', '--name', 'a-events', '--json', ...small]), 'A create').stdout) as { id: string };
    ok(await d.sh(aSession.id, 'echo ROOT-ON-A-1180'), 'root exec on A');
    const seen = (JSON.parse(ok(await as(A, ['events', '--json', '--limit', '10000']), 'A events').stdout) as { events: Event[] }).events;
    expect(seen.length).toBeGreaterThan(0);
    for (const e of seen) expect(e.caller_uid === A.uid || e.object_owner === A.uid, JSON.stringify(e)).toBe(true);
    const text = JSON.stringify(seen);
    expect(text).not.toContain('CANARY-ROOT-7731');
    expect(text).not.toContain('CANARY-B-5520');
    // A call on its own session by root is A's to see.
    expect(seen).toContainEqual(expect.objectContaining({ caller_uid: 0, session_id: aSession.id, action: 'session.exec' }));
    // Root sees everyone's.
    const all = JSON.stringify(JSON.parse((await d.cli(['events', '--json', '--limit', '10000'])).stdout));
    expect(all).toContain('CANARY-B-5520');
  });

  it('budgets: per-session ceilings and per-user totals, checked atomically; the other tenant and root still create', async () => {
    for (const [flag, value, key] of [
      ['--memory', '1048576', 'memory_mb'],
      ['--cpu', '102400', 'cpu_percent'],
      ['--pids', '4194304', 'pids'],
      ['--tmp-size', '1048576', 'tmp_mb'],
      ['--home-size', '1048576', 'home_mb'],
      ['--root-size', '1048576', 'root_mb'],
    ] as const) {
      const r = await as(A, ['session', 'create', ...small, flag, value]);
      expect(r.code, flag).toBe(1);
      expect(r.stderr, flag).toContain(`access.budget.${key}.session`);
    }
    // Totals: A owns sessions of 256 MiB each already (a-gh, prod, a-events = 768 MiB).
    const over = await as(A, ['session', 'create', ...small]);
    expect(over.code).toBe(1);
    expect(over.stderr).toContain('access.budget.memory_mb.total');
    // B, at 512 MiB of 768, races 6 creates of 128 MiB: exactly 2 fit.
    const racers = await Promise.all(Array.from({ length: 6 }, () => as(B, ['session', 'create', ...small, '--memory', '128', '--cpu', '10'])));
    expect(racers.filter((r) => r.code === 0)).toHaveLength(2);
    for (const r of racers.filter((x) => x.code !== 0)) expect(r.stderr).toContain('access.budget.memory_mb.total');
    // Root has no budget.
    expect((await d.create({ memory_mb: 4096 })).state).toBe('running');
  });

  it('volumes: a per-volume ceiling, a per-user total charged by size, and a free-space reserve for everyone', async () => {
    const images = () => readdirSync(join(d.stateDir, 'volumes', 'images'));
    const before = images();
    const huge = await as(A, ['volume', 'create', 'huge', '--size', '1048576']);
    expect(huge.code).toBe(1);
    expect(huge.stderr).toContain('access.budget.volume_mb.volume');
    // A already has "data" (16 MiB): 64 more fits its 96, 64 after that does not.
    ok(await as(A, ['volume', 'create', 'more', '--size', '64']), 'A second volume');
    const third = await as(A, ['volume', 'create', 'third', '--size', '64']);
    expect(third.code).toBe(1);
    expect(third.stderr).toContain('access.budget.volume_mb.total');
    // Nothing was allocated for the refusals: one new image, "more"'s.
    expect(images().filter((f) => !before.includes(f))).toHaveLength(1);
    // Root, past the disk's free space less the reserve: 507, nothing made.
    const r = await d.api('POST', '/v1/volumes', { name: 'terabyte', size_mb: 1024 * 1024 });
    expect(r.status).toBe(507);
    expect(JSON.stringify(r.body)).toContain('volumes.reserve_mb');
    expect(images().filter((f) => !before.includes(f))).toHaveLength(1);
    expect(JSON.stringify(JSON.parse((await d.cli(['volume', 'list', '--json'])).stdout))).not.toContain('terabyte');
  });

  it('published ports: a tenant gets 127.0.0.1 and ports from 1024 only; root anything loopback', async () => {
    for (const spec of ['127.0.0.1:443:80', '127.0.0.2:18443:80', '127.1.2.3:1:80']) {
      const r = await as(A, ['session', 'create', ...small, '--memory', '16', '--publish', spec]);
      expect(r.code, spec).toBe(1);
      expect(r.stderr, spec).toContain('access.budget.publish');
    }
    const [pub] = requestsAs(d.socket, A, [{ method: 'POST', path: '/v1/sessions/prod/ports', body: { host_ip: '127.0.0.1', host_port: 22, session_port: 22 } }]);
    expect(pub![0]).toBe(403);
    expect(pub![1]).toContain('access.budget.publish');
    const port = listenPort(58);
    ok(await as(A, ['session', 'publish', 'prod', `127.0.0.1:${port}:80`]), 'A publish high port');
    const rootPort = listenPort(59);
    ok(await d.cli(['session', 'publish', 'prod', `127.0.0.2:${rootPort}:80`]), 'root publish');
  });

  it('viewers: a per-user budget that concurrent attaches cannot race past; the other tenant still attaches', async () => {
    const statuses = concurrentUpgradesAs(d.socket, A, '/v1/sessions/prod/attach', 10);
    expect(statuses.filter((s) => s === 101)).toHaveLength(3);
    expect(statuses.filter((s) => s === 429)).toHaveLength(7);
    expect(concurrentUpgradesAs(d.socket, B, '/v1/sessions/b-events/attach', 2)).toEqual([101, 101]);
    // The slots came back when the connections closed.
    await new Promise((r) => setTimeout(r, 300));
    expect(concurrentUpgradesAs(d.socket, A, '/v1/sessions/prod/attach', 3)).toEqual([101, 101, 101]);
  });

  it('viewers: the per-session cap holds against concurrent attaches too (root has no budget)', async () => {
    await new Promise((r) => setTimeout(r, 300));
    const statuses = concurrentUpgradesAs(d.socket, { uid: 0, groups: [] }, '/v1/sessions/prod/attach', 12);
    expect(statuses.filter((s) => s === 101)).toHaveLength(5);
    expect(statuses.filter((s) => s === 429)).toHaveLength(7);
  });

  it('a port another user publishes is refused without naming that user\'s session', async () => {
    const port = listenPort(60);
    const root = await d.show('root-events');
    ok(await d.cli(['session', 'publish', 'root-events', `127.0.0.1:${port}:80`]), 'root publish');
    const r = await as(B, ['session', 'publish', 'b-events', `127.0.0.1:${port}:80`]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`127.0.0.1:${port} is already published by another user's session`);
    expect(r.stderr).not.toContain(root.id);
    const c = await as(B, ['session', 'create', ...small, '--memory', '16', '--publish', `127.0.0.1:${port}:80`]);
    expect(c.stderr).not.toContain(root.id);
  });

  it('a name another user has and a name nobody has read alike, in the reply and in the caller\'s own trail', async () => {
    const root = await d.show('root-events');
    for (const ref of ['0:root-events', '0:no-such-session']) {
      const r = await as(B, ['session', 'show', ref]);
      expect(r.stderr, ref).toBe(`enclave: no session '${ref}'\n`);
    }
    const mine = (JSON.parse(ok(await as(B, ['events', '--json', '--limit', '10000']), 'B events').stdout) as { events: Event[] }).events;
    const rows = mine.filter((e) => e.detail === 'session 0:root-events' || e.detail === 'session 0:no-such-session');
    expect(rows).toHaveLength(2);
    for (const e of rows) expect(e).toEqual(expect.objectContaining({ action: 'session.show', decision: 'deny', session_id: null, object_owner: null }));
    expect(rows[0]!.rule).toBe(rows[1]!.rule);
    expect(JSON.stringify(mine)).not.toContain(root.id);
  });

  it('a volume of a tenant that root mounts tells the tenant nothing of root\'s session', async () => {
    const rootSession = await d.create({ name: 'root-mounts-a', volumes: [{ name: `${A.uid}:data`, target: '/mnt/a' }] });
    const shown = JSON.parse(ok(await as(A, ['volume', 'show', 'data', '--json']), 'A volume show').stdout) as { used_by: unknown[] };
    expect(shown.used_by).toEqual([]);
    const rm = await as(A, ['volume', 'remove', 'data']);
    expect(rm.code).toBe(1);
    expect(rm.stderr).toContain('1 session of another user');
    expect(rm.stderr).not.toMatch(new RegExp(`root-mounts-a|${rootSession.id}`));
    await d.destroy(rootSession.id);
  });

  it('an exec-stream budget refuses past its total, and the refusal is in the trail', async () => {
    const statuses = concurrentUpgradesAs(d.socket, A, '/v1/sessions/prod/exec?command=sleep&command=20', 7, 'v5.channel.k8s.io');
    expect(statuses.filter((x) => x === 101)).toHaveLength(4);
    expect(statuses.filter((x) => x === 429)).toHaveLength(3);
    const trail = (JSON.parse(ok(await as(A, ['events', '--json', '--limit', '10000']), 'A events').stdout) as { events: Event[] }).events;
    expect(trail.filter((e) => e.action === 'session.exec' && e.decision === 'deny' && e.rule === 'access.budget.exec_streams.total').length).toBeGreaterThanOrEqual(3);
  });

  it('a secrets budget: a tenant past its count is refused with 429 naming it', async () => {
    // B holds github; the count is 3.
    ok(await as(B, ['auth', 'set', 'B_ONE'], 'x'), 'B second');
    ok(await as(B, ['auth', 'set', 'B_TWO'], 'x'), 'B third');
    const over = await as(B, ['auth', 'set', 'B_THREE'], 'x');
    expect(over.code).toBe(1);
    expect(over.stderr).toContain('access.budget.secrets.count');
    // A rotation is no new secret.
    ok(await as(B, ['auth', 'set', 'B_TWO'], 'y'), 'B rotate');
  });

  it('a tenant flooding the trail prunes only its own rows: root\'s stay (retention is per caller)', async () => {
    const root = await d.show('root-events');
    ok(await d.sh(root.id, 'echo CANARY-KEPT-9912'), 'root exec');
    const flood = requestsAs(d.socket, B, Array.from({ length: 1100 }, () => ({ method: 'DELETE', path: `/v1/sessions/${root.id}` })));
    expect(new Set(flood.map(([st]) => st))).toEqual(new Set([403]));
    const rootTrail = JSON.stringify(JSON.parse((await d.cli(['events', '--json', '--limit', '10000'])).stdout));
    expect(rootTrail).toContain('CANARY-KEPT-9912');
    // B's own rows were pruned to keep_events (100) at its 1000th since the start, then grew again.
    const bRows = (JSON.parse(rootTrail) as { events: Event[] }).events.filter((e) => e.caller_uid === B.uid);
    expect(bRows.length).toBeLessThan(1100);
  });

  it('stats and logs: a tenant sees its own sessions\' only, and /metrics shows it no one else\'s', async () => {
    const prod = JSON.parse(ok(await as(A, ['session', 'show', 'prod', '--json']), 'A show').stdout) as { id: string; console: { running: boolean } };
    const bEvents = JSON.parse(ok(await as(B, ['session', 'show', 'b-events', '--json']), 'B show').stdout) as { id: string };
    // A, of its own: the session's stats and, since its console runs (attached above), its logs.
    expect((JSON.parse(ok(await as(A, ['session', 'stats', 'prod', '--json']), 'A stats').stdout) as { id: string }).id).toBe(prod.id);
    expect(prod.console.running).toBe(true);
    ok(await as(A, ['session', 'logs', 'prod']), 'A logs');
    const mine = (JSON.parse(ok(await as(A, ['session', 'list', '--json']), 'A list').stdout) as { sessions: { id: string; state: string }[] }).sessions.filter((s) => s.state === 'running').map((s) => s.id);
    const aAll = (JSON.parse(ok(await as(A, ['session', 'stats', '--json']), 'A stats all').stdout) as { id: string }[]).map((s) => s.id);
    expect(aAll.sort()).toEqual(mine.sort());
    // B: A's session by name reads as one nobody has; by id it is refused; neither names it.
    for (const cmd of ['stats', 'logs']) {
      const byName = await as(B, ['session', cmd, `${A.uid}:prod`]);
      expect(byName.code, cmd).toBe(1);
      expect(byName.stderr, cmd).toBe(`enclave: no session '${A.uid}:prod'\n`);
      const byId = await as(B, ['session', cmd, prod.id]);
      expect(byId.code, cmd).toBe(1);
      expect(byId.stderr, cmd).toMatch(/may not session\.(show|attach)/);
    }
    const bAll = (JSON.parse(ok(await as(B, ['session', 'stats', '--json']), 'B stats all').stdout) as { id: string }[]).map((s) => s.id);
    expect(bAll).toContain(bEvents.id);
    expect(bAll).not.toContain(prod.id);
    // Per-session series are the caller's to see: B's, never A's or root's.
    const [metrics] = requestsAs(d.socket, B, [{ method: 'GET', path: '/metrics' }]);
    expect(metrics![0]).toBe(200);
    expect(metrics![1]).toContain(`enclave_session_memory_bytes{session="${bEvents.id}"}`);
    expect(metrics![1]).not.toContain(prod.id);
    expect(metrics![1]).not.toContain((await d.show('root-events')).id);
    // Root sees every session's.
    expect(String((await d.api('GET', '/metrics')).body)).toContain(`enclave_session_memory_bytes{session="${prod.id}"}`);
  });
});
