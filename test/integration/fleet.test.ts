// Fleet mode, slice A (docs/fleet.md): a real three-member etcd cluster
// (Debian's etcd-server) and three daemons as three nodes, each in a network
// namespace of its own joined to the run's bridge (where etcd listens), with
// its own state dir, socket, bridge, cgroup parent and ID range. Every
// create goes through node A: placed on a node with room (a full node is
// skipped), pending with its reason when none has room and placed once a
// session ends, never on a cordoned node; a node whose daemon is SIGKILLed
// is unreachable once its lease lapses and ready again after its restart,
// its sessions running throughout; a pending session whose entry node died
// is placed by another node once there is room. Access is checked on the node reached,
// and the caller's uid is the session's owner on the node that runs it.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { existsSync } from 'node:fs';
import { cliAs, isRoot, TestDaemon } from './harness.js';
import { sessionSchema, type Session } from '../../src/api/schemas.js';
import { startEtcdCluster, type EtcdCluster } from '../../stress/etcdCluster.js';
import { endFleetRun, fleetNetwork, fleetRunDir } from './fleetRun.js';
import type { FleetNet } from '../../stress/nodeNet.js';

const TTL_S = 2;
const GID = 48216; // a group nobody on the machine has
const NOBODY = 65534;

/** The enclave CLI as uid 65534 with the socket group. */
const cliAsNobody = (socket: string, args: string[]) => cliAs(socket, { uid: NOBODY, groups: [GID] }, args);
/** Small sessions without a network: placement is what is tested here. */
const SMALL = { memory_mb: 128, network: 'none' };

interface NodeInfo {
  name: string;
  state: string;
  sessions: number;
  capacity: { slots: number };
}

