// `npm run fleet -- up [--nodes N] [--slots S] [--solo]` / `npm run fleet -- down`
// / `npm run fleet -- revoke [NAME...]`:
// a fleet on this machine, for trying fleet mode (docs/fleet.md). up starts a
// three-member etcd cluster and N daemons (default 3) of S sessions each
// (default 16), each in a network
// namespace of its own joined to the fleet's bridge (stress/nodeNet.ts; etcd
// listens on the host's address there), each with its own state dir,
// socket, session bridge and subnet, nftables table, cgroup parent and ID
// range, all under /var/tmp/enclave-fleet/RUN, and prints one line per node:
// NAME SOCKET (with --solo, one more daemon in no fleet, last: `solo SOCKET`,
// the fleet bench's single-node baseline). down destroys their sessions, stops them, removes their host
// objects, namespaces and the etcd cluster, and sweeps what any earlier run
// left (everything named with the fleet's prefixes). revoke makes the run CA's
// CRL revoke exactly the named nodes' certificates (none: every node good
// again) and has every node reload it (docs/fleet.md, "Revoking a node").
import { spawn, spawnSync } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync, rmdirSync, rmSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { z } from 'zod';
import { call } from '../src/cli/client.js';
import { nodeListSchema } from '../src/api/fleetSchemas.js';
import { detectCgroupLayout, killCgroup, removeCgroup, versionOf } from '../src/isolation/cgroups.js';
import { repoRoot } from '../src/native/addon.js';
import { alive, etcdUnder, startEtcdCluster } from './etcdCluster.js';
import { inNetns, makeFleetNet, sweepFleetNets } from './nodeNet.js';
import { makeCa, makeCrl, makeNodeCert, peerSection } from './fleetCerts.js';
import { killLxcfsUnder } from '../test/integration/harness.js';

const ROOT = '/var/tmp/enclave-fleet';
const USAGE = 'usage: npm run fleet -- up [--nodes N] [--slots S] [--solo] | down | revoke [NAME...]';
const CLI = join(repoRoot, 'dist', 'bundle', 'main.js');
const CGROUP_ROOT = '/sys/fs/cgroup';
/** Every name this tool gives a host object starts with one of these: down sweeps them all. */
const BRIDGE_PREFIX = 'efl';
/** The nodes' namespaces: NETNS_PREFIX+TAG-I (the fleet's bridge is BRIDGE_PREFIX+TAG, node i's host end that and h+I). */
const NETNS_PREFIX = 'enclave-fleet-';
const TABLE_PREFIX = 'enclave_fl_';
const CGROUP_PREFIX = 'enclave-fleet-';
/** Past every test daemon's range (they end below 4.17e9) and a production daemon's. */
const ID_BASE = 4_200_000_000;
/** IDs above ID_BASE the nodes may take: up to the last valid uid (2^32 - 2). */
const ID_ROOM = 2 ** 32 - 1 - ID_BASE;
/** Sessions a node holds unless told (`--slots`): each takes an ID slot of 65536 IDs. */
const DEFAULT_SLOTS = 16;
/** Every node listens for the others (mutual TLS) on its own address, this port. */
const PEER_PORT = 7440;

const runSchema = z.object({
  endpoints: z.array(z.string()),
  nodes: z.array(z.object({ name: z.string(), socket: z.string(), config: z.string(), pidFile: z.string(), netns: z.string() })),
});
type Run = z.infer<typeof runSchema>;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A node's config; without `cluster` (the bench's single daemon) it is a daemon of its own, in no fleet. */
function nodeConfig(o: { dir: string; name: string; index: number; tag: string; slots: number; cluster?: { endpoints: string[]; peer: string } }): string {
  const socket = join(o.dir, 'enclave.sock');
  return [
    `state_dir = "${join(o.dir, 'state')}"`,
    `socket = "${socket}"`,
    'log_format = "json"',
    '[ids]',
    `base = ${ID_BASE + o.index * o.slots * 65536}`,
    `slots = ${o.slots}`,
    '[cgroups]',
    `parent = "${CGROUP_PREFIX}${o.tag}-${o.name}"`,
    '[network]',
    `bridge = "${BRIDGE_PREFIX}${o.tag}${o.index}"`,
    `subnet = "172.29.${10 + o.index}.0/24"`,
    `table = "${TABLE_PREFIX}${o.tag}${o.index}"`,
    '[sessions]',
    `max_sessions = ${o.slots}`,
    ...(o.cluster
      ? [
          '[cluster]',
          `endpoints = ${JSON.stringify(o.cluster.endpoints)}`,
          `node = "${o.name}"`,
          'lease_ttl_s = 3',
          // The node-to-node channel (mutual TLS): its listener is the node's advertised endpoint.
          o.cluster.peer,
        ]
      : []),
  ].join('\n');
}

