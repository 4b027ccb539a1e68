// What the fleet test files share: where their etcd clusters live, and the
// end of a run (nodes, then what the test holds open, then the cluster),
// checked to leave nothing of either behind.
import { expect } from 'vitest';
import { existsSync, rmdirSync, rmSync } from 'node:fs';
import type { TestDaemon } from './harness.js';
import { etcdRunDir, etcdUnder, type EtcdCluster } from '../../stress/etcdCluster.js';

const ROOT = '/var/tmp/enclave-fleet-test';

/** A run's own directory for its etcd cluster and certificates. */
export const fleetRunDir = (label: string): string => etcdRunDir(ROOT, label);

/** Stop the nodes, then whatever `between` closes (clients, relays), then the cluster; nothing of them may remain. */
export async function endFleetRun(dir: string | undefined, etcd: EtcdCluster | undefined, nodes: readonly (TestDaemon | undefined)[], between?: () => Promise<void>): Promise<void> {
  for (const d of nodes) await d?.cleanup();
  await between?.();
  await etcd?.stop();
  const left = dir ? etcdUnder(dir) : [];
  if (dir) rmSync(dir, { recursive: true, force: true });
  try {
    rmdirSync(ROOT);
  } catch {
    /* another run's cluster is there */
  }
  expect(left).toEqual([]);
  for (const d of nodes) {
    if (!d) continue;
    expect(existsSync(`/sys/class/net/${d.bridge}`)).toBe(false);
    expect(d.cgroupDirs()).toEqual([]);
    expect(existsSync(d.dir)).toBe(false);
  }
}
