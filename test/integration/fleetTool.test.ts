// `npm run fleet -- up|down|revoke` (stress/fleet.ts): up prints NAME SOCKET per
// node of a working fleet (the nodes joined by mutual TLS: one lists the
// other's sessions), each node in a network namespace of its own; revoke
// has the run CA's CRL revoke a node, which the others then refuse; down
// leaves nothing of it on the host (etcd, daemons, sessions, namespaces and
// anything still in them, bridges, nftables tables, cgroups, mounts, files).
// Note: up and down sweep any fleet this tool started earlier on this host.
import { afterAll, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { isRoot } from './harness.js';
import { repoRoot } from '../../src/native/addon.js';
import { call } from '../../src/cli/client.js';
import { netnsHolders } from '../../stress/nodeNet.js';

const TOOL = join(repoRoot, 'dist', 'stress', 'fleet.js');
const ROOT = '/var/tmp/enclave-fleet';
const fleet = (...args: string[]) => spawnSync(process.execPath, [TOOL, ...args], { encoding: 'utf8', timeout: 180_000 });

const namespaces = () => (existsSync('/run/netns') ? readdirSync('/run/netns').filter((n) => n.startsWith('enclave-fleet-')) : []);

/** What of the tool's is on the host: etcd and daemon processes, namespaces (and what runs in those of `inodes`), bridges, tables, cgroups, mounts, its directory. */
function leftovers(inodes: number[]): string[] {
  const out: string[] = [];
  for (const e of readdirSync('/proc').filter((x) => /^\d+$/.test(x))) {
    try {
      const argv = readFileSync(`/proc/${e}/cmdline`, 'utf8');
      if (argv.includes(ROOT)) out.push(`process ${e}: ${argv.replace(/\0/g, ' ').slice(0, 100)}`);
    } catch {
      /* gone */
    }
  }
  out.push(...namespaces().map((n) => `netns ${n}`));
  for (const i of inodes) out.push(...netnsHolders(i).map((p) => `process ${p} in a deleted node namespace`));
  out.push(...readdirSync('/sys/class/net').filter((l) => /^efl[0-9a-f]{4}(h?\d)?$/.test(l)).map((l) => `link ${l}`));
  const tables = spawnSync('nft', ['list', 'tables'], { encoding: 'utf8' }).stdout ?? '';
  out.push(...[...tables.matchAll(/^table inet (enclave_fl_\w+)$/gm)].map((m) => `table ${m[1]}`));
  for (const h of readdirSync('/sys/fs/cgroup')) {
    const dir = join('/sys/fs/cgroup', h);
    try {
      out.push(...readdirSync(dir).filter((x) => x.startsWith('enclave-fleet-')).map((x) => `cgroup ${join(dir, x)}`));
    } catch {
      /* not a directory */
    }
  }
  out.push(...readFileSync('/proc/self/mountinfo', 'utf8').split('\n').map((l) => l.split(' ')[4] ?? '').filter((m) => m.startsWith(`${ROOT}/`)).map((m) => `mount ${m}`));
  if (existsSync(ROOT)) out.push(`dir ${ROOT}`);
  return out;
}

describe.skipIf(!isRoot)('npm run fleet -- up | down', () => {
  afterAll(() => {
    fleet('down');
  }, 180_000);

  it('brings up two nodes that take sessions (and a daemon in no fleet beside), and down leaves nothing behind', async () => {
    expect(fleet('up', '--slots', '0').stderr).toMatch(/--slots: 1 to \d+ with 3 daemons/);
    const up = fleet('up', '--nodes', '2', '--slots', '3', '--solo');
    expect(up.status, up.stderr).toBe(0);
    const all = up.stdout.trim().split('\n').map((l) => l.split(' '));
    expect(all.map((l) => l[0])).toEqual(['node-a', 'node-b', 'solo']);
    const lines = all.slice(0, 2);
    // Each daemon in its own network namespace: the daemon's, and not the host's.
    const inodes = namespaces().map((n) => statSync(`/run/netns/${n}`).ino);
    expect(inodes).toHaveLength(3);
    const solo = all[2]![1]!;
    expect((await call(solo, 'GET', '/v1/nodes')).status).toBe(400);
    const soloMade = await call(solo, 'POST', '/v1/sessions', { memory_mb: 128, network: 'none' });
    expect(soloMade.status, JSON.stringify(soloMade.body)).toBe(201);
    expect((soloMade.body as { node?: string }).node).toBeUndefined();
    const pids = all.map(([, socket]) => Number(readFileSync(join(socket!, '..', 'daemon.pid'), 'utf8')));
    const netOf = (pid: number | 'self') => statSync(`/proc/${pid}/ns/net`).ino;
    expect(pids.map(netOf).sort()).toEqual([...inodes].sort());
    expect(pids.map(netOf)).not.toContain(netOf('self'));
    const [, socketA] = lines[0]!;
    const [, socketB] = lines[1]!;
    const nodes = (await call(socketB!, 'GET', '/v1/nodes')).body as { nodes: { name: string; state: string; capacity: { slots: number } }[] };
    expect(nodes.nodes.map((n) => [n.name, n.state, n.capacity.slots])).toEqual([
      ['node-a', 'ready', 3],
      ['node-b', 'ready', 3],
    ]);
    const made: { id: string; node: string }[] = [];
    for (let i = 0; i < 2; i++) {
      const r = await call(socketA!, 'POST', '/v1/sessions', { memory_mb: 128 });
      expect(r.status, JSON.stringify(r.body)).toBe(201);
      made.push(r.body as { id: string; node: string });
    }
    expect(made.map((m) => m.node).sort()).toEqual(['node-a', 'node-b']);
    // The nodes reach each other over mutual TLS: A lists B's session too, with its node.
    const listed = (await call(socketA!, 'GET', '/v1/sessions')).body as { sessions: { node: string }[] };
    expect(listed.sessions.map((s) => s.node).sort()).toEqual(['node-a', 'node-b']);

    // revoke: the run CA's CRL revokes node-b; node-a reloads it and no longer reaches B, node-b refuses it (its
    // own certificate); with none revoked both reload it and A reaches B again.
    const onB = made.find((m) => m.node === 'node-b')!.id;
    const showOnB = async () => {
      const r = await call(socketA!, 'GET', `/v1/sessions/${onB}`);
      return r.status === 200 ? 200 : `${r.status} ${JSON.stringify(r.body)}`;
    };
    expect(await showOnB()).toBe(200);
    expect(fleet('revoke', 'node-z').stderr).toBe('fleet: no node node-z in this fleet (node-a, node-b)\n');
    const revoked = fleet('revoke', 'node-b');
    expect(revoked.status, revoked.stderr).toBe(0);
    expect(revoked.stdout).toMatch(/^node-a reloaded the CRL\nnode-b not reloaded: .*cluster\.peer\.cert \(or a CA above it\) is revoked by cluster\.peer\.crl.*\n$/);
    expect(await showOnB()).toMatch(/^503 .*is on node node-b, which did not answer: the node's certificate is revoked by cluster\.peer\.crl/);
    const back = fleet('revoke');
    expect(back.stdout, back.stderr).toBe('node-a reloaded the CRL\nnode-b reloaded the CRL\n');
    expect(await showOnB()).toBe(200);

    const down = fleet('down');
    expect(down.status, down.stderr).toBe(0);
    expect(leftovers(inodes)).toEqual([]);
  }, 300_000);
});