async function health(socket: string): Promise<boolean> {
  try {
    return (await call(socket, 'GET', '/v1/health')).status === 200;
  } catch {
    return false;
  }
}

/**
 * Start etcd and `count` nodes of `slots` sessions each; with `solo`, one
 * more daemon like them but in no fleet (printed last, named `solo`): the
 * bench's single-node baseline.
 */
async function up(count: number, slots: number, solo: boolean): Promise<void> {
  if (!Number.isInteger(count) || count < 1 || count > 8) throw new Error('--nodes: 1 to 8');
  const daemons = count + (solo ? 1 : 0);
  const most = Math.floor(ID_ROOM / 65536 / daemons);
  if (!Number.isInteger(slots) || slots < 1 || slots > most) throw new Error(`--slots: 1 to ${most} with ${daemons} daemons (each slot is 65536 IDs above ${ID_BASE})`);
  await down(false);
  const tag = randomBytes(2).toString('hex');
  const run = join(ROOT, `run-${tag}`);
  mkdirSync(run, { recursive: true, mode: 0o755 });
  const net = makeFleetNet({ link: `${BRIDGE_PREFIX}${tag}`, netns: `${NETNS_PREFIX}${tag}`, count: daemons });
  const etcd = await startEtcdCluster(join(run, 'etcd'), { detach: true, host: net.host });
  const state: Run = { endpoints: etcd.endpoints, nodes: [] };
  // This run's CA and a certificate per node (their CN the node's name) for the mutual-TLS channel.
  const pki = join(run, 'pki');
  const ca = makeCa(pki);
  // Its revocation list, revoking nobody yet (`revoke` makes another): every node checks the others' certificates against it.
  const crl = join(pki, 'crl.pem');
  makeCrl(ca, [], crl);
  for (let i = 0; i < daemons; i++) {
    const inFleet = i < count;
    const name = inFleet ? `node-${String.fromCharCode(97 + i)}` : 'solo';
    const dir = join(run, name);
    mkdirSync(dir, { recursive: true, mode: 0o755 });
    const config = join(dir, 'config.toml');
    const cluster = inFleet ? { endpoints: etcd.endpoints, peer: peerSection(`${net.nodes[i]!.address}:${PEER_PORT}`, ca.ca, makeNodeCert(pki, ca, name), crl) } : undefined;
    writeFileSync(config, nodeConfig({ dir, name, index: i, tag, slots, ...(cluster ? { cluster } : {}) }));
    const log = openSync(join(dir, 'daemon.log'), 'a');
    // Only the network namespace is entered: the daemon's mounts are the host's (its sessions' roots, lxcfs).
    const p = spawn(...inNetns(net.nodes[i]!.path, [process.execPath, CLI, 'daemon', '--config', config]), { stdio: ['ignore', log, log], detached: true });
    closeSync(log);
    p.unref();
    const pidFile = join(dir, 'daemon.pid');
    writeFileSync(pidFile, String(p.pid));
    state.nodes.push({ name, socket: join(dir, 'enclave.sock'), config, pidFile, netns: net.nodes[i]!.path });
    writeFileSync(join(run, 'fleet.json'), JSON.stringify(state));
  }
  for (const n of state.nodes) {
    const deadline = Date.now() + 30_000;
    while (!(await health(n.socket))) {
      if (Date.now() > deadline || !alive(Number(readFileSync(n.pidFile, 'utf8')))) {
        throw new Error(`${n.name} did not come up: ${readFileSync(join(n.config, '..', 'daemon.log'), 'utf8').slice(-1500)}`);
      }
      await sleep(100);
    }
  }
  // Answering is not registered yet: a node's member record reaches etcd after its socket opens, and a caller's first
  // cordon or placement needs every one (the bench's cordon of node-b once found none).
  const members = state.nodes.filter((n) => n.name !== 'solo');
  const deadline = Date.now() + 30_000;
  for (;;) {
    const r = await call(members[0]!.socket, 'GET', '/v1/nodes').catch(() => undefined);
    const listed = nodeListSchema.safeParse(r?.body);
    const nodes = listed.success ? listed.data.nodes : [];
    if (members.every((m) => nodes.some((x) => x.name === m.name && x.state === 'ready'))) break;
    if (Date.now() > deadline) throw new Error(`the fleet's nodes did not all register within 30 s: ${JSON.stringify(nodes.map((x) => [x.name, x.state]))}`);
    await sleep(100);
  }
  for (const n of state.nodes) process.stdout.write(`${n.name} ${n.socket}\n`);
}

