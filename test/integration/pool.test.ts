// Sessions made ahead ([pool], src/sessions/pool.ts): a create of the pool's
// shape is a hand-out of a running member, and that member is a full
// session, indistinguishable from a cold one (its stored plan, its owner,
// budget and name checks, its ID range); members are nobody's until then
// (no list, show, event or health count shows them) and a daemon stop, a
// crash and start, and the run's cleanup leave none behind.
// The same files with the pool on: the integration-pool project.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import Database from 'better-sqlite3';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { Enclave, type StreamEvent } from '../../src/client/index.js';
import { addon } from '../../src/native/addon.js';
import { hostIfName, ipToInt, macFor } from '../../src/network/addressing.js';
import type { Session } from '../../src/api/schemas.js';
import { CLI, isRoot, listenPort, requestsAs, TestDaemon } from './harness.js';

const GID = 48216; // a group nobody on the machine has
const A = { uid: 48311, groups: [GID] };
const B = { uid: 48312, groups: [GID] };
const SIZE = 2;

const linkExists = (name: string) => existsSync(`/sys/class/net/${name}`);
/**
 * Whether the link is gone within 10 s: a daemon that stops does not wait
 * for the kernel's netns cleanup of what it destroyed last (the database
 * keeps those links, and the next start waits for them: SessionManager.shutdown).
 */
async function linkGone(name: string): Promise<boolean> {
  for (let i = 0; i < 200 && linkExists(name); i++) await new Promise((r) => setTimeout(r, 50));
  return !linkExists(name);
}