async function until<T>(what: string, probe: () => Promise<T | undefined>, ms = 60_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`gave up waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

describe.skipIf(!isRoot)('fleet: placement across nodes through etcd', () => {
  let dir: string;
  let etcd: EtcdCluster;
  let net: FleetNet;
  const nodes: Record<'a' | 'b' | 'c', TestDaemon> = {} as never;
  const names = { a: '', b: '', c: '' };

  const nodeList = async (through: TestDaemon = nodes.a): Promise<Map<string, NodeInfo>> => {
    const r = await through.api('GET', '/v1/nodes');
    expect(r.status).toBe(200);
    return new Map((r.body as { nodes: NodeInfo[] }).nodes.map((n) => [n.name, n]));
  };
  const local = async (d: TestDaemon) => ((await d.api('GET', '/v1/sessions')).body as { sessions: Session[] }).sessions;
  const runningOn = async (d: TestDaemon) => (await local(d)).filter((s) => s.state === 'running').map((s) => s.id);
  const create = async (body: Record<string, unknown> = {}) => {
    const r = await nodes.a.api('POST', '/v1/sessions', { ...SMALL, ...body });
    expect(r.status, JSON.stringify(r.body)).toBe(201);
    return sessionSchema.parse(r.body);
  };

  beforeAll(async () => {
    dir = fleetRunDir('etcd');
    net = fleetNetwork(3);
    etcd = await startEtcdCluster(dir, { salt: 3, host: net.host });
    const cluster = (node: string) => `[cluster]\nendpoints = ${JSON.stringify(etcd.endpoints)}\nnode = "${node}"\nlease_ttl_s = ${TTL_S}\n`;
    // Room for 15, 10 and 5 sessions: the 30 creates fill the fleet.
    // Node A lets uid 65534 (with the socket group) act on its own sessions: nothing of node.*.
    const rules = `[[access.rules]]\nname = "nobody-own"\nuids = [${NOBODY}]\nactions = ["session.*"]\nscope = "self"\n`;
    for (const [k, slots, i] of [['a', 15, 0], ['b', 10, 1], ['c', 5, 2]] as const) {
      const d = new TestDaemon({ slots: 16, extraConfig: `max_sessions = ${slots}\n`, netns: net.nodes[i]!.path });
      names[k] = `n${k}-${d.tag}`;
      // Node C lets no non-root uid own a session there: the owning node's budget check.
      const budget = k === 'c' ? '[access]\nmax_sessions_per_uid = 0\n' : '';
      d.reconfigure({ extraConfig: `max_sessions = ${slots}\n${cluster(names[k])}${k === 'a' ? rules : ''}${budget}`, topConfig: k === 'a' ? `socket_gid = ${GID}\n` : '' });
      nodes[k] = d;
      await d.start();
    }
    await until('three ready nodes', async () => {
      const l = await nodeList();
      return [names.a, names.b, names.c].every((n) => l.get(n)?.state === 'ready') ? true : undefined;
    });
  }, 120_000);

  afterAll(async () => {
    await endFleetRun(dir, etcd, Object.values(nodes), net);
  }, 120_000);

  it('lists the nodes with their state, sessions and capacity', async () => {
    const l = await nodeList(nodes.b);
    expect(l.get(names.a)).toMatchObject({ state: 'ready', sessions: 0, capacity: { slots: 15 } });
    expect(l.get(names.c)).toMatchObject({ state: 'ready', capacity: { slots: 5 } });
    const cli = await nodes.c.cli(['node', 'list']);
    expect(cli.code, cli.stderr).toBe(0);
    expect(cli.stdout).toMatch(new RegExp(`^${names.c} \\*\\s+ready\\s+0/5`, 'm'));
    const json = await nodes.a.cli(['node', 'ls', '--json']);
    expect(JSON.parse(json.stdout)).toMatchObject({ node: names.a, nodes: expect.arrayContaining([expect.objectContaining({ name: names.b, state: 'ready' })]) });
  });

  it('places a create that names volumes or stored secrets on the node that took it, where they are, or says why not', async () => {
    // On B: a secret and a volume of root's. A has the most room: a create through B without them could go there.
    expect((await nodes.b.api('PUT', '/v1/auth/fleet-token', { value_base64: Buffer.from('s3cret').toString('base64') })).status).toBeLessThan(300);
    expect((await nodes.b.api('POST', '/v1/volumes', { name: 'fleet-vol', size_mb: 64 })).status).toBe(201);
    const made: string[] = [];
    try {
      for (const extra of [{ auth: ['fleet-token'] }, { volumes: [{ name: 'fleet-vol', target: '/data' }] }]) {
        const r = await nodes.b.api('POST', '/v1/sessions', { ...SMALL, ...extra });
        expect(r.status, JSON.stringify(r.body)).toBe(201);
        const s = sessionSchema.parse(r.body);
        made.push(s.id);
        expect(s).toMatchObject({ node: names.b, state: 'running' });
      }
      // What they name is there: the secret's file, the volume mounted.
      expect((await nodes.b.sh(made[0]!, 'cat /run/enclave/auth/fleet-token.token')).stdout).toBe('s3cret');
      expect((await nodes.b.sh(made[1]!, 'echo kept > /data/f && cat /data/f')).stdout).toBe('kept\n');
      // B cordoned: no other node will do.
      expect((await nodes.a.cli(['node', 'cordon', names.b])).code).toBe(0);
      try {
        const r = await nodes.b.api('POST', '/v1/sessions?no_wait=1', { ...SMALL, auth: ['fleet-token'] });
        expect(r.status, JSON.stringify(r.body)).toBe(503);
        expect(JSON.stringify(r.body)).toContain(`node ${names.b}'s, which cannot take it: no node fits: ${names.b} cordoned`);
        // Not left pending either (what it names is checked for now, and an older node would place it anywhere).
        const waiting = await nodes.b.api('POST', '/v1/sessions', { ...SMALL, volumes: [{ name: 'fleet-vol', target: '/data' }] });
        expect(waiting.status, JSON.stringify(waiting.body)).toBe(503);
        expect(JSON.stringify(waiting.body)).toMatch(/is not left pending/);
      } finally {
        expect((await nodes.a.cli(['node', 'uncordon', names.b])).code).toBe(0);
      }
      // Through A, the secret is not there: A says so.
      const far = await nodes.a.api('POST', '/v1/sessions', { ...SMALL, auth: ['fleet-token'] });
      expect(far.status).toBeGreaterThanOrEqual(400);
      expect(JSON.stringify(far.body)).toMatch(/fleet-token/);
    } finally {
      for (const id of made) await nodes.b.destroy(id);
      await nodes.b.api('DELETE', '/v1/volumes/fleet-vol');
      await nodes.b.api('DELETE', '/v1/auth/fleet-token');
    }
  });

  it('spreads 30 creates through node A over the nodes, skipping a full one, until all are full', async () => {
    const made: Session[] = [];
    for (let i = 0; i < 30; i++) made.push(await create({ name: `w${i}` }));
    expect(made.every((s) => s.state === 'running')).toBe(true);
    const on = (n: string) => made.filter((s) => s.node === n).length;
    // Each node holds exactly what it has room for: C filled first (its share of free slots fell
    // fastest) and was skipped after, then B.
    expect([on(names.a), on(names.b), on(names.c)]).toEqual([15, 10, 5]);
    expect((await runningOn(nodes.b)).sort()).toEqual(made.filter((s) => s.node === names.b).map((s) => s.id).sort());
    expect((await runningOn(nodes.c)).sort()).toEqual(made.filter((s) => s.node === names.c).map((s) => s.id).sort());
    const l = await nodeList();
    expect([l.get(names.a)!.sessions, l.get(names.b)!.sessions, l.get(names.c)!.sessions]).toEqual([15, 10, 5]);
  });

  it('leaves a create pending with its reason when no node has room, cancels one destroyed while pending, and places the other once a session ends', async () => {
    const refused = await nodes.a.api('POST', '/v1/sessions?no_wait=1', SMALL);
    expect(refused.status).toBe(503);
    expect(JSON.stringify(refused.body)).toMatch(/no node fits: .*full/);
    const cli = await nodes.a.cli(['session', 'create', '--memory', '128', '--network', 'none', '--no-wait']);
    expect(cli.code).toBe(1);
    expect(cli.stderr).toMatch(/no node fits/);

    const p = await create({ name: 'later' });
    expect(p.state).toBe('pending');
    expect(p.last_error).toMatch(new RegExp(`no node fits: .*${names.c} full \\(5/5 sessions\\)`));
    const shown = await nodes.a.show('later');
    expect(shown).toMatchObject({ id: p.id, state: 'pending' });
    expect((await local(nodes.a)).find((s) => s.id === p.id)?.state).toBe('pending');
    const text = await nodes.a.cli(['session', 'list']);
    expect(text.stdout).toMatch(new RegExp(`${p.id}.*pending`));

    // Another pending one, destroyed while pending: no node ever makes it.
    const gone = await create({ name: 'cancel-me' });
    expect(gone.state).toBe('pending');
    const rm = await nodes.a.cli(['session', 'rm', 'cancel-me']);
    expect(rm.code, rm.stderr).toBe(0);
    expect((await nodes.a.api('GET', `/v1/sessions/${gone.id}`)).status).toBe(404);

    // A session on B ends: B has room, and A places the pending one there.
    const [victim] = await runningOn(nodes.b);
    await nodes.b.destroy(victim!);
    await until('the pending session running on B', async () => ((await runningOn(nodes.b)).includes(p.id) ? true : undefined));
    expect((await nodes.a.api('GET', `/v1/sessions/${p.id}`)).status).toBe(404);
    expect((await nodes.b.show(p.id)).name).toBe('later');
    for (const d of Object.values(nodes)) expect((await local(d)).map((s) => s.id)).not.toContain(gone.id);
  });

  it('places nothing new on a cordoned node', async () => {
    const [onB] = await runningOn(nodes.b);
    const [onA] = await runningOn(nodes.a);
    const c = await nodes.a.cli(['node', 'cordon', names.b]);
    expect(c.code, c.stderr).toBe(0);
    expect((await nodeList()).get(names.b)?.state).toBe('cordoned');
    await nodes.b.destroy(onB!);
    await nodes.a.destroy(onA!);
    // B now has the most room (1 of 10 free, A 1 of 15), but it is cordoned.
    await until('both freed slots counted', async () => {
      const l = await nodeList();
      return l.get(names.a)!.sessions === 14 && l.get(names.b)!.sessions === 9 ? true : undefined;
    });
    const s = await create();
    expect(s.node).toBe(names.a);
    const u = await nodes.a.cli(['node', 'uncordon', names.b]);
    expect(u.code, u.stderr).toBe(0);
    expect((await nodeList()).get(names.b)?.state).toBe('ready');
    expect((await create()).node).toBe(names.b);
    expect((await nodes.a.api('POST', '/v1/nodes/cordon', { name: 'no-such-node' })).status).toBe(404);
  });

  it('checks access on the node the caller reached, the budget on the node that runs it (its refusal back to the caller), and carries the caller as owner; node.* is root only by default', async () => {
    const [onB] = await runningOn(nodes.b);
    await nodes.b.destroy(onB!);
    const [onC] = await runningOn(nodes.c);
    await nodes.c.destroy(onC!);
    await until('the freed slots counted', async () => {
      const l = await nodeList();
      return l.get(names.b)!.sessions === 9 && l.get(names.c)!.sessions === 4 ? true : undefined;
    });
    // C has the most room (1 of 5 free, B 1 of 10), but lets uid 65534 own nothing: its refusal comes back to the caller.
    const onCBefore = (await runningOn(nodes.c)).sort();
    const refused = await cliAsNobody(nodes.a.socket, ['session', 'create', '--memory', '128', '--network', 'none']);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(new RegExp(`on node ${names.c}: uid ${NOBODY} already owns 0 live sessions`));
    expect((await runningOn(nodes.c)).sort()).toEqual(onCBefore);
    expect((await nodes.a.cli(['node', 'cordon', names.c])).code).toBe(0);
    const made = await cliAsNobody(nodes.a.socket, ['session', 'create', '--name', 'mine', '--memory', '128', '--network', 'none', '--json']);
    expect(made.code, made.stderr).toBe(0);
    const s = sessionSchema.parse(JSON.parse(made.stdout));
    expect(s).toMatchObject({ state: 'running', owner_uid: NOBODY, node: names.b });
    expect((await nodes.b.show(s.id)).owner_uid).toBe(NOBODY);
    const list = await cliAsNobody(nodes.a.socket, ['node', 'list']);
    expect(list.code).toBe(1);
    expect(list.stderr).toMatch(/may not node\.list/);
    const cordon = await cliAsNobody(nodes.a.socket, ['node', 'cordon', names.b]);
    expect(cordon.code).toBe(1);
    expect(cordon.stderr).toMatch(/may not node\.cordon/);
    const remove = await cliAsNobody(nodes.a.socket, ['node', 'remove', names.b]);
    expect(remove.code).toBe(1);
    expect(remove.stderr).toMatch(/may not node\.remove/);
    // Root may, but only a node that is gone: B is registered, and A is the node reached.
    expect((await nodes.a.api('POST', '/v1/nodes/remove', { name: names.b })).body).toMatchObject({ error: { code: 'conflict', message: expect.stringMatching(/is registered \(its lease is live\)/) } });
    expect((await nodes.a.api('POST', '/v1/nodes/remove', { name: names.a })).status).toBe(409);
    expect((await nodes.a.api('POST', '/v1/nodes/remove', { name: 'no-such-node' })).status).toBe(404);
    expect((await nodeList()).get(names.b)?.state).toBe('ready');
    expect((await nodes.a.cli(['node', 'uncordon', names.c])).code).toBe(0);
    expect((await create({ name: 'on-c' })).node).toBe(names.c);
  });

  it('shows a node whose daemon was SIGKILLed unreachable once its lease lapses, and ready after its restart, its sessions running throughout', async () => {
    const before = await runningOn(nodes.c);
    expect(before).toHaveLength(5);
    const init = (await nodes.c.show(before[0]!)).init_pid!;
    await nodes.c.stop('SIGKILL');
    await until('C unreachable', async () => ((await nodeList()).get(names.c)?.state === 'unreachable' ? true : undefined));
    expect(existsSync(`/proc/${init}`)).toBe(true);
    await nodes.c.start();
    await until('C ready again', async () => ((await nodeList()).get(names.c)?.state === 'ready' ? true : undefined));
    expect((await runningOn(nodes.c)).sort()).toEqual(before.sort());
    expect((await nodeList()).get(names.c)?.sessions).toBe(5);
  });

  it('places a pending session whose entry node is gone through another node, once', async () => {
    const cordon = async (on: boolean, ...ks: Array<'a' | 'b' | 'c'>) => {
      for (const k of ks) expect((await nodes.a.cli(['node', on ? 'cordon' : 'uncordon', names[k]])).code).toBe(0);
    };
    await cordon(true, 'a', 'b', 'c');
    const r = await nodes.b.api('POST', '/v1/sessions', { ...SMALL, name: 'orphan' });
    expect(r.status, JSON.stringify(r.body)).toBe(201);
    const p = sessionSchema.parse(r.body);
    expect(p.state).toBe('pending');
    // Its entry node dies, and only then does a node have room.
    await nodes.b.stop('SIGKILL');
    await until('B unreachable', async () => ((await nodeList()).get(names.b)?.state === 'unreachable' ? true : undefined));
    // Its entry node gone, another lists and shows it (and could destroy it).
    expect((await nodes.a.show(p.id)).state).toBe('pending');
    expect((await nodes.a.cli(['session', 'list'])).stdout).toMatch(new RegExp(`${p.id}.*pending`));
    for (const id of await runningOn(nodes.a)) await nodes.a.destroy(id);
    await cordon(false, 'a');
    await until('the orphan running on A', async () => ((await runningOn(nodes.a)).includes(p.id) ? true : undefined), 20_000);
    expect((await nodes.a.show(p.id)).name).toBe('orphan');
    await nodes.b.start();
    // Back (still cordoned, as it was left).
    await until('B back', async () => ((await nodeList()).get(names.b)?.state === 'cordoned' ? true : undefined));
    await cordon(false, 'b', 'c');
    // Placed once: back, B has nothing of it pending or running.
    await new Promise((res) => setTimeout(res, 2000));
    expect((await local(nodes.b)).map((s) => s.id)).not.toContain(p.id);
    expect((await local(nodes.c)).map((s) => s.id)).not.toContain(p.id);
    expect((await runningOn(nodes.a)).filter((id) => id === p.id)).toHaveLength(1);
  });

  it('gives a destroyed session\'s slot back at once: a create right after it lands on that node', async () => {
    const cordon = async (on: boolean, ...ks: Array<'a' | 'b'>) => {
      for (const k of ks) expect((await nodes.a.cli(['node', on ? 'cordon' : 'uncordon', names[k]])).code).toBe(0);
    };
    // C's slots are all taken.
    const [onC] = await runningOn(nodes.c);
    expect(onC).toBeDefined();
    await cordon(true, 'a', 'b');
    try {
      await nodes.c.destroy(onC!);
      const s = await create({ name: 'right-after' });
      expect(s).toMatchObject({ state: 'running', node: names.c });
    } finally {
      await cordon(false, 'a', 'b');
    }
  });
});