/** Kill every process of a cgroup tree and remove it, deepest first. */
async function removeTree(dir: string): Promise<void> {
  if (!existsSync(dir)) return;
  for (const e of readdirSync(dir, { withFileTypes: true })) if (e.isDirectory()) await removeTree(join(dir, e.name));
  const version = versionOf(detectCgroupLayout(CGROUP_ROOT), dir);
  for (let i = 0; i < 300; i++) {
    killCgroup(dir, version);
    if (removeCgroup(dir)) return;
    await sleep(10);
  }
  process.stderr.write(`fleet: cannot remove cgroup ${dir}\n`);
}

const mountsUnder = (dir: string) =>
  readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .map((l) => l.split(' ')[4] ?? '')
    .filter((m) => m.startsWith(`${dir}/`));

/** Stop one node: its live sessions destroyed through its API, then SIGTERM (SIGKILL if it lingers). */
async function stopNode(n: Run['nodes'][number]): Promise<void> {
  const pid = existsSync(n.pidFile) ? Number(readFileSync(n.pidFile, 'utf8')) : 0;
  if (!(pid > 0 && alive(pid))) return;
  if (await health(n.socket)) {
    const r = await call(n.socket, 'GET', '/v1/sessions');
    const live = ((r.body as { sessions?: { id: string; state: string }[] }).sessions ?? []).filter((s) => !['destroyed', 'failed', 'pending'].includes(s.state));
    await Promise.all(live.map((s) => call(n.socket, 'DELETE', `/v1/sessions/${s.id}?force=1`).catch(() => undefined)));
  }
  process.kill(pid, 'SIGTERM');
  for (let i = 0; i < 150 && alive(pid); i++) await sleep(100);
  if (alive(pid)) process.kill(pid, 'SIGKILL');
}

