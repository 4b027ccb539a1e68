// The fleet's speed figures (issue 28, "Speed"), on a fleet of three nodes
// on this machine (`npm run fleet -- up`, removed at the end), each figure
// beside its same-run baseline, the pairs in one shuffled schedule:
//  - create through a node that does not own the session (B; only A takes
//    sessions) against a create through the owner (A): the placement hop;
//  - a keystroke's echo through a forwarding node (attach on B to A's
//    console) against direct (attach on A);
//  - exec `true` forwarded against direct;
//  - a fleet list through A of every node's sessions (K a node, default 300:
//    the issue's 900 over three nodes) against a list of K on a daemon in no
//    fleet (\`fleet up --solo\`), and a show through B (forwarded to A)
//    against a show through A; and both lists again, each right after a
//    change on every node listed: a write no list reads (a secret set: the
//    list's version stands), then a session stopped or started (each node
//    writes its row to etcd before it answers the call: A's list, made of
//    what B and C wrote there, must show it, and is checked to);
//  - failure detection once: a node's daemon SIGKILLed, until another node
//    lists it unreachable, against the lease TTL (lease_ttl_s = 3) + 1 s.
//   npm run bench:fleet [-- --seed S --rounds N --list-rounds L (default 3N) --per-node K]
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadavg } from 'node:os';
import { parseArgs } from 'node:util';
import { WebSocket } from 'ws';
import { call } from '../src/cli/client.js';
import { K8S_V5_PROTOCOL } from '../src/api/protocol.js';
import { repoRoot } from '../src/native/addon.js';
import { catMode, echoOnce, wsTerminal } from './attachBench.js';
import { intOption, msSince, pool, rng, runShuffled, Samples } from './schedule.js';

const { values } = parseArgs({
  options: { seed: { type: 'string' }, rounds: { type: 'string', default: '20' }, 'list-rounds': { type: 'string' }, 'per-node': { type: 'string', default: '300' } },
});
const seed = values.seed === undefined ? Math.floor(Math.random() * 2 ** 31) : Number(values.seed);
const rounds = intOption('bench:fleet', 'rounds', values.rounds, 3, 1000);
// A list takes milliseconds where a create takes tens: three times the rounds (unless told) for a p50 that
// the machine's noise moves less (a list's p50 of 20 moved by a third between runs here).
const listRounds = intOption('bench:fleet', 'list-rounds', values['list-rounds'] ?? String(rounds * 3), 3, 3000);
const perNode = intOption('bench:fleet', 'per-node', values['per-node'], 1, 400);
/** The list's sessions, the console session, and one for the create rounds. */
const SLOTS = perNode + 2;
const FLEET = join(repoRoot, 'dist', 'stress', 'fleet.js');
const SMALL = { memory_mb: 64, network: 'none' };
/** The list's sessions: the smallest there are, so that 300 a node stay within root's memory budget. */
const TINY = { memory_mb: 16, network: 'none' };
const TTL_S = 3;

interface Node {
  name: string;
  socket: string;
}

function fleet(...args: string[]): string {
  const r = spawnSync(process.execPath, [FLEET, ...args], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`fleet ${args[0]}: ${r.stderr.slice(-1500)}`);
  return r.stdout;
}

async function api(n: Node, method: string, path: string, body?: unknown): Promise<{ status: number; body: unknown }> {
  return call(n.socket, method, path, body);
}

async function ok<T = { id: string }>(p: Promise<{ status: number; body: unknown }>, what: string): Promise<T> {
  const r = await p;
  if (r.status >= 300) throw new Error(`${what}: HTTP ${r.status} ${JSON.stringify(r.body).slice(0, 300)}`);
  return r.body as T;
}

function execTrue(socket: string, session: string): Promise<number> {
  const t0 = process.hrtime.bigint();
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws+unix://${socket}:/v1/sessions/${session}/exec?command=true`, [K8S_V5_PROTOCOL]);
    let status = '';
    ws.on('message', (m: Buffer) => m[0] === 3 && (status = m.subarray(1).toString()));
    ws.on('close', () => (status.includes('Success') ? resolve(msSince(t0)) : reject(new Error(`exec true: ${status || 'no status'}`))));
    ws.on('error', reject);
  });
}