describe.skipIf(!isRoot)('pool: sessions made ahead', () => {
  const d = new TestDaemon({
    slots: 12,
    topConfig: `socket_gid = ${GID}\n`,
    extraConfig:
      `[pool]\nworkspace_bridge = ${SIZE}\n` +
      `[access]\nrate_per_minute = 1000\nmax_sessions_per_uid = 4\n[access.budget]\nmemory_mb = { session = 1024, total = 1536 }\n` +
      `[[access.rules]]\nname = "tenants"\ngids = [${GID}]\nactions = ["session.*"]\nscope = "self"\n`,
  });
  const db = () => new Database(join(d.stateDir, 'enclave.db'), { readonly: true, fileMustExist: true });
  const query = <T>(sql: string, ...args: unknown[]): T[] => {
    const conn = db();
    try {
      return conn.prepare(sql).all(...args) as T[];
    } finally {
      conn.close();
    }
  };
  /** Live members, as the store has them. */
  const members = () => query<{ id: string; state: string; init_pid: number | null }>(`SELECT id, state, init_pid FROM sessions WHERE pool IS NOT NULL AND state IN ('creating', 'running', 'destroying')`);
  /** Members the daemon has said are ready, and still are: running, never handed out. */
  const ready = () => {
    const said = new Set([...d.log().matchAll(/"session":"(s-[0-9a-f]{10})"[^\n]*"msg":"pool member ready"/g)].map((m) => m[1]!));
    return members().filter((m) => m.state === 'running' && said.has(m.id));
  };
  async function filled(n = SIZE): Promise<string[]> {
    for (;;) {
      const r = ready();
      if (r.length >= n && members().length === n) return r.map((m) => m.id);
      await new Promise((res) => setTimeout(res, 20));
    }
  }
  const handedOut = (id: string) => d.log().split('\n').some((l) => l.includes('"msg":"session handed out from the pool"') && l.includes(`"session":"${id}"`));
  const as = (who: typeof A, method: string, path: string, body?: unknown) => requestsAs(d.socket, who, [{ method, path, body }])[0]!;

  beforeAll(async () => {
    await d.start();
  });
  afterAll(async () => {
    await d.cleanup();
    // Nothing of the run is left: the members went with the daemon's stop.
    expect(existsSync(d.dir)).toBe(false);
  });

  it('fills to its size with members nobody sees: not in list, show, health or the event stream', async () => {
    const ids = await filled();
    expect(ids).toHaveLength(SIZE);
    const root = new Enclave({ socket: d.socket });
    try {
      const stream = await root.eventStream();
      const first = await stream.next();
      expect(first.value).toEqual({ type: 'sessions', sessions: [], place: expect.stringMatching(/^\d+$/) });
      await stream.return();
    } finally {
      root.close();
    }
    const listed = await d.api('GET', '/v1/sessions?all=true');
    expect((listed.body as { sessions: unknown[] }).sessions).toEqual([]);
    expect((await d.cli(['session', 'list', '--all'])).stdout).not.toMatch(ids[0]!);
    for (const id of ids) expect((await d.api('GET', `/v1/sessions/${id}`)).status).toBe(404);
    expect((await d.api('DELETE', `/v1/sessions/${ids[0]}`)).status).toBe(404);
    expect(((await d.api('GET', '/v1/health')).body as { sessions: number }).sessions).toBe(0);
    // Yet each holds its own ID slot and kernel objects, recorded.
    const slots = query<{ id_slot: number }>(`SELECT id_slot FROM sessions WHERE id IN (${ids.map(() => '?').join(',')})`, ...ids);
    expect(new Set(slots.map((s) => s.id_slot)).size).toBe(SIZE);
    for (const id of ids) {
      expect(d.cgroupDirs(id).length).toBeGreaterThan(0);
      expect(linkExists(hostIfName(id))).toBe(true);
    }
  });

  it('hands out a member as a full session, named, with the plan a cold create of it stores', async () => {
    const before = await filled();
    const root = new Enclave({ socket: d.socket });
    const seen: StreamEvent[] = [];
    let pooled: Session;
    try {
      const stream = await root.eventStream();
      await stream.next(); // the sessions now
      pooled = await d.create({ name: 'pooled', console: true, idle_timeout_s: 3600 });
      for (;;) {
        const e = await stream.next();
        seen.push(e.value as StreamEvent);
        if (e.value?.type === 'session' && e.value.session.name === 'pooled' && e.value.session.state === 'running') break;
      }
      await stream.return();
    } finally {
      root.close();
    }
    expect(before).toContain(pooled.id);
    expect(handedOut(pooled.id)).toBe(true);
    expect(pooled).toMatchObject({ name: 'pooled', state: 'running', hostname: 'pooled', owner_uid: 0, profile: 'workspace', idle_timeout_s: 3600 });
    expect(pooled.console.keep).toBe(true);
    expect(pooled.network.address).not.toBeNull();
    // The event stream told of the hand-out, and of no other member.
    const others = before.filter((id) => id !== pooled.id);
    expect(seen.filter((e) => others.some((id) => JSON.stringify(e).includes(id)))).toEqual([]);
    // Inside, the name is its hostname everywhere it reads one.
    const inside = await d.sh(pooled.id, 'hostname; grep -c pooled /etc/hosts; id -u; cat /proc/self/uid_map');
    expect(inside.code).toBe(0);
    const [hostname, hosts, uid, map] = inside.stdout.trim().split('\n');
    expect(hostname).toBe('pooled');
    expect(Number(hosts)).toBeGreaterThan(0);
    expect(uid).toBe('0');
    expect(map!.trim().split(/\s+/).map(Number)).toEqual([0, pooled.id_range!.host_base, pooled.id_range!.size]);

    // A cold create of the same shape (published ports are not a member's): the same plan but for what is the session's own.
    const cold = await d.create({ name: 'cold', publish: [{ host_ip: '127.0.0.1', host_port: listenPort(7), session_port: 80 }] });
    expect(handedOut(cold.id)).toBe(false);
    const plan = (s: Session) => {
      let text = query<{ plan: string }>('SELECT plan FROM session_plans WHERE session_id = ?', s.id)[0]!.plan;
      const own: [string, string][] = [
        [s.id, 'ID'],
        [hostIfName(s.id), 'IF'],
        [macFor(ipToInt(s.network.address!)), 'MAC'],
        [s.network.address!, 'ADDR'],
        [String(s.id_range!.host_base), 'BASE'],
        [`"${s.hostname}"`, '"HOST"'],
      ];
      for (const [from, to] of own) text = text.split(from).join(to);
      return JSON.parse(text) as unknown;
    };
    expect(plan(pooled)).toEqual(plan(cold));
    // The ID ranges of every live session and member are their own.
    const live = query<{ id_slot: number }>(`SELECT id_slot FROM sessions WHERE state IN ('creating', 'running', 'stopping', 'stopped', 'starting', 'destroying')`);
    expect(new Set(live.map((r) => r.id_slot)).size).toBe(live.length);
    await d.destroy(cold.id);
    await d.destroy(pooled.id);
  });

  it('checks the owner as a cold create does: its budget, its names, and nobody else sees it', async () => {
    await filled();
    const [status, body] = as(A, 'POST', '/v1/sessions', { name: 'mine' });
    expect(status, body).toBe(201);
    const mine = JSON.parse(body) as Session;
    expect(handedOut(mine.id)).toBe(true);
    expect(mine.owner_uid).toBe(A.uid);
    // B is refused it as it is refused another's cold session, and learns nothing of it; A sees it.
    const coldOne = await d.create({ name: 'cold-root', publish: [{ host_ip: '127.0.0.1', host_port: listenPort(8), session_port: 80 }] });
    expect(handedOut(coldOne.id)).toBe(false);
    const [refused, said] = as(B, 'GET', `/v1/sessions/${mine.id}`);
    expect(refused).toBe(as(B, 'GET', `/v1/sessions/${coldOne.id}`)[0]);
    expect([403, 404]).toContain(refused);
    expect(said).not.toContain('mine');
    await d.destroy(coldOne.id);
    expect(JSON.parse(as(B, 'GET', '/v1/sessions')[1]).sessions).toEqual([]);
    expect(JSON.parse(as(A, 'GET', '/v1/sessions')[1]).sessions.map((s: Session) => s.id)).toEqual([mine.id]);
    await filled();
    // A's budget (1536 MiB of memory in all: one session of the default 1024) refuses its next
    // create inside the hand-out's transaction, as the cold path's reservation does, and the member stays nobody's.
    const membersBefore = members().map((m) => m.id).sort();
    const [over, why] = as(A, 'POST', '/v1/sessions', { name: 'second' });
    const [overCold, whyCold] = as(A, 'POST', '/v1/sessions', { name: 'second', env: ['COLD=1'] });
    expect(over, why).toBeGreaterThanOrEqual(400);
    expect([over, JSON.parse(why)]).toEqual([overCold, JSON.parse(whyCold)]);
    expect(why).toMatch(/memory_mb/);
    expect(members().map((m) => m.id).sort()).toEqual(membersBefore);
    expect(query<{ n: number }>('SELECT count(*) AS n FROM sessions WHERE owner_uid = ?', A.uid)[0]!.n).toBe(1);
    // A name root already has live is root's conflict, from the pool as cold.
    expect(handedOut((await d.create({ name: 'twice' })).id)).toBe(true);
    const kept = (await filled()).sort();
    const again = await d.api('POST', '/v1/sessions', { name: 'twice' });
    expect(again.status).toBe(409);
    expect(JSON.stringify(again.body)).toContain("you already have a live session named 'twice'");
    expect(members().map((m) => m.id).sort()).toEqual(kept);
    const [gone] = as(A, 'DELETE', `/v1/sessions/${mine.id}`);
    expect(gone).toBe(204);
    await d.destroy('twice');
  });

  it('discards members at a stop, sweeps a crashed daemon\'s at start, and refills', { timeout: 120_000 }, async () => {
    let ids = await filled();
    await d.stop('SIGTERM');
    expect(members()).toEqual([]);
    for (const id of ids) {
      expect(d.cgroupDirs(id)).toEqual([]);
      expect(await linkGone(hostIfName(id))).toBe(true);
    }
    await d.start();
    ids = await filled();
    const inits = members().map((m) => m.init_pid!);
    // A crash: the members outlive the daemon (their inits re-parent to this process).
    await d.stop('SIGKILL');
    expect(members().map((m) => m.id).sort()).toEqual([...ids].sort());
    await d.start();
    const fresh = await filled();
    expect(fresh.filter((id) => ids.includes(id))).toEqual([]);
    for (const id of ids) {
      expect(query<{ state: string }>('SELECT state FROM sessions WHERE id = ?', id)[0]!.state).toBe('destroyed');
      expect(d.cgroupDirs(id)).toEqual([]);
      expect(linkExists(hostIfName(id))).toBe(false);
    }
    for (const pid of inits) for (let i = 0; i < 100 && existsSync(`/proc/${pid}`) && !addon().reapChild(pid); i++) await new Promise((r) => setTimeout(r, 10));
  });

  it('daemon --cleanup ends the members a killed daemon left (nobody else could), then removes the host network', async () => {
    const ids = await filled();
    const inits = members().map((m) => m.init_pid!);
    await d.stop('SIGKILL');
    const r = spawnSync(process.execPath, [CLI, 'daemon', '--cleanup', '--config', d.configPath], { encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    expect(members()).toEqual([]);
    for (const id of ids) {
      expect(query<{ state: string }>('SELECT state FROM sessions WHERE id = ?', id)[0]!.state).toBe('destroyed');
      expect(d.cgroupDirs(id)).toEqual([]);
      expect(linkExists(hostIfName(id))).toBe(false);
    }
    expect(query<{ n: number }>('SELECT count(*) AS n FROM id_slots')[0]!.n).toBe(0);
    expect(linkExists(d.bridge)).toBe(false);
    for (const pid of inits) for (let i = 0; i < 100 && existsSync(`/proc/${pid}`) && !addon().reapChild(pid); i++) await new Promise((res) => setTimeout(res, 10));
  });
});