async function down(say = true): Promise<void> {
  const runs = existsSync(ROOT) ? readdirSync(ROOT).filter((e) => e.startsWith('run-')) : [];
  for (const r of runs) {
    const dir = join(ROOT, r);
    let state: Run | undefined;
    try {
      state = runSchema.parse(JSON.parse(readFileSync(join(dir, 'fleet.json'), 'utf8')));
    } catch {
      state = undefined; // a run that died before it wrote its record: the sweep below still finds its objects
    }
    for (const n of state?.nodes ?? []) await stopNode(n);
    // Sessions a killed daemon left, and the daemons' own leftovers: by name.
    for (const h of existsSync(CGROUP_ROOT) ? readdirSync(CGROUP_ROOT) : []) {
      const hier = join(CGROUP_ROOT, h);
      for (const e of existsSync(hier) ? readdirSync(hier).filter((x) => x.startsWith(CGROUP_PREFIX)) : []) await removeTree(join(hier, e));
    }
    for (const n of state?.nodes ?? []) if (existsSync(n.netns)) spawnSync(...inNetns(n.netns, [process.execPath, CLI, 'daemon', '--cleanup', '--config', n.config]), { stdio: 'ignore' });
    // lxcfs of each node outlives its daemon by design, and --cleanup stops it; whatever is left goes here
    // (a node whose daemon was killed, as the fleet bench's failure figure does, can leave one serving).
    killLxcfsUnder(dir);
    for (const m of mountsUnder(dir).reverse()) spawnSync('umount', ['-l', m], { stdio: 'ignore' });
    for (const pid of etcdUnder(join(dir, 'etcd'))) process.kill(pid, 'SIGKILL');
    for (let i = 0; i < 100 && etcdUnder(join(dir, 'etcd')).length; i++) await sleep(50);
    rmSync(dir, { recursive: true, force: true });
    if (say) process.stdout.write(`removed ${dir}\n`);
  }
  // The namespaces (their session bridges and tables go with them) and the fleet's bridges; then what runs before nodes had namespaces left.
  sweepFleetNets(NETNS_PREFIX, () => true, new RegExp(`^${BRIDGE_PREFIX}([0-9a-f]{4})(h\\d)?$`));
  for (const link of existsSync('/sys/class/net') ? readdirSync('/sys/class/net') : []) if (new RegExp(`^${BRIDGE_PREFIX}[0-9a-f]{4}\\d$`).test(link)) spawnSync('ip', ['link', 'del', link], { stdio: 'ignore' });
  const tables = spawnSync('nft', ['list', 'tables'], { encoding: 'utf8' }).stdout ?? '';
  for (const m of tables.matchAll(new RegExp(`^table inet (${TABLE_PREFIX}[0-9a-f]{4}\\d)$`, 'gm'))) spawnSync('nft', ['delete', 'table', 'inet', m[1]!], { stdio: 'ignore' });
  try {
    rmdirSync(ROOT);
  } catch {
    /* not empty or gone */
  }
}

/** The CRL revokes exactly these nodes' certificates; then every node of the run reloads it, one line each. */
async function revoke(names: string[]): Promise<void> {
  const runs = existsSync(ROOT) ? readdirSync(ROOT).filter((e) => e.startsWith('run-')) : [];
  if (runs.length !== 1) throw new Error(`no fleet to revoke in: ${runs.length === 0 ? 'start one with up' : `${runs.length} runs under ${ROOT}`}`);
  const dir = join(ROOT, runs[0]!);
  const state = runSchema.parse(JSON.parse(readFileSync(join(dir, 'fleet.json'), 'utf8')));
  const nodes = state.nodes.filter((n) => n.name !== 'solo');
  for (const name of names) if (!nodes.some((n) => n.name === name)) throw new Error(`no node ${name} in this fleet (${nodes.map((n) => n.name).join(', ')})`);
  const pki = join(dir, 'pki');
  makeCrl({ ca: join(pki, 'ca.crt'), caKey: join(pki, 'ca.key') }, names.map((n) => join(pki, `${n}.crt`)), join(pki, 'crl.pem'));
  for (const n of nodes) {
    const r = await call(n.socket, 'POST', '/v1/daemon/reload').catch((e: Error) => ({ status: 0, body: { error: { message: e.message } } }));
    const said = r.status === 200 ? 'reloaded the CRL' : `not reloaded: ${(r.body as { error?: { message?: string } }).error?.message ?? `HTTP ${r.status}`}`;
    process.stdout.write(`${n.name} ${said}\n`);
  }
}

async function main(argv: string[]): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('run as root: the nodes are daemons, which create namespaces, cgroups and ID mappings');
  const [verb, ...rest] = argv;
  if (verb === 'up') {
    const { values } = parseArgs({ args: rest, options: { nodes: { type: 'string', default: '3' }, slots: { type: 'string', default: String(DEFAULT_SLOTS) }, solo: { type: 'boolean', default: false } }, strict: true, allowPositionals: false });
    await up(Number(values.nodes), Number(values.slots), values.solo);
  } else if (verb === 'down' && rest.length === 0) await down();
  else if (verb === 'revoke' && rest.every((n) => /^[a-z0-9-]{1,63}$/.test(n))) await revoke(rest);
  else throw new Error(USAGE);
}

main(process.argv.slice(2)).then(
  () => process.exit(0),
  (e: Error) => {
    process.stderr.write(`fleet: ${e.message}\n`);
    process.exit(1);
  },
);