async function main(): Promise<void> {
  const daemons: Node[] = fleet('up', '--nodes', '3', '--slots', String(SLOTS), '--solo')
    .trim()
    .split('\n')
    .map((l) => {
      const [name, socket] = l.split(' ');
      return { name: name!, socket: socket! };
    });
  const [a, b, c, solo] = daemons as [Node, Node, Node, Node];
  if (solo.name !== 'solo') throw new Error(`fleet up printed no single daemon last: ${solo.name}`);
  const nodes = [a, b, c];
  const s = new Samples();
  const random = rng(seed);
  process.stdout.write(`bench:fleet seed ${seed}, ${rounds} rounds (lists ${listRounds}), load ${loadavg()[0]!.toFixed(1)}\n`);
  try {
    // Creates: only A takes sessions, so both land on A; through A it is the owner's create, through B a placement hop.
    for (const n of [b, c]) await ok(api(a, 'POST', '/v1/nodes/cordon', { name: n.name }), 'cordon');
    const made: string[] = [];
    // One untimed create through each first: a node's first placement opens its connections (etcd, the
    // watched copy's first read), which is no hop's cost and would be one of the 20 samples.
    for (const n of [a, b]) await ok(api(a, 'DELETE', `/v1/sessions/${(await ok(api(n, 'POST', '/v1/sessions', SMALL), 'warm-up create')).id}?force=1`), 'destroy');
    await runShuffled(
      { 'create via owner (A)': rounds, 'create via B, placed on A': rounds },
      async (step) => {
        const through = step.startsWith('create via owner') ? a : b;
        const t0 = process.hrtime.bigint();
        const v = await ok(api(through, 'POST', '/v1/sessions', SMALL), step);
        s.add(step, msSince(t0));
        made.push(v.id);
        // Untimed, off the measured path: the node keeps room for the next.
        await ok(api(a, 'DELETE', `/v1/sessions/${made.pop()!}?force=1`), 'destroy');
        return true;
      },
      random,
    );

    // Echo and exec: a console on A, reached from A and through B.
    const target = await ok<{ id: string; node: string | null }>(api(a, 'POST', '/v1/sessions', { ...SMALL, console: true }), 'console session');
    // Its figures are direct on A and forwarded through B only if it runs on A (a pending one is placed anywhere later).
    if (target.node !== a.name) throw new Error(`the console session is not running on ${a.name} but ${target.node === null ? 'pending' : `on ${target.node}`}`);
    for (const n of [b, c]) await ok(api(a, 'POST', '/v1/nodes/uncordon', { name: n.name }), 'uncordon');
    const url = (n: Node) => `ws+unix://${n.socket}:/v1/sessions/${target.id}/attach?cols=120&rows=40`;
    const attached = async (n: Node) => {
      for (let i = 0; ; i++) {
        try {
          return await wsTerminal(url(n));
        } catch (e) {
          if (i >= 20) throw new Error(`attach through ${n.name}: ${(e as Error).message}`);
          await new Promise((r) => setTimeout(r, 100));
        }
      }
    };
    const direct = await attached(a);
    await catMode(direct, 'direct');
    const via = await attached(b);
    await runShuffled(
      { 'echo, attach on A': rounds * 5, 'echo, attach through B': rounds * 5, 'exec true on A': rounds, 'exec true through B': rounds },
      async (step) => {
        if (step === 'echo, attach on A') s.add(step, await echoOnce(direct));
        else if (step === 'echo, attach through B') s.add(step, await echoOnce(via));
        else s.add(step, await execTrue(step.endsWith('on A') ? a.socket : b.socket, target.id));
        return true;
      },
      random,
    );
    direct.close();
    via.close();

    // A fleet list of every node's sessions (the console session one of them) against
    // a single daemon's list of as many as one node holds; a show through B against one through A.
    await pool(
      [...Array.from({ length: perNode * 3 - 1 }, (_, i) => nodes[i % 3]!), ...Array.from({ length: perNode }, () => solo)],
      2,
      async (n) => void (await ok(api(n, 'POST', '/v1/sessions', TINY), 'list session')),
    );
    const counted = (await ok<{ sessions: { id: string; node?: string | null }[] }>(api(a, 'GET', '/v1/sessions'), 'list')).sessions;
    const perNodeSeen = nodes.map((n) => counted.filter((x) => x.node === n.name).length);
    process.stdout.write(`list: ${counted.length} sessions over 3 nodes (${perNodeSeen.join(', ')}), ${perNode} on the single daemon\n`);
    if (counted.length !== perNode * 3) throw new Error(`the fleet list has ${counted.length} sessions, not ${perNode * 3}`);
    // JSON (the API) and text (what `enclave session list` prints).
    const lists: Record<string, [Node, string]> = {
      [`list through A (${perNode * 3} over 3 nodes)`]: [a, '/v1/sessions'],
      [`list on one daemon (${perNode})`]: [solo, '/v1/sessions'],
      [`text list through A (${perNode * 3} over 3 nodes)`]: [a, '/v1/sessions?format=text'],
      [`text list on one daemon (${perNode})`]: [solo, '/v1/sessions?format=text'],
      'show through A': [a, `/v1/sessions/${target.id}`],
      'show through B (forwarded)': [b, `/v1/sessions/${target.id}`],
    };
    // The same lists, each right after a change on every node listed (no node's last answer is reused),
    // in schedules of their own, one per kind of change:
    //  - a write that no list reads (a secret set): the list's version stands (src/store/listVersion.ts);
    //  - a session stopped or started on every node: its row changed (written to etcd before the call is answered).
    const changes = {
      write: async (n: Node): Promise<void> => {
        const value = Buffer.from(`bench ${writes++}`).toString('base64');
        await ok(api(n, 'PUT', '/v1/auth/bench-change', { value_base64: value }), `change on ${n.name}`);
      },
      session: async (n: Node): Promise<void> => {
        const t = toggled.get(n)!;
        await ok(api(n, 'POST', `/v1/sessions/${t.id}/${t.running ? 'stop' : 'start'}`), `${t.running ? 'stop' : 'start'} on ${n.name}`);
        t.running = !t.running;
      },
    };
    let writes = 0;
    /** One listed session on each node and on the single daemon (not the console's), stopped and started in turn. */
    const soloListed = (await ok<{ sessions: { id: string }[] }>(api(solo, 'GET', '/v1/sessions'), 'list')).sessions;
    const toggled = new Map<Node, { id: string; running: boolean }>([
      ...nodes.map((n): [Node, { id: string; running: boolean }] => [n, { id: counted.find((x) => x.node === n.name && x.id !== target.id)!.id, running: true }]),
      [solo, { id: soloListed[0]!.id, running: true }],
    ]);
    /** A's counts of B's and C's lists, by answer (its /metrics). */
    const answers = async () => {
      const text = String((await api(a, 'GET', '/metrics')).body);
      const n = (x: string) => Number(new RegExp(`^enclave_fleet_peer_lists_total\\{answer="${x}"\\} (\\d+)$`, 'm').exec(text)?.[1] ?? NaN);
      // How A made its lists from its watched copy (src/fleet/watched.ts ahead()).
      const ahead = (x: string) => Number(new RegExp(`^enclave_fleet_list_ahead_total\\{answer="${x}"\\} (\\d+)$`, 'm').exec(text)?.[1] ?? NaN);
      return { etcd: n('etcd'), sent: n('sent'), delta: n('delta'), unchanged: n('unchanged'), ahead: { current: ahead('current'), kept: ahead('unchanged'), again: ahead('again'), usual: ahead('usual') } };
    };
    /** The rows B and C wrote of their lists to etcd (their /metrics). */
    const rowsWritten = async () => {
      let total = 0;
      for (const node of [b, c]) total += Number(/^enclave_fleet_list_writes_total\{what="rows"\} (\d+)$/m.exec(String((await api(node, 'GET', '/metrics')).body))?.[1] ?? NaN);
      return total;
    };
    const timed = async (step: string, [n, path]: [Node, string]) => {
      const t0 = process.hrtime.bigint();
      const got = await ok<unknown>(api(n, 'GET', path), step);
      s.add(step, msSince(t0));
      // After a session stopped or started on every node, A's list shows each as it is now (read after the timing).
      if (step.endsWith('through A, session on each node')) {
        // The JSON list's sessions, or the text table's rows (ID first, the state a column of its own).
        const rows = typeof got === 'string' ? got.split('\n').map((l) => l.split(/\s+/)) : undefined;
        const stateOf = (id: string) => rows?.find((r) => r[0] === id)?.find((c) => c === 'running' || c === 'stopped');
        const listed = rows ? new Map([...toggled.values()].map((t) => [t.id, stateOf(t.id)])) : new Map((got as { sessions: Array<{ id: string; state: string }> }).sessions.map((x) => [x.id, x.state]));
        for (const node of nodes) {
          const t = toggled.get(node)!;
          if (listed.get(t.id) !== (t.running ? 'running' : 'stopped')) throw new Error(`A's list shows ${t.id} on ${node.name} ${listed.get(t.id) ?? 'not at all'}, not ${t.running ? 'running' : 'stopped'}`);
        }
      }
      return true;
    };
    const said = (what: string, d: Awaited<ReturnType<typeof answers>>) =>
      process.stdout.write(
        `lists of B and C through A, ${what}: ${d.etcd} read from etcd; asked: ${d.sent} sent whole, ${d.delta} as the rows changed, ${d.unchanged} answered 304; ` +
          `A's lists from its copy: ${d.ahead.current} current, ${d.ahead.kept} kept once it caught up, ${d.ahead.again} made again, ${d.ahead.usual} the usual way\n`,
      );
    const since = (x: Awaited<ReturnType<typeof answers>>, y: typeof x) => ({
      etcd: y.etcd - x.etcd,
      sent: y.sent - x.sent,
      delta: y.delta - x.delta,
      unchanged: y.unchanged - x.unchanged,
      ahead: { current: y.ahead.current - x.ahead.current, kept: y.ahead.kept - x.ahead.kept, again: y.ahead.again - x.ahead.again, usual: y.ahead.usual - x.ahead.usual },
    });
    let before = await answers();
    await runShuffled(Object.fromEntries(Object.keys(lists).map((k) => [k, listRounds])), (step) => timed(step, lists[step]!), random);
    let after = await answers();
    said('unchanged', since(before, after));
    for (const kind of ['write', 'session'] as const) {
      const steps: Record<string, [Node, string]> = {
        [`list through A, ${kind} on each node`]: [a, '/v1/sessions'],
        [`list on one daemon, ${kind}`]: [solo, '/v1/sessions'],
        [`text list through A, ${kind} on each node`]: [a, '/v1/sessions?format=text'],
        [`text list on one daemon, ${kind}`]: [solo, '/v1/sessions?format=text'],
      };
      before = after;
      const rowsBefore = await rowsWritten();
      await runShuffled(
        Object.fromEntries(Object.keys(steps).map((k) => [k, listRounds])),
        async (step) => {
          await Promise.all((step.endsWith('on each node') ? nodes : [solo]).map(changes[kind]));
          return timed(step, steps[step]!);
        },
        random,
      );
      after = await answers();
      const d = since(before, after);
      said(`after a ${kind} on each node`, d);
      // Every list of B and C read from what they wrote to etcd, none asked of them; a write no list reads
      // wrote no row of theirs (the list's version stood), a session stopped or started at least its own.
      if (d.etcd !== 4 * listRounds || d.sent + d.delta + d.unchanged !== 0) throw new Error(`not every list of B and C was read from etcd: ${d.etcd} of ${4 * listRounds}`);
      const rows = (await rowsWritten()) - rowsBefore;
      process.stdout.write(`rows B and C wrote to etcd, ${kind} on each node: ${rows}\n`);
      if (kind === 'write' ? rows !== 0 : rows < 4 * listRounds) throw new Error(`B and C wrote ${rows} rows to etcd after a ${kind} on each node`);
    }

    // Failure detection, once: C's daemon SIGKILLed, until A lists C unreachable.
    const pid = Number(readFileSync(join(c.socket, '..', 'daemon.pid'), 'utf8'));
    const t0 = process.hrtime.bigint();
    process.kill(pid, 'SIGKILL');
    for (;;) {
      const l = await ok<{ nodes: { name: string; state: string }[] }>(api(a, 'GET', '/v1/nodes'), 'node list');
      if (l.nodes.find((n) => n.name === c.name)?.state === 'unreachable') break;
      if (msSince(t0) > 60_000) throw new Error('C never became unreachable');
      await new Promise((r) => setTimeout(r, 50));
    }
    s.add('failure detected (C SIGKILLed -> unreachable on A)', msSince(t0));
    s.add('lease TTL + 1 s', (TTL_S + 1) * 1000);
  } finally {
    fleet('down');
  }
  process.stdout.write(`${'figure'.padEnd(52)} ${'p50 ms'.padStart(8)} ${'p99 ms'.padStart(8)}\n`);
  for (const n of s.names()) process.stdout.write(`${s.row(n)}\n`);
  process.stdout.write(`\n${'same-run ratio'.padEnd(52)} ${'p50'.padStart(8)} ${'p99'.padStart(8)}\n`);
  process.stdout.write(`${s.ratio('create via B, placed on A', 'create via owner (A)', 'create via B / via owner')}\n`);
  process.stdout.write(`${s.ratio('echo, attach through B', 'echo, attach on A', 'echo through B / direct')}\n`);
  process.stdout.write(`${s.ratio('exec true through B', 'exec true on A', 'exec true through B / direct')}\n`);
  process.stdout.write(`${s.ratio(`list through A (${perNode * 3} over 3 nodes)`, `list on one daemon (${perNode})`, 'fleet list / single-daemon list (goal 3x)')}\n`);
  process.stdout.write(`${s.ratio(`text list through A (${perNode * 3} over 3 nodes)`, `text list on one daemon (${perNode})`, 'fleet text list / single-daemon text list')}\n`);
  for (const kind of ['write', 'session']) {
    process.stdout.write(`${s.ratio(`list through A, ${kind} on each node`, `list on one daemon, ${kind}`, `the same, after a ${kind} on each node`)}\n`);
    process.stdout.write(`${s.ratio(`text list through A, ${kind} on each node`, `text list on one daemon, ${kind}`, `the text lists, after a ${kind} on each node`)}\n`);
  }
  process.stdout.write(`${s.ratio('show through B (forwarded)', 'show through A', 'show through B / on the owner')}\n`);
  process.stdout.write(`${s.ratio('failure detected (C SIGKILLed -> unreachable on A)', 'lease TTL + 1 s', 'failure detection / (TTL + 1 s)')}\n`);
}

main().catch((e: Error) => {
  process.stderr.write(`bench:fleet: ${e.message}\n`);
  process.exit(1);
});
