// A node revoked in the fleet CA's CRL and the fleet's etcd (Debian's
// etcd-server over TLS, --client-cert-auth, --client-crl-file: the setup
// docs/fleet.md "Revoking a node" gives): the revoked node's next connection
// is refused, so it can no longer register, read or write the fleet, while
// every other node goes on; etcd reads the CRL at each new connection, with
// no restart. The node-to-node channel's side is in fleetPeer.test.ts.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Etcd3 } from 'etcd3';
import { etcdClient, type ClusterConfig } from '../../src/fleet/etcd.js';
import { parseConfig } from '../../src/config/load.js';
import { etcdRunDir, etcdUnder, startEtcdCluster, type EtcdCluster } from '../../stress/etcdCluster.js';
import { makeCa, makeCrl, makeNodeCert, type NodeCert } from '../../stress/fleetCerts.js';

describe('a revoked node and the fleet etcd', () => {
  let dir = '';
  let etcd: EtcdCluster | undefined;
  let ca: { ca: string; caKey: string };
  let crl = '';
  const clients: Etcd3[] = [];

  beforeAll(async () => {
    dir = etcdRunDir(tmpdir(), 'enclave-etcd-revocation');
    const pki = mkdtempSync(join(dir, 'pki-'));
    ca = makeCa(pki);
    crl = join(pki, 'crl.pem');
    makeCrl(ca, [], crl);
    const server = makeNodeCert(pki, ca, 'etcd', ['127.0.0.1']);
    etcd = await startEtcdCluster(join(dir, 'etcd'), { size: 1, salt: 23, tls: { ca: ca.ca, ...server, crl } });
  }, 60_000);
  afterAll(async () => {
    for (const c of clients) c.close();
    await etcd?.stop();
    expect(etcdUnder(dir)).toEqual([]);
    rmSync(dir, { recursive: true, force: true });
  });

  /** The client a node with this certificate makes from its [cluster] section. */
  const nodeClient = (c: NodeCert): Etcd3 => {
    const cluster = parseConfig(`[cluster]\nendpoints = ${JSON.stringify(etcd!.endpoints)}\nnode = "n"\ntls = { ca = "${ca.ca}", cert = "${c.cert}", key = "${c.key}" }\n`, 'x.toml').cluster as ClusterConfig;
    const client = etcdClient(cluster);
    clients.push(client);
    return client;
  };
  const outcome = (p: Promise<unknown>) =>
    p.then(
      () => 'answered',
      (e: Error) => `refused: ${e.message}`,
    );

  it("refuses the revoked node's next connection, and only its", async () => {
    const pki = mkdtempSync(join(dir, 'nodes-'));
    const [na, nb] = ['na', 'nb'].map((n) => makeNodeCert(pki, ca, n));
    expect(await outcome(nodeClient(nb!).put('/enclave/members/nb').value('{}').exec())).toBe('answered');
    makeCrl(ca, [nb!.cert], crl);
    // A connection made after the CRL changed: what a node gone from the fleet, or restarted, opens.
    expect(await outcome(nodeClient(nb!).put('/enclave/members/nb').value('{}').exec())).toMatch(/^refused: /);
    expect(await outcome(nodeClient(nb!).get('/enclave/members/nb').string())).toMatch(/^refused: /);
    expect(await outcome(nodeClient(na!).get('/enclave/members/nb').string())).toBe('answered');
    // Taken back (a CRL without it): it is answered again.
    makeCrl(ca, [], crl);
    expect(await outcome(nodeClient(nb!).get('/enclave/members/nb').string())).toBe('answered');
  }, 60_000);
});
