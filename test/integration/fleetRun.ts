// What the fleet test files share: where their etcd clusters live, their
// network (a namespace per node joined to a bridge of the run, stress/nodeNet.ts),
// and the end of a run (nodes, then what the test holds open, then the
// cluster, then the network), checked to leave nothing of any behind.
import { expect } from 'vitest';
import { existsSync, readdirSync, rmdirSync, rmSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import type { TestDaemon } from './harness.js';
import { alive, etcdRunDir, etcdUnder, type EtcdCluster } from '../../stress/etcdCluster.js';
import { makeFleetNet, netnsHolders, sweepFleetNets, type FleetNet } from '../../stress/nodeNet.js';

const ROOT = '/var/tmp/enclave-fleet-test';
/** A test run's namespaces: NETNS-PID-TAG-I; its bridge LINK+TAG, node i's host end LINK+TAG+h+I. */
const NETNS = 'enclave-ft-';
const LINK = 'eft';

/** A run's own directory for its etcd cluster and certificates. */
export const fleetRunDir = (label: string): string => etcdRunDir(ROOT, label);

/** The network of a run of `count` nodes, after sweeping what killed runs left. */
export function fleetNetwork(count: number): FleetNet {
  sweepFleetNets(NETNS, (n) => !alive(Number(/^enclave-ft-(\d+)-/.exec(n)?.[1] ?? 0)), new RegExp(`^${LINK}([0-9a-f]{4})(h\\d)?$`));
  const tag = randomBytes(2).toString('hex');
  return makeFleetNet({ link: `${LINK}${tag}`, netns: `${NETNS}${process.pid}-${tag}`, count });
}

/** Stop the nodes, then whatever `between` closes (clients), then the cluster, then the network; nothing of them may remain. */
export async function endFleetRun(dir: string | undefined, etcd: EtcdCluster | undefined, nodes: readonly (TestDaemon | undefined)[], net: FleetNet | undefined, between?: () => Promise<void>): Promise<void> {
  // Every step runs whatever failed before it (a node left running would keep its deleted namespace alive); the first failure is thrown after.
  const failures: unknown[] = [];
  const step = async (f: () => unknown) => {
    try {
      await f();
    } catch (e) {
      failures.push(e);
    }
  };
  for (const d of nodes) await step(() => d?.cleanup());
  await step(() => between?.());
  await step(() => etcd?.stop());
  const left = dir ? etcdUnder(dir) : [];
  if (dir) rmSync(dir, { recursive: true, force: true });
  try {
    rmdirSync(ROOT);
  } catch {
    /* another run's cluster is there */
  }
  net?.remove();
  if (failures.length) throw failures[0];
  expect(left).toEqual([]);
  for (const d of nodes) {
    if (!d) continue;
    expect(d.cgroupDirs()).toEqual([]);
    expect(existsSync(d.dir)).toBe(false);
  }
  if (net) {
    // Deleted, a namespace lives on in any process still in it (with the node's bridge and table).
    for (const n of net.nodes) expect(existsSync(n.path) || netnsHolders(n.inode).length > 0, n.name).toBe(false);
    expect(readdirSync('/sys/class/net').filter((l) => l.startsWith(net.bridge))).toEqual([]);
  }
}
